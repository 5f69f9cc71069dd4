"""The measuring loop that runs on the device, and the protocol that carries it there and back.

`profiler` is the loop itself (`python -m edgeact.measure.profiler`, the module a device runs
from the zip edgeact sends), `wire` the child-process/device argument and result protocol,
`isolated` the same loop in a child process so that a runtime crash becomes an error, `serve`
the chunk server that evaluates streamed chunks of data (`python -m edgeact.measure.serve`, in a
child process or on the device).

May import: the core, `edgeact.formats`, `edgeact.data`, `edgeact.runtime`.
"""
