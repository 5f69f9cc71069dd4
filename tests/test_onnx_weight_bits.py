"""INT8 ONNX weights by target: 8 bits for ARM and VNNI CPUs (the default, a Raspberry Pi-class
device), 7 only for x86-64 without VNNI.

ORT's x86-64 U8S8 kernels add pairs of uint8 x int8 products in 16 bits unless the CPU has
VNNI, so full-range (8-bit) weights saturate there (edgeact.cpu_features); convert then judges
an 8-bit model by the target's arithmetic. The tiny model here is built to saturate:
all-positive 1x1 weights (each channel's largest quantizes to 127) over a bright input (uint8
near 255), where two products reach 2 x 255 x 127 > 32767.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from converters import ConvertOptions, convert
from edgeact.config import Format
from edgeact.cpu_features import cpu_flags, u8s8_saturates
from edgeact.data.preprocess import make_preprocessing
from edgeact.errors import VerificationError


@pytest.fixture(scope="module")
def bright_conv_file(tmp_path_factory):
    from converters.keras.loader import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 32), name="image")
    conv = keras.layers.Conv2D(16, 1, name="pointwise")
    outputs = keras.layers.Flatten(name="features")(conv(inputs))
    model = keras.Model(inputs, outputs)
    weights = np.random.default_rng(0).uniform(0.5, 1.0, (1, 1, 32, 16)).astype(np.float32) / 32
    conv.set_weights([weights, np.zeros(16, np.float32)])
    path = tmp_path_factory.mktemp("bright") / "bright.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def bright_pixels(tmp_path_factory):
    # Inputs in 0.75..1: every pair of uint8 activations sums past 2 x 191, so with weights at
    # 127 most pairs pass 32767 on a saturating CPU.
    x = np.random.default_rng(1).uniform(0.75, 1.0, (48, 8, 8, 32)).astype(np.float32)
    x[0] = 0.0  # calibration range from 0: the input quantizes with zero point 0, scale 1/255
    path = tmp_path_factory.mktemp("data") / "bright.npy"
    np.save(path, x)
    return path


def _convert(model, data, out, bits, target=None):
    options = ConvertOptions(formats=(Format.ONNX,), samples=24, holdout=24, progress=False, force=True,
                             preprocessing=make_preprocessing("none"), onnx_weight_bits=bits, layer_error="never",
                             target=target)
    try:
        return convert(model, data, out, options)
    except VerificationError as exc:
        return exc.report


def _quantized_weights(path) -> np.ndarray:
    """The int8 conv weight of the written QDQ model (the one int8 initializer with 4 dimensions)."""
    model = onnx.load(str(path))
    found = [numpy_helper.to_array(i) for i in model.graph.initializer
             if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4]
    assert len(found) == 1
    return found[0]


def test_weights_use_seven_or_eight_bits_on_request(bright_conv_file, bright_pixels, tmp_path):
    default = _convert(bright_conv_file, bright_pixels, tmp_path / "seven", 7)
    full = _convert(bright_conv_file, bright_pixels, tmp_path / "eight", 8)
    seven_q = _quantized_weights(tmp_path / "seven" / "bright_int8.onnx")
    eight_q = _quantized_weights(tmp_path / "eight" / "bright_int8.onnx")
    assert np.abs(seven_q).max() == 64 and np.abs(eight_q).max() == 127
    quantization = default.formats["onnx"].details["quantization"]
    assert quantization["weight_bits"] == 7 and "-64..64" in quantization["weights"]
    assert full.formats["onnx"].details["quantization"]["weight_bits"] == 8
    # What the per-layer own column rounds each format's kernels with: the range read from the file.
    from converters.layer_error.keras import quantize_kernel
    from converters.layer_error.onnx import weight_levels

    assert weight_levels(tmp_path / "seven" / "bright_int8.onnx") == 64
    assert weight_levels(tmp_path / "eight" / "bright_int8.onnx") == 127
    kernel = np.random.default_rng(3).standard_normal((1, 1, 32, 16)).astype(np.float32)
    steps = quantize_kernel(kernel, -1, 64) / (np.abs(kernel).max(axis=(0, 1, 2)) / 64)
    assert np.allclose(steps, np.round(steps), atol=1e-3) and np.abs(np.round(steps)).max() == 64


def _parity(report):
    return next(c for c in report.checks if c.kind == "parity" and c.subject == "onnx int8 vs keras")


def test_default_weights_verify_on_this_cpu_and_eight_bits_fail_only_where_kernels_saturate(
        bright_conv_file, bright_pixels, tmp_path):
    default = _convert(bright_conv_file, bright_pixels, tmp_path / "seven", 7)
    assert _parity(default).passed, _parity(default).summary
    full = _convert(bright_conv_file, bright_pixels, tmp_path / "eight", 8)
    if u8s8_saturates():  # x86-64 without VNNI: judged by the target's arithmetic, not the saturating kernels
        assert _parity(full).passed, _parity(full).summary
        assert full.formats["onnx"].details["verified_with"]["method"] in ("x64quantprecision", "qdq_reference")
    elif u8s8_saturates() is False:  # ARM or VNNI: 32-bit sums, exact with 8-bit weights too
        assert _parity(full).passed
    else:  # flags unreadable (not Linux): whatever the verdict, a failure must be blamed on the kernels
        diagnosis = full.formats["onnx"].details.get("kernels_vs_qdq", {}).get("features", {})
        assert _parity(full).passed or diagnosis["kernels_are_the_cause"]


def test_onnx_weight_bits_other_than_seven_or_eight_are_refused(bright_conv_file, bright_pixels, tmp_path):
    from edgeact.errors import InputError

    with pytest.raises(InputError, match="not 7 or 8"):
        convert(bright_conv_file, bright_pixels, tmp_path, ConvertOptions(formats=(Format.ONNX,), onnx_weight_bits=6,
                                                                          progress=False))
    assert not any(tmp_path.iterdir())


def test_kernel_diagnosis_blames_kernels_only_when_they_leave_the_qdq_arithmetic(
        bright_conv_file, bright_pixels, tmp_path):
    """Recomputed independently of the host: the diagnosis compares the kernel predictions it is
    given with ORT's QDQ arithmetic, so real predictions are not blamed and corrupted ones are."""
    from converters.onnx.kernels import kernel_diagnosis
    from edgeact.runtime.onnx import OnnxRunner

    _convert(bright_conv_file, bright_pixels, tmp_path / "seven", 7)
    path = tmp_path / "seven" / "bright_int8.onnx"
    x = {"image": np.random.default_rng(2).uniform(0.75, 1.0, (8, 8, 8, 32)).astype(np.float32)}
    qdq = OnnxRunner(path, optimization="basic").predict(x)["features"]
    kernels = OnnxRunner(path).predict(x)["features"]
    reference = OnnxRunner(tmp_path / "seven" / "bright_fp32.onnx").predict(x)["features"]
    job = _FakeJob(path, x, {"features": reference}, {"features": kernels})
    healthy = kernel_diagnosis(job)["features"]
    assert not healthy["kernels_are_the_cause"]
    assert healthy["kernels_vs_qdq_sqnr_db"] == pytest.approx(_sqnr(qdq, kernels), abs=0.01)
    job.predictions["onnx_int8"] = {"features": kernels * 0.5}
    assert kernel_diagnosis(job)["features"]["kernels_are_the_cause"]


