"""Long computations are generators that yield progress events and *return* their result.

A GUI thread worker consumes them (napari emits the return value as ``returned``), the CLI feeds the
events to a progress bar, and scripts call :func:`drain`.
"""

from __future__ import annotations

from typing import Any, Callable, Generator, TypeVar

R = TypeVar("R")


def drain(gen: Generator[Any, None, R], progress: Callable[[Any], None] | None = None) -> R:
    """Run a progress generator to its end, calling ``progress(event)`` for each event; return its value."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(event)
