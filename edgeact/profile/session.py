"""One `edgeact profile` run: the data, the float reference, every model on its runtimes, the metrics.

    profile_models(["out/mnist_int8.tflite", "out/mnist_fp32.tflite"],
                   ProfileOptions(data="test_images/", reference="model.keras", runs=200))

Everything the user gave is checked first (models, runtimes, target, data shape, class
folders), so a mistake costs no measuring time. Then each model is measured by
`edgeact.measure.profiler` (in this process, or with `isolate` in a child process running the very
module a device runs), and its outputs are scored here: top-1/top-5 against the labels and
agreement with the reference's outputs on the same inputs. TensorFlow is imported only for
a Keras reference.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeact import __version__
from edgeact.data.preprocess import Preprocessing
from edgeact.data.samples import ModelInput
from edgeact.data.source import DataSource, read_source
from edgeact.errors import InputError, ModelLoadError, RuntimeCrashError, RuntimeUnavailableError
from edgeact.fastpath.speed_verdict import SpeedVerdict, speed_verdicts
from edgeact.formats.limits import check_sample_shape
from edgeact.formats.onnx_model import saturation_note
from edgeact.measure.isolated import run_isolated
from edgeact.measure.profiler import LoopSettings, ModelProfile, profile_model
from edgeact.metrics import agreement, topk_accuracy
from edgeact.report.sidecar import ModelReport, find_report, float_sibling, report_path
from edgeact.runtime import RuntimeName, installed_runtimes, model_format, open_runner, runtimes_for

from .reference import Reference
from .report import DataSummary, DeviceRecord, HostInfo, ProfileReport, ProfileSettings, ReferenceInfo, TargetInfo
from .row import Accuracy, ProfileRow
from .targets import TARGETS, Target, check_target, default_delegate, host_info, host_note

RANDOM_SAMPLES = 64

if TYPE_CHECKING:
    from edgeact.remote.device_profile import DeviceOptions


@dataclass
class ProfileOptions:
    """Everything `profile` can be told; the CLI builds one of these from its options."""

    data: str | Path | None = None  # folder of class subfolders, .npz with x (and y); None: random inputs
    reference: str | Path | None = None  # .keras/.h5/SavedModel, or a float .tflite/.onnx
    runs: int = 100
    warmup: int = 10
    threads: int | None = None
    runtimes: tuple[str, ...] = ()  # empty: the first installed runtime for each model's format
    delegate: str | None = None  # None: the target's default (xnnpack; edgetpu for Coral targets)
    streams: int = 1
    target: Target = Target.DESKTOP
    preprocessing: Preprocessing | None = None  # overrides the models' reports
    limit: int | None = None  # evaluate at most this many samples
    isolate: bool = False  # each model in a child process
    progress: bool | None = None  # None: progress bars when stderr is a terminal
    seed: int = 0
    devices: tuple[str, ...] = ()  # measure there over SSH ("local": this machine); empty: here, in-process
    device_options: DeviceOptions | None = None  # how to reach the devices
    output: str | None = None  # the output scored against labels; None: the one shaped like class scores
    input_shape: tuple[int, ...] | None = None  # sizes of a dynamic ONNX input, without batch
    reference_code: Any = None  # a Keras reference's code (converters.keras.model_code.ModelCode), if it needs any
    chunk_size: int = 64  # --data is evaluated in chunks of this many samples (edgeact.profile.evaluate)
    resume: str | Path | None = None  # the evaluation's checkpoint folder: a second run continues it
    shard: bool = False  # split --data over the --device list instead of evaluating all of it on each


@dataclass
class ModelPlan:
    """One row of the profile: a model on one runtime, and how to feed it."""

    path: Path
    runtime: RuntimeName
    delegate: str
    report: ModelReport | None
    preprocessing: Preprocessing | None
    image_shape: tuple[int, ...]  # the model input without batch, NHWC (the first input's, for several)
    outputs: dict[str, tuple[int, ...]]  # every output's shape without batch, by name
    inputs: dict[str, tuple[int, ...]]  # every input's shape without batch, by name
    scored: str | None  # the output scored against labels (class scores), if any

    @property
    def data_key(self) -> tuple:
        """Plans with the same key are fed the same inputs."""
        if len(self.inputs) > 1:
            return ("named", tuple(sorted(self.inputs.items())), self.preprocessing)
        return (self.image_shape, self.preprocessing)

    @property
    def classes(self) -> int:
        return int(np.prod(self.outputs[self.scored])) if self.scored else 0


def profile_models(models: list[str | Path], options: ProfileOptions | None = None) -> ProfileReport:
    """Measure, score and judge every model: the whole report `edgeact profile` renders.

    The report's `speed` holds the INT8-against-float verdicts of the rows run alike.

    Raises:
        EdgeactError subclasses for bad input, before anything is measured where possible.
    """
    options = options or ProfileOptions()
    target = Target(options.target)
    if not models:
        raise InputError("no model given; pass one or more .tflite/.onnx files")
    # With --data, the timed runs use a few samples and the evaluation is a separate, streamed pass.
    settings = LoopSettings(options.runs, options.warmup, options.threads, None, options.delegate or "xnnpack",
                            options.streams, evaluate=not options.data, input_shape=options.input_shape)
    if options.shard and len(options.devices) < 2:
        raise InputError("--shard splits --data over several devices; give two or more --device, or drop --shard")
    if options.resume is not None and not options.data:
        raise InputError("--resume keeps the evaluation of --data; give --data, or drop --resume")
    plans = plan_models(models, options)
    labels = _common_labels(plans)
    data = read_source(options.data, "--data", labels=labels).subset(options.limit, options.seed) \
        if options.data else None
    for plan in plans:
        _check_data(plan, data, options.output)
    bars = progress_factory(options.progress)
    reference = Reference(options.reference, options.reference_code) if options.reference else None
    inputs_cache: dict = {}
    for plan in plans:
        if plan.data_key not in inputs_cache:
            inputs_cache[plan.data_key] = _model_inputs(plan, data, options, bars)
    measured, device_runs, crashed = [], [], []
    if options.devices:
        device_runs = _measure_on_devices(plans, inputs_cache, settings, options, bars)
        measured = [(plan, profile, run.summary()) for run in device_runs for plan, profile in run.results]
    else:
        for plan in plans:
            inputs = inputs_cache[plan.data_key]
            run_settings = _settings_for(plan, settings, options)
            try:
                measured.append((plan, run_isolated(plan.path, inputs, run_settings) if options.isolate else
                                 profile_model(plan.path, inputs, run_settings, bars), None))
            except RuntimeCrashError as exc:  # the other models' rows are kept; the CLI exits 2 after them
                crashed.append(str(exc))
    # The reference runs after every model is measured: loading TensorFlow for a Keras reference
    # must not weigh on the models' memory or timings.
    reference_outputs = {key: reference.predict(inputs, bars) for key, inputs in inputs_cache.items()} \
        if reference is not None and measured and data is None else {}
    evaluation = _evaluate(plans, data, reference, settings, options, bars, device_runs) \
        if data is not None and measured else None
    rows = []
    for plan, profile, device in measured:
        scored = evaluation.result(next(i for i, p in enumerate(plans) if p is plan),
                                   device["name"] if device else None) if evaluation else None
        row = _row(plan, profile, data, reference_outputs.get(plan.data_key),
                   reference.path.name if reference is not None else "", scored)
        if device is not None:
            row["device"] = device
        # The summary came from another process or a device: typed and checked before any use.
        rows.append(ProfileRow.from_dict(row, f"the profile of {plan.path.name}"))
    devices = [DeviceRecord.from_dict({**run.summary(), "facts_before": run.facts_before,
                                       "facts_after": run.facts_after, "error": run.error},
                                      f"device {run.device}") for run in device_runs]
    return ProfileReport(
        edgeact_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        target=TargetInfo(target.value, TARGETS[target].description),
        host=HostInfo.from_dict(host_info(), "this host"),
        settings=ProfileSettings(options.runs, options.warmup, options.threads, options.streams, options.isolate,
                                 options.limit),
        data=DataSummary.from_dict(data.summary(), "--data") if data else DataSummary("random", RANDOM_SAMPLES, False),
        reference=_describe_reference(reference, reference_outputs, data, plans, evaluation),
        models=rows, devices=devices,
        errors=[d.error for d in devices if d.error] + (evaluation.errors if evaluation else []), crashed=crashed,
        evaluation=evaluation.summary if evaluation else None,
        notes=_notes(target, options, measured, devices, data),
        speed=judge_speed(rows),
    )


def _notes(target: Target, options: ProfileOptions, measured: list, devices: list[DeviceRecord],
           data: DataSource | None) -> list[str]:
    notes = [n for n in (host_note(target),) if n and not options.devices]
    # ORT's CPU kernels on this host may compute a full-range model wrongly (measured here, or with
    # --device local); another device reads its own flags, which this host cannot.
    if not options.devices or "local" in options.devices:  # edgeact.remote.fleet.LOCAL
        onnx_on_cpu = {plan.path for plan, _, _ in measured
                       if model_format(plan.path) == "onnx" and plan.delegate in ("xnnpack", "none")}
        notes += [n for n in (saturation_note(path) for path in sorted(onnx_on_cpu)) if n]
    notes += [f"device {d.name} reported throttling after the run ({d.throttle_flags}): "
              "its numbers are not steady-state" for d in devices if d.throttled]
    if data is None:
        notes.append(f"no --data: timed on {RANDOM_SAMPLES} random inputs; accuracy needs labelled --data")
    return notes


def judge_speed(rows: list[ProfileRow]) -> list[SpeedVerdict]:
    """INT8 against its float sibling for every pair of rows run alike (`edgeact.fastpath.speed_verdict`).

    The sibling is the float file the INT8 model's convert report names, else the one of the
    same name. Where INT8 is slower, the ops its delegate left are found and timed.
    """
    from edgeact.fastpath.op_time import measured_op_times

    return speed_verdicts({"models": [row.to_dict() for row in rows]}, op_times=measured_op_times,
                          sibling=float_sibling)


def _evaluate(plans: list[ModelPlan], data: DataSource, reference: Reference | None, settings: LoopSettings,
              options: ProfileOptions, bars, device_runs: list):
    """The streamed evaluation pass (`edgeact.profile.evaluate`), here or on the devices that were measured."""
    from .evaluate import EvalOptions, evaluate_data

    devices = [run.device for run in device_runs if not run.error] if options.devices else None
    return evaluate_data(plans, data, reference, lambda plan, on_device: _settings_for(plan, settings, options,
                                                                                      on_device),
                         EvalOptions(chunk_size=options.chunk_size, resume=options.resume, shard=options.shard,
                                     isolate=options.isolate, progress=options.progress),
                         bars, devices=devices, device_options=options.device_options)


def _describe_reference(reference: Reference | None, outputs: dict, data: DataSource | None,
                        plans: list[ModelPlan], evaluation=None) -> ReferenceInfo | None:
    """The reference, with its own top-1 on the labels when every model saw the same inputs:
    the float accuracy the summary and the accuracy-latency plot measure INT8 against."""
    if reference is None:
        return None
    described = ReferenceInfo.from_dict(reference.describe(), "--reference")
    scored = {plan.scored for plan in plans}
    if len(outputs) == 1 and len(scored) == 1 and data is not None and data.labels is not None:
        (by_name,) = outputs.values()
        name = scored.pop()
        if name in by_name:
            described.accuracy = Accuracy(**score(by_name[name], data.labels))
    if evaluation is not None and len(evaluation.reference_accuracy) == 1 and len(scored) == 1:
        described.accuracy = Accuracy.from_dict(next(iter(evaluation.reference_accuracy.values())),
                                                "the reference's accuracy")
    return described


def _settings_for(plan: ModelPlan, settings: LoopSettings, options: ProfileOptions,
                  on_device: bool = False) -> LoopSettings:
    # On a device, the runtime is the device's own first installed one unless --runtime named one.
    runtime = plan.runtime.value if not on_device or options.runtimes else None
    return LoopSettings(**{**asdict(settings), "runtime": runtime, "delegate": plan.delegate})


def _measure_on_devices(plans: list[ModelPlan], inputs_cache: dict, settings: LoopSettings,
                        options: ProfileOptions, bars) -> list:
    """Every plan on every --device, devices concurrently, progress streamed from each."""
    from edgeact.remote.fleet import Job, profile_fleet

    jobs = [Job(plan, plan.path, inputs_cache[plan.data_key],
                _settings_for(plan, settings, options, on_device=True)) for plan in plans]
    return profile_fleet(list(options.devices), jobs, options.device_options,
                         edgetpu=TARGETS[Target(options.target)].edgetpu, progress=_device_progress(bars))


def _device_progress(bars):
    """Turn the devices' JSON progress lines into one progress bar per device and step."""
    if bars is None:
        return None
    import threading

    lock, open_bars = threading.Lock(), {}

    def update(device: str, line: dict) -> None:
        with lock:
            key = (device, line.get("progress"))
            bar = open_bars.get(key)
            if bar is None:
                bar = open_bars[key] = bars(f"{device}: {line.get('progress')}", int(line.get("total") or 0))
            bar.update(int(line.get("done", 0)) - bar.n)
            if line.get("done") == line.get("total"):
                bar.close()

    return update


