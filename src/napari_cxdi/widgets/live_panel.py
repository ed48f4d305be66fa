"""The "Live" dock: reconstruct and track an acquisition while the detector is still writing.

Thin: a napari thread worker runs :func:`napari_cxdi.live.iter_live`; every yielded ``frames`` event
is handed (in the main thread) to a Qt-free :class:`~napari_cxdi.live.LiveSession`, whose growing arrays
become the data of the ``live diffraction / amplitude / phase / detections / tracks`` layers. The worker
never touches a layer. To keep the viewer responsive while frames stream in
(``python benchmarks/bench_live.py --gui-only``):

* layer updates are spread over event-loop turns, one layer per turn (each costs napari ~5-15 ms of
  slicing, thumbnail and layer-list events; all five at once held the event loop for ~40 ms per block,
  and creating them for ~2 s);
* rounds of updates are at most one per ``refresh_interval_s`` (1 s); frames that arrive meanwhile are
  coalesced into the next round (every frame is shown; the screen is not redrawn per block);
* the diffraction and amplitude layers grow hidden (the phase is what one follows; their eye icon shows
  them): a hidden layer is neither sliced nor painted. The viewer follows the newest frame unless the user has scrolled back. The Live
button is a toggle: off sets the cancel event (the run stops after the current block, the output stays
consistent), on again resumes the same output where it ends (the layers are reloaded from it first).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox,
    QVBoxLayout, QWidget,
)

from ..errors import CXDIError
from .._napari.layers import spatial_geometry
from ..live import LiveSession, iter_live

LAYERS = ("live diffraction", "live amplitude", "live phase")


class LivePanel(QWidget):
    """Source + model or probe + output -> Live toggle -> layers that grow as frames arrive."""

    #: at most one round of layer updates per this interval while following (each round costs the event loop
    #: ~5-15 ms per layer plus a repaint; bench_live.py --gui-only: 0.5 s gave p99 ~95 ms, 1 s ~45 ms)
    refresh_interval_s = 1.0

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.session = LiveSession()
        self.worker = None
        self._cancel = threading.Event()
        self.summary = None
        self.error: Exception | None = None
        self.layer_sizes: list[int] = []  # frames in the layers after each update (how they grew)
        self._steps: list = []  # layer updates still to run, one per event-loop turn
        self._dirty = False  # new frames arrived while a round of updates was running
        self._follow = False
        self._pump = QTimer(self)
        self._pump.setInterval(0)
        self._pump.timeout.connect(self._pump_step)
        self._round_timer = QTimer(self)  # waits out refresh_interval_s since the last round
        self._round_timer.setSingleShot(True)
        self._round_timer.timeout.connect(self._start_round)
        self._last_round = -1e9
        self._status_text = ""
        self._build()

    def _path_row(self, form, label: str, placeholder: str, folder: bool = False) -> QLineEdit:
        line = QLineEdit()
        line.setPlaceholderText(placeholder)
        browse = QPushButton("…")
        browse.setMaximumWidth(28)

        def pick():
            if folder:
                path = QFileDialog.getExistingDirectory(self, label)
            else:
                path, _ = QFileDialog.getOpenFileName(self, label)
            if path:
                line.setText(path)

        browse.clicked.connect(pick)
        row = QHBoxLayout()
        row.addWidget(line)
        row.addWidget(browse)
        form.addRow(label, row)
        return line

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.source = self._path_row(form, "source", "growing .h5 / *_master.h5 / TIFF folder")
        self.model = self._path_row(form, "model", "PID3Net checkpoint (optional)")
        self.probe = self._path_row(form, "probe", "probe file (baseline without a model)")
        self.method = QComboBox()
        self.method.addItems(["mixed-state", "mf-PIE"])
        form.addRow("baseline", self.method)
        self.output = QLineEdit()
        self.output.setPlaceholderText("live output .cxi (resumed if it exists)")
        form.addRow("output", self.output)
        self.idle = QDoubleSpinBox()
        self.idle.setRange(0.0, 3600.0)
        self.idle.setValue(30.0)
        self.idle.setSuffix(" s")
        self.idle.setToolTip("stop after this long without new frames (0 = until the Live toggle is switched off)")
        form.addRow("idle timeout", self.idle)
        self.max_iter = QSpinBox()
        self.max_iter.setRange(1, 1000)
        self.max_iter.setValue(50)
        form.addRow("baseline iterations", self.max_iter)
        self.block = QSpinBox()
        self.block.setRange(1, 256)
        self.block.setValue(8)
        form.addRow("frames per block", self.block)
        self.finetune = QSpinBox()
        self.finetune.setRange(0, 100_000)
        self.finetune.setValue(0)
        self.finetune.setSpecialValueText("off")
        self.finetune.setSuffix(" frames")
        self.finetune.setToolTip("with a model: fine-tune a copy in the background every this many new frames on the "
                                 "latest 32; it replaces the live model only if it predicts their held-out photons better")
        form.addRow("fine-tune every", self.finetune)
        layout.addLayout(form)
        self.live_button = QPushButton("Live")
        self.live_button.setCheckable(True)
        self.live_button.setToolTip("follow the acquisition: reconstruct and track new frames as they are written")
        self.live_button.toggled.connect(self._toggled)
        layout.addWidget(self.live_button)
        self.status = QLabel("not following")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch()

    # -- running --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.worker is not None

    def parameters(self) -> dict:
        source = self.source.text().strip()
        if not source:
            raise CXDIError("choose the acquisition to follow (a growing .h5, a *_master.h5 or a TIFF folder)")
        model = self.model.text().strip() or None
        probe = self.probe.text().strip() or None
        output = self.output.text().strip()
        if not output:
            p = Path(source)
            output = str((p if p.is_dir() else p.parent) / f"{p.stem}_live.cxi")
            self.output.setText(output)
        return dict(source=source, model=model, probe=probe, method=None if model else self.method.currentText(),
                    output=output, idle_timeout_s=self.idle.value() or None, max_iter=self.max_iter.value(),
                    block_frames=self.block.value(), finetune_every=self.finetune.value() if model else 0)

    def _toggled(self, on: bool) -> None:
        if on:
            if self.start() is None:
                self.live_button.blockSignals(True)
                self.live_button.setChecked(False)
                self.live_button.blockSignals(False)
        else:
            self.stop()

    def start(self):
        """Start following (resuming the output if it exists); returns the worker, or None if refused."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        if self.running:
            return self.worker
        try:
            kwargs = self.parameters()
        except CXDIError as exc:
            show_error(str(exc))
            self.status.setText(str(exc))
            return None
        self.session = LiveSession()
        if Path(kwargs["output"]).exists():
            try:
                self.session.load(kwargs["output"])  # resume: show what the output holds, the run continues it
            except (OSError, KeyError):
                pass
        self._refresh_layers()
        self._cancel = threading.Event()
        self.error = None
        self.summary = None
        worker = create_worker(iter_live, **kwargs, cancel=self._cancel,
                               _connect={"yielded": self._on_event, "returned": self._on_done, "errored": self._on_error,
                                         "finished": self._on_finished},
                               _start_thread=False)
        self.worker = worker
        self.status.setText(f"following {kwargs['source']} …")
        if not self.live_button.isChecked():
            self.live_button.blockSignals(True)
            self.live_button.setChecked(True)
            self.live_button.blockSignals(False)
        worker.start()
        return worker

    def stop(self) -> None:
        """Stop after the current block; the output and the layers stay consistent (resume with Live)."""
        self._cancel.set()
        if self.running:
            self.status.setText("stopping after this block …")

    # -- events (main thread) ------------------------------------------------------------------------
    def _on_event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "frames":
            if not self.session.add(event):  # out of step (should not happen): reload the output
                self.session.load(self.output.text())
            self._status_text = (f"{self.session.n} frames, {event['frames_per_s']:.1f} frames/s, "
                                 f"latency {event['latency_s'] * 1e3:.0f} ms, {len(self.session.tracks)} detections")
            self._schedule_refresh()  # the status line is updated with the layers (a label relayout costs a repaint)
        elif kind == "finetuned":
            verdict = "adopted" if event["adopted"] else "discarded (not better on held-out photons)"
            self._status_text = f"fine-tuning round {event['round']}: {verdict}"
            self._schedule_refresh()
        elif kind == "started" and event.get("resume_from"):
            self.status.setText(f"resuming after frame {event['resume_from']} …")
        elif kind == "waiting" and event.get("idle_s", 0) > 1.0:
            self.status.setText(f"{self.session.n} frames; waiting for new frames ({event['idle_s']:.0f} s idle)")

    def _at_newest(self, n_before: int) -> bool:
        if n_before == 0 or self.viewer.dims.ndim < 3:
            return True
        return int(self.viewer.dims.current_step[0]) >= n_before - 1

    def _schedule_refresh(self) -> None:
        """Update the layers from the session, one layer per event-loop turn, at most one round per
        ``refresh_interval_s``; frames that arrive meanwhile are shown by the next round (coalesced)."""
        self._dirty = True
        if self._steps or self._round_timer.isActive():
            return
        wait_s = self.refresh_interval_s - (time.perf_counter() - self._last_round)
        self._round_timer.start(max(0, int(wait_s * 1e3)))

    def _start_round(self) -> None:
        self._dirty = False
        self._last_round = time.perf_counter()
        self._steps = self._refresh_steps()
        if self._steps:
            self._pump.start()

    def _pump_step(self) -> None:
        if self._steps:
            self._steps.pop(0)()
        if not self._steps:
            self._pump.stop()
            if self._dirty:
                self._schedule_refresh()

    def _flush_refresh(self) -> None:
        """Run what is still queued now (the run ended: the layers must hold everything the session holds)."""
        self._pump.stop()
        self._round_timer.stop()
        while self._steps or self._dirty:
            if not self._steps:
                self._dirty = False
                self._steps = self._refresh_steps()
            while self._steps:
                self._steps.pop(0)()

    def _refresh_steps(self, follow: bool = False) -> list:
        """The layer updates of one round, as callables (each reads the session when it runs)."""
        if self.session.n == 0:
            return []
        layers = self.viewer.layers
        n_before = len(layers[LAYERS[2]].data) if LAYERS[2] in layers else 0
        self._follow = follow or self._at_newest(n_before)
        steps = [lambda: self._set_image(LAYERS[0], "counts", {"colormap": "magma", "gamma": 0.3, "visible": False}),
                 lambda: self._set_image(LAYERS[1], "amplitude", {"colormap": "gray", "visible": False}),
                 lambda: self._set_image(LAYERS[2], "phase", {"colormap": "twilight_shifted",
                                                               "contrast_limits": (-np.pi, np.pi)})]
        if len(self.session.tracks):
            steps += [self._set_points, self._set_tracks]
        return steps + [self._finish_round]

    def _spatial(self) -> dict:
        """scale (1 frame, dx nm, dx nm), axis labels and units of every live layer, like the reader's layers,
        so live layers overlay a loaded movie or reconstruction and the slider says "t", not "-3"."""
        return spatial_geometry(self.session.pixel_size_nm)

    def _set_image(self, name: str, attr: str, kw: dict) -> None:
        data = getattr(self.session, attr)
        if name in self.viewer.layers:
            self.viewer.layers[name].data = data
        else:
            self.viewer.add_image(data, name=name, **self._spatial(), **kw)

    def _set_points(self) -> None:
        points, layers = self.session.points(), self.viewer.layers
        if "live detections" in layers:
            layers["live detections"].data = points
        elif _has_border():
            self.viewer.add_points(points, name="live detections", size=4, face_color="transparent",
                                   border_color="yellow", **self._spatial())
        else:
            self.viewer.add_points(points, name="live detections", size=4, face_color="transparent",
                                   edge_color="yellow", **self._spatial())

    def _set_tracks(self) -> None:
        tracks, layers = self.session.track_data(), self.viewer.layers
        if "live tracks" in layers:
            layers["live tracks"].data = tracks
        else:
            self.viewer.add_tracks(tracks, name="live tracks", tail_length=20, **self._spatial())

    def _finish_round(self) -> None:
        if self._status_text:
            self.status.setText(self._status_text)
            self._status_text = ""
        n = len(self.viewer.layers[LAYERS[2]].data)
        self.layer_sizes.append(n)
        if self._follow:
            self.viewer.dims.set_current_step(0, n - 1)

    def _refresh_layers(self, follow: bool = False) -> None:
        """Update every layer now (a resumed output is shown at once, before following starts)."""
        self._steps = self._refresh_steps(follow)
        self._flush_refresh()

    def _on_done(self, summary) -> None:
        self._flush_refresh()
        self.summary = summary
        lat = "" if summary.latency_s_median is None else f", median latency {summary.latency_s_median * 1e3:.0f} ms"
        self.status.setText(f"{summary.stopped}: {summary.frames_total} frames in {summary.output} "
                            f"({summary.frames_new} new, {summary.frames_per_s:.1f} frames/s{lat})")

    def _on_error(self, exc: Exception) -> None:
        from napari.utils.notifications import show_error

        self.error = exc
        show_error(str(exc) if isinstance(exc, CXDIError) else f"live mode failed: {exc!r}")
        self.status.setText(f"error: {exc}")

    def _on_finished(self) -> None:
        self._flush_refresh()
        self.worker = None
        self.live_button.blockSignals(True)
        self.live_button.setChecked(False)
        self.live_button.blockSignals(False)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        self._cancel.set()
        super().closeEvent(event)


def _has_border() -> bool:
    import inspect

    from napari.layers import Points

    return "border_color" in inspect.signature(Points.__init__).parameters
