"""Resolution estimates: phase-retrieval transfer function (PRTF) and Fourier ring correlation (FRC).

Both report full-period resolution in nm at the 1/e threshold (SPEC §4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataValidationError
from ..physics.fft import fft2c_np
from .radial import ring_index, ring_sum, ring_to_resolution_nm, threshold_crossing

ONE_OVER_E = float(np.exp(-1.0))


@dataclass
class ResolutionCurve:
    """A ring-averaged curve and its threshold crossing.

    spatial_frequency: [R] cycles per nm at each ring; curve: [R]; resolution_nm: full period at the crossing.
    """

    spatial_frequency: np.ndarray
    curve: np.ndarray
    threshold: float
    resolution_nm: float

    def as_dict(self) -> dict:
        return {
            "spatial_frequency_per_nm": self.spatial_frequency.tolist(),
            "curve": self.curve.tolist(),
            "threshold": self.threshold,
            "resolution_nm": self.resolution_nm,
        }


def _curve(values_num, values_den, shape, pixel_size_nm, threshold) -> ResolutionCurve:
    rings = ring_index(shape)
    n = min(shape)
    n_rings = n // 2
    num = ring_sum(values_num, rings, n_rings)
    den = ring_sum(values_den, rings, n_rings)
    curve = np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)
    crossing = threshold_crossing(curve, threshold)
    freq = np.arange(n_rings) / (n * pixel_size_nm)
    return ResolutionCurve(freq, curve, threshold, ring_to_resolution_nm(crossing, n, pixel_size_nm))


def prtf(predicted_modulus, measured_intensity, pixel_size_nm: float, threshold: float = ONE_OVER_E, mask=None) -> ResolutionCurve:
    """PRTF(q) = ring average of ``|Psi_hat| / sqrt(I)`` over pixels with counts, averaged over frames.

    predicted_modulus: [..., H, W] modulus of the reconstruction's far field (``sqrt(sum_k |F(P_k O)|^2)``);
    measured_intensity: counts of the same shape. Pixels without counts are left out, and so are
    unmeasured pixels: NaN counts and ``mask`` (True = bad; [H, W] or the counts' shape).
    """
    a = np.asarray(predicted_modulus, np.float64)
    i = np.asarray(measured_intensity, np.float64)
    if a.shape != i.shape:
        raise DataValidationError(f"PRTF needs equal shapes, got {a.shape} and {i.shape}")
    i = np.nan_to_num(i, nan=0.0)
    if mask is not None:
        i = np.where(np.broadcast_to(np.asarray(mask, bool), i.shape), 0.0, i)
    valid = i > 0
    ratio = np.where(valid, a / np.sqrt(np.where(valid, i, 1.0)), 0.0)
    return _curve(np.clip(ratio, 0, 1.0), valid.astype(float), a.shape[-2:], pixel_size_nm, threshold)


def frc(image_a, image_b, pixel_size_nm: float, threshold: float = ONE_OVER_E, window: bool = True) -> ResolutionCurve:
    """FRC(q) = Re sum F_a conj(F_b) / sqrt(sum |F_a|^2 sum |F_b|^2) per ring, summed over frames.

    image_a, image_b: [..., H, W] real or complex (e.g. reconstructed and true phase). A Hann window
    suppresses edge artefacts unless ``window=False``.
    """
    a = np.asarray(image_a)
    b = np.asarray(image_b)
    if a.shape != b.shape:
        raise DataValidationError(f"FRC needs equal shapes, got {a.shape} and {b.shape}")
    if window:
        h, w = a.shape[-2:]
        win = np.outer(np.hanning(h), np.hanning(w))
        a = (a - a.mean(axis=(-2, -1), keepdims=True)) * win
        b = (b - b.mean(axis=(-2, -1), keepdims=True)) * win
    fa, fb = fft2c_np(a), fft2c_np(b)
    rings = ring_index(a.shape[-2:])
    n = min(a.shape[-2:])
    n_rings = n // 2
    num = ring_sum((fa * fb.conj()).real, rings, n_rings)
    den = np.sqrt(ring_sum(np.abs(fa) ** 2, rings, n_rings) * ring_sum(np.abs(fb) ** 2, rings, n_rings))
    curve = np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)
    crossing = threshold_crossing(curve, threshold)
    freq = np.arange(n_rings) / (n * pixel_size_nm)
    return ResolutionCurve(freq, curve, threshold, ring_to_resolution_nm(crossing, n, pixel_size_nm))
