"""Training losses of PID3Net (thesis Eqs. 3.9-3.12). Intensities are [B, T, H, W] photons.

Unmeasured pixels (NaN counts, or ``weight`` 0) do not count: the diffraction losses are means over
measured pixels only (a ``weight`` > 0 scales a pixel's term).
"""

from __future__ import annotations

import torch

EPS = 1e-8


def _weights(measured: torch.Tensor, weight: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Counts with unmeasured pixels zeroed, and float weights (None: every pixel measured, weight 1)."""
    finite = torch.isfinite(measured)
    if weight is None and bool(finite.all()):
        return measured, None
    w = finite.to(measured.dtype) if weight is None else torch.where(finite, weight.to(measured.dtype), torch.zeros_like(measured))
    return torch.where(finite, measured, torch.zeros_like(measured)), w


def _mean(values: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    if w is None:
        return values.mean()
    return (values * w).sum() / w.sum().clamp_min(1e-12)


def poisson_deviance(predicted: torch.Tensor, measured: torch.Tensor, threshold: float = 1.0,
                     weight: torch.Tensor | None = None) -> torch.Tensor:
    """Poisson negative log-likelihood per pixel, shifted to be 0 at ``predicted == measured``.

    ``mean(I_hat - I log I_hat - (I - I log I))`` over measured pixels; counts below ``threshold`` are treated as zero.
    """
    measured, w = _weights(measured, weight)
    measured = torch.where(measured < threshold, torch.zeros_like(measured), measured)
    log_ratio = torch.log(predicted + EPS) - torch.log(measured + EPS)
    return _mean(predicted - measured - measured * log_ratio, w)


def mae(predicted: torch.Tensor, measured: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error ``mean |I - I_hat|`` (Eq. 3.9) over measured pixels."""
    measured, w = _weights(measured, weight)
    return _mean((predicted - measured).abs(), w)


def sqrt_mse(predicted: torch.Tensor, measured: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of the moduli ``mean (sqrt(I_hat) - sqrt(I))^2`` over measured pixels."""
    measured, w = _weights(measured, weight)
    return _mean((torch.sqrt(predicted + EPS) - torch.sqrt(measured.clamp_min(0))).pow(2), w)


def total_variation_3d(obj: torch.Tensor) -> torch.Tensor:
    """3D total variation of complex objects [B, T, H, W] (Eq. 3.11): mean |dO| along y, x and t."""
    dy = (obj[..., 1:, :] - obj[..., :-1, :]).abs().mean()
    dx = (obj[..., :, 1:] - obj[..., :, :-1]).abs().mean()
    terms = [dy, dx]
    if obj.shape[-3] > 1:
        terms.append((obj[..., 1:, :, :] - obj[..., :-1, :, :]).abs().mean())
    return sum(terms) / 3.0


def diffraction_loss(kind: str, predicted: torch.Tensor, measured: torch.Tensor, threshold: float = 1.0,
                     weight: torch.Tensor | None = None) -> torch.Tensor:
    """The ``kind`` loss (poisson / mae / sqrt_mse); NaN counts and zero ``weight`` pixels are left out."""
    if kind == "poisson":
        return poisson_deviance(predicted, measured, threshold, weight)
    if kind == "mae":
        return mae(predicted, measured, weight)
    return sqrt_mse(predicted, measured, weight)
