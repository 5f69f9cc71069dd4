"""Staying on the fast path: which ops a delegate or integer kernel takes, what the rest costs,
and whether INT8 is as fast as this CPU allows.

`coverage` reads which ops left XNNPACK or ORT's integer kernels, `op_time` (with
`op_time_onnx`, `op_time_tflite`) measures each op type's share of the time into the records
of `op_shares`, `speed_verdict` compares an INT8 model with its float sibling.

May import: the core, `edgeact.formats`, `edgeact.data`, `edgeact.runtime`, `edgeact.measure`.
"""
