"""Photon-counting statistics of the detector."""

from __future__ import annotations

import torch

from ..errors import ConfigError


def photons_per_frame(flux_photons_s: float, exposure_s: float) -> float:
    """Incident photons in one exposure: ``flux * exposure``."""
    if flux_photons_s <= 0 or exposure_s <= 0:
        raise ConfigError(f"flux and exposure must be positive, got {flux_photons_s} ph/s and {exposure_s} s")
    return float(flux_photons_s) * float(exposure_s)


def normalise_to_photons(intensity: torch.Tensor, photons: float) -> torch.Tensor:
    """Rescale each frame [..., H, W] so that it holds ``photons`` expected counts in total (an empty frame stays 0)."""
    total = intensity.sum(dim=(-2, -1), keepdim=True)
    # photons / tiny overflows to inf and 0 * inf is NaN: divide by 1 where a frame is empty
    return intensity * (photons / torch.where(total > 0, total, torch.ones_like(total)))


def poisson_counts(expected: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Detector counts ``~ Poisson(expected)`` (float tensor of integer values), same shape.

    ``expected`` must be real, finite and non-negative (photons per pixel).
    """
    if torch.is_complex(expected):
        raise ConfigError("expected intensity must be real")
    if not torch.isfinite(expected).all() or (expected < 0).any():
        raise ConfigError("expected intensity must be finite and non-negative")
    return torch.poisson(expected.to(torch.float32), generator=generator)
