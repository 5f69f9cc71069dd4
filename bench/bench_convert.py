"""Conversion time and peak memory: `edgeact convert` against the plain converters, as whole processes.

    python bench/bench_convert.py [--models MobileNetV2,DenseNet121] [--formats tflite,both] [--rounds 3]

For each keras.applications family (weights=None, default input size) it writes, once, a .keras
file whose BatchNormalization statistics come from real photos (scikit-image's sample images,
resized, flipped and cropped; without them the activations of an untrained network vanish
after a few blocks) and a calibration .npy of 300 samples. Then, for each format set, it runs

  A: `python -m edgeact convert MODEL -c CALIB.npy --preprocess none -f ... --force`
  B: this file's `plain` sub-command: what a user writes by hand - TFLiteConverter.from_keras_model
     for the float and the full-integer INT8 model (the same 200 calibration samples), and for
     ONNX tf2onnx.convert.from_function + quant_pre_process + quantize_static (QDQ, per-channel)

alternately (A B A B ...), each as a fresh process, and records its wall time and peak RSS
(os.wait4's ru_maxrss, the kernel's own accounting of the finished process). It prints the
median of the rounds, the median of the per-round ratios A/B, and the two peaks.

Machine noise hits A and B alike because they alternate; quote the ratios.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION = 200
HOLDOUT = 100
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry", "hubble_deep_field",
          "retina", "colorwheel", "coins", "camera", "grass", "brick", "moon")
FORMATS = {"tflite": ("tflite",), "onnx": ("onnx",), "both": ("tflite", "onnx")}


# -- preparing a model and its data ---------------------------------------------------------
def photo_batch(size: int, count: int, seed: int = 0) -> np.ndarray:
    """`count` uint8 RGB crops of scikit-image's sample photos, `size` x `size`, seeded."""
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = []
    for name in PHOTOS:
        image = getattr(skimage.data, name)()
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        photos.append(np.ascontiguousarray(image[..., :3]).astype(np.uint8))
    out = np.empty((count, size, size, 3), np.uint8)
    for i in range(count):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        crop = int(min(h, w) * rng.uniform(0.5, 1.0))
        top, left = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
        tile = Image.fromarray(photo[top:top + crop, left:left + crop]).resize((size, size), Image.BILINEAR)
        tile = np.asarray(tile)
        out[i] = tile[:, ::-1] if rng.random() < 0.5 else tile
    return out


def normalises_itself(model) -> bool:
    """Keras 3's MobileNetV3/EfficientNet/ConvNeXt take raw pixels: a Rescaling/Normalization comes first."""
    return any(type(layer).__name__ in ("Rescaling", "Normalization") for layer in model.layers[:6])


def set_batchnorm_statistics(model, batch: np.ndarray) -> int:
    """Moving mean/variance of every BatchNormalization from `batch`, in one training-mode pass.

    With momentum 0 a training-mode call replaces each moving statistic with the statistic of
    its input, and since each layer normalises with exactly those in training mode, the
    inference-mode model afterwards sees what the training-mode pass saw, layer after layer.
    """
    import keras

    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(batch, training=True)
    for layer, momentum in zip(norms, saved):
        layer.momentum = momentum
    return len(norms)


def prepare(family: str, workdir: Path) -> tuple[Path, Path]:
    """The .keras file and calibration .npy for one family, made once and reused."""
    model_path, calib_path = workdir / f"{family}.keras", workdir / f"{family}_calib.npy"
    if model_path.exists() and calib_path.exists():
        return model_path, calib_path
    from converters.keras.loader import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, family)(weights=None)
    if model.inputs[0].shape[1] is None:  # MobileNetV3 leaves its size open: its documented default
        model = getattr(keras.applications, family)(weights=None, input_shape=(224, 224, 3))
    size = model.inputs[0].shape[1]
    pixels = photo_batch(size, CALIBRATION + HOLDOUT).astype(np.float32)
    inputs = pixels if normalises_itself(model) else pixels / 127.5 - 1.0
    set_batchnorm_statistics(model, inputs[:32])
    workdir.mkdir(parents=True, exist_ok=True)
    model.save(model_path)
    np.save(calib_path, inputs)
    return model_path, calib_path


