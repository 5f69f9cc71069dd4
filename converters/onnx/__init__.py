"""The ONNX exporter: tf2onnx for the float model, ONNX Runtime's quantizer for INT8 QDQ.

`exporter` writes both models, `check` proves what ORT really runs (its optimised graph),
`kernels` tells quantization error from a CPU's integer kernels, `rewrites` edits the QDQ
graph, `histograms` bounds ORT's calibration memory, `tf2onnx_ops` tames tf2onnx's optimizers.

May import: edgeact (but `cli`, `profile`), `calibration`, `converters.keras`, the converters
base, `converters.layer_error`.
"""
