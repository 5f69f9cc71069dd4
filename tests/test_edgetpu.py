"""Edge TPU pre-flight and compile (`--target coral-usb|coral-devboard`), on tiny models built here.

The pre-flight (edgeact.fastpath.edgetpu) predicts from the flatbuffer what edgetpu_compiler
maps; the figures are recomputed here from the Keras layers. The compiler itself runs on
x86-64 Linux only and is not installed here: a stand-in executable on PATH writes the
compiler's documented output (the format of the public logs in google-coral/edgetpu issues).
"""
from __future__ import annotations

import os
import stat
import sys
import textwrap

import numpy as np
import pytest

from converters import ConvertOptions, convert
from edgeact.config import Format
from edgeact.data.preprocess import make_preprocessing
from edgeact.fastpath.edgetpu import AFTER_UNMAPPED, NOT_IN_TABLE, ON_CHIP_PARAMETER_BYTES, SUPPORTED, preflight
from edgeact.formats.tflite_model import read_tflite


def _keras():
    from converters.keras.loader import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    return keras


def _convert(model, out, target="coral-usb", shape=(8, 8, 3), samples=16):
    x = np.random.default_rng(0).uniform(0, 1, (2 * samples, *shape)).astype(np.float32)
    options = ConvertOptions(formats=(Format.TFLITE,), samples=samples, holdout=samples, progress=False, force=True,
                             preprocessing=make_preprocessing("none"), layer_error="never", target=target)
    return convert(model, x, out, options)


def _clean_path(monkeypatch, tmp_path):
    """PATH without any edgetpu_compiler (a real one would make these tests depend on the host)."""
    folders = [p for p in os.environ.get("PATH", "").split(os.pathsep)
               if p and not os.path.exists(os.path.join(p, "edgetpu_compiler"))]
    monkeypatch.setenv("PATH", os.pathsep.join(folders))


def _cnn(keras, name="cnn"):
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    dense = keras.layers.Dense(4, activation="softmax", name="scores")
    model = keras.Model(inputs, dense(x), name=name)
    _nonzero_bias(dense)
    return model


def _nonzero_bias(layer):
    """A bias the converter keeps (an all-zero FULLY_CONNECTED bias is dropped)."""
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, np.random.default_rng(1).uniform(0.1, 0.2, bias.shape).astype(np.float32)])


def _conv_macs(h, w, cout, k, cin):
    return h * w * cout * k * k * cin


def test_a_plain_int8_cnn_maps_fully(tmp_path, monkeypatch):
    _clean_path(monkeypatch, tmp_path)
    keras = _keras()
    report = _convert(_cnn(keras), tmp_path)
    path = tmp_path / "cnn_int8.tflite"
    model = read_tflite(path)
    found = preflight(path)
    assert {op.type for op in model.ops} <= set(SUPPORTED)  # independently: every op is in the table
    assert found.mapped_ops == len(model.ops) == len(found.ops) and found.first_unmapped is None
    # MACs recomputed from the Keras layers: conv 8x8x8 x 3x3x3, depthwise 8x8x8 x 3x3, dense 8 x 4.
    assert found.total_macs == found.mapped_macs == _conv_macs(8, 8, 8, 3, 3) + 8 * 8 * 8 * 9 + 8 * 4
    # Parameters: int8 weights (1 byte) and int32 biases (4 bytes) of the three layers, and the MEAN's
    # two int32 axes (a constant too).
    assert found.parameter_bytes == (3 * 3 * 3 * 8 + 8 * 4) + (3 * 3 * 8 + 8 * 4) + (8 * 4 + 4 * 4) + 2 * 4
    assert found.streamed_bytes == 0
    # convert ran the pre-flight and, with no compiler here, says what to run where.
    step = report.formats["tflite"].details["edgetpu"]
    assert step["preflight"]["mapped_ops"] == found.mapped_ops
    assert not step["compiler"]["available"] and "edgetpu_compiler -s" in step["compiler"]["advice"]
    assert "x86-64 Linux" in step["compiler"]["advice"]
    assert report.target["name"] == "coral-usb" and report.target["edgetpu"]


