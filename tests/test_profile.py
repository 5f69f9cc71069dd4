"""The profiling library: latency statistics, metrics, the loop, eval data, reports, targets."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from edgeact.data.preprocess import make_preprocessing
from edgeact.data.samples import ModelInput
from edgeact.data.source import read_source
from edgeact.errors import InputError
from edgeact.measure.profiler import (
    LoopSettings,
    MemoryProbe,
    fit_inputs,
    latency_stats,
    profile_model,
    time_invocations,
)
from edgeact.profile.render import CSV_KEYS, render_csv, render_json, render_markdown, render_profile
from edgeact.profile.session import ProfileOptions, compare, profile_models, score
from edgeact.profile.targets import Target, check_target
from edgeact.report.sidecar import find_report, report_name, report_path
from edgeact.runtime import IOSpec, open_runner
from tests.helpers import only, write_class_folders


@pytest.fixture(scope="module")
def labelled(pixels_npy, tmp_path_factory):
    """The conftest's 80 smooth 16x16 RGB images with arbitrary labels 0..3, as .npz and as folders."""
    pixels = np.load(pixels_npy)[:40]
    labels = np.arange(40) % 4
    root = tmp_path_factory.mktemp("labelled")
    np.savez(root / "data.npz", x=pixels, y=labels)
    write_class_folders(root / "folders", pixels, labels, ["cat", "dog", "eel", "fox"])
    return root, pixels, labels


# --- latency statistics and metrics, against numbers worked out by hand or directly in numpy -------

def test_latency_stats_from_known_timings():
    stats = latency_stats([float(v) for v in range(10, 0, -1)])  # 10, 9, ..., 1 ms
    assert stats["runs"] == 10
    assert stats["mean"] == pytest.approx(5.5)
    assert stats["std"] == pytest.approx(math.sqrt(8.25))  # population std of 1..10
    assert (stats["min"], stats["max"]) == (1.0, 10.0)
    # linear interpolation between order statistics: p90 sits 0.1 of the way from 9 to 10
    assert stats["p50"] == pytest.approx(5.5)
    assert stats["p90"] == pytest.approx(9.1)
    assert stats["p99"] == pytest.approx(9.91)


def test_latency_stats_single_value_and_empty():
    assert latency_stats([2.0]) == {"runs": 1, "mean": 2.0, "std": 0.0, "min": 2.0,
                                    "p50": 2.0, "p90": 2.0, "p99": 2.0, "max": 2.0}
    with pytest.raises(ValueError):
        latency_stats([])


def test_accuracy_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 200)
    top1 = np.mean([np.argmax(s) == y for s, y in zip(scores, labels)])
    top5 = np.mean([y in np.argsort(-s)[:5] for s, y in zip(scores, labels)])
    got = score(scores, labels)
    assert got["top1"] == pytest.approx(top1) and got["top5"] == pytest.approx(top5)
    assert got["samples"] == 200
    assert score(scores[:, :4], labels % 4)["top5"] is None  # top-5 of 4 classes says nothing


def test_agreement_matches_a_direct_computation():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(50, 10))
    candidate = reference + rng.normal(scale=0.1, size=reference.shape)
    candidate[0] = reference[0]
    got = compare(reference, candidate, "m")
    cosines = [a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(reference, candidate)]
    assert got["cosine"] == pytest.approx(np.mean(cosines))
    assert got["sqnr_db"] == pytest.approx(10 * math.log10((reference**2).sum() / ((reference - candidate)**2).sum()))
    assert got["top1_agreement"] == pytest.approx(np.mean(reference.argmax(1) == candidate.argmax(1)))
    assert got["max_abs_diff"] == pytest.approx(np.abs(reference - candidate).max())
    with pytest.raises(InputError, match="does not match"):
        compare(reference, candidate[:, :5], "m")


# --- the loop --------------------------------------------------------------------------------------

class FakeRunner:
    """Counts what the loop does; invoke takes a known 2 ms."""

    def __init__(self):
        self.written, self.invokes = [], 0

    def write_input(self, sample):
        self.written.append(int(sample[0]))

    def invoke(self):
        self.invokes += 1
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass


