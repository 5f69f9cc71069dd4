"""Progress of a conversion step: a bar on a terminal, one timed line per step elsewhere.

A CI log or a redirected stderr cannot redraw a bar, and a bar's carriage returns turn into
one unreadable line; there each step prints once, when it ends, with how long it took:

    edgeact: activation statistics ... 6.2 s
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator


class _Counter:
    """What a step's code calls on its bar (`update`), when no bar is drawn."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


@contextmanager
def step(description: str, total: int | None = None, enabled: bool | None = None,
         stream: Any = None) -> Iterator[Any]:
    """A progress bar (terminal) or a timed line (not a terminal) around one step.

    Args:
        enabled: False shows nothing; True always draws a bar; None (the default) draws a bar
            on a terminal and prints one timed line per step otherwise.
        stream: where to write; edgeact's console (stderr, past any output capture) by default.
    Yields:
        an object with `update(n)`, for steps that count samples.
    """
    from edgeact.quiet import console

    if enabled is False:  # nothing to show: the console is not opened (it is the process's, opened once)
        yield _Counter()
        return
    stream = stream or console()
    terminal = enabled is True or (enabled is None and stream.isatty())
    if terminal:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"{description:<26}", file=stream, leave=False,
                   bar_format="{desc} {bar} {n_fmt}/{total_fmt}" if total else "{desc} ...")
        try:
            yield bar
        finally:
            bar.close()
        return
    start = time.perf_counter()
    yield _Counter()
    # Only a step that finished is logged: a failure's one error line stays the last word.
    if enabled is None:
        print(f"edgeact: {description} ... {time.perf_counter() - start:.1f} s", file=stream, flush=True)
