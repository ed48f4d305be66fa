"""R_f: the discrepancy between measured and modelled diffraction moduli (thesis Eq. 3.13)."""

from __future__ import annotations

import numpy as np

from ..errors import DataValidationError


def r_factor(predicted_intensity, measured_intensity) -> float:
    """``R_f = sum | sqrt(I_hat) - sqrt(I) | / sum sqrt(I)`` over all pixels and frames (lower is better).

    predicted_intensity, measured_intensity: arrays of equal shape [..., H, W] (photons).
    """
    a = np.asarray(predicted_intensity, dtype=np.float64)
    b = np.asarray(measured_intensity, dtype=np.float64)
    if a.shape != b.shape:
        raise DataValidationError(f"R_f needs equal shapes, got {a.shape} and {b.shape}")
    sb = np.sqrt(np.clip(b, 0, None))
    denom = sb.sum()
    if denom <= 0:
        raise DataValidationError("R_f is undefined for an all-zero measurement")
    return float(np.abs(np.sqrt(np.clip(a, 0, None)) - sb).sum() / denom)


def r_factor_per_frame(predicted_intensity, measured_intensity) -> np.ndarray:
    """R_f of each frame [T] of [T, H, W] stacks."""
    a = np.sqrt(np.clip(np.asarray(predicted_intensity, np.float64), 0, None))
    b = np.sqrt(np.clip(np.asarray(measured_intensity, np.float64), 0, None))
    return np.abs(a - b).sum(axis=(-2, -1)) / np.maximum(b.sum(axis=(-2, -1)), 1e-300)
