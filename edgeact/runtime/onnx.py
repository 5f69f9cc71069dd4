"""ONNX Runtime runner for .onnx models (float or QDQ INT8).

The measuring path uses IOBinding: the input is an OrtValue that shares memory with a
numpy array the runner owns (`write_input` copies a sample into it), and the outputs are
bound to arrays allocated once, so `invoke` is `run_with_iobinding` with nothing to
allocate or convert. The binding is made when the session opens; only a model whose
outputs have unknown dimensions (other than the batch) first runs through `session.run`,
which tells the shapes to bind. Measured with onnxruntime 1.31 on a 2-core x86 machine, a tiny CNN
ran 18 us per call this way against 21 us with `session.run`; on MobileNetV2 the two are
the same within noise. Passing a `RunOptions` to `run_with_iobinding` made it 3x slower
on the tiny CNN, so none is passed. The first `invoke` goes through `session.run` (it is
the cold inference, and it tells the concrete output shapes to bind).
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from edgeact.errors import InputError, ModelLoadError, RuntimeUnavailableError, first_line
from edgeact.formats.validate_onnx import check_session_io, load_checked, onnx_available
from edgeact.quiet import ort_log_severity, runtime_output_captured

from .base import Delegate, IOSpec, Runner, RuntimeName, check_delegate

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
}
CPU_PROVIDER = "CPUExecutionProvider"


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeUnavailableError("running .onnx models needs ONNX Runtime; pip install onnxruntime") from None
    onnxruntime.set_default_logger_severity(ort_log_severity())  # its global logger, not only the session's
    return onnxruntime


def session_options(threads: int | None = None, optimized_path: str | Path | None = None, level: str = "all",
                    config: dict[str, str] | None = None):
    """ORT session options: graph optimisations (all by default; "basic" keeps a QDQ model's
    DequantizeLinear/QuantizeLinear groups, its arithmetic as written, instead of integer
    kernels), optional thread count and optimized-graph dump, and session config entries
    (e.g. session.x64quantprecision=1: U8U8 kernels that cannot saturate on x86-64 without VNNI)."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[level]
    options.log_severity_level = ort_log_severity()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    return options


def execution_provider(delegate: str) -> str:
    """The ORT execution provider standing in for a TFLite delegate name.

    xnnpack (the default) and none both mean ORT's own CPU kernels; an installed provider
    can be named directly (e.g. 'XnnpackExecutionProvider').
    """
    if delegate in (Delegate.XNNPACK.value, Delegate.NONE.value, "cpu", CPU_PROVIDER):
        return CPU_PROVIDER
    if delegate == Delegate.EDGETPU.value:
        raise InputError("the Edge TPU runs .tflite models only; profile the *_int8_edgetpu.tflite model instead")
    available = import_onnxruntime().get_available_providers()
    if delegate in available:
        return delegate
    raise RuntimeUnavailableError(
        f"ONNX Runtime has no execution provider '{delegate}' here (available: {', '.join(available)}); "
        "install an onnxruntime build that has it, or use --delegate xnnpack"
    )


def _known(shape) -> bool:
    """Every dimension but the batch is a number, so the output can be allocated before running."""
    return all(isinstance(d, int) and d > 0 for d in list(shape)[1:])


def _dims(shape) -> tuple[int, ...]:
    """Symbolic dimensions (batch) become 1: the runner feeds one sample at a time."""
    return tuple(d if isinstance(d, int) and d > 0 else 1 for d in shape)


def _input_dims(name: str, shape, given: tuple[int, ...] | None, model: str) -> tuple[int, ...]:
    """The input's shape for one sample: dynamic sizes (other than the batch) come from --input-shape."""
    dims = list(shape)
    open_sizes = [k for k, d in enumerate(dims[1:], 1) if not (isinstance(d, int) and d > 0)]
    if given is not None:
        if len(given) != len(dims) - 1 or any(isinstance(d, int) and d > 0 and d != g
                                             for d, g in zip(dims[1:], given)):
            raise InputError(f"--input-shape {','.join(map(str, given))} does not fit input '{name}' of {model} "
                             f"({_shape_text(dims)}); give its sizes without the batch axis")
        return (1, *given)
    if open_sizes:
        example = ",".join(str(d) if isinstance(d, int) and d > 0 else "224" for d in dims[1:])
        raise InputError(f"input '{name}' of {model} has dynamic sizes ({_shape_text(dims)}); set them with "
                         f"--input-shape, e.g. --input-shape {example}")
    return _dims(shape)


def _shape_text(dims) -> str:
    return ", ".join(str(d) if isinstance(d, int) and d > 0 else "?" for d in dims)


