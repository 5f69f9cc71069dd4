"""`edgeact inspect`: what is inside a .tflite or .onnx model."""
from __future__ import annotations

from pathlib import Path

import click

from edgeact.config import choices
from edgeact.fileio import dumps_json
from edgeact.targets import Target

from .options import json_option, verbose_option


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--op-times", is_flag=True,
              help="Also time the ops per type and give the share of time off the fast path (TFLite: each op "
                   "left off the delegate run alone; ONNX: ONNX Runtime's profiler). Takes a few seconds.")
@click.option("--target", type=click.Choice(choices(Target)),
              help="The device the model is for; coral-usb / coral-devboard add the Edge TPU pre-flight: per op, "
                   "whether edgetpu_compiler will map it and why not, the mapped share of ops and MACs, and the "
                   "parameters against the on-chip memory.")
@verbose_option
@json_option
def inspect(model, op_times, target, as_json):
    """Show the operators, fused activations, tensor types and quantization of a .tflite or .onnx MODEL."""
    from edgeact.report.inspect import describe_model
    from edgeact.report.render import render_inspect

    info = describe_model(model, op_times=op_times, target=target)
    click.echo(dumps_json(info) if as_json else render_inspect(info))