def test_an_unsupported_op_in_the_middle_leaves_everything_after_it_on_the_cpu(tmp_path, monkeypatch):
    _clean_path(monkeypatch, tmp_path)
    keras = _keras()
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.LeakyReLU(negative_slope=0.1, name="leaky")(x)  # LEAKY_RELU: not in the Edge TPU table
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="scores")(x), name="leaky")
    _convert(model, tmp_path, target="rpi4")  # a CPU target keeps the LEAKY_RELU (XNNPACK runs it in INT8)
    path = tmp_path / "leaky_int8.tflite"
    ops = read_tflite(path).ops
    found = preflight(path)
    middle = [op.type for op in ops].index("LEAKY_RELU")
    assert 0 < middle < len(ops) - 1
    assert [op.mapped for op in found.ops] == [i < middle for i in range(len(ops))]
    assert found.first_unmapped.type == "LEAKY_RELU" and found.first_unmapped.status == NOT_IN_TABLE
    assert all(op.status == AFTER_UNMAPPED for op in found.ops[middle + 1:])
    # conv2 and the dense are supported ops, on the CPU all the same: the MAC share is conv1's only.
    conv1 = _conv_macs(8, 8, 8, 3, 3)
    assert found.mapped_macs == conv1
    assert found.total_macs == conv1 + _conv_macs(8, 8, 8, 3, 8) + 8 * 4
    assert "from op #%d LEAKY_RELU on, the rest runs on the CPU" % middle in found.summary()


def test_for_the_edge_tpu_leaky_relu_becomes_a_maximum_and_everything_maps(tmp_path, monkeypatch):
    _clean_path(monkeypatch, tmp_path)
    keras = _keras()
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.LeakyReLU(negative_slope=0.1, name="leaky")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, name="scores")(x), name="leaky")
    report = _convert(model, tmp_path, target="coral-usb")
    counts = read_tflite(tmp_path / "leaky_int8.tflite").op_counts()
    assert "LEAKY_RELU" not in counts and counts.get("MAXIMUM") == 1 and counts.get("MUL") == 1
    found = preflight(tmp_path / "leaky_int8.tflite")
    assert found.mapped_ops == len(found.ops) and found.mapped_macs == found.total_macs
    done = next(p for p in report.passes if p["name"] == "leaky_relu_to_maximum")
    assert [c["layer"] for c in done["changed"]] == ["leaky"] and done["max_abs_diff"] < 1e-5  # the same function
    assert all(c.passed for c in report.checks if c.kind == "parity"), [c.summary for c in report.checks]
    # A slope above 1 is not a maximum: the pass leaves it (and says why).
    from converters.passes.pipeline import run_pipeline

    steep = keras.Sequential([keras.Input((4,)), keras.layers.LeakyReLU(negative_slope=1.5, name="steep")])
    _, results = run_pipeline(steep, ["leaky_relu_to_maximum"], np.ones((2, 4), np.float32))
    assert not results[0].changed and "outside 0..1" in results[0].skipped[0]["reason"]


def _flatten_model(keras):
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inputs, keras.layers.Dense(5, activation="softmax", name="scores")(x), name="flat")


