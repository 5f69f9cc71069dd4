"""Pixel-in TFLite models (`--io uint8`): raw 0..255 camera pixels in, no preprocessing in the app.

A uint8 input tensor is dequantized by every runtime and client as `(q - zero_point) * scale`.
When the preprocessing is one scale and one offset for all channels, that *is* the
preprocessing, so it is folded into the input tensor's quantization:

    unit       x / 255          -> uint8 input, scale 1/255,   zero point 0    (exact)
    mobilenet  x / 127.5 - 1    -> uint8 input, scale 1/127.5, zero point 128  (offset 127.5 is
                                   not an integer: every pixel lands 0.5/127.5 below its float
                                   value, half an int8 input step; the float INT8 model itself
                                   cannot represent -1..1 on a symmetric grid either)

and the converter's own uint8->int8 QUANTIZE op requantizes from it. Per-channel presets
(torch, caffe, --mean/--std) cannot be one scale, so a normalisation op goes in front of
the model: a 1x1 convolution whose weights are `1/std_c * scale` on the diagonal (the
channel permutation for caffe's RGB->BGR) and whose bias is `-mean_c/std_c`; the model
takes pixels with scale 1 and zero point 0. Both are verified numerically by the exporter,
which feeds the pixel-in model uint8 pixels and the float model the preprocessed floats.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgeact.data.preprocess import Preprocessing
from edgeact.errors import InputError


@dataclass(frozen=True)
class PixelIn:
    """How a pixel-in model's uint8 input relates to the float model's preprocessing."""

    method: str  # "folded": into the input quantization; "normalisation_op": a 1x1 conv at the input
    scale: float  # of the uint8 input tensor
    zero_point: int
    # The largest |float input the model sees - preprocess(pixel)|, over all pixels 0..255.
    max_input_offset: float
    description: str

    def to_dict(self) -> dict:
        return asdict(self)


def plan_pixel_in(pre: Preprocessing, channels: int) -> PixelIn:
    """Fold when the preprocessing is one scale and offset; a normalisation op otherwise."""
    pre._per_channel(pre.mean, channels, "mean")  # a clear InputError for a wrong-length mean/std
    pre._per_channel(pre.std, channels, "std")
    uniform = len(set(pre.mean)) == 1 and len(set(pre.std)) == 1 and not (pre.bgr and channels == 3)
    if uniform:
        scale = pre.scale / pre.std[0]
        offset = pre.mean[0] / pre.scale  # in pixels: y = (x - offset) * scale
        zero_point = int(np.floor(offset + 0.5))
        if 0 <= zero_point <= 255:
            error = abs(zero_point - offset) * scale
            exact = "exact" if error == 0 else f"offset {abs(zero_point - offset):g} pixel"
            return PixelIn("folded", float(scale), zero_point, float(error),
                           f"uint8 pixels 0..255, {pre.preset} preprocessing folded into the input "
                           f"quantization (scale {scale:.6g}, zero point {zero_point}; {exact})")
    return PixelIn("normalisation_op", 1.0, 0, 0.0,
                   f"uint8 pixels 0..255, {pre.preset} preprocessing ({pre.description}) done by a "
                   "normalisation op at the input")


def normalisation_model(keras_model, pre: Preprocessing, output_names: list[str] | None = None):
    """`keras_model` behind a 1x1 conv that preprocesses float pixels (the per-channel case).

    Its outputs are a dict keyed by `output_names` (the Keras names the converter must keep).
    """
    import keras

    shape = tuple(keras_model.inputs[0].shape[1:])
    channels = shape[-1]
    mean = np.broadcast_to(np.asarray(pre.mean, np.float32), (channels,))
    std = np.broadcast_to(np.asarray(pre.std, np.float32), (channels,))
    weights = np.zeros((1, 1, channels, channels), np.float32)
    for out_c in range(channels):
        # caffe's BGR model channel c reads RGB pixel channel 2 - c
        in_c = channels - 1 - out_c if pre.bgr and channels == 3 else out_c
        weights[0, 0, in_c, out_c] = pre.scale / std[out_c]
    bias = (-mean / std).astype(np.float32)
    # The input keeps the model's input name: its SignatureDef, calibration samples and report say it.
    pixels = keras.Input(shape, name=keras_model.inputs[0].name)
    norm = keras.layers.Conv2D(channels, 1, name="pixel_normalisation")
    x = norm(pixels)
    norm.set_weights([weights, bias])
    outputs = keras_model(x)
    if output_names is not None and not isinstance(outputs, dict):
        outputs = dict(zip(output_names, outputs if isinstance(outputs, (list, tuple)) else [outputs]))
    return keras.Model(pixels, outputs, name=f"{keras_model.name}_pixel_in")


def set_input_quantization(model_bytes: bytes, scale: float, zero_point: int) -> bytes:
    """Rewrite the uint8 input tensor's quantization; its QUANTIZE op to int8 requantizes from it.

    Raises:
        InputError: the model's input is not a uint8 tensor feeding a QUANTIZE op (the shape
            TFLiteConverter gives `inference_input_type=tf.uint8`).
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    graph = model.subgraphs[0]
    (index,) = graph.inputs
    tensor = graph.tensors[index]
    consumers = [op for op in graph.operators if index in list(op.inputs)]
    quantize_ops = [op for op in consumers
                    if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.QUANTIZE]
    if tensor.type != schema.TensorType.UINT8 or len(quantize_ops) != len(consumers) or not consumers:
        raise InputError("the pixel-in model's input is not a uint8 tensor feeding a QUANTIZE op; "
                         "convert without --io uint8 or report this model")
    tensor.quantization.scale = [float(scale)]
    tensor.quantization.zeroPoint = [int(zero_point)]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
