"""Model files, read as hostile input: the .tflite flatbuffer and .onnx protobuf, bounds-checked.

`flatbuf` is the bounds-checked flatbuffer reader, `tflite_schema` the schema table generated
from the runtime's own schema (`tools/gen_tflite_schema.py`), `validate_tflite` and
`validate_onnx` refuse corrupt files before a runtime sees them, `limits` the sizes no real
model needs, `tflite_model` and `onnx_model` what edgeact reads out of a model, `metadata` the
metadata buffers a .tflite carries (and what is wrong with them), `tflite_metadata` the standard
TFLite Model Metadata flatbuffer among them, read with `flatbuf` and the schema table
`tflite_metadata_schema` (generated from metadata_schema.fbs by `tools/gen_tflite_metadata_schema.py`).

May import: the core (`edgeact.errors`, `config`, ...). Nothing else of edgeact.
"""