def test_a_dynamic_batch_ends_the_mapping_until_the_rewrite_fixes_it_keeping_the_function(tmp_path, monkeypatch):
    from edgeact.runtime.tflite import TFLiteRunner

    _clean_path(monkeypatch, tmp_path)
    keras = _keras()
    model = _flatten_model(keras)
    _convert(model, tmp_path / "open", target="desktop")  # desktop keeps the open batch
    fixed_report = _convert(model, tmp_path / "fixed", target="coral-usb")
    before, after = tmp_path / "open" / "flat_int8.tflite", tmp_path / "fixed" / "flat_int8.tflite"
    shape_ops = {"SHAPE", "STRIDED_SLICE", "PACK"}
    assert shape_ops <= set(read_tflite(before).op_counts()) and not shape_ops & set(read_tflite(after).op_counts())
    assert read_tflite(before).tensors[read_tflite(before).inputs[0]].shape[0] == -1
    assert read_tflite(after).tensors[read_tflite(after).inputs[0]].shape[0] == 1
    was, now = preflight(before), preflight(after)
    assert was.first_unmapped.type == "SHAPE" and "open batch" in was.first_unmapped.why
    assert was.mapped_ops == 1 and any("fix the batch to 1" in n for n in was.notes)
    assert now.mapped_ops == len(now.ops) and now.mapped_macs == now.total_macs > was.mapped_macs
    changed = fixed_report.formats["tflite"].details["fixed_batch"]["int8"]
    assert changed["removed"] == {"SHAPE": 1, "STRIDED_SLICE": 1, "PACK": 1} and changed["reshapes"] == 1
    # The function is kept: both files give the same int8 outputs on the same inputs.
    x = np.random.default_rng(5).uniform(0, 1, (6, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(TFLiteRunner(before).predict(x)["scores"], TFLiteRunner(after).predict(x)["scores"])


def test_parameters_beyond_the_on_chip_memory_are_streamed(tmp_path, monkeypatch):
    _clean_path(monkeypatch, tmp_path)
    keras = _keras()
    inputs = keras.Input((3000,), name="features")
    wide, scores = keras.layers.Dense(2500, activation="relu", name="wide"), keras.layers.Dense(10, name="scores")
    model = keras.Model(inputs, scores(wide(inputs)), name="wide")
    _nonzero_bias(wide)
    _nonzero_bias(scores)
    _convert(model, tmp_path, shape=(3000,), samples=4)
    found = preflight(tmp_path / "wide_int8.tflite")
    expected = (3000 * 2500 + 2500 * 4) + (2500 * 10 + 10 * 4)  # int8 weights, int32 biases
    assert found.mapped_ops == len(found.ops) and found.parameter_bytes == expected
    assert expected > ON_CHIP_PARAMETER_BYTES
    assert found.streamed_bytes == expected - ON_CHIP_PARAMETER_BYTES
    assert "streamed from host memory" in found.summary()


# The compiler's output as public logs show it (google-coral/edgetpu#714, compiler 16), for parse_log.
_LOG = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 354 ms.

Input model: bitintmodel.tflite
Input size: 40.59KiB
Output model: bitintmodel_edgetpu.tflite
Output size: 1.41MiB
On-chip memory used for caching model parameters: 932.50KiB
On-chip memory remaining for caching model parameters: 6.71MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 32
Operation log: bitintmodel_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU.
Number of operations that will run on Edge TPU: 29
Number of operations that will run on CPU: 3

Operator                       Count      Status

GATHER_ND                      1          Operation not supported
RESHAPE                        1          More than one subgraph is not supported
PACK                           1          Operation is working on an unsupported data type
CONV_2D                        29         Mapped to Edge TPU
"""


def test_the_compiler_log_is_parsed():
    from converters.edgetpu.compiler import parse_log

    found = parse_log(_LOG)
    assert found["compiled"] and found["version"] == "16.0.384591198"
    assert found["on_chip_used"] == int(932.5 * 1024) and found["on_chip_remaining"] == int(6.71 * 1024 ** 2)
    assert found["streamed"] == 0 and found["subgraphs"] == 1 and found["total_ops"] == 32
    assert (found["tpu_ops"], found["cpu_ops"]) == (29, 3)
    assert found["operations"][0] == {"op": "GATHER_ND", "count": 1, "status": "Operation not supported"}
    assert sum(r["count"] for r in found["operations"]) == 32
    failed = parse_log("Edge TPU Compiler version 16.0.384591198\nERROR: Attempting to use a delegate that only "
                       "supports static-sized tensors with a graph that has dynamic-sized tensors.\n"
                       "Compilation failed: Model failed in Tflite interpreter.\nCompilation failed! \n")
    assert not failed["compiled"] and failed["error"].startswith("ERROR: Attempting")


def _stand_in_compiler(folder, table: str) -> None:
    """An `edgetpu_compiler` that copies its input to <stem>_edgetpu.tflite and prints `table` the way
    the real one does (-s), with the header and memory lines of the documented format."""
    folder.mkdir(exist_ok=True)
    (folder / "table.txt").write_text(table)
    script = folder / "edgetpu_compiler"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import shutil, sys
        from pathlib import Path
        args = sys.argv[1:]
        out = Path(args[args.index("-o") + 1]); model = Path(args[-1])
        shutil.copyfile(model, out / (model.stem + "_edgetpu.tflite"))
        table = Path({str(folder / "table.txt")!r}).read_text()
        print("Edge TPU Compiler version 16.0.384591198")
        print("Started a compilation timeout timer of 180 seconds.\\n")
        print("Model compiled successfully in 12 ms.\\n")
        print("Input model: " + str(model))
        print("On-chip memory used for caching model parameters: 1.25KiB")
        print("On-chip memory remaining for caching model parameters: 7.62MiB")
        print("Off-chip memory used for streaming uncached model parameters: 0.00B")
        print("Number of Edge TPU subgraphs: 1")
        print("\\nOperator                       Count      Status\\n")
        print(table)
        """))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def _table(rows):
    return "\n".join(f"{op:<31}{count:<11}{status}" for op, count, status in rows)


