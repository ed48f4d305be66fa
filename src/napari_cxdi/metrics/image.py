"""Image-quality metrics of phase images: SSIM after removing the global phase offset, entropy."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from ..errors import DataValidationError


def remove_phase_offset(phase, reference, mask=None, weights=None) -> np.ndarray:
    """Shift ``phase`` [..., H, W] by the global constant that best matches ``reference`` (per frame), wrapped to (-pi, pi].

    The offset is the circular mean of ``phase - reference`` over ``mask`` (weighted by ``weights``).
    """
    p = np.asarray(phase, np.float64)
    r = np.asarray(reference, np.float64)
    if p.shape != r.shape:
        raise DataValidationError(f"phase images differ in shape: {p.shape} vs {r.shape}")
    w = np.ones_like(p) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), p.shape)
    if mask is not None:
        w = w * np.broadcast_to(np.asarray(mask, bool), p.shape)
    offset = np.angle((w * np.exp(1j * (p - r))).sum(axis=(-2, -1), keepdims=True))
    return np.angle(np.exp(1j * (p - offset)))


#: SSIM's contrast constant K2: below a standard deviation of K2 x data range, SSIM's contrast term
#: no longer sees structure (C2 = (K2 L)^2 dominates), so the score measures only how flat the estimate is.
SSIM_K2 = 0.03


def structured_frames(reference, mask=None, data_range: float | None = None, min_std: float = SSIM_K2) -> np.ndarray:
    """Bool [T]: the frames of ``reference`` [T, H, W] whose values inside ``mask`` vary, i.e. whose
    standard deviation there is at least ``min_std`` x ``data_range`` (default: the peak-to-peak range
    of the whole reference).

    A frame with nothing in the mask (no particle under the probe) gives any flat estimate an SSIM near
    1 and any estimate with texture a low one: it says nothing about the reconstruction of the sample.
    """
    r = np.asarray(reference, np.float64)
    if r.ndim == 2:
        r = r[None]
    m = np.ones(r.shape[-2:], bool) if mask is None else np.asarray(mask, bool)
    if not m.any():
        raise DataValidationError("the SSIM mask is empty")
    rng = data_range if data_range is not None else max(float(np.ptp(r)), 1e-12)
    return r[:, m].std(axis=1) >= min_std * rng


def phase_ssim(phase, reference, mask=None, data_range: float | None = None, structured_only: bool = False) -> float:
    """Mean SSIM of phase images [T, H, W] or [H, W] against ``reference`` after offset removal.

    With ``mask`` (bool [H, W], e.g. the probe support) the offset is fitted and the SSIM map averaged
    inside the mask only. ``data_range`` defaults to the reference's peak-to-peak range.
    structured_only: average only over the frames where the reference has structure inside the mask
    (:func:`structured_frames`); NaN when there is none.
    """
    p = np.asarray(phase, np.float64)
    r = np.asarray(reference, np.float64)
    if p.ndim == 2:
        p, r = p[None], r[None]
    if p.shape != r.shape:
        raise DataValidationError(f"phase images differ in shape: {p.shape} vs {r.shape}")
    m = np.ones(p.shape[-2:], bool) if mask is None else np.asarray(mask, bool)
    if not m.any():
        raise DataValidationError("the SSIM mask is empty")
    p = remove_phase_offset(p, r, m)
    rng = data_range if data_range is not None else max(float(np.ptp(r)), 1e-6)
    if structured_only:
        keep = structured_frames(r, m, rng)
        if not keep.any():
            return float("nan")
        p, r = p[keep], r[keep]
    win = min(7, *p.shape[-2:]) | 1
    scores = []
    for a, b in zip(p, r):
        _, ssim_map = structural_similarity(a, b, data_range=rng, win_size=win, full=True)
        scores.append(ssim_map[m].mean())
    return float(np.mean(scores))


def image_entropy(image, bins: int = 256) -> float:
    """Shannon entropy (bits) of an image's intensity histogram; lower means higher contrast."""
    values = np.asarray(image, np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise DataValidationError("entropy of an empty image")
    hist, _ = np.histogram(values, bins=bins)
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum())