def _sqnr(ref, cand):
    with np.errstate(divide="ignore"):  # identical outputs: inf, as edgeact.metrics.sqnr_db says
        return round(float(10 * np.log10((ref.astype(np.float64) ** 2).sum() / ((ref - cand) ** 2).sum())), 2)


class _FakeJob:
    """What kernel_diagnosis reads of a ConvertJob."""

    def __init__(self, path, x, reference, kernels):
        from edgeact.config import OnnxLayout
        from edgeact.data.samples import Samples

        self.int8_files = {"onnx": path}
        self.predictions = {"onnx_int8": kernels}
        self.reference_outputs = reference
        self.output_names = ["features"]
        self.options = ConvertOptions(onnx_layout=OnnxLayout.NHWC)
        self.calibration = type("Calibration", (), {"holdout": Samples(x)})()


def test_cpu_flags_decide_where_u8s8_saturates():
    text = "processor\t: 0\nflags\t\t: fpu sse4_1 avx2 fma\n"
    assert cpu_flags(text) == {"fpu", "sse4_1", "avx2", "fma"}
    assert cpu_flags("processor : 0\n") is None
    assert u8s8_saturates("x86_64", {"avx2", "sse4_1"}) is True
    assert u8s8_saturates("x86_64", {"avx2", "avx512f", "avx512_vnni"}) is False
    assert u8s8_saturates("x86_64", {"avx2", "avx_vnni"}) is False
    assert u8s8_saturates("aarch64", set()) is False


