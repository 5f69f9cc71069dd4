"""The TFLite exporter: float and full-integer INT8 .tflite files, and the proofs read back from them.

`exporter` writes both models from one conversion, `calibrate` calibrates the float reference on
LiteRT for the INT8 model, `ranges` keeps TensorFlow's calibrator (with the in-place guard) for
what that cannot run and sets activation ranges by method, `check` proves the fusion in the written
flatbuffer, `pixel_in` folds preprocessing into a uint8 input.

May import: edgeact (but `cli`, `profile`), `calibration`, `converters.keras`, the converters
base (`options`, `job`, ...), `converters.layer_error`.
"""
