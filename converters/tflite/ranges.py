"""Full-integer TFLite with activation ranges edgeact chooses, and with chosen ops left in float.

The TFLite converter records min/max only. It can stop after calibration, though
(`_experimental_calibrate_only`, what `tf.lite.experimental.QuantizationDebugger` uses): the
result is the float model with each activation's calibrated min/max stored in its tensor's
quantization parameters. Those can be rewritten (`set_ranges`) before the model is quantized
with the same MLIR quantizer the converter calls (`quantize_calibrated`), which also takes
`denylisted_nodes`: ops, named by their output tensor, kept in float with QUANTIZE/DEQUANTIZE
around them, the float fallback of last resort.

    calibrated = calibrate_tflite(keras_model, samples)
    values = observed_values(calibrated, samples)
    int8 = quantize_calibrated(set_ranges(calibrated, percentile_ranges(values, 99.99)), IOType.INT8)

Calibration here never records an op's output as its input's range (`kept_outputs_calibration`):
TF's calibrator logs each op's inputs a second time after the kernel ran, and the LiteRT it
runs computes element-wise ops (ADD, MUL, ...) in place, over an input no other op reads. The
second log then reads the op's output from the input's buffer, and the input's recorded range
becomes the union of both. Measured: hard-swish written as x * ReLU6(x + 3) recorded its
ReLU6 output, which lies in [0, 6], as [-2.3, 28.4], the product's range (MobileNetV3Small's
first block; INT8 scale 0.12 instead of 6/255); a residual ADD's inputs take the sum's range.
"""
from __future__ import annotations

import contextlib
import enum
import threading
from typing import Iterable, Mapping

import numpy as np

from converters.rounding.ranges import mse_ranges
from edgeact.config import IOType
from edgeact.errors import ConversionError, InputError, first_line
from edgeact.quiet import last_error_line, native_output_captured

RangeMap = Mapping[str, tuple[float, float]]
MAX_VALUES = 200_000  # per tensor, a random subset: enough for a 99.99th percentile, bounded memory


class RangeMethod(str, enum.Enum):
    """How an activation's range is chosen from the values the float model produced."""

    MINMAX = "minmax"
    PERCENTILE = "percentile"
    MSE = "mse"


def _io_dtype(io_type: IOType):
    import tensorflow as tf

    return {IOType.INT8: tf.int8, IOType.UINT8: tf.uint8, IOType.FLOAT: tf.float32}[io_type]


# The converter's calibrator class is swapped while one calibrates; reentrant, so a guarded
# conversion inside another (which wraps the wrapper) does not deadlock.
_CALIBRATOR_LOCK = threading.RLock()
_OFFSET_LIMIT = 2 ** 31  # flatbuffer offsets are 32-bit; a model past 2 GB keeps TF's own calibration


def subgraphs(model: bytes) -> list:
    """The model's subgraph tables, read without TensorFlow."""
    from edgeact.formats.flatbuf import Buffer
    from edgeact.formats.tflite_schema import SLOTS

    return Buffer(model).root().tables(SLOTS["Model"]["Subgraphs"], "subgraphs")


def _main_subgraph(model: bytes):
    graphs = subgraphs(model)
    if not graphs:
        raise ConversionError("the converter's float model has no subgraph to calibrate")
    return graphs[0]  # the others are bodies of control-flow ops, whose outputs are fixed


def _outputs_field(graph) -> tuple[int, np.ndarray]:
    """Where the subgraph stores the offset to its outputs vector, and the vector."""
    from edgeact.formats.tflite_schema import SLOTS

    slot = SLOTS["SubGraph"]["Outputs"]
    at = graph.field_at(slot)
    outputs = graph.numbers(slot, "i32", "subgraph outputs")
    if at is None or outputs is None:
        raise ConversionError("the converter's float model lists no subgraph outputs")
    return at, outputs


def model_outputs(model: bytes) -> list[int]:
    """The tensor indices the main subgraph lists as its outputs."""
    return [int(i) for i in _outputs_field(_main_subgraph(model))[1]]


