"""The evaluation pass of `profile --data`: every sample once through every model, streamed in chunks.

    evaluation = evaluate_data(plans, data, reference, settings, EvalOptions(chunk_size=256, resume="state/"))

The data is read by `DataSource.iter_chunks` (decoded by a thread pool ahead of the model), each
chunk goes through every model that takes the same inputs (in a child process running the chunk
server, in this process with `--in-process`, or on a device over SSH) and through the reference,
is scored by `edgeact.profile.tally`, and its scores are written to a checkpoint folder (the
`--resume` folder, or a temporary one); then the chunk is dropped. Memory is the model, a few
chunks and the per-sample scores, whatever the size of the data set.

- Timing is not done here: the profiler's timed runs measure latency before this pass, on
  samples of the data, undisturbed by decoding. This pass reports its own rate (images/s).
- Resume: the checkpoint folder records the data's and models' fingerprint and one file per
  finished chunk and model; a second run with the same folder evaluates only the missing chunks,
  and merging in chunk order gives the numbers of an uninterrupted run. Other data, models or
  options are refused in one line.
- Shards: with several devices and `shard`, the chunks are split into contiguous index ranges,
  one per device; each device evaluates its own and the merged counts equal the unsharded ones.
  A device that drops out leaves its missing chunks for the next run with the same folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeact.data.stream import DEFAULT_CHUNK, chunk_ranges, fingerprint
from edgeact.errors import EdgeactError, InputError

from .tally import AgreementTally, accuracy_part, accuracy_result, agreement_part, pack, tail_size, unpack

CHECKPOINT_VERSION = 1


@dataclass
class EvalOptions:
    chunk_size: int = DEFAULT_CHUNK
    resume: str | Path | None = None  # the checkpoint folder; None: a temporary one
    shard: bool = False  # split the chunks over the devices instead of evaluating all on each
    workers: int | None = None  # decoding threads (None: edgeact.data.stream.decode_workers())
    isolate: bool = True  # local models in a child process (the chunk server)
    progress: bool | None = None  # None: a bar on a terminal, one line per chunk otherwise


@dataclass
class PlanResult:
    """One model's (or one model on one device's) scores and evaluation rate."""

    accuracy: dict | None = None
    agreement: dict | None = None
    samples: int = 0
    complete: bool = False


@dataclass
class Evaluation:
    results: dict = field(default_factory=dict)  # (plan index, device or None) -> PlanResult
    reference_accuracy: dict = field(default_factory=dict)  # group index -> accuracy dict
    lanes: list[dict] = field(default_factory=list)  # per device (or this machine): chunks, samples, rate
    errors: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    def result(self, index: int, device: str | None) -> PlanResult | None:
        return self.results.get((index, device)) or self.results.get((index, None))


# -- checkpoint ----------------------------------------------------------------------------------
class Checkpoint:
    """A folder of finished chunks: `state.json` (the fingerprint) and `KEY.CHUNK.npz` per model and chunk."""

    def __init__(self, folder: Path, identity: dict, option: str = "--resume") -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise InputError(f"{option} {self.folder} is a file; give a folder for the evaluation's state")
        self.folder.mkdir(parents=True, exist_ok=True)
        state = self.folder / "state.json"
        if state.exists():
            try:
                saved = json.loads(state.read_text())
            except ValueError:
                raise InputError(f"{option} {self.folder}: state.json is not edgeact's; give an empty folder") from None
            changed = [k for k in identity if saved.get(k) != identity[k]]
            if changed:
                raise InputError(f"{option} {self.folder} holds an evaluation of other {_what(changed[0])}; give the "
                                 f"same --data, models and options to continue it, or a new folder")
        else:
            _write_atomic(state, (json.dumps(identity, indent=1) + "\n").encode())

    def path(self, key: str, index: int) -> Path:
        return self.folder / f"{key}.{index:06d}.npz"

    def done(self, key: str, index: int) -> bool:
        return self.path(key, index).exists()

    def save(self, key: str, index: int, arrays: dict[str, np.ndarray]) -> None:
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        _write_atomic(self.path(key, index), buffer.getvalue())

    def load(self, key: str, index: int) -> dict[str, np.ndarray]:
        with np.load(self.path(key, index), allow_pickle=False) as loaded:
            return {name: loaded[name] for name in loaded.files}


def _what(key: str) -> str:
    return {"data": "data (files, sizes or labels differ)", "models": "models (a file, runtime or delegate differs)",
            "reference": "reference model", "chunk_size": "chunk size (--chunk-size)",
            "preprocessing": "preprocessing"}.get(key, key)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for item in files:
        with open(item, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def identity(plans, data, reference, options: EvalOptions) -> dict:
    """What a checkpoint is of: the data, the models (file hash, runtime, delegate), preprocessing, chunking."""
    return {
        "version": CHECKPOINT_VERSION,
        "data": fingerprint(data),
        "samples": len(data),
        "models": [f"{_sha256(p.path)}:{p.runtime.value}:{p.delegate}:{p.scored}" for p in plans],
        "preprocessing": [repr(p.preprocessing.to_dict() | {"description": ""}) if p.preprocessing else None
                          for p in plans],
        "reference": _sha256(reference.path) if reference is not None else None,
        "chunk_size": int(options.chunk_size),
    }


# -- evaluators: where a model runs on a chunk -----------------------------------------------------
class _InProcess:
    def __init__(self, plan, settings) -> None:
        from edgeact.runtime import open_runner

        self.runner = open_runner(plan.path, settings.runtime, settings.threads, settings.delegate,
                                  settings.input_shape)

    def run(self, inputs):
        from edgeact.measure.serve import evaluate_chunk

        start = time.perf_counter()
        outputs = evaluate_chunk(self.runner, inputs)
        return outputs, time.perf_counter() - start

    def close(self) -> None:
        pass


class _Served:
    def __init__(self, client, wire=None, finish=None) -> None:
        self.client, self.wire, self.finish = client, wire, finish

    def run(self, inputs):
        return self.client.run(self.wire(inputs) if self.wire else inputs)

    def close(self) -> None:
        self.client.close()
        if self.finish is not None:
            self.finish()
        elif hasattr(self.client, "wait"):
            self.client.wait()


# -- the pass ------------------------------------------------------------------------------------
def evaluate_data(plans: list, data, reference, settings_for, options: EvalOptions, bars=None,
                  devices: list[str] | None = None, device_options=None) -> Evaluation:
    """Every plan on every sample of `data`, streamed; scores merged from the checkpoint in chunk order.

    Args:
        plans: `edgeact.profile.session.ModelPlan`s; plans with the same `data_key` share chunks.
        settings_for: `settings_for(plan, on_device)` -> the plan's LoopSettings.
        devices: where to evaluate (`local`, or `[user@]host[:port]`); None: this machine.
    Raises:
        InputError for a checkpoint of other data; the first error of a local evaluation. A device's
        error is kept in `Evaluation.errors`, with the other devices' results.
    """
    if options.chunk_size < 1:
        raise InputError(f"--chunk-size {options.chunk_size}: give at least 1 sample per chunk")
    total = len(data)
    chunks = len(chunk_ranges(total, options.chunk_size))
    holder = None
    if options.resume is None:
        holder = tempfile.TemporaryDirectory(prefix="edgeact-eval-")
        folder = Path(holder.name)
    else:
        folder = Path(options.resume)
    try:
        checkpoint = Checkpoint(folder, identity(plans, data, reference, options))
        groups: dict[Any, list[int]] = {}
        for index, plan in enumerate(plans):
            groups.setdefault(plan.data_key, []).append(index)
        lanes = _lanes(devices, chunks, options.shard)
        evaluation = Evaluation()
        reference_lock = threading.Lock()
        context = _Context(plans, data, reference, reference_lock, settings_for, options, checkpoint, bars,
                           list(groups.values()), device_options, total)
        if len(lanes) == 1:
            evaluation.lanes.append(_run_lane(context, *lanes[0], raise_errors=devices is None))
        else:
            outcome: list = [None] * len(lanes)

            def work(k):
                outcome[k] = _run_lane(context, *lanes[k], raise_errors=False)

            threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(len(lanes))]
            for thread in threads:
                thread.start()
            try:
                for thread in threads:
                    thread.join()
            except KeyboardInterrupt:  # end every chunk server now; the finished chunks stay in the folder
                from edgeact.remote.ssh import kill_running_commands

                kill_running_commands()
                raise
            evaluation.lanes.extend(outcome)
        evaluation.errors = [lane["error"] for lane in evaluation.lanes if lane.get("error")]
        _merge(context, evaluation, lanes, chunks)
        evaluation.summary = {
            "chunk_size": options.chunk_size, "chunks": chunks, "samples": total,
            "checkpoint": str(folder) if options.resume is not None else None, "sharded": bool(options.shard),
            "lanes": evaluation.lanes,
            "timing": "latency from the profiler's timed runs, before this pass and without decoding; "
                      "images_per_s is this pass's rate, decoding included",
        }
        return evaluation
    finally:
        if holder is not None:
            holder.cleanup()


def _lanes(devices: list[str] | None, chunks: int, shard: bool) -> list[tuple[str | None, list[int], bool]]:
    """(device, chunk indices, keyed per device) for every worker: all chunks each, or contiguous shards."""
    if not devices:
        return [(None, list(range(chunks)), False)]
    if not shard or len(devices) == 1:
        return [(device, list(range(chunks)), len(devices) > 1) for device in devices]
    bounds = np.linspace(0, chunks, len(devices) + 1).round().astype(int)
    return [(device, list(range(bounds[k], bounds[k + 1])), False) for k, device in enumerate(devices)]


@dataclass
class _Context:
    plans: list
    data: Any
    reference: Any
    reference_lock: threading.Lock
    settings_for: Any
    options: EvalOptions
    checkpoint: Checkpoint
    bars: Any
    groups: list[list[int]]
    device_options: Any
    total: int


def _key(index: int, device: str | None, per_device: bool) -> str:
    if not per_device or device is None:
        return f"model{index}"
    return f"model{index}-{hashlib.sha1(device.encode()).hexdigest()[:10]}"


def _inputs_of(plan):
    from .session import _inputs_of

    return _inputs_of(plan)


def _run_lane(ctx: _Context, device: str | None, indices: list[int], per_device: bool,
              raise_errors: bool) -> dict:
    """Evaluate these chunks on one device (or here); returns the lane's rate and error."""
    lane = {"device": device or "here", "chunks": len(indices), "chunks_done_before": 0, "samples": 0,
            "wall_s": 0.0, "invoke_s": 0.0, "images_per_s": None, "error": None}
    session = None
    try:
        if device is not None and device != "local":
            from edgeact.remote.device_profile import DeviceSession
            from edgeact.remote.target import parse_device

            session = DeviceSession(parse_device(device), ctx.device_options)
        for group in ctx.groups:
            _run_group(ctx, group, device, session, indices, per_device, lane)
    except EdgeactError as exc:
        if raise_errors:
            raise
        lane["error"] = str(exc)
    finally:
        if session is not None:
            session.close()
    if lane["wall_s"] > 0 and lane["samples"]:
        lane["images_per_s"] = lane["samples"] / lane["wall_s"]
    return lane


