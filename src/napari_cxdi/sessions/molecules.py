"""Molecule session (Qt-free): frames, predictions, the shown frame, the picked atom, the colour scale
and the conversion of Å coordinates into the length unit of a napari viewer."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from psygnal import Signal

from .. import molecules as mol
from ..errors import ConfigError
from ._base import RunSession

COLOR_GA = "GA score"
COLOR_ELEMENT = "element"
DEFAULT_TARGETS = {"qm9-homo": "homo", "qm9-lumo": "lumo"}
ANGSTROM_PER = {"angstrom": 1.0, "nanometer": 10.0, "micrometer": 1e4, "picometer": 0.01}


@dataclass(frozen=True)
class ColourSettings:
    color_by: str = COLOR_GA
    scaling: str = mol.SCALINGS[0]
    cmap: str = "viridis"
    vmin: float = 0.5
    vmax: float = 1.5

    def with_(self, **changes: Any) -> "ColourSettings":
        return replace(self, **changes)

    def validate(self) -> None:
        if self.color_by not in (COLOR_GA, COLOR_ELEMENT):
            raise ConfigError(f"colour by {COLOR_GA!r} or {COLOR_ELEMENT!r}")
        if self.scaling not in mol.SCALINGS:
            raise ConfigError(f"unknown GA scaling {self.scaling!r}; choose one of {', '.join(mol.SCALINGS)}")
        if self.cmap not in mol.COLORMAPS:
            raise ConfigError(f"unknown colormap {self.cmap!r}; choose one of {', '.join(mol.COLORMAPS)}")

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ColourSettings":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class MoleculeSession(RunSession):
    """Signals: ``frames_changed()``, ``results_changed()``, ``frame_changed(int)``, ``selection_changed(object)``,
    ``colours_changed()``."""

    frames_changed = Signal()
    results_changed = Signal()
    frame_changed = Signal(int)
    selection_changed = Signal(object)
    colours_changed = Signal()

    def __init__(self):
        super().__init__("molecules")
        self.frames: list = []
        self.results: list | None = None
        self.frame = 0
        self.name = ""
        self.source_path: str | None = None
        self.model_name: str | None = None
        self.predictor = None
        self.predictors: dict = {}
        self.selected: int | None = None
        self.colours = ColourSettings()
        self.generation = 0

    # -- structure ----------------------------------------------------------------------------------
    def set_frames(self, frames: list, name: str, path: str | None = None) -> None:
        if not frames:
            raise ConfigError(f"{name}: no structure in it")
        self.generation += 1
        self.frames, self.results, self.predictor, self.model_name = list(frames), None, None, None
        self.name, self.source_path = name, path
        self.selected, self.frame = None, 0
        self.frames_changed.emit()
        self.selection_changed.emit(None)
        self.frame_changed.emit(0)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def slider_range(self) -> tuple[int, int]:
        return (0, max(self.n_frames - 1, 0))

    def set_frame(self, i: int) -> int:
        if not self.frames:
            return 0
        i = int(np.clip(int(i), *self.slider_range))
        if i != self.frame:
            self.frame = i
            self.frame_changed.emit(i)
        return i

    def advance(self) -> None:
        if self.n_frames > 1:
            self.set_frame((self.frame + 1) % self.n_frames)

    # -- predictions ----------------------------------------------------------------------------------
    def accept(self, out, source: str, generation: int) -> bool:
        predictor, results = out
        self.predictors[source] = predictor
        if generation != self.generation:
            self.end()
            return False  # the structure changed while predicting
        self.predictor, self.results, self.model_name = predictor, list(results), source
        self.end()
        self.results_changed.emit()
        self.colours_changed.emit()
        return True

    @property
    def current_result(self):
        return self.results[self.frame] if self.results else None

    def property_names(self, model_choice: str | None = None) -> list[str]:
        if self.results:
            return list(self.results[0].properties)
        if self.predictor is not None:
            return list(self.predictor.target_names)
        return [DEFAULT_TARGETS[model_choice]] if model_choice in DEFAULT_TARGETS else []

    def property_series(self, prop: str) -> tuple[str, np.ndarray, str] | None:
        if not self.results:
            return None
        if prop not in self.results[0].properties:
            prop = next(iter(self.results[0].properties))
        y = np.array([r.properties[prop] for r in self.results], float)
        return prop, y, self.results[0].units.get(prop, "")

    # -- selection and colour ----------------------------------------------------------------------------
    def select(self, i: int | None) -> None:
        if i is not None and not 0 <= i < len(self.frames[self.frame]):
            i = None
        self.selected = i
        self.selection_changed.emit(i)

    def neighbours(self, i: int):
        res = self.current_result
        return mol.neighbours_of(res, i) if res is not None else ()

    def atom_info(self, i: int) -> str:
        return mol.atom_info(self.frames[self.frame], i, self.current_result)

    def set_colours(self, **changes: Any) -> None:
        new = self.colours.with_(**changes)
        new.validate()
        if new != self.colours:
            self.colours = new
            self.colours_changed.emit()

    def color_scale(self) -> mol.ColorScale | None:
        res = self.current_result
        if res is None or self.colours.color_by != COLOR_GA:
            return None
        c = self.colours
        return mol.scale_scores(res.ga_scores, c.scaling, [r.ga_scores for r in self.results], (c.vmin, c.vmax))

    def atom_colors(self) -> np.ndarray:
        atoms = self.frames[self.frame]
        try:
            scale = self.color_scale()
        except ConfigError:
            scale = None
        if scale is None:
            return mol.element_colors(atoms.numbers)
        return mol.map_colors(scale.values, scale.limits, self.colours.cmap)


def viewer_length_unit(units) -> str | None:
    """The length unit ('nanometer', ...) of a napari layer list's world units, if any."""
    for u in units or ():
        name = str(u)
        if name in ANGSTROM_PER:
            return name
    return None


def angstrom_factor(target_unit: str | None) -> float:
    """Multiply Å coordinates by this to express them in ``target_unit`` (1 when there is none)."""
    if target_unit is None:
        return 1.0
    if target_unit not in ANGSTROM_PER:
        raise ConfigError(f"cannot convert Å into {target_unit!r}")
    return 1.0 / ANGSTROM_PER[target_unit]