def keep_all_outputs(model: bytes) -> tuple[bytes, int | None]:
    """The model with every op output of its main subgraph also listed as a subgraph output, and
    how many were added; None and the model as it is past 2 GB (offsets are 32-bit). A flatbuffer
    offset points forward, so the longer outputs vector is appended to the end of the file and the
    subgraph's offset to it rewritten: one copy of the file, where rebuilding it through TF's
    object API took 18 s and 4 GB on VGG16."""
    from edgeact.formats.tflite_schema import SLOTS

    graph = _main_subgraph(model)
    field, outputs = _outputs_field(graph)
    listed = {int(i) for i in outputs}
    extra: list[int] = []
    for op in graph.tables(SLOTS["SubGraph"]["Operators"], "operators"):
        written = op.numbers(SLOTS["Operator"]["Outputs"], "i32", "operator outputs")
        for i in () if written is None else written:
            if int(i) >= 0 and int(i) not in listed:
                listed.add(int(i))
                extra.append(int(i))
    if len(model) + 4 * (len(listed) + 2) >= _OFFSET_LIMIT:
        return model, None
    if not extra:
        return model, 0
    pad = bytes(-len(model) % 4)  # the vector's length and items are 4-byte aligned
    vector = len(model) + len(pad)
    items = np.concatenate([outputs, np.array(extra, np.int32)]).astype("<i4")
    view = memoryview(model)
    patched = b"".join([view[:field], np.array([vector - field], "<u4").tobytes(), view[field + 4:], pad,
                        np.array([len(items)], "<u4").tobytes(), items.tobytes()])  # one copy of the file
    return patched, len(extra)


def drop_last_outputs(model: bytes, count: int) -> bytes:
    """The model with the last `count` outputs of its main subgraph no longer listed: the vector's
    length is lowered in place (the items past it become unused bytes)."""
    if not count:
        return model
    graph = _main_subgraph(model)
    field, outputs = _outputs_field(graph)
    if len(outputs) < count:
        raise ConversionError("the calibrated model lost outputs edgeact added for calibration")
    vector = field + int(np.frombuffer(model, "<u4", 1, field)[0])
    view = memoryview(model)
    return b"".join([view[:vector], np.array([len(outputs) - count], "<u4").tobytes(), view[vector + 4:]])


class CalibrationGuard:
    """What `kept_outputs_calibration` did: how many calibrations ran with how many outputs kept,
    and whether one had to keep TF's own calibration (a model past 2 GB)."""

    def __init__(self) -> None:
        self.calibrations = 0
        self.kept_outputs = 0
        self.unguarded = 0

    def to_dict(self) -> dict:
        found = {"in_place_guard": self.calibrations > 0 and not self.unguarded, "kept_outputs": self.kept_outputs}
        if self.unguarded:
            found["note"] = ("the float model is past 2 GB, beyond a flatbuffer offset: TF's own calibration, "
                             "whose ranges an in-place op can widen")
        return found


@contextlib.contextmanager
def kept_outputs_calibration():
    """Inside it, the TFLite converter calibrates with every op output kept alive (module docstring).

    A tensor listed as a subgraph output is never overwritten in place, so each op's recorded
    inputs are its inputs. The extra outputs are removed from the calibrated model before the
    converter quantizes it (or returns it, with `_experimental_calibrate_only`). Costs the
    memory of every activation of one sample at once, as `observed_values` does.
    """
    from tensorflow.lite.python.optimize import calibrator as tf_calibrator

    guard = CalibrationGuard()
    original = tf_calibrator.Calibrator
    owner = threading.get_ident()  # a conversion in another thread meanwhile is left as TF runs it

    class KeptOutputsCalibrator(original):
        # Per guard: a nested guard's class derives from this one and shares the instance.
        def __init__(self, model_content, *args, **kwargs):
            kept = None  # None: another thread's calibration, left as TF runs it
            if threading.get_ident() == owner:
                model_content, kept = keep_all_outputs(bytes(model_content))
                if kept is None:  # past the offset limit: TF's own calibration, said in the report
                    guard.unguarded += 1
                    kept = 0
            vars(self).setdefault("_edgeact_kept", {})[id(guard)] = kept
            super().__init__(model_content, *args, **kwargs)

        def calibrate(self, dataset_gen):
            calibrated = super().calibrate(dataset_gen)
            kept = self._edgeact_kept[id(guard)]
            if kept is None:
                return calibrated
            guard.calibrations += 1
            guard.kept_outputs += kept
            return drop_last_outputs(bytes(calibrated), kept)

        def calibrate_and_quantize(self, *args, **kwargs):
            raise ConversionError("TFLiteConverter took its old quantizer path (calibrate_and_quantize), which "
                                  "edgeact's calibration guard does not cover; leave experimental_new_quantizer on "
                                  "and use int8 activations")

    with _CALIBRATOR_LOCK:
        tf_calibrator.Calibrator = KeptOutputsCalibrator
        try:
            yield guard
        finally:
            tf_calibrator.Calibrator = original


