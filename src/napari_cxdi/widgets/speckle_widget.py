"""Dock widget: classify speckle patterns by disk number, show class probabilities, overlay saliency /
Grad-CAM, and generate sample n-disk systems.

All computation runs in napari thread workers that yield; layers are only created or changed in the
main-thread slots. Errors become napari notifications and the widget stays usable.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QWidget

from ..errors import CXDIError, DataValidationError
from ..sessions import SpeckleSession, error_message
from ._qt import CollapsibleSection, ScrollingDock
from ._worker import WorkerController
from .plots import ThemedCanvas

if TYPE_CHECKING:
    import napari

CHUNK = 16


class _ModelCache:
    """Checkpoints loaded once per (path, mtime); safe to use from worker threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cache: dict = {}

    def get(self, path: str):
        from ..speckle.classifier import load_checkpoint

        p = Path(path)
        key = (str(p.resolve()), p.stat().st_mtime if p.exists() else None)
        with self._lock:
            if key not in self._cache:
                self._cache = {key: load_checkpoint(p, "auto")}
            return self._cache[key]


def _classify_job(cache: _ModelCache, model_path: str, source, indices: list, input_bin: int):
    """Generator run in a worker: yields progress, returns predictions for the frames ``indices``."""
    clf = cache.get(model_path)
    preds, probs, values = [], [], []
    for i in range(0, len(indices), CHUNK):
        part = indices[i:i + CHUNK]
        frames = np.stack([np.asarray(source[idx], dtype=np.float32) for idx in part])
        out = clf.predict(frames, input_bin)
        preds.append(out["pred"])
        values.append(out["value"])
        if out["probs"] is not None:
            probs.append(out["probs"])
        yield {"done": i + len(part), "total": len(indices)}
    return {"indices": indices, "pred": np.concatenate(preds), "value": np.concatenate(values),
            "probs": np.concatenate(probs) if probs else None, "classes": np.asarray(clf.classes),
            "task": clf.task}


def _explain_job(cache: _ModelCache, model_path: str, frame: np.ndarray, input_bin: int, method: str):
    from ..speckle.patterns import prepare
    from ..speckle.saliency import grad_cam, saliency_map, to_pattern_frame

    clf = cache.get(model_path)
    yield {"stage": "model loaded"}
    x = prepare(frame, clf.preprocess, input_bin)
    fn = grad_cam if method == "Grad-CAM" else saliency_map
    m = fn(clf.model, x)
    yield {"stage": "map computed"}
    return to_pattern_frame(m, clf.preprocess, frame.shape, input_bin)


def _sample_job(n: int, seed: int, polydisperse: bool):
    from .._napari.speckle_sample import simulate_speckle_layers

    yield {"stage": "simulating"}
    return simulate_speckle_layers(n, seed, polydisperse)


