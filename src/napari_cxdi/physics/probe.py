"""Probe synthesis: a rounded triangular aperture imaged by a Fresnel zone plate (FZP).

The sample sits in the image plane of the aperture (``1/z1 + 1/z2 = 1/f``), so the probe is the
aperture demagnified by ``M = z2 / z1`` (10 um -> 5 um in the seed), band-limited by the FZP pupil
(coherent cut-off ``R / (lambda z2)``), with the spherical phase of a beam diverging from the focus
(radius ``z2 - f``). Partial coherence of the source is modelled as a Gaussian-Schell illumination
of the aperture (a spread of incidence angles); the cross-spectral density is decomposed into
orthogonal coherent modes (SVD), whose photon shares are then set to the requested ones
(seed: AuNP 90.9 / 5.4 / 2.2 / 1.5 %, Ta chart 89.6 / 4.4 / 2.4 / 1.7 %).

The probe is scaled to photons: ``sum_k sum_r |P_k|^2 = flux * exposure``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from .geometry import Geometry

AUNP_MODE_SHARES = (0.909, 0.054, 0.022, 0.015)
TA_CHART_MODE_SHARES = (0.896, 0.044, 0.024, 0.017, 0.019)


@dataclass(frozen=True)
class FZPOptics:
    """Illumination optics (thesis Tables B.1-B.3; defaults: AuNP simulation, Table B.2).

    aperture_side_um: triangle side at the aperture; corner_radius_fraction: corner rounding as a
    fraction of the side; fzp_focal_mm: FZP focal length; aperture_fzp_mm (z1) and fzp_sample_mm
    (z2): distances; aperture_offset_um: off-axis offset (recorded; the tilt it causes is taken as
    compensated by centring the detector on the beam); fzp_radius_um: FZP radius (pupil);
    coherence_length_um: transverse coherence length of the illumination at the aperture.
    """

    aperture_side_um: float = 10.0
    corner_radius_fraction: float = 0.08
    fzp_focal_mm: float = 48.38
    aperture_fzp_mm: float = 145.1
    fzp_sample_mm: float = 72.6
    aperture_offset_um: float = 100.0
    fzp_radius_um: float = 100.0
    coherence_length_um: float = 15.0

    @property
    def magnification(self) -> float:
        return self.fzp_sample_mm / self.aperture_fzp_mm

    @property
    def probe_side_um(self) -> float:
        return self.aperture_side_um * self.magnification

    @property
    def defocus_mm(self) -> float:
        """Distance of the sample behind the FZP focus (radius of curvature of the probe)."""
        return self.fzp_sample_mm - self.fzp_focal_mm


TA_CHART_OPTICS = FZPOptics(fzp_focal_mm=60.49, aperture_fzp_mm=181.47, fzp_sample_mm=90.74)
AUNP_OPTICS = FZPOptics()


@dataclass(frozen=True)
class ProbeSpec:
    """What probe to synthesise: optics, mode shares, photons per frame."""

    optics: FZPOptics = field(default_factory=FZPOptics)
    mode_shares: tuple[float, ...] = AUNP_MODE_SHARES
    photons: float = 3e6 * 0.1
    probe_side_um: float | None = None  # override the imaged triangle size (small simulations)


def rounded_triangle(n: int, dx_nm: float, side_nm: float, corner_radius_nm: float) -> np.ndarray:
    """Anti-aliased mask [n, n] (values 0..1) of an upward equilateral triangle with rounded corners, centred."""
    if side_nm <= 0 or corner_radius_nm < 0:
        raise ConfigError("triangle side must be positive and corner radius non-negative")
    inradius = side_nm / (2 * np.sqrt(3))
    r = min(corner_radius_nm, 0.9 * inradius)
    coords = (np.arange(n) - n / 2 + 0.5) * dx_nm
    y, x = np.meshgrid(coords, coords, indexing="ij")
    # Signed distance to the triangle shrunk by r (exact: nearest of the three edge segments), minus r.
    inner = inradius - r
    angles = np.deg2rad([90.0, 210.0, 330.0])
    vy, vx = -2 * inner * np.sin(angles), 2 * inner * np.cos(angles)  # vertices, circumradius = 2 x inradius
    dist = np.full(y.shape, np.inf)
    inside = np.ones(y.shape, bool)
    for i in range(3):
        ay, ax, by, bx = vy[i], vx[i], vy[(i + 1) % 3], vx[(i + 1) % 3]
        ey, ex = by - ay, bx - ax
        t = np.clip(((y - ay) * ey + (x - ax) * ex) / (ey**2 + ex**2), 0.0, 1.0)
        dist = np.minimum(dist, np.hypot(y - ay - t * ey, x - ax - t * ex))
        inside &= (ex * (y - ay) - ey * (x - ax)) <= 0
    sdf = np.where(inside, -dist, dist) - r
    return np.clip(0.5 - sdf / dx_nm, 0.0, 1.0)


def _coherent_fields(geometry: Geometry, spec: ProbeSpec, n_angles: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Coherent fields at the sample for a grid of incidence angles, and their Gaussian weights."""
    optics = spec.optics
    n, dx = geometry.n, geometry.pixel_size_nm
    lam = geometry.wavelength_m
    side_nm = (spec.probe_side_um or optics.probe_side_um) * 1e3
    scale = side_nm / (optics.probe_side_um * 1e3)  # >1 or <1 when the triangle size is overridden
    aperture = rounded_triangle(n, dx, side_nm, optics.corner_radius_fraction * side_nm)[::-1]  # imaging inverts

    coords = (np.arange(n) - n / 2 + 0.5) * dx * 1e-9  # metres in the sample plane
    y, x = np.meshgrid(coords, coords, indexing="ij")
    # Spherical phase of the beam diverging from the FZP focus (radius z2 - f), scaled with the probe.
    radius = optics.defocus_mm * 1e-3 * scale**2
    curvature = np.exp(1j * np.pi * (x**2 + y**2) / (lam * radius))
    # Pupil of the FZP in sample-plane spatial frequencies: |f| <= R / (lambda z2).
    f = np.fft.fftfreq(n, d=dx * 1e-9)
    fy, fx = np.meshgrid(f, f, indexing="ij")
    cutoff = optics.fzp_radius_um * 1e-6 / (lam * optics.fzp_sample_mm * 1e-3) / scale
    pupil = np.hypot(fx, fy) <= cutoff

    # Gaussian-Schell source: incidence-angle spread, as spatial frequencies in the sample plane.
    coherence_nm = optics.coherence_length_um * 1e3 * optics.magnification * scale
    sigma_f = 1.0 / (2 * np.pi * coherence_nm * 1e-9)
    grid = np.linspace(-2.5, 2.5, n_angles) * sigma_f
    fields, weights = [], []
    for gy in grid:
        for gx in grid:
            tilt = np.exp(2j * np.pi * (gx * x + gy * y))
            field_ = np.fft.ifft2(np.fft.fft2(aperture * tilt) * pupil)
            fields.append(field_ * curvature)
            weights.append(np.exp(-(gx**2 + gy**2) / (2 * sigma_f**2)))
    weights = np.asarray(weights)
    return np.asarray(fields), weights / weights.sum()