def convert_guarded(converter, what: str = "the model", calibrate_only: bool = False) -> tuple[bytes, CalibrationGuard]:
    """`converter.convert()` with calibration through `kept_outputs_calibration`, and what it did.

    The converter must be set up for full-integer post-training quantization. With
    `calibrate_only`, the calibrated float model (quantize it with `quantize_calibrated`);
    without, the converter's own INT8 model: it quantizes the guarded calibration with its MLIR
    quantizer and finishes as it always does. (Calibrate-only also has the converter deduplicate
    the float model's buffers through TF's object API: 20-40 s on VGG16's 553 MB.)
    """
    converter._experimental_calibrate_only = calibrate_only  # noqa: SLF001  (the QuantizationDebugger's entry)
    verb = "calibrate" if calibrate_only else "write"
    try:
        with native_output_captured() as captured, kept_outputs_calibration() as guard:
            model = converter.convert()
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"TFLiteConverter could not {verb} {what}: "
                              f"{last_error_line(captured.text) or first_line(exc)}") from None
    if guard.calibrations != 1:
        import tensorflow as tf

        raise ConversionError(f"TFLiteConverter calibrated {what} {guard.calibrations} times through "
                              f"edgeact's in-place guard, not once: TensorFlow {tf.__version__} calibrates "
                              "in a way edgeact does not know; install tensorflow 2.21, which it is tested with")
    return model, guard


def run_converter(converter, what: str) -> bytes:
    """`converter.convert()`, with a one-line ConversionError naming the `what` model when it fails."""
    try:
        with native_output_captured() as captured:
            return converter.convert()
    except Exception as exc:
        detail = last_error_line(captured.text) or first_line(exc, 300)
        raise ConversionError(f"TFLiteConverter could not write the {what} model: {detail}") from None


def calibrate_tflite(keras_model, samples, output_names: list[str] | None = None) -> bytes:
    """The float .tflite with each activation's calibrated min/max, not yet quantized: one float
    conversion, calibrated by converters.tflite.calibrate.

    `samples`: an array (N, *shape) for a one-input model, or Samples (several inputs, by name).
    `output_names` names the SignatureDef's outputs like the Keras model (as convert's exporter
    does, see converters.keras.serving.dict_output_model); without them TFLite says output_0.
    """
    import tensorflow as tf

    from .calibrate import calibrate_float

    float_model = run_converter(tf.lite.TFLiteConverter.from_keras_model(named_model(keras_model, output_names)),
                                "float")
    if hasattr(samples, "arrays"):
        per_sample = iter(samples)
    else:
        per_sample = ({"input": s[None]} for s in np.asarray(samples, np.float32))
    return calibrate_float(float_model, per_sample)[0]


def named_model(keras_model, output_names: list[str] | None):
    """The model with dict outputs keyed by `output_names` (weights shared), or as it is."""
    if not output_names:
        return keras_model
    from converters.keras.serving import dict_output_model

    return dict_output_model(keras_model, list(output_names))


def _model_object(model: bytes):
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.convert_bytearray_to_object(bytearray(model))


def _name(tensor) -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)


