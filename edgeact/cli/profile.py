"""`edgeact profile`: accuracy, agreement with the float reference, and speed of converted models."""
from __future__ import annotations

from pathlib import Path

import click

from edgeact.config import choices
from edgeact.data.preprocess import Preset, make_preprocessing
from edgeact.errors import InputError, RuntimeCrashError
from edgeact.profile.render import column_names
from edgeact.profile.targets import Target, target_from_reports
from edgeact.remote.ssh import DevicesFailedError
from edgeact.runtime import RuntimeName

from .device import device_options, make_device_options
from .options import (
    Count,
    check_output_paths,
    floats,
    json_option,
    make_model_code,
    model_code_options,
    parse_shape,
    preprocess_options,
    verbose_option,
)


def _shape(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    name, dims = parse_shape(text)  # the grammar convert's --input-shape reads too
    if name is not None:
        raise InputError(f"--input-shape '{text}': profile sets the sizes of each model's one dynamic input; "
                         f"drop '{name}=' and give {','.join(map(str, dims))}")
    return dims


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path),
              help="Folder with one subfolder of images per class, or .npz with x (and y labels).")
@click.option("--reference", type=click.Path(path_type=Path),
              help="Float model to compare every row with: .keras/.h5/SavedModel, or a float .tflite/.onnx.")
@click.option("--runs", type=Count(1, "at least 1 timed run"), default=100, show_default=True,
              help="Timed inferences per model.")
@click.option("--warmup", type=Count(0, "0 or more warm-up runs"), default=10, show_default=True,
              help="Untimed inferences before timing.")
@click.option("--threads", type=Count(1, "at least 1 thread"),
              help="Runtime threads per model [default: the runtime's own].")
@click.option("--runtime", "runtimes", type=click.Choice(choices(RuntimeName)), multiple=True,
              help="Runtime; repeat to compare several [default: first installed of litert, "
                   "tflite-runtime, tf-lite for .tflite; onnxruntime for .onnx].")
@click.option("--delegate", help="xnnpack, none, edgetpu, or the path of a delegate library "
                                 "[default: xnnpack; edgetpu for Coral targets].")
@click.option("--streams", type=Count(1, "at least 1 stream"), default=1, show_default=True,
              help="Throughput mode: N interpreters in N threads, reporting images per second.")
@click.option("--target", type=click.Choice(choices(Target)),
              help="Device the numbers are for; its runtime, delegate and INT8 needs are checked "
                   "[default: the target the models' convert report names, else desktop].")
@preprocess_options
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate at most N samples of --data (random subset).")
@click.option("--chunk-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="--data is streamed in chunks of N samples: memory does not grow with the data set.")
@click.option("--resume", "resume", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="Keep the evaluation's finished chunks in DIR; the same command again continues an "
                   "interrupted run (other data or models are refused).")
@click.option("--shard", is_flag=True,
              help="With several --device: split --data over them (contiguous index ranges) and merge the counts.")
@click.option("--input-shape", metavar="D1,D2,...",
              help="Sizes of a model input with dynamic dimensions, without the batch axis (ONNX), e.g. 3,640,640 "
                   "or 1000,4.")
@click.option("--output", "output_name", metavar="NAME",
              help="The output scored against the labels [default: the one output shaped like class scores].")
@click.option("--isolate/--in-process", default=True, show_default=True,
              help="Run each model in a child process: a runtime crash becomes an error, memory is per model.")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path, dir_okay=False), help="Also write a CSV file.")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write a Markdown table.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Also draw the latency distributions to FILE.png, and accuracy against latency to "
                   "FILE_accuracy.png (needs matplotlib).")
@click.option("--wide", is_flag=True, help="Show every column, however wide the terminal.")
@click.option("--columns", "columns_text", metavar="A,B,C",
              help="Show these columns, in this order: " + ",".join(column_names()) + ".")
@click.option("--progress/--no-progress", default=None, help="Progress bars [default: when stderr is a terminal].")
@verbose_option
@click.option("--device", "devices", multiple=True, metavar="[USER@]HOST[:PORT]",
              help="Measure on this device over SSH (its own Python and runtime); repeat for several, "
                   "profiled concurrently; 'local' is this machine.")
@device_options
@model_code_options
@json_option
def profile(models, data, reference, runs, warmup, threads, runtimes, delegate, streams, target, preset, mean,
            std, limit, chunk_size, resume, shard, input_shape, output_name, isolate, csv_path, markdown_path,
            plot_path, wide, columns_text, progress, devices, device_python, device_timeout, device_cache,
            ssh_options, custom_objects,
            trust_model_code, as_json):
    """Profile converted MODELS (.tflite, .onnx): latency, throughput, memory, accuracy on --data and
    agreement with the float --reference, one row per model.

    Example (after `make demo`, which writes out/):

    \b
      edgeact profile out/mnist_cnn_int8.tflite out/mnist_cnn_fp32.tflite \\
        --data examples/mnist/test_images --reference examples/mnist/mnist_cnn.keras \\
        --runs 200 --warmup 20 --threads 2

    The table fits the terminal (100 columns when not a terminal); with one or two models it
    shows one row per metric. --wide or --columns show more; --json, --csv and --markdown keep all.

    On a Raspberry Pi: add --device pi@raspberrypi.local (check it first with edgeact device check).
    """
    from edgeact.fileio import write_text_atomic
    from edgeact.profile.render import (
        TableOptions,
        parse_columns,
        render_csv,
        render_json,
        render_markdown,
        render_profile,
    )
    from edgeact.profile.session import ProfileOptions, profile_models
    from edgeact.report.table import terminal_width
    from edgeact.runtime import check_delegate

    table = TableOptions(width=terminal_width(), wide=wide,
                         columns=parse_columns(columns_text) if columns_text else ())  # a typo costs no run
    check_output_paths(csv_path, markdown_path, plot=plot_path)
    custom = preset or mean or std
    options = ProfileOptions(
        data=data, reference=reference, runs=runs, warmup=warmup, threads=threads, runtimes=tuple(runtimes),
        delegate=check_delegate(delegate) if delegate else None, streams=streams,
        target=Target(target) if target else (target_from_reports(models) or Target.DESKTOP),
        preprocessing=make_preprocessing(preset or Preset.UNIT.value, floats(mean), floats(std)) if custom else None,
        limit=limit, chunk_size=chunk_size, resume=resume, shard=shard, output=output_name,
        input_shape=_shape(input_shape), isolate=isolate, progress=progress,
        devices=tuple(devices),
        device_options=make_device_options(device_python, device_timeout, device_cache, ssh_options)
        if devices else None,
        reference_code=make_model_code(custom_objects, trust_model_code)
        if reference and (custom_objects or trust_model_code) else None,
    )
    report = profile_models(list(models), options)
    click.echo(render_json(report) if as_json else render_profile(report, table))
    for path, render in ((csv_path, render_csv), (markdown_path, render_markdown)):
        if path:
            write_text_atomic(path, render(report))
            click.echo(f"wrote {path}", err=True)
    if plot_path:
        from edgeact.profile.plot import plot_accuracy_vs_latency, plot_latencies

        click.echo(f"wrote {plot_latencies(report, plot_path)}", err=True)
        accuracy_plot = plot_accuracy_vs_latency(report, plot_path)
        if accuracy_plot:
            click.echo(f"wrote {accuracy_plot}", err=True)
    if report.crashed:  # the other models' rows are printed above
        raise RuntimeCrashError("; ".join(report.crashed))
    if report.errors:  # results from the other devices are printed above
        raise DevicesFailedError("; ".join(report.errors))
