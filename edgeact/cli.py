"""The `edgeact` command line. Commands parse options, call one library function, render its result.

Every EdgeactError becomes a one-line `error: ...` and its exit code in one place,
`EdgeactGroup.invoke`, so the console script and click's CliRunner behave the same.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import click

from . import __version__
from .config import CalibrationMethod, Format, IOType, OnnxLayout, choices
from .errors import EdgeactError, EdgeactWarning, InputError
from .fileio import dumps_json
from .preprocess import Preset, make_preprocessing


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of a table.")(fn)


def _floats(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise InputError(f"'{text}' is not a list of numbers; give e.g. --mean 127.5 or --mean 123.7,116.3,103.5") from None


def preprocess_options(fn):
    """--preprocess / --mean / --std, shared by convert and profile."""
    fn = click.option("--std", help="Per-channel std on 0..255 pixels, e.g. '58.4,57.1,57.4' (custom preprocessing).")(fn)
    fn = click.option("--mean", help="Per-channel mean on 0..255 pixels, e.g. '123.7,116.3,103.5' (custom preprocessing).")(fn)
    fn = click.option("--preprocess", "preset", type=click.Choice([p.value for p in Preset if p is not Preset.CUSTOM]),
                      default=None, help="Preprocessing preset for image pixels [convert default: unit].")(fn)
    return fn


def _print_warnings(caught) -> None:
    for w in caught:
        if issubclass(w.category, EdgeactWarning):
            click.echo(f"warning: {w.message}", err=True)


class EdgeactGroup(click.Group):
    """The boundary where library errors become one line on stderr and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgeactError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=EdgeactGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgeact")
def cli() -> None:
    """Put quantized CNNs on edge devices: convert Keras models to INT8 TFLite and ONNX, inspect
    and profile them on the desktop or on a Raspberry Pi / Coral."""


@cli.command()
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
@click.option("--opset", type=click.IntRange(min=13, max=18), default=17, show_default=True,
              help="ONNX opset (tf2onnx 1.17 writes 13 to 18).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@json_option
def convert(model, calibration, output_dir, formats, preset, mean, std, io_type, samples, holdout, seed,
            labels, name, no_fuse, calibration_method, percentile, onnx_layout, opset, force, as_json):
    """Convert a Keras MODEL (.keras, .h5 or SavedModel folder) to full-integer INT8 TFLite and/or ONNX.

    Example: edgeact convert model.keras -c photos/ --preprocess mobilenet -o out/
    """
    from converters import ConvertOptions, convert as run_convert

    if not 0 < percentile <= 100:
        raise InputError(f"--percentile {percentile:g} is outside (0, 100]; give e.g. 99.99")
    options = ConvertOptions(
        formats=tuple(Format(f) for f in formats) or (Format.TFLITE,),
        io_type=IOType(io_type),
        preprocessing=make_preprocessing(preset or Preset.UNIT.value, _floats(mean), _floats(std)),
        samples=samples, holdout=holdout, seed=seed, passes=() if no_fuse else None,
        labels=_read_labels(labels) if labels else None, name=name, force=force,
        calibration_method=CalibrationMethod(calibration_method), percentile=percentile,
        onnx_layout=OnnxLayout(onnx_layout), opset=opset,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", EdgeactWarning)
        try:
            report = run_convert(model, calibration, output_dir, options)
        finally:
            _print_warnings(caught)
    _emit(report, as_json)


def _emit(report: dict, as_json: bool) -> None:
    from .render import render_convert_report

    click.echo(dumps_json(report) if as_json else render_convert_report(report))


def _read_labels(path: Path) -> list[str]:
    try:
        labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read labels file {path}: {exc}; give a text file, one label per line") from None
    if not labels:
        raise InputError(f"labels file {path} is empty; give one label per line")
    return labels


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@json_option
def inspect(model, as_json):
    """Show the operators, fused activations, tensor types and quantization of a .tflite or .onnx MODEL."""
    from .modelinfo import describe_model
    from .render import render_inspect

    info = describe_model(model)
    click.echo(dumps_json(info) if as_json else render_inspect(info))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="edgeact")


from .cli_profile import profile  # noqa: E402  (at the bottom: it imports the shared options above)
cli.add_command(profile)
from .cli_device import device  # noqa: E402
cli.add_command(device)
from .cli_layers import layers  # noqa: E402
cli.add_command(layers)
