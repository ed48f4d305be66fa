"""PID3Net: physics-informed 3D CNN with a measurement-informed refinement block (thesis §3.3).

```
x      = log(1 + sqrt(I)) / max                  input [B, 1, T, m, m] (zero-padded to m)
z      = Encoder(x)
A0     = sigmoid(Dec_A(z)),  phi0 = pi tanh(Dec_phi(z))       cropped to the frame, masked by the support S
O0     = A0 exp(i phi0)
for k in 1..K:                                   refinement block, shared weights
    U      = mixed-state update of O (SPEC §2)   (classical, from the measured I and probe P)
    A_u    = sigmoid(F_A(|U|)),  phi_u = pi tanh(F_phi(arg U))
    O      = O + alpha_k A_u exp(i phi_u)
I_hat  = sum_k |F(P_k O)|^2
```
The probe and its support are fixed buffers of the model, so a trained model carries its optics.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..devices import autocast
from ..errors import ProbeMismatchError
from ..physics.forward import diffraction_intensity
from ..physics.mixed_state import mixed_state_update, split_unmeasured
from ..physics.relaxed import relaxed_mixed_state_update
from ..physics.probe import support_mask
from .blocks import Decoder, Encoder, UpdateNet
from .config import PID3NetConfig


def safe_polar(z: torch.Tensor, tiny: float = 1e-20) -> tuple[torch.Tensor, torch.Tensor]:
    """|z| and arg z with finite gradients where z == 0 (outside the probe the update vanishes)."""
    nonzero = (z.real**2 + z.imag**2) > tiny
    z_safe = torch.where(nonzero, z, torch.ones_like(z))
    zero = torch.zeros_like(z.real)
    return torch.where(nonzero, z_safe.abs(), zero), torch.where(nonzero, torch.angle(z_safe), zero)


class PID3Net(nn.Module):
    """PID3Net for frames of size (H, W) == probe size; input counts [B, T, H, W] -> objects [B, T, H, W] complex."""

    def __init__(self, config: PID3NetConfig, probe: np.ndarray | torch.Tensor):
        super().__init__()
        probe_t = torch.as_tensor(np.asarray(probe), dtype=torch.complex64)
        if probe_t.ndim == 2:
            probe_t = probe_t[None]
        frame = tuple(probe_t.shape[-2:])
        config.validate(frame_shape=frame)
        self.config = config
        self.frame_size = frame[0]
        self.m = config.working_size(self.frame_size)
        self.register_buffer("probe", probe_t)
        support = support_mask(probe_t.numpy(), threshold=config.support_threshold, dilate_px=2)
        self.register_buffer("support", torch.as_tensor(support, dtype=torch.float32))
        pad = config.temporal_padding
        self.encoder = Encoder(config.width, pad)
        self.amplitude_decoder = Decoder(config.width, pad)
        self.phase_decoder = Decoder(config.width, pad)
        if config.refine_steps > 0:
            self.f_amplitude = UpdateNet(config.refine_width, pad)
            if config.refine_mode != "gated":  # the gated step has no phase network
                self.f_phase = UpdateNet(config.refine_width, pad)
            if config.alpha_max is None:
                self.alpha = nn.Parameter(torch.full((config.refine_steps,), float(config.alpha0)))
            else:  # bounded: alpha = alpha_max sigmoid(raw), starting at alpha0
                start = math.log(config.alpha0 / (config.alpha_max - config.alpha0))
                self.alpha_raw = nn.Parameter(torch.full((config.refine_steps,), start))
        # channels-last 3D convolutions: ~5x faster on CPU (oneDNN) and the fast layout for cuDNN
        self.to(memory_format=torch.channels_last_3d)

    # -- input and geometry -------------------------------------------------------------------
    def network_input(self, counts: torch.Tensor) -> torch.Tensor:
        """[B, T, H, W] counts -> [B, 1, T, m, m]: log(1 + sqrt(I)) scaled to max 1 per window, zero-padded."""
        x = torch.log1p(torch.sqrt(counts.clamp_min(0)))
        x = x / x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
        pad = self.m - self.frame_size
        if pad:
            lo = pad // 2
            x = nn.functional.pad(x, (lo, pad - lo, lo, pad - lo))
        return x.unsqueeze(1).contiguous(memory_format=torch.channels_last_3d)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, T, m, m] -> [B, T, H, W] (centre crop)."""
        lo = (self.m - self.frame_size) // 2
        return x[:, 0, :, lo : lo + self.frame_size, lo : lo + self.frame_size]

    def apply_support(self, obj: torch.Tensor) -> torch.Tensor:
        """Outside the probe footprint the object is set to vacuum (1): the data say nothing there."""
        s = self.support
        return s * obj + (1.0 - s)

    # -- the network ---------------------------------------------------------------------------
    def initial_object(self, counts: torch.Tensor) -> torch.Tensor:
        """O0 = A0 exp(i phi0) from the encoder-decoder: [B, T, H, W] complex64."""
        with autocast(counts.device, self.config.amp):
            z = self.encoder(self.network_input(counts))
            a = self.amplitude_decoder(z)
            p = self.phase_decoder(z)
        amplitude = torch.sigmoid(self.crop(a).float())
        phase = math.pi * torch.tanh(self.crop(p).float())
        return self.apply_support(torch.polar(amplitude, phase))

    def step_sizes(self) -> torch.Tensor:
        """alpha_k of the K refinement steps (bounded by alpha_max when configured)."""
        if self.config.alpha_max is None:
            return self.alpha
        return self.config.alpha_max * torch.sigmoid(self.alpha_raw)

    def physics_update(self, obj: torch.Tensor, counts: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """The classical mixed-state update U, with the Poisson-aware relaxed modulus constraint if configured;
        unmeasured pixels (``valid`` False) keep the model's modulus."""
        if self.config.refine_relaxation == "poisson":
            return relaxed_mixed_state_update(obj, self.probe, counts, self.config.relaxation_sigma,
                                              normalisation="sum_max", valid=valid)
        return mixed_state_update(obj, self.probe, counts, normalisation="sum_max", valid=valid)

    def refine(self, obj: torch.Tensor, counts: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """K measurement-informed refinement steps (Eqs. 3.7-3.8, or the gated form, see the config)."""
        alpha = self.step_sizes()
        for k in range(self.config.refine_steps):
            update = self.physics_update(obj, counts, valid)
            magnitude, angle = safe_polar(update)
            with autocast(counts.device, self.config.amp):
                a_u = self.f_amplitude(magnitude)
                p_u = None if self.config.refine_mode == "gated" else self.f_phase(angle)
            if self.config.refine_mode == "gated":
                step = 2.0 * torch.sigmoid(a_u.float()) * update
            else:
                step = torch.polar(torch.sigmoid(a_u.float()), math.pi * torch.tanh(p_u.float()))
            obj = self.apply_support(obj + alpha[k] * step)
        return obj

    def forward(self, counts: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Counts [B, T, H, W] (photons; NaN or ``valid`` False = unmeasured) -> objects [B, T, H, W] complex64."""
        if tuple(counts.shape[-2:]) != (self.frame_size, self.frame_size):
            raise ProbeMismatchError(
                f"the model was built for {self.frame_size}x{self.frame_size} frames, got {tuple(counts.shape[-2:])}"
            )
        counts, valid = split_unmeasured(counts, valid)
        obj = self.initial_object(counts)
        if self.config.refine_steps > 0:
            obj = self.refine(obj, counts, valid)
        return obj

    def predicted_intensity(self, obj: torch.Tensor) -> torch.Tensor:
        """I_hat = sum_k |F(P_k O)|^2, [B, T, H, W]."""
        return diffraction_intensity(self.probe, obj)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