class SpeckleWidget(ScrollingDock):
    """Speckle number-density classifier dock (a thin panel over :class:`~napari_cxdi.sessions.SpeckleSession`)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = SpeckleSession()
        self.last_map_layer = None
        self._cache = _ModelCache()

        layout = self.body_layout
        box = CollapsibleSection("Classify")
        form = box
        self.layer_combo = QComboBox()
        form.addRow("Pattern layer", self.layer_combo)
        row = QHBoxLayout()
        self.model_edit = QLineEdit(self._default_model())
        self.model_edit.setToolTip("speckle checkpoint (.pt); default: the shipped ResNet-18")
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse)
        row.addWidget(self.model_edit)
        row.addWidget(browse)
        form.addRow("Model", row)
        self.bin_spin = QSpinBox()
        self.bin_spin.setRange(1, 16)
        self.bin_spin.setToolTip("binning of the layer's pixels relative to the 9x-oversampled k grid")
        form.addRow("Input binning", self.bin_spin)
        self.stack_check = QCheckBox("whole stack (all frames)")
        form.addRow(self.stack_check)
        buttons = QHBoxLayout()
        self.classify_button = QPushButton("Classify")
        self.classify_button.clicked.connect(self.classify)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.classify_button)
        buttons.addWidget(self.cancel_button)
        form.addRow(buttons)
        self.result_label = QLabel("–")
        self.result_label.setWordWrap(True)
        form.addRow(self.result_label)
        self.figure = Figure(figsize=(3.2, 1.8), tight_layout=True)
        self.canvas = ThemedCanvas(self.figure, min_height=110)
        self.canvas.setMaximumHeight(240)
        self.canvas.follow(self.viewer)
        form.addRow(self.canvas)
        layout.addWidget(box)

        box = CollapsibleSection("Explain")
        explain_row = QWidget()
        row = QHBoxLayout(explain_row)
        row.setContentsMargins(0, 0, 0, 0)
        box.addRow(explain_row)
        self.map_combo = QComboBox()
        self.map_combo.addItems(["Grad-CAM", "Saliency"])
        self.explain_button = QPushButton("Overlay map")
        self.explain_button.clicked.connect(self.explain)
        row.addWidget(self.map_combo)
        row.addWidget(self.explain_button)
        layout.addWidget(box)

        box = CollapsibleSection("Sample n-disk system", expanded=False)
        form = box
        self.n_spin = QSpinBox()
        self.n_spin.setRange(2, 20)
        self.n_spin.setValue(8)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.poly_check = QCheckBox("polydisperse (sd = mean/3)")
        self.sample_button = QPushButton("Generate")
        self.sample_button.clicked.connect(self.generate_sample)
        form.addRow("Disks", self.n_spin)
        form.addRow("Seed", self.seed_spin)
        form.addRow(self.poly_check)
        form.addRow(self.sample_button)
        layout.addWidget(box)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch()
        self.controller = WorkerController(
            self.session, self, controls=[self.classify_button, self.explain_button, self.sample_button],
            cancel_button=self.cancel_button, on_reset=lambda: self.status.setText(""),
            notify=lambda msg: show_error(msg))  # looked up at call time (tests replace it)
        self.session.status_changed.connect(lambda text: self.status.setText(text))
        self.session.warning.connect(lambda msg: show_warning(f"napari-cxdi speckle: {msg}"))

        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed,
                      self.viewer.layers.events.reordered):
            event.connect(self._refresh_layers)
        self._refresh_layers()

    # ---------------------------------------------------------------- helpers (main thread)
    @staticmethod
    def _default_model() -> str:
        try:
            from ..speckle.classifier import default_model_path

            return str(default_model_path())
        except CXDIError:
            return ""

    def _browse(self):
        path, _ = QFileDialog.getOpenFileName(self, "Speckle model", self.model_edit.text(), "Checkpoints (*.pt)")
        if path:
            self.model_edit.setText(path)

    def _refresh_layers(self, event=None):
        from napari.layers import Image

        current = self.layer_combo.currentText()
        self.layer_combo.clear()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image) and not layer.rgb]
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        elif names:
            self.layer_combo.setCurrentIndex(len(names) - 1)

    def _selected_layer(self):
        name = self.layer_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise DataValidationError("choose an image layer holding a speckle pattern")
        return self.viewer.layers[name]

    def _current_index(self, layer) -> tuple:
        """Index of the displayed 2D frame in the layer's leading axes."""
        lead = layer.ndim - 2
        if lead <= 0:
            return ()
        try:
            pos = np.asarray(layer.world_to_data(self.viewer.dims.point))
        except Exception:  # older napari: fall back to the slider positions
            pos = np.asarray(self.viewer.dims.current_step[-layer.ndim:], dtype=float)
        shape = layer.data.shape
        return tuple(int(np.clip(round(float(pos[i])), 0, shape[i] - 1)) for i in range(lead))

    @property
    def worker(self):
        """The running worker (None when idle)."""
        return self.controller.worker

    @property
    def last_result(self) -> dict | None:
        return self.session.last_result

    def _start(self, job, *args, returned, text: str):
        if self.controller.running:
            show_info("napari-cxdi speckle: a computation is already running")
            return None
        return self.controller.start(job, *args, on_event=self.session.handle, on_result=returned, label=text)

    def _model_path(self) -> str:
        path = self.model_edit.text().strip()
        if not path or not Path(path).is_file():
            raise DataValidationError(f"model checkpoint not found: {path or '(none)'}")
        return path

    # ---------------------------------------------------------------- actions
    def classify(self):
        """Classify the current frame (or every frame) of the chosen layer in a worker."""
        try:
            layer = self._selected_layer()
            path = self._model_path()
            if layer.ndim < 2 or layer.rgb:
                raise DataValidationError(f"layer {layer.name!r} is not a 2D pattern or a stack of them")
            data = layer.data[0] if layer.multiscale else layer.data
            if self.stack_check.isChecked() and layer.ndim > 2:
                lead = data.shape[:-2]
                indices = [tuple(int(v) for v in ix) for ix in np.ndindex(*lead)]
            else:
                indices = [self._current_index(layer)]
        except CXDIError as exc:
            show_error(error_message(exc, "napari-cxdi speckle: classification"))
            return None
        self.session.target_layer = layer.name
        return self._start(_classify_job, self._cache, path, data, indices, self.bin_spin.value(),
                           returned=self._on_classified, text=f"classifying {len(indices)} frame(s)…")

    def explain(self):
        """Overlay a saliency or Grad-CAM map of the current frame as an image layer."""
        try:
            layer = self._selected_layer()
            path = self._model_path()
            data = layer.data[0] if layer.multiscale else layer.data
            frame = np.asarray(data[self._current_index(layer)], dtype=np.float32)
        except CXDIError as exc:
            show_error(error_message(exc, "napari-cxdi speckle: saliency"))
            return None
        self.session.target_layer = layer.name
        self._map_method = self.map_combo.currentText()
        return self._start(_explain_job, self._cache, path, frame, self.bin_spin.value(), self._map_method,
                           returned=self._on_map, text=f"computing {self._map_method}…")

    def generate_sample(self):
        """Add a random n-disk system and its speckle pattern as layers."""
        return self._start(_sample_job, self.n_spin.value(), self.seed_spin.value(), self.poly_check.isChecked(),
                           returned=self._on_sample, text="simulating…")

    def cancel(self):
        self.controller.cancel()

    # ---------------------------------------------------------------- slots (main thread)
    def _on_classified(self, result: dict):
        self.session.accept(result)
        result = self.session.last_result
        self.result_label.setText(self.session.result_text(result))
        self.result_label.setStyleSheet("color: #f0a030;" if result["ood_warnings"] else "")
        preds = result["pred"]
        if self.session.target_layer in self.viewer.layers:
            self.viewer.layers[self.session.target_layer].metadata["speckle_prediction"] = {
                "frames": [list(ix) for ix in result["indices"]], "n": [int(p) for p in preds],
                "out_of_domain": result["ood_warnings"]}
        self._plot(result)

    def _plot(self, result: dict):
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        self.canvas.style(ax)
        classes = result["classes"]
        if result["probs"] is not None:
            probs = result["probs"].mean(0)
            colors = ["tab:orange" if c == result["pred"][0] and len(result["pred"]) == 1 else "tab:blue"
                      for c in classes]
            ax.bar(classes, probs, color=colors)
            ax.set_ylabel("probability" if len(result["pred"]) == 1 else "mean probability")
            ax.set_ylim(0, 1)
        else:
            ax.hist(result["value"], bins=np.arange(classes.min() - 0.5, classes.max() + 1.5))
            ax.set_ylabel("frames")
        ax.set_xlabel("number of disks", fontsize=7)
        ax.set_xticks(classes[:: max(1, len(classes) // 10)])
        self.canvas.apply_theme(self.canvas.theme_name)

    def _on_map(self, m: np.ndarray):
        name = f"{self._map_method} {self.session.target_layer}"
        if name in self.viewer.layers:
            self.viewer.layers[name].data = m
            layer = self.viewer.layers[name]
        else:
            layer = self.viewer.add_image(m, name=name, colormap="inferno", blending="additive", opacity=0.6)
        if self.session.target_layer in self.viewer.layers:
            src = self.viewer.layers[self.session.target_layer]
            layer.scale = src.scale[-2:]
            layer.translate = src.translate[-2:]
        self.last_map_layer = layer

    def _on_sample(self, layers: list):
        added = [self.viewer.add_image(data, **kwargs) for data, kwargs, _kind in layers]
        self._refresh_layers()
        # napari renames a layer whose name is taken ("speckle 8 disks [1]"): select the one just added
        self.layer_combo.setCurrentText(added[-1].name)
