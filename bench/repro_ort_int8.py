"""Minimal reproductions of where ONNX Runtime's INT8 kernels gain little or lose against float.

    .venv/bin/python bench/repro_ort_int8.py [--threads 2] [--rounds 5] [--runs 50]

bench_families found NASNetMobile's INT8 ONNX slower than its float ONNX with every node on an
integer kernel but 12 Pads and the Softmax, and its session profile gives QLinearConv 46 % and
QLinearAveragePool 17 % of the time. NASNet's cells are separable convolutions of 3x3, 5x5 and 7x7
and same-padded 3x3 average pools. Each graph here holds one such op on a 28x28x64 map (a middle
stage), written in ONNX by hand and quantized by ONNX Runtime's own quantize_static with the
settings edgeact's exporter uses (QDQ, uint8 activations, int8 per-channel weights, MinMax, after
quant_pre_process), on random calibration data: no edgeact step touches them, so what this shows
is the runtime's. Timed batch 1, interleaved, median of round means, both sessions with all graph
optimisations; the optimised graph's node types are read back to show which kernel ran. Graphs this
small run in well under a millisecond, where a shared VM's noise is as large as the effects:
compare several runs (docs/benchmarks/repro_ort_int8.md).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_families import cpu_header  # noqa: E402  (sibling scripts, not a package)
from bench_mobilenetv3 import timed_mean  # noqa: E402

CHANNELS, SIZE = 64, 28


def graphs() -> dict:
    """{name: ONNX ModelProto}, each input x (1, 64, 28, 28) -> 1x1 Conv -> op -> 1x1 Conv."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weights(name, shape):
        return numpy_helper.from_array(rng.normal(0, 0.2, shape).astype(np.float32), name)

    def wrap(name, middle, inits):
        nodes = [helper.make_node("Conv", ["x", "wa"], ["a"]), helper.make_node("Relu", ["a"], ["ra"]),
                 *middle, helper.make_node("Conv", ["m", "wb"], ["y"])]
        inits = [weights("wa", (CHANNELS, CHANNELS, 1, 1)), weights("wb", (CHANNELS, CHANNELS, 1, 1)), *inits]
        shape = [1, CHANNELS, SIZE, SIZE]
        graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        return model

    found = {"control (1x1 convolutions)": wrap("control", [helper.make_node("Identity", ["ra"], ["m"])], [])}
    for k in (3, 5, 7):
        depthwise = helper.make_node("Conv", ["ra", f"wd{k}"], ["m"], group=CHANNELS, pads=[k // 2] * 4)
        found[f"depthwise {k}x{k}"] = wrap(f"dw{k}", [depthwise], [weights(f"wd{k}", (CHANNELS, 1, k, k))])
    found["average pool 3x3 same"] = wrap("pool", [helper.make_node(
        "AveragePool", ["ra"], ["m"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0)], [])
    found["concatenation of six"] = wrap("concat", [
        *[helper.make_node("Conv", ["ra", f"w{i}"], [f"c{i}"]) for i in range(6)],
        helper.make_node("Concat", [f"c{i}" for i in range(6)], ["cat"], axis=1),
        helper.make_node("Conv", ["cat", "wc"], ["m"])],
        [*[weights(f"w{i}", (CHANNELS // 4, CHANNELS, 1, 1)) for i in range(6)],
         weights("wc", (CHANNELS, CHANNELS // 4 * 6, 1, 1))])
    return found


class _Reader:
    def __init__(self):
        self.samples = iter(np.random.default_rng(1).normal(0, 1, (32, 1, CHANNELS, SIZE, SIZE)).astype(np.float32))

    def get_next(self):
        sample = next(self.samples, None)
        return None if sample is None else {"x": sample}


def quantize(model, folder: Path, name: str) -> tuple[Path, Path]:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, prepared, int8 = (folder / f"{name}_{kind}.onnx" for kind in ("fp32", "prepared", "int8"))
    onnx.save(model, str(fp32))
    quant_pre_process(str(fp32), str(prepared))
    quantize_static(str(prepared), str(int8), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    return fp32, int8


def kernels_run(path: Path, threads: int, folder: Path) -> str:
    """Node types of the graph ORT runs at the timing's optimisation level (all), with counts. (edgeact's
    runtime.onnx.optimized_graph stops at the extended level, before the layout transforms.)"""
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(folder / f"{path.stem}_optimised.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    nodes = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    return ", ".join(f"{t} x{nodes.count(t)}" for t in dict.fromkeys(nodes))


def main() -> None:
    import onnxruntime as ort

    from edgeact.runtime import open_runner

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    print(cpu_header(), f"onnxruntime {ort.__version__}", f"threads {args.threads}", sep="\n", flush=True)
    sample = np.random.default_rng(2).normal(0, 1, (1, CHANNELS, SIZE, SIZE)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="repro-ort-") as tmp:
        folder, runners, kernels = Path(tmp), {}, {}
        for i, (name, model) in enumerate(graphs().items()):
            fp32, int8 = quantize(model, folder, f"g{i}")
            runners[(name, "fp32")] = open_runner(fp32, threads=args.threads)  # ORT, all optimisations
            runners[(name, "int8")] = open_runner(int8, threads=args.threads)
            kernels[name] = kernels_run(int8, args.threads, folder)
        prepared = {key: runner.prepare(sample) for key, runner in runners.items()}
        means = {key: [] for key in runners}
        for _ in range(args.rounds):
            for key, runner in runners.items():
                means[key].append(timed_mean(runner, prepared[key], args.runs, args.warmup))
    print("\n| graph | float ms | INT8 ms | INT8/float | INT8 kernels ORT ran (optimised graph) |")
    print("| --- | --- | --- | --- | --- |")
    for name in kernels:
        fp32_ms, int8_ms = (float(np.median(means[(name, kind)])) for kind in ("fp32", "int8"))
        print(f"| {name} | {fp32_ms:.3f} | {int8_ms:.3f} | {fp32_ms / int8_ms:.2f}x | {kernels[name]} |")


if __name__ == "__main__":
    main()