def _open(ctx: _Context, plan, device: str | None, session):
    if session is not None:
        from edgeact.remote.fleet import wire_inputs

        client = session.serve(plan.path, ctx.settings_for(plan, True))
        multi = len(plan.inputs) > 1
        return _Served(client, None if multi else (lambda x, p=plan.path: wire_inputs(p, x)), client.finish)
    settings = ctx.settings_for(plan, device is not None)
    if ctx.options.isolate and device is None:
        from edgeact.measure.serve import spawn_server

        return _Served(spawn_server(plan.path, settings), _child_wire(plan))
    return _InProcess(plan, settings)


def _child_wire(plan):
    """Quantize here for an int8 .tflite input (a quarter of the bytes through the pipe), as for a device.

    Not for a uint8 (pixel-in) input: the chunk server turns floats into its pixels itself.
    """
    if len(plan.inputs) > 1 or plan.path.suffix.lower() != ".tflite":
        return None
    from edgeact.remote.fleet import input_spec, wire_inputs

    try:
        if input_spec(plan.path).dtype != np.int8:
            return None
    except EdgeactError:
        return None
    return lambda x: wire_inputs(plan.path, x)


def _run_group(ctx: _Context, group: list[int], device, session, indices: list[int], per_device: bool,
               lane: dict) -> None:
    plans = [ctx.plans[i] for i in group]
    keys = {i: _key(i, device, per_device) for i in group}
    reference_key = f"reference{group[0]}"
    need_reference = ctx.reference is not None and ctx.data.labels is not None and plans[0].scored is not None
    todo = [k for k in indices if not all(ctx.checkpoint.done(keys[i], k) for i in group)
            or (need_reference and not ctx.checkpoint.done(reference_key, k))]
    lane["chunks_done_before"] += len(indices) - len(todo)
    if not todo:
        return
    ranges = chunk_ranges(ctx.total, ctx.options.chunk_size)
    samples_todo = sum(ranges[k][1] - ranges[k][0] for k in todo)
    name = ", ".join(p.path.name for p in plans)
    progress = _Progress(f"{device + ': ' if device else ''}evaluating {name}", samples_todo, len(todo),
                         ctx.bars, ctx.options.progress)
    evaluators = {}
    tails: dict[tuple[int, str], int] = {}
    try:
        for i, plan in zip(group, plans):
            evaluators[i] = _open(ctx, plan, device, session)
        group_start = time.perf_counter()
        for chunk in ctx.data.iter_chunks(_inputs_of(plans[0]), plans[0].preprocessing, ctx.options.chunk_size,
                                          chunks=todo, workers=ctx.options.workers):
            inputs = chunk.arrays if len(plans[0].inputs) > 1 else chunk.array()
            ref_out = None
            if ctx.reference is not None:
                with ctx.reference_lock:  # one float interpreter, shared by the devices' threads
                    ref_out = ctx.reference.predict(inputs)
                if need_reference and not ctx.checkpoint.done(reference_key, chunk.index):
                    ctx.checkpoint.save(reference_key, chunk.index,
                                        pack({"acc": accuracy_part(ref_out[plans[0].scored], chunk.labels)}))
            for i, plan in zip(group, plans):
                if ctx.checkpoint.done(keys[i], chunk.index):
                    continue
                outputs, invoke_s = evaluators[i].run(inputs)
                lane["invoke_s"] += invoke_s
                ctx.checkpoint.save(keys[i], chunk.index,
                                    pack(_score(plan, outputs, chunk, ref_out, ctx, tails, i)))
            lane["samples"] += len(chunk)
            progress.update(len(chunk))
    finally:
        if "group_start" in locals():
            lane["wall_s"] += time.perf_counter() - group_start
        progress.close()
        for evaluator in evaluators.values():
            try:
                evaluator.close()
            except EdgeactError:
                pass