class OnnxRunner(Runner):
    """An .onnx model in an ONNX Runtime InferenceSession (CPU execution provider by default).

    The model's float interface is kept: QDQ models quantize inside the graph, so inputs
    are float32 and `prepare` is a cast.
    """

    format = "onnx"

    def __init__(self, path: str | Path, runtime: RuntimeName | str | None = None,
                 threads: int | None = None, delegate: str = "xnnpack",
                 input_shape: tuple[int, ...] | None = None, optimization: str = "all",
                 config: dict[str, str] | None = None) -> None:
        if runtime is not None and RuntimeName(runtime) is not RuntimeName.ONNXRUNTIME:
            raise InputError(f"runtime '{RuntimeName(runtime).value}' does not run .onnx models; "
                             "use --runtime onnxruntime")
        self.path = Path(path)
        provider = execution_provider(check_delegate(str(getattr(delegate, "value", delegate))))
        ort = import_onnxruntime()
        self._ort = ort
        self.runtime = RuntimeName.ONNXRUNTIME.value
        self.runtime_version = ort.__version__
        # ORT's execution provider plays the part of a TFLite delegate here.
        self.delegate = provider
        if onnx_available():  # the host: onnx's checker and edgeact's limits before ORT parses the file
            load_checked(self.path)
        try:
            with runtime_output_captured():  # ORT prints its own log line and banners on fds 1 and 2
                self.session = ort.InferenceSession(str(self.path), session_options(threads, level=optimization,
                                                                                    config=config),
                                                    providers=[provider])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf types
            raise ModelLoadError(f"ONNX Runtime cannot load {self.path}: {first_line(exc, 200)}; "
                                 "re-export it") from None
        check_session_io(self.session, self.path, _ORT_TYPES)
        self.inputs = [IOSpec(i.name, _input_dims(i.name, i.shape, input_shape, self.path.name),
                              np.dtype(_ORT_TYPES.get(i.type, np.float32)))
                       for i in self.session.get_inputs()]
        self.outputs = [IOSpec(o.name, _dims(o.shape), np.dtype(_ORT_TYPES.get(o.type, np.float32)))
                        for o in self.session.get_outputs()]
        self._names = [o.name for o in self.session.get_outputs()]
        self._buffers = [np.zeros(spec.shape, spec.dtype) for spec in self.inputs]
        self._feed = {spec.name: buf for spec, buf in zip(self.inputs, self._buffers)}
        self._binding = None
        self._bound_outputs: list[np.ndarray] = []
        self._results: list[np.ndarray] = []
        if all(_known(o.shape) for o in self.session.get_outputs()):
            self._bind([np.zeros(spec.shape, spec.dtype) for spec in self.outputs])
        else:
            # Output sizes that depend on the input's (a detector's map): learn them from one run.
            try:
                first = [np.asarray(r) for r in self.session.run(self._names, self._feed)]
            except Exception as exc:  # ORT's own failure types
                raise ModelLoadError(f"ONNX Runtime cannot run {self.path}: {first_line(exc, 200)}") from None
            self.outputs = [IOSpec(spec.name, tuple(r.shape), spec.dtype) for spec, r in zip(self.outputs, first)]
            self._bind(first)

    def set_inputs(self, arrays: list[np.ndarray]) -> None:
        for buf, array in zip(self._buffers, arrays):
            np.copyto(buf, np.reshape(array, buf.shape))

    def write_input(self, sample: np.ndarray) -> None:
        np.copyto(self._buffers[0], sample)

    def invoke(self) -> None:
        try:
            if self._binding is None:
                self._results = self.session.run(self._names, self._feed)
                self._bind([np.asarray(r) for r in self._results])
            else:
                self.session.run_with_iobinding(self._binding)
        except (RuntimeError, ValueError):
            raise
        except Exception as exc:  # ORT's Fail/InvalidArgument/RuntimeException derive from Exception only
            raise RuntimeError(first_line(exc)) from None

    def _bind(self, first_results: list[np.ndarray]) -> None:
        """Bind the input buffers, and output arrays shaped like `first_results`."""
        ort = self._ort
        binding = self.session.io_binding()
        for spec, buf in zip(self.inputs, self._buffers):
            binding.bind_ortvalue_input(spec.name, ort.OrtValue.ortvalue_from_numpy(buf))
        self._bound_outputs = [np.empty_like(r) for r in first_results]
        for name, out in zip(self._names, self._bound_outputs):
            binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(out))
        self._binding = binding
        self._results = self._bound_outputs
        for out, first in zip(self._bound_outputs, first_results):
            np.copyto(out, first)

    def get_outputs(self) -> list[np.ndarray]:
        return [np.array(r) for r in self._results]

    def store_outputs(self, results: list[np.ndarray], row: int) -> None:
        for slot, out in zip(results, self._results):
            slot[row] = out.reshape(slot.shape[1:])

    # Samples per session.run in `predict`: ORT's arena grows with the batch (every activation of
    # every sample at once), which made a 100-sample check of DenseNet121 the peak of `convert`.
    PREDICT_CHUNK = 8

    def predict(self, batch) -> dict[str, np.ndarray]:
        """Chunks of samples at once where every input's batch axis is dynamic; else one at a time."""
        if all(i.shape and not isinstance(i.shape[0], int) for i in self.session.get_inputs()):
            arrays = self.input_arrays(batch)
            prepared = [self.prepare(a, k) for k, a in enumerate(arrays)]
            parts: list[list[np.ndarray]] = []
            for start in range(0, len(prepared[0]), self.PREDICT_CHUNK):
                feed = {spec.name: p[start:start + self.PREDICT_CHUNK] for spec, p in zip(self.inputs, prepared)}
                parts.append(self.session.run(self._names, feed))
            return {name: np.concatenate([np.asarray(p[k], dtype=np.float32) for p in parts])
                    for k, name in enumerate(self._names)}
        return super().predict(batch)


def optimized_graph(path: str | Path, level: str = "extended"):
    """The model ONNX Runtime's CPU provider actually executes, after its own optimisation (a ModelProto).

    Read by the convert checks (integer kernels, fused activations) and the fast-path coverage,
    which ask for the same file within seconds of each other: the result is kept for the last
    two (file, size, mtime, level) keys, so a rewritten file is optimised again. Callers must
    not modify the returned proto. Needs the `onnx` package to read the written graph back.
    """
    stat = Path(path).stat()
    return _optimized_graph(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, level)


@functools.lru_cache(maxsize=2)  # two: a convert asks for its INT8 and its float file
def _optimized_graph(path: str, size: int, mtime_ns: int, level: str):
    import tempfile

    import onnx

    ort = import_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="edgeact-ort-") as tmp:
        out = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        }[level]
        options.optimized_model_filepath = str(out)
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return onnx.load(str(out), load_external_data=False)
