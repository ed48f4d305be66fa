"""R_f: the discrepancy between measured and modelled diffraction moduli (thesis Eq. 3.13)."""

from __future__ import annotations

import numpy as np

from ..errors import DataValidationError


def _measured(measured: np.ndarray, mask) -> np.ndarray:
    """Measured pixels: finite counts, not in ``mask`` (True = bad, broadcast against the counts)."""
    ok = np.isfinite(measured)
    if mask is not None:
        ok &= ~np.broadcast_to(np.asarray(mask, bool), measured.shape)
    return ok


def r_factor(predicted_intensity, measured_intensity, mask=None) -> float:
    """``R_f = sum | sqrt(I_hat) - sqrt(I) | / sum sqrt(I)`` over measured pixels and frames (lower is better).

    predicted_intensity, measured_intensity: arrays of equal shape [..., H, W] (photons; NaN = unmeasured).
    mask: bad pixels (True = not measured), [H, W] or the counts' shape; left out like NaN counts.
    """
    a = np.asarray(predicted_intensity, dtype=np.float64)
    b = np.asarray(measured_intensity, dtype=np.float64)
    if a.shape != b.shape:
        raise DataValidationError(f"R_f needs equal shapes, got {a.shape} and {b.shape}")
    ok = _measured(b, mask)
    sb = np.where(ok, np.sqrt(np.clip(np.where(ok, b, 0.0), 0, None)), 0.0)
    denom = sb.sum()
    if denom <= 0:
        raise DataValidationError("R_f is undefined for an all-zero measurement")
    return float(np.where(ok, np.abs(np.sqrt(np.clip(a, 0, None)) - sb), 0.0).sum() / denom)


def r_factor_per_frame(predicted_intensity, measured_intensity, mask=None) -> np.ndarray:
    """R_f of each frame [T] of [T, H, W] stacks (measured pixels only, see :func:`r_factor`)."""
    m = np.asarray(measured_intensity, np.float64)
    ok = _measured(m, mask)
    a = np.sqrt(np.clip(np.asarray(predicted_intensity, np.float64), 0, None))
    b = np.where(ok, np.sqrt(np.clip(np.where(ok, m, 0.0), 0, None)), 0.0)
    return np.where(ok, np.abs(a - b), 0.0).sum(axis=(-2, -1)) / np.maximum(b.sum(axis=(-2, -1)), 1e-300)
