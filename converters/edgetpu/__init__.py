"""The Edge TPU wing (host side): run `edgetpu_compiler` on convert's INT8 TFLite, read its log,
and set what it mapped beside the pre-flight's prediction (edgeact.fastpath.edgetpu).

May import: edgeact core, formats, fastpath, report; converters base (options, job). The compiler
runs on x86-64 Linux only, so this is host work; the pre-flight it is compared with is device-side.
"""