@pytest.mark.parametrize("saturates", [True, False])
def test_profile_notes_a_full_range_model_only_where_the_kernels_saturate(
        bright_conv_file, bright_pixels, tmp_path, monkeypatch, saturates):
    """The note rides on what profile cannot fix: ORT's own kernels on this host. The CPU is
    patched both ways; the range is read from each written file."""
    from edgeact import cpu_features
    from edgeact.profile.session import ProfileOptions, profile_models

    _convert(bright_conv_file, bright_pixels, tmp_path / "seven", 7)
    _convert(bright_conv_file, bright_pixels, tmp_path / "eight", 8)
    monkeypatch.setattr(cpu_features, "u8s8_saturates", lambda *a, **k: saturates)
    paths = [tmp_path / "seven" / "bright_int8.onnx", tmp_path / "eight" / "bright_int8.onnx"]
    notes = profile_models(paths, ProfileOptions(runs=2, warmup=1, progress=False)).notes
    flagged = [n for n in notes if "full-range int8 weights" in n]
    if saturates:
        assert len(flagged) == 1 and flagged[0].startswith(f"{paths[1]} has full-range"), notes  # the 8-bit file
        assert "--onnx-weight-bits 7" in flagged[0] and "session.x64quantprecision=1" in flagged[0]
    else:
        assert flagged == [], notes


def test_the_remedy_the_note_names_computes_a_full_range_model_as_its_qdq_arithmetic(
        bright_conv_file, bright_pixels, tmp_path):
    """session.x64quantprecision=1 (ORT's U8U8 kernels for weights outside -64..63) gives the QDQ
    arithmetic's result on any CPU; without it a saturating CPU does not (checked where it does)."""
    import onnxruntime as ort

    _convert(bright_conv_file, bright_pixels, tmp_path / "eight", 8)
    path = str(tmp_path / "eight" / "bright_int8.onnx")
    x = np.random.default_rng(2).uniform(0.75, 1.0, (8, 8, 8, 32)).astype(np.float32)

    def run(level, precise: bool):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        if precise:
            options.add_session_config_entry("session.x64quantprecision", "1")
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]

    qdq = run(ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, False)  # DQ -> float Conv -> Q, no integer kernel
    precise = _sqnr(qdq, run(ort.GraphOptimizationLevel.ORT_ENABLE_ALL, True))
    assert precise >= 30
    if u8s8_saturates():
        assert _sqnr(qdq, run(ort.GraphOptimizationLevel.ORT_ENABLE_ALL, False)) < precise - 15


def _patch_cpu(monkeypatch, machine, flags):
    """This host's CPU as another: edgeact.cpu_features reads platform.machine() and /proc/cpuinfo's flags."""
    from edgeact import cpu_features

    monkeypatch.setattr(cpu_features.platform, "machine", lambda: machine)
    monkeypatch.setattr(cpu_features, "cpu_flags", lambda cpuinfo=None: set(flags))


_SATURATING = {"sse4_1", "avx2", "fma"}
_VNNI = {"sse4_1", "avx2", "avx512f", "avx512_vnni"}


