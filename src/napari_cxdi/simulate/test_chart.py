"""A tantalum test chart translated through the beam (thesis §3.4, Table B.1).

The chart is an analytic pattern (signed distance functions) of lines and circular arcs with
100 nm and 200 nm features, rendered anti-aliased at each frame's exact sub-pixel offset,
translated at ``velocity_nm_s`` (seed: 340 nm/s horizontal, 7 ms exposures, 3e7 photons/s).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..physics.geometry import TA_CHART, Geometry
from ..physics.materials import TANTALUM_5KEV, transmission
from ..physics.probe import TA_CHART_MODE_SHARES, TA_CHART_OPTICS, FZPOptics
from .movie import SimulatedMovie, diffract, photons_per_frame, setup_optics


@dataclass
class TestChartConfig:
    """Settings of the moving test chart. Lengths in nm, times in s."""

    __test__ = False  # not a pytest class

    n_frames: int = 64
    size: int = 128
    velocity_nm_s: tuple[float, float] = (0.0, 340.0)  # (vy, vx)
    exposure_s: float = 0.007
    flux_photons_s: float = 3e7
    thickness_nm: float = 500.0
    feature_widths_nm: tuple[float, float] = (100.0, 200.0)
    noise: bool = True
    seed: int | None = 0
    probe_side_um: float | None = None
    probe_fill: float = 0.5
    match_fluence: bool = False  # scale the flux with a shrunk probe's area (the seed's photons per um^2)
    mode_shares: tuple[float, ...] = TA_CHART_MODE_SHARES
    geometry: Geometry = field(default_factory=lambda: TA_CHART)
    optics: FZPOptics = field(default_factory=lambda: TA_CHART_OPTICS)


def chart_sdf(y: np.ndarray, x: np.ndarray, widths=(100.0, 200.0), period_nm: float = 2400.0) -> np.ndarray:
    """Signed distance (nm, negative inside) to the chart's features at chart coordinates (y, x).

    One tile of ``period_nm`` repeats along x: vertical and horizontal line pairs of each width,
    and two concentric arcs (quarter-annuli) of each width.
    """
    w1, w2 = widths
    xt = np.mod(x, period_nm) - period_nm / 2  # tile-local coordinates
    d = np.full(np.broadcast(y, x).shape, np.inf)

    def box(cy, cx, hh, hw):
        qy, qx = np.abs(y - cy) - hh, np.abs(xt - cx) - hw
        return np.hypot(np.clip(qy, 0, None), np.clip(qx, 0, None)) + np.minimum(np.maximum(qy, qx), 0)

    def arc(cy, cx, radius, width, a0, a1):
        ry, rx = y - cy, xt - cx
        ang = np.arctan2(ry, rx)
        ring = np.abs(np.hypot(ry, rx) - radius) - width / 2
        inside = (ang >= a0) & (ang <= a1)
        ends = [np.hypot(ry - radius * np.sin(a), rx - radius * np.cos(a)) - width / 2 for a in (a0, a1)]
        return np.where(inside, ring, np.minimum(*ends))

    for k, w in enumerate((w1, w2)):
        off = -600 + 1000 * k
        d = np.minimum(d, box(-700, off - w, 500, w / 2))  # vertical line pair, gap = width
        d = np.minimum(d, box(-700, off + w, 500, w / 2))
        d = np.minimum(d, box(250 - 2 * w, off, w / 2, 350))  # horizontal line pair
        d = np.minimum(d, box(250 + 2 * w, off, w / 2, 350))
        d = np.minimum(d, arc(1150, -700 + 1200 * k, 450, w, -np.pi, -np.pi / 3))
        d = np.minimum(d, arc(1150, -700 + 1200 * k, 450 + 3 * w, w, -np.pi, -np.pi / 3))
    return d


def simulate_test_chart(cfg: TestChartConfig | None = None, **overrides) -> SimulatedMovie:
    """Simulate the moving Ta test chart. Keyword overrides update ``cfg`` fields."""
    cfg = cfg or TestChartConfig()
    if overrides:
        cfg = replace(cfg, **overrides)
    if cfg.n_frames < 1 or cfg.exposure_s <= 0 or cfg.thickness_nm <= 0:
        raise ConfigError("n_frames >= 1, exposure_s > 0 and thickness_nm > 0 are required")
    geometry, probe, probe_side = setup_optics(cfg)
    dx = geometry.pixel_size_nm
    coords = (np.arange(cfg.size) - cfg.size / 2 + 0.5) * dx
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    velocity = np.asarray(cfg.velocity_nm_s, float)
    objects = np.empty((cfg.n_frames, cfg.size, cfg.size), np.complex64)
    rows = []
    for t in range(cfg.n_frames):
        shift = velocity * t * cfg.exposure_s  # the chart moves by +shift: sample it at r - shift
        fill = np.clip(0.5 - chart_sdf(yy - shift[0], xx - shift[1], cfg.feature_widths_nm) / dx, 0, 1)
        objects[t] = transmission(fill * cfg.thickness_nm, TANTALUM_5KEV, geometry.wavelength_m)
        rows.append((t, shift[0] / dx, shift[1] / dx, shift[0], shift[1]))
    expected, counts = diffract(objects, probe, cfg.seed, cfg.noise)
    metadata = {
        "sample": "Ta test chart (simulated)",
        "pixel_size_nm": dx,
        "exposure_s": cfg.exposure_s,
        "frame_interval_s": cfg.exposure_s,
        "energy_kev": geometry.energy_kev,
        "distance_m": geometry.distance_m,
        "detector_pixel_um": geometry.detector_pixel_um,
        "flux_photons_s": cfg.flux_photons_s,
        "photons_per_frame": photons_per_frame(cfg, probe_side),
        "velocity_nm_s": list(velocity),
        "probe_side_um": probe_side,
        "config": asdict(cfg),
    }
    offsets = pd.DataFrame(rows, columns=["frame", "dy", "dx", "dy_nm", "dx_nm"])
    movie = SimulatedMovie(counts, expected, objects, probe, pd.DataFrame(columns=["frame", "particle", "y", "x", "y_nm", "x_nm", "diameter_nm"]), metadata)
    movie.metadata["chart_offsets"] = offsets.to_dict(orient="list")
    return movie