def plan_models(models: list[str | Path], options: ProfileOptions) -> list[ModelPlan]:
    """Check every model, runtime and target requirement; one plan per (model, runtime)."""
    requested = [RuntimeName(r) for r in options.runtimes]
    formats = {}
    for model in models:
        path = Path(model)
        if path.is_dir():
            raise InputError(f"{path} is a folder; give .tflite or .onnx model files")
        if not path.is_file():
            raise InputError(f"model {path} does not exist; check the path")
        formats[path] = model_format(path)
    missing = [r for r in requested if r not in installed_runtimes()]
    if missing:
        from edgeact.runtime.tflite import INSTALL_HINTS

        raise RuntimeUnavailableError(f"runtime '{missing[0].value}' is not installed; {INSTALL_HINTS[missing[0]]}")
    unused = [r.value for r in requested if not any(r in runtimes_for(f) for f in formats.values())]
    if unused:
        raise InputError(f"--runtime {unused[0]} runs none of the given models "
                         f"({', '.join(sorted(set(formats.values())))})")
    delegate = options.delegate or default_delegate(options.target)
    plans = []
    for path, fmt in formats.items():
        report = find_report(path)
        preprocessing = options.preprocessing or (report.preprocessing if report else None)
        inputs, outputs = model_io(path, options.input_shape)
        first = next(iter(inputs.values()))
        image_shape = report.input_shape if report and report.input_shape and len(inputs) == 1 else _nhwc(first)
        for shape in inputs.values():
            check_sample_shape(shape, str(path))  # before 64 random samples or a dataset are made
        scored = scored_output(outputs, options.output, path.name, report.output_kinds if report else None)
        for runtime in _runtimes(fmt, requested):
            check_target(options.target, path, runtime, delegate)
            plans.append(ModelPlan(path, runtime, delegate, report, preprocessing, image_shape, outputs, inputs,
                                   scored))
    return plans


