"""Particle-tracking dock widget (Layers > Track): detection preview, tracking in a worker, plots, export.

Thin: it reads the form into a :class:`~napari_cxdi.tracking.TrackingConfig`, shows an instant Labels preview
of the current frame, runs :func:`napari_cxdi.tracking.iter_track` in a napari thread worker (progress per
frame), and in main-thread slots adds a Points layer (features diameter/contrast, coloured by a feature with
a colour bar) and a Tracks layer (features speed/lifetime), plots the diameter and lifetime histograms and
the MSD, and exports tables. A second button estimates the whole-image velocity per frame pair.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QApplication, QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QProgressBar,
    QPushButton, QSpinBox, QVBoxLayout, QWidget,
)

from ..progress import CANCELLED, cancellable
from ..errors import ConfigError, CXDIError
from ..tracking import DetectionConfig, TrackingConfig, TrackingResult, image_velocity, iter_track, label_particles
from .plots import PlotCanvas

POINT_FEATURES = ("diameter_nm", "contrast")


def _dspin(lo, hi, value, step, decimals=2):
    box = QDoubleSpinBox()
    box.setDecimals(decimals)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setValue(value)
    return box


def _ispin(lo, hi, value):
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    return box


def _stop(state: dict) -> None:
    state["cancel"].set()
    for worker in list(state.get("workers", ())):
        try:
            worker.quit()
        except RuntimeError:
            pass


class TrackingWidget(QWidget):
    """Dock widget: phase layer + detection/linking settings -> Points, Tracks, histograms, MSD, velocity."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.result: TrackingResult | None = None
        self.velocity: dict | None = None
        self._state = {"cancel": threading.Event(), "workers": set()}
        self._worker = None
        self._pbar = None
        self._build()
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(150)
        self._preview_timer.timeout.connect(self.update_preview)
        for w in (self.threshold, self.block, self.smooth, self.min_d, self.max_d):
            w.valueChanged.connect(self._schedule_preview)
        for w in (self.polarity, self.method, self.layer_combo):
            w.currentTextChanged.connect(self._schedule_preview)
        self.preview_box.toggled.connect(self._schedule_preview)
        self.viewer.dims.events.current_step.connect(self._schedule_preview)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(lambda s=self._state: _stop(s))
        self.destroyed.connect(lambda *_, s=self._state: _stop(s))

    # -- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.layer_combo = QComboBox()
        form.addRow("phase movie", self.layer_combo)
        self.method = QComboBox()
        self.method.addItems(["adaptive", "trackpy"])
        form.addRow("detector", self.method)
        self.polarity = QComboBox()
        self.polarity.addItems(["dark", "bright"])
        self.polarity.setToolTip("dark: particles delay the phase (gold); bright: positive contrast")
        form.addRow("particles are", self.polarity)
        self.threshold = _dspin(0.0, 10.0, 0.15, 0.01, 3)
        form.addRow("threshold (above local mean)", self.threshold)
        self.block = _dspin(50, 20000, 1200, 50, 0)
        form.addRow("background window (nm)", self.block)
        self.smooth = _dspin(0, 10, 1.0, 0.25)
        form.addRow("smoothing (px)", self.smooth)
        self.diameter = _dspin(10, 5000, 300, 10, 0)
        form.addRow("expected diameter (nm)", self.diameter)
        self.min_d = _dspin(0, 5000, 100, 10, 0)
        form.addRow("min diameter (nm)", self.min_d)
        self.max_d = _dspin(1, 20000, 1000, 10, 0)
        form.addRow("max diameter (nm)", self.max_d)
        self.max_disp = _dspin(1, 100000, 150, 10, 0)
        form.addRow("max step per frame (nm)", self.max_disp)
        self.memory = _ispin(0, 100, 1)
        form.addRow("memory (missed frames)", self.memory)
        self.min_len = _ispin(1, 100000, 3)
        form.addRow("min track length", self.min_len)
        self.pixel_size = _dspin(0, 1e6, 0, 1, 3)
        self.pixel_size.setSpecialValueText("from layer")
        form.addRow("pixel size (nm)", self.pixel_size)
        self.interval = _dspin(0, 1e4, 0, 0.01, 4)
        self.interval.setSpecialValueText("from layer")
        form.addRow("frame interval (s)", self.interval)
        self.color_by = QComboBox()
        self.color_by.addItems(list(POINT_FEATURES))
        self.color_by.currentTextChanged.connect(self._recolor)
        form.addRow("colour points by", self.color_by)
        self.preview_box = QCheckBox("preview detection on the current frame")
        self.preview_box.setChecked(True)
        form.addRow("", self.preview_box)
        self.preview_label = QLabel("")
        form.addRow("", self.preview_label)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.run_button = QPushButton("Track movie")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.velocity_button = QPushButton("Velocity")
        self.velocity_button.setToolTip("whole-image velocity per frame pair (sub-pixel cross-correlation)")
        self.velocity_button.clicked.connect(self.estimate_velocity)
        for b in (self.run_button, self.cancel_button, self.velocity_button):
            row.addWidget(b)
        layout.addLayout(row)
        self.progress_bar = QProgressBar()
        layout.addWidget(self.progress_bar)
        self.status = QLabel("ready")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.status)
        self.plots = PlotCanvas(n=2, height=2.2)
        self.plots.setMinimumHeight(160)
        layout.addWidget(self.plots)
        self.plots2 = PlotCanvas(n=2, height=2.2)
        self.plots2.setMinimumHeight(160)
        layout.addWidget(self.plots2)
        saves = QHBoxLayout()
        self.export_csv = QPushButton("Export CSV…")
        self.export_h5 = QPushButton("Export HDF5…")
        for b, ext in ((self.export_csv, ".csv"), (self.export_h5, ".h5")):
            b.setEnabled(False)
            b.clicked.connect(lambda _=False, e=ext: self.export(None, e))
            saves.addWidget(b)
        layout.addLayout(saves)
        layout.addStretch(1)

    def _refresh_layers(self, *_) -> None:
        try:
            current = self.layer_combo.currentText()
        except RuntimeError:  # the widget was deleted while the viewer still sends events
            return
        names = [layer.name for layer in self.viewer.layers
                 if layer.__class__.__name__ == "Image" and layer.ndim in (2, 3) and not layer.rgb
                 and layer.metadata.get("kind") not in ("diffraction", "probe")]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)
        self._schedule_preview()

    # -- parameters -------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._worker is not None

    def _layer(self):
        name = self.layer_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise ConfigError("choose a phase (or amplitude) movie layer, e.g. a reconstruction's phase")
        return self.viewer.layers[name]

    def _units(self, layer) -> tuple[float, float]:
        from .._napari.scripting import pixel_size_of

        dx = self.pixel_size.value() or pixel_size_of(layer)
        dt = self.interval.value() or layer.metadata.get("frame_interval_s") or layer.metadata.get("exposure_s")
        if not dt:
            for other in self.viewer.layers:  # the diffraction movie of the same experiment carries it
                dt = other.metadata.get("frame_interval_s") or other.metadata.get("exposure_s")
                if dt:
                    break
        if not dx:
            raise ConfigError(f"layer {layer.name!r} has no pixel size; enter it (nm)")
        if not dt:
            raise ConfigError("no frame interval known; enter it (s)")
        return float(dx), float(dt)

    def config(self) -> TrackingConfig:
        """The tracking settings of the form (raises ConfigError on bad values)."""
        cfg = TrackingConfig(
            DetectionConfig(method=self.method.currentText(), polarity=self.polarity.currentText(),
                            threshold=self.threshold.value(), block_nm=self.block.value(), smooth_px=self.smooth.value(),
                            diameter_nm=self.diameter.value(), min_diameter_nm=self.min_d.value(),
                            max_diameter_nm=self.max_d.value()),
            max_displacement_nm=self.max_disp.value(), memory=self.memory.value(), min_length=self.min_len.value())
        cfg.validate()
        return cfg

    # -- preview --------------------------------------------------------------------------------
    def _schedule_preview(self, *_) -> None:
        try:
            if self.preview_box.isChecked():
                self._preview_timer.start()
                return
            name = f"{self.layer_combo.currentText()} detection preview"
        except RuntimeError:  # the widget was deleted while the viewer still sends events
            return
        if name in self.viewer.layers:
            self.viewer.layers[name].visible = False

    def update_preview(self) -> None:
        """Detect on the current frame only (one frame: fast) and show the accepted particles as Labels."""
        try:
            layer = self._layer()
            dx, _ = self._units(layer)
            cfg = self.config()
        except CXDIError as exc:
            self.preview_label.setText(f"preview: {exc}")
            return
        t = int(self.viewer.dims.current_step[0]) if layer.ndim == 3 else 0
        t = min(t, layer.data.shape[0] - 1) if layer.ndim == 3 else 0
        frame = np.asarray(layer.data[t] if layer.ndim == 3 else layer.data)
        try:
            if cfg.detection.method == "adaptive":
                labels = label_particles(frame, cfg.detection, dx)
                count = len(np.unique(labels)) - 1
            else:
                from ..tracking import detect_frame
                from skimage.draw import disk

                f = detect_frame(frame, cfg.detection, dx)
                labels = np.zeros(frame.shape, np.int32)
                for i, (y, x, d) in enumerate(zip(f.y, f.x, f.diameter_nm), 1):
                    labels[disk((y, x), max(d / dx / 2, 1), shape=frame.shape)] = i
                count = len(f)
        except CXDIError as exc:
            self.preview_label.setText(f"preview: {exc}")
            return
        name = f"{layer.name} detection preview"
        if name in self.viewer.layers:
            self.viewer.layers[name].data = labels
            self.viewer.layers[name].visible = True
        else:
            self.viewer.add_labels(labels, name=name, scale=tuple(layer.scale[-2:]), translate=tuple(layer.translate[-2:]),
                                   opacity=0.5)
            self.viewer.layers.selection.active = layer
        self.preview_label.setText(f"preview: {count} particle(s) in frame {t}")

    # -- tracking ---------------------------------------------------------------------------------
    def start(self):
        """Track the whole movie in a thread worker; returns the worker (None if refused)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error, show_warning

        if self.running:
            show_warning("tracking is already running; cancel it first")
            return None
        try:
            layer = self._layer()
            if layer.ndim != 3:
                raise ConfigError(f"layer {layer.name!r} is a single image; tracking needs a movie [frames, H, W]")
            dx, dt = self._units(layer)
            cfg = self.config()
        except CXDIError as exc:
            show_error(str(exc))
            return None
        self._source = layer.name
        self._layer_scale = (tuple(layer.scale), tuple(layer.translate))
        self._state["cancel"] = threading.Event()
        cancel = self._state["cancel"]

        def work():
            result = yield from cancellable(iter_track(layer.data, cfg, dx, dt), cancel)
            return None if result is CANCELLED else result

        worker = create_worker(work, _start_thread=False,
                               _connect={"yielded": self._on_event, "returned": self._on_done,
                                         "errored": self._on_error, "finished": self._on_finished})
        self._worker = worker
        self._state["workers"].add(worker)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress_bar.setRange(0, int(layer.data.shape[0]))
        self.progress_bar.setValue(0)
        self.status.setText("detecting …")
        self._accept_events = True
        worker.start()
        return worker

    def cancel(self) -> None:
        self._state["cancel"].set()
        self.status.setText("cancelling …")

    def _on_event(self, event: dict) -> None:
        from napari.utils import progress

        if not getattr(self, "_accept_events", False):  # a late progress event after the result
            return
        if event["stage"] == "detect":
            # widgets first: creating napari's progress bar may process queued events (re-entrantly)
            self.progress_bar.setValue(event["done"])
            self.status.setText(f"frame {event['done']}/{event['total']}: {event['count']} particle(s)")
            if self._pbar is None:
                self._pbar = progress(total=event["total"], desc="particle detection")
            self._pbar.update(max(event["done"] - self._pbar.n, 0))
        else:
            self.status.setText(f"{event['stage']} …")

    def _on_done(self, result: TrackingResult | None) -> None:
        from napari.utils.notifications import show_info

        self._accept_events = False
        if result is None:
            self.status.setText("cancelled")
            show_info("tracking cancelled")
            return
        self.result = result
        self._show_layers(result)
        self._plot(result)
        s = result.summary()
        self.status.setText(
            f"{s['n_detections']} detections, {s['n_tracks']} tracks (mean length {s['mean_track_length']:.1f}); "
            f"diameter {s['diameter_mean_nm']:.0f} ± {s['diameter_std_nm']:.0f} nm; D = {s['diffusion_nm2_s']:.3g} ± "
            f"{s['diffusion_err_nm2_s']:.2g} nm²/s; drift ({s['drift_vy_nm_s']:.0f}, {s['drift_vx_nm_s']:.0f}) ± "
            f"({s['drift_vy_err_nm_s']:.0f}, {s['drift_vx_err_nm_s']:.0f}) nm/s")
        self.export_csv.setEnabled(True)
        self.export_h5.setEnabled(True)

    def _show_layers(self, result: TrackingResult) -> None:
        scale, translate = self._layer_scale
        f = result.features
        pts_name, trk_name = f"{self._source} particles", f"{self._source} tracks"
        for name in (pts_name, trk_name):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        features = f[list(POINT_FEATURES)].astype(float).reset_index(drop=True)
        points = f[["frame", "y", "x"]].to_numpy(float) if len(f) else np.zeros((0, 3))
        color = self.color_by.currentText()
        kwargs = {"name": pts_name, "scale": scale, "translate": translate, "features": features, "size": 4,
                  "border_width": 0, "metadata": {"kind": "particles", "config": result.config.to_dict()}}
        if len(f):
            kwargs.update(face_color=color, face_colormap="viridis",
                          face_contrast_limits=self._limits(features[color]))
        layer = self.viewer.add_points(points, **kwargs)
        layer.size = np.maximum(f["diameter_nm"].to_numpy(float) / scale[-1], 1.0) if len(f) else 4
        if len(f):
            layer.face_colorbar.visible = True
        t = result.tracks
        if len(t):
            data = t[["particle", "frame", "y", "x"]].to_numpy(float)
            self.viewer.add_tracks(data, name=trk_name, scale=scale, translate=translate,
                                   features={"speed_nm_s": t["speed_nm_s"].astype(float).to_numpy(),
                                             "lifetime_s": t["lifetime_s"].astype(float).to_numpy()},
                                   color_by="speed_nm_s", tail_length=10, tail_width=2,
                                   metadata={"kind": "tracks"})

    @staticmethod
    def _limits(values) -> tuple[float, float]:
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        return (lo, hi if hi > lo else lo + 1.0)

    def _recolor(self, feature: str) -> None:
        name = f"{getattr(self, '_source', '')} particles"
        if name in self.viewer.layers and len(self.viewer.layers[name].data):
            layer = self.viewer.layers[name]
            layer.face_color = feature
            layer.face_contrast_limits = self._limits(layer.features[feature])

    def _plot(self, result: TrackingResult) -> None:
        s = result.statistics
        ax = self.plots.clear(0, "single-particle diameter", "diameter (nm)", "tracks")
        if s["diameter"]["values"].size:
            ax.hist(s["diameter"]["values"], bins=15, color="#60b0f0")
        ax = self.plots.clear(1, "track lifetime", "lifetime (s)", "tracks")
        if s["lifetime"]["values"].size:
            ax.hist(s["lifetime"]["values"], bins=15, color="#f0a030")
        self.plots.draw_idle()
        m = s["msd"]
        ax = self.plots2.clear(0, "MSD", "lag (s)", "nm²")
        if len(m["lag_s"]):
            ax.plot(m["lag_s"], m["msd_nm2"], "o-", ms=3, color="#60b0f0", label="MSD")
            ax.plot(m["lag_s"], m["var_nm2"], "s-", ms=3, color="#f06060", label="drift removed")
            ax.legend(fontsize=6, facecolor="#262930", labelcolor="#d0d0d0")
        ax = self.plots2.clear(1, "particles per frame", "frame", "count")
        ax.plot(s["count_per_frame"], color="#a0e070", lw=1)
        self.plots2.draw_idle()

    def _on_error(self, exc: Exception) -> None:
        from napari.utils.notifications import show_error

        self._accept_events = False
        message = str(exc) if isinstance(exc, CXDIError) else f"{type(exc).__name__}: {exc}"
        self.status.setText(f"failed: {message}")
        show_error(f"Tracking failed: {message}")

    def _on_finished(self) -> None:
        self._state["workers"].discard(self._worker)
        self._worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    # -- velocity -------------------------------------------------------------------------------------
    def estimate_velocity(self):
        """Whole-image velocity per frame pair in a worker; plots it with its mean and spread."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        try:
            layer = self._layer()
            if layer.ndim != 3 or layer.data.shape[0] < 2:
                raise ConfigError("velocity needs a movie with at least two frames")
            dx, dt = self._units(layer)
        except CXDIError as exc:
            show_error(str(exc))
            return None
        self.velocity_button.setEnabled(False)
        self.status.setText("estimating the velocity …")

        def finished():
            self._state["workers"].discard(worker)
            self.velocity_button.setEnabled(True)

        worker = create_worker(image_velocity, np.asarray(layer.data), dx, dt, _start_thread=False,
                               _connect={"returned": self._on_velocity, "errored": self._on_error, "finished": finished})
        self._state["workers"].add(worker)
        worker.start()
        return worker

    def _on_velocity(self, v: dict) -> None:
        self.velocity = v
        ax = self.plots2.clear(1, "image velocity per frame pair", "frame pair", "nm/s")
        per = v["per_pair_nm_s"]
        ax.plot(per[:, 1], color="#60b0f0", lw=1, label="vx")
        ax.plot(per[:, 0], color="#f06060", lw=1, label="vy")
        for k, c in ((1, "#60b0f0"), (0, "#f06060")):
            ax.axhline(v["mean_nm_s"][k], color=c, ls="--", lw=0.8)
            ax.axhspan(v["mean_nm_s"][k] - v["std_nm_s"][k], v["mean_nm_s"][k] + v["std_nm_s"][k], color=c, alpha=0.15)
        ax.legend(fontsize=6, facecolor="#262930", labelcolor="#d0d0d0")
        self.plots2.draw_idle()
        vy, vx = v["mean_nm_s"]
        sy, sx = v["std_nm_s"]
        self.status.setText(f"image velocity (vy, vx) = ({vy:.0f} ± {sy:.0f}, {vx:.0f} ± {sx:.0f}) nm/s, "
                            f"speed {v['speed_nm_s']:.0f} nm/s over {len(per)} frame pairs")

    # -- export -------------------------------------------------------------------------------------
    def export(self, path: str | Path | None = None, extension: str = ".csv") -> list[Path] | None:
        """Write features, tracks and per-track tables (CSV files or one HDF5) with provenance."""
        from napari.utils.notifications import show_error, show_info

        from ..tracking import write_tables

        if self.result is None:
            show_error("nothing to export yet; track a movie first")
            return None
        if path is None:
            pattern = "CSV (*.csv)" if extension == ".csv" else "HDF5 (*.h5 *.hdf5)"
            path, _ = QFileDialog.getSaveFileName(self, "Export tracks", f"tracks{extension}", pattern)
            if not path:
                return None
        r = self.result
        try:
            written = write_tables(path, {"features": r.features, "tracks": r.tracks, "per_track": r.per_track},
                                   config={"layer": self._source, "pixel_size_nm": r.pixel_size_nm,
                                           "frame_interval_s": r.frame_interval_s, **r.config.to_dict()},
                                   metrics=r.summary())
        except CXDIError as exc:
            show_error(str(exc))
            return None
        show_info("wrote " + ", ".join(p.name for p in written))
        return written

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        _stop(self._state)
        super().closeEvent(event)
