"""Which kind of experiment a file holds: napari-cxdi does single-shot far-field CXDI (no Qt).

Two other kinds of coherent-imaging file look alike on disk (stacks of diffraction frames) and are
recognised here so that they are told, not silently reconstructed with the wrong physics:

* **Ptychography scans** — the sample is stepped across the beam and each frame has a scan position.
  Found from position/translation datasets that are not constant: NPZ keys ``position(s)``,
  ``translation(s)``, ``probe_positions``, ``scan_positions``; CXI ``entry_1/data_1/translation``,
  ``entry_1/sample_1/geometry_1/translation``, ``entry_1/instrument_1/detector_1/translation``;
  ptypy ``.ptyd`` ``chunks/*/positions``. napari-cxdi can still reconstruct each frame on its own (a
  movie with a fixed probe) but does not use the overlap between positions: a warning says so.
* **Near-field (Fresnel) data** — propagation from sample to detector is not a Fourier transform. The
  Fresnel number ``N_F = a^2 / (lambda z)`` of the illuminated size ``a`` decides: far field needs
  ``N_F << 1``. ``a`` is the probe footprint's equivalent diameter when a probe is known, else half the
  far-field field of view ``lambda z / p`` (the largest object that the oversampling 2 a far-field
  reconstruction needs allows), which gives ``N_F = lambda z / (4 p^2)``. With the probe's size
  ``N_F > 1`` is an error (:class:`ExperimentKindError`); with the field-of-view bound it is a warning,
  since a strongly oversampled far-field measurement can also reach it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputFileError

POSITION_KEYS = ("position", "positions", "translation", "translations", "probe_positions", "scan_positions",
                 "positions_m", "probe_positions_m")
CXI_TRANSLATION_PATHS = (
    "entry_1/data_1/translation",
    "entry_1/sample_1/geometry_1/translation",
    "entry_1/instrument_1/detector_1/translation",
)
HC_KEV_M = 12.398419843320026e-10


class ExperimentKindError(InputFileError):
    """The file holds a kind of experiment napari-cxdi does not reconstruct (e.g. near-field data)."""


class ExperimentKindWarning(UserWarning):
    """The file looks like another kind of experiment; napari-cxdi treats it as a single-shot movie."""


@dataclass
class ExperimentKind:
    """kind: ``"far-field CXDI"``, ``"ptychography scan"`` or ``"near-field"``; what was measured and why."""

    kind: str
    fresnel_number: float | None = None
    fresnel_size_m: float | None = None
    fresnel_size_source: str | None = None
    n_positions: int | None = None
    scan_extent_m: float | None = None
    message: str | None = None


def fresnel_number(energy_kev: float, distance_m: float, size_m: float) -> float:
    """``N_F = a^2 / (lambda z)``."""
    return size_m**2 / (HC_KEV_M / energy_kev * distance_m)


def _spread(positions: np.ndarray) -> tuple[int, float]:
    p = np.asarray(positions, np.float64)
    if p.ndim != 2 or p.size == 0:
        return 0, 0.0
    if p.shape[0] in (2, 3) and p.shape[1] > 3:  # PyNX stores (3, N)
        p = p.T
    p = p[:, : min(p.shape[1], 3)]
    return int(p.shape[0]), float(np.ptp(p, axis=0).max()) if len(p) else 0.0


def scan_positions(path: str | Path, dataset: str | None = None) -> tuple[str, np.ndarray] | None:
    """(where, positions) of a scan recorded in the file, or None. Reads only small position arrays."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                for key in z.keys():
                    if key.lower() in POSITION_KEYS and key != dataset:
                        return f"{path}[{key}]", np.asarray(z[key])
            return None
        if suffix in (".npy", ".tif", ".tiff"):
            return None
        with h5py.File(path, "r") as f:
            for name in CXI_TRANSLATION_PATHS:
                obj = f.get(name)
                if isinstance(obj, h5py.Dataset) and obj.ndim == 2:
                    return f"{path}:/{name}", obj[()]
            chunks = f.get("chunks")
            if isinstance(chunks, h5py.Group):
                parts = [c["positions"][()] for c in chunks.values() if isinstance(c, h5py.Group) and isinstance(c.get("positions"), h5py.Dataset)]
                if parts:
                    return f"{path}:/chunks/*/positions", np.concatenate(parts)
    except (OSError, ValueError, KeyError):
        return None
    return None


