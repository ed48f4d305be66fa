"""Gold nanoparticles in solution: Brownian motion plus drift, imaged by single-shot CXDI.

Seed setting (thesis Table B.2): 5 keV, 300 nm particles at area fraction 0.1, ~200 nm/s,
100 ms exposures, 3e6 photons/s, Poisson noise. Particles move in a periodic box larger than the
field of view; a particle that wraps around the box starts a new trajectory (new id), so every
trajectory is continuous.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..physics.geometry import AUNP_SIMULATION, Geometry
from ..physics.materials import GOLD_5KEV, WATER_5KEV, Material, transmission
from ..physics.probe import AUNP_MODE_SHARES, AUNP_OPTICS, FZPOptics
from .movie import SimulatedMovie, diffract, photons_per_frame, setup_optics


@dataclass
class AuNPConfig:
    """Settings of the AuNP simulation. Lengths in nm, times in s, flux in photons/s.

    ``size`` < 384 bins the seed's detector (same 27 nm pixels, smaller field of view); the probe
    triangle is then shrunk to ``probe_fill`` of the field of view unless ``probe_side_um`` is given,
    and ``match_fluence`` scales the flux with the probe's area so the dose per um^2 stays the seed's.
    """

    n_frames: int = 64
    size: int = 128
    diameter_nm: float = 300.0
    diameter_sd_nm: float = 0.0
    area_fraction: float = 0.1
    drift_nm_s: tuple[float, float] = (0.0, 200.0)  # (vy, vx)
    diffusion_nm2_s: float = 2000.0
    exposure_s: float = 0.1
    flux_photons_s: float = 3e6
    shape: str = "sphere"  # or "disk" (a cylinder of height = diameter)
    noise: bool = True
    seed: int | None = 0
    probe_side_um: float | None = None
    probe_fill: float = 0.5
    match_fluence: bool = False  # scale the flux with a shrunk probe's area (the seed's photons per um^2)
    mode_shares: tuple[float, ...] = AUNP_MODE_SHARES
    geometry: Geometry = field(default_factory=lambda: AUNP_SIMULATION)
    optics: FZPOptics = field(default_factory=lambda: AUNP_OPTICS)

    def validate(self) -> None:
        if self.n_frames < 1:
            raise ConfigError("n_frames must be at least 1")
        if not 0 < self.area_fraction < 0.6:
            raise ConfigError(f"area_fraction must be in (0, 0.6), got {self.area_fraction}")
        if self.diameter_nm <= 0:
            raise ConfigError("diameter_nm must be positive")
        if self.shape not in ("sphere", "disk"):
            raise ConfigError(f"shape must be 'sphere' or 'disk', got {self.shape!r}")
        if self.diffusion_nm2_s < 0 or self.exposure_s <= 0:
            raise ConfigError("diffusion must be >= 0 and exposure > 0")


def _projected_thickness(d2: np.ndarray, radius: float, shape: str, dx: float) -> np.ndarray:
    """Projected thickness (nm) at squared distances ``d2`` (nm^2) from a particle centre."""
    if shape == "sphere":
        return 2.0 * np.sqrt(np.clip(radius**2 - d2, 0.0, None))
    edge = np.clip(0.5 - (np.sqrt(d2) - radius) / dx, 0.0, 1.0)  # anti-aliased disk
    return 2.0 * radius * edge


def render_particles(
    n: int, dx: float, centres_nm: np.ndarray, diameters_nm: np.ndarray, shape: str
) -> np.ndarray:
    """Projected thickness map [n, n] (nm) of particles at ``centres_nm`` [P, 2] (y, x; origin at pixel (0, 0))."""
    thickness = np.zeros((n, n), np.float64)
    for (cy, cx), d in zip(centres_nm, diameters_nm):
        r = d / 2
        y0, y1 = int(np.floor((cy - r) / dx)) - 1, int(np.ceil((cy + r) / dx)) + 2
        x0, x1 = int(np.floor((cx - r) / dx)) - 1, int(np.ceil((cx + r) / dx)) + 2
        ys, xs = np.arange(max(y0, 0), min(y1, n)), np.arange(max(x0, 0), min(x1, n))
        if ys.size == 0 or xs.size == 0:
            continue
        d2 = (ys[:, None] * dx - cy) ** 2 + (xs[None, :] * dx - cx) ** 2
        thickness[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1] += _projected_thickness(d2, r, shape, dx)
    return thickness


def _place_without_overlap(rng, count, box, diameters, origin):
    placed = []
    for i in range(count):
        for _ in range(200):
            c = origin + rng.uniform(0, box, size=2)
            if all(np.hypot(*(c - p)) >= (diameters[i] + diameters[j]) / 2 for j, p in enumerate(placed)):
                break
        placed.append(c)
    return np.asarray(placed).reshape(-1, 2)


def particle_trajectories(cfg: AuNPConfig, dx: float, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Positions of every particle in every frame (Brownian + drift, periodic box, ids renewed on wrap)."""
    fov = n * dx
    margin = 2 * cfg.diameter_nm
    box = fov + 2 * margin
    mean_area = np.pi * (cfg.diameter_nm / 2) ** 2
    count = max(1, int(round(cfg.area_fraction * box**2 / mean_area)))
    diameters = np.clip(rng.normal(cfg.diameter_nm, cfg.diameter_sd_nm, count), 0.2 * cfg.diameter_nm, None)
    pos = _place_without_overlap(rng, count, box, diameters, origin=-margin)
    ids = np.arange(count)
    next_id = count
    drift = np.asarray(cfg.drift_nm_s, float) * cfg.exposure_s
    step_sd = np.sqrt(2 * cfg.diffusion_nm2_s * cfg.exposure_s)
    rows = []
    for t in range(cfg.n_frames):
        for pid, (y, x), d in zip(ids, pos, diameters):
            rows.append((t, pid, y / dx, x / dx, y, x, d))
        pos = pos + drift + rng.normal(0, step_sd, size=pos.shape)
        wrapped = np.any((pos < -margin) | (pos >= fov + margin), axis=1)
        pos = (pos + margin) % box - margin
        for i in np.flatnonzero(wrapped):
            ids[i] = next_id
            next_id += 1
    return pd.DataFrame(rows, columns=["frame", "particle", "y", "x", "y_nm", "x_nm", "diameter_nm"])


