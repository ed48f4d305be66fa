"""The simulated-movie record and the step shared by every simulator: objects -> counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch

from ..physics.forward import diffraction_intensity
from ..physics.geometry import Geometry
from ..physics.noise import poisson_counts
from ..physics.probe import ProbeSpec, synthesize_probe


@dataclass
class SimulatedMovie:
    """A simulated dynamic CXDI experiment with its ground truth.

    counts: [T, H, W] float32 detector counts (integers, Poisson) — the diffraction movie.
    expected: [T, H, W] float32 noise-free intensity (photons).
    objects: [T, H, W] complex64 true object transmission.
    probe: [K, H, W] complex64 in sqrt(photons).
    trajectories: one row per particle per frame (``frame, particle, y, x`` in pixels,
    ``y_nm, x_nm, diameter_nm``); empty for samples without particles.
    metadata: pixel_size_nm, exposure_s, energy_kev, distance_m, detector_pixel_um, flux, sample, config.
    """

    counts: np.ndarray
    expected: np.ndarray
    objects: np.ndarray
    probe: np.ndarray
    trajectories: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def pixel_size_nm(self) -> float:
        return float(self.metadata["pixel_size_nm"])

    @property
    def phase(self) -> np.ndarray:
        """True phase [T, H, W] in radians."""
        return np.angle(self.objects).astype(np.float32)

    @property
    def amplitude(self) -> np.ndarray:
        return np.abs(self.objects).astype(np.float32)


def setup_optics(cfg) -> tuple[Geometry, np.ndarray, float]:
    """Geometry (the seed's detector binned to ``cfg.size``), probe and probe side (um) of a simulation config.

    When the seed's probe would not fit the (binned) field of view, its triangle is shrunk to
    ``cfg.probe_fill`` of the field of view unless ``cfg.probe_side_um`` sets it.
    """
    geometry = cfg.geometry.binned_to(cfg.size) if cfg.size != cfg.geometry.n else cfg.geometry
    side = cfg.probe_side_um
    if side is None and cfg.optics.probe_side_um > 0.6 * geometry.field_of_view_um:
        side = cfg.probe_fill * geometry.field_of_view_um
    side = side or cfg.optics.probe_side_um
    spec = ProbeSpec(cfg.optics, tuple(cfg.mode_shares), photons_per_frame(cfg, side), side)
    return geometry, synthesize_probe(geometry, spec), side


def photons_per_frame(cfg, probe_side_um: float) -> float:
    """Photons on the sample per frame: ``flux x exposure``.

    With ``cfg.match_fluence`` the flux is the seed's flux through the seed's probe, scaled by the
    probe's area ``(side / seed side)^2``: a shrunk probe then gets the seed's photons per um^2, the
    dose that sets the noise of every reconstructed pixel. Without it, a small probe concentrates
    the seed's full flux and gives far cleaner data than the experiment (~35x the dose at 64 px).
    """
    photons = cfg.flux_photons_s * cfg.exposure_s
    if cfg.match_fluence:
        photons *= (probe_side_um / cfg.optics.probe_side_um) ** 2
    return photons


def diffract(
    objects: Iterator[np.ndarray] | np.ndarray,
    probe: np.ndarray,
    seed: int | None,
    noise: bool = True,
    batch: int = 16,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Expected intensities and Poisson counts [T, H, W] for objects [T, H, W] under ``probe`` [K, H, W]."""
    objects = np.asarray(objects)
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(int(seed) + 7919)
    p = torch.as_tensor(probe, dtype=torch.complex64, device=device)
    expected = np.empty(objects.shape, np.float32)
    for i in range(0, len(objects), batch):
        o = torch.as_tensor(objects[i : i + batch], dtype=torch.complex64, device=device)
        expected[i : i + batch] = diffraction_intensity(p, o).float().cpu().numpy()
    counts = poisson_counts(torch.from_numpy(expected), gen).numpy() if noise else expected.copy()
    return expected, counts.astype(np.float32)