def test_time_invocations_times_only_the_runs_and_cycles_through_the_inputs():
    runner = FakeRunner()
    times = time_invocations(runner, np.arange(3)[:, None], runs=7, warmup=2)
    assert len(times) == 7 and runner.invokes == 9
    assert runner.written == [0, 1, 0, 1, 2, 0, 1, 2, 0]  # warm-up, then the timed runs from the start
    assert np.all(times >= 2.0) and np.median(times) < 20  # ms, each one invoke


def test_fit_inputs_transposes_for_nchw_and_refuses_other_shapes():
    x = np.zeros((2, 8, 6, 3), np.float32)
    assert fit_inputs(x, IOSpec("in", (1, 8, 6, 3), np.dtype(np.float32))) is x
    assert fit_inputs(x, IOSpec("in", (1, 3, 8, 6), np.dtype(np.float32))).shape == (2, 3, 8, 6)
    with pytest.raises(InputError, match=r"shape \(8, 6, 3\) but the model input 'in' takes \(28, 28, 1\)"):
        fit_inputs(x, IOSpec("in", (1, 28, 28, 1), np.dtype(np.float32)))


def test_profile_model_measures_and_returns_the_same_outputs_as_predict(converted_small):
    out, _ = converted_small
    x = np.random.default_rng(2).uniform(0, 1, (20, 16, 16, 3)).astype(np.float32)
    profile = profile_model(out / "small_cnn_int8.tflite", x, LoopSettings(runs=30, warmup=3, threads=1))
    s = profile.summary
    assert s["latency_ms"]["runs"] == 30 and len(s["timings_ms"]) == 30
    assert 0 < s["latency_ms"]["min"] <= s["latency_ms"]["p50"] <= s["latency_ms"]["max"]
    assert s["init_ms"] > 0 and s["cold_ms"] > 0 and s["throughput_ips"] > 0
    assert s["runtime"] == "litert" and s["delegate"] == "xnnpack" and s["threads"] == 1
    assert s["memory"]["peak_rss_mb"] >= s["memory"]["rss_before_mb"] > 0
    assert s["samples_evaluated"] == 20
    expected = only(open_runner(out / "small_cnn_int8.tflite").predict(x))
    np.testing.assert_array_equal(only(profile.outputs), expected)
    json.dumps(s)  # JSON-able as it is, for a device to send back


def test_single_stream_throughput_counts_the_timed_runs_only(converted_small):
    out, _ = converted_small
    x = np.random.default_rng(2).uniform(0, 1, (4, 16, 16, 3)).astype(np.float32)
    s = profile_model(out / "small_cnn_int8.tflite", x, LoopSettings(runs=20, warmup=400, evaluate=False)).summary
    per_invoke = 1000 / s["latency_ms"]["mean"]
    # wall time of the timed loop: the invokes plus an input copy each, not the 400 warm-up runs
    assert 0.2 * per_invoke < s["throughput_ips"] <= 1000 / s["latency_ms"]["min"]


def test_streams_share_the_runs_and_report_images_per_second(converted_small):
    out, _ = converted_small
    x = np.random.default_rng(2).uniform(0, 1, (4, 16, 16, 3)).astype(np.float32)
    s = profile_model(out / "small_cnn_int8.tflite", x,
                      LoopSettings(runs=41, warmup=2, threads=2, streams=2, evaluate=False)).summary
    assert s["streams"]["streams"] == 2 and s["streams"]["threads_per_stream"] == 1
    assert s["streams"]["inferences"] == 41 and s["streams"]["latency_ms"]["runs"] == 41
    assert s["throughput_ips"] == s["streams"]["images_per_s"] > 0
    assert s["latency_ms"]["runs"] == 41  # the single-stream latency is measured as well


@pytest.mark.parametrize("field, value, message", [
    ("runs", 0, "--runs 0"), ("warmup", -1, "--warmup -1"), ("streams", 0, "--streams 0"),
    ("threads", 0, "--threads 0"),
])
def test_loop_settings_refuse_nonsense(field, value, message):
    with pytest.raises(InputError, match=message):
        LoopSettings(**{field: value})


