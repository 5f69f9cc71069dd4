"""`edgeact convert`: a Keras model to INT8 TFLite and ONNX, with the report that proves it."""
from __future__ import annotations

import warnings
from pathlib import Path

import click

from edgeact.config import (
    ONNX_WEIGHT_LEVELS,
    CalibrationMethod,
    Format,
    Int8Steps,
    IOType,
    LayerErrorMode,
    OnnxLayout,
    choices,
)
from edgeact.data.preprocess import make_preprocessing
from edgeact.errors import EdgeactWarning, InputError
from edgeact.fileio import dumps_json
from edgeact.targets import Target

from .options import (
    SHAPE_METAVAR,
    budget_options,
    floats,
    json_option,
    make_model_code,
    model_code_options,
    parse_input_shapes,
    preprocess_options,
    print_warnings,
    verbose_option,
)


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-c", "--calibration", required=True,
              help="Image folder (JPEG/PNG, recursive), .npy/.npz file, or 'random' (smoke tests only).")
@click.option("-o", "--output", "output_dir", type=click.Path(path_type=Path), default=Path("out"),
              show_default=True, help="Output folder.")
@click.option("-f", "--format", "formats", type=click.Choice(choices(Format)), multiple=True,
              help="Output format; repeat for several [default: tflite].")
@preprocess_options
@click.option("--io", "io_type", type=click.Choice(choices(IOType)), default=IOType.INT8.value, show_default=True,
              help="Input/output type of the INT8 model.")
@click.option("--samples", type=click.IntRange(min=1), default=200, show_default=True, help="Calibration samples.")
@click.option("--holdout", type=click.IntRange(min=0), default=100, show_default=True,
              help="Further samples held out to verify the INT8 model.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sample selection.")
@click.option("--labels", type=click.Path(path_type=Path, dir_okay=False), help="Text file, one class label per line.")
@click.option("--name", help="Base name of the outputs [default: the model file's name].")
@click.option("--no-fuse", is_flag=True, help="Skip the graph passes (BatchNorm folding, activation fusion).")
@click.option("--calibration-method", type=click.Choice(choices(CalibrationMethod)), default="minmax",
              show_default=True, help="ONNX activation range method.")
@click.option("--percentile", type=float, default=99.999, show_default=True,
              help="Percentile for --calibration-method percentile, in (0, 100].")
@click.option("--onnx-layout", type=click.Choice(choices(OnnxLayout)), default="nhwc", show_default=True,
              help="Input layout of the ONNX models.")
@click.option("--target", type=click.Choice(choices(Target)),
              help="Device the model is for: sets the ONNX weight bits, the threads of the timed loop, the formats "
                   "and interface that run there, a TFLite batch fixed to 1, and (Coral) the Edge TPU pre-flight "
                   "and compile [default: a Raspberry Pi-class ARM CPU].")
@click.option("--onnx-weight-bits", type=click.Choice([str(b) for b in ONNX_WEIGHT_LEVELS]),
              help="ONNX INT8 weight range: 8 bits for ARM (Raspberry Pi) and VNNI CPUs, 7 for x86-64 without VNNI, "
                   "whose ONNX Runtime kernels saturate 8-bit weights [default: the --target's; 8 without one].")
@click.option("--opset", type=click.IntRange(min=13, max=18), default=17, show_default=True,
              help="ONNX opset (tf2onnx 1.17 writes 13 to 18).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar=SHAPE_METAVAR,
              help="Fix an open input size, without the batch axis: 224,224,3 (an image), 1000,4 (a sequence); "
                   "repeat with NAME= for several inputs.")
@click.option("--tolerance", "tolerances", multiple=True, metavar="KEY=VALUE",
              help="Override a check threshold: top1, cosine, sqnr, rel-diff, float-sqnr, float-rel-diff.")
@click.option("--output-kind", "output_kinds", multiple=True, metavar="NAME=KIND",
              help="Judge an output as class_scores or dense instead of the detected kind.")
@click.option("--layer-error", type=click.Choice(choices(LayerErrorMode)), default=LayerErrorMode.ALWAYS.value,
              show_default=True,
              help="Per-layer INT8 error in the report: always, only when an INT8 check fails (auto), never.")