def simulate_aunp(cfg: AuNPConfig | None = None, **overrides) -> SimulatedMovie:
    """Simulate the seed's AuNP-in-solution movie. Keyword overrides update ``cfg`` fields."""
    cfg = cfg or AuNPConfig()
    if overrides:
        cfg = replace(cfg, **overrides)
    cfg.validate()
    geometry, probe, probe_side = setup_optics(cfg)
    dx = geometry.pixel_size_nm
    rng = np.random.default_rng(cfg.seed)
    tracks = particle_trajectories(cfg, dx, cfg.size, rng)
    contrast: Material = GOLD_5KEV.relative_to(WATER_5KEV)
    objects = np.empty((cfg.n_frames, cfg.size, cfg.size), np.complex64)
    for t, frame in tracks.groupby("frame"):
        thick = render_particles(cfg.size, dx, frame[["y_nm", "x_nm"]].to_numpy(), frame["diameter_nm"].to_numpy(), cfg.shape)
        objects[t] = transmission(thick, contrast, geometry.wavelength_m)
    expected, counts = diffract(objects, probe, cfg.seed, cfg.noise)
    inside = (tracks.y.between(0, cfg.size - 1)) & (tracks.x.between(0, cfg.size - 1))
    metadata = {
        "sample": "AuNP in solution (simulated)",
        "pixel_size_nm": dx,
        "exposure_s": cfg.exposure_s,
        "frame_interval_s": cfg.exposure_s,
        "energy_kev": geometry.energy_kev,
        "distance_m": geometry.distance_m,
        "detector_pixel_um": geometry.detector_pixel_um,
        "flux_photons_s": cfg.flux_photons_s,
        "photons_per_frame": photons_per_frame(cfg, probe_side),
        "probe_side_um": probe_side,
        "material": contrast.name,
        "config": asdict(cfg),
    }
    return SimulatedMovie(counts, expected, objects, probe, tracks[inside].reset_index(drop=True), metadata)
