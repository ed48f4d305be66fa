"""Long computations are generators that yield progress events and *return* their result.

A GUI thread worker consumes them (napari emits the return value as ``returned``), the CLI feeds the
events to a progress bar, and scripts call :func:`drain`.
"""

from __future__ import annotations

import threading
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


CANCELLED = object()
"""Returned by :func:`cancellable` when the run was cancelled."""


def cancellable(gen: Generator, cancel: threading.Event | None = None, **tags: Any):
    """Re-yield ``gen``'s events (dicts, with ``tags`` added) and return its return value.

    If ``cancel`` is set between two events the generator is closed (its clean-up runs, e.g. a trainer
    restores its best weights) and :data:`CANCELLED` is returned. Use with ``yield from``.
    """
    while True:
        if cancel is not None and cancel.is_set():
            gen.close()
            return CANCELLED
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        yield {**tags, **event} if tags else event
