"""Weight rounding for INT8: each kernel's integers chosen by the layer output error they cause.

`adaround` holds the arithmetic on arrays (a layer's input statistics, the greedy up-or-down
search, the errors it is judged by); `layers` applies it to a folded Keras model (which layers,
their inputs, the snapped copy both INT8 exporters quantize) and says per layer what was kept.

May import: edgeact's core, formats and data, converters.keras, converters (base) and
converters.layer_error (the kernel grids both converters use).
"""
