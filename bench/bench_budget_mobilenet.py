"""The issue's bound: `edgeact convert --min-agreement` on MobileNetV2 224x224 with 500 eval images.

    python bench/bench_budget_mobilenet.py [--min-agreement 1.0] [--eval 500] [--formats tflite,onnx]

MobileNetV2 (keras.applications, weights=None) gets BatchNormalization statistics from real
photos (bench/bench_convert.py's `prepare`: scikit-image's sample photos, cropped and flipped),
300 calibration samples (200 calibrate, 100 held out), and 500 further photo crops as
`--eval-data` (an .npz with x only: the agreement budget needs no labels). The whole process
`python -m edgeact convert ... --eval-data eval.npz --min-agreement A` is timed by the kernel
(os.wait4: wall time, peak RSS). With A = 1.0 (every top-1 of 500 the same as float) the budget
is out of reach for an untrained network, so every step of the search runs: three range
methods, equalization, bias correction, the per-layer ranking and the float fallback groups,
for each format, and the process exits 1 with the best model written. Untrained, the model says
nothing about accuracy; this measures how long the search takes, not what it wins.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))


def main() -> None:
    from bench_convert import photo_batch, prepare, run_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-agreement", type=float, default=1.0)
    parser.add_argument("--eval", type=int, default=500)
    parser.add_argument("--formats", default="tflite,onnx")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "edgeact-bench-budget")
    args = parser.parse_args()

    model_path, calib_path = prepare("MobileNetV2", args.workdir)
    eval_path = args.workdir / f"MobileNetV2_eval{args.eval}.npz"
    if not eval_path.exists():  # other crops than calibration's (another seed), preprocessed as MobileNetV2 wants
        np.savez(eval_path, x=photo_batch(224, args.eval, seed=1).astype(np.float32) / 127.5 - 1.0)
    out = args.workdir / "out"
    formats = [arg for f in args.formats.split(",") for arg in ("-f", f)]
    argv = [sys.executable, "-m", "edgeact", "convert", str(model_path), "-c", str(calib_path), "--preprocess",
            "none", "--eval-data", str(eval_path), "--min-agreement", str(args.min_agreement), *formats,
            "-o", str(out), "--force"]
    log = args.workdir / "convert.log"
    log.write_text("")
    wall, peak_mb, code, cpu = run_process(argv, log)
    print(" ".join(argv))
    print(f"exit {code}; wall {wall:.0f} s, CPU {cpu:.0f} s, peak RSS {peak_mb:.0f} MB")
    report = json.loads((out / "MobileNetV2.edgeact.json").read_text())
    for fmt, search in report["accuracy_budget"]["formats"].items():
        steps = ", ".join(f"{a['attempt']}: {a['changed']} {a['metric']:.3f}" for a in search["attempts"])
        print(f"{fmt}: {len(search['attempts'])} attempts in {search['search_seconds']:.0f} s, best "
              f"{search['best']}, met {search['met']} ({steps})")
    print("progress lines:\n" + "\n".join(line for line in log.read_text().splitlines() if "edgeact:" in line))


if __name__ == "__main__":
    main()
