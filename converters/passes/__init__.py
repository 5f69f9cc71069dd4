"""Graph passes: small registered units, run as a pipeline that is a plain list of names.

Each pass takes a `KerasGraph`, edits it in place and returns a `PassResult` saying what it
changed and what it left alone, and why; its docstring draws the pattern before and after,
with its guards. `registry` holds `register_pass` and `PassResult` (the passes import only
it), `pipeline` the default order and `run_pipeline`, one module per pass beside them.

May import: `converters.keras` (the graph a pass edits). Nothing else of converters.
"""
