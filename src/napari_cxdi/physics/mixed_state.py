"""Classical mixed-state phase-retrieval update (SPEC §2; thesis Eqs. 3.5-3.6).

```
Psi_k  = F(P_k O)
Psi'_k = sqrt(I) * Psi_k / sqrt(sum_k |Psi_k|^2 + eps)          modulus constraint
U      = sum_k conj(P_k) (F^-1(Psi'_k) - P_k O) / norm            object update
O     <- O + alpha U
```
Unmeasured pixels (``valid`` False, or NaN counts) are free: there the projection keeps the model's
modulus, so gaps and masked pixels are filled by the physics, never by zeros.
``norm = max_r sum_k |P_k|^2`` (``"max_total"``, default) or ``sum_k max_r |P_k|^2``
(``"sum_max"``, the official PID3Net code and thesis Eq. 3.5).
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from .fft import fft2c, ifft2c
from .forward import check_probe_shape, exit_waves, intensity_from_far_field

NORMALISATIONS = ("max_total", "sum_max")


def split_unmeasured(measured: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(counts with 0 at unmeasured pixels, valid mask or None when every pixel is measured).

    An unmeasured pixel is one where ``valid`` is False or the count is NaN (the library's encoding of
    masked pixels, see :mod:`napari_cxdi.io.mask`).
    """
    finite = torch.isfinite(measured)
    if valid is not None:
        finite = finite & valid.to(torch.bool)
    if bool(finite.all()):
        return measured, None
    return torch.where(finite, measured, torch.zeros_like(measured)), finite


def modulus_projection(
    psi_far: torch.Tensor, measured: torch.Tensor, eps: float = 1e-8, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Replace the total modulus of the modes by ``sqrt(I)``, keeping each mode's share and phase.

    psi_far: [..., K, H, W] complex; measured: [..., H, W] real (counts; NaN = unmeasured).
    valid: [..., H, W] bool, False where the pixel was not measured: there the modulus is kept.
    """
    measured, valid = split_unmeasured(measured, valid)
    total = torch.sqrt(intensity_from_far_field(psi_far) + eps)
    ratio = torch.sqrt(measured.clamp_min(0)) / total
    if valid is not None:
        ratio = torch.where(valid, ratio, torch.ones_like(ratio))
    return psi_far * ratio.unsqueeze(-3)


def probe_norm(probe: torch.Tensor, normalisation: str = "max_total") -> torch.Tensor:
    """Scalar step normalisation of the object update (see module docstring)."""
    power = probe.real**2 + probe.imag**2
    if normalisation == "max_total":
        return power.sum(dim=0).amax()
    if normalisation == "sum_max":
        return power.flatten(1).amax(dim=1).sum()
    raise ConfigError(f"unknown normalisation {normalisation!r}; choose one of {NORMALISATIONS}")


def mixed_state_update(
    obj: torch.Tensor,
    probe: torch.Tensor,
    measured: torch.Tensor,
    eps: float = 1e-8,
    normalisation: str = "max_total",
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """The update direction ``U`` [..., H, W] for objects ``obj`` [..., H, W] given counts ``measured``.

    valid: False (or NaN counts) where the pixel was not measured; there the model's modulus is kept.
    """
    check_probe_shape(probe, tuple(measured.shape))
    psi = exit_waves(probe, obj)
    psi_far = fft2c(psi)
    psi_new = ifft2c(modulus_projection(psi_far, measured, eps, valid))
    return (probe.conj() * (psi_new - psi)).sum(dim=-3) / probe_norm(probe, normalisation)


def mixed_state_step(
    obj: torch.Tensor,
    probe: torch.Tensor,
    measured: torch.Tensor,
    alpha: float = 1.0,
    eps: float = 1e-8,
    normalisation: str = "max_total",
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """One iteration ``O + alpha * U``."""
    return obj + alpha * mixed_state_update(obj, probe, measured, eps, normalisation, valid)
