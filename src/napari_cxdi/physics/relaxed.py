"""Poisson-aware relaxed modulus constraint: the mixed-state update that does not chase noise.

The classical modulus replacement sets the far-field modulus to ``sqrt(n)`` exactly, so every
Poisson fluctuation of the counts is pulled into the object. With ``n ~ Poisson(I)`` the modulus
``sqrt(n)`` scatters about ``sqrt(I)`` by about 1/2 (variance stabilisation; less where I << 1), so
a residual ``sqrt(n) - |Psi|`` inside that band carries no information. The relaxed constraint moves
the modulus only by the part of the residual that exceeds ``sigma`` noise standard deviations
(soft threshold):

```
r       = sqrt(n) - |Psi|                 |Psi| = sqrt(sum_k |Psi_k|^2)
s       = sigma * min(1/2, |Psi|)          ~ the std of sqrt(n) at I = |Psi|^2
target  = |Psi| + sign(r) max(|r| - s, 0)
```
With ``sigma = 0`` it is the classical projection.
"""

from __future__ import annotations

import torch

from .fft import fft2c, ifft2c
from .forward import check_probe_shape, exit_waves, intensity_from_far_field
from .mixed_state import probe_norm, split_unmeasured


def sqrt_poisson_std(intensity: torch.Tensor) -> torch.Tensor:
    """Approximate standard deviation of ``sqrt(n)``, ``n ~ Poisson(I)``: ``sqrt(I)`` for I << 1, 1/2 for I >> 1."""
    return torch.minimum(torch.sqrt(intensity.clamp_min(0)), torch.full_like(intensity, 0.5))


def relaxed_modulus_projection(psi_far: torch.Tensor, measured: torch.Tensor, sigma: float = 1.0,
                               eps: float = 1e-8, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Modulus constraint moving ``|Psi|`` toward ``sqrt(n)`` only beyond ``sigma`` noise std (see module).

    valid: False (or NaN counts) where the pixel was not measured: there the model's modulus is kept.
    """
    measured, valid = split_unmeasured(measured, valid)
    power = intensity_from_far_field(psi_far)
    total = torch.sqrt(power + eps)
    residual = torch.sqrt(measured.clamp_min(0)) - total
    band = sigma * sqrt_poisson_std(power)
    target = total + torch.sign(residual) * (residual.abs() - band).clamp_min(0)
    ratio = target / total
    if valid is not None:
        ratio = torch.where(valid, ratio, torch.ones_like(ratio))
    return psi_far * ratio.unsqueeze(-3)


def relaxed_mixed_state_update(obj: torch.Tensor, probe: torch.Tensor, measured: torch.Tensor, sigma: float = 1.0,
                               eps: float = 1e-8, normalisation: str = "max_total",
                               valid: torch.Tensor | None = None) -> torch.Tensor:
    """The mixed-state update direction with the relaxed modulus constraint ([..., H, W]); unmeasured pixels free."""
    check_probe_shape(probe, tuple(measured.shape))
    psi = exit_waves(probe, obj)
    psi_new = ifft2c(relaxed_modulus_projection(fft2c(psi), measured, sigma, eps, valid))
    return (probe.conj() * (psi_new - psi)).sum(dim=-3) / probe_norm(probe, normalisation)