def scored_output(outputs: dict[str, tuple[int, ...]], chosen: str | None, model: str,
                  kinds: dict[str, str] | None = None) -> str | None:
    """The output scored against labels: `--output`, else the only class-score output.

    Class scores: what the model's report judged as such, or without a report, (N, C>=2) shapes.

    None when no output looks like class scores (accuracy is then not computed, agreement still is).
    Raises InputError for an unknown `--output`, or several candidates and no `--output`.
    """
    if chosen is not None:
        if chosen not in outputs:
            raise InputError(f"--output {chosen}: {model} has no such output (outputs: {', '.join(outputs)})")
        return chosen
    candidates = [name for name, shape in outputs.items() if len(shape) == 1 and shape[0] >= 2
                  and (not kinds or kinds.get(name) == "class_scores")]
    if len(outputs) == 1:
        return next(iter(outputs)) if candidates else None
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        return None
    raise InputError(f"{model} has {len(candidates)} outputs shaped like class scores ({', '.join(candidates)}); "
                     f"choose the one to score with --output NAME")


def _runtimes(fmt: str, requested: list[RuntimeName]) -> list[RuntimeName]:
    chosen = [r for r in requested if r in runtimes_for(fmt)]
    if chosen:
        return chosen
    installed = installed_runtimes()
    for runtime in runtimes_for(fmt):
        if runtime in installed:
            return [runtime]
    from edgeact.runtime.tflite import INSTALL_HINTS

    raise RuntimeUnavailableError(f"no runtime for .{fmt} models is installed; "
                                  + INSTALL_HINTS[runtimes_for(fmt)[0]])


