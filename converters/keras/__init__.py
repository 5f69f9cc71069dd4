"""Keras models as edgeact reads them: loading, the editable graph, names, and the float reference.

`loader` loads .keras/.h5/SavedModel files, `in_memory` a model object, `graph` is the
editable layer graph the passes rewrite, `signature` the inputs and outputs by name,
`forward` the float pass and statistics, `serving` the named-output functions the exporters
convert, `input_normalization` models that normalise their own input, `activations` what
an activation is and where it may fuse.

May import: edgeact's core, `edgeact.formats`, `edgeact.data`, `edgeact.report`; `calibration`.
"""
