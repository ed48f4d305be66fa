"""Single-shot CXDI forward model with a mixed-state (multi-mode) probe.

Exit wave ``psi_tk = P_k * O_t``; far field ``Psi_tk = F(psi_tk)``;
intensity ``I_t = sum_k |Psi_tk|^2``. All functions are batched, differentiable and device-agnostic.

Shapes: probe ``[K, H, W]`` complex; object ``[..., H, W]`` complex; waves ``[..., K, H, W]``.
"""

from __future__ import annotations

import torch

from ..errors import ProbeMismatchError
from .fft import fft2c


def check_probe_shape(probe: torch.Tensor, frame_shape: tuple[int, ...]) -> None:
    """Raise :class:`ProbeMismatchError` unless ``probe`` is [K, H, W] with (H, W) == ``frame_shape``."""
    if probe.ndim != 3:
        raise ProbeMismatchError(f"probe must be [modes, H, W], got shape {tuple(probe.shape)}")
    if tuple(probe.shape[-2:]) != tuple(frame_shape[-2:]):
        raise ProbeMismatchError(
            f"probe frames are {tuple(probe.shape[-2:])} but diffraction frames are {tuple(frame_shape[-2:])}"
        )


def exit_waves(probe: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
    """``psi = P_k * O``: [K,H,W] x [...,H,W] -> [...,K,H,W]."""
    return probe * obj.unsqueeze(-3)


def far_field(probe: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
    """``Psi = F(P_k * O)``: [...,K,H,W] complex."""
    return fft2c(exit_waves(probe, obj))


def intensity_from_far_field(psi_far: torch.Tensor) -> torch.Tensor:
    """``I = sum_k |Psi_k|^2`` over the mode axis (-3): [...,K,H,W] -> [...,H,W]."""
    return (psi_far.real**2 + psi_far.imag**2).sum(dim=-3)


def diffraction_intensity(probe: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
    """Expected far-field intensity ``I = sum_k |F(P_k O)|^2`` [..., H, W] (photons if the probe is in sqrt(photons))."""
    check_probe_shape(probe, tuple(obj.shape))
    return intensity_from_far_field(far_field(probe, obj))