def _score(plan, outputs: dict, chunk, ref_out: dict | None, ctx: _Context, tails: dict, index: int) -> dict:
    parts = {}
    if plan.scored and chunk.labels is not None:
        parts["acc"] = accuracy_part(outputs[plan.scored], chunk.labels)
    if ref_out is not None:
        missing = [n for n in outputs if n not in ref_out]
        if missing:
            raise InputError(f"{plan.path.name} has an output '{missing[0]}' that the reference "
                             f"{ctx.reference.path.name} lacks (its outputs: {', '.join(ref_out)}); outputs are "
                             "matched by name: give the float model these were converted from")
        for name, candidate in outputs.items():
            ref = np.asarray(ref_out[name])
            if ref.size != candidate.size:
                raise InputError(f"the reference's output {tuple(ref.shape[1:])} does not match {plan.path.name}'s "
                                 f"{tuple(candidate.shape[1:])}; give the float model these were converted from")
            if (index, name) not in tails:
                tails[(index, name)] = tail_size(ctx.total * int(ref[0].size))
            parts[f"agreement|{name}"] = agreement_part(ref, candidate.reshape(ref.shape), tails[(index, name)])
    return parts


def _merge(ctx: _Context, evaluation: Evaluation, lanes, chunks: int) -> None:
    """Every model's scores from the checkpoint, chunk by chunk in order (one part in memory at a time)."""
    keyed = {}
    for device, _, per_device in lanes:
        for index in range(len(ctx.plans)):
            keyed[(index, device if per_device else None)] = _key(index, device, per_device)
    for (index, device), key in keyed.items():
        plan = ctx.plans[index]
        missing = [k for k in range(chunks) if not ctx.checkpoint.done(key, k)]
        if missing:
            evaluation.results[(index, device)] = PlanResult(samples=0, complete=False)
            evaluation.errors.append(
                f"{plan.path.name}{' on ' + device if device else ''}: {len(missing)} of {chunks} chunks not "
                "evaluated; run the same command again with --resume DIR to finish them"
                if ctx.options.resume is None else
                f"{plan.path.name}{' on ' + device if device else ''}: {len(missing)} of {chunks} chunks not "
                f"evaluated; run the same command again (--resume {ctx.options.resume}) to finish them")
            continue
        accuracy_parts, tallies = [], {}
        for k in range(chunks):
            parts = unpack(ctx.checkpoint.load(key, k))
            if "acc" in parts:
                accuracy_parts.append(parts["acc"])
            for group, part in parts.items():
                if group.startswith("agreement|"):
                    name = group.split("|", 1)[1]
                    if name not in tallies:
                        tallies[name] = AgreementTally(tail_size(int(ctx.total * part["ref_emin"].size)))
                    tallies[name].add(part)
        evaluation.results[(index, device)] = PlanResult(
            accuracy=accuracy_result(accuracy_parts, plan.classes) if accuracy_parts else None,
            agreement={name: tally.result().to_dict() for name, tally in tallies.items()} or None,
            samples=ctx.total, complete=True)
    for group in ctx.groups:
        key = f"reference{group[0]}"
        if all(ctx.checkpoint.done(key, k) for k in range(chunks)) and chunks:
            parts = [unpack(ctx.checkpoint.load(key, k))["acc"] for k in range(chunks)]
            evaluation.reference_accuracy[group[0]] = accuracy_result(parts, ctx.plans[group[0]].classes)


class _Progress:
    """A tqdm bar (rate, ETA) on a terminal; one log line per chunk otherwise (for more than one chunk);
    nothing with --no-progress."""

    def __init__(self, description: str, total: int, chunks: int, bars, enabled: bool | None) -> None:
        self.description, self.total, self.chunks = description, total, chunks
        self.done, self.chunk, self.start = 0, 0, time.perf_counter()
        self.bar = bars(description, total) if bars is not None else None
        # A log gets a line per chunk only for a pass of several: one chunk needs no progress report.
        self.lines = self.bar is None and enabled is None and chunks > 1

    def update(self, n: int) -> None:
        self.done += n
        self.chunk += 1
        if self.bar is not None:
            self.bar.update(n)
        elif self.lines:
            from edgeact.quiet import console

            elapsed = time.perf_counter() - self.start
            rate = self.done / elapsed if elapsed > 0 else 0.0
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            console().write(f"{self.description}: chunk {self.chunk}/{self.chunks}, {self.done}/{self.total} "
                            f"samples, {rate:.1f} img/s, ETA {eta:.0f} s\n")
            console().flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