def test_memory_probe_resets_the_peak_per_model():
    import mmap

    def touched(mb: int) -> mmap.mmap:  # fresh pages from the OS, unlike malloc which may reuse freed ones
        block = mmap.mmap(-1, mb << 20)
        block.write(b"\1" * (mb << 20))
        return block

    touched(40).close()
    probe = MemoryProbe()
    probe.start()
    block = touched(8)
    result = probe.stop()
    block.close()
    if result["method"].startswith("VmHWM"):
        assert 7 < result["growth_mb"] < 20  # the 8 MB since start(), not the 40 MB before it
    assert result["peak_rss_mb"] >= result["rss_before_mb"] > 0


def test_profiler_module_runs_as_a_script(converted_small, tmp_path):
    """What a device runs (issue #5): .npy/.npz in, JSON and .npz out, JSON lines on stderr."""
    import subprocess
    import sys

    out, _ = converted_small
    np.save(tmp_path / "in.npy", np.random.default_rng(0).uniform(0, 1, (5, 16, 16, 3)).astype(np.float32))

    def profiler(*args):
        return subprocess.run([sys.executable, "-m", "edgeact.measure.profiler", *map(str, args)],
                              capture_output=True, text=True, cwd=Path(__file__).parent.parent)

    done = profiler(out / "small_cnn_int8.tflite", tmp_path / "in.npy", "-o", tmp_path / "result", "--runs", 9,
                    "--progress")
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "result.json").read_text())
    assert summary["latency_ms"]["runs"] == 9
    assert np.load(tmp_path / "result.npz")["output_0"].shape == (5, 4)
    progress = [json.loads(line) for line in done.stderr.splitlines()]
    assert {"progress": "small_cnn_int8.tflite: timing", "done": 9, "total": 9} in progress
    done = profiler(tmp_path / "in.npy", tmp_path / "in.npy", "-o", tmp_path / "result")
    assert done.returncode == 2
    assert json.loads(done.stderr) == {"error": f"{tmp_path / 'in.npy'} is not a .tflite or .onnx model; "
                                                "give one written by edgeact convert", "type": "InputError"}


# --- model reports and evaluation data -----------------------------------------------------------

@pytest.mark.parametrize("model, name", [
    ("out/mnist_int8.tflite", "mnist"), ("out/mnist_fp32.tflite", "mnist"), ("out/mnist_int8.onnx", "mnist"),
    ("out/mnist_int8_edgetpu.tflite", "mnist"), ("out/plain.tflite", "plain"), ("out/my_int8_net.onnx", "my_int8_net"),
])
def test_report_name(model, name):
    assert report_name(model) == name
    assert report_path(model) == Path("out") / f"{name}.edgeact.json"


def test_find_report_reads_preprocessing_and_shape(converted_small, tmp_path):
    out, _ = converted_small
    report = find_report(out / "small_cnn_int8.tflite")
    assert report.preprocessing.preset == "unit" and report.input_shape == (16, 16, 3)
    assert report.labels is None and report.input_range is not None
    (tmp_path / "x.tflite").write_bytes(b"")
    assert find_report(tmp_path / "x.tflite") is None
    (tmp_path / "x.edgeact.json").write_text("{not json")
    with pytest.raises(InputError, match="not a readable edgeact report"):
        find_report(tmp_path / "x.tflite")


def read_eval_data(path, labels=None, limit=None):
    """profile's reading of --data: the one reader, with class folders, and a seeded subset."""
    return read_source(path, "--data", labels=labels).subset(limit)


IMAGE16 = [ModelInput("image", (16, 16, 3))]


def test_folder_classes_in_sorted_order_or_in_the_order_of_the_labels(labelled):
    root, pixels, labels = labelled
    data = read_eval_data(root / "folders")
    assert data.class_names == ["cat", "dog", "eel", "fox"] and data.pixels and len(data) == 40
    decoded = data.samples(IMAGE16, make_preprocessing("none")).array()
    by_file = {f.name: (img, lab) for f, img, lab in zip(data.files, decoded, data.labels)}
    assert all(np.array_equal(by_file[f"img_{i:03d}.png"][0], pixels[i]) for i in range(40))
    assert all(by_file[f"img_{i:03d}.png"][1] == labels[i] for i in range(40))
    reordered = read_eval_data(root / "folders", labels=["fox", "eel", "dog", "cat"])
    assert reordered.class_names == ["fox", "eel", "dog", "cat"]
    assert sorted(set(reordered.labels.tolist())) == [0, 1, 2, 3]
    assert np.array_equal(reordered.labels, 3 - data.labels)