@click.option("--int8-steps", type=click.Choice(choices(Int8Steps)), default=Int8Steps.AUTO.value,
              show_default=True,
              help="INT8 steps (weight rounding by output error, bias correction, per-tensor activation "
                   "ranges, cross-layer equalization): keep each where the judge samples say it helps (auto), "
                   "all but equalization unjudged (all), or the converters' own (none).")
@budget_options
@model_code_options
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@verbose_option
@json_option
def convert(model, calibration, output_dir, formats, preset, mean, std, io_type, samples, holdout, seed,
            labels, name, no_fuse, calibration_method, percentile, onnx_layout, target, onnx_weight_bits, opset,
            input_shapes, tolerances, output_kinds, layer_error, int8_steps, eval_data, max_drop, min_agreement,
            min_sqnr, min_int8_share, eval_holdout, search_seconds, custom_objects, trust_model_code, force, as_json):
    """Convert a Keras MODEL (.keras, .h5 or SavedModel folder) to full-integer INT8 TFLite and/or ONNX.

    \b
    Example (the bundled MNIST CNN; writes out/mnist_cnn_int8.tflite, its report and more):
      edgeact convert examples/mnist/mnist_cnn.keras -c examples/mnist/calibration \\
        --preprocess unit -o out/

    \b
    With an accuracy budget: top-1 loss on labelled data (class folders or .npz with x and y)
    at most 0.5 points, else every fix with every range method, then float layers, are tried
    (30 % of the data held out to confirm; exit 1 when none meets it; the best model is still written):
      edgeact convert examples/mnist/mnist_cnn.keras -c examples/mnist/calibration \\
        --preprocess unit --eval-data examples/mnist/test_images --max-drop 0.5 -o out/budget/
    """
    from converters import ConvertOptions
    from converters import convert as run_convert
    from converters.budget.search import read_budget
    from edgeact.config import Tolerances
    from edgeact.errors import VerificationError

    if not 0 < percentile <= 100:
        raise InputError(f"--percentile {percentile:g} is outside (0, 100]; give e.g. 99.99")
    options = ConvertOptions(
        formats=tuple(Format(f) for f in formats) or (Format.TFLITE,),
        io_type=IOType(io_type),
        preprocessing=make_preprocessing(preset, floats(mean), floats(std)) if (preset or mean or std) else None,
        samples=samples, holdout=holdout, seed=seed, passes=() if no_fuse else None,
        labels=_read_labels(labels) if labels else None, name=name, force=force,
        calibration_method=CalibrationMethod(calibration_method), percentile=percentile,
        onnx_layout=OnnxLayout(onnx_layout), target=target,
        onnx_weight_bits=int(onnx_weight_bits) if onnx_weight_bits else None, opset=opset,
        input_shapes=parse_input_shapes(input_shapes),
        tolerances=Tolerances().with_overrides(tolerances), output_kinds=_pairs(output_kinds, "--output-kind"),
        layer_error=LayerErrorMode(layer_error), int8_steps=Int8Steps(int8_steps),
        budget=read_budget(max_drop, min_agreement, min_sqnr, eval_data, min_int8_share=min_int8_share,
                           eval_holdout=eval_holdout, search_seconds=search_seconds),
        eval_data=eval_data, model_code=make_model_code(custom_objects, trust_model_code),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EdgeactWarning)
        try:
            report = run_convert(model, calibration, output_dir, options)
        except VerificationError as exc:
            # A flagged conversion still shows its evidence: the whole summary, then the one-line error.
            _emit(exc.report, as_json)
            raise
        finally:
            print_warnings(caught)
    _emit(report, as_json)


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise InputError(f"{option} '{item}' is not NAME=VALUE; give e.g. {option} scores=class_scores")
        pairs[key.strip()] = value.strip()
    return pairs


def _emit(report, as_json: bool) -> None:
    from edgeact.report.render import render_convert_report

    click.echo(dumps_json(report.to_dict()) if as_json else render_convert_report(report))


def _read_labels(path: Path) -> list[str]:
    try:
        labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read labels file {path}: {exc}; give a text file, one label per line") from None
    if not labels:
        raise InputError(f"labels file {path} is empty; give one label per line")
    return labels