# -- the plain converters, as a user would write them ---------------------------------------
def plain(model_path: Path, calib_path: Path, out: Path, formats: tuple[str, ...]) -> None:
    import keras
    import tensorflow as tf

    out.mkdir(parents=True, exist_ok=True)
    model = keras.models.load_model(model_path, compile=False)
    data = np.load(calib_path)[:CALIBRATION].astype(np.float32)
    stem = model_path.stem
    if "tflite" in formats:
        (out / f"{stem}_fp32.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[None]] for x in data)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        (out / f"{stem}_int8.tflite").write_bytes(converter.convert())
    if "onnx" in formats:
        import tf2onnx
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        spec = (tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name="input"),)
        serve = tf.function(lambda x: model(x, training=False), input_signature=spec)
        fp32, prepared = out / f"{stem}_fp32.onnx", out / f"{stem}_prep.onnx"
        tf2onnx.convert.from_function(serve, input_signature=spec, opset=17, output_path=str(fp32))
        quant_pre_process(str(fp32), str(prepared))

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.items = iter(data)

            def get_next(self):
                x = next(self.items, None)
                return None if x is None else {"input": x[None]}

        quantize_static(str(prepared), str(out / f"{stem}_int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


# -- timing whole processes ------------------------------------------------------------------
def run_process(argv: list[str], log: Path) -> tuple[float, float, int, float]:
    """(wall s, peak RSS MB, exit code, CPU s) of one child process, from the kernel's accounting.

    CPU seconds (user + system) move less than wall time when other work shares the cores.
    The child runs in the log's folder (the work folder), never in the repository: ORT's
    symbolic shape inference in the plain script's `quant_pre_process` leaves
    'sym_shape_infer_temp.onnx' and its external weights in the working directory (114 MB of
    them were once committed).
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log, "ab") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=sink, stderr=sink, cwd=log.parent, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime


# Extra `edgeact convert` options (--edgeact-args): e.g. "--layer-error never" times the conversion
# without the per-layer diagnosis that a failed check adds (untrained networks fail top-1).
EDGEACT_ARGS: list[str] = []


def commands(model_path: Path, calib_path: Path, formats: tuple[str, ...], out: Path) -> tuple[list, list]:
    python = sys.executable
    fmt_args = [arg for f in formats for arg in ("-f", f)]
    edgeact = [python, "-m", "edgeact", "convert", str(model_path), "-c", str(calib_path), "--preprocess", "none",
               "--samples", str(CALIBRATION), "--holdout", str(HOLDOUT), "-o", str(out / "edgeact"), "--force",
               *fmt_args, *EDGEACT_ARGS]
    plain_cmd = [python, str(Path(__file__).resolve()), "plain", str(model_path), str(calib_path),
                 str(out / "plain"), ",".join(formats)]
    return edgeact, plain_cmd


def bench(families: list[str], format_sets: list[str], rounds: int, workdir: Path) -> list[dict]:
    rows = []
    for family in families:
        # In a child process: Linux counts the RSS a process had when it forked into each child's
        # peak (ru_maxrss survives exec), so a parent that built a big model would inflate both.
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "prepare", family, str(workdir)],
                       check=True, cwd=workdir, env={**os.environ, "PYTHONPATH": str(ROOT)})
        model_path, calib_path = workdir / f"{family}.keras", workdir / f"{family}_calib.npy"
        for fmt in format_sets:
            edgeact, plain_cmd = commands(model_path, calib_path, FORMATS[fmt], workdir / f"{family}_{fmt}")
            a, b = [], []
            for r in range(rounds):
                a.append(run_process(edgeact, workdir / "edgeact.log"))
                b.append(run_process(plain_cmd, workdir / "plain.log"))
                print(f"  {family} {fmt} round {r + 1}: edgeact {a[-1][0]:.1f} s (cpu {a[-1][3]:.1f}) "
                      f"{a[-1][1]:.0f} MB "
                      f"(exit {a[-1][2]}), plain {b[-1][0]:.1f} s (cpu {b[-1][3]:.1f}) {b[-1][1]:.0f} MB "
                      f"(exit {b[-1][2]})", flush=True)
            rows.append({
                "model": family, "formats": fmt,
                "edgeact_s": statistics.median(x[0] for x in a), "plain_s": statistics.median(x[0] for x in b),
                "ratio": statistics.median(x[0] / y[0] for x, y in zip(a, b)),
                "edgeact_cpu": statistics.median(x[3] for x in a), "plain_cpu": statistics.median(x[3] for x in b),
                "cpu_ratio": statistics.median(x[3] / y[3] for x, y in zip(a, b)),
                "edgeact_mb": max(x[1] for x in a), "plain_mb": max(x[1] for x in b),
                "exit_codes": sorted({x[2] for x in a} | {y[2] for y in b}),
            })
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | formats | edgeact s | plain s | ratio | edgeact CPU s | plain CPU s | CPU ratio | "
             "edgeact peak MB | plain peak MB | mem ratio |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['formats']} | {r['edgeact_s']:.1f} | {r['plain_s']:.1f} | "
                     f"{r['ratio']:.2f}x | {r['edgeact_cpu']:.1f} | {r['plain_cpu']:.1f} | {r['cpu_ratio']:.2f}x | "
                     f"{r['edgeact_mb']:.0f} | {r['plain_mb']:.0f} | "
                     f"{r['edgeact_mb'] / r['plain_mb']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "prepare":
        prepare(sys.argv[2], Path(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "plain":
        _, _, model_path, calib_path, out, formats = sys.argv
        plain(Path(model_path), Path(calib_path), Path(out), tuple(formats.split(",")))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="MobileNetV2", help="keras.applications families, comma-separated")
    parser.add_argument("--formats", default="tflite,both", help="comma-separated: tflite, onnx, both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/edgeact-bench-convert"))
    parser.add_argument("--edgeact-args", default="", help='extra convert options, e.g. "--layer-error never"')
    args = parser.parse_args()
    EDGEACT_ARGS[:] = args.edgeact_args.split()
    workdir = args.workdir.resolve()  # children run inside it, so every path they get is absolute
    workdir.mkdir(parents=True, exist_ok=True)
    rows = bench(args.models.split(","), args.formats.split(","), args.rounds, workdir)
    print(table(rows))
    if any(code for r in rows for code in r["exit_codes"]):
        print("note: some runs exited non-zero; see", args.workdir / "edgeact.log", "and plain.log")


if __name__ == "__main__":
    main()
