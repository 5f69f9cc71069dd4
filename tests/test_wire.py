"""The child-process / device argument protocol: what edgeact writes is what the entry points read.

`profiler_arguments` / `serve_arguments` (the writers) and `profiler_parser` / `serve_parser`
with `settings_fields` (the readers) live side by side in `edgeact.measure.wire`; these tests
run every LoopSettings field through the pair, so a field one side forgets fails here.
"""
from __future__ import annotations

from dataclasses import asdict, fields

import pytest

from edgeact.measure.profiler import LoopSettings
from edgeact.measure.wire import profiler_arguments, profiler_parser, serve_arguments, serve_parser, settings_fields

SETTINGS = [
    LoopSettings(),
    LoopSettings(runs=7, warmup=0, threads=3, runtime="onnxruntime", delegate="none", streams=2, evaluate=False,
                 input_shape=(3, 640, 640)),
    LoopSettings(runs=1, warmup=5, threads=None, runtime=None, delegate="/usr/lib/libarmnnDelegate.so",
                 input_shape=(1000, 4)),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_profiler_arguments_read_back_as_the_same_settings(settings):
    argv = profiler_arguments(settings, "-odd name.tflite", "in.npz", "/tmp/result", progress=True)
    args = profiler_parser().parse_args(argv)
    assert LoopSettings(**settings_fields(args)) == settings
    assert (args.model, args.inputs, args.output, args.progress) == ("-odd name.tflite", "in.npz", "/tmp/result", True)


def test_every_loop_setting_crosses_the_profiler_protocol():
    """Each field set to a non-default value on its own reaches the other side."""
    changed = {"runs": 3, "warmup": 1, "threads": 2, "runtime": "litert", "delegate": "none", "streams": 4,
               "evaluate": False, "input_shape": (2, 5)}
    assert set(changed) == {f.name for f in fields(LoopSettings)}
    for name, value in changed.items():
        settings = LoopSettings(**{name: value})
        args = profiler_parser().parse_args(profiler_arguments(settings, "m.tflite", "i.npz", "r"))
        assert LoopSettings(**settings_fields(args)) == settings, name


@pytest.mark.parametrize("settings", SETTINGS)
def test_serve_arguments_read_back_as_the_runner_settings(settings):
    args = serve_parser().parse_args(serve_arguments(settings, "-m.onnx"))
    got = settings_fields(args)
    assert args.model == "-m.onnx"
    assert got == {k: v for k, v in asdict(settings).items() if k in ("threads", "runtime", "delegate", "input_shape")}
