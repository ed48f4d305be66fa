"""Training losses of PID3Net (thesis Eqs. 3.9-3.12). Intensities are [B, T, H, W] photons."""

from __future__ import annotations

import torch

EPS = 1e-8


def poisson_deviance(predicted: torch.Tensor, measured: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    """Poisson negative log-likelihood per pixel, shifted to be 0 at ``predicted == measured``.

    ``mean(I_hat - I log I_hat - (I - I log I))``; counts below ``threshold`` are treated as zero.
    """
    measured = torch.where(measured < threshold, torch.zeros_like(measured), measured)
    log_ratio = torch.log(predicted + EPS) - torch.log(measured + EPS)
    return (predicted - measured - measured * log_ratio).mean()


def mae(predicted: torch.Tensor, measured: torch.Tensor) -> torch.Tensor:
    """Mean absolute error ``mean |I - I_hat|`` (Eq. 3.9)."""
    return (predicted - measured).abs().mean()


def sqrt_mse(predicted: torch.Tensor, measured: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the moduli ``mean (sqrt(I_hat) - sqrt(I))^2``."""
    return (torch.sqrt(predicted + EPS) - torch.sqrt(measured.clamp_min(0))).pow(2).mean()


def total_variation_3d(obj: torch.Tensor) -> torch.Tensor:
    """3D total variation of complex objects [B, T, H, W] (Eq. 3.11): mean |dO| along y, x and t."""
    dy = (obj[..., 1:, :] - obj[..., :-1, :]).abs().mean()
    dx = (obj[..., :, 1:] - obj[..., :, :-1]).abs().mean()
    terms = [dy, dx]
    if obj.shape[-3] > 1:
        terms.append((obj[..., 1:, :, :] - obj[..., :-1, :, :]).abs().mean())
    return sum(terms) / 3.0


def diffraction_loss(kind: str, predicted: torch.Tensor, measured: torch.Tensor, threshold: float = 1.0) -> torch.Tensor:
    if kind == "poisson":
        return poisson_deviance(predicted, measured, threshold)
    if kind == "mae":
        return mae(predicted, measured)
    return sqrt_mse(predicted, measured)
