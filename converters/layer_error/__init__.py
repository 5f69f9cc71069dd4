"""Per-layer INT8 error: where a converted model loses accuracy, layer by layer, in each format.

`measure` holds the accumulators, grids and the entry points (`layer_errors`,
`layer_errors_for_job`); `tflite` and `onnx` read every intermediate tensor of each format,
`keras` computes each layer's own error, `files` serves `edgeact layers` on written files. The
records and their rendering are `edgeact.report.layer_errors`, so a device prints them too.

May import: edgeact (but `cli`, `profile`, `fastpath`), `calibration`, `converters.keras`, the
converters base.
"""
