"""The molecule dock's panels: each a small widget that edits or watches a
:class:`~napari_cxdi.sessions.MoleculeSession` (structure + model, colour, 3D view, playback, outputs)."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSlider, QVBoxLayout, QWidget,
)

from ... import molecules as mol
from ...sessions.molecules import COLOR_ELEMENT, COLOR_GA, DEFAULT_TARGETS, MoleculeSession
from ..plots import ColorBar, PlotCanvas
from .sections import CollapsibleSection

MODEL_FILE = "checkpoint file…"


def _row(*widgets, stretch_first: bool = False) -> QWidget:
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    for i, x in enumerate(widgets):
        lay.addWidget(x, 1 if (stretch_first and i == 0) else 0)
    return w


def pretrained_models() -> list[str]:
    from ...scann.predict import PRETRAINED

    return list(PRETRAINED)


class StructurePanel(CollapsibleSection):
    """Structure (example or file), model (shipped or checkpoint), property and Predict."""

    def __init__(self, session: MoleculeSession):
        super().__init__("Structure and model")
        self.session = session
        self.example_combo = QComboBox()
        self.example_combo.addItems(list(mol.EXAMPLES))
        self.load_button = QPushButton("Load")
        self.open_button = QPushButton("Open file…")
        self.addRow("structure", _row(self.example_combo, self.load_button, self.open_button, stretch_first=True))
        self.model_combo = QComboBox()
        self.model_combo.addItems([*pretrained_models(), MODEL_FILE])
        self.addRow("model", self.model_combo)
        self.model_path = QLineEdit()
        self.model_path.setPlaceholderText("SCANN checkpoint .pt")
        self.browse_button = QPushButton("…")
        self.browse_button.setMaximumWidth(30)
        self.model_row = _row(self.model_path, self.browse_button, stretch_first=True)
        self.addRow("checkpoint", self.model_row)
        self.property_combo = QComboBox()
        self.addRow("property", self.property_combo)
        self.predict_button = QPushButton("Predict")
        self.addRow(self.predict_button)
        self.model_combo.currentTextChanged.connect(self._model_changed)
        session.frames_changed.connect(self.refresh_properties)
        session.results_changed.connect(self.refresh_properties)
        self._model_changed(self.model_combo.currentText())

    def _model_changed(self, text: str) -> None:
        self.model_path.setEnabled(text == MODEL_FILE)
        self.set_row_visible(self.model_row, text == MODEL_FILE)
        if not self.session.results:
            self.refresh_properties()

    def refresh_properties(self) -> None:
        """The property list of the current predictions (or of the chosen model before any): never stale."""
        current = self.property_combo.currentText()
        names = self.session.property_names(self.model_combo.currentText())
        self.property_combo.blockSignals(True)
        self.property_combo.clear()
        self.property_combo.addItems(names)
        if current in names:
            self.property_combo.setCurrentText(current)
        self.property_combo.blockSignals(False)
        self.property_combo.currentTextChanged.emit(self.property_combo.currentText())


class ColourPanel(CollapsibleSection):
    """Colour by GA score or element, the GA scaling, colormap and fixed range (-> ColourSettings)."""

    def __init__(self, session: MoleculeSession):
        super().__init__("Colour", expanded=False)
        self.session = session
        self.color_by = QComboBox()
        self.color_by.addItems([COLOR_GA, COLOR_ELEMENT])
        self.scaling_combo = QComboBox()
        self.scaling_combo.addItems(list(mol.SCALINGS))
        self.cmap_combo = QComboBox()
        self.cmap_combo.addItems(list(mol.COLORMAPS))
        self.addRow("colour by", _row(self.color_by, self.cmap_combo))
        self.addRow("GA scaling", self.scaling_combo)
        self.vmin, self.vmax = QDoubleSpinBox(), QDoubleSpinBox()
        for box, value in ((self.vmin, 0.5), (self.vmax, 1.5)):
            box.setRange(-100.0, 100.0)
            box.setDecimals(3)
            box.setSingleStep(0.1)
            box.setValue(value)
        self.addRow("fixed N·α range", _row(QLabel("min"), self.vmin, QLabel("max"), self.vmax))
        for w in (self.color_by, self.scaling_combo, self.cmap_combo):
            w.currentTextChanged.connect(self._push)
        for box in (self.vmin, self.vmax):
            box.valueChanged.connect(self._push)

    def _push(self, *_) -> None:
        self.session.set_colours(color_by=self.color_by.currentText(), scaling=self.scaling_combo.currentText(),
                                 cmap=self.cmap_combo.currentText(), vmin=self.vmin.value(), vmax=self.vmax.value())


class PlaybackPanel(QWidget):
    """Play button, frame slider (range always 0..n-1, never negative), frame label and property plot."""

    def __init__(self, session: MoleculeSession):
        super().__init__()
        self.session = session
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.play_button = QPushButton("▶")
        self.play_button.setCheckable(True)
        self.play_button.setFixedWidth(36)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.frame_label = QLabel("frame 0/0")
        lay.addWidget(_row(self.play_button, self.slider, self.frame_label))
        self.plot = PlotCanvas(n=1, height=1.4, min_height=90)
        lay.addWidget(self.plot, 1)
        self.frame_line = None
        self.timer = QTimer(self)
        self.timer.setInterval(250)
        self.timer.timeout.connect(session.advance)
        self.play_button.toggled.connect(self._toggle)
        self.slider.valueChanged.connect(session.set_frame)
        session.frames_changed.connect(self._frames_changed)
        session.frame_changed.connect(self._frame_changed)

    def _toggle(self, on: bool) -> None:
        self.play_button.setText("⏸" if on else "▶")
        (self.timer.start if on else self.timer.stop)()

    def _frames_changed(self) -> None:
        lo, hi = self.session.slider_range
        self.slider.blockSignals(True)
        self.slider.setRange(lo, hi)
        self.slider.setValue(lo)
        self.slider.blockSignals(False)
        multi = self.session.n_frames > 1
        self.slider.setEnabled(multi)
        self.play_button.setEnabled(multi)
        if not multi:
            self.play_button.setChecked(False)

    def _frame_changed(self, i: int) -> None:
        if self.slider.value() != i:
            self.slider.blockSignals(True)
            self.slider.setValue(i)
            self.slider.blockSignals(False)
        self.frame_label.setText(f"frame {i + 1}/{self.session.n_frames}")
        if self.frame_line is not None:
            self.frame_line.set_xdata([i + 1, i + 1])
            self.plot.draw_idle()

    def plot_property(self, prop: str) -> None:
        ax = self.plot.clear(0, "", "frame", "")
        self.frame_line = None
        series = self.session.property_series(prop)
        if series is not None:
            name, y, unit = series
            ax.plot(np.arange(1, len(y) + 1), y, "o-", color="#4fc3f7", ms=3, lw=1)
            ax.set_ylabel(f"{name} ({unit})" if unit else name, fontsize=7)
            self.frame_line = ax.axvline(self.session.frame + 1, color="#ffb74d", lw=1)
        self.plot.draw_idle()


class OutputPanel(QWidget):
    """Send to viewer, screenshot and extxyz export buttons."""

    def __init__(self):
        super().__init__()
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.send_button = QPushButton("Send to viewer")
        self.shot_button = QPushButton("Screenshot…")
        self.extxyz_button = QPushButton("Export extxyz…")
        for b in (self.send_button, self.shot_button, self.extxyz_button):
            lay.addWidget(b)


__all__ = ["StructurePanel", "ColourPanel", "PlaybackPanel", "OutputPanel", "ColorBar", "MODEL_FILE", "DEFAULT_TARGETS"]
