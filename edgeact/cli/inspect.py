"""`edgeact inspect`: what is inside a .tflite or .onnx model."""
from __future__ import annotations

from pathlib import Path

import click

from edgeact.fileio import dumps_json

from .options import json_option, verbose_option


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--op-times", is_flag=True,
              help="Also time the ops per type and give the share of time off the fast path (TFLite: each op "
                   "left off the delegate run alone; ONNX: ONNX Runtime's profiler). Takes a few seconds.")
@verbose_option
@json_option
def inspect(model, op_times, as_json):
    """Show the operators, fused activations, tensor types and quantization of a .tflite or .onnx MODEL."""
    from edgeact.report.inspect import describe_model
    from edgeact.report.render import render_inspect

    info = describe_model(model, op_times=op_times)
    click.echo(dumps_json(info) if as_json else render_inspect(info))