def test_a_compiler_on_path_compiles_and_its_table_is_set_beside_the_prediction(tmp_path, monkeypatch):
    _clean_path(monkeypatch, tmp_path)
    keras = _keras()
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    model = _cnn(keras, "tpu")
    # First a compiler that agrees with the pre-flight (every op mapped) ...
    _convert(model, tmp_path / "probe")
    counts = read_tflite(tmp_path / "probe" / "tpu_int8.tflite").op_counts()
    _stand_in_compiler(bin_dir, _table([(op, n, "Mapped to Edge TPU") for op, n in counts.items()]))
    agreed = _convert(model, tmp_path / "agree")
    step = agreed.formats["tflite"].details["edgetpu"]
    compiled = tmp_path / "agree" / "tpu_int8_edgetpu.tflite"
    assert compiled.read_bytes() == (tmp_path / "agree" / "tpu_int8.tflite").read_bytes()  # what the stand-in wrote
    assert agreed.formats["tflite"].files["edgetpu"] == str(compiled)
    assert (tmp_path / "agree" / "tpu_int8_edgetpu.log").read_text().startswith("Edge TPU Compiler version")
    assert step["compiler"]["compiled"] and step["compiler"]["tpu_ops"] == sum(counts.values())
    assert step["disagreements"] == []
    # ... then one that leaves the softmax on the CPU, which the pre-flight maps: flagged, per op type.
    rows = [(op, n, "Mapped to Edge TPU") for op, n in counts.items() if op != "SOFTMAX"]
    _stand_in_compiler(bin_dir, _table(rows + [("SOFTMAX", 1, "Operation is otherwise supported, but not mapped "
                                                               "due to some unspecified limitation")]))
    disputed = _convert(model, tmp_path / "disagree")
    lines = disputed.formats["tflite"].details["edgetpu"]["disagreements"]
    assert len(lines) == 1 and lines[0].startswith("SOFTMAX: predicted 1 mapped, the compiler mapped 0")
    assert any("disagree: SOFTMAX" in n for n in disputed.notes)
    from edgeact.report.render import render_convert_report

    assert "DISAGREES with the pre-flight: SOFTMAX" in render_convert_report(disputed)


