"""PID3Net hyper-parameters (SPEC §3; thesis §3.3). Defaults follow the official code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..checks import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, check_fields
from ..configs import ConfigMethods
from ..errors import ConfigError

VARIANTS = {
    # name: (loss, refinement)
    "PID3Net-PO": ("poisson", True),
    "PID3Net-MAE": ("mae", True),
    "PID3Net-NR": ("poisson", False),
}
LOSSES = ("poisson", "mae", "sqrt_mse")
# a relative tolerance: an improvement must beat best x (1 - tol); tol >= 1 would make that bound <= 0, so
# no epoch could ever count as an improvement
FRACTION = (0, 1, True, False)
FIELD_RULES = {
    "width": AT_LEAST_ONE, "frames": AT_LEAST_ONE, "refine_steps": NON_NEGATIVE, "refine_width": AT_LEAST_ONE,
    "image_size": AT_LEAST_ONE, "tv_weight": NON_NEGATIVE, "poisson_threshold": NON_NEGATIVE, "alpha0": POSITIVE,
    "support_threshold": UNIT_INTERVAL, "epochs": AT_LEAST_ONE, "batch_size": AT_LEAST_ONE, "lr": POSITIVE,
    "lr_final_factor": (0, 1, False, True), "early_stop_patience": NON_NEGATIVE, "early_stop_tol": FRACTION,
    "preview_every": NON_NEGATIVE, "checkpoint_every": NON_NEGATIVE, "seed": NON_NEGATIVE,
    "alpha_max": POSITIVE, "relaxation_sigma": NON_NEGATIVE, "holdout_fraction": (0, 1, True, False),
    "holdout_patience": NON_NEGATIVE, "holdout_patience_steps": NON_NEGATIVE, "holdout_tol": FRACTION, "noise_floor_margin": UNIT_INTERVAL,
}


@dataclass(frozen=True)
class PID3NetConfig(ConfigMethods):
    """Network, loss and training settings.

    width: channels of the first temporal block (F; the encoder uses F, 2F, 4F, 8F).
    frames: T, consecutive frames per window. refine_steps: K of the refinement block (0 = off).
    image_size: m, the network's working size (a multiple of 16, >= frame size; None = the frame
    size rounded up to 16). loss: ``poisson`` (PID3Net-PO), ``mae`` or ``sqrt_mse``.
    tv_weight: beta of the 3D total variation over x, y, t. poisson_threshold: counts below it are
    treated as zero. alpha0: initial refinement step size (one learnable value per step).
    Training: epochs, batch_size, lr (Adam), lr_final_factor (cosine decay to lr x factor),
    early_stop_patience epochs without R_f improvement (0 = never), seed, device, amp (CUDA only).
    checkpoint_every: when training writes a checkpoint file, write it every this many steps
    (0 = at the end of every epoch), so a crash or kill loses at most that much training.
    Every numeric field is checked (finite, in range) when the config is made: :class:`ConfigError`.
    Refinement (docs/fidelity.md; defaults ``gated`` + ``poisson``, chosen by experiment; the thesis' block
    is refine_mode="additive", refine_relaxation="none"): alpha_max bounds each learned step, alpha = alpha_max sigmoid(a)
    (None = unbounded, the thesis' form); refine_relaxation ``poisson`` replaces the modulus constraint
    of the classical update by the Poisson-aware relaxed one (residuals within relaxation_sigma noise
    std are left alone; ``none`` = classical); refine_mode ``additive`` (thesis: O + alpha
    sigmoid(F_A) exp(i pi tanh F_phi)) or ``gated`` (O + alpha g U with a learned real gain
    g = 2 sigmoid(F_A(|U|)) in (0, 2) on the classical update U: the block can scale the physics
    step but cannot invent a correction the data do not ask for).
    temporal_padding: how the 3-D convolutions pad the time axis of a window: ``replicate`` (default:
    the edge frames repeated, so a window of identical frames gives identical objects and the output
    cannot drift with the position in the window) or ``zeros`` (the thesis; see pid3net/blocks.py).
    Held-out validation (docs/fidelity.md): holdout_fraction of every frame's photons is split off by
    binomial thinning (0 = off) and never trained on; its Poisson NLL is tracked per epoch, the
    state with the lowest one is kept and training stops after holdout_patience epochs without a
    relative improvement of holdout_tol — and at least holdout_patience_steps optimiser steps (a short movie
    has few steps per epoch: 16 frames, batch 4 = 3 steps, so 5 epochs are only 15 noisy held-out readings;
    the kept state is the best one, so waiting longer costs time, never quality). noise_floor_margin: an epoch whose R_f is more than this
    fraction below the noise floor of its own predicted intensity fits noise: it is never kept and
    training stops (None = off).
    """

    width: int = 8
    frames: int = 5
    refine_steps: int = 5
    refine_width: int = 32
    image_size: int | None = None
    loss: str = "poisson"
    tv_weight: float = 0.01
    poisson_threshold: float = 1.0
    alpha0: float = 0.2
    alpha_max: float | None = None
    refine_relaxation: str = "poisson"
    relaxation_sigma: float = 2.0  # 1.0 let the refinement pull noise in at inference (docs/fidelity.md)
    refine_mode: str = "gated"
    temporal_padding: str = "replicate"
    support_threshold: float = 0.02
    epochs: int = 20
    batch_size: int = 4
    lr: float = 1e-3
    lr_final_factor: float = 0.2
    early_stop_patience: int = 0
    early_stop_tol: float = 1e-3
    holdout_fraction: float = 0.1
    holdout_patience: int = 5
    holdout_patience_steps: int = 60
    holdout_tol: float = 0.0  # stop when the held-out NLL stops falling, not when it falls slowly (fidelity.md)
    noise_floor_margin: float | None = 0.05
    preview_every: int = 20
    seed: int | None = 0
    device: str = "auto"
    amp: bool = True
    checkpoint_every: int = 0

    def __post_init__(self):
        check_fields(self, FIELD_RULES, where="PID3Net config")

    @classmethod
    def variant(cls, name: str, **overrides: Any) -> "PID3NetConfig":
        """Config of a named variant: ``PID3Net-PO``, ``PID3Net-MAE``, ``PID3Net-NR``."""
        if name not in VARIANTS:
            raise ConfigError(f"unknown PID3Net variant {name!r}; choose one of {', '.join(VARIANTS)}")
        loss, refine = VARIANTS[name]
        base = {"loss": loss}
        if not refine:
            base["refine_steps"] = 0
        return cls(**{**base, **overrides})

    @property
    def name(self) -> str:
        if self.refine_steps == 0:
            return "PID3Net-NR"
        return {"poisson": "PID3Net-PO", "mae": "PID3Net-MAE"}.get(self.loss, f"PID3Net-{self.loss}")

    def validate(self, frame_shape: tuple[int, int] | None = None, n_frames: int | None = None) -> None:
        if self.width < 2 or self.width % 2:
            raise ConfigError(f"width must be an even number >= 2, got {self.width}")
        if self.frames < 1:
            raise ConfigError(f"frames (T) must be >= 1, got {self.frames}")
        if self.refine_steps < 0:
            raise ConfigError("refine_steps (K) must be >= 0")
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.image_size is not None and (self.image_size % 16 or self.image_size < 16):
            raise ConfigError(f"image size m must be a multiple of 16, got {self.image_size}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("epochs, batch_size and lr must be positive")
        if self.refine_relaxation not in ("none", "poisson"):
            raise ConfigError(f"refine_relaxation must be 'none' or 'poisson', got {self.refine_relaxation!r}")
        if self.temporal_padding not in ("zeros", "replicate"):
            raise ConfigError(f"temporal_padding must be 'zeros' or 'replicate', got {self.temporal_padding!r}")
        if self.refine_mode not in ("additive", "gated"):
            raise ConfigError(f"refine_mode must be 'additive' or 'gated', got {self.refine_mode!r}")
        if self.alpha_max is not None and not self.alpha_max > self.alpha0 > 0:
            raise ConfigError(f"alpha_max must exceed alpha0 > 0, got alpha_max={self.alpha_max}, alpha0={self.alpha0}")
        if self.relaxation_sigma < 0:
            raise ConfigError("relaxation_sigma must be >= 0")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.holdout_patience < 1:
            raise ConfigError(f"holdout_patience must be >= 1 epoch, got {self.holdout_patience}")
        if self.noise_floor_margin is not None and not 0.0 <= self.noise_floor_margin < 1.0:
            raise ConfigError(f"noise_floor_margin must be in [0, 1) or None, got {self.noise_floor_margin}")
        if frame_shape is not None:
            h, w = frame_shape
            if h != w:
                raise ConfigError(f"PID3Net needs square frames, got {h}x{w}; crop the movie first")
            if self.image_size is not None and self.image_size < h:
                raise ConfigError(f"image size m = {self.image_size} is smaller than the {h}x{w} frames")
        if n_frames is not None and self.frames > n_frames:
            raise ConfigError(f"T = {self.frames} frames per window is more than the movie's {n_frames} frames")

    def working_size(self, frame_size: int) -> int:
        """m: the configured size, or the frame size rounded up to a multiple of 16."""
        return self.image_size or -(-frame_size // 16) * 16

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PID3NetConfig":
        values = cls.known(data)
        if "refine_mode" not in data:  # written before issue 17: the thesis' refinement block
            values.setdefault("refine_mode", "additive")
            values.setdefault("refine_relaxation", "none")
        if "temporal_padding" not in data:  # written before the chart-velocity fix: the thesis' zero padding
            values.setdefault("temporal_padding", "zeros")
        return cls(**values)
