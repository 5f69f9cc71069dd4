"""Accuracy budgets: search INT8 variants until one meets `--max-drop/--min-agreement/--min-sqnr`.

`search` plans and runs the search for every format and registers the budget check; `explore`
is the search itself (fix chains x range methods, 16x8, float fallback ranked by what it
recovers, the INT8-share bound, the time bound, the holdout verdict); `evaluate` measures it
(the metric per named output, the paired intervals of `edgeact.stats`, the holdout split, MACs);
`tflite` and `onnx` are each format's moves; `bias_correction` is one of the fixes; `write`
puts the chosen model in place of the exporter's and verifies it again.

May import: everything of converters below the pipeline (`keras`, the base, `passes`,
`layer_error`, `tflite`, `onnx`), `calibration`, edgeact (but `cli`, `profile`).
"""
