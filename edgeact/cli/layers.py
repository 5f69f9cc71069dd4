"""`edgeact layers`: where an INT8 model loses accuracy, layer by layer, against its float twin.

Host-side (TFLite via LiteRT, ONNX via onnx + ONNX Runtime, Keras only with --keras): the
work lives in `converters.layer_error.measure*`, imported inside the command so that `edgeact`
keeps starting on a device without them.
"""
from __future__ import annotations

from pathlib import Path

import click

from edgeact.data.preprocess import Preset, make_preprocessing
from edgeact.fileio import dumps_json

from .options import (
    check_output_paths,
    floats,
    json_option,
    make_model_code,
    model_code_options,
    preprocess_options,
    verbose_option,
)


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="Samples to measure on: image folder, or .npy/.npz (the calibration data is fine).")
@click.option("--float", "float_model", type=click.Path(path_type=Path),
              help="The float model of the same format [default: <name>_fp32.<ext> beside the INT8 model].")
@click.option("--keras", "keras_model", type=click.Path(path_type=Path),
              help="The Keras model both were converted from: names layers and adds the own-error column.")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Layers shown per format.")
@click.option("--by-own", is_flag=True, help="Rank by own SQNR (only that layer quantized) instead of accumulated.")
@click.option("--samples", type=click.IntRange(min=1), default=32, show_default=True,
              help="Samples run through both models.")
@preprocess_options
@click.option("--csv", "csv_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write every layer of every format to a CSV file.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also draw SQNR along depth to FILE.png (needs matplotlib).")
@model_code_options
@verbose_option
@json_option
def layers(models, data, float_model, keras_model, top, by_own, samples, preset, mean, std, csv_path, plot_path,
           custom_objects, trust_model_code, as_json):
    """Per-layer error of INT8 MODELS (.tflite and/or .onnx) against their float twins.

    For each quantized tensor: SQNR with the whole model in INT8 (accumulated), with only that
    layer quantized (own, needs --keras), its grid, its float range and the fraction clipped.

    Example (after `make demo`, which writes out/):

    \b
      edgeact layers out/mnist_cnn_int8.tflite --data examples/mnist/calibration \\
          --keras examples/mnist/mnist_cnn.keras --csv out/layers.csv --plot out/layers.png

    Give the .onnx too (out/mnist_cnn_int8.onnx) for both formats side by side.
    """
    from converters.layer_error.files import LayerJob, measure_layers
    from edgeact.fileio import write_text_atomic
    from edgeact.report.layer_errors import plot_layer_errors, render_layer_csv, render_layer_errors

    check_output_paths(csv_path, plot=plot_path)
    custom = preset or mean or std
    job = LayerJob(models=tuple(models), data=data, float_model=float_model, keras_model=keras_model,
                   preprocessing=make_preprocessing(preset or Preset.UNIT.value, floats(mean), floats(std))
                   if custom else None, samples=samples,
                   keras_code=make_model_code(custom_objects, trust_model_code) if keras_model else None)
    report = measure_layers(job)
    click.echo(dumps_json(report.to_dict()) if as_json else render_layer_errors(report, top, by_own))
    if csv_path:
        write_text_atomic(csv_path, render_layer_csv(report))
        click.echo(f"wrote {csv_path}", err=True)
    if plot_path:
        click.echo(f"wrote {plot_layer_errors(report, plot_path)}", err=True)
