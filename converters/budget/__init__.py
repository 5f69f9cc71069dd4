"""Accuracy budgets: search INT8 variants until one meets `--max-drop/--min-agreement/--min-sqnr`.

`search` plans and runs the search for every format and registers the budget check, `tflite`
and `onnx` try range methods, fixes and float fallback per format, `bias_correction` is one of
the fixes, `write` puts the chosen model in place of the exporter's and verifies it again.

May import: everything of converters below the pipeline (`keras`, the base, `passes`,
`layer_error`, `tflite`, `onnx`), `calibration`, edgeact (but `cli`, `profile`).
"""
