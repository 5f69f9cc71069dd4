"""`edgeact profile` as a library: one session over models, data, reference and devices.

`session` runs a profile (`profile_models`, returning a `report.ProfileReport`), `row` is one
measured row, `fields` the checked reader both are built from JSON with, `reference` the float
model each row is compared with, `targets` the devices edgeact knows, `summary` the closing
sentences, `render` the table/JSON/CSV/Markdown, `plot` the figures. `evaluate` is the streamed
evaluation pass of `--data` (chunks, checkpoint, shards over devices), `tally` its chunk-wise
accuracy and agreement.

May import: every edgeact wing but `cli`; `converters.keras` lazily, for a Keras reference
(the host side; a device is given a float .tflite/.onnx reference instead).
"""
