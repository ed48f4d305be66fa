"""The 2D n-disk model system of seed 001: random non-overlapping disks of fixed total area.

Lengths are in box units (one unit = one real-space pixel of the rasterised image). The box is
``box x box`` (2000 x 2000), rasterised on a ``(box + 1) x (box + 1)`` grid whose pixel centres are
the integer coordinates 0..box. Coordinates are ``(y, x)`` = (row, column).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

BOX = 2000
#: Total disk area of every system: that of two disks of radius 90 (= 16200 pi units^2).
TOTAL_AREA = 2 * np.pi * 90.0**2
N_MIN, N_MAX = 2, 20
CONTRASTS = ("amplitude", "phase", "mixed")
PROFILES = ("flat", "sphere")
#: polydispersity laws: ``radius`` (the paper's text: radii ~ N(mean, mean/3)) and ``area`` (the seed's public
#: code: area coefficients c ~ N(3, 1), c > 0, r_i = sqrt(A c_i / (pi sum c)); radius spread ~ mean/6)
POLY_LAWS = ("radius", "area")


@dataclass(frozen=True)
class DiskSystem:
    """Disk centres ``(n, 2)`` as ``(y, x)`` and radii ``(n,)``, in box units."""

    centers: np.ndarray
    radii: np.ndarray
    box: int = BOX

    @property
    def n(self) -> int:
        return int(self.radii.size)

    @property
    def total_area(self) -> float:
        return float(np.pi * np.sum(self.radii**2))

    def min_gap(self) -> float:
        """Smallest edge-to-edge distance between two disks (inf for one disk), in units."""
        if self.n < 2:
            return float("inf")
        d = np.linalg.norm(self.centers[:, None, :] - self.centers[None, :, :], axis=-1)
        gap = d - (self.radii[:, None] + self.radii[None, :])
        gap[np.diag_indices(self.n)] = np.inf
        return float(gap.min())


def disk_radii(n: int, rng: np.random.Generator, polydisperse: bool = False,
               total_area: float = TOTAL_AREA, rel_sd: float = 1.0 / 3.0, law: str = "radius") -> np.ndarray:
    """Radii of ``n`` disks with total area ``total_area`` (units^2).

    Monodisperse: ``r = sqrt(total_area / (n pi))``. Polydisperse, ``law="radius"``: radii drawn from a
    Gaussian with ``sd = rel_sd * mean`` (redrawn while any radius is below 10 % of the mean), then rescaled
    so the total area is unchanged. ``law="area"`` (the seed's public code): area coefficients
    ``c ~ N(1, rel_sd)`` (i.e. N(3, 1) scaled), redrawn while any is <= 0, ``r_i = sqrt(A c_i / (pi sum c))``.
    """
    if n < 1:
        raise ConfigError(f"number of disks must be >= 1, got {n}")
    if law not in POLY_LAWS:
        raise ConfigError(f"unknown polydispersity law {law!r}; choose one of {', '.join(POLY_LAWS)}")
    r0 = np.sqrt(total_area / (n * np.pi))
    if not polydisperse:
        return np.full(n, r0)
    if rel_sd < 0:
        raise ConfigError(f"relative radius spread must be >= 0, got {rel_sd}")
    if law == "area":
        c = rng.normal(1.0, rel_sd, size=n)
        for _ in range(1000):
            bad = c <= 0
            if not bad.any():
                break
            c[bad] = rng.normal(1.0, rel_sd, size=int(bad.sum()))
        c = np.abs(c)
        return np.sqrt(total_area * c / (np.pi * c.sum()))
    radii = rng.normal(r0, rel_sd * r0, size=n)
    for _ in range(1000):
        bad = radii < 0.1 * r0
        if not bad.any():
            break
        radii[bad] = rng.normal(r0, rel_sd * r0, size=int(bad.sum()))
    radii = np.abs(radii)
    return radii * np.sqrt(total_area / (np.pi * np.sum(radii**2)))


def place_disks(radii: np.ndarray, rng: np.random.Generator, box: int = BOX, margin: float = 90.0,
                gap: float = 2.0, batch: int = 256, max_batches: int = 200) -> np.ndarray:
    """Random non-overlapping centres ``(n, 2)`` for ``radii`` (largest placed first).

    Each centre lies in ``[max(margin, r), box - max(margin, r)]`` on both axes and every pair keeps
    ``|c_i - c_j| >= r_i + r_j + gap``. Candidates are drawn ``batch`` at a time and tested against
    all placed disks at once (vectorised rejection sampling).
    """
    radii = np.asarray(radii, dtype=float)
    centers = np.zeros((radii.size, 2))
    order = np.argsort(-radii)
    placed: list[int] = []
    for i in order:
        lo = max(margin, radii[i])
        hi = box - lo
        if hi <= lo:
            raise ConfigError(f"disk of radius {radii[i]:.1f} does not fit in a box of {box}")
        for _ in range(max_batches):
            cand = rng.uniform(lo, hi, size=(batch, 2))
            if placed:
                d = np.linalg.norm(cand[:, None, :] - centers[placed][None, :, :], axis=-1)
                ok = np.all(d >= radii[placed][None, :] + radii[i] + gap, axis=1)
            else:
                ok = np.ones(batch, dtype=bool)
            hit = np.flatnonzero(ok)
            if hit.size:
                centers[i] = cand[hit[0]]
                placed.append(int(i))
                break
        else:
            raise ConfigError(f"could not place {radii.size} disks without overlap in a box of {box}")
    return centers


def random_disk_system(n: int, seed: int | np.random.Generator | None = None, polydisperse: bool = False,
                       box: int = BOX, total_area: float = TOTAL_AREA, poly_law: str = "radius") -> DiskSystem:
    """A random n-disk system (seedable) with the seed's fixed total area (``poly_law``: see :func:`disk_radii`)."""
    rng = np.random.default_rng(seed)
    radii = disk_radii(n, rng, polydisperse=polydisperse, total_area=total_area, law=poly_law)
    return DiskSystem(place_disks(radii, rng, box=box), radii, box)


def thickness_map(system: DiskSystem, profile: str = "flat", dtype=np.float32) -> np.ndarray:
    """Rasterised projected thickness ``(box+1, box+1)`` normalised to 1 at a disk centre.

    ``flat``: 1 inside a disk (``|p - c| <= r``), 0 outside. ``sphere``: ``sqrt(1 - rho^2 / r^2)``,
    the projection of a sphere. Disks never overlap, so each pixel belongs to at most one disk.
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown disk profile {profile!r}; choose one of {', '.join(PROFILES)}")
    size = system.box + 1
    out = np.zeros((size, size), dtype=dtype)
    for (cy, cx), r in zip(system.centers, system.radii):
        y0, y1 = max(int(np.floor(cy - r)), 0), min(int(np.ceil(cy + r)) + 1, size)
        x0, x1 = max(int(np.floor(cx - r)), 0), min(int(np.ceil(cx + r)) + 1, size)
        yy = np.arange(y0, y1)[:, None] - cy
        xx = np.arange(x0, x1)[None, :] - cx
        rho2 = (yy**2 + xx**2) / r**2
        inside = rho2 <= 1.0
        val = inside.astype(dtype) if profile == "flat" else np.sqrt(np.clip(1.0 - rho2, 0.0, None)) * inside
        out[y0:y1, x0:x1] = np.maximum(out[y0:y1, x0:x1], val)
    return out


def object_function(system: DiskSystem, contrast: str = "amplitude", profile: str = "flat",
                    phase: float = 0.5, absorption: float = 0.0) -> np.ndarray:
    """Scattering contrast of the disks, ``(box+1, box+1)``.

    ``amplitude`` (the seed's case): the real thickness map. ``phase`` / ``mixed``: the exit wave minus
    the unscattered beam, ``exp((i phase - absorption) h) - 1`` (complex64), with ``phase`` (rad) and
    ``absorption`` (``mu t / 2``, dimensionless) at the thickest point, ``h`` the thickness map. For
    flat disks of one material this is a constant times the indicator, so the standardised pattern is
    the same as for amplitude contrast; use ``profile="sphere"`` for patterns that differ.
    """
    if contrast not in CONTRASTS:
        raise ConfigError(f"unknown contrast {contrast!r}; choose one of {', '.join(CONTRASTS)}")
    h = thickness_map(system, profile)
    if contrast == "amplitude":
        return h
    mu = absorption if contrast == "mixed" else 0.0
    if phase == 0 and mu == 0:
        raise ConfigError("phase contrast needs a non-zero phase (or absorption for 'mixed')")
    return (np.exp((1j * phase - mu) * h.astype(np.float64)) - 1.0).astype(np.complex64)
