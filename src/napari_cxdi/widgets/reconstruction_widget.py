"""Reconstruction dock: PID3Net (or a classical baseline) on a diffraction-movie layer.

A thin panel over :class:`~napari_cxdi.sessions.ReconstructionSession`: the form is bound to
:class:`~napari_cxdi.sessions.ReconstructionSettings` (``widgets/_forms.py``), runs go through the shared
:class:`~napari_cxdi.widgets._worker.WorkerController`, and the session's signals drive the progress bar,
the live preview layers, the plots and, at the end, the amplitude/phase movie layers.

On a machine without a GPU the dock starts with a preset that finishes on the sample in minutes and shows a
first preview within seconds; the estimated run time is shown before a run and flagged above 10 minutes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton,
    QSpinBox, QWidget,
)

from .._napari.layers import phase_layer
from .._napari.detector_layers import detector_inputs
from .._napari.scripting import add_layer_data, pixel_size_of, probe_of, result_layers
from ..api import ALL_METHODS, Reconstruction, iter_reconstruction
from ..devices import DEVICE_CHOICES
from ..errors import ConfigError, CXDIError
from ..sessions import PRESETS, ReconstructionSession, ReconstructionSettings, default_preset, error_message
from ..sessions.reconstruction import PRESET_CUSTOM, eta_text
from ._forms import FormBinding, load_settings, save_settings
from ._qt import CollapsibleSection, ScrollingDock
from ._worker import WorkerController, notify_error
from .plots import PlotCanvas

PROBE_FROM_LAYER = "probe of the movie layer"
PROBE_FROM_FILE = "probe file…"
MODEL_NEW = "train a new model"
MODEL_CURRENT = "reuse the last trained model"
MODEL_FILE = "checkpoint file…"
DOCK = "reconstruction"


def _spin(lo, hi, value, step=1, decimals=None):
    box = QDoubleSpinBox() if decimals is not None else QSpinBox()
    if decimals is not None:
        box.setDecimals(decimals)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setValue(value)
    return box


def _path_row(placeholder: str) -> tuple[QWidget, QLineEdit, QPushButton]:
    row = QWidget()
    lay = QHBoxLayout(row)
    lay.setContentsMargins(0, 0, 0, 0)
    line = QLineEdit()
    line.setPlaceholderText(placeholder)
    browse = QPushButton("…")
    browse.setMaximumWidth(30)
    lay.addWidget(line)
    lay.addWidget(browse)
    return row, line, browse


def truth_layer_for(viewer, movie_layer):
    """The ground-truth phase layer of the same movie (metadata ``ground_truth``, same frames and size), if any."""
    base = movie_layer.name.replace(" diffraction", "")
    candidates = [layer for layer in viewer.layers if layer.metadata.get("ground_truth")
                  and tuple(layer.data.shape) == tuple(movie_layer.data.shape)]
    candidates.sort(key=lambda layer: not layer.name.startswith(base))
    return candidates[0] if candidates else None


class ReconstructionWidget(ScrollingDock):
    """Dock widget: movie layer + probe + method -> Reconstruct (background) -> amplitude/phase layers."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.session = ReconstructionSession()
        self.form = FormBinding()
        self._source_name = ""
        self._pixel_size = None
        self._applying = False
        self._build()
        self.controller = WorkerController(self.session, self, controls=self._controls(), cancel_button=self.cancel_button,
                                           on_reset=self._reset_run)
        s = self.session
        s.status_changed.connect(lambda text: self.status.setText(text))
        s.progress_changed.connect(self._on_progress)
        s.preview_ready.connect(self._show_preview)
        s.losses_changed.connect(self._loss_plot_due)
        s.warning.connect(self._warn)
        s.state_changed.connect(lambda *_: self._update_save_buttons())
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()
        self.apply_settings(self.session.settings)
        self.plots.follow(self.viewer)

    # -- compatibility accessors -------------------------------------------------------------------
    @property
    def result(self) -> Reconstruction | None:
        return self.session.result

    @property
    def model(self):
        return self.session.model

    @property
    def history(self) -> list[dict]:
        return self.session.history

    @property
    def _losses(self) -> list[tuple[int, float]]:
        return self.session.losses

    @property
    def running(self) -> bool:
        return self.controller.running

    # -- layout ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        L = self.body_layout
        f = self.form
        data = self.data_section = CollapsibleSection("Data")
        self.movie_combo = QComboBox()
        data.addRow("diffraction movie", self.movie_combo)
        self.probe_source = f.bind("probe_source", QComboBox(), {PROBE_FROM_LAYER: "layer", PROBE_FROM_FILE: "file"})
        self.probe_source.addItems([PROBE_FROM_LAYER, PROBE_FROM_FILE])
        data.addRow("probe", self.probe_source)
        self.probe_row, self.probe_path, b = _path_row("probe .npy / .cxi / .h5")
        f.bind("probe_path", self.probe_path)
        b.clicked.connect(lambda: self._browse(self.probe_path, "Probe file", "Probes (*.npy *.npz *.cxi *.h5 *.hdf5)"))
        data.addRow("probe file", self.probe_row)
        self.truth_label = QLabel("")
        self.truth_label.setWordWrap(True)
        data.addRow(self.truth_label)
        L.addWidget(data)

        method = CollapsibleSection("Method")
        self.preset_combo = f.bind("preset", QComboBox())
        self.preset_combo.addItems([*PRESETS, PRESET_CUSTOM])
        self.preset_combo.setToolTip("ready-made settings; the CPU presets finish on the sample in minutes")
        method.addRow("preset", self.preset_combo)
        self.method_combo = f.bind("method", QComboBox())
        self.method_combo.addItems(list(ALL_METHODS))
        method.addRow("method", self.method_combo)
        self.device = QComboBox()
        self.device.addItems(list(DEVICE_CHOICES))
        f.bind("pid3net.device", self.device)
        method.addRow("device", self.device)
        self.eta_label = QLabel("")
        self.eta_label.setWordWrap(True)
        method.addRow(self.eta_label)
        L.addWidget(method)

        net = self.pid3net_section = CollapsibleSection("PID3Net")
        self.model_source = f.bind("model_source", QComboBox(), {MODEL_NEW: "new", MODEL_CURRENT: "last", MODEL_FILE: "file"})
        self.model_source.addItems([MODEL_NEW, MODEL_CURRENT, MODEL_FILE])
        net.addRow("model", self.model_source)
        self.model_row, self.model_path, b = _path_row("PID3Net checkpoint .pt")
        f.bind("model_path", self.model_path)
        b.clicked.connect(lambda: self._browse(self.model_path, "PID3Net checkpoint", "Checkpoints (*.pt)"))
        net.addRow("checkpoint", self.model_row)
        self.finetune = f.bind("finetune", QCheckBox("fine-tune the reused model on this movie"))
        net.addRow(self.finetune)
        self.epochs = f.bind("pid3net.epochs", _spin(1, 10000, 20))
        net.addRow("epochs", self.epochs)
        self.frames = f.bind("pid3net.frames", _spin(1, 64, 5))
        net.addRow("frames per window (T)", self.frames)
        self.refine_steps = f.bind("pid3net.refine_steps", _spin(0, 20, 5))
        net.addRow("refinement steps (K)", self.refine_steps)
        self.width = f.bind("pid3net.width", _spin(2, 64, 8, step=2))
        net.addRow("width (F)", self.width)
        self.preview_every = f.bind("pid3net.preview_every", _spin(1, 1000, 20))
        net.addRow("preview every (steps)", self.preview_every)
        self.seed = f.bind("pid3net.seed", _spin(0, 2**31 - 1, 0))
        net.addRow("seed", self.seed)
        L.addWidget(net)
        adv = self.advanced = CollapsibleSection("PID3Net advanced", expanded=False)
        self.batch_size = f.bind("pid3net.batch_size", _spin(1, 256, 4))
        self.refine_width = f.bind("pid3net.refine_width", _spin(2, 128, 32, step=2))
        self.lr = f.bind("pid3net.lr", _spin(1e-6, 1.0, 1e-3, step=1e-4, decimals=6))
        self.tv_weight = f.bind("pid3net.tv_weight", _spin(0.0, 10.0, 0.01, step=0.005, decimals=4))
        self.image_size = f.bind("pid3net.image_size", _spin(0, 4096, 0, step=16))
        self.image_size.setSpecialValueText("auto")
        self.stride = f.bind("inference_stride", _spin(0, 64, 0))
        self.stride.setSpecialValueText("T")
        for label, w in (("batch size", self.batch_size), ("refinement width", self.refine_width),
                         ("learning rate", self.lr), ("TV weight", self.tv_weight), ("image size m", self.image_size),
                         ("inference stride", self.stride)):
            adv.addRow(label, w)
        L.addWidget(adv)
        base = self.baseline_section = CollapsibleSection("Baseline (mf-PIE / mixed-state)")
        self.max_iter = f.bind("iterative.max_iter", _spin(1, 100000, 300))
        base.addRow("iterations", self.max_iter)
        self.iter_batch = f.bind("iterative.batch_size", _spin(1, 1024, 16))
        base.addRow("frames per batch", self.iter_batch)
        L.addWidget(base)

        buttons = QHBoxLayout()
        self.run_button = QPushButton("Reconstruct")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        L.addLayout(buttons)
        self.progress_bar = QProgressBar()
        self.progress_bar.setMaximumHeight(14)
        L.addWidget(self.progress_bar)
        self.status = QLabel("ready")
        self.status.setWordWrap(True)
        L.addWidget(self.status)
        self.metrics_label = QLabel("")
        self.metrics_label.setWordWrap(True)
        self.metrics_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        L.addWidget(self.metrics_label)
        plots = CollapsibleSection("Plots")
        self.plots = PlotCanvas(n=2, height=2.0, min_height=110)
        plots.form.addRow(self.plots)
        L.addWidget(plots)
        saves = QHBoxLayout()
        self.save_recon_button = QPushButton("Save reconstruction…")
        self.save_recon_button.clicked.connect(lambda: self.save_reconstruction())
        self.save_model_button = QPushButton("Save model…")
        self.save_model_button.clicked.connect(lambda: self.save_model())
        saves.addWidget(self.save_recon_button)
        saves.addWidget(self.save_model_button)
        L.addLayout(saves)
        srow = QHBoxLayout()
        self.save_settings_button = QPushButton("Save settings…")
        self.save_settings_button.clicked.connect(lambda: self.save_settings_dialog())
        self.load_settings_button = QPushButton("Load settings…")
        self.load_settings_button.clicked.connect(lambda: self.load_settings_dialog())
        srow.addWidget(self.save_settings_button)
        srow.addWidget(self.load_settings_button)
        L.addLayout(srow)
        L.addStretch(1)
        self._update_save_buttons()

        self.preset_combo.currentTextChanged.connect(self._preset_chosen)
        for w in (self.method_combo, self.probe_source, self.model_source, self.device):
            w.currentTextChanged.connect(self._form_changed)
        for w in (self.epochs, self.frames, self.refine_steps, self.width, self.batch_size, self.refine_width,
                  self.image_size, self.max_iter, self.iter_batch, self.preview_every):
            w.valueChanged.connect(self._form_changed)
        self.finetune.toggled.connect(self._form_changed)
        self.movie_combo.currentTextChanged.connect(self._form_changed)

    def _controls(self) -> list[QWidget]:
        return [self.run_button, self.movie_combo, self.probe_source, self.probe_row, self.preset_combo,
                self.method_combo, self.device, self.pid3net_section.body, self.advanced.body,
                self.baseline_section.body, self.load_settings_button]

    def _browse(self, line: QLineEdit, title: str, pattern: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, title, "", pattern)
        if path:
            line.setText(path)

    # -- form <-> settings -----------------------------------------------------------------------------
    def settings(self) -> ReconstructionSettings:
        """The form as :class:`ReconstructionSettings` (the iterative device follows the one device box)."""
        s = self.form.to_config(self.session.settings)
        return s.with_(iterative=s.iterative.__class__(**{**s.iterative.__dict__, "device": s.pid3net.device}))

    def apply_settings(self, settings: ReconstructionSettings) -> None:
        self._applying = True
        try:
            self.form.from_config(settings)
        finally:
            self._applying = False
        self.session.settings = settings
        self._form_changed()

    def _preset_chosen(self, name: str) -> None:
        if self._applying or name == PRESET_CUSTOM:
            return
        self.apply_settings(ReconstructionSettings.from_preset(name, device=self.device.currentText()).with_(
            probe_source=self.form.get("probe_source"), probe_path=self.form.get("probe_path")))

    def _form_changed(self, *_) -> None:
        if not self._applying and self.sender() is not None and self.sender() is not self.movie_combo \
                and self.preset_combo.currentText() != PRESET_CUSTOM:
            # the user edited a preset's value: it is now a custom setting
            expected = ReconstructionSettings.from_preset(self.preset_combo.currentText(), device=self.device.currentText())
            current = self.form.to_config(self.session.settings)
            if (current.method, current.pid3net, current.iterative.max_iter, current.iterative.batch_size) != (
                    expected.method, expected.pid3net, expected.iterative.max_iter, expected.iterative.batch_size):
                self._applying = True
                self.preset_combo.setCurrentText(PRESET_CUSTOM)
                self._applying = False
        settings = self.settings()
        self.session.settings = settings
        pid = settings.is_pid3net
        self.pid3net_section.setVisible(pid)
        self.advanced.setVisible(pid)
        self.baseline_section.setVisible(not pid)
        self.data_section.set_row_visible(self.probe_row, settings.probe_source == "file")
        self.pid3net_section.set_row_visible(self.model_row, settings.model_source == "file")
        self.finetune.setVisible(settings.model_source != "new")
        for w in (self.frames, self.refine_steps, self.width, self.refine_width, self.image_size):
            w.setEnabled(settings.model_source == "new")  # a reused model keeps its architecture
        self.refine_steps.setEnabled(settings.model_source == "new" and settings.method != "PID3Net-NR")
        self._update_eta()

    def _update_eta(self) -> None:
        layer = self._movie_layer(required=False)
        if layer is None:
            self.eta_label.setText("")
            return
        n, size = int(layer.data.shape[0]), int(layer.data.shape[-1])
        text, slow = eta_text(self.session.settings, n, size, self.device.currentText())
        self.eta_label.setText(("⚠ " if slow else "") + text)
        self.eta_label.setStyleSheet("color: #f0a030;" if slow else "")
        truth = truth_layer_for(self.viewer, layer)
        lines = []
        qp = layer.metadata.get("q_pixel_per_nm")
        if qp:
            lines.append(f"diffraction pixel: {qp * 1e3:.3g} µm⁻¹ (reciprocal space); object pixel: "
                         f"{pixel_size_of(layer):.3g} nm")
        if truth is not None:
            lines.append(f"ground truth: {truth.name} (FRC and phase SSIM will be computed)")
        self.truth_label.setText("\n".join(lines))

    def save_settings_dialog(self, path: str | Path | None = None) -> Path | None:
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save reconstruction settings", "reconstruction_settings.json",
                                                  "JSON (*.json)")
            if not path:
                return None
        try:
            return save_settings(path, DOCK, self.settings().to_dict(), overwrite=True)
        except CXDIError as exc:
            notify_error(error_message(exc, "Save settings"))
            return None

    def load_settings_dialog(self, path: str | Path | None = None) -> ReconstructionSettings | None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Load reconstruction settings", "", "JSON (*.json)")
            if not path:
                return None
        try:
            settings = ReconstructionSettings.from_dict(load_settings(path, DOCK))
            settings.validate()
        except (CXDIError, TypeError) as exc:
            notify_error(error_message(exc, "Load settings"))
            return None
        self.apply_settings(settings)
        return settings

    # -- layers ------------------------------------------------------------------------------------------
    def _refresh_layers(self, *_) -> None:
        try:
            current = self.movie_combo.currentText()
        except RuntimeError:  # the dock was deleted while the viewer still sends events
            return
        names = [layer.name for layer in self.viewer.layers
                 if layer.__class__.__name__ == "Image" and layer.ndim == 3
                 and layer.metadata.get("kind", "diffraction") == "diffraction" and not layer.rgb]
        self.movie_combo.blockSignals(True)
        self.movie_combo.clear()
        self.movie_combo.addItems(names)
        if current in names:
            self.movie_combo.setCurrentText(current)
        self.movie_combo.blockSignals(False)
        self._update_eta()

    def _movie_layer(self, required: bool = True):
        name = self.movie_combo.currentText()
        if not name or name not in self.viewer.layers:
            if required:
                raise ConfigError("choose a diffraction-movie layer (open a file or File > Open Sample > napari CXDI)")
            return None
        return self.viewer.layers[name]

    # -- parameters -----------------------------------------------------------------------------------------
    def parameters(self) -> dict:
        """The keyword arguments of :func:`iter_reconstruction` from the form (raises CXDIError on bad input)."""
        from ..io import read_probe

        layer = self._movie_layer()
        name = layer.name
        if layer.ndim != 3:
            raise ConfigError(f"layer {name!r} is not a movie [frames, H, W]")
        settings = self.settings()
        settings.validate(int(layer.data.shape[0]), tuple(layer.data.shape[-2:]))
        if settings.probe_source == "layer":
            probe = probe_of(layer)
            if probe is None:
                raise ConfigError(f"layer {name!r} carries no probe; choose '{PROBE_FROM_FILE}'")
        elif layer.metadata.get("mask_layer"):  # a detector movie: the API reads the probe and fits the crop to it
            probe = settings.probe_path
        else:
            notes: list[str] = []
            probe = read_probe(settings.probe_path, tuple(layer.data.shape), pixel_size_nm=pixel_size_of(layer),
                               notes=notes)
            if notes:
                from napari.utils.notifications import show_info

                show_info("probe: " + "; ".join(notes))
        kwargs: dict = {"movie": layer.data, "probe": probe, "measure_velocity": False,
                        "preview_frame": int(min(self.viewer.dims.current_step[0], layer.data.shape[0] - 1)),
                        **settings.run_kwargs()}
        kwargs.update(detector_inputs(layer, self.viewer.layers))  # painted mask, dragged beam centre, crop box
        if settings.is_pid3net and settings.model_source == "last":
            if self.session.model is None:
                raise ConfigError("no model has been trained in this session yet; train a new model first")
            kwargs["model"] = self.session.model
        elif settings.is_pid3net and settings.model_source == "file":
            kwargs["model"] = settings.model_path
        truth = truth_layer_for(self.viewer, layer)
        if truth is not None:
            kwargs["truth"] = np.exp(1j * np.asarray(truth.data, np.float32)).astype(np.complex64)
        return kwargs

    # -- running -----------------------------------------------------------------------------------------------
    def start(self):
        """Start a reconstruction in a thread worker; returns the worker (None if refused)."""
        if self.running:
            from napari.utils import notifications

            notifications.show_warning("a reconstruction is already running; cancel it first")
            return None
        try:
            kwargs = self.parameters()
        except CXDIError as exc:
            notify_error(error_message(exc, "Reconstruction"))
            return None
        self._source_name = self.movie_combo.currentText()
        self._pixel_size = pixel_size_of(self.viewer.layers[self._source_name])
        kwargs["pixel_size_nm"] = self._pixel_size
        self.metrics_label.setText("")
        self.plots.clear_all(("training loss", "PRTF / FRC"))
        self._remove_previews()
        return self.controller.start(iter_reconstruction, on_event=self.session.handle, on_result=self._on_done,
                                     label=f"{kwargs['method']} on {self._source_name}", **kwargs)

    def cancel(self) -> None:
        """Stop after the current step; nothing of the cancelled run replaces the last result or model."""
        self.controller.cancel()

    def _on_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(total, 1) if total else 0)
        if total:
            self.progress_bar.setValue(done)

    def _warn(self, message: str) -> None:
        from napari.utils import notifications

        notifications.show_warning(message)

    def _preview_names(self) -> tuple[str]:
        base = self._source_name.replace(" diffraction", "")
        return (f"{base} preview phase",)

    def _show_preview(self, event: dict) -> None:
        """The preview phase layer appears with the first preview (never blank) and is updated in place after
        (one layer: creating layers is the costly part on the main thread)."""
        (name,) = self._preview_names()
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = event["phase"]
            layer.metadata["preview_frame"] = event["frame"]
            return
        meta = {"preview_frame": event["frame"], "kind": "preview"}
        add_layer_data(self.viewer, [phase_layer(event["phase"], name, self._pixel_size, meta)])

    def _remove_previews(self) -> None:
        for name in self._preview_names() if self._source_name else ():
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)

    def _reset_run(self) -> None:
        """After a cancel or an error: no preview layers, an empty progress bar, save buttons as before."""
        self._remove_previews()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self._update_save_buttons()

    def _update_save_buttons(self) -> None:
        s = self.session
        self.save_recon_button.setEnabled(s.result is not None and s.result.objects is not None and not s.running)
        self.save_model_button.setEnabled(s.model is not None and not s.running)

    def _loss_plot_due(self, *_) -> None:
        """A new loss value: replot at most once per second while training (rebuilding the axes and rendering
        them costs the event loop ~50-100 ms on a CPU; the final curve is drawn when the run ends)."""
        from qtpy.QtCore import QTimer

        if not hasattr(self, "_loss_timer"):
            self._loss_timer = QTimer(self)
            self._loss_timer.setSingleShot(True)
            self._loss_timer.timeout.connect(self._plot_loss)
        if not self._loss_timer.isActive():
            self._loss_timer.start(0 if not self.session.running else 1000)

    def _plot_loss(self) -> None:
        if self.session.settings.is_pid3net:
            ax = self.plots.clear(0, "training loss", "step", "loss")
        else:
            ax = self.plots.clear(0, "R_f while iterating", "progress event (every 5 iterations)", "R_f")
        if self.session.losses:
            steps, losses = zip(*self.session.losses)
            ax.semilogy(steps, np.maximum(losses, 1e-12), color="#f0a030", lw=1, label="training loss")
        if self.session.heldout:  # the held-out Poisson NLL: training stops when it rises (docs/fidelity.md)
            steps, nll = zip(*self.session.heldout)
            ax.semilogy(steps, np.maximum(nll, 1e-12), color="#60d0a0", lw=1, marker=".", label="held-out NLL")
            self.plots.legend(ax)
        self.plots.draw_idle()

    def _on_done(self, result: Reconstruction) -> None:
        if not self.session.accept(result):
            self._reset_run()
            return
        self._remove_previews()
        base = self._source_name.replace(" diffraction", "")
        self._pixel_size = result.pixel_size_nm or self._pixel_size  # a cropped detector movie has its own dx
        add_layer_data(self.viewer, result_layers(result, base, self._pixel_size))
        self.metrics_label.setText(self.session.summary(self._pixel_size))
        self._plot_loss()
        m = result.metrics
        unit = "1/nm" if self._pixel_size else "1/px"
        ax = self.plots.clear(1, "PRTF / FRC", f"q ({unit})", "")
        curve = m.get("prtf_curve") or m.get("fourier_fit_curve")
        if curve:
            label = "PRTF" if "prtf_curve" in m else "Fourier fit"
            ax.plot(curve["spatial_frequency_per_nm"], curve["curve"], color="#60b0f0", lw=1, label=label)
        if "frc_curve" in m:
            ax.plot(m["frc_curve"]["spatial_frequency_per_nm"], m["frc_curve"]["curve"], color="#f06060", lw=1, label="FRC")
        ax.axhline(np.exp(-1), color="#909090", ls="--", lw=0.8)
        if ax.lines[:-1]:
            self.plots.legend(ax)
        self.plots.draw_idle()
        self._update_save_buttons()

    # -- saving --------------------------------------------------------------------------------------------
    def save_reconstruction(self, path: str | Path | None = None, overwrite: bool = False):
        """Write the last reconstruction (probe, metrics, config, provenance) to CXI in a worker.

        Without ``path`` a save dialog asks; the file it confirms is replaced (never the input movie)."""
        from napari.qt.threading import create_worker
        from napari.utils import notifications

        r = self.session.result
        if r is None or r.objects is None:
            notify_error("Save reconstruction: nothing to save yet; run a reconstruction first")
            return None
        layer = self.viewer.layers[self._source_name] if self._source_name in self.viewer.layers else None
        source = layer.metadata.get("source_path") if layer is not None else None
        if path is None:
            from ..io import default_output_path

            start = str(default_output_path(source, suffix=r.method.lower())) if source else "reconstruction.cxi"
            path, _ = QFileDialog.getSaveFileName(self, "Save reconstruction", start, "CXI (*.cxi)")
            if not path:
                return None
            overwrite = True  # the dialog asked "replace?" already
        r.source = source
        meta = {k: v for k, v in (layer.metadata if layer is not None else {}).items() if not isinstance(v, np.ndarray)}
        worker = create_worker(r.save, Path(path), metadata=meta, overwrite=overwrite, _start_thread=False,
                               _connect={"returned": lambda p: notifications.show_info(f"saved {p}"),
                                         "errored": lambda e: notify_error(error_message(e, "Save reconstruction"))})
        worker.start()
        return worker

    def save_model(self, path: str | Path | None = None, overwrite: bool = False) -> Path | None:
        """Save the last trained PID3Net model as a checkpoint (the dialog's confirmed file is replaced)."""
        from napari.utils import notifications

        from ..pid3net import save_checkpoint

        if self.session.model is None:
            notify_error("Save model: no trained model yet; train one first")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save PID3Net model", "pid3net.pt", "Checkpoints (*.pt)")
            if not path:
                return None
            overwrite = True
        try:
            out = save_checkpoint(path, self.session.model, self.session.history, overwrite=overwrite)
        except CXDIError as exc:
            notify_error(error_message(exc, "Save model"))
            return None
        notifications.show_info(f"saved {out}")
        return out

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        self.controller.stop()
        super().closeEvent(event)
