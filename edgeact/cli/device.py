"""`edgeact device check HOST`: a doctor for a device reached over SSH."""
from __future__ import annotations

import json
import shlex

import click

from edgeact.config import Format, choices
from edgeact.remote.device_profile import DeviceOptions
from edgeact.remote.doctor import DeviceCheck, check_device
from edgeact.report.table import mark

from .options import verbose_option


def device_options(fn):
    """How to reach devices: shared by `device check` and `profile --device`."""
    fn = click.option("--ssh-option", "ssh_options", multiple=True, metavar="ARG",
                      help="Extra argument for ssh, e.g. '-F ~/.ssh/lab_config' or '-o Port=2222'; repeatable.")(fn)
    fn = click.option("--device-cache", default=DeviceOptions.cache_dir, show_default=True,
                      help="Cache folder on the device (relative to its home), for models, inputs and the runner.")(fn)
    fn = click.option("--device-timeout", type=click.FloatRange(min=1), default=1800, show_default=True,
                      help="Seconds any one remote command may take.")(fn)
    fn = click.option("--device-python", default="python3", show_default=True,
                      help="Python interpreter on the device (e.g. a venv's bin/python).")(fn)
    return fn


def make_device_options(device_python: str, device_timeout: float, device_cache: str,
                        ssh_options: tuple[str, ...]) -> DeviceOptions:
    args = [part for option in ssh_options for part in shlex.split(option)]
    return DeviceOptions(python=device_python, ssh_options=tuple(args), timeout=device_timeout,
                         cache_dir=device_cache)


@click.group(invoke_without_command=True)
@click.pass_context
def device(ctx: click.Context) -> None:
    """Devices reached over SSH (Raspberry Pi, Coral Dev Board, any Linux board)."""
    if ctx.invoked_subcommand is None:  # `edgeact device` alone asks for help, as `edgeact` alone does
        click.echo(ctx.get_help())


@device.command()
@click.argument("host")
@device_options
@click.option("--edgetpu", is_flag=True, help="Also require the Coral Edge TPU library.")
@click.option("--format", "formats", type=click.Choice(choices(Format)), multiple=True,
              help="Model formats to run there; repeatable [default: tflite].")
@verbose_option
@click.option("--json", "as_json", is_flag=True, help="Print the facts and findings as JSON.")
def check(host, device_python, device_timeout, device_cache, ssh_options, edgetpu, formats, as_json):
    """Check that HOST ([user@]host[:port] or an ssh config alias) can run `edgeact profile`.

    Prints the device's facts and, for each missing piece, the command that installs it;
    exits non-zero when the device cannot run a profile.

    Example: edgeact device check pi@raspberrypi.local
    """
    result = check_device(host, make_device_options(device_python, device_timeout, device_cache, ssh_options),
                          edgetpu, tuple(formats))
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else render_check(result))
    if not result.can_profile:
        raise click.exceptions.Exit(1)


def render_check(result: DeviceCheck) -> str:
    """The device's facts, one line per finding with its fix, and the verdict."""
    facts = result.facts
    temps = ", ".join(f"{k} {v:.1f} C" for k, v in (facts.get("temperature_c") or {}).items())
    lines = [f"{result.device}: {facts.get('model') or facts.get('cpu_model')}, {facts.get('arch')}, "
             f"{facts.get('cpu_count')} cores, {facts.get('os')}",
             f"governor {facts.get('governor') or 'unknown'}; temperature {temps or 'unknown'}"]
    for f in result.findings:
        symbol = {"ok": mark(True), "missing": mark(False)}.get(f.status, "!")
        lines.append(f"{symbol} {f.item}: {f.detail}" + (f"\n    fix: {f.fix}" if f.fix else ""))
    ready = result.can_profile
    lines.append(f"{mark(ready)} {'ready to profile' if ready else 'cannot run a profile yet'}")
    return "\n".join(lines)
