"""Options and helpers shared by the commands: defined once, imported by each command module."""
from __future__ import annotations

import re

import click

from edgeact.data.preprocess import Preset
from edgeact.errors import EdgeactWarning, InputError


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of a table.")(fn)


class Count(click.IntRange):
    """A whole number of at least `min` (click.IntRange), refused as the house refuses bad input:
    one line naming the option and the fix, exit 2 (`EdgeactGroup.invoke`), before anything runs.
    The words are `LoopSettings`' own, so a Python caller and the command read the same message."""

    def __init__(self, min: int, what: str) -> None:
        super().__init__(min=min)
        self.what = what  # "at least 1 timed run", "0 or more warm-up runs"

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            option = param.opts[0] if param is not None else "the value"
            shown = value if isinstance(value, int) or str(value).lstrip("-").isdigit() else repr(value)
            raise InputError(f"{option} {shown}: give {self.what}") from None


def _set_verbose(ctx: click.Context, _param, value: bool) -> bool:
    from edgeact.quiet import set_verbose

    # The group resets it on every invocation (CliRunner runs many in one process); a command's
    # own -v only turns it on, so `edgeact -v profile` and `edgeact profile -v` are the same.
    if value or ctx.parent is None:
        set_verbose(value)
    return value


def verbose_option(fn):
    """-v/--verbose, the one switch for the runtimes' own log lines: on the group and every command."""
    return click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=_set_verbose,
                        help="Show the runtimes' own log lines (LiteRT, XNNPACK, ONNX Runtime, TensorFlow), kept "
                             "off the terminal otherwise, and an error's full message.")(fn)


def check_output_paths(*paths, plot=None) -> None:
    """--csv/--markdown/--plot files checked before anything is measured (a typo costs no run)."""
    from edgeact.fileio import check_output_file

    for path in (*paths, plot):
        if path:
            check_output_file(path)
    if plot:
        from edgeact.report.plot import check_plot

        check_plot(plot)


def floats(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise InputError(f"'{text}' is not a list of numbers; give e.g. --mean 127.5 or "
                         "--mean 123.7,116.3,103.5") from None


def preprocess_options(fn):
    """--preprocess / --mean / --std, shared by convert and profile."""
    fn = click.option("--std",
                      help="Per-channel std on 0..255 pixels, e.g. '58.4,57.1,57.4' (custom preprocessing).")(fn)
    fn = click.option("--mean",
                      help="Per-channel mean on 0..255 pixels, e.g. '123.7,116.3,103.5' (custom preprocessing).")(fn)
    fn = click.option("--preprocess", "preset", type=click.Choice([p.value for p in Preset if p is not Preset.CUSTOM]),
                      default=None, help="Preprocessing preset for image pixels [convert default: unit, or none "
                      "for a model with its own Rescaling/Normalization].")(fn)
    return fn


def budget_options(fn):
    """--eval-data and one accuracy budget (--max-drop / --min-agreement / --min-sqnr), for convert."""
    fn = click.option("--search-seconds", type=float, default=None, metavar="S",
                      help="The budget search starts no new attempt after this long, per format [default: 900].")(fn)
    fn = click.option("--eval-holdout", type=float, default=None, metavar="FRACTION",
                      help="Share of the evaluation samples the search does not select on; the chosen model must "
                      "meet the budget on them too [default: 0.3].")(fn)
    fn = click.option("--min-int8-share", type=float, default=None, metavar="FRACTION",
                      help="A budget is met only by a model with at least this share of its conv/dense "
                      "multiply-accumulates in INT8 [default: 0.5].")(fn)
    fn = click.option("--min-sqnr", type=float, default=None, metavar="DB",
                      help="Accuracy budget: output SQNR against float, in dB (any single output).")(fn)
    fn = click.option("--min-agreement", type=float, default=None, metavar="FRACTION",
                      help="Accuracy budget: top-1 agreement with float, e.g. 0.99 (no labels needed).")(fn)
    fn = click.option("--max-drop", type=float, default=None, metavar="PP",
                      help="Accuracy budget: top-1 points lost against float on labelled --eval-data, e.g. 0.5. "
                      "A missed budget starts a search: every fix (equalization, bias correction) with every "
                      "range method, then float layers ranked by what each recovers.")(fn)
    fn = click.option("--eval-data", type=click.Path(), default=None,
                      help="Labelled data for the budget: class folders or .npz with x and y "
                      "[default: the held-out calibration samples].")(fn)
    return fn


def print_warnings(caught) -> None:
    for w in caught:
        if issubclass(w.category, EdgeactWarning):
            click.echo(f"warning: {w.message}", err=True)


# One grammar for every --input-shape: sizes without the batch axis, comma- or x-separated, any
# rank (224,224,3 for an image, 1000,4 for a sequence), optionally NAME= for a multi-input model.
_SHAPE = re.compile(r"^(?:([^=]+)=)?\s*(\d+(?:\s*[,x]\s*\d+)*)\s*$")
SHAPE_METAVAR = "[NAME=]D1,D2,..."


def parse_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    """`224,224,3`, `1000,4`, `224x224x3` or `image=224,224,3` -> (name or None, sizes); InputError otherwise."""
    match = _SHAPE.match(text or "")
    if not match:
        raise InputError(f"--input-shape '{text}' is not a shape; give the sizes without the batch axis, e.g. "
                         "224,224,3 (an image), 1000,4 (a sequence) or image=224,224,3")
    name = match.group(1).strip() if match.group(1) else None
    dims = tuple(int(d) for d in re.split(r"\s*[,x]\s*", match.group(2)))
    if any(d < 1 or d > 65536 for d in dims):
        raise InputError(f"--input-shape '{text}' has a size outside 1..65536")
    return name, dims


def parse_input_shapes(values) -> dict[str | None, tuple[int, ...]]:
    """Repeated `--input-shape [NAME=]D1,D2,...` to {name or None: sizes}."""
    return dict(parse_shape(value) for value in values or ())


def model_code_options(fn):
    """--custom-objects / --trust-model-code: the Python code a Keras model file needs (convert, layers, profile)."""
    fn = click.option("--trust-model-code", is_flag=True,
                      help="Load Lambda layers: runs the Python code stored in the model file (Keras' safe mode "
                      "off). Only for files you trust.")(fn)
    fn = click.option("--custom-objects", "custom_objects", multiple=True, metavar="FILE.py|MODULE",
                      help="Python file or module defining the model's custom layer classes (repeatable).")(fn)
    return fn


def make_model_code(custom_objects, trust_model_code: bool):
    """The host side's ModelCode for the options above (imported only when a Keras model is loaded)."""
    from converters.keras.model_code import ModelCode

    return ModelCode(custom_objects=tuple(str(c) for c in custom_objects), trust_model_code=bool(trust_model_code))
