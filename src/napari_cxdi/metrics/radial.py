"""Ring (radial) averaging in the centred Fourier plane, shared by PRTF and FRC."""

from __future__ import annotations

import numpy as np


def ring_index(shape: tuple[int, int]) -> np.ndarray:
    """Integer ring number of every pixel of a centred spectrum [H, W] (ring r = r / (N dx) cycles/length).

    For non-square frames the radius is measured in units of the smaller dimension's frequency step.
    """
    h, w = shape
    n = min(h, w)
    qy = (np.arange(h) - h // 2) * n / h
    qx = (np.arange(w) - w // 2) * n / w
    return np.rint(np.hypot(qy[:, None], qx[None, :])).astype(np.int64)


def ring_sum(values: np.ndarray, rings: np.ndarray, n_rings: int) -> np.ndarray:
    """Sum of ``values`` [..., H, W] (over all leading axes too) within each ring 0..n_rings-1."""
    v = np.asarray(values).reshape(-1, *rings.shape)
    flat = np.broadcast_to(rings, v.shape).ravel()
    keep = flat < n_rings
    return np.bincount(flat[keep], weights=v.ravel()[keep], minlength=n_rings)[:n_rings]


def threshold_crossing(curve: np.ndarray, threshold: float, start: int = 1) -> int | None:
    """First ring index >= ``start`` at which ``curve`` drops below ``threshold`` (None if it never does)."""
    below = np.flatnonzero(np.asarray(curve[start:]) < threshold)
    return int(below[0] + start) if below.size else None


def ring_to_resolution_nm(ring: int | None, n: int, pixel_size_nm: float) -> float:
    """Full-period resolution (nm) of ring ``ring`` in an N-pixel frame: ``N dx / ring``.

    A curve that never crosses its threshold is resolved to the Nyquist limit ``2 dx``.
    """
    if ring is None or ring <= 0:
        return 2.0 * pixel_size_nm
    return n * pixel_size_nm / ring