def orthogonal_modes(fields: np.ndarray, weights: np.ndarray | None = None, n_modes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Coherent-mode decomposition of an incoherent sum of fields [J, H, W] (SVD).

    Returns (modes [n_modes, H, W] orthonormal, occupations [n_modes] summing to <= 1).
    """
    j = fields.shape[0]
    w = np.ones(j) / j if weights is None else np.asarray(weights, dtype=float)
    a = (np.sqrt(w)[:, None] * fields.reshape(j, -1)).astype(np.complex128)
    gram = a @ a.conj().T
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1][:n_modes]
    evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
    modes = (evecs.conj().T @ a) / np.sqrt(np.maximum(evals, 1e-300))[:, None]
    return modes.reshape((len(order),) + fields.shape[1:]), evals / max(np.trace(gram).real, 1e-300)


def set_mode_shares(modes: np.ndarray, shares, photons: float) -> np.ndarray:
    """Scale orthogonal modes [K, H, W] so mode k carries ``shares[k] * photons`` (shares renormalised)."""
    shares = np.asarray(shares, dtype=float)
    if shares.ndim != 1 or len(shares) != modes.shape[0] or np.any(shares <= 0):
        raise ConfigError(f"need {modes.shape[0]} positive mode shares, got {shares}")
    shares = shares / shares.sum()
    power = (np.abs(modes) ** 2).reshape(len(modes), -1).sum(axis=1)
    return (modes * np.sqrt(shares * photons / power)[:, None, None]).astype(np.complex64)


def mode_shares(probe: np.ndarray) -> np.ndarray:
    """Photon share of each mode of a probe [K, H, W]."""
    power = (np.abs(probe) ** 2).reshape(len(probe), -1).sum(axis=1)
    return power / power.sum()


def synthesize_probe(geometry: Geometry, spec: ProbeSpec | None = None) -> np.ndarray:
    """Multi-mode probe [K, n, n] complex64 in sqrt(photons) per pixel, orthogonal modes.

    >>> from napari_cxdi.physics.geometry import AUNP_SIMULATION
    >>> P = synthesize_probe(AUNP_SIMULATION.binned_to(128), ProbeSpec(probe_side_um=1.7))
    """
    spec = spec or ProbeSpec()
    if spec.photons <= 0:
        raise ConfigError(f"photons per frame must be positive, got {spec.photons}")
    side = spec.probe_side_um or spec.optics.probe_side_um
    if side * 1e3 > 0.95 * geometry.n * geometry.pixel_size_nm:
        raise ConfigError(
            f"the {side:.2f} um probe does not fit in the {geometry.field_of_view_um:.2f} um field of view; "
            "use a larger frame, or set probe_side_um"
        )
    fields, weights = _coherent_fields(geometry, spec)
    modes, _ = orthogonal_modes(fields, weights, n_modes=len(spec.mode_shares))
    return set_mode_shares(modes, spec.mode_shares, spec.photons)


def support_mask(probe: np.ndarray, threshold: float = 0.05, dilate_px: int = 2) -> np.ndarray:
    """Boolean [H, W] footprint of the probe: total intensity above ``threshold`` x its maximum, dilated."""
    from scipy import ndimage

    power = (np.abs(np.asarray(probe)) ** 2).sum(axis=0)
    mask = power > threshold * power.max()
    if dilate_px > 0:
        mask = ndimage.binary_dilation(mask, iterations=dilate_px)
    return mask