def model_io(path: Path, input_shape: tuple[int, ...] | None = None
             ) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """The model's inputs' and outputs' shapes without batch, by name, without running it here.

    Read from the checked file (the .tflite flatbuffer with its SignatureDef names, the ONNX
    graph), not from a runtime in edgeact's own process: a model that crashes its runtime
    does so in the child that measures it. A size not known before running is -1.
    """
    if model_format(path) == "tflite":
        from edgeact.formats.tflite_model import read_tflite

        info = read_tflite(path)
        if not info.inputs or not info.outputs:
            raise ModelLoadError(f"{path} has no inputs or outputs; re-export it")
        inputs = {info.io_name(i): tuple(info.tensors[i].shape[1:]) for i in info.inputs}
        outputs = {info.io_name(i): tuple(info.tensors[i].shape[1:]) for i in info.outputs}
    else:
        from edgeact.formats.validate_onnx import declared_io, onnx_available

        declared = declared_io(path) if onnx_available() else None
        if declared is None:
            runner = open_runner(path, input_shape=input_shape)
            declared = ({s.name: list(s.shape) for s in runner.inputs}, {s.name: list(s.shape) for s in runner.outputs})
        inputs = {name: _sized(name, dims[1:], input_shape, path) for name, dims in declared[0].items()}
        outputs = {name: tuple(dims[1:]) for name, dims in declared[1].items()}
    return {k: tuple(int(d) for d in v) for k, v in inputs.items()}, outputs


