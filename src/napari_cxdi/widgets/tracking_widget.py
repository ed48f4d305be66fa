"""Particle-tracking dock (Layers > Track): detection preview, tracking in a worker, plots, export.

Thin panels over :class:`~napari_cxdi.sessions.TrackingSession`: the detection and linking forms are bound
to :class:`~napari_cxdi.tracking.TrackingConfig` (``widgets/_forms.py``), runs go through the shared
:class:`~napari_cxdi.widgets._worker.WorkerController`, and main-thread slots add a Points layer (features
diameter/contrast, coloured with a colour bar), a Tracks layer (speed/lifetime), histograms, the MSD and the
whole-image velocity. Every layer it adds shares the source layer's scale and units (nm).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSpinBox,
)

from ..errors import ConfigError, CXDIError
from ..sessions import TrackingSession, error_message
from ..tracking import DetectionConfig, TrackingConfig, TrackingResult, image_velocity, iter_track, label_particles
from ._forms import FormBinding, load_settings, save_settings
from ._qt import CollapsibleSection, ScrollingDock
from ._worker import WorkerController, notify_error
from .plots import ColorBar, PlotCanvas

POINT_FEATURES = ("diameter_nm", "contrast")
FEATURE_TITLES = {"diameter_nm": ("particle diameter", "nm"), "contrast": ("phase contrast", "rad")}
DOCK = "tracking"


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


def _spatial(layer) -> dict:
    """scale / translate / units of the last two (y, x) or three (t, y, x) axes of a layer."""
    return {"scale": tuple(layer.scale), "translate": tuple(layer.translate), "units": tuple(layer.units)}


class DetectionPanel(CollapsibleSection):
    """Detection settings (-> DetectionConfig) and the one-frame preview switch."""

    def __init__(self, form: FormBinding):
        super().__init__("Detection")
        self.layer_combo = QComboBox()
        self.addRow("phase movie", self.layer_combo)
        self.method = form.bind("detection.method", QComboBox())
        self.method.addItems(["adaptive", "trackpy"])
        self.addRow("detector", self.method)
        self.polarity = form.bind("detection.polarity", QComboBox())
        self.polarity.addItems(["dark", "bright"])
        self.polarity.setToolTip("dark: particles delay the phase (gold); bright: positive contrast")
        self.addRow("particles are", self.polarity)
        self.threshold = form.bind("detection.threshold", _dspin(0.0, 10.0, 0.15, 0.01, 3))
        self.addRow("threshold (above local mean)", self.threshold)
        self.block = form.bind("detection.block_nm", _dspin(50, 20000, 1200, 50, 0))
        self.addRow("background window (nm)", self.block)
        self.smooth = form.bind("detection.smooth_px", _dspin(0, 10, 1.0, 0.25))
        self.addRow("smoothing (px)", self.smooth)
        self.diameter = form.bind("detection.diameter_nm", _dspin(10, 5000, 300, 10, 0))
        self.addRow("expected diameter (nm)", self.diameter)
        self.min_d = form.bind("detection.min_diameter_nm", _dspin(0, 5000, 100, 10, 0))
        self.addRow("min diameter (nm)", self.min_d)
        self.max_d = form.bind("detection.max_diameter_nm", _dspin(1, 20000, 1000, 10, 0))
        self.addRow("max diameter (nm)", self.max_d)
        self.preview_box = QCheckBox("preview detection on the current frame")
        self.preview_box.setChecked(True)
        self.addRow(self.preview_box)
        self.preview_label = QLabel("")
        self.preview_label.setWordWrap(True)
        self.addRow(self.preview_label)


class LinkingPanel(CollapsibleSection):
    """Linking settings (-> TrackingConfig) and the units of the movie."""

    def __init__(self, form: FormBinding):
        super().__init__("Linking and units", expanded=False)
        self.max_disp = form.bind("max_displacement_nm", _dspin(1, 100000, 150, 10, 0))
        self.addRow("max step per frame (nm)", self.max_disp)
        self.memory = form.bind("memory", _ispin(0, 100, 1))
        self.addRow("memory (missed frames)", self.memory)
        self.min_len = form.bind("min_length", _ispin(1, 100000, 3))
        self.addRow("min track length", self.min_len)
        self.pixel_size = _dspin(0, 1e6, 0, 1, 3)
        self.pixel_size.setSpecialValueText("from layer")
        self.addRow("pixel size (nm)", self.pixel_size)
        self.interval = _dspin(0, 1e4, 0, 0.01, 4)
        self.interval.setSpecialValueText("from layer")
        self.addRow("frame interval (s)", self.interval)


class TrackingWidget(ScrollingDock):
    """Dock widget: phase layer + detection/linking settings -> Points, Tracks, histograms, MSD, velocity."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.session = TrackingSession()
        self.form = FormBinding()
        self._source = ""
        self._build()
        self.controller = WorkerController(self.session, self, controls=[self.run_button, self.velocity_button,
                                                                          self.detection.body, self.linking.body],
                                           cancel_button=self.cancel_button, on_reset=self._reset_run)
        self.session.status_changed.connect(lambda text: self.status.setText(text))
        self.session.progress_changed.connect(self._on_progress)
        self.session.state_changed.connect(lambda *_: self._update_exports())
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(150)
        self._preview_timer.timeout.connect(self.update_preview)
        self._quiet_step = None  # after a run the preview stays off until a setting or the frame changes
        for w in (self.threshold, self.block, self.smooth, self.min_d, self.max_d):
            w.valueChanged.connect(self._setting_changed)
        for w in (self.polarity, self.method, self.layer_combo):
            w.currentTextChanged.connect(self._setting_changed)
        self.preview_box.toggled.connect(self._setting_changed)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()
        for canvas in (self.plots, self.plots2, self.colorbar):
            canvas.follow(self.viewer)

    # compatibility accessors
    @property
    def result(self) -> TrackingResult | None:
        return self.session.result

    @property
    def velocity(self) -> dict | None:
        return self.session.velocity

    @property
    def running(self) -> bool:
        return self.controller.running

    def __getattr__(self, name):  # form inputs live on the panels
        for panel in ("detection", "linking"):
            p = self.__dict__.get(panel)
            if p is not None and name in p.__dict__:
                return p.__dict__[name]
        raise AttributeError(name)

    # -- layout ---------------------------------------------------------------------------------------------
    def _build(self) -> None:
        L = self.body_layout
        self.detection = DetectionPanel(self.form)
        L.addWidget(self.detection)
        self.linking = LinkingPanel(self.form)
        L.addWidget(self.linking)
        row = QHBoxLayout()
        self.run_button = QPushButton("Track movie")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.velocity_button = QPushButton("Velocity")
        self.velocity_button.setToolTip("whole-image velocity per frame pair (sub-pixel cross-correlation)")
        self.velocity_button.clicked.connect(self.estimate_velocity)
        for b in (self.run_button, self.cancel_button, self.velocity_button):
            row.addWidget(b)
        L.addLayout(row)
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumHeight(14)
        L.addWidget(self.progress_bar)
        self.status = QLabel("ready")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        L.addWidget(self.status)
        results = self.results_section = CollapsibleSection("Results")
        self.color_by = QComboBox()
        self.color_by.addItems(list(POINT_FEATURES))
        self.color_by.currentTextChanged.connect(self._recolor)
        results.addRow("colour points by", self.color_by)
        self.colorbar = ColorBar()
        self.colorbar.show_scale(None)
        results.addRow(self.colorbar)
        self.plots = PlotCanvas(n=2, height=1.8, min_height=100)
        self.plots2 = PlotCanvas(n=2, height=1.8, min_height=100)
        results.addRow(self.plots)
        results.addRow(self.plots2)
        L.addWidget(results)
        saves = QHBoxLayout()
        self.export_csv = QPushButton("Export CSV…")
        self.export_h5 = QPushButton("Export HDF5…")
        for b, ext in ((self.export_csv, ".csv"), (self.export_h5, ".h5")):
            b.setEnabled(False)
            b.clicked.connect(lambda _=False, e=ext: self.export(None, e))
            saves.addWidget(b)
        L.addLayout(saves)
        L.addStretch(1)

    def _refresh_layers(self, *_) -> None:
        try:
            current = self.layer_combo.currentText()
        except RuntimeError:  # the widget was deleted while the viewer still sends events
            return
        names = [layer.name for layer in self.viewer.layers
                 if layer.__class__.__name__ == "Image" and layer.ndim in (2, 3) and not layer.rgb
                 and layer.metadata.get("kind") not in ("diffraction", "probe", "preview")]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)
        if self.layer_combo.currentText() != current:  # another movie: preview it (a run's new layers do not)
            self._schedule_preview()

    # -- settings ---------------------------------------------------------------------------------------------
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
            raise ConfigError(f"layer {layer.name!r} has no pixel size; enter it (nm) under 'Linking and units'")
        if not dt:
            raise ConfigError("no frame interval known; enter it (s) under 'Linking and units'")
        return float(dx), float(dt)

    def config(self) -> TrackingConfig:
        """The tracking settings of the form (raises ConfigError on bad values)."""
        cfg = self.form.to_config(TrackingConfig(DetectionConfig()))
        cfg.validate()
        return cfg

    def apply_config(self, config: TrackingConfig) -> None:
        self.form.from_config(config)

    def save_settings(self, path: str | Path) -> Path:
        return save_settings(path, DOCK, self.config().to_dict(), overwrite=True)

    def load_settings(self, path: str | Path) -> TrackingConfig:
        cfg = TrackingConfig.from_dict(load_settings(path, DOCK))
        cfg.validate()
        self.apply_config(cfg)
        return cfg

    # -- preview ----------------------------------------------------------------------------------------------
    def _preview_name(self) -> str:
        return f"{self.layer_combo.currentText()} detection preview"

    def _setting_changed(self, *_) -> None:
        self._quiet_step = None
        self._schedule_preview()

    def _on_step(self, *_) -> None:
        if self._quiet_step is not None and tuple(self.viewer.dims.current_step) == self._quiet_step:
            return  # new layers changed the dims, not the user
        self._quiet_step = None
        self._schedule_preview()

    def _schedule_preview(self, *_) -> None:
        if self._quiet_step is not None:
            return
        try:
            if self.preview_box.isChecked() and not self.session.running:
                self._preview_timer.start()
                return
            name = self._preview_name()
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
                from skimage.draw import disk

                from ..tracking import detect_frame

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
            sp = {k: v[-2:] for k, v in _spatial(layer).items()}
            self.viewer.add_labels(labels, name=name, opacity=0.5, metadata={"kind": "preview"}, **sp)
            self.viewer.layers.selection.active = layer
        text = f"preview: {count} particle(s) in frame {t}"
        if count == 0:
            from ..sessions.tracking import explain_empty

            text += " — " + explain_empty(frame, cfg, dx).split("; ", 1)[-1]
        self.preview_label.setText(text)

    def _remove_preview(self) -> None:
        for layer in [layer for layer in self.viewer.layers if layer.name.endswith(" detection preview")]:
            self.viewer.layers.remove(layer)

    # -- tracking -----------------------------------------------------------------------------------------------
    def start(self):
        """Track the whole movie in a thread worker; returns the worker (None if refused)."""
        if self.running:
            from napari.utils import notifications

            notifications.show_warning("tracking is already running; cancel it first")
            return None
        try:
            layer = self._layer()
            if layer.ndim != 3:
                raise ConfigError(f"layer {layer.name!r} is a single image; tracking needs a movie [frames, H, W]")
            dx, dt = self._units(layer)
            cfg = self.config()
        except CXDIError as exc:
            notify_error(error_message(exc, "Tracking"))
            return None
        self._source = layer.name
        self._spatial = _spatial(layer)
        self._dx = dx
        self._frame0 = np.asarray(layer.data[min(int(self.viewer.dims.current_step[0]), layer.data.shape[0] - 1)])
        self._preview_timer.stop()
        self._remove_preview()  # the run's layers replace the one-frame preview
        self._quiet_step = tuple(self.viewer.dims.current_step)
        for canvas in (self.plots, self.plots2):
            canvas.clear_all()
        return self.controller.start(iter_track, layer.data, cfg, dx, dt, on_event=self.session.handle,
                                     on_result=self._on_done, label=f"tracking {layer.name}")

    def cancel(self) -> None:
        self.controller.cancel()

    def _on_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(total, 1) if total else 0)
        if total:
            self.progress_bar.setValue(done)

    def _reset_run(self) -> None:
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self._update_exports()

    def _update_exports(self) -> None:
        has = self.session.result is not None and not self.session.running
        self.export_csv.setEnabled(has)
        self.export_h5.setEnabled(has)

    def _on_done(self, result: TrackingResult) -> None:
        self.session.accept(result, self._frame0, self._dx)
        self._show_layers(result)
        self._plot(result)
        self._update_exports()

    def _show_layers(self, result: TrackingResult) -> None:
        sp = self._spatial
        f = result.features
        pts_name, trk_name = f"{self._source} particles", f"{self._source} tracks"
        for name in (pts_name, trk_name):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        features = f[list(POINT_FEATURES)].astype(float).reset_index(drop=True)
        points = f[["frame", "y", "x"]].to_numpy(float) if len(f) else np.zeros((0, 3))
        color = self.color_by.currentText()
        kwargs = {"name": pts_name, "features": features, "size": 4, "border_width": 0,
                  "metadata": {"kind": "particles", "config": result.config.to_dict()}, **sp}
        if len(f):
            kwargs.update(face_color=color, face_colormap="viridis", face_contrast_limits=self._limits(features[color]))
        layer = self.viewer.add_points(points, **kwargs)
        layer.size = np.maximum(f["diameter_nm"].to_numpy(float) / sp["scale"][-1], 1.0) if len(f) else 4
        if len(f):
            layer.face_colorbar.visible = True
        self._update_colorbar(layer)
        t = result.tracks
        if len(t):
            data = t[["particle", "frame", "y", "x"]].to_numpy(float)
            self.viewer.add_tracks(data, name=trk_name, features={"speed_nm_s": t["speed_nm_s"].astype(float).to_numpy(),
                                                                 "lifetime_s": t["lifetime_s"].astype(float).to_numpy()},
                                   color_by="speed_nm_s", tail_length=10, tail_width=2, metadata={"kind": "tracks"}, **sp)

    @staticmethod
    def _limits(values) -> tuple[float, float]:
        lo, hi = float(np.nanmin(values)), float(np.nanmax(values))
        return (lo, hi if hi > lo else lo + 1.0)

    def _recolor(self, feature: str) -> None:
        name = f"{self._source} particles"
        if name in self.viewer.layers and len(self.viewer.layers[name].data):
            layer = self.viewer.layers[name]
            layer.face_color = feature
            layer.face_contrast_limits = self._limits(layer.features[feature])
            self._update_colorbar(layer)

    def _update_colorbar(self, layer) -> None:
        """The dock's colour bar of the Points layer, with the feature's name and unit (napari's has neither)."""
        feature = self.color_by.currentText()
        if layer is None or not len(layer.data):
            self.colorbar.show_scale(None)
            return
        title, unit = FEATURE_TITLES.get(feature, (feature, ""))
        self.colorbar.show_scale("viridis", tuple(layer.face_contrast_limits), title, unit)

    def _plot(self, result: TrackingResult) -> None:
        s = result.statistics
        c = self.plots
        ax = c.clear(0, "single-particle diameter", "diameter (nm)", "tracks")
        if s["diameter"]["values"].size:
            ax.hist(s["diameter"]["values"], bins=15, color="#60b0f0")
        ax = c.clear(1, "track lifetime", "lifetime (s)", "tracks")
        if s["lifetime"]["values"].size:
            ax.hist(s["lifetime"]["values"], bins=15, color="#f0a030")
        c.draw_idle()
        m = s["msd"]
        c = self.plots2
        ax = c.clear(0, "MSD", "lag (s)", "nm²")
        if len(m["lag_s"]):
            ax.plot(m["lag_s"], m["msd_nm2"], "o-", ms=3, color="#60b0f0", label="MSD")
            ax.plot(m["lag_s"], m["var_nm2"], "s-", ms=3, color="#f06060", label="drift removed")
            c.legend(ax)
        ax = c.clear(1, "particles per frame", "frame", "count")
        ax.plot(s["count_per_frame"], color="#a0e070", lw=1)
        c.draw_idle()

    # -- velocity --------------------------------------------------------------------------------------------------
    def estimate_velocity(self):
        """Whole-image velocity per frame pair in a worker; plots it with its mean and spread."""
        try:
            layer = self._layer()
            if layer.ndim != 3 or layer.data.shape[0] < 2:
                raise ConfigError("velocity needs a movie with at least two frames")
            dx, dt = self._units(layer)
        except CXDIError as exc:
            notify_error(error_message(exc, "Velocity"))
            return None
        return self.controller.start(image_velocity, np.asarray(layer.data), dx, dt, generator=False,
                                     on_result=self._on_velocity, label="estimating the velocity")

    def _on_velocity(self, v: dict) -> None:
        self.session.accept_velocity(v)
        c = self.plots2
        ax = c.clear(1, "image velocity per frame pair", "frame pair", "nm/s")
        per = v["per_pair_nm_s"]
        ax.plot(per[:, 1], color="#60b0f0", lw=1, label="vx")
        ax.plot(per[:, 0], color="#f06060", lw=1, label="vy")
        for k, col in ((1, "#60b0f0"), (0, "#f06060")):
            ax.axhline(v["mean_nm_s"][k], color=col, ls="--", lw=0.8)
            ax.axhspan(v["mean_nm_s"][k] - v["std_nm_s"][k], v["mean_nm_s"][k] + v["std_nm_s"][k], color=col, alpha=0.15)
        c.legend(ax)
        c.draw_idle()

    # -- export -------------------------------------------------------------------------------------------------------
    def export(self, path: str | Path | None = None, extension: str = ".csv", overwrite: bool = False) -> list[Path] | None:
        """Write features, tracks and per-track tables (CSV files or one HDF5) with provenance.

        Without ``path`` a save dialog asks; the files it confirms are replaced."""
        from napari.utils import notifications

        from ..tracking import write_tables

        r = self.session.result
        if r is None:
            notify_error("Export: nothing to export yet; track a movie first")
            return None
        if path is None:
            pattern = "CSV (*.csv)" if extension == ".csv" else "HDF5 (*.h5 *.hdf5)"
            path, _ = QFileDialog.getSaveFileName(self, "Export tracks", f"tracks{extension}", pattern)
            if not path:
                return None
            overwrite = True
        source = self.viewer.layers[self._source].metadata.get("source_path") if self._source in self.viewer.layers else None
        try:
            written = write_tables(path, {"features": r.features, "tracks": r.tracks, "per_track": r.per_track},
                                   config={"layer": self._source, "pixel_size_nm": r.pixel_size_nm,
                                           "frame_interval_s": r.frame_interval_s, **r.config.to_dict()},
                                   metrics=r.summary(), overwrite=overwrite, protected=[source] if source else ())
        except CXDIError as exc:
            notify_error(error_message(exc, "Export"))
            return None
        notifications.show_info("wrote " + ", ".join(p.name for p in written))
        return written

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        self.controller.stop()
        super().closeEvent(event)
