"""Whole-image velocity from sub-pixel registration of frame pairs (SPEC §4; the seed's 340 nm/s check).

Registration is a phase cross-correlation (skimage) for the coarse shift, refined by Gauss-Newton
(Lucas-Kanade) steps on the Hann-windowed residual. The refinement removes the bias of plain
upsampled cross-correlation when new content enters the field of view (about -10 % on a moving chart).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from ..errors import DataValidationError


def register_shift(reference, moving, iterations: int = 8, tol: float = 1e-4, weights=None, offset: bool = False,
                   smooth_px: float = 0.0) -> np.ndarray:
    """Shift s (dy, dx) in pixels such that ``moving(r) ~= reference(r - s) (+ c)`` (sub-pixel).

    weights: optional [H, W] >= 0 that restrict the comparison (e.g. the inside of the probe footprint,
    whose edge does not move with the sample); default a Hann window.
    offset: also fit a constant c (a reconstruction's phase is known only up to a constant per frame;
    an unfitted offset difference biases the shift by c times the weighted mean gradient).
    smooth_px: Gaussian low-pass (sigma, pixels) of both images first. A sample rendered sharper than
    the pixel (the test chart's 1-px anti-aliased edges) is not band-limited; spline shifts of it are
    not the re-rendered image and the Gauss-Newton steps are biased (-15 % on the chart's truth with
    the probe-interior weights; docs/fidelity.md).
    """
    ref = np.asarray(reference, np.float64)
    mov = np.asarray(moving, np.float64)
    if ref.shape != mov.shape or ref.ndim != 2:
        raise DataValidationError(f"need two 2D images of equal shape, got {ref.shape} and {mov.shape}")
    if smooth_px < 0:
        raise DataValidationError(f"smooth_px must be >= 0, got {smooth_px}")
    if np.ptp(ref) == 0 or np.ptp(mov) == 0:
        return np.zeros(2)  # a featureless frame shows no motion (its correlation peak would be arbitrary)
    if smooth_px > 0:
        ref = ndimage.gaussian_filter(ref, smooth_px, mode="nearest")
        mov = ndimage.gaussian_filter(mov, smooth_px, mode="nearest")
    if weights is None:
        s = phase_cross_correlation(mov, ref, upsample_factor=10, normalization=None)[0]
        win = np.outer(np.hanning(ref.shape[0]), np.hanning(ref.shape[1]))
    else:
        win = np.asarray(weights, np.float64)
        support = win > 0
        s = np.asarray(phase_cross_correlation(mov, ref, reference_mask=support, moving_mask=support)[0], float)
    c = 0.0
    for _ in range(iterations):
        shifted = ndimage.shift(ref, s, order=3, mode="nearest")
        gy, gx = np.gradient(shifted)
        resid = mov - shifted - c
        # Gauss-Newton on moving ~= shifted(s) + c: d shifted / ds = -grad
        jac = [-gy, -gx, np.ones_like(gy)] if offset else [-gy, -gx]
        a = np.array([[np.sum(win * u * v) for v in jac] for u in jac])
        b = np.array([np.sum(win * u * resid) for u in jac])
        if abs(np.linalg.det(a[:2, :2])) < 1e-12 or abs(np.linalg.det(a)) < 1e-18:
            break  # featureless image: keep the correlation estimate
        step = np.linalg.solve(a, b)
        s = s + step[:2]
        if offset:
            c += step[2]
        if np.abs(step[:2]).max() < tol:
            break
    return s


def estimate_shifts(movie, lag: int = 1, weights=None, offset: bool = False, smooth_px: float = 0.0) -> np.ndarray:
    """Shift (dy, dx) in pixels per frame between frames t and t+lag: [T-lag, 2] for a movie [T, H, W]."""
    frames = np.asarray(movie, np.float64)
    if frames.ndim != 3 or lag < 1 or len(frames) <= lag:
        raise DataValidationError(f"need a movie [T > lag, H, W] and lag >= 1, got shape {frames.shape}, lag {lag}")
    return np.array([register_shift(frames[t], frames[t + lag], weights=weights, offset=offset, smooth_px=smooth_px)
                     for t in range(len(frames) - lag)]) / lag


def estimate_velocity(movie, pixel_size_nm: float, frame_interval_s: float, lag: int = 1, weights=None,
                      offset: bool = False, smooth_px: float = 0.0) -> dict:
    """Velocity (nm/s) from frame-pair shifts: per-pair values [P, 2] (vy, vx), mean, standard deviation, speed.

    ``offset`` and ``smooth_px``: see :func:`register_shift`."""
    if frame_interval_s <= 0 or pixel_size_nm <= 0:
        raise DataValidationError("pixel size and frame interval must be positive")
    v = estimate_shifts(movie, lag, weights, offset, smooth_px) * pixel_size_nm / frame_interval_s
    return {
        "per_pair_nm_s": v,
        "mean_nm_s": v.mean(axis=0),
        "std_nm_s": v.std(axis=0),
        "speed_nm_s": float(np.hypot(*v.mean(axis=0))),
    }
