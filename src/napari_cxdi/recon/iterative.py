"""Classical baselines, batched over frames on CPU or GPU (SPEC §2; thesis §3.3.6).

* mixed-state: each frame alone, ``O <- O + alpha U`` (the physics core's update) until R_f saturates;
* mf-PIE: the same data update plus the *virtual overlap* between neighbouring frames
  (``O_t`` pulled toward ``O_{t-1}`` and ``O_{t+1}``) and a spatial total-variation step
  (Takayama et al. 2021's multi-frame PIE with TV, in the mixed-state setting).

Both are generators that yield progress and return the objects [N, H, W] complex64.
Outside the probe footprint the object is held at vacuum (1), as in PID3Net. Unmeasured pixels (NaN
counts) are left free: the projections keep the model's modulus there and R_f leaves them out.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Generator

import numpy as np
import torch

from ..devices import free_device_memory, resolve_device
from ..errors import ConfigError
from ..progress import drain
from ..io.validate import check_probe
from ..physics.forward import diffraction_intensity
from ..physics.mixed_state import mixed_state_update, split_unmeasured
from ..physics.probe import support_mask
from ..pid3net.data import FrameWindows

METHODS = ("mixed-state", "mf-PIE")


@dataclass(frozen=True)
class IterativeConfig:
    """max_iter per batch; stop when R_f improves by less than ``tol`` (relative) over ``patience`` iterations.

    alpha: update step; temporal_weight (mf-PIE): pull toward neighbouring frames; tv_weight (mf-PIE):
    spatial TV step; batch_size: frames per batch; support_threshold: probe footprint for the support.
    """

    max_iter: int = 300
    alpha: float = 1.0
    tol: float = 1e-3
    patience: int = 10
    temporal_weight: float = 0.25
    tv_weight: float = 0.005
    batch_size: int = 32
    support_threshold: float = 0.02
    device: str = "auto"

    def validate(self) -> None:
        if self.max_iter < 1 or self.batch_size < 1 or self.alpha <= 0:
            raise ConfigError("max_iter, batch_size and alpha must be positive")
        if not 0 <= self.temporal_weight < 0.5:
            raise ConfigError("temporal_weight must be in [0, 0.5) for a stable averaging step")


def _rf(predicted: torch.Tensor, measured: torch.Tensor, valid: torch.Tensor | None = None) -> float:
    s = torch.sqrt(measured.clamp_min(0))
    diff = (torch.sqrt(predicted.clamp_min(0)) - s).abs()
    if valid is not None:
        diff = torch.where(valid, diff, torch.zeros_like(diff))
    return float(diff.sum() / s.sum().clamp_min(1e-12))


def tv_gradient(obj: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Gradient of the smoothed isotropic TV of complex images [..., H, W] (periodic differences)."""
    dy = torch.roll(obj, -1, dims=-2) - obj
    dx = torch.roll(obj, -1, dims=-1) - obj
    norm = torch.sqrt(dy.real**2 + dy.imag**2 + dx.real**2 + dx.imag**2 + eps**2)
    py, px = dy / norm, dx / norm
    return -((py - torch.roll(py, 1, dims=-2)) + (px - torch.roll(px, 1, dims=-1)))


def iter_iterative(
    movie, probe, method: str = "mixed-state", config: IterativeConfig | None = None, *, release_memory: bool = True
) -> Generator[dict[str, Any], None, np.ndarray]:
    """Run ``mixed-state`` or ``mf-PIE`` on every frame; yields progress, returns objects [N, H, W].

    ``release_memory=False`` skips the garbage collection / cache release at the end (live mode calls this
    per block of a few frames, where a full ``gc.collect`` would dominate the latency).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown iterative method {method!r}; choose one of {', '.join(METHODS)}")
    cfg = config or IterativeConfig()
    cfg.validate()
    device = resolve_device(cfg.device)
    windows = FrameWindows(movie, 1, device)
    probe_np = check_probe(probe, (windows.n_frames, *windows.frame_shape))
    p = torch.as_tensor(probe_np, device=device)
    support = torch.as_tensor(support_mask(probe_np, cfg.support_threshold), dtype=torch.float32, device=device)
    n = windows.n_frames
    out = np.ones((n, *windows.frame_shape), np.complex64)
    halo = 1 if method == "mf-PIE" else 0
    t0 = time.perf_counter()
    for start in range(0, n, cfg.batch_size):
        stop = min(start + cfg.batch_size, n)
        lo, hi = max(start - halo, 0), min(stop + halo, n)
        measured, valid = split_unmeasured(windows.frames(lo, hi))
        obj = torch.ones_like(measured, dtype=torch.complex64)
        history: list[float] = []
        for it in range(cfg.max_iter):
            obj = obj + cfg.alpha * mixed_state_update(obj, p, measured, valid=valid)
            if method == "mf-PIE":
                if len(obj) > 1 and cfg.temporal_weight > 0:
                    prev = torch.cat([obj[:1], obj[:-1]])
                    nxt = torch.cat([obj[1:], obj[-1:]])
                    obj = obj + cfg.temporal_weight * (prev + nxt - 2 * obj)
                if cfg.tv_weight > 0:
                    obj = obj - cfg.tv_weight * tv_gradient(obj)
            obj = support * obj + (1 - support)
            rf = _rf(diffraction_intensity(p, obj), measured, valid)
            history.append(rf)
            if it % 5 == 0 or it == cfg.max_iter - 1:
                yield {"event": "progress", "method": method, "frames_done": start, "total_frames": n,
                       "iteration": it + 1, "rf": rf, "elapsed_s": time.perf_counter() - t0}
            if len(history) > cfg.patience and history[-cfg.patience - 1] - rf < cfg.tol * history[-cfg.patience - 1]:
                break
        out[start:stop] = obj[start - lo : start - lo + (stop - start)].cpu().numpy()
        yield {"event": "batch", "method": method, "frames_done": stop, "total_frames": n, "iterations": it + 1,
               "rf": history[-1], "elapsed_s": time.perf_counter() - t0}
    if release_memory:
        free_device_memory(device)
    return out


def run_iterative(movie, probe, method: str = "mixed-state", config: IterativeConfig | None = None) -> np.ndarray:
    """Drain :func:`iter_iterative` and return the objects."""
    return drain(iter_iterative(movie, probe, method, config))


def config_dict(config: IterativeConfig) -> dict:
    return asdict(config)