def test_folder_names_must_match_the_model_labels(labelled):
    root, _, _ = labelled
    with pytest.raises(InputError, match=r"class folders \['eel', 'fox'\] .* not among the model's labels"):
        read_eval_data(root / "folders", labels=["cat", "dog", "emu", "fly"])


def test_class_count_must_match_the_model_output(labelled):
    root, _, _ = labelled
    data = read_eval_data(root / "folders")
    with pytest.raises(InputError, match="4 class folders but m.tflite outputs 10 classes"):
        data.check_classes(10, "m.tflite")


def test_npz_labels_pixels_and_floats(labelled, tmp_path):
    root, pixels, labels = labelled
    data = read_eval_data(root / "data.npz")
    assert data.pixels and np.array_equal(data.labels, labels)
    unit = make_preprocessing("unit")
    np.testing.assert_allclose(data.samples(IMAGE16, unit).array(), pixels / 255.0, rtol=1e-6)
    np.savez(tmp_path / "f.npz", x=pixels.astype(np.float32) * 3, y=np.eye(4)[labels])
    floats = read_eval_data(tmp_path / "f.npz")
    assert not floats.pixels and np.array_equal(floats.labels, labels)  # one-hot labels
    np.testing.assert_array_equal(floats.samples(IMAGE16, unit).array(), pixels * 3.0)  # fed as is
    with pytest.raises(InputError, match=r"samples of shape \(16, 16, 3\) but the model input 'image' takes "
                                         r"\(28, 28, 1\)"):
        data.check([ModelInput("image", (28, 28, 1))])
    subset = read_eval_data(root / "data.npz", limit=7)
    assert len(subset) == 7 and len(subset.samples(IMAGE16, unit)) == 7
    # the subset keeps each sample's own label
    kept = subset.samples(IMAGE16, make_preprocessing("none")).array()
    rows = [int(np.flatnonzero((pixels == k).all(axis=(1, 2, 3)))[0]) for k in kept]
    assert np.array_equal(subset.labels, labels[rows])


@pytest.mark.parametrize("contents, message", [
    ({"x": np.zeros((3, 4, 4, 1), np.int32)}, "dtype int32"),
    ({"a": np.zeros((3, 4, 4, 1), np.uint8), "b": np.zeros((3, 4, 4, 1), np.uint8)}, "name the samples 'x'"),
    ({"x": np.zeros((3, 4, 4, 1), np.uint8), "y": np.zeros(2, np.int64)}, "2 labels for 3 samples"),
    ({"x": np.full((3, 4, 4, 1), np.nan, np.float32)}, "NaN"),
])
def test_bad_npz_data(tmp_path, contents, message):
    np.savez(tmp_path / "bad.npz", **contents)
    with pytest.raises(InputError, match=message):
        read_eval_data(tmp_path / "bad.npz").check([ModelInput("image", (4, 4, 1))])


# --- targets ---------------------------------------------------------------------------------------

def test_targets_check_runtime_delegate_and_edgetpu_needs(converted_small):
    out, _ = converted_small
    int8, fp32 = out / "small_cnn_int8.tflite", out / "small_cnn_fp32.tflite"
    check_target(Target.DESKTOP, fp32, "tf-lite", "none")
    check_target(Target.RPI4, int8, "litert", "xnnpack")
    with pytest.raises(InputError, match="target rpi5 .* needs runtime litert or tflite-runtime or onnxruntime"):
        check_target(Target.RPI5, int8, "tf-lite", "xnnpack")
    with pytest.raises(InputError, match="full-integer INT8 model"):
        check_target(Target.CORAL_USB, fp32, "litert", "edgetpu")
    with pytest.raises(InputError, match="run edgetpu_compiler"):
        check_target(Target.CORAL_USB, int8, "litert", "edgetpu")
    with pytest.raises(InputError, match="--delegate edgetpu"):
        check_target(Target.CORAL_DEVBOARD, int8, "litert", "xnnpack")


