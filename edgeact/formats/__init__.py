"""Model files, read as hostile input: the .tflite flatbuffer and .onnx protobuf, bounds-checked.

`flatbuf` is the bounds-checked flatbuffer reader, `tflite_schema` the schema table generated
from the runtime's own schema (`tools/gen_tflite_schema.py`), `validate_tflite` and
`validate_onnx` refuse corrupt files before a runtime sees them, `limits` the sizes no real
model needs, `tflite_model` and `onnx_model` what edgeact reads out of a model, `metadata` the
metadata buffers a .tflite carries.

May import: the core (`edgeact.errors`, `config`, ...). Nothing else of edgeact.
"""
