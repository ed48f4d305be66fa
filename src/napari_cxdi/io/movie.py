"""The in-memory description of a diffraction movie as read from a file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..physics.geometry import Geometry, wavelength_m


@dataclass
class Movie:
    """A diffraction movie.

    data: [T, H, W] counts, a NumPy array or a lazy dask array (chunked by frame).
    metadata: what the file says, in our units: ``energy_kev``, ``distance_m``,
    ``detector_pixel_um``, ``exposure_s``, ``pixel_size_nm`` (object plane) where known.
    probe: [K, H, W] complex if the file carries one.
    mask: :class:`~napari_cxdi.io.mask.DetectorMask` (static bad pixels, e.g. CXI ``detector_1/mask``, + invalid values).
    """

    data: Any
    path: Path | None = None
    dataset: str | None = None
    format: str = "array"
    metadata: dict[str, Any] = field(default_factory=dict)
    probe: np.ndarray | None = None
    mask: Any = None  # DetectorMask: static bad pixels + per-frame invalid-value rules (io.mask)
    beam_centre: Any = None  # BeamCentre recorded in the file (io.detector), or None
    prepared: bool = False  # True once masked/cropped/binned (io.detector.prepare_movie): NaN = unmeasured

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape)

    @property
    def n_frames(self) -> int:
        return int(self.data.shape[0])

    @property
    def is_lazy(self) -> bool:
        return isinstance(self.data, np.memmap) or not isinstance(self.data, np.ndarray)

    @property
    def pixel_size_nm(self) -> float | None:
        """Object-plane pixel size: given, or ``lambda z / (N p)`` from the geometry."""
        if self.metadata.get("pixel_size_nm"):
            return float(self.metadata["pixel_size_nm"])
        geometry = self.geometry
        return geometry.pixel_size_nm if geometry else None

    @property
    def geometry(self) -> Geometry | None:
        m = self.metadata
        if all(m.get(k) for k in ("energy_kev", "distance_m", "detector_pixel_um")):
            return Geometry(m["energy_kev"], m["distance_m"], m["detector_pixel_um"], int(self.data.shape[-1]))
        return None

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` as a float32 NumPy array (reads only those frames)."""
        block = self.data[start:stop]
        if hasattr(block, "compute"):
            block = block.compute()
        return np.asarray(block, dtype=np.float32)

    def frames_raw(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` in the file's own dtype (for invalid-value detection)."""
        block = self.data[start:stop]
        return np.asarray(block.compute() if hasattr(block, "compute") else block)

    def describe(self) -> dict[str, Any]:
        info = {
            "path": str(self.path) if self.path else None,
            "format": self.format,
            "dataset": self.dataset,
            "shape": list(self.shape),
            "dtype": str(self.data.dtype),
            "lazy": self.is_lazy,
            "probe_modes": None if self.probe is None else int(self.probe.shape[0]),
        }
        if self.mask is not None:
            info["masked_pixels"] = int(self.mask.n_bad)
        info.update({k: v for k, v in self.metadata.items() if not isinstance(v, (dict, list, np.ndarray))})
        if self.pixel_size_nm:
            info["pixel_size_nm"] = round(self.pixel_size_nm, 4)
        if self.metadata.get("energy_kev"):
            info["wavelength_A"] = round(wavelength_m(self.metadata["energy_kev"]) * 1e10, 5)
        return info