def _sized(name: str, dims: list[int], given: tuple[int, ...] | None, path: Path) -> tuple[int, ...]:
    """An ONNX input's sizes: dynamic ones from --input-shape (a one-line error without it)."""
    if given is not None:
        if len(given) != len(dims) or any(d > 0 and d != g for d, g in zip(dims, given)):
            raise InputError(f"--input-shape {','.join(map(str, given))} does not fit input '{name}' of {path.name} "
                             f"(batch, {', '.join(str(d) if d > 0 else '?' for d in dims)}); give its sizes "
                             "without the batch axis")
        return tuple(given)
    if any(d <= 0 for d in dims):
        example = ",".join(str(d) if d > 0 else "224" for d in dims)
        raise InputError(f"input '{name}' of {path.name} has dynamic sizes (batch, "
                         f"{', '.join(str(d) if d > 0 else '?' for d in dims)}); set them with --input-shape, "
                         f"e.g. --input-shape {example}")
    return tuple(dims)


def _nhwc(shape: tuple[int, ...]) -> tuple[int, ...]:
    """An NCHW image input (C first, 1 or 3) as (H, W, C); anything else unchanged."""
    if len(shape) == 3 and shape[0] in (1, 3) and shape[2] not in (1, 3):
        return (shape[1], shape[2], shape[0])
    return tuple(shape)


def _common_labels(plans: list[ModelPlan]) -> list[str] | None:
    found = {tuple(p.report.labels) for p in plans if p.report and p.report.labels}
    if len(found) > 1:
        raise InputError("the models' reports list different class labels; profile them in separate runs")
    return list(found.pop()) if found else None


def _check_data(plan: ModelPlan, data: DataSource | None, chosen: str | None) -> None:
    if data is None:
        return
    if data.labels is not None and plan.scored is None:
        raise InputError(f"{plan.path.name} has no output shaped like class scores to score the labels of "
                         f"{data.where} against (outputs: {', '.join(plan.outputs)}); choose one with --output NAME")
    if data.pixels and plan.preprocessing is None:
        raise InputError(f"{plan.path.name} has no report ({report_path(plan.path).name}) to take its "
                         f"preprocessing from, and {data.where} holds pixels; pass --preprocess (or "
                         "--mean/--std) as used in training, or give float model inputs in an .npz")
    data.check(_inputs_of(plan))  # arrays: shapes now; folders are resized to the model
    if plan.scored:
        data.check_classes(plan.classes, plan.path.name)


