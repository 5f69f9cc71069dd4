"""The convert report: its typed records, their validation, and everything that prints a report.

`records` holds the dataclasses `convert` writes to `<name>.edgeact.json`, `validate` checks a
report read from disk (it is hostile input), `sidecar` finds the report beside a model file,
`render` prints convert's and inspect's summaries, `table` the terminal tables, `budget` and
`layer_errors` their sections, `inspect` what `edgeact inspect` describes, `plot` matplotlib.

May import: the core, `edgeact.formats`, `edgeact.data`, `edgeact.runtime`, `edgeact.measure`,
`edgeact.fastpath` (the fast-path sections render themselves).
"""
