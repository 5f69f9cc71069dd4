"""Options and helpers shared by the commands: defined once, imported by each command module."""
from __future__ import annotations

import click

from edgeact.data.preprocess import Preset
from edgeact.errors import EdgeactWarning, InputError


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of a table.")(fn)


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
    fn = click.option("--min-sqnr", type=float, default=None, metavar="DB",
                      help="Accuracy budget: output SQNR against float, in dB (any single output).")(fn)
    fn = click.option("--min-agreement", type=float, default=None, metavar="FRACTION",
                      help="Accuracy budget: top-1 agreement with float, e.g. 0.99 (no labels needed).")(fn)
    fn = click.option("--max-drop", type=float, default=None, metavar="PP",
                      help="Accuracy budget: top-1 points lost against float on labelled --eval-data, e.g. 0.5. "
                      "A missed budget starts a search: range methods, equalization, bias correction, "
                      "then float layers.")(fn)
    fn = click.option("--eval-data", type=click.Path(), default=None,
                      help="Labelled data for the budget: class folders or .npz with x and y "
                      "[default: the held-out calibration samples].")(fn)
    return fn


def print_warnings(caught) -> None:
    for w in caught:
        if issubclass(w.category, EdgeactWarning):
            click.echo(f"warning: {w.message}", err=True)
