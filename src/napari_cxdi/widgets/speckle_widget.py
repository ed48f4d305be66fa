"""Dock widget: classify speckle patterns by disk number, show class probabilities, overlay the q-rings
that decided (radial models), saliency / Grad-CAM (ResNet models) or the saliency plus the Patterson map and
its Grad-CAM (the 2-D ``speckle-poly``), and generate sample n-disk systems.

The model is a shipped name (``speckle-mono``, ``speckle-poly``, ``speckle-poly-radial``,
``speckle-resnet18-mono``) or a
checkpoint path; patterns outside the model's training domain raise a napari warning.

All computation runs in napari thread workers that yield; layers are only created or changed in the
main-thread slots (one WorkerController). Errors become napari notifications and the widget stays usable.
"""

from __future__ import annotations

import threading
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
    """Models by name or path, loaded once per (file, mtime) by :func:`napari_cxdi.speckle.models.load_model`
    (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()

    def get(self, name_or_path: str):
        from ..speckle.models import load_model

        with self._lock:
            return load_model(name_or_path, "auto")


def _classify_job(cache: _ModelCache, model_path: str, source, indices: list, input_bin: int):
    """Generator run in a worker: yields progress, returns predictions for the frames ``indices``."""
    from ..speckle.models import classify_patterns, domain_warnings, model_label

    clf = cache.get(model_path)
    preds, probs, values, ood, scores = [], [], [], [], {}
    for i in range(0, len(indices), CHUNK):
        part = indices[i:i + CHUNK]
        frames = np.stack([np.asarray(source[idx], dtype=np.float32) for idx in part])
        out = classify_patterns(frames, clf, input_bin, warn=False)
        preds.append(out["pred"])
        values.append(out["value"])
        ood.append(out["ood"])
        for key, thr in (("fit_residual", "fit_residual_threshold"), ("ood_score", "ood_threshold")):
            if key in out:
                scores.setdefault(key, []).append(out[key])
                scores[thr] = out[thr]
        if out["probs"] is not None:
            probs.append(out["probs"])
        yield {"done": i + len(part), "total": len(indices)}
    result = {"indices": indices, "pred": np.concatenate(preds), "value": np.concatenate(values),
              "probs": np.concatenate(probs) if probs else None, "classes": np.asarray(clf.classes),
              "task": clf.task, "ood": np.concatenate(ood),
              **{k: (np.concatenate(v) if isinstance(v, list) else v) for k, v in scores.items()}}
    result["warnings"] = domain_warnings(result, model_label(clf, model_path))
    return result


def _explain_job(cache: _ModelCache, model_path: str, frame: np.ndarray, input_bin: int, method: str):
    from ..speckle.models import explain_pattern

    clf = cache.get(model_path)
    yield {"stage": "model loaded"}
    out = explain_pattern(frame, clf, input_bin, method)
    yield {"stage": "explanation computed"}
    out["shape"] = frame.shape
    return out


def model_domain_ood(result: dict) -> str | None:
    """The classifier's own training-domain check (from the radial I(q) features), first of the session's checks."""
    warnings = result.get("warnings") or []
    if not warnings:
        return None
    n = int(np.sum(result.get("ood", [])))
    return warnings[0] + (f" (and {n - 1} more frames)" if n > 1 else "")


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
        self.model_edit.setToolTip("a shipped model name (speckle-mono, speckle-poly, speckle-poly-mixed, speckle-poly-radial, "
                                   "speckle-resnet18-mono) "
                                   "or a checkpoint (.pt)")
        from qtpy.QtWidgets import QCompleter

        from ..speckle.models import model_names

        self.model_edit.setCompleter(QCompleter(model_names(), self.model_edit))
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
        self.figure = Figure(figsize=(3.2, 1.8))
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
        self.session.ood_checks.insert(0, model_domain_ood)
        self.session.warning.connect(lambda msg: show_warning(f"napari-cxdi speckle: {msg}"))

        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed,
                      self.viewer.layers.events.reordered):
            event.connect(self._refresh_layers)
        self._refresh_layers()

    # ---------------------------------------------------------------- helpers (main thread)
    @staticmethod
    def _default_model() -> str:
        from ..speckle.models import DEFAULT_MODEL

        return DEFAULT_MODEL

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
        """The model name or checkpoint path (checked, not loaded)."""
        from ..speckle.models import model_path

        text = self.model_edit.text().strip()
        if not text:
            raise DataValidationError("give a model name (e.g. speckle-mono) or a checkpoint file")
        model_path(text)
        return text

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
        self.canvas.fit_margins()
        self.canvas.apply_theme(self.canvas.theme_name)

    def _on_map(self, out: dict):
        if out.get("kind") == "rings":
            return self._on_rings(out)
        m = out["map"]
        name = f"{out.get('map_label', self._map_method)} {self.session.target_layer}"
        if name in self.viewer.layers:
            self.viewer.layers[name].data = m
            layer = self.viewer.layers[name]
        else:
            layer = self.viewer.add_image(m, name=name, colormap="inferno", blending="additive", opacity=0.6)
        if self.session.target_layer in self.viewer.layers:
            src = self.viewer.layers[self.session.target_layer]
            layer.scale = src.scale[-2:]
            layer.translate = src.translate[-2:]
        if "patterson_cam" in out:
            self._on_patterson(out, m.shape)
        self.last_map_layer = layer

    def _on_patterson(self, out: dict, shape: tuple):
        """The Patterson map (autocorrelation: one peak per disk pair) and its Grad-CAM, to the right of the
        pattern (their pixels are pair vectors of ``patterson_pixel_units`` box units, not q)."""
        x0 = float(shape[-1]) * 1.05
        for key, name, cmap, blend in (("patterson", "Patterson", "gray", "translucent"),
                                       ("patterson_cam", "Patterson Grad-CAM", "inferno", "additive")):
            data = np.asarray(out[key], dtype=np.float32)
            if key == "patterson":
                data = np.arcsinh(300.0 * data)  # cross peaks are ~1/n of the origin
            full = f"{name} {self.session.target_layer}"
            if full in self.viewer.layers:
                self.viewer.layers.remove(full)
            lay = self.viewer.add_image(data, name=full, colormap=cmap, blending=blend,
                                        opacity=0.6 if key == "patterson_cam" else 1.0,
                                        metadata={"pixel_units": out.get("patterson_pixel_units")})
            lay.translate = (0.0, x0)
            lay.scale = (float(shape[-2]) / data.shape[0],) * 2
        self.result_label.setText(self.result_label.text().split("  | ")[0]
                                  + f"  | n = {out.get('class')}: Patterson map (pair vectors) and its Grad-CAM "
                                    "shown to the right of the pattern")

    def _on_rings(self, out: dict):
        """The q-ranges that decided, as circles over the pattern (edge width = ring width, colour =
        importance, brighter = more)."""
        from matplotlib import colormaps

        from ..speckle.models import ring_shapes

        h, w = out["shape"]
        rings = ring_shapes(out, (h // 2, w // 2), top=6)
        name = f"q-rings {self.session.target_layer}"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        if not rings:
            show_info("napari-cxdi speckle: no q-range raised the predicted class's probability")
            return None
        top = max(r["importance"] for r in rings)
        ellipses = [np.array([[r["center"][0] - r["radius"], r["center"][1] - r["radius"]],
                              [r["center"][0] - r["radius"], r["center"][1] + r["radius"]],
                              [r["center"][0] + r["radius"], r["center"][1] + r["radius"]],
                              [r["center"][0] + r["radius"], r["center"][1] - r["radius"]]]) for r in rings]
        colors = [colormaps["autumn"](0.3 + 0.7 * r["importance"] / top) for r in rings]
        layer = self.viewer.add_shapes(
            ellipses, shape_type="ellipse", name=name, edge_width=[max(r["width"], 1.0) for r in rings],
            edge_color=colors, face_color=[0, 0, 0, 0], opacity=0.7,
            metadata={"class": out["class"], "rings": rings})
        if self.session.target_layer in self.viewer.layers:
            src = self.viewer.layers[self.session.target_layer]
            layer.scale = src.scale[-2:]
            layer.translate = src.translate[-2:]
        self.result_label.setText(self.result_label.text().split("  | ")[0]
                                  + f"  | rings that decided n = {out['class']}: "
                                  + ", ".join(f"q {r['radius'] * self.bin_spin.value():.0f} px" for r in rings[:3]))
        self.last_map_layer = layer
        return layer

    def _on_sample(self, layers: list):
        added = [self.viewer.add_image(data, **kwargs) for data, kwargs, _kind in layers]
        self._refresh_layers()
        # napari renames a layer whose name is taken ("speckle 8 disks [1]"): select the one just added
        self.layer_combo.setCurrentText(added[-1].name)