def classify(metadata: dict, frame_shape: tuple[int, ...], probe=None, positions=None, where: str = "") -> ExperimentKind:
    """Decide the experiment kind from geometry (and probe) and scan positions; see the module docstring."""
    kind = ExperimentKind("far-field CXDI")
    if positions is not None:
        src, pos = positions
        n, extent = _spread(pos)
        if n > 1 and extent > 0:
            kind.kind, kind.n_positions, kind.scan_extent_m = "ptychography scan", n, extent
            kind.message = (
                f"{where} is a ptychography scan ({n} scan positions in {src}, spread over {extent:.4g} in the file's "
                "units): napari-cxdi reconstructs single-shot CXDI movies, so each frame is treated as an independent "
                "snapshot under a fixed probe; the overlap between positions is not used. For a ptychographic "
                "reconstruction use PyNX, ptypy, pty-chi or cdtools (their probe can be read here with --probe)."
            )
    m = metadata
    if all(m.get(k) for k in ("energy_kev", "distance_m", "detector_pixel_um")):
        lam_z = HC_KEV_M / m["energy_kev"] * m["distance_m"]
        p = m["detector_pixel_um"] * 1e-6
        n_px = int(frame_shape[-1])
        dx = lam_z / (n_px * p)
        if probe is not None:
            from ..physics.probe import support_mask

            footprint = support_mask(np.asarray(probe), threshold=0.05, dilate_px=0)
            a, source = 2.0 * np.sqrt(footprint.sum() / np.pi) * dx, "the probe footprint's diameter"
        else:
            a, source = lam_z / (2 * p), "half the far-field field of view lambda z / p (no probe to measure)"
        nf = a * a / lam_z
        kind.fresnel_number, kind.fresnel_size_m, kind.fresnel_size_source = nf, a, source
        if nf > 1:
            kind.kind = "near-field"
            kind.message = (
                f"{where} looks like near-field data: Fresnel number N_F = a^2/(lambda z) = {nf:.3g} > 1 with "
                f"a = {a * 1e6:.3g} um ({source}), lambda z = {lam_z:.3g} m^2 (energy {m['energy_kev']:.4g} keV, "
                f"distance {m['distance_m']:.4g} m, detector pixel {m['detector_pixel_um']:.4g} um). napari-cxdi "
                "reconstructs far-field (Fraunhofer) single-shot CXDI only; near-field holography/ptychography needs a "
                "Fresnel propagator (e.g. cdtools, PyNX). If the file's energy, distance or pixel size are wrong, correct them."
            )
    return kind


def check_kind(movie, probe=None) -> ExperimentKind:
    """Classify ``movie`` (a :class:`Movie`), record it in its metadata, warn or raise as the module says."""
    where = str(movie.path) if movie.path else "the movie"
    positions = scan_positions(movie.path, movie.dataset) if movie.path else None
    probe = movie.probe if probe is None else probe
    kind = classify(movie.metadata, movie.shape, probe, positions, where)
    movie.metadata["experiment"] = kind.kind
    if kind.fresnel_number is not None:
        movie.metadata["fresnel_number"] = kind.fresnel_number
    if kind.n_positions:
        movie.metadata["scan_positions"] = kind.n_positions
    if kind.kind == "near-field" and probe is not None:
        raise ExperimentKindError(movie.path or "movie", kind.message.replace(f"{where} ", "", 1))
    if kind.message:
        movie.metadata["experiment_note"] = kind.message
        warnings.warn(kind.message, ExperimentKindWarning, stacklevel=3)
    return kind
