"""The run-state model every dock shares: idle -> running -> cancelling -> idle (Qt-free, evented).

A session owns the cancel event of the run in progress. Widgets (and the Qt worker controller) only
watch its signals; tests drive it directly without Qt.
"""

from __future__ import annotations

import threading
import time
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
    total 0 = unknown). Progress is emitted at most every ``progress_interval_s`` (plus the first, the last and
    any change of total): a Qt progress bar repaints synchronously on every value, and a tracking run reports
    hundreds of frames.
    """

    progress_interval_s = 0.1

    state_changed = Signal(str)
    status_changed = Signal(str)
    progress_changed = Signal(int, int)

    def __init__(self, name: str = "napari-cxdi"):
        self.name = name
        self._state = RunState.IDLE
        self.cancel_event = threading.Event()
        self.status = "ready"
        self.job = ""
        self._progress_last = (-1, -1, -1e9)  # done, total, time of the last emission

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
        done, total = int(done), int(total)
        last_done, last_total, last_t = self._progress_last
        now = time.perf_counter()
        if (total == last_total and 0 < done < total and done != last_done
                and now - last_t < self.progress_interval_s):
            return  # coalesced: the next emission (or the final one) shows it
        if (done, total) == (last_done, last_total):
            return
        self._progress_last = (done, total, now)
        self.progress_changed.emit(done, total)


def error_message(exc: BaseException, action: str = "") -> str:
    """The text of a notification: what failed, the error's what/where/what-to-do, never a traceback."""
    if isinstance(exc, CancelledError):
        return f"{action} cancelled" if action else "cancelled"
    text = str(exc) if isinstance(exc, CXDIError) else f"{type(exc).__name__}: {exc}"
    return f"{action} failed: {text}" if action else text
