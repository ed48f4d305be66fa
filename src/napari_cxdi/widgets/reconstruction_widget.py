"""Reconstruction dock widget: PID3Net (or a classical baseline) on a diffraction-movie layer.

Thin: it gathers parameters, runs :func:`napari_cxdi.api.iter_reconstruction` in a napari thread
worker, and turns the yielded events into a progress bar, live preview layers, plots and, at the end,
amplitude/phase movie layers. Cancel stops within one training step and keeps the best model so far.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QApplication, QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
    QLineEdit, QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget,
)

from ..api import ALL_METHODS, Reconstruction, iter_reconstruction
from ..devices import DEVICE_CHOICES
from ..errors import CXDIError
from .._napari.scripting import add_layer_data, pixel_size_of, probe_of, result_layers
from .._napari.layers import amplitude_layer, phase_layer
from .plots import PlotCanvas

PROBE_FROM_LAYER = "probe of the movie layer"
PROBE_FROM_FILE = "probe file…"
MODEL_NEW = "train a new model"
MODEL_CURRENT = "reuse the last trained model"
MODEL_FILE = "checkpoint file…"


def _spin(lo, hi, value, step=1, decimals=None):
    box = QDoubleSpinBox() if decimals is not None else QSpinBox()
    if decimals is not None:
        box.setDecimals(decimals)
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setValue(value)
    return box


def _stop_worker(state: dict) -> None:
    """Ask a running worker to stop (used when the widget or the application goes away)."""
    state["cancel"].set()
    worker = state.get("worker")
    if worker is not None:
        try:
            worker.quit()
        except RuntimeError:  # the Qt object is already gone
            pass


class ReconstructionWidget(QWidget):
    """Dock widget: movie layer + probe + method -> Reconstruct (background) -> amplitude/phase layers."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.result: Reconstruction | None = None
        self.model = None
        self.history: list[dict] = []
        self._state = {"cancel": threading.Event(), "worker": None}
        self._pbar = None
        self._losses: list[tuple[int, float]] = []
        self._heldout: list[tuple[int, float]] = []  # (step, held-out Poisson NLL) per epoch
        self._build()
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(lambda s=self._state: _stop_worker(s))
        self.destroyed.connect(lambda *_, s=self._state: _stop_worker(s))

    # -- layout -------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.movie_combo = QComboBox()
        form.addRow("diffraction movie", self.movie_combo)
        self.probe_source = QComboBox()
        self.probe_source.addItems([PROBE_FROM_LAYER, PROBE_FROM_FILE])
        form.addRow("probe", self.probe_source)
        self.probe_path = self._path_row(form, "probe .npy / .cxi / .h5", "Probe file", "Probes (*.npy *.npz *.cxi *.h5 *.hdf5)")
        self.method_combo = QComboBox()
        self.method_combo.addItems(list(ALL_METHODS))
        form.addRow("method", self.method_combo)
        self.model_source = QComboBox()
        self.model_source.addItems([MODEL_NEW, MODEL_CURRENT, MODEL_FILE])
        form.addRow("model", self.model_source)
        self.model_path = self._path_row(form, "PID3Net checkpoint .pt", "PID3Net checkpoint", "Checkpoints (*.pt)")
        self.finetune = QCheckBox("fine-tune the reused model on this movie")
        form.addRow("", self.finetune)
        self.epochs = _spin(1, 10000, 20)
        form.addRow("epochs", self.epochs)
        self.frames = _spin(1, 64, 5)
        form.addRow("frames per window (T)", self.frames)
        self.refine_steps = _spin(0, 20, 5)
        form.addRow("refinement steps (K)", self.refine_steps)
        self.width = _spin(2, 64, 8, step=2)
        form.addRow("width (F)", self.width)
        self.device = QComboBox()
        self.device.addItems(list(DEVICE_CHOICES))
        form.addRow("device", self.device)
        self.seed = _spin(0, 2**31 - 1, 0)
        form.addRow("seed", self.seed)
        layout.addLayout(form)

        self.advanced = QGroupBox("advanced")
        self.advanced.setCheckable(True)
        self.advanced.setChecked(False)
        adv = QFormLayout(self.advanced)
        self.batch_size = _spin(1, 256, 4)
        self.refine_width = _spin(2, 128, 32, step=2)
        self.lr = _spin(1e-6, 1.0, 1e-3, step=1e-4, decimals=6)
        self.tv_weight = _spin(0.0, 10.0, 0.01, step=0.005, decimals=4)
        self.image_size = _spin(0, 4096, 0, step=16)
        self.image_size.setSpecialValueText("auto")
        self.stride = _spin(0, 64, 0)
        self.stride.setSpecialValueText("T")
        self.max_iter = _spin(1, 100000, 300)
        for label, w in (("batch size", self.batch_size), ("refinement width", self.refine_width),
                         ("learning rate", self.lr), ("TV weight", self.tv_weight),
                         ("image size m", self.image_size), ("inference stride", self.stride),
                         ("iterations (baselines)", self.max_iter)):
            adv.addRow(label, w)
        self.advanced.toggled.connect(lambda on: [c.setVisible(on) for c in self.advanced.findChildren(QWidget)])
        for c in self.advanced.findChildren(QWidget):
            c.setVisible(False)
        layout.addWidget(self.advanced)

        buttons = QHBoxLayout()
        self.run_button = QPushButton("Reconstruct")
        self.run_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress_bar = QProgressBar()
        layout.addWidget(self.progress_bar)
        self.status = QLabel("ready")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.metrics_label = QLabel("")
        self.metrics_label.setWordWrap(True)
        self.metrics_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.metrics_label)
        self.plots = PlotCanvas(n=2)
        self.plots.setMinimumHeight(180)
        layout.addWidget(self.plots)
        saves = QHBoxLayout()
        self.save_recon_button = QPushButton("Save reconstruction…")
        self.save_recon_button.setEnabled(False)
        self.save_recon_button.clicked.connect(lambda: self.save_reconstruction())
        self.save_model_button = QPushButton("Save model…")
        self.save_model_button.setEnabled(False)
        self.save_model_button.clicked.connect(lambda: self.save_model())
        saves.addWidget(self.save_recon_button)
        saves.addWidget(self.save_model_button)
        layout.addLayout(saves)
        layout.addStretch(1)

    def _path_row(self, form: QFormLayout, placeholder: str, title: str, pattern: str) -> QLineEdit:
        """A path field with a browse button, added to ``form``."""
        line = QLineEdit()
        line.setPlaceholderText(placeholder)
        browse = QPushButton("…")
        browse.clicked.connect(lambda: self._browse(line, title, pattern))
        row = QHBoxLayout()
        row.addWidget(line)
        row.addWidget(browse)
        form.addRow("", row)
        return line

    def _browse(self, line: QLineEdit, title: str, pattern: str) -> None:
        path, _ = QFileDialog.getOpenFileName(self, title, "", pattern)
        if path:
            line.setText(path)

    def _refresh_layers(self, *_) -> None:
        current = self.movie_combo.currentText()
        self.movie_combo.clear()
        names = [layer.name for layer in self.viewer.layers
                 if layer.__class__.__name__ == "Image" and layer.ndim == 3 and layer.metadata.get("kind", "diffraction") == "diffraction"
                 and not layer.rgb]
        self.movie_combo.addItems(names)
        if current in names:
            self.movie_combo.setCurrentText(current)

    # -- parameters ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._state.get("worker") is not None

    def parameters(self) -> dict:
        """The keyword arguments of :func:`iter_reconstruction` from the form (raises CXDIError on bad input)."""
        from ..io import read_probe
        from ..errors import ConfigError

        name = self.movie_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise ConfigError("choose a diffraction-movie layer (open a file or File > Open Sample > napari CXDI)")
        layer = self.viewer.layers[name]
        if layer.ndim != 3:
            raise ConfigError(f"layer {name!r} is not a movie [frames, H, W]")
        if self.probe_source.currentText() == PROBE_FROM_LAYER:
            probe = probe_of(layer)
            if probe is None:
                raise ConfigError(f"layer {name!r} carries no probe; choose '{PROBE_FROM_FILE}'")
        else:
            if not self.probe_path.text().strip():
                raise ConfigError("give a probe file")
            probe = read_probe(self.probe_path.text().strip(), tuple(layer.data.shape))
        method = self.method_combo.currentText()
        kwargs: dict = {"movie": layer.data, "probe": probe, "method": method, "cancel": self._state["cancel"],
                        "preview_frame": int(min(self.viewer.dims.current_step[0], layer.data.shape[0] - 1)),
                        "measure_velocity": False}
        if method.startswith("PID3Net"):
            source = self.model_source.currentText()
            if source == MODEL_CURRENT:
                if self.model is None:
                    raise ConfigError("no model has been trained in this session yet")
                kwargs["model"] = self.model
            elif source == MODEL_FILE:
                if not self.model_path.text().strip():
                    raise ConfigError("give a PID3Net checkpoint file")
                kwargs["model"] = self.model_path.text().strip()
            kwargs["train"] = source == MODEL_NEW or self.finetune.isChecked()
            kwargs.update(epochs=self.epochs.value(), device=self.device.currentText(), seed=self.seed.value(),
                          batch_size=self.batch_size.value(), lr=self.lr.value(), tv_weight=self.tv_weight.value(),
                          preview_every=max(1, min(20, self.epochs.value())))
            if "model" not in kwargs:
                kwargs.update(frames=self.frames.value(), refine_steps=self.refine_steps.value() if method != "PID3Net-NR" else 0,
                              width=self.width.value(), refine_width=self.refine_width.value(),
                              image_size=self.image_size.value() or None)
            kwargs["inference_stride"] = self.stride.value() or None
        else:
            kwargs.update(max_iter=self.max_iter.value(), device=self.device.currentText())
        return kwargs

    # -- running --------------------------------------------------------------------------------
    def start(self):
        """Start a reconstruction in a thread worker; returns the worker (None if refused)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error, show_warning

        if self.running:
            show_warning("a reconstruction is already running; cancel it first")
            return None
        try:
            kwargs = self.parameters()
        except CXDIError as exc:
            show_error(str(exc))
            return None
        self._source_name = self.movie_combo.currentText()
        self._pixel_size = pixel_size_of(self.viewer.layers[self._source_name])
        self._state["cancel"] = threading.Event()
        kwargs["cancel"] = self._state["cancel"]
        kwargs["pixel_size_nm"] = self._pixel_size
        self._losses = []
        self._heldout = []
        self.progress_bar.setValue(0)
        self.status.setText(f"starting {kwargs['method']} …")
        self.metrics_label.setText("")
        worker = create_worker(
            iter_reconstruction, **kwargs,
            _connect={"yielded": self._on_event, "returned": self._on_done, "errored": self._on_error,
                      "finished": self._on_finished},
            _start_thread=False,
        )
        self._state["worker"] = worker
        if kwargs["method"].startswith("PID3Net") and kwargs.get("train", True):
            # create the preview layers now (a one-off cost at the click), later previews only swap data
            frame = np.zeros(tuple(self.viewer.layers[self._source_name].data.shape[-2:]), np.float32)
            self._show_preview({"frame": kwargs["preview_frame"], "amplitude": frame, "phase": frame})
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop after the current step; the best model so far is kept."""
        self._state["cancel"].set()
        self.status.setText("cancelling after this step …")

    def _progress(self, total: int, desc: str):
        from napari.utils import progress

        if self._pbar is None or self._pbar.total != total:
            if self._pbar is not None:
                self._pbar.close()
            self._pbar = progress(total=total, desc=desc)
        return self._pbar

    def _on_event(self, event: dict) -> None:
        stage, kind = event.get("stage"), event.get("event")
        if kind == "warning":
            from napari.utils.notifications import show_warning

            show_warning(event["message"])
        elif stage == "train" and kind == "start":
            self.progress_bar.setRange(0, event["total_steps"])
            self._progress(event["total_steps"], f"{event['variant']} training")
            self.status.setText(f"training {event['variant']} on {event['device']} ({event['n_parameters']:,} parameters)")
        elif stage == "train" and kind == "step":
            self.progress_bar.setValue(event["step"])
            pbar = self._progress(event["total_steps"], "PID3Net training")
            pbar.update(event["step"] - pbar.n)
            self._losses.append((event["step"], event["loss"]))
            eta = event["eta_s"]
            self.status.setText(f"epoch {event['epoch'] + 1}, step {event['step']}/{event['total_steps']}: "
                                f"loss {event['loss']:.4g}, R_f {event['rf']:.3f}, ETA {eta:.0f} s")
            if event["step"] % 5 == 0 or event["step"] == event["total_steps"]:
                self._plot_loss()
        elif stage == "train" and kind == "epoch" and "heldout_nll" in event:
            step = self._losses[-1][0] if self._losses else 0
            self._heldout.append((step, event["heldout_nll"]))  # drawn with the next loss redraw (draws are slow)
        elif stage == "train" and kind == "preview":
            self._show_preview(event)
        elif stage == "inference" and kind == "progress":
            self.progress_bar.setRange(0, event["total"])
            self.progress_bar.setValue(event["done"])
            self.status.setText(f"inference: {event['frames_done']} frames ({event['frames_per_s']:.1f} frames/s)")
        elif stage == "iterative":
            self.progress_bar.setRange(0, event["total_frames"])
            self.progress_bar.setValue(event["frames_done"])
            pbar = self._progress(event["total_frames"], f"{event['method']}")
            pbar.update(event["frames_done"] - pbar.n)
            self.status.setText(f"{event['method']}: frame {event['frames_done']}/{event['total_frames']}, "
                                f"iteration {event.get('iteration', event.get('iterations'))}, R_f {event['rf']:.3f}")
        elif stage == "evaluate":
            self.status.setText("computing metrics …")

    def _show_preview(self, event: dict) -> None:
        base = self._source_name.replace(" diffraction", "")
        meta = {"preview_frame": event["frame"]}
        names = (f"{base} preview amplitude (frame {event['frame']})", f"{base} preview phase (frame {event['frame']})")
        if names[1] in self.viewer.layers:  # update in place: no layer churn while training
            self.viewer.layers[names[0]].data = event["amplitude"]
            self.viewer.layers[names[1]].data = event["phase"]
            return
        add_layer_data(self.viewer, [
            amplitude_layer(event["amplitude"], names[0], self._pixel_size, meta),
            phase_layer(event["phase"], names[1], self._pixel_size, meta),
        ])

    def _plot_loss(self) -> None:
        ax = self.plots.clear(0, "training loss", "step", "loss")
        if self._losses:
            steps, losses = zip(*self._losses)
            ax.semilogy(steps, np.maximum(losses, 1e-12), color="#f0a030", lw=1, label="training loss")
        if self._heldout:
            # the held-out Poisson NLL (10 % of the photons, never trained on): training stops when it rises
            # same (log) axis: a second axis (twinx) costs seconds of GUI time per redraw
            steps, values = zip(*self._heldout)
            ax.semilogy(steps, np.maximum(values, 1e-12), color="#40a0f0", lw=1, marker=".", ms=3, label="held-out NLL")
            ax.set_title("training loss (orange), held-out NLL (blue)", fontsize=8)
        self.plots.draw_idle()

    def _on_done(self, result: Reconstruction) -> None:
        from napari.utils.notifications import show_info

        self.result = result
        if result.model is not None:
            self.model = result.model
            self.history = result.history
            self.save_model_button.setEnabled(True)
        if result.cancelled:
            epochs = len(result.history)
            self.status.setText(f"cancelled — best model so far kept ({epochs} epoch(s)); save it or reuse it")
            show_info("reconstruction cancelled; the best model so far is kept")
            return
        base = self._source_name.replace(" diffraction", "")
        for layer in [layer for layer in self.viewer.layers if layer.name.startswith(f"{base} preview ")]:
            self.viewer.layers.remove(layer)
        add_layer_data(self.viewer, result_layers(result, base, self._pixel_size))
        self.save_recon_button.setEnabled(True)
        m = result.metrics
        parts = [f"R_f {m['rf']:.3f}", f"PRTF resolution {m['prtf_resolution_nm']:.0f} nm" if self._pixel_size else
                 f"PRTF resolution {m['prtf_resolution_nm']:.1f} px"]
        if "frc_resolution_nm" in m:
            parts.append(f"FRC {m['frc_resolution_nm']:.0f} nm")
        times = result.timings
        if "training_s" in times:
            parts.append(f"training {times['training_s']:.1f} s")
        if "inference_frames_per_s" in times:
            parts.append(f"inference {times['inference_frames_per_s']:.1f} frames/s")
        if "reconstruction_s" in times:
            parts.append(f"{times['reconstruction_s']:.1f} s")
        self.metrics_label.setText(f"{result.method}: " + " · ".join(parts))
        self.status.setText("done")
        self._plot_loss()
        ax = self.plots.clear(1, "PRTF / FRC", "q (1/nm)" if self._pixel_size else "q (1/px)", "")
        curve = m["prtf_curve"]
        ax.plot(curve["spatial_frequency_per_nm"], curve["curve"], color="#60b0f0", lw=1, label="PRTF")
        if "frc_curve" in m:
            ax.plot(m["frc_curve"]["spatial_frequency_per_nm"], m["frc_curve"]["curve"], color="#f06060", lw=1, label="FRC")
        ax.axhline(np.exp(-1), color="#909090", ls="--", lw=0.8)
        ax.legend(fontsize=6, facecolor="#262930", labelcolor="#d0d0d0")
        self.plots.draw_idle()

    def _on_error(self, exc: Exception) -> None:
        from napari.utils.notifications import show_error

        message = str(exc) if isinstance(exc, CXDIError) else f"{type(exc).__name__}: {exc}"
        self.status.setText(f"failed: {message}")
        show_error(f"Reconstruction failed: {message}")

    def _on_finished(self) -> None:
        self._state["worker"] = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    # -- saving -----------------------------------------------------------------------------------
    def save_reconstruction(self, path: str | Path | None = None):
        """Write the last reconstruction (with probe, metrics, config, provenance) to CXI, in a worker."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error, show_info

        if self.result is None or self.result.objects is None:
            show_error("nothing to save yet")
            return None
        layer = self.viewer.layers[self._source_name] if self._source_name in self.viewer.layers else None
        source = layer.metadata.get("source_path") if layer is not None else None
        if path is None:
            from ..io import default_output_path

            start = str(default_output_path(source, suffix=self.result.method.lower())) if source else "reconstruction.cxi"
            path, _ = QFileDialog.getSaveFileName(self, "Save reconstruction", start, "CXI (*.cxi)")
            if not path:
                return None
        self.result.source = source
        meta = {k: v for k, v in (layer.metadata if layer is not None else {}).items() if not isinstance(v, np.ndarray)}
        worker = create_worker(self.result.save, Path(path), metadata=meta, overwrite=False, _start_thread=False,
                               _connect={"returned": lambda p: show_info(f"saved {p}"),
                                         "errored": lambda e: show_error(f"Save failed: {e}")})
        worker.start()
        return worker

    def save_model(self, path: str | Path | None = None) -> Path | None:
        """Save the last trained (or cancelled-best) PID3Net model as a checkpoint."""
        from napari.utils.notifications import show_error, show_info

        from ..pid3net import save_checkpoint

        if self.model is None:
            show_error("no trained model to save")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save PID3Net model", "pid3net.pt", "Checkpoints (*.pt)")
            if not path:
                return None
        try:
            out = save_checkpoint(path, self.model, self.history)
        except CXDIError as exc:
            show_error(str(exc))
            return None
        show_info(f"saved {out}")
        return out

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        _stop_worker(self._state)
        super().closeEvent(event)
