"""One worker controller for every dock: runs a progress generator in a napari thread worker under a
session's run state (idle -> running -> cancelling -> idle).

* one cancellation convention: the generator is wrapped in :func:`napari_cxdi.progress.cancellable` with the
  session's cancel event; :data:`~napari_cxdi.progress.CANCELLED` (or a result with ``cancelled=True``) ends
  the run as *cancelled* and the result callback is not called (nothing is replaced);
* controls are disabled while a run goes and enabled after; Cancel only while it runs;
* on cancel and on error ``on_reset`` clears status and preview layers; errors become napari notifications
  with the error's what/where/what-to-do (no traceback);
* the worker is stopped when the dock is closed or napari quits.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from qtpy.QtWidgets import QApplication, QWidget

from ..progress import CANCELLED, cancellable
from ..sessions import RunSession, error_message


def _as_generator(fn: Callable, *args, **kwargs):
    """A plain function as a generator with no events (so every job runs the same way)."""
    return fn(*args, **kwargs)
    yield  # pragma: no cover


def notify_error(message: str) -> None:
    from napari.utils import notifications

    notifications.show_error(message)


class WorkerController:
    """Runs one job at a time for a dock. ``controls`` are disabled while running; ``cancel_button`` the reverse."""

    def __init__(self, session: RunSession, owner: QWidget, controls: Iterable[QWidget] = (), cancel_button=None,
                 on_reset: Callable[[], None] | None = None, notify: Callable[[str], None] | None = None):
        self.session = session
        self.notify = notify or notify_error
        self.owner = owner
        self.controls = list(controls)
        self.cancel_button = cancel_button
        self.on_reset = on_reset
        self.worker = None
        self._on_result: Callable | None = None
        self._action = ""
        self._closed = False
        if cancel_button is not None:
            cancel_button.setEnabled(False)
            cancel_button.clicked.connect(self.cancel)
        session.state_changed.connect(self._sync_controls)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.stop)
        owner.destroyed.connect(lambda *_: self.stop())

    # -- state --------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None or self.session.running

    def _sync_controls(self, *_: Any) -> None:
        busy = self.session.running
        for w in self.controls:
            try:
                w.setEnabled(not busy)
            except RuntimeError:  # deleted with the dock
                pass
        if self.cancel_button is not None:
            try:
                self.cancel_button.setEnabled(self.session.state.value == "running")
            except RuntimeError:
                pass

    # -- running ----------------------------------------------------------------------------------------
    def start(self, job: Callable, *args: Any, on_event: Callable[[dict], None] | None = None,
              on_result: Callable[[Any], None] | None = None, label: str = "", generator: bool = True, **kwargs: Any):
        """Run ``job(*args, **kwargs)`` (a progress generator, or a plain function with ``generator=False``)
        in a worker. The session's cancel event is passed as ``cancel=`` when ``job`` accepts it. Returns the
        worker, or None when refused (busy: a warning is shown)."""
        from napari.qt.threading import create_worker
        from napari.utils import notifications

        if self._closed:
            return None
        if self.running:
            notifications.show_warning(f"{self.session.name}: {self.session.job or 'a computation'} is already running; "
                                       "cancel it first")
            return None
        cancel = self.session.begin(label)
        self._on_result, self._action = on_result, label

        def run():
            gen = job(*args, **kwargs) if generator else _as_generator(job, *args, **kwargs)
            value = yield from cancellable(gen, cancel)
            return value

        worker = create_worker(run, _start_thread=False, _connect={
            "yielded": lambda e: self._on_yielded(e, on_event), "returned": self._on_returned,
            "errored": self._on_errored, "finished": self._on_finished})
        self.worker = worker
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop between two steps; the run's outcome is discarded."""
        self.session.request_cancel()

    def stop(self) -> None:
        """Cancel and ask the worker thread to quit (dock closed, napari quitting)."""
        self._closed = True
        self.session.cancel_event.set()
        worker = self.worker
        if worker is not None:
            try:
                worker.quit()
            except RuntimeError:  # the Qt object is already gone
                pass

    # -- slots (main thread) ---------------------------------------------------------------------------
    def _on_yielded(self, event, on_event) -> None:
        if self.worker is None or not self.session.running or self._closed or self.session.cancel_event.is_set():
            return  # late events of a cancelled or closed run
        if on_event is not None and isinstance(event, dict):
            on_event(event)

    def _reset(self) -> None:
        if self.on_reset is not None and not self._closed:
            try:
                self.on_reset()
            except RuntimeError:  # widgets already deleted
                pass

    def _on_returned(self, value) -> None:
        callback, self._on_result = self._on_result, None
        if value is CANCELLED or getattr(value, "cancelled", False) or self.session.cancel_event.is_set():
            if hasattr(self.session, "accept") and getattr(value, "cancelled", False):
                self.session.accept(value)  # a session may keep side products (never as its result)
            else:
                self.session.cancelled()
            self._reset()
            return
        if self._closed:
            self.session.end()
            return
        if callback is not None:
            try:
                callback(value)
            except Exception as exc:  # a failing result slot must not leave the dock busy
                self._on_errored(exc)
                return
        if self.session.running:
            self.session.end()

    def _on_errored(self, exc: BaseException) -> None:
        message = error_message(exc, f"{self.session.name}: {self._action}" if self._action else self.session.name)
        self.session.failed(str(exc) if not isinstance(exc, Exception) else error_message(exc))
        self._reset()
        if not self._closed:
            self.notify(message)

    def _on_finished(self) -> None:
        """The thread is done (after ``returned`` / ``errored``): only now may the next job start."""
        self.worker = None
        if self.session.running:  # aborted (quit) without a return value
            self.session.end()
        self._sync_controls()
