"""Issue 24: `profile --data FOLDER` streamed: peak RSS at several folder sizes, and the rates of
decoding alone, invoking alone and the pipelined evaluation, in one run.

    python bench/bench_stream_eval.py [--images 2000] [--sizes 200,2000] [--workdir DIR]
                                      [--sshd | --device A --device B --ssh-option "-F cfg"]

The model is MobileNetV2 (alpha 0.35, 224x224, keras.applications with weights=None, so its
accuracy means nothing), converted to INT8 TFLite once, calibrated on 100 of the images. The folder
holds `--images` generated JPEGs at ImageNet-like sizes (500x375, 375x500, 500x333, 640x480;
smooth colour fields with noise, quality 90) in 10 class folders. Then:

- peak RSS: for each of `--sizes`, a folder of that many of the images (links) is profiled by
  `edgeact profile MODEL --data SUB --in-process --runs 20` in a fresh process, whose VmHWM
  (decode, inference, scores, all in that process) is printed;
- decode alone: `DataSource.iter_chunks` over the whole folder at the model's size, nothing run;
- invoke alone: the runtime on 256 prepared samples, one `invoke()` each (the evaluation's loop);
- pipelined: the evaluation pass's own rate (`evaluation.lanes[].images_per_s`) of the largest
  profile above, in process, and of the same profile with the default `--isolate` (chunk server
  in a child process);
- with two or more `--device` (or `--sshd`: two OpenSSH servers on 127.0.0.1 from tests/sshd.py,
  this machine's Python as the devices'): the same folder `--shard`ed over them, its merged
  accuracy compared with the local run's.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = ((500, 375), (375, 500), (500, 333), (640, 480))
CLASSES = 10

_PROFILE = """
import json, sys
from edgeact.cli import cli
try:
    cli.main(sys.argv[1:], prog_name="edgeact", standalone_mode=False)
finally:
    hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print("VMHWM_KB", hwm, file=sys.stderr)
"""


def build_model(workdir: Path, calibration: Path) -> Path:
    """MobileNetV2 0.35 with random weights (BatchNorm statistics made non-trivial, logits out), calibrated on
    the folder. convert writes the model and then refuses it (a random net's outputs hardly vary with
    the input): its rates and memory are what this bench measures, not its accuracy."""
    model = workdir / "mnv2_035_int8.tflite"
    if model.exists():
        return model
    script = f"""
import numpy as np, keras
from converters import ConvertOptions, convert
from edgeact.data.preprocess import make_preprocessing
keras.utils.set_random_seed(0)
net = keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=0.35, weights=None, classes={CLASSES},
                                     classifier_activation=None)
rng = np.random.default_rng(0)
for layer in net.layers:
    if type(layer).__name__ == "BatchNormalization":
        n = layer.moving_mean.shape[0]
        layer.set_weights([w.astype("float32") for w in (rng.uniform(0.5, 1.5, n), rng.normal(0, 0.3, n),
                                                         rng.normal(0, 0.3, n), rng.uniform(0.5, 2.0, n))])
net.save("{workdir}/mnv2_035.keras")
from edgeact.errors import VerificationError
try:
    convert("{workdir}/mnv2_035.keras", "{calibration}", "{workdir}", ConvertOptions(samples=60, holdout=30,
            progress=False, preprocessing=make_preprocessing("mobilenet")))
except VerificationError as exc:  # written, then judged: random weights say nothing, the rates are what counts
    print("convert's checks (expected to fail on random weights):", exc)
"""
    subprocess.run([sys.executable, "-c", script], check=True, cwd=workdir)
    return model


def build_folder(folder: Path, count: int) -> Path:
    from PIL import Image

    have = sorted(folder.glob("c*/*.jpg"))
    if len(have) >= count:
        return folder
    rng = np.random.default_rng(len(have))
    for c in range(CLASSES):
        (folder / f"c{c}").mkdir(parents=True, exist_ok=True)
    bases = {}
    for width, height in SIZES:  # bilinear weights of the four corner colours, and a few noise fields
        ys, xs = np.linspace(0, 1, height, dtype=np.float32)[:, None], np.linspace(0, 1, width, dtype=np.float32)
        weights = [(1 - ys) * (1 - xs), (1 - ys) * xs, ys * (1 - xs), ys * xs]
        noise = [rng.normal(0, 12, (height, width, 3)).astype(np.float32) for _ in range(4)]
        bases[(width, height)] = (weights, noise)
    for i in range(len(have), count):
        weights, noise = bases[SIZES[i % len(SIZES)]]
        corners = rng.integers(0, 256, size=(4, 3)).astype(np.float32)
        field = sum(w[..., None] * c for w, c in zip(weights, corners)) + noise[i % len(noise)]
        Image.fromarray(np.clip(field, 0, 255).astype(np.uint8)).save(folder / f"c{i % CLASSES}" / f"{i:06d}.jpg",
                                                                    quality=90)
    return folder


def subset(folder: Path, count: int, workdir: Path) -> Path:
    """A folder of the first `count` images (by index), as symbolic links in their class folders."""
    sub = workdir / f"subset_{count}"
    if len(list(sub.glob("c*/*.jpg"))) == count:
        return sub
    files = sorted(folder.glob("c*/*.jpg"), key=lambda p: p.name)[:count]
    for path in files:
        target = sub / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(path)
    return sub


def run_profile(args: list[str]) -> tuple[dict, float, float]:
    """(report, VmHWM MB, wall s) of `edgeact profile ARGS --json` in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _PROFILE, "profile", *args, "--json", "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"profile failed: {done.stderr[-2000:]}")
    hwm = int(next(line.split()[1] for line in done.stderr.splitlines() if line.startswith("VMHWM_KB")))
    return json.loads(done.stdout), hwm / 1024, wall


