"""Molecule dock widget: a vispy 3D view of molecules coloured by SCANN global-attention (GA) scores.

Thin: structures come from :mod:`napari_cxdi.molecules` (files, bundled examples), predictions from
:func:`napari_cxdi.molecules.iter_predict` in a napari thread worker; the scene, the colour bar, the
property-vs-frame plot and napari layers are updated in main-thread slots only.

Console one-liner::

    from napari_cxdi.widgets.molecule_widget import show_molecule
    show_molecule(viewer, "traj.xyz", model="qm9-homo")
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox, QDockWidget, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton,
    QSlider, QVBoxLayout, QWidget,
)

from .. import molecules as mol
from ..errors import ConfigError, CXDIError
from .molecule_canvas import CAMERAS, MoleculeCanvas
from .plots import PlotCanvas

MODEL_FILE = "checkpoint file…"
COLOR_GA = "GA score"
COLOR_ELEMENT = "element"
DEFAULT_TARGETS = {"qm9-homo": "homo", "qm9-lumo": "lumo"}


class ColorBar(FigureCanvasQTAgg):
    """A thin horizontal matplotlib colour bar."""

    def __init__(self):
        self.figure = Figure(figsize=(4.0, 0.62))
        self.figure.patch.set_facecolor("#262930")
        super().__init__(self.figure)
        self.ax = self.figure.add_axes((0.05, 0.42, 0.9, 0.26))
        self.setFixedHeight(60)

    def show_scale(self, cmap: str | None, limits=(0.0, 1.0), label: str = "") -> None:
        import matplotlib
        from matplotlib.colorbar import ColorbarBase
        from matplotlib.colors import Normalize

        self.ax.clear()
        if cmap is None:
            self.ax.set_axis_off()
        else:
            self.ax.set_axis_on()
            ColorbarBase(self.ax, cmap=matplotlib.colormaps[cmap], norm=Normalize(*limits), orientation="horizontal")
            self.ax.tick_params(colors="#d0d0d0", labelsize=7)
            self.ax.set_title(label, fontsize=7, color="#d0d0d0", pad=2)
        self.draw_idle()


class MoleculeWidget(QWidget):
    """Dock widget: structure (file / example) + model -> Predict (background) -> atoms coloured by GA."""

    def __init__(self, napari_viewer=None):
        super().__init__()
        self.viewer = napari_viewer
        self.frames: list = []
        self.results: list | None = None
        self.frame = 0
        self.name = ""
        self.source_path: str | None = None
        self.model_name: str | None = None
        self.selected: int | None = None
        self.predictor = None
        self._predictors: dict = {}
        self._worker = None
        self._load_worker = None
        self._generation = 0
        self._press_xy = None
        self._closed = False
        self._build()

    # -- layout -----------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.example_combo = QComboBox()
        self.example_combo.addItems(list(mol.EXAMPLES))
        load_example = QPushButton("Load")
        load_example.clicked.connect(lambda: self.load(self.example_combo.currentText()))
        open_file = QPushButton("Open file…")
        open_file.clicked.connect(self._open_dialog)
        row = QHBoxLayout()
        row.addWidget(self.example_combo, 1)
        row.addWidget(load_example)
        row.addWidget(open_file)
        form.addRow("structure", row)
        self.model_combo = QComboBox()
        self.model_combo.addItems([*mol_pretrained(), MODEL_FILE])
        self.model_combo.currentTextChanged.connect(self._model_changed)
        form.addRow("model", self.model_combo)
        self.model_path = QLineEdit()
        self.model_path.setPlaceholderText("SCANN checkpoint .pt")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse_model)
        mrow = QHBoxLayout()
        mrow.addWidget(self.model_path)
        mrow.addWidget(browse)
        form.addRow("", mrow)
        self.property_combo = QComboBox()
        self.property_combo.currentTextChanged.connect(lambda *_: self._plot_property())
        form.addRow("property", self.property_combo)
        self.predict_button = QPushButton("Predict")
        self.predict_button.clicked.connect(lambda: self.predict())
        form.addRow("", self.predict_button)
        self.camera_combo = QComboBox()
        self.camera_combo.addItems(list(CAMERAS))
        self.camera_combo.currentTextChanged.connect(lambda k: self.canvas.set_camera(k))
        form.addRow("camera", self.camera_combo)
        self.color_by = QComboBox()
        self.color_by.addItems([COLOR_GA, COLOR_ELEMENT])
        self.scaling_combo = QComboBox()
        self.scaling_combo.addItems(list(mol.SCALINGS))
        self.cmap_combo = QComboBox()
        self.cmap_combo.addItems(list(mol.COLORMAPS))
        self.vmin = QDoubleSpinBox()
        self.vmax = QDoubleSpinBox()
        for box, value in ((self.vmin, 0.5), (self.vmax, 1.5)):
            box.setRange(-100.0, 100.0)
            box.setDecimals(3)
            box.setSingleStep(0.1)
            box.setValue(value)
        crow = QHBoxLayout()
        for w in (self.color_by, self.scaling_combo, self.cmap_combo):
            crow.addWidget(w)
        form.addRow("colour", crow)
        frow = QHBoxLayout()
        frow.addWidget(QLabel("min"))
        frow.addWidget(self.vmin)
        frow.addWidget(QLabel("max"))
        frow.addWidget(self.vmax)
        form.addRow("fixed N·α range", frow)
        for w in (self.color_by, self.scaling_combo, self.cmap_combo):
            w.currentTextChanged.connect(lambda *_: self.update_colors())
        for box in (self.vmin, self.vmax):
            box.valueChanged.connect(lambda *_: self.update_colors())
        layout.addLayout(form)

        self.canvas = MoleculeCanvas()
        self.canvas.native.setMinimumSize(260, 260)
        self.canvas.canvas.events.mouse_move.connect(self._on_mouse_move)
        self.canvas.canvas.events.mouse_press.connect(self._on_mouse_press)
        self.canvas.canvas.events.mouse_release.connect(self._on_mouse_release)
        layout.addWidget(self.canvas.native, 3)
        self.colorbar = ColorBar()
        layout.addWidget(self.colorbar)
        self.info = QLabel("load a structure (example or file)")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.info)

        trow = QHBoxLayout()
        self.play_button = QPushButton("▶")
        self.play_button.setCheckable(True)
        self.play_button.setFixedWidth(36)
        self.play_button.toggled.connect(self._toggle_play)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.valueChanged.connect(self.set_frame)
        self.frame_label = QLabel("frame 0/0")
        trow.addWidget(self.play_button)
        trow.addWidget(self.slider, 1)
        trow.addWidget(self.frame_label)
        layout.addLayout(trow)
        self._timer = QTimer(self)
        self._timer.setInterval(250)
        self._timer.timeout.connect(self._advance)
        self.plot = PlotCanvas(n=1, height=1.6)
        self.plot.setMinimumHeight(120)
        self._frame_line = None
        layout.addWidget(self.plot, 1)

        brow = QHBoxLayout()
        self.send_button = QPushButton("Send to viewer")
        self.send_button.clicked.connect(lambda: self._guard(self.send_to_viewer))
        self.shot_button = QPushButton("Screenshot…")
        self.shot_button.clicked.connect(lambda: self._save_dialog("Screenshot", "PNG (*.png)", self.save_screenshot))
        self.extxyz_button = QPushButton("Export extxyz…")
        self.extxyz_button.clicked.connect(
            lambda: self._save_dialog("extxyz with ga_score", "extxyz (*.extxyz *.xyz)", self.export_extxyz))
        for b in (self.send_button, self.shot_button, self.extxyz_button):
            brow.addWidget(b)
        layout.addLayout(brow)
        self.status = QLabel("ready")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self._model_changed(self.model_combo.currentText())
        self._update_buttons()

    def _model_changed(self, text: str) -> None:
        self.model_path.setEnabled(text == MODEL_FILE)
        if text in DEFAULT_TARGETS and not self.results:
            self.property_combo.clear()
            self.property_combo.addItem(DEFAULT_TARGETS[text])

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SCANN checkpoint", "", "Checkpoints (*.pt)")
        if path:
            self.model_path.setText(path)
            self.model_combo.setCurrentText(MODEL_FILE)

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Molecule or trajectory", "",
                                              "Structures (*.xyz *.extxyz *.traj *.pdb *.cif *.db *.mol *.sdf *.vasp *);;All (*)")
        if path:
            self.load(path)

    def _save_dialog(self, title: str, pattern: str, action) -> None:
        path, _ = QFileDialog.getSaveFileName(self, title, "", pattern)
        if path:
            self._guard(action, path)

    def _guard(self, fn, *args):
        from napari.utils.notifications import show_error

        try:
            return fn(*args)
        except CXDIError as exc:
            show_error(str(exc))
        except OSError as exc:
            show_error(f"{type(exc).__name__}: {exc}")
        return None

    def _update_buttons(self) -> None:
        has = bool(self.frames)
        busy = self.running
        self.predict_button.setEnabled(has and not busy)
        self.send_button.setEnabled(has)
        self.shot_button.setEnabled(has)
        self.extxyz_button.setEnabled(self.results is not None)
        multi = len(self.frames) > 1
        self.slider.setEnabled(multi)
        self.play_button.setEnabled(multi)

    # -- loading ----------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._worker is not None or self._load_worker is not None

    def load(self, source, predict: bool = True, name: str | None = None):
        """Load ase Atoms, a list of frames, an example name or a file (read in a worker); then predict.
        Returns the worker reading the file (None otherwise)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error

        if isinstance(source, (str, os.PathLike)) and str(source) not in mol.EXAMPLES:
            path = str(source)
            self.status.setText(f"reading {Path(path).name} …")
            self._generation += 1
            gen = self._generation
            worker = create_worker(mol.load_frames, path, _start_thread=False, _connect={
                "returned": lambda frames: gen == self._generation and self.set_frames(
                    frames, name or Path(path).stem, path, predict),
                "errored": self._on_error, "finished": self._load_finished})
            self._load_worker = worker
            self._update_buttons()
            worker.start()
            return worker
        try:
            frames = mol.load_frames(source)
        except CXDIError as exc:
            show_error(str(exc))
            return None
        label = name or (str(source) if isinstance(source, str) else frames[0].get_chemical_formula())
        if isinstance(source, str):
            self.example_combo.setCurrentText(source)
        self.set_frames(frames, label, None, predict)
        return None

    def _load_finished(self) -> None:
        self._load_worker = None
        self._update_buttons()

    def set_frames(self, frames: list, name: str, path: str | None = None, predict: bool = True) -> None:
        """Show new frames (main thread); forget old predictions; optionally start a prediction."""
        self._generation += 1
        self.frames = list(frames)
        self.results = None
        self.name, self.source_path = name, path
        self.selected = None
        self.frame = 0
        self.slider.blockSignals(True)
        self.slider.setRange(0, len(self.frames) - 1)
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self._show_frame(reset=True)
        self._plot_property()
        self.status.setText(f"{name}: {len(self.frames)} frame(s), {len(self.frames[0])} atoms")
        self._update_buttons()
        if predict:
            self.predict()

    # -- prediction -------------------------------------------------------------------------------
    def _model_source(self) -> str:
        text = self.model_combo.currentText()
        if text != MODEL_FILE:
            return text
        path = self.model_path.text().strip()
        if not path:
            raise ConfigError("give a SCANN checkpoint file (or choose a shipped model)")
        if not Path(path).is_file():
            raise ConfigError(f"checkpoint file not found: {path}")
        return path

    def predict(self):
        """Predict the property and GA scores of all frames in a thread worker; returns it (None if refused)."""
        from napari.qt.threading import create_worker
        from napari.utils.notifications import show_error, show_warning

        if self._worker is not None:
            show_warning("a prediction is already running")
            return None
        if not self.frames:
            show_error("load a structure first (an example or a file)")
            return None
        try:
            source = self._model_source()
        except CXDIError as exc:
            show_error(str(exc))
            return None
        model = self._predictors.get(source, source)
        gen = self._generation
        worker = create_worker(mol.iter_predict, model, list(self.frames), _start_thread=False, _connect={
            "yielded": self._on_progress, "returned": lambda out: self._on_predicted(out, source, gen),
            "errored": self._on_error, "finished": self._on_finished})
        self._worker = worker
        self.status.setText(f"predicting with {Path(source).name if source not in DEFAULT_TARGETS else source} …")
        self._update_buttons()
        worker.start()
        return worker

    def _on_progress(self, event: dict) -> None:
        self.status.setText(f"predicting: {event['done']}/{event['total']} frames")

    def _on_predicted(self, out, source: str, generation: int) -> None:
        predictor, results = out
        self._predictors[source] = predictor
        if generation != self._generation or self._closed:
            return  # the structure changed while predicting
        self.predictor, self.results, self.model_name = predictor, results, source
        current = self.property_combo.currentText()
        self.property_combo.blockSignals(True)
        self.property_combo.clear()
        self.property_combo.addItems(predictor.target_names)
        if current in predictor.target_names:
            self.property_combo.setCurrentText(current)
        self.property_combo.blockSignals(False)
        self.color_by.setCurrentText(COLOR_GA)
        self._show_frame()
        self._plot_property()
        self._update_buttons()
        warning = mol.domain_summary(results)
        if warning:
            from napari.utils.notifications import show_warning

            show_warning(warning)

    def _on_error(self, exc: Exception) -> None:
        from napari.utils.notifications import show_error

        msg = str(exc) if isinstance(exc, CXDIError) else f"{type(exc).__name__}: {exc}"
        show_error(msg)
        self.status.setText(f"error: {msg}")

    def _on_finished(self) -> None:
        self._worker = None
        self._update_buttons()

    # -- frames and colours -------------------------------------------------------------------------
    def set_frame(self, i: int) -> None:
        """Show frame ``i`` (GA colouring follows)."""
        if not self.frames:
            return
        self.frame = int(np.clip(i, 0, len(self.frames) - 1))
        if self.slider.value() != self.frame:
            self.slider.blockSignals(True)
            self.slider.setValue(self.frame)
            self.slider.blockSignals(False)
        self._show_frame()
        self._mark_frame()

    def _show_frame(self, reset: bool = False) -> None:
        atoms = self.frames[self.frame]
        self.canvas.set_structure(atoms.numbers, atoms.positions, colors=self.atom_colors(), reset=reset)
        self.frame_label.setText(f"frame {self.frame + 1}/{len(self.frames)}")
        self._update_colorbar()
        if self.selected is not None and self.selected < len(atoms):
            self.select_atom(self.selected)
        self._describe_frame()

    def _describe_frame(self) -> None:
        res = self.current_result
        if res is None:
            return
        prop = self.property_combo.currentText() or next(iter(res.properties))
        if prop in res.properties:
            self.status.setText(f"{self.name} frame {self.frame + 1}: predicted {prop} = "
                                f"{mol.format_property(res, prop)} ({self.model_name})")
            reliable = getattr(res, "reliable", True)
            self.status.setStyleSheet("" if reliable else "color: gray")  # greyed: outside the domain
            self.status.setToolTip("" if reliable else res.domain.message())

    @property
    def current_result(self):
        return self.results[self.frame] if self.results else None

    def color_scale(self) -> mol.ColorScale | None:
        """Values and limits of the GA colouring of the current frame (None when colouring by element)."""
        res = self.current_result
        if res is None or self.color_by.currentText() != COLOR_GA:
            return None
        return mol.scale_scores(res.ga_scores, self.scaling_combo.currentText(),
                                [r.ga_scores for r in self.results], (self.vmin.value(), self.vmax.value()))

    def atom_colors(self) -> np.ndarray:
        """RGBA per atom of the current frame: GA colours after a prediction, element colours before."""
        atoms = self.frames[self.frame]
        try:
            scale = self.color_scale()
        except CXDIError:
            scale = None
        if scale is None:
            return mol.element_colors(atoms.numbers)
        return mol.map_colors(scale.values, scale.limits, self.cmap_combo.currentText())

    def update_colors(self) -> None:
        if not self.frames:
            return
        self.canvas.set_colors(self.atom_colors())
        self._update_colorbar()

    def _update_colorbar(self) -> None:
        try:
            scale = self.color_scale()
        except CXDIError as exc:
            self.status.setText(str(exc))
            scale = None
        if scale is None:
            self.colorbar.show_scale(None)
        else:
            self.colorbar.show_scale(self.cmap_combo.currentText(), scale.limits, scale.label)

    def _toggle_play(self, on: bool) -> None:
        self.play_button.setText("⏸" if on else "▶")
        (self._timer.start if on else self._timer.stop)()

    def _advance(self) -> None:
        if len(self.frames) > 1:
            self.set_frame((self.frame + 1) % len(self.frames))

    def _plot_property(self) -> None:
        ax = self.plot.clear(0, "", "frame", "")
        self._frame_line = None
        if self.results:
            prop = self.property_combo.currentText()
            if prop not in self.results[0].properties:
                prop = next(iter(self.results[0].properties))
            y = [r.properties[prop] for r in self.results]
            ax.plot(np.arange(1, len(y) + 1), y, "o-", color="#4fc3f7", ms=3, lw=1)
            ax.set_ylabel(f"{prop} ({self.results[0].units.get(prop, '')})", fontsize=7)
            self._frame_line = ax.axvline(self.frame + 1, color="#ffb74d", lw=1)
        self.plot.draw_idle()

    def _mark_frame(self) -> None:
        if self._frame_line is not None:
            self._frame_line.set_xdata([self.frame + 1, self.frame + 1])
            self.plot.draw_idle()

    # -- picking ----------------------------------------------------------------------------------
    def pick(self, xy) -> int | None:
        """Atom under canvas pixel ``xy``; shows its description."""
        i = self.canvas.pick(xy)
        if i is not None:
            self.info.setText(mol.atom_info(self.frames[self.frame], i, self.current_result))
        return i

    def select_atom(self, i: int | None) -> None:
        """Highlight atom ``i`` and its Voronoi neighbours and describe it (None clears)."""
        self.selected = i
        if i is None:
            self.canvas.select(None)
            return
        res = self.current_result
        self.canvas.select(i, mol.neighbours_of(res, i) if res is not None else ())
        self.info.setText(mol.atom_info(self.frames[self.frame], i, res))

    def _on_mouse_move(self, event) -> None:
        if self.frames and not event.is_dragging:
            self.pick(event.pos[:2])

    def _on_mouse_press(self, event) -> None:
        self._press_xy = np.asarray(event.pos[:2], float)

    def _on_mouse_release(self, event) -> None:
        if self._press_xy is None or not self.frames:
            return
        if np.linalg.norm(np.asarray(event.pos[:2], float) - self._press_xy) < 4:  # a click, not a drag
            self.select_atom(self.canvas.pick(event.pos[:2]))
        self._press_xy = None

    # -- outputs ----------------------------------------------------------------------------------
    def send_to_viewer(self) -> list:
        """Add atoms as a 3D Points layer (GA scores as features) and bonds as a Vectors layer.
        Trajectories become 4D layers (frame, x, y, z)."""
        import pandas as pd
        from napari.utils.colormaps import Colormap

        if self.viewer is None:
            raise ConfigError("this widget has no napari viewer")
        if not self.frames:
            raise ConfigError("load a structure first")
        multi = len(self.frames) > 1
        pts, vecs, feats = [], [], []
        for f, atoms in enumerate(self.frames):
            p = atoms.positions
            lead = np.full((len(p), 1), f, float)
            pts.append(np.hstack([lead, p]) if multi else p)
            bonds = mol.detect_bonds(atoms.numbers, p)
            start, d = p[bonds[:, 0]], p[bonds[:, 1]] - p[bonds[:, 0]]
            if multi:
                start = np.hstack([np.full((len(bonds), 1), f, float), start])
                d = np.hstack([np.zeros((len(bonds), 1)), d])
            vecs.append(np.stack([start, d], axis=1))
            feat = {"frame": np.full(len(p), f), "atom": np.arange(len(p)),
                    "element": atoms.get_chemical_symbols(), "size": 2 * mol.atom_radii(atoms.numbers)}
            if self.results:
                ga = np.asarray(self.results[f].ga_scores, float)
                feat["ga_score"] = ga
                feat["ga_score_relative"] = ga * len(ga)
            feats.append(pd.DataFrame(feat))
        features = pd.concat(feats, ignore_index=True)
        kwargs: dict = {"name": f"{self.name} atoms", "features": features, "size": features["size"].to_numpy(),
                        "border_width": 0, "shading": "spherical"}
        if self.results:
            scale = mol.scale_scores(self.results[self.frame].ga_scores, mol.SCALINGS[0],
                                     [r.ga_scores for r in self.results])
            cmap = self.cmap_combo.currentText()
            kwargs.update(face_color="ga_score_relative",
                          face_colormap=Colormap(mol.colormap_samples(cmap), name=f"cxdi_{cmap}"),
                          face_contrast_limits=scale.limits)
        else:
            kwargs["face_color"] = np.concatenate([mol.element_colors(a.numbers) for a in self.frames])
        for layer_name in (kwargs["name"], f"{self.name} bonds"):
            if layer_name in self.viewer.layers:
                self.viewer.layers.remove(layer_name)
        points = self.viewer.add_points(np.concatenate(pts), **kwargs)
        vectors = self.viewer.add_vectors(np.concatenate(vecs), name=f"{self.name} bonds", edge_width=0.15,
                                          edge_color="lightgray", vector_style="line")
        self.viewer.dims.ndisplay = 3
        return [points, vectors]

    def save_screenshot(self, path: str | os.PathLike) -> Path:
        """PNG of the 3D view."""
        from matplotlib.image import imsave

        path = Path(path)
        if path.suffix.lower() != ".png":
            path = path.with_suffix(".png")
        imsave(path, self.canvas.render())
        return path

    def export_extxyz(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """All frames with a ``ga_score`` column and the predicted properties (needs a prediction)."""
        from ..scann.predict import export_extxyz

        if not self.results:
            raise ConfigError("run a prediction first: the extxyz export carries GA scores")
        return export_extxyz(self.frames, self.results, path, overwrite=overwrite, source=self.source_path,
                             model=self.model_name)

    # -- dock behaviour and cleanup -------------------------------------------------------------------
    def showEvent(self, event) -> None:  # noqa: N802 (Qt)
        super().showEvent(event)
        dock = self.parent()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parent()
        if dock is not None and not getattr(self, "_pinned", False):
            # an embedded vispy canvas can break when its dock floats: keep the dock docked
            dock.setFeatures(dock.features() & ~QDockWidget.DockWidgetFeature.DockWidgetFloatable)
            dock.topLevelChanged.connect(lambda floating, d=dock: floating and d.setFloating(False))
            self._pinned = True

    def cleanup(self) -> None:
        """Stop the player and workers and close the vispy canvas."""
        if self._closed:
            return
        self._closed = True
        self._timer.stop()
        for worker in (self._worker, self._load_worker):
            if worker is not None:
                try:
                    worker.quit()
                except RuntimeError:
                    pass
        self.canvas.close()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        self.cleanup()
        super().closeEvent(event)


def mol_pretrained() -> list[str]:
    from ..scann.predict import PRETRAINED

    return list(PRETRAINED)


def show_molecule(viewer, source, model: str = "qm9-homo", scaling: str | None = None,
                  colormap: str | None = None) -> MoleculeWidget:
    """Dock a :class:`MoleculeWidget` in ``viewer``, load ``source`` (a file, ase Atoms, a list of
    frames or an example name) and colour it by the GA scores of ``model`` (a shipped name or a
    checkpoint path). Prediction runs in the background; returns the widget."""
    widget = MoleculeWidget(viewer)
    if model in DEFAULT_TARGETS:
        widget.model_combo.setCurrentText(model)
    else:
        widget.model_combo.setCurrentText(MODEL_FILE)
        widget.model_path.setText(str(model))
    if scaling:
        if scaling not in mol.SCALINGS:
            raise ConfigError(f"unknown GA scaling {scaling!r}; choose one of {', '.join(mol.SCALINGS)}")
        widget.scaling_combo.setCurrentText(scaling)
    if colormap:
        if colormap not in mol.COLORMAPS:
            raise ConfigError(f"unknown colormap {colormap!r}; choose one of {', '.join(mol.COLORMAPS)}")
        widget.cmap_combo.setCurrentText(colormap)
    viewer.window.add_dock_widget(widget, name="SCANN molecule viewer", area="right")
    widget.load(source, predict=True)
    return widget
