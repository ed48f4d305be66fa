"""The run-state model every dock shares: idle -> running -> cancelling -> idle (Qt-free, evented).

A session owns the cancel event of the run in progress. Widgets (and the Qt worker controller) only
watch its signals; tests drive it directly without Qt.
"""

from __future__ import annotations

import threading
from enum import Enum

from psygnal import Signal

from ..errors import CancelledError, ConfigError, CXDIError


class RunState(str, Enum):
    IDLE = "idle"
    RUNNING = "running"
    CANCELLING = "cancelling"


class RunSession:
    """State machine of one dock's background work plus its status line.

    Signals: ``state_changed(str)``, ``status_changed(str)``, ``progress_changed(int, int)`` (done, total;
    total 0 = unknown).
    """

    state_changed = Signal(str)
    status_changed = Signal(str)
    progress_changed = Signal(int, int)

    def __init__(self, name: str = "napari-cxdi"):
        self.name = name
        self._state = RunState.IDLE
        self.cancel_event = threading.Event()
        self.status = "ready"
        self.job = ""

    # -- state ----------------------------------------------------------------------------------------
    @property
    def state(self) -> RunState:
        return self._state

    @property
    def running(self) -> bool:
        return self._state is not RunState.IDLE

    def _set_state(self, state: RunState) -> None:
        if state is not self._state:
            self._state = state
            self.state_changed.emit(state.value)

    def begin(self, job: str = "") -> threading.Event:
        """idle -> running; returns a fresh cancel event for this run (ConfigError when busy)."""
        if self._state is not RunState.IDLE:
            raise ConfigError(f"{self.name}: {self.job or 'a computation'} is already running; cancel it first")
        self.job = job
        self.cancel_event = threading.Event()
        self._set_state(RunState.RUNNING)
        self.set_status(f"{job} …" if job else "running …")
        self.set_progress(0, 0)
        return self.cancel_event

    def request_cancel(self) -> bool:
        """running -> cancelling (the generator stops between two steps). False when nothing runs."""
        if self._state is not RunState.RUNNING:
            return False
        self.cancel_event.set()
        self._set_state(RunState.CANCELLING)
        self.set_status("cancelling after this step …")
        return True

    def end(self, status: str | None = None) -> None:
        """-> idle, with a final status line (``None`` keeps the current one)."""
        self._set_state(RunState.IDLE)
        self.job = ""
        if status is not None:
            self.set_status(status)

    def cancelled(self) -> None:
        """A run ended by Cancel: nothing of it is kept; the status says so."""
        self.set_progress(0, 0)
        self.end("cancelled — nothing was replaced")

    def failed(self, message: str) -> None:
        self.set_progress(0, 0)
        self.end(f"failed: {message}")

    # -- status ---------------------------------------------------------------------------------------
    def set_status(self, text: str) -> None:
        self.status = text
        self.status_changed.emit(text)

    def set_progress(self, done: int, total: int) -> None:
        self.progress_changed.emit(int(done), int(total))


def error_message(exc: BaseException, action: str = "") -> str:
    """The text of a notification: what failed, the error's what/where/what-to-do, never a traceback."""
    if isinstance(exc, CancelledError):
        return f"{action} cancelled" if action else "cancelled"
    text = str(exc) if isinstance(exc, CXDIError) else f"{type(exc).__name__}: {exc}"
    return f"{action} failed: {text}" if action else text
