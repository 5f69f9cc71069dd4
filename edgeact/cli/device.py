"""`edgeact device check HOST`: a doctor for a device reached over SSH."""
from __future__ import annotations

import json
import shlex

import click

from edgeact.config import Format, choices
from edgeact.remote import parse_device
from edgeact.remote.device_profile import DeviceOptions, DeviceSession
from edgeact.remote.doctor import can_profile, diagnose
from edgeact.report.table import mark


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
@click.option("--json", "as_json", is_flag=True, help="Print the facts and findings as JSON.")
def check(host, device_python, device_timeout, device_cache, ssh_options, edgetpu, formats, as_json):
    """Check that HOST ([user@]host[:port] or an ssh config alias) can run `edgeact profile`.

    Prints the device's facts and, for each missing piece, the command that installs it;
    exits non-zero when the device cannot run a profile.

    Example: edgeact device check pi@raspberrypi.local
    """
    spec = parse_device(host)
    options = make_device_options(device_python, device_timeout, device_cache, ssh_options)
    with DeviceSession(spec, options) as session:
        facts = session.facts()
    findings = diagnose(facts, edgetpu, tuple(formats) or ("tflite",))
    ok = can_profile(findings)
    if as_json:
        click.echo(json.dumps({"device": str(spec), "facts": facts, "findings": [f.to_dict() for f in findings],
                               "can_profile": ok}, indent=2))
    else:
        click.echo(f"{spec}: {facts.get('model') or facts.get('cpu_model')}, {facts.get('arch')}, "
                   f"{facts.get('cpu_count')} cores, {facts.get('os')}")
        temps = ", ".join(f"{k} {v:.1f} C" for k, v in (facts.get("temperature_c") or {}).items())
        click.echo(f"governor {facts.get('governor') or 'unknown'}; temperature {temps or 'unknown'}")
        for f in findings:
            symbol = {"ok": mark(True), "missing": mark(False)}.get(f.status, "!")
            click.echo(f"{symbol} {f.item}: {f.detail}" + (f"\n    fix: {f.fix}" if f.fix else ""))
        click.echo(f"{mark(ok)} {'ready to profile' if ok else 'cannot run a profile yet'}")
    if not ok:
        raise click.exceptions.Exit(1)
