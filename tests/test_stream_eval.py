"""Issue 24: `profile --data` streamed in bounded memory, resumable, sharded; recomputed here independently."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeact.cli import cli
from edgeact.data.source import read_source
from edgeact.metrics import agreement, topk_accuracy
from edgeact.profile.tally import AgreementTally, agreement_part, tail_size

from .helpers import chunk_parts

ROOT = Path(__file__).resolve().parents[1]


def profile(*args):
    return CliRunner().invoke(cli, ["profile", *[str(a) for a in args], "--no-progress", "--json"])


def write_folder(folder: Path, count: int, classes: int = 4, size: int = 32, seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        (folder / f"c{c}").mkdir(parents=True, exist_ok=True)
    base = rng.integers(0, 256, size=(16, 4, 4, 3)).astype(np.uint8)
    for i in range(count):
        pixels = np.repeat(np.repeat(base[i % 16], size // 4, axis=0), size // 4, axis=1)
        noisy = np.clip(pixels.astype(int) + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"c{i % classes}" / f"{i:05d}.jpg", quality=85)
    return folder


@pytest.fixture(scope="module")
def wide_model(keras, tmp_path_factory):
    """A 64x64x3 input (so a decoded, preprocessed image weighs 48 KB), 5 classes, INT8."""
    from converters import ConvertOptions, convert

    layers = keras.layers
    keras.utils.set_random_seed(3)
    inputs = keras.Input((64, 64, 3), name="image")
    x = layers.Conv2D(4, 3, strides=4, activation="relu")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(5, activation="softmax")(x), name="wide")
    folder = tmp_path_factory.mktemp("wide")
    model.save(folder / "wide.keras")
    rng = np.random.default_rng(1)
    np.save(folder / "calib.npy", rng.integers(0, 256, size=(30, 64, 64, 3), dtype=np.uint8))
    convert(folder / "wide.keras", folder / "calib.npy", folder, ConvertOptions(samples=20, holdout=10,
                                                                                 progress=False))
    return folder / "wide_int8.tflite", folder / "wide.keras"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    rng = np.random.default_rng(5)
    base = rng.integers(0, 256, size=(300, 4, 4, 3)).astype(np.float32)
    x = np.repeat(np.repeat(base, 4, axis=1), 4, axis=2).astype(np.uint8)
    path = tmp_path_factory.mktemp("eval") / "eval.npz"
    np.savez(path, x=x, y=rng.integers(0, 4, size=300))
    return path


# -- the tallies against edgeact.metrics on the whole set ---------------------------------------------------
@pytest.mark.parametrize("quantized", [True, False])
def test_chunked_agreement_equals_the_whole_set(quantized):
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(700, 10)).astype(np.float32)
    cand = ref + rng.normal(scale=0.05, size=ref.shape).astype(np.float32)
    if quantized:
        cand = np.round(cand * 16) / 16  # an INT8-like grid
    whole = agreement(ref, cand)
    tally = AgreementTally(tail_size(ref.size))
    for start in range(0, 700, 64):
        tally.add(agreement_part(ref[start:start + 64], cand[start:start + 64], tail_size(ref.size)))
    streamed = tally.result()
    for name in ("samples", "top1_agreement", "top1_ties", "collapsed", "reference_static"):
        assert getattr(streamed, name) == getattr(whole, name), name
    for name in ("cosine", "max_abs_diff", "mean_abs_diff", "sqnr_db", "relative_max_diff", "relative_p999_diff",
                 "top1_agreement_decisive"):
        assert getattr(streamed, name) == pytest.approx(getattr(whole, name), rel=1e-9), name


def test_chunked_agreement_names_a_collapsed_output():
    ref = np.random.default_rng(1).normal(size=(100, 6))
    cand = np.tile(np.linspace(0, 1, 6), (100, 1))
    tally = AgreementTally(tail_size(ref.size))
    for start in range(0, 100, 30):
        tally.add(agreement_part(ref[start:start + 30], cand[start:start + 30], tail_size(ref.size)))
    assert tally.result().collapsed == agreement(ref, cand).collapsed == "the same for every sample"


def test_chunks_of_a_folder_equal_the_whole_decode(tmp_path):
    from edgeact.data.preprocess import make_preprocessing
    from edgeact.data.samples import ModelInput

    folder = write_folder(tmp_path / "imgs", 37)
    source = read_source(folder, "--data")
    inputs = [ModelInput("image", (20, 20, 3))]
    pre = make_preprocessing("unit")
    whole = source.samples(inputs, pre)
    chunks = list(source.iter_chunks(inputs, pre, 8, workers=3))
    assert [c.index for c in chunks] == list(range(5)) and [len(c) for c in chunks] == [8, 8, 8, 8, 5]
    assert np.array_equal(np.concatenate([c.array() for c in chunks]), whole.array())
    assert np.array_equal(np.concatenate([c.labels for c in chunks]), whole.labels)
    picked = list(source.iter_chunks(inputs, pre, 8, chunks=[3, 1]))
    assert [c.start for c in picked] == [24, 8]


def test_npz_members_are_memory_mapped(tmp_path):
    x = np.arange(5 * 4 * 4 * 3, dtype=np.uint8).reshape(5, 4, 4, 3)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(5) % 2)
    source = read_source(tmp_path / "d.npz", "--data")
    assert isinstance(source.arrays["x"], np.memmap) and np.array_equal(source.arrays["x"], x)
    np.savez_compressed(tmp_path / "c.npz", x=x, y=np.arange(5) % 2)
    assert np.array_equal(read_source(tmp_path / "c.npz", "--data").arrays["x"], x)
    assert isinstance(read_source(tmp_path / "c.npy" if False else tmp_path / "d.npz", "--data").arrays["x"],
                      np.memmap)


# -- bounded memory ----------------------------------------------------------------------------------
# VmHWM, not ru_maxrss: a child forked from this pytest (TensorFlow loaded) inherits its ru_maxrss.
_PEAK = """
import sys
from edgeact.profile.session import ProfileOptions, profile_models
report = profile_models([sys.argv[1]], ProfileOptions(data=sys.argv[2], runs=5, warmup=1, isolate=False,
                                                      progress=False, chunk_size=int(sys.argv[3])))
