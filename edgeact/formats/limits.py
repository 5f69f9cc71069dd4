"""Limits on what a model file or report may ask for, checked before anything is allocated.

A downloaded file can claim any shape. These bounds refuse what no real model needs (a rank
of 40, a dimension of 2^31) and what this machine cannot hold (one tensor larger than its
memory), with the number, before numpy or a runtime tries to allocate it.
"""
from __future__ import annotations

import os

from edgeact.errors import InputError, LimitError

MAX_RANK = 8  # TFLite kernels handle up to 6 dimensions (some 8); ONNX CNNs use 4
MAX_DIM = 2**31 - 1  # TFLite stores dimensions as int32
MAX_ELEMENTS = 2**31 - 1  # TFLite and ORT's CPU kernels index tensors with int32 in places
MAX_INPUT_SAMPLE_ELEMENTS = 64 * 1024 * 1024  # one input sample edgeact prepares (a 4K RGB frame is 25M)

_UNKNOWN_MEMORY = 1 << 40


def machine_memory_bytes() -> int:
    """The memory this process may use: physical memory, or less where a container's cgroup or
    RLIMIT_AS says so (1 TiB where the OS does not say)."""
    limits = []
    try:
        limits.append(int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES")))
    except (ValueError, OSError, AttributeError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as handle:
            text = handle.read().strip()
        if text.isdigit():
            limits.append(int(text))
    except OSError:
        pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    except (ImportError, ValueError, OSError):
        pass
    return min(limits) if limits else _UNKNOWN_MEMORY


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_shape(shape, what: str, where: str, allow_unknown: bool = False) -> None:
    """Rank and every dimension within bounds; -1 (unknown) only with `allow_unknown`.

    Raises:
        LimitError naming the tensor and the file.
    """
    if len(shape) > MAX_RANK:
        raise LimitError(f"{where}: {what} has rank {len(shape)}; edgeact reads tensors of rank "
                         f"{MAX_RANK} or less; the file is corrupt or not a vision model")
    for d in shape:
        d = int(d)
        if d < (-1 if allow_unknown else 0) or d > MAX_DIM:
            raise LimitError(f"{where}: {what} has dimension {d} in shape {list(map(int, shape))}; "
                             "the file is corrupt; re-export it")


def check_bytes(elements: int, itemsize: int, what: str, where: str) -> None:
    """Refuse a tensor that could not fit in this machine's memory, with the numbers."""
    if elements > MAX_ELEMENTS:
        raise LimitError(f"{where}: {what} has {elements:,} elements (limit {MAX_ELEMENTS:,}); "
                         "the file is corrupt or the model is too large for edge runtimes")
    need, have = elements * itemsize, machine_memory_bytes()
    if need > have:
        raise LimitError(f"{where}: {what} needs {gib(need)} but this machine has {gib(have)} of memory; "
                         "the file is corrupt or the model is too large for this machine")


def elements_of(shape) -> int:
    """The element count of a shape, unknown (-1) dimensions counted as 1 (one sample)."""
    n = 1
    for d in shape:
        n *= max(int(d), 1) if int(d) != 0 else 0
    return n


def check_sample_shape(shape, where: str) -> None:
    """One input sample edgeact will prepare (random inputs, decoded images) within bounds."""
    if any(int(d) < 1 for d in shape):
        raise InputError(f"{where} takes inputs of shape {tuple(shape)} (unknown dimensions besides the batch); "
                         "edgeact profiles models with a fixed input size; re-export it with one")
    elements = elements_of(shape)
    if elements > MAX_INPUT_SAMPLE_ELEMENTS:
        raise LimitError(f"{where}: an input sample of shape {tuple(shape)} is {elements:,} values, over edgeact's "
                         f"limit of {MAX_INPUT_SAMPLE_ELEMENTS:,}; profile models with image-sized inputs")