def decode_rate(folder: Path) -> float:
    from edgeact.data.preprocess import make_preprocessing
    from edgeact.data.samples import ModelInput
    from edgeact.data.source import read_source

    source = read_source(folder, "--data")
    start = time.perf_counter()
    for _ in source.iter_chunks([ModelInput("input", (224, 224, 3))], make_preprocessing("mobilenet"), 256):
        pass
    return len(source) / (time.perf_counter() - start)


def invoke_rate(model: Path, samples: int = 256) -> float:
    from edgeact.runtime import open_runner

    runner = open_runner(model)
    prepared = runner.prepare(np.random.default_rng(0).uniform(-1, 1, (samples, 224, 224, 3)).astype(np.float32))
    runner.run_prepared(prepared[:8])  # warm
    start = time.perf_counter()
    runner.run_prepared(prepared)
    return samples / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--sizes", default="300,3000", help="folder sizes whose peak RSS is measured")
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "edgeact-bench-stream")
    parser.add_argument("--device", action="append", default=[], help="devices for the --shard run")
    parser.add_argument("--ssh-option", action="append", default=[])
    parser.add_argument("--device-python", default=None)
    parser.add_argument("--sshd", action="store_true",
                        help="shard over two OpenSSH servers on 127.0.0.1 (tests/sshd.py), this machine's Python")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    args.workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    folder = build_folder(args.workdir / "images", max([args.images, *sizes]))
    disk = sum(p.stat().st_size for p in folder.glob("c*/*.jpg")) / 1e6
    print(f"folder {folder}: {max([args.images, *sizes])} JPEGs, {disk:.0f} MB, built in "
          f"{time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    model = build_model(args.workdir, subset(folder, 100, args.workdir))
    print(f"model {model.name} ({model.stat().st_size / 1e6:.1f} MB), built in {time.perf_counter() - start:.0f} s")
    full = subset(folder, args.images, args.workdir)
    decode = decode_rate(full)
    invoke = invoke_rate(model)
    serial = 1 / (1 / decode + 1 / invoke)
    print(f"decode alone: {decode:.1f} img/s; invoke alone: {invoke:.1f} img/s; slower: {min(decode, invoke):.1f}; "
          f"one after the other: {serial:.1f}")
    common = ["--runs", "20", "--warmup", "5", "--chunk-size", str(args.chunk_size)]
    largest = None
    for size in sizes:
        report, hwm, wall = run_profile([str(model), "--data", str(subset(folder, size, args.workdir)), *common,
                                         "--in-process"])
        lane = report["evaluation"]["lanes"][0]
        print(f"{size:>6} images, --in-process: peak RSS {hwm:.0f} MB, wall {wall:.1f} s, evaluation "
              f"{lane['images_per_s']:.1f} img/s")
        largest = (size, report)
    size, report = largest
    isolated, hwm, wall = run_profile([str(model), "--data", str(subset(folder, size, args.workdir)), *common])
    rate = isolated["evaluation"]["lanes"][0]["images_per_s"]
    print(f"{size:>6} images, --isolate: parent peak RSS {hwm:.0f} MB, wall {wall:.1f} s, evaluation {rate:.1f} img/s")
    in_process = report["evaluation"]["lanes"][0]["images_per_s"]
    print(f"pipelined / slower of the two: {in_process / min(decode, invoke):.0%} in process, "
          f"{rate / min(decode, invoke):.0%} isolated; / one after the other: {in_process / serial:.0%}, "
          f"{rate / serial:.0%}")
    servers = []
    if args.sshd:
        sys.path.insert(0, str(ROOT / "tests"))
        from sshd import make_server

        servers = [make_server(args.workdir / f"sshd{i}").start() for i in range(2)]
        config = args.workdir / "ssh_config"
        config.write_text("\n".join([
            "Host *", *[f"  IdentityFile {s.client_key}" for s in servers], "  IdentitiesOnly yes",
            "  StrictHostKeyChecking yes", "  LogLevel ERROR",
            "  UserKnownHostsFile " + " ".join(str(s.folder / "known_hosts") for s in servers)]) + "\n")
        args.device = [s.device for s in servers]
        args.ssh_option = [f"-F {config}"]
        args.device_python = sys.executable
    try:
        shard(args, model, full, common)
    finally:
        for server in servers:
            server.stop()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")


def shard(args, model: Path, full: Path, common: list[str]) -> None:
    """With two or more devices: the folder --shard-ed over them, and the same profile here."""
    if len(args.device) >= 2:
        device_args = [a for d in args.device for a in ("--device", d)]
        device_args += [a for o in args.ssh_option for a in ("--ssh-option", o)]
        if args.device_python:
            device_args += ["--device-python", args.device_python]
        sharded, _, wall = run_profile([str(model), "--data", str(full), *common, "--shard", *device_args])
        local, _, _ = run_profile([str(model), "--data", str(full), *common])
        for lane in sharded["evaluation"]["lanes"]:
            print(f"shard on {lane['device']}: {lane['samples']} images, {lane['images_per_s']:.1f} img/s")
        same = sharded["models"][0]["accuracy"] == local["models"][0]["accuracy"]
        print(f"sharded over {len(args.device)} devices in {wall:.1f} s; merged accuracy equals the local run: {same}")


if __name__ == "__main__":
    main()