assert report.models[0].accuracy.samples == int(sys.argv[4]), report.models[0].accuracy
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def peak_rss_mb(model: Path, folder: Path, samples: int, chunk_size: int = 64) -> float:
    done = subprocess.run([sys.executable, "-c", _PEAK, str(model), str(folder), str(chunk_size), str(samples)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1]) / 1024


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_data_set(wide_model, tmp_path):
    model, _ = wide_model
    small = write_folder(tmp_path / "small", 300, classes=5)
    large = write_folder(tmp_path / "large", 3000, classes=5)
    small_mb, large_mb = peak_rss_mb(model, small, 300), peak_rss_mb(model, large, 3000)
    # Held whole, 3000 preprocessed 64x64x3 images are 147 MB of float32 alone; streamed, the
    # labels and per-sample scores of 2700 more samples are a few hundred KB.
    assert large_mb - small_mb < 15, (small_mb, large_mb)


# -- resumed and sharded runs equal the plain run ------------------------------------------------------
def test_resumed_run_equals_the_plain_run(converted_small, labelled, small_cnn_file, tmp_path):
    out, _ = converted_small
    model = out / "small_cnn_int8.tflite"
    common = [model, "--data", labelled, "--reference", small_cnn_file, "--runs", 5, "--chunk-size", 16]
    plain = profile(*common, "--resume", tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    # A run that stopped after 7 of 19 chunks: the others' files removed.
    partial = tmp_path / "partial"
    partial.mkdir()
    for path in (tmp_path / "plain").iterdir():
        if path.name == "state.json" or int(path.name.split(".")[1]) < 7:
            (partial / path.name).write_bytes(path.read_bytes())
    resumed = profile(*common, "--resume", partial)
    assert resumed.exit_code == 0, resumed.output
    plain_report, resumed_report = json.loads(plain.stdout), json.loads(resumed.stdout)
    for key in ("accuracy", "agreement"):
        assert resumed_report["models"][0][key] == plain_report["models"][0][key]
    assert resumed_report["evaluation"]["lanes"][0]["chunks_done_before"] == 7
    assert resumed_report["evaluation"]["lanes"][0]["samples"] == 300 - 7 * 16
    first, second = chunk_parts(tmp_path / "plain"), chunk_parts(partial)
    assert set(first) == set(second) and all(np.array_equal(first[k], second[k]) for k in first)
    # Recomputed here from the per-sample scores: top-1 is the mean hit, and the labels are the data's.
    y = np.load(labelled)["y"]
    assert np.array_equal(first["acc|label"], y)
    assert plain_report["models"][0]["accuracy"]["top1"] == pytest.approx(np.mean(first["acc|pred"] == y))


def test_resume_refuses_other_data(converted_small, labelled, tmp_path):
    out, _ = converted_small
    model = out / "small_cnn_int8.tflite"
    assert profile(model, "--data", labelled, "--runs", 2, "--resume", tmp_path / "s").exit_code == 0
    other = tmp_path / "other.npz"
    with np.load(labelled) as loaded:
        np.savez(other, x=loaded["x"][::-1], y=loaded["y"])
    again = profile(model, "--data", other, "--runs", 2, "--resume", tmp_path / "s")
    assert again.exit_code == 2
    assert again.stderr.strip().splitlines() == [
        f"error: --resume {tmp_path / 's'} holds an evaluation of other data (files, sizes or labels differ); give "
        "the same --data, models and options to continue it, or a new folder"]
    fp32 = profile(out / "small_cnn_fp32.tflite", "--data", labelled, "--runs", 2, "--resume", tmp_path / "s")
    assert fp32.exit_code == 2 and "other models" in fp32.stderr


def test_streamed_accuracy_equals_the_whole_array(converted_small, labelled, tmp_path):
    """Chunked or not, the numbers are those of the runtime on the whole array, recomputed here."""
    from edgeact.runtime import open_runner

    out, report = converted_small
    model = out / "small_cnn_int8.tflite"
    with np.load(labelled) as loaded:
        x, y = loaded["x"], loaded["y"]
    from edgeact.data.preprocess import Preprocessing

    scores = open_runner(model).predict(Preprocessing.from_dict(report.preprocessing).apply(x))
    outputs = {name: scores[name] for name in scores}
    (name,) = outputs
    for chunk in (7, 300):
        result = profile(model, "--data", labelled, "--runs", 2, "--chunk-size", chunk)
        assert result.exit_code == 0, result.output
        accuracy = json.loads(result.stdout)["models"][0]["accuracy"]
        assert accuracy["top1"] == topk_accuracy(outputs[name], y, 1)
        assert accuracy["per_class"]["samples"] == np.bincount(y, minlength=4).tolist()


@pytest.mark.slow
def test_interrupted_run_is_resumed(converted_small, tmp_path):
    out, _ = converted_small
    model = out / "small_cnn_int8.tflite"
    rng = np.random.default_rng(2)
    data = tmp_path / "big.npz"
    np.savez(data, x=rng.integers(0, 256, size=(4000, 16, 16, 3), dtype=np.uint8), y=rng.integers(0, 4, 4000))
    state = tmp_path / "state"
    command = [sys.executable, "-m", "edgeact", "profile", str(model), "--data", str(data), "--runs", "2",
               "--chunk-size", "2", "--resume", str(state), "--json", "--no-progress"]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(state.glob("model0.*.npz"))) < 20:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    finished = len(list(state.glob("model0.*.npz")))
    assert 20 <= finished < 2000, finished  # killed mid-run, after some chunks
    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-1000:]
    report = json.loads(resumed.stdout)
    assert report["evaluation"]["lanes"][0]["chunks_done_before"] >= finished
    plain = profile(model, "--data", data, "--runs", 2, "--chunk-size", 2, "--resume", tmp_path / "plain")
    assert json.loads(plain.stdout)["models"][0]["accuracy"] == report["models"][0]["accuracy"]
    first, second = chunk_parts(tmp_path / "plain"), chunk_parts(state)
    assert all(np.array_equal(first[k], second[k]) for k in first)


def test_shard_needs_several_devices(converted_small, labelled):
    out, _ = converted_small
    result = profile(out / "small_cnn_int8.tflite", "--data", labelled, "--shard")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: --shard splits --data over several devices; give two or more "
                                     "--device, or drop --shard")


def test_calibration_reads_only_the_samples_it_picks_from_a_large_array(tmp_path):
    """The same samples as reading the whole array and shuffling it (the split's seeded permutation),
    from a memory-mapped .npy."""
    from calibration import read_calibration
    from edgeact.data.preprocess import make_preprocessing
    from edgeact.data.samples import ModelInput

    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, size=(1000, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "big.npy", x)
    pre = make_preprocessing("unit")
    got = read_calibration(tmp_path / "big.npy", ModelInput("image", (8, 8, 3)), pre, samples=20, holdout=10, seed=3)
    shuffled = x[np.random.default_rng(3).permutation(1000)]
    assert np.array_equal(got.calibration.array(), pre.apply(shuffled[:20]))
    assert np.array_equal(got.holdout.array(), pre.apply(shuffled[20:30]))
    assert got.summary["calibration_samples"] == 20 and got.summary["holdout_samples"] == 10
    assert "shuffled" not in got.summary