# --- a whole profile --------------------------------------------------------------------------------

def test_profile_models_scores_against_labels_and_reference(converted_small, labelled):
    out, _ = converted_small
    root, pixels, labels = labelled
    report = profile_models([out / "small_cnn_int8.tflite"], ProfileOptions(
        data=root / "data.npz", reference=out / "small_cnn_fp32.tflite", runs=10, warmup=1, progress=False))
    row = report["models"][0]
    x = pixels / np.float32(255)
    int8 = only(open_runner(out / "small_cnn_int8.tflite").predict(x))
    fp32 = only(open_runner(out / "small_cnn_fp32.tflite").predict(x))
    assert row["accuracy"]["top1"] == pytest.approx(np.mean(int8.argmax(1) == labels))
    assert row["reference"]["top1_agreement"] == pytest.approx(np.mean(int8.argmax(1) == fp32.argmax(1)))
    assert row["reference"]["max_abs_diff"] == pytest.approx(np.abs(int8 - fp32).max(), rel=1e-5)
    assert row["preprocessing"] == "unit" and row["report"].endswith("small_cnn.edgeact.json")
    assert report["data"]["samples"] == 40 and report["reference"]["kind"] == "tflite"


def test_isolated_run_gives_the_same_outputs(converted_small, labelled):
    out, _ = converted_small
    root, _, _ = labelled
    options = dict(data=root / "data.npz", runs=5, warmup=1, progress=False)
    inside = profile_models([out / "small_cnn_int8.tflite"], ProfileOptions(**options))["models"][0]
    isolated = profile_models([out / "small_cnn_int8.tflite"], ProfileOptions(isolate=True, **options))["models"][0]
    assert isolated["accuracy"] == inside["accuracy"]
    assert isolated["latency_ms"]["runs"] == 5


def test_isolated_crash_becomes_an_error(converted_small, tmp_path, monkeypatch):
    import edgeact.measure.isolated as isolated

    out, _ = converted_small
    crasher = tmp_path / "python"
    crasher.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crasher.chmod(0o755)
    monkeypatch.setattr(isolated.sys, "executable", str(crasher))
    report = profile_models([out / "small_cnn_int8.tflite"], ProfileOptions(runs=2, warmup=0, isolate=True,
                                                                           progress=False))
    assert report["models"] == []
    crashed = f"the runtime crashed on {out / 'small_cnn_int8.tflite'} (signal 11, SIGSEGV)"
    assert report["crashed"][0].startswith(crashed)


def test_pixels_without_a_report_need_preprocessing(converted_small, labelled, tmp_path):
    out, _ = converted_small
    root, _, _ = labelled
    lone = tmp_path / "lone.tflite"
    lone.write_bytes((out / "small_cnn_int8.tflite").read_bytes())
    with pytest.raises(InputError, match="no report .* pass --preprocess"):
        profile_models([lone], ProfileOptions(data=root / "data.npz", runs=2, progress=False))
    report = profile_models([lone], ProfileOptions(data=root / "data.npz", runs=2, progress=False,
                                                   preprocessing=make_preprocessing("unit")))
    assert report["models"][0]["preprocessing"] == "unit"


def test_renderers_share_the_json_keys(converted_small, labelled):
    out, _ = converted_small
    root, _, _ = labelled
    report = profile_models([out / "small_cnn_int8.tflite", out / "small_cnn_fp32.tflite"], ProfileOptions(
        data=root / "data.npz", reference=out / "small_cnn_fp32.tflite", runs=5, warmup=0, progress=False))
    parsed = json.loads(render_json(report))  # strict JSON: fp32 vs itself has an infinite SQNR
    assert parsed["models"][1]["reference"]["sqnr_db"] == "inf"
    lines = render_csv(report).splitlines()
    assert lines[0].split(",") == CSV_KEYS and len(lines) == 3
    assert render_markdown(report).count("| small_cnn_") == 2
    table = render_profile(report)
    assert "small_cnn_int8.tflite" in table and "top-1 agreement w/ ref" in table