def _inputs_of(plan: ModelPlan) -> list[ModelInput]:
    """The inputs the data must feed, NHWC: the report's image shape for one input."""
    if len(plan.inputs) > 1:
        return [ModelInput(n, _nhwc(s)) for n, s in plan.inputs.items()]
    return [ModelInput(next(iter(plan.inputs)), tuple(plan.image_shape))]


def _model_inputs(plan: ModelPlan, data: DataSource | None, options: ProfileOptions, bars):
    """Float model inputs: one array (N, H, W, C), or arrays keyed by input name for several inputs."""
    if data is None:
        rng = np.random.default_rng(options.seed)
        if len(plan.inputs) > 1:
            return {i.name: rng.uniform(0, 1, (RANDOM_SAMPLES, *i.shape)).astype(np.float32)
                    for i in _inputs_of(plan)}
        low, high = plan.report.input_range if plan.report and plan.report.input_range else (0.0, 1.0)
        return rng.uniform(low, high, (RANDOM_SAMPLES, *plan.image_shape)).astype(np.float32)
    # The timed runs cycle through the first samples of the data (the profiler's LATENCY_SAMPLES);
    # every sample is scored by the streamed evaluation pass.
    from edgeact.measure.profiler import LATENCY_SAMPLES

    chunk = next(data.iter_chunks(_inputs_of(plan), plan.preprocessing, LATENCY_SAMPLES, chunks=[0]))
    return chunk.arrays if len(plan.inputs) > 1 else chunk.array()


def _row(plan: ModelPlan, profile: ModelProfile, data: DataSource | None,
         reference: dict[str, np.ndarray] | None, reference_name: str, evaluated=None) -> dict:
    """The summary, accuracy on the scored output, and agreement with the reference for every output
    (from the streamed evaluation's `evaluated` result when --data was given)."""
    row = dict(profile.summary)
    row["report"] = str(plan.report.path) if plan.report else None
    row["preprocessing"] = plan.preprocessing.preset if plan.preprocessing else None
    row["scored_output"] = plan.scored
    if evaluated is not None:
        row["accuracy"], row["agreement"] = evaluated.accuracy, evaluated.agreement
        row["samples_evaluated"] = evaluated.samples
    else:
        scores = profile.outputs.get(plan.scored) if plan.scored else None
        row["accuracy"] = score(scores, data.labels) if scores is not None and data is not None \
            and data.labels is not None else None
        row["agreement"] = compare_all(reference, profile.outputs, plan.path.name, reference_name) \
            if reference is not None and profile.outputs else None
    primary = plan.scored or next(iter(profile.outputs or row["agreement"] or {}), None)
    row["reference"] = row["agreement"].get(primary) if row["agreement"] and primary else None
    return row


def score(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1 and top-5 accuracy (top-5 only for more than 5 classes)."""
    classes = int(np.prod(scores.shape[1:]))
    return {"top1": topk_accuracy(scores, labels, 1),
            "top5": topk_accuracy(scores, labels, 5) if classes > 5 else None,
            "samples": int(len(labels))}


def compare_all(reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray], name: str,
                reference_name: str) -> dict[str, dict]:
    """Agreement of every output with the reference's output of the same name; InputError on a name mismatch."""
    missing = [n for n in outputs if n not in reference]
    if missing:
        raise InputError(f"{name} has an output '{missing[0]}' that the reference {reference_name} lacks (its "
                         f"outputs: {', '.join(reference)}); outputs are matched by name: give the float model "
                         "these were converted from")
    return {n: compare(reference[n], outputs[n], name) for n in outputs}


def compare(reference: np.ndarray, candidate: np.ndarray, name: str) -> dict:
    """Agreement of one output with the reference's on the same inputs."""
    if reference.size != candidate.size:
        raise InputError(f"the reference's output {tuple(reference.shape[1:])} does not match {name}'s "
                         f"{tuple(candidate.shape[1:])}; give the float model these were converted from")
    return agreement(reference, candidate.reshape(reference.shape)).to_dict()


def progress_factory(enabled: bool | None):
    """`make(description, total)` -> a tqdm bar on the terminal, or None when bars are off."""
    from edgeact.quiet import console

    if enabled is False or (enabled is None and not console().isatty()):
        return None
    from tqdm import tqdm

    def make(description: str, total: int):
        return tqdm(total=total, desc=description, file=console(), leave=False, unit="img")

    return make
