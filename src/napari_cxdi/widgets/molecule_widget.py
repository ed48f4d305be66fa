"""Molecule dock widget: a vispy 3D view of molecules coloured by SCANN global-attention (GA) scores.

Panels (``widgets/_qt/molecule_panels.py``) over a Qt-free :class:`~napari_cxdi.sessions.MoleculeSession`
that holds frames, predictions, the shown frame, the picked atom and the colour scale. Files are read and
predictions run through the shared :class:`~napari_cxdi.widgets._worker.WorkerController`.

Console one-liner::

    from napari_cxdi.widgets.molecule_widget import show_molecule
    show_molecule(viewer, "traj.xyz", model="qm9-homo")
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QDockWidget, QFileDialog, QLabel

from .. import molecules as mol
from ..errors import ConfigError, CXDIError
from ..sessions import MoleculeSession, error_message
from ..sessions.molecules import COLOR_ELEMENT, COLOR_GA, DEFAULT_TARGETS, angstrom_factor, viewer_length_unit
from ._qt import ScrollingDock
from ._qt.molecule_panels import MODEL_FILE, ColourPanel, OutputPanel, PlaybackPanel, StructurePanel
from ._worker import WorkerController, notify_error
from .molecule_canvas import CAMERAS, MoleculeCanvas
from .plots import ColorBar

__all__ = ["MoleculeWidget", "show_molecule", "ColorBar", "MODEL_FILE", "COLOR_GA", "COLOR_ELEMENT", "DEFAULT_TARGETS"]


class MoleculeWidget(ScrollingDock):
    """Dock widget: structure (file / example) + model -> Predict (background) -> atoms coloured by GA."""

    def __init__(self, napari_viewer=None):
        super().__init__()
        self.viewer = napari_viewer
        self.session = MoleculeSession()
        self._press_xy = None
        self._closed = False
        self._pending_predict = False
        self._build()
        self.controller = WorkerController(self.session, self, controls=[self.predict_button, self.structure.load_button,
                                                                          self.structure.open_button],
                                           on_reset=lambda: None)
        s = self.session
        s.status_changed.connect(lambda text: self.status.setText(text))
        s.frames_changed.connect(self._on_frames)
        s.frame_changed.connect(lambda *_: self._show_frame())
        s.results_changed.connect(self._on_results)
        s.colours_changed.connect(self.update_colors)
        s.selection_changed.connect(self._on_selection)
        s.state_changed.connect(lambda *_: self._update_buttons())
        self._update_buttons()
        import threading

        threading.Thread(target=mol.warm_imports, daemon=True, name="cxdi-molecule-imports").start()

    # -- session passthrough (console and tests) -----------------------------------------------------------
    frames = property(lambda self: self.session.frames)
    results = property(lambda self: self.session.results)
    frame = property(lambda self: self.session.frame)
    name = property(lambda self: self.session.name)
    selected = property(lambda self: self.session.selected)
    source_path = property(lambda self: self.session.source_path)
    model_name = property(lambda self: self.session.model_name)
    predictor = property(lambda self: self.session.predictor)
    current_result = property(lambda self: self.session.current_result)
    _frame_line = property(lambda self: self.playback.frame_line)

    @property
    def running(self) -> bool:
        return self.controller.running or self._pending_predict

    def __getattr__(self, name):  # inputs live on the panels
        for panel in ("structure", "colour", "playback", "outputs"):
            p = self.__dict__.get(panel)
            if p is not None and name in p.__dict__:
                return p.__dict__[name]
        raise AttributeError(name)

    # -- layout ----------------------------------------------------------------------------------------------
    def _build(self) -> None:
        L = self.body_layout
        self.structure = StructurePanel(self.session)
        self.structure.load_button.clicked.connect(lambda: self.load(self.structure.example_combo.currentText()))
        self.structure.open_button.clicked.connect(self._open_dialog)
        self.structure.browse_button.clicked.connect(self._browse_model)
        self.structure.predict_button.clicked.connect(lambda: self.predict())
        self.structure.property_combo.currentTextChanged.connect(lambda *_: self._plot_property())
        L.addWidget(self.structure)
        self.colour = ColourPanel(self.session)
        from qtpy.QtWidgets import QComboBox

        self.camera_combo = QComboBox()
        self.camera_combo.addItems(list(CAMERAS))
        self.camera_combo.currentTextChanged.connect(lambda k: self.canvas.set_camera(k))
        self.colour.addRow("camera", self.camera_combo)
        L.addWidget(self.colour)
        self.canvas = MoleculeCanvas()
        self.canvas.native.setMinimumSize(220, 220)
        self.canvas.canvas.events.mouse_move.connect(self._on_mouse_move)
        self.canvas.canvas.events.mouse_press.connect(self._on_mouse_press)
        self.canvas.canvas.events.mouse_release.connect(self._on_mouse_release)
        L.addWidget(self.canvas.native, 3)
        self.colorbar = ColorBar()
        self.colorbar.follow(self.viewer)
        L.addWidget(self.colorbar)
        self.info = QLabel("load a structure (example or file)")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        L.addWidget(self.info)
        self.playback = PlaybackPanel(self.session)
        self.playback.plot.follow(self.viewer)
        L.addWidget(self.playback, 1)
        self.outputs = OutputPanel()
        self.outputs.send_button.clicked.connect(lambda: self._guard(self.send_to_viewer))
        self.outputs.shot_button.clicked.connect(lambda: self._save_dialog("Screenshot", "PNG (*.png)", self.save_screenshot))
        self.outputs.extxyz_button.clicked.connect(
            lambda: self._save_dialog("extxyz with ga_score", "extxyz (*.extxyz *.xyz)", self.export_extxyz))
        L.addWidget(self.outputs)
        self.status = QLabel("ready")
        self.status.setWordWrap(True)
        L.addWidget(self.status)

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
            self._guard(action, path, True)  # the dialog confirmed replacing an existing file

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except (CXDIError, OSError) as exc:
            notify_error(error_message(exc, "molecules"))
        return None

    def _update_buttons(self) -> None:
        has = bool(self.session.frames)
        busy = self.running
        self.predict_button.setEnabled(has and not busy)
        self.send_button.setEnabled(has)
        self.shot_button.setEnabled(has)
        self.extxyz_button.setEnabled(self.session.results is not None)

    # -- loading ---------------------------------------------------------------------------------------------
    def load(self, source, predict: bool = True, name: str | None = None):
        """Load ase Atoms, a list of frames, an example name or a file (read in a worker); then predict.
        Returns the worker reading the file (None otherwise)."""
        if isinstance(source, (str, os.PathLike)) and str(source) not in mol.EXAMPLES:
            path = str(source)
            self._pending_predict = False
            return self.controller.start(
                mol.load_frames, path, generator=False, label=f"reading {Path(path).name}",
                on_result=lambda frames: self.set_frames(frames, name or Path(path).stem, path, predict))
        try:
            frames = mol.load_frames(source)
        except CXDIError as exc:
            notify_error(error_message(exc, "molecules"))
            return None
        label = name or (str(source) if isinstance(source, str) else frames[0].get_chemical_formula())
        if isinstance(source, str):
            self.example_combo.setCurrentText(source)
        self.set_frames(frames, label, None, predict)
        return None

    def set_frames(self, frames: list, name: str, path: str | None = None, predict: bool = True) -> None:
        """Show new frames (main thread); forget old predictions, selection and atom info; optionally predict."""
        self.session.set_frames(frames, name, path)
        self.session.set_status(f"{name}: {len(frames)} frame(s), {len(frames[0])} atoms")
        if predict:
            if self.controller.running:  # called from the file reader's result: predict after it ends
                from qtpy.QtCore import QTimer

                self._pending_predict = True
                QTimer.singleShot(0, self._predict_pending)
            else:
                self.predict()

    def _predict_pending(self) -> None:
        from qtpy.QtCore import QTimer

        if self._closed:
            self._pending_predict = False
            return
        if self.controller.running:  # the reader's thread is still finishing
            QTimer.singleShot(20, self._predict_pending)
            return
        self._pending_predict = False
        self.predict()
        self._update_buttons()

    def _on_frames(self) -> None:
        self.info.setText("hover an atom to describe it; click to select it")
        self._show_frame(reset=True)
        self._plot_property()
        self._update_buttons()

    # -- prediction --------------------------------------------------------------------------------------------
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
        if not self.session.frames:
            notify_error("molecules: load a structure first (an example or a file)")
            return None
        try:
            source = self._model_source()
        except CXDIError as exc:
            notify_error(error_message(exc, "molecules: prediction"))
            return None
        model = self.session.predictors.get(source, source)
        gen = self.session.generation
        label = f"predicting with {Path(source).name if source not in DEFAULT_TARGETS else source}"
        return self.controller.start(mol.iter_predict, model, list(self.session.frames), label=label,
                                     on_event=self._on_progress, on_result=lambda out: self._on_predicted(out, source, gen))

    def _on_progress(self, event: dict) -> None:
        self.session.set_status(f"predicting: {event['done']}/{event['total']} frames")

    def _on_predicted(self, out, source: str, generation: int) -> None:
        if self._closed:
            return
        self.session.accept(out, source, generation)

    def _on_results(self) -> None:
        self.color_by.setCurrentText(COLOR_GA)
        self._show_frame()
        self._plot_property()
        self._update_buttons()
        warning = mol.domain_summary(self.session.results)  # outside the model's applicability domain
        if warning:
            from napari.utils.notifications import show_warning

            show_warning(warning)

    # -- frames and colours --------------------------------------------------------------------------------------
    def set_frame(self, i: int) -> None:
        """Show frame ``i`` (clamped to the frames; GA colouring follows)."""
        self.session.set_frame(i)

    def _show_frame(self, reset: bool = False) -> None:
        if not self.session.frames:
            return
        atoms = self.session.frames[self.session.frame]
        self.canvas.set_structure(atoms.numbers, atoms.positions, colors=self.atom_colors(), reset=reset)
        self.frame_label.setText(f"frame {self.session.frame + 1}/{self.session.n_frames}")
        self._update_colorbar()
        if self.session.selected is not None and self.session.selected < len(atoms):
            self.select_atom(self.session.selected)
        self._describe_frame()

    def _describe_frame(self) -> None:
        res = self.session.current_result
        if res is None:
            return
        prop = self.property_combo.currentText() or next(iter(res.properties))
        if prop in res.properties:
            self.session.set_status(f"{self.session.name} frame {self.session.frame + 1}: predicted {prop} = "
                                    f"{mol.format_property(res, prop)} ({self.session.model_name})")
            reliable = getattr(res, "reliable", True)
            self.status.setStyleSheet("" if reliable else "color: gray")  # greyed: outside the domain
            self.status.setToolTip("" if reliable else res.domain.message())

    def color_scale(self) -> mol.ColorScale | None:
        """Values and limits of the GA colouring of the current frame (None when colouring by element)."""
        return self.session.color_scale()

    def atom_colors(self) -> np.ndarray:
        """RGBA per atom of the current frame: GA colours after a prediction, element colours before."""
        return self.session.atom_colors()

    def update_colors(self) -> None:
        if not self.session.frames:
            return
        self.canvas.set_colors(self.atom_colors())
        self._update_colorbar()

    def _update_colorbar(self) -> None:
        try:
            scale = self.color_scale()
        except CXDIError as exc:
            self.session.set_status(str(exc))
            scale = None
        if scale is None:
            self.colorbar.show_scale(None)
        else:
            self.colorbar.show_scale(self.session.colours.cmap, scale.limits, scale.label, "dimensionless")

    def _plot_property(self) -> None:
        self.playback.plot_property(self.property_combo.currentText())

    # -- picking ---------------------------------------------------------------------------------------------------
    def pick(self, xy) -> int | None:
        """Atom under canvas pixel ``xy``; shows its description."""
        i = self.canvas.pick(xy)
        if i is not None:
            self.info.setText(self.session.atom_info(i))
        return i

    def select_atom(self, i: int | None) -> None:
        """Highlight atom ``i`` and its Voronoi neighbours and describe it (None clears)."""
        self.session.select(i)

    def _on_selection(self, i) -> None:
        if i is None:
            self.canvas.select(None)
            return
        self.canvas.select(i, self.session.neighbours(i))
        self.info.setText(self.session.atom_info(i))

    def _on_mouse_move(self, event) -> None:
        if self.session.frames and not event.is_dragging:
            self.pick(event.pos[:2])

    def _on_mouse_press(self, event) -> None:
        self._press_xy = np.asarray(event.pos[:2], float)

    def _on_mouse_release(self, event) -> None:
        if self._press_xy is None or not self.session.frames:
            return
        if np.linalg.norm(np.asarray(event.pos[:2], float) - self._press_xy) < 4:  # a click, not a drag
            self.select_atom(self.canvas.pick(event.pos[:2]))
        self._press_xy = None

    # -- outputs ------------------------------------------------------------------------------------------------------
    def send_to_viewer(self) -> list:
        """Add atoms as a 3D Points layer (GA scores as features) and bonds as a Vectors layer; trajectories become
        4D layers (frame, z, y, x). Coordinates (Å) are converted into the viewer's length unit when its layers
        have one (e.g. nm for a CXDI movie), and the camera is centred on the molecule so it is visible."""
        import pandas as pd
        from napari.utils.colormaps import Colormap

        s = self.session
        if self.viewer is None:
            raise ConfigError("this widget has no napari viewer")
        if not s.frames:
            raise ConfigError("load a structure first")
        own = {f"{s.name} atoms", f"{s.name} bonds"}
        others = [layer for layer in self.viewer.layers if layer.name not in own]
        unit = viewer_length_unit(self.viewer.layers.get_extent(others).units) if others else None
        factor = angstrom_factor(unit)
        multi = len(s.frames) > 1
        pts, vecs, feats = [], [], []
        for f, atoms in enumerate(s.frames):
            p = atoms.positions
            bonds = mol.detect_bonds(atoms.numbers, p)
            p = p * factor
            lead = np.full((len(p), 1), f, float)
            pts.append(np.hstack([lead, p]) if multi else p)
            start, d = p[bonds[:, 0]], p[bonds[:, 1]] - p[bonds[:, 0]]
            if multi:
                start = np.hstack([np.full((len(bonds), 1), f, float), start])
                d = np.hstack([np.zeros((len(bonds), 1)), d])
            vecs.append(np.stack([start, d], axis=1))
            feat = {"frame": np.full(len(p), f), "atom": np.arange(len(p)),
                    "element": atoms.get_chemical_symbols(), "size": 2 * mol.atom_radii(atoms.numbers) * factor}
            if s.results:
                ga = np.asarray(s.results[f].ga_scores, float)
                feat["ga_score"] = ga
                feat["ga_score_relative"] = ga * len(ga)
            feats.append(pd.DataFrame(feat))
        features = pd.concat(feats, ignore_index=True)
        units = None
        if unit is not None:
            units = (("pixel",) if multi else ()) + (unit,) * 3
        kwargs: dict = {"name": f"{s.name} atoms", "features": features, "size": features["size"].to_numpy(),
                        "border_width": 0, "shading": "spherical", "metadata": {"kind": "molecule",
                                                                              "length_unit": unit or "angstrom"}}
        if units:
            kwargs["units"] = units
        if s.results:
            scale = mol.scale_scores(s.results[s.frame].ga_scores, mol.SCALINGS[0], [r.ga_scores for r in s.results])
            cmap = s.colours.cmap
            kwargs.update(face_color="ga_score_relative",
                          face_colormap=Colormap(mol.colormap_samples(cmap), name=f"cxdi_{cmap}"),
                          face_contrast_limits=scale.limits)
        else:
            kwargs["face_color"] = np.concatenate([mol.element_colors(a.numbers) for a in s.frames])
        for layer_name in own:
            if layer_name in self.viewer.layers:
                self.viewer.layers.remove(layer_name)
        points = self.viewer.add_points(np.concatenate(pts), **kwargs)
        vkw = {"units": units} if units else {}
        vectors = self.viewer.add_vectors(np.concatenate(vecs), name=f"{s.name} bonds", edge_width=0.15 * factor,
                                          edge_color="lightgray", vector_style="line", **vkw)
        self.viewer.dims.ndisplay = 3
        if unit is not None:  # a molecule in a micrometre-wide movie scene: look at the molecule
            xyz = np.concatenate(pts)[:, -3:]
            scene = getattr(self.viewer, "scene", None)  # napari >= 0.9; older: viewer.camera
            camera = scene.camera if scene is not None and hasattr(scene, "camera") else self.viewer.camera
            camera.center = tuple(xyz.mean(0))
            extent = float(np.ptp(xyz, axis=0).max()) or 1.0
            try:
                canvas_px = min(self.viewer.window._qt_viewer.canvas.size)
            except Exception:  # a viewer without a window (headless scripts)
                canvas_px = 600
            camera.zoom = 0.6 * canvas_px / extent
        return [points, vectors]

    def save_screenshot(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """PNG of the 3D view (through the one write path)."""
        from matplotlib.image import imsave

        from ..io.safe_write import atomic_output

        path = Path(path)
        if path.suffix.lower() != ".png":
            path = path.with_suffix(".png")
        image = self.canvas.render()
        with atomic_output(path, overwrite=overwrite, protected=[self.session.source_path]) as tmp:
            imsave(tmp, image, format="png")
        return path

    def export_extxyz(self, path: str | os.PathLike, overwrite: bool = True) -> Path:
        """All frames with a ``ga_score`` column and the predicted properties (needs a prediction)."""
        from ..scann.predict import export_extxyz

        s = self.session
        if not s.results:
            raise ConfigError("run a prediction first: the extxyz export carries GA scores")
        return export_extxyz(s.frames, s.results, path, overwrite=overwrite, source=s.source_path, model=s.model_name)

    # -- dock behaviour and cleanup ------------------------------------------------------------------------------
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
        self.playback.timer.stop()
        self.controller.stop()
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