@pytest.mark.parametrize("target, flags, levels", [
    (None, _SATURATING, 127),  # no --target: a Raspberry Pi-class ARM device, whatever the host
    ("rpi4", _SATURATING, 127), ("rpi5", _SATURATING, 127), ("x86-vnni", _SATURATING, 127),
    ("x86-avx2", _VNNI, 64),  # the one target whose kernels saturate 8-bit weights
    ("desktop", _SATURATING, 64), ("desktop", _VNNI, 127),  # this host: its own flags decide
])
def test_onnx_weight_bits_follow_the_target_read_back_from_the_file(
        bright_conv_file, bright_pixels, tmp_path, monkeypatch, target, flags, levels):
    from converters.layer_error.onnx import weight_levels

    _patch_cpu(monkeypatch, "x86_64", flags)
    report = _convert(bright_conv_file, bright_pixels, tmp_path, None, target=target)
    path = tmp_path / "bright_int8.onnx"
    assert np.abs(_quantized_weights(path)).max() == levels
    assert weight_levels(path) == levels
    bits = 8 if levels == 127 else 7
    assert report.formats["onnx"].details["quantization"]["weight_bits"] == bits
    assert report.target["name"] == target and report.target["onnx_weight_bits"] == bits
    # The report on disk names the target, and profile's reader reads it back.
    from edgeact.report.sidecar import find_report

    assert find_report(path).target == target


class _RunnerSpy:
    """Records how the ONNX exporter opens each runner (the real OnnxRunner still runs the model)."""

    def __init__(self, monkeypatch):
        import converters.onnx.exporter as exporter

        self.opened = []
        real = exporter.OnnxRunner

        def opened(path, *args, **kwargs):
            self.opened.append((str(path), kwargs.get("optimization", "all"), kwargs.get("config") or {}))
            return real(path, *args, **kwargs)

        monkeypatch.setattr(exporter, "OnnxRunner", opened)

    def int8(self):
        return [(level, config) for path, level, config in self.opened if "int8" in path]


@pytest.mark.parametrize("flags, method", [
    (_SATURATING, "x64quantprecision"),  # AVX2 without VNNI: ORT's exact U8U8 kernels
    ({"sse4_1", "ssse3"}, "qdq_reference"),  # no AVX2: ORT has no exact kernel there, the QDQ arithmetic
    (_VNNI, "kernels"),  # VNNI: the host's kernels compute what the target computes
])
def test_host_verification_judges_eight_bit_weights_by_the_targets_arithmetic(
        bright_conv_file, bright_pixels, tmp_path, monkeypatch, flags, method):
    _patch_cpu(monkeypatch, "x86_64", flags)
    spy = _RunnerSpy(monkeypatch)
    report = _convert(bright_conv_file, bright_pixels, tmp_path, None)  # the default: 8 bits for an ARM target
    assert np.abs(_quantized_weights(tmp_path / "bright_int8.onnx")).max() == 127
    verified = report.formats["onnx"].details["verified_with"]
    assert verified["method"] == method
    expected = {"x64quantprecision": ("all", {"session.x64quantprecision": "1"}), "qdq_reference": ("basic", {}),
                "kernels": ("all", {})}[method]
    assert spy.int8()[0] == expected  # the verification runner really ran that arithmetic
    assert _parity(report).passed, _parity(report).summary
    said = [n for n in report.notes if n.startswith("onnx int8 verified with")]
    assert bool(said) is (method != "kernels")
    if method == "x64quantprecision":
        assert "session.x64quantprecision=1" in said[0]


def test_a_coral_target_refuses_onnx_and_a_float_interface(bright_conv_file, bright_pixels, tmp_path):
    from edgeact.errors import InputError

    with pytest.raises(InputError, match="runs tflite models only"):
        _convert(bright_conv_file, bright_pixels, tmp_path, None, target="coral-usb")
    with pytest.raises(InputError, match="full-integer interface"):
        convert(bright_conv_file, bright_pixels, tmp_path, ConvertOptions(
            formats=(Format.TFLITE,), io_type="float", target="coral-devboard", progress=False))
    assert not any(tmp_path.iterdir())
