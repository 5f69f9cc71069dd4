"""Per-op time shares: ORT's session profiler per op type, TFLite ops left off XNNPACK timed alone."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeact.fastpath.op_shares import OpKind
from edgeact.fastpath.op_time import measured_op_times
from edgeact.fastpath.op_time_onnx import onnx_op_times, shares_from_trace


# -- ONNX Runtime -------------------------------------------------------------------------
def _hard_swish_onnx(path):
    """Conv -> HardSigmoid -> Mul (hard-swish as tf2onnx writes it), NCHW float."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("HardSigmoid", ["c"], ["h"], name="hsig", alpha=1 / 6, beta=0.5),
             helper.make_node("Mul", ["c", "h"], ["y"], name="mul")]
    graph = helper.make_graph(nodes, "hswish", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def qdq_onnx(tmp_path_factory):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    out = tmp_path_factory.mktemp("ort_profile")
    float_path = _hard_swish_onnx(out / "hswish_fp32.onnx")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.samples = iter([{"x": np.random.default_rng(i).uniform(-1, 1, (1, 8, 16, 16)).astype(np.float32)}
                                 for i in range(4)])

        def get_next(self):
            return next(self.samples, None)

    int8_path = out / "hswish_int8.onnx"
    # uint8 activations as edgeact's exporter uses: with int8 ones ORT on x86 runs the Conv in float.
    quantize_static(str(float_path), str(int8_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return float_path, int8_path


def test_ort_shares_name_the_node_types_and_add_up_to_the_traced_runs(qdq_onnx, tmp_path):
    import onnxruntime as ort

    _, int8_path = qdq_onnx
    times = onnx_op_times(int8_path, threads=1, runs=10)
    kinds = {op.type: op.kind for op in times.ops}
    assert kinds.get("QLinearConv") == OpKind.INTEGER, kinds
    # ORT has no integer HardSigmoid: it runs in float between DequantizeLinear and QuantizeLinear.
    assert kinds.get("HardSigmoid") == OpKind.OTHER and kinds.get("DequantizeLinear") == OpKind.QDQ, kinds
    assert 0 < times.slow_share < 1
    assert times.slow_share == pytest.approx(sum(op.share for op in times.ops if op.kind != OpKind.INTEGER))

    # Recompute from a trace of our own: node time over model_run time, the cold first run left out.
    options = ort.SessionOptions()
    options.enable_profiling, options.profile_file_prefix = True, str(tmp_path / "p")
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(int8_path), options, providers=["CPUExecutionProvider"])
    x = np.zeros((1, 8, 16, 16), np.float32)
    for _ in range(6):
        session.run(None, {"x": x})
    events = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted((e["ts"], e["dur"]) for e in events if e["name"] == "model_run")[1:]
    start = runs[0][0]
    node_us = sum(e["dur"] for e in events if e["cat"] == "Node" and e["name"].endswith("_kernel_time")
                  and e["ts"] >= start)
    parsed = shares_from_trace(events)
    assert sum(op.share for op in parsed.ops) == pytest.approx(node_us / sum(d for _, d in runs))
    assert parsed.total_ms == pytest.approx(sum(d for _, d in runs) / len(runs) / 1e3)
    assert 0.3 < sum(op.share for op in parsed.ops) <= 1.0  # the kernels are most of a run, never more


def test_trace_arithmetic_on_a_written_trace():
    def node(op, ts, dur):
        return {"cat": "Node", "name": f"{op.lower()}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 1000}, node("Conv", 1, 900),
              {"cat": "Session", "name": "model_run", "ts": 2000, "dur": 100}, node("QLinearConv", 2001, 60),
              node("QuantizeLinear", 2070, 20),
              {"cat": "Session", "name": "model_run", "ts": 3000, "dur": 300}, node("QLinearConv", 3001, 240),
              node("QuantizeLinear", 3250, 40)]
    times = shares_from_trace(events)  # the first (cold) run is dropped
    shares = {op.type: op.share for op in times.ops}
    assert shares == pytest.approx({"QLinearConv": 300 / 400, "QuantizeLinear": 60 / 400})
    assert times.total_ms == pytest.approx(0.2) and times.slow_share == pytest.approx(0.15)
    assert {op.type: op.count for op in times.ops} == {"QLinearConv": 1, "QuantizeLinear": 1}


def test_a_trace_without_runs_is_a_plain_error():
    from edgeact.errors import InputError

    with pytest.raises(InputError, match="no model_run event"):
        shares_from_trace([{"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 5}])


# -- TFLite -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_tflite(keras, tmp_path_factory):
    """The same two-conv CNN with hard-swish (left off XNNPACK in INT8) and with ReLU (all delegated)."""
    import tensorflow as tf

    out = tmp_path_factory.mktemp("op_time")
    rng = np.random.default_rng(0)
    samples = [rng.uniform(0, 1, (1, 24, 24, 3)).astype(np.float32) for _ in range(8)]
    paths = {}
    for activation in ("hard_swish", "relu"):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((24, 24, 3), batch_size=1)
        x = keras.layers.Conv2D(16, 3, padding="same")(inputs)
        x = keras.layers.Activation(activation)(x)
        x = keras.layers.Conv2D(16, 3, padding="same")(x)
        outputs = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
        converter = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([s] for s in samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        paths[activation] = out / f"{activation}_int8.tflite"
        paths[activation].write_bytes(converter.convert())
    return paths


def test_a_left_op_is_named_with_a_share_below_one(tiny_tflite):
    from edgeact.fastpath.op_time_tflite import tflite_op_times

    times = tflite_op_times(tiny_tflite["hard_swish"], threads=1, runs=30)
    left = [op for op in times.ops if op.kind == OpKind.LEFT]
    assert [op.type for op in left] == ["HARD_SWISH"] and left[0].count == 1
    assert 0 < left[0].share < 1 and left[0].ms > 0
    assert left[0].share == pytest.approx(left[0].ms / times.total_ms)
    delegated = next(op for op in times.ops if op.kind == OpKind.DELEGATED)
    assert delegated.share == pytest.approx(1 - left[0].share)  # the rest: the XNNPACK partitions
    assert "HARD_SWISH" in times.summary()


def test_a_fully_delegated_model_reports_no_left_op(tiny_tflite):
    from edgeact.fastpath.op_time_tflite import tflite_op_times

    times = tflite_op_times(tiny_tflite["relu"], threads=1, runs=10)
    assert [op.kind for op in times.ops] == [OpKind.DELEGATED]
    assert times.slow_share == 0 and times.ops[0].share == pytest.approx(1.0)


def test_the_one_op_model_computes_what_the_op_computes_inside_the_model(tiny_tflite):
    """The cut is faithful: fed the preserved input, the one-op model gives the preserved output."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgeact.fastpath.op_time_tflite import one_op_model

    data = tiny_tflite["hard_swish"].read_bytes()
    whole = Interpreter(model_content=data, experimental_preserve_all_tensors=True,
                        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    whole.allocate_tensors()
    detail = whole.get_input_details()[0]
    whole.set_tensor(detail["index"], np.random.default_rng(1).uniform(0, 1, detail["shape"]).astype(np.float32))
    whole.invoke()
    op = next(o for o in whole._get_ops_details() if o["op_name"] == "HARD_SWISH")
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    content, inputs = one_op_model(schema, model, op["index"], {})
    assert inputs == [int(op["inputs"][0])]
    alone = Interpreter(model_content=content)
    alone.allocate_tensors()
    alone.set_tensor(alone.get_input_details()[0]["index"], whole.get_tensor(inputs[0]))
    alone.invoke()
    expected = whole.get_tensor(int(op["outputs"][0]))
    got = alone.get_tensor(alone.get_output_details()[0]["index"])
    assert np.abs(expected).max() > 0 and np.array_equal(got, expected)


def test_inspect_op_times_prints_the_shares(tiny_tflite):
    from click.testing import CliRunner

    from edgeact.cli import cli

    result = CliRunner().invoke(cli, ["inspect", str(tiny_tflite["hard_swish"]), "--op-times"])
    assert result.exit_code == 0, result.output
    assert "time shares (one-op models" in result.output and "off the delegate: HARD_SWISH" in result.output
    plain = CliRunner().invoke(cli, ["inspect", str(tiny_tflite["hard_swish"])])
    assert "time shares" not in plain.output


def test_profile_warning_names_the_left_ops_with_their_share(tiny_tflite, tmp_path):
    """profile's verdict, given rows where INT8 lost, measures and prints the left ops' share."""
    from edgeact.fastpath.coverage import model_coverage
    from edgeact.fastpath.speed_verdict import render_speed, speed_verdicts

    int8 = tmp_path / "m_int8.tflite"
    int8.write_bytes(tiny_tflite["hard_swish"].read_bytes())
    rows = [{"model": str(int8), "format": "tflite", "runtime": "litert", "delegate": "xnnpack", "threads": 1,
             "latency_ms": {"p50": 2.0}},
            {"model": str(tmp_path / "m_fp32.tflite"), "format": "tflite", "runtime": "litert",
             "delegate": "xnnpack", "threads": 1, "latency_ms": {"p50": 1.0}}]
    verdicts = speed_verdicts({"models": rows}, coverage=model_coverage, op_times=measured_op_times)
    assert len(verdicts) == 1 and verdicts[0].op_times["ops"]
    text = render_speed({"speed": [v.to_dict() for v in verdicts]})
    assert "WARNING: INT8 is slower" in text and "time: " in text and "off the delegate: HARD_SWISH" in text


# -- the QDQ rewrite the shares pointed at -------------------------------------------------
def _quantized(tmp_path, constant: float, name: str):
    """Conv -> Mul(x, constant) -> Conv, and a Mul of two tensors (must stay), quantized QDQ uint8."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.3, (8, 8, 1, 1)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.array(constant, np.float32), "c")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Mul", ["a", "c"], ["m"], name="by_constant"),
             helper.make_node("Conv", ["m", "w2"], ["b"], name="conv2"),
             helper.make_node("Mul", ["a", "b"], ["y"], name="two_tensors")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 12, 12])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / f"{name}_fp32.onnx"))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.samples = iter([{"x": np.random.default_rng(i).normal(0, 1, (1, 8, 12, 12)).astype(np.float32)}
                                 for i in range(8)])

        def get_next(self):
            return next(self.samples, None)

    path = tmp_path / f"{name}_int8.onnx"
    quantize_static(str(tmp_path / f"{name}_fp32.onnx"), str(path), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return path


def _run(path, x):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_a_multiply_by_a_constant_becomes_a_scale(tmp_path):
    import shutil

    import onnx

    from converters.onnx.rewrites import fold_constant_mul_into_scale

    path = _quantized(tmp_path, 1 / 6, "sixth")
    original = tmp_path / "original.onnx"
    shutil.copy(path, original)
    assert fold_constant_mul_into_scale(path) == ["by_constant"]
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("Mul") == 1  # the two-tensor Mul stays
    onnx.checker.check_model(str(path))
    x = np.random.default_rng(5).normal(0, 1, (1, 8, 12, 12)).astype(np.float32)
    before, after = _run(original, x), _run(path, x)
    # min/max calibration gives the product the scale s*c: the requantization it did was the identity.
    step = float(np.abs(before).max()) / 127
    assert np.abs(after - before).max() <= step, np.abs(after - before).max()
    assert np.abs(before).max() > 0


def test_a_negative_constant_is_left(tmp_path):
    from converters.onnx.rewrites import fold_constant_mul_into_scale

    assert fold_constant_mul_into_scale(_quantized(tmp_path, -0.5, "negative")) == []


def test_op_times_run_without_tensorflow_or_onnx(tiny_tflite, qdq_onnx):
    """On a device: LiteRT and its schema, or onnxruntime, only (TensorFlow, Keras, onnx cannot be imported)."""
    import subprocess
    import sys

    child = ("import sys\n"
             "for name in ('tensorflow', 'keras', 'tf2onnx', 'onnx', 'converters', 'calibration'):\n"
             "    sys.modules[name] = None\n"
             "from edgeact.fastpath.op_time import model_op_times\n"
             "for path in sys.argv[1:]:\n"
             "    print(model_op_times(path, threads=1).summary())\n")
    done = subprocess.run([sys.executable, "-c", child, str(tiny_tflite["hard_swish"]), str(qdq_onnx[1])],
                          capture_output=True,
                          check=False, text=True, cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    tflite_line, onnx_line = done.stdout.strip().splitlines()[-2:]
    assert "off the delegate: HARD_SWISH" in tflite_line and "outside integer kernels" in onnx_line


def test_a_float_onnx_model_is_said_to_be_float(qdq_onnx):
    float_path, _ = qdq_onnx
    times = onnx_op_times(float_path, threads=1, runs=5)
    assert all(op.kind == OpKind.OTHER for op in times.ops)
    assert "a float model" in times.summary() and "HardSigmoid" in {op.type for op in times.ops}
