"""`edgeact profile`: accuracy, agreement with the float reference, and speed of converted models."""
from __future__ import annotations

from pathlib import Path

import click

from .cli import _floats, json_option, preprocess_options
from .cli_device import device_options, make_device_options
from .fileio import check_output_file
from .remote.ssh import DevicesFailedError
from .config import choices
from .preprocess import Preset, make_preprocessing
from .runtime import RuntimeName
from .targets import Target


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path),
              help="Folder with one subfolder of images per class, or .npz with x (and y labels).")
@click.option("--reference", type=click.Path(path_type=Path),
              help="Float model to compare every row with: .keras/.h5/SavedModel, or a float .tflite/.onnx.")
@click.option("--runs", type=int, default=100, show_default=True, help="Timed inferences per model.")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed inferences before timing.")
@click.option("--threads", type=int, help="Runtime threads per model [default: the runtime's own].")
@click.option("--runtime", "runtimes", type=click.Choice(choices(RuntimeName)), multiple=True,
              help="Runtime; repeat to compare several [default: first installed of litert, "
                   "tflite-runtime, tf-lite for .tflite; onnxruntime for .onnx].")
@click.option("--delegate", help="xnnpack, none, edgetpu, or the path of a delegate library "
                                 "[default: xnnpack; edgetpu for Coral targets].")
@click.option("--streams", type=int, default=1, show_default=True,
              help="Throughput mode: N interpreters in N threads, reporting images per second.")
@click.option("--target", type=click.Choice(choices(Target)), default=Target.DESKTOP.value, show_default=True,
              help="Device the numbers are for; its runtime, delegate and INT8 needs are checked.")
@preprocess_options
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate at most N samples of --data (random subset).")
@click.option("--isolate", is_flag=True,
              help="Run each model in a child process: a runtime crash becomes an error, memory is per model.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path, dir_okay=False), help="Also write a CSV file.")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write a Markdown table.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also draw the latency distributions to FILE.png (needs matplotlib).")
@click.option("--progress/--no-progress", default=None, help="Progress bars [default: when stderr is a terminal].")
@click.option("--device", "devices", multiple=True, metavar="[USER@]HOST[:PORT]",
              help="Measure on this device over SSH (its own Python and runtime); repeat for several, "
                   "profiled concurrently; 'local' is this machine.")
@device_options
@json_option
def profile(models, data, reference, runs, warmup, threads, runtimes, delegate, streams, target, preset, mean,
            std, limit, isolate, csv_path, markdown_path, plot_path, progress, devices, device_python,
            device_timeout, device_cache, ssh_options, as_json):
    """Profile converted MODELS (.tflite, .onnx): latency, throughput, memory, accuracy on --data and
    agreement with the float --reference, one row per model.

    Example: edgeact profile out/mnist_int8.tflite out/mnist_fp32.tflite --data test_images/
    --reference mnist.keras --runs 200 --warmup 20 --threads 2

    On a Raspberry Pi: add --device pi@raspberrypi.local (check it first with edgeact device check).
    """
    from .fileio import write_text_atomic
    from .profile_report import render_csv, render_json, render_markdown, render_profile
    from .profile_session import ProfileOptions, profile_models
    from .runtime import check_delegate

    for path in (csv_path, markdown_path, plot_path):
        if path:
            check_output_file(path)  # before anything is measured
    if plot_path:
        from .plot import check_plot

        check_plot(plot_path)
    custom = preset or mean or std
    options = ProfileOptions(
        data=data, reference=reference, runs=runs, warmup=warmup, threads=threads, runtimes=tuple(runtimes),
        delegate=check_delegate(delegate) if delegate else None, streams=streams, target=Target(target),
        preprocessing=make_preprocessing(preset or Preset.UNIT.value, _floats(mean), _floats(std)) if custom else None,
        limit=limit, isolate=isolate, progress=progress, devices=tuple(devices),
        device_options=make_device_options(device_python, device_timeout, device_cache, ssh_options)
        if devices else None,
    )
    from .speed_verdict import add_speed_verdicts, render_speed

    report = add_speed_verdicts(profile_models(list(models), options))
    click.echo(render_json(report) if as_json else render_profile(report) + render_speed(report))
    for path, render in ((csv_path, render_csv), (markdown_path, render_markdown)):
        if path:
            write_text_atomic(path, render(report))
            click.echo(f"wrote {path}", err=True)
    if plot_path:
        from .plot import plot_latencies

        click.echo(f"wrote {plot_latencies(report, plot_path)}", err=True)
    if report.get("errors"):  # results from the other devices are printed above
        raise DevicesFailedError("; ".join(report["errors"]))