def calibrated_ranges(calibrated: bytes) -> dict[str, tuple[float, float]]:
    """{tensor name: (min, max)} the converter's calibration recorded."""
    ranges = {}
    for subgraph in _model_object(calibrated).subgraphs:
        for tensor in subgraph.tensors:
            q = tensor.quantization
            if q is not None and q.min is not None and q.max is not None and len(q.min) == 1:
                ranges[_name(tensor)] = (float(q.min[0]), float(q.max[0]))
    return ranges


def set_ranges(calibrated: bytes, ranges: RangeMap) -> bytes:
    """The calibrated model with the given tensors' recorded ranges replaced."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = _model_object(calibrated)
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            name = _name(tensor)
            if name in ranges and tensor.quantization is not None and tensor.quantization.min is not None:
                low, high = ranges[name]
                tensor.quantization.min = np.array([min(low, 0.0)], np.float32)  # zero stays representable
                tensor.quantization.max = np.array([max(high, 0.0)], np.float32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def quantize_calibrated(calibrated: bytes, io_type: IOType = IOType.INT8,
                        float_nodes: Iterable[str] = ()) -> bytes:
    """Quantize a calibrated model as the converter does; ops writing `float_nodes` stay float."""
    from tensorflow.lite.python.convert import deduplicate_readonly_buffers, mlir_quantize

    float_nodes = list(float_nodes)
    dtype = _io_dtype(io_type)
    try:
        with native_output_captured() as captured:
            quantized = mlir_quantize(calibrated, input_data_type=dtype, output_data_type=dtype,
                                      denylisted_nodes=float_nodes or None)
    except Exception as exc:
        raise ConversionError(f"TFLite's quantizer refused the calibrated model: "
                              f"{last_error_line(captured.text) or first_line(exc)}") from None
    try:
        return bytes(deduplicate_readonly_buffers(quantized))  # as the converter finishes a model
    except Exception as exc:
        raise ConversionError(f"TensorFlow could not deduplicate the quantized model's buffers: "
                              f"{first_line(exc)}") from None


def observed_values(calibrated: bytes, samples: np.ndarray, names: Iterable[str] | None = None,
                    max_values: int = MAX_VALUES, seed: int = 0) -> dict[str, np.ndarray]:
    """A bounded random subset of the values each recorded tensor takes on `samples` (float model).

    The calibrated model is still float; LiteRT runs it with every intermediate kept.
    """
    from converters.layer_error.tflite import feed_sample, open_interpreter

    wanted = set(calibrated_ranges(calibrated) if names is None else names)
    interpreter = open_interpreter(calibrated)
    index = {d["name"]: d["index"] for d in interpreter.get_tensor_details() if d["name"] in wanted}
    per_sample = max(1, max_values // max(1, len(samples)))
    rng = np.random.default_rng(seed)
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in index}
    for sample in samples:
        feed_sample(interpreter, sample)
        for name, i in index.items():
            values = interpreter.get_tensor(i).ravel()
            if values.size > per_sample:
                values = rng.choice(values, per_sample, replace=False)
            chunks[name].append(values.astype(np.float32))
    return {name: np.concatenate(parts) for name, parts in chunks.items() if parts}


def percentile_ranges(values: Mapping[str, np.ndarray], percentile: float = 99.99) -> dict[str, tuple[float, float]]:
    """(low, high) cutting (100 - percentile)% of the values off each end."""
    if not 50 < percentile <= 100:
        raise InputError(f"percentile {percentile} is outside (50, 100]; give e.g. 99.99")
    return {name: (float(np.percentile(v, 100 - percentile)), float(np.percentile(v, percentile)))
            for name, v in values.items() if v.size}


def choose_ranges(calibrated: bytes, samples: np.ndarray, method: RangeMethod,
                  percentile: float = 99.99) -> dict[str, tuple[float, float]]:
    """The ranges `method` chooses for every recorded tensor (min/max: what calibration recorded)."""
    method = RangeMethod(method)
    if method is RangeMethod.MINMAX:
        return calibrated_ranges(calibrated)
    values = observed_values(calibrated, samples)
    return percentile_ranges(values, percentile) if method is RangeMethod.PERCENTILE else mse_ranges(values)