def test_inspect_target_gives_the_preflight_and_refuses_onnx(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edgeact.cli import cli as main

    _clean_path(monkeypatch, tmp_path)
    keras = _keras()
    _convert(_flatten_model(keras), tmp_path, target="desktop")
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "flat_int8.tflite"), "--target", "coral-usb"])
    assert result.exit_code == 0, result.output
    assert "Edge TPU pre-flight: 1 of 7 ops" in result.output and "#1 SHAPE" in result.output
    (tmp_path / "m.onnx").write_bytes(b"")
    refused = CliRunner().invoke(main, ["inspect", str(tmp_path / "m.onnx"), "--target", "coral-devboard"])
    assert refused.exit_code == 2
    plain = CliRunner().invoke(main, ["inspect", str(tmp_path / "flat_int8.tflite")])
    assert "Edge TPU" not in plain.output


@pytest.mark.parametrize("target", ["coral-usb", "coral-devboard"])
def test_profile_reads_the_target_from_the_report(tmp_path, monkeypatch, target):
    """An Edge TPU target is taken from the report for compiled models only; a CPU target always."""
    from edgeact.profile.targets import Target, target_from_reports

    _clean_path(monkeypatch, tmp_path)
    keras = _keras()
    _convert(_cnn(keras, "read"), tmp_path, target=target)
    int8 = tmp_path / "read_int8.tflite"
    assert target_from_reports([int8]) is None  # not compiled: profiled on the CPU, not as the Edge TPU
    compiled = tmp_path / "read_int8_edgetpu.tflite"
    compiled.write_bytes(int8.read_bytes())
    assert target_from_reports([compiled]) is Target(target)
    _convert(_cnn(keras, "pi"), tmp_path, target="rpi5")
    assert target_from_reports([tmp_path / "pi_int8.tflite", tmp_path / "pi_fp32.tflite"]) is Target.RPI5


def test_profile_without_target_takes_the_reports(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner

    from edgeact.cli import cli

    _clean_path(monkeypatch, tmp_path)
    keras = _keras()
    _convert(_cnn(keras, "pi"), tmp_path, target="rpi5")
    args = ["profile", str(tmp_path / "pi_int8.tflite"), "--runs", "2", "--warmup", "1", "--in-process", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["target"]["name"] == "rpi5"
    given = CliRunner().invoke(cli, args + ["--target", "desktop"])
    assert json.loads(given.output)["target"]["name"] == "desktop"


def test_the_batch_fix_leaves_a_model_with_another_open_size_as_it_is(tmp_path):
    """The guard: only an open batch is fixed; an open length would make a different model."""
    import tensorflow as tf

    from converters.tflite.fixed_batch import fixed_batch

    keras = _keras()
    inputs = keras.Input((None, 4), name="sequence")  # open batch and open length
    x = keras.layers.Conv1D(4, 3, padding="same", activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(x))
    data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    same, changed = fixed_batch(data)
    assert same == data and "open size besides the batch" in changed["skipped"]
    fixed_once, _ = fixed_batch(_float_flatten(keras))
    again, changed = fixed_batch(fixed_once)
    assert again == fixed_once and changed["skipped"] == "the batch is already fixed"


def _float_flatten(keras):
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(_flatten_model(keras)).convert()


def test_a_report_naming_an_unknown_target_is_refused_by_key(tmp_path):
    import json

    from edgeact.errors import InputError
    from edgeact.report.sidecar import read_report

    report = {"schema_version": 2, "name": "m", "preprocessing": {"preset": "unit"}, "inputs": [], "outputs": []}
    path = tmp_path / "m.edgeact.json"
    for target, ok in (({"name": "rpi5"}, True), ({"name": None}, True), ({"name": "pi9"}, False), ("rpi5", False)):
        path.write_text(json.dumps({**report, "target": target}))
        if ok:
            assert read_report(path).target == target["name"]
        else:
            with pytest.raises(InputError, match="'target.name'"):
                read_report(path)
