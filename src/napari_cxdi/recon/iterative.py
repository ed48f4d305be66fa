"""Classical baselines, batched over frames on CPU or GPU (SPEC §2; thesis §3.3.6).

* mixed-state: each frame alone, ``O <- O + alpha U`` (the physics core's update) until R_f saturates;
* mf-PIE: the same data update plus the *virtual overlap* between neighbouring frames
  (``O_t`` pulled toward ``O_{t-1}`` and ``O_{t+1}``) and a spatial total-variation step
  (Takayama et al. 2021's multi-frame PIE with TV, in the mixed-state setting).

Both are generators that yield progress and return the objects [N, H, W] complex64.
Outside the probe footprint the object is held at vacuum (1), as in PID3Net. Unmeasured pixels (NaN
counts) are left free: the projections keep the model's modulus there and R_f leaves them out.

Held-out validation, the same rule as PID3Net's (default ``holdout_fraction`` = 0.1): the counts are
split by binomial thinning; the iterations use the training part (rescaled to the full dose for the
modulus constraint) and the Poisson NLL of the held-out part is tracked per frame. A batch stops when
no frame's held-out NLL has fallen for ``patience`` iterations; each frame keeps its iterate with the
lowest held-out NLL among those whose R_f is not clearly (``noise_floor_margin``) below the noise
floor of their own predicted intensity (where there is none, the iterate closest to the floor).
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
from ..physics.thinning import poisson_nll_per_frame
from ..pid3net.data import FrameWindows, ThinnedWindows

METHODS = ("mixed-state", "mf-PIE")


@dataclass(frozen=True)
class IterativeConfig:
    """max_iter per batch; stop when R_f improves by less than ``tol`` (relative) over ``patience`` iterations.

    alpha: update step; temporal_weight (mf-PIE): pull toward neighbouring frames; tv_weight (mf-PIE):
    spatial TV step; batch_size: frames per batch; support_threshold: probe footprint for the support;
    start_seed: None starts from a flat object (1 everywhere); an integer starts from random phases inside
    the support (an independent random start, as the consistency PRTF needs).
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
    start_seed: int | None = None
    holdout_fraction: float = 0.1
    noise_floor_margin: float | None = 0.05
    seed: int | None = 0

    def __post_init__(self):
        from ..checks import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, check_fields

        check_fields(self, {"max_iter": AT_LEAST_ONE, "alpha": POSITIVE, "tol": NON_NEGATIVE, "patience": AT_LEAST_ONE,
                            "temporal_weight": NON_NEGATIVE, "tv_weight": NON_NEGATIVE, "batch_size": AT_LEAST_ONE,
                            "support_threshold": UNIT_INTERVAL, "holdout_fraction": (0, 1, True, False),
                            "noise_floor_margin": UNIT_INTERVAL, "seed": NON_NEGATIVE, "start_seed": NON_NEGATIVE},
                     where="iterative config")

    def validate(self) -> None:
        if self.max_iter < 1 or self.batch_size < 1 or self.alpha <= 0:
            raise ConfigError("max_iter, batch_size and alpha must be positive")
        if not 0 <= self.temporal_weight < 0.5:
            raise ConfigError("temporal_weight must be in [0, 0.5) for a stable averaging step")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.noise_floor_margin is not None and not 0.0 <= self.noise_floor_margin < 1.0:
            raise ConfigError(f"noise_floor_margin must be in [0, 1) or None, got {self.noise_floor_margin}")


def _rf(predicted: torch.Tensor, measured: torch.Tensor, valid: torch.Tensor | None = None) -> float:
    s = torch.sqrt(measured.clamp_min(0))
    diff = (torch.sqrt(predicted.clamp_min(0)) - s).abs()
    if valid is not None:
        diff = torch.where(valid, diff, torch.zeros_like(diff))
    return float(diff.sum() / s.sum().clamp_min(1e-12))


@dataclass(frozen=True)
class KeptIterate:
    """The iterate kept for each frame of a batch, and why (tensors over the batch's frames).

    Above the noise floor (R_f >= floor x (1 - margin); every iterate when ``margin`` is None) the kept
    iterate is the one with the lowest held-out NLL, or, without a hold-out, the latest one. While no
    iterate of a frame has reached the floor, the closest to it is kept: the highest R_f / floor.

    obj [F, H, W] complex; nll [F] (inf before the first kept iterate); ok [F] bool (kept one is above the
    floor); ratio [F] (R_f / floor of the kept one while none is above).
    """

    obj: torch.Tensor
    nll: torch.Tensor
    ok: torch.Tensor
    ratio: torch.Tensor

    @classmethod
    def start(cls, obj: torch.Tensor) -> "KeptIterate":
        n, device = obj.shape[0], obj.device
        return cls(obj.clone(), torch.full((n,), float("inf"), device=device),
                   torch.zeros(n, dtype=torch.bool, device=device), torch.zeros(n, device=device))

    def update(self, obj: torch.Tensor, rf: torch.Tensor, floor: torch.Tensor, nll: torch.Tensor | None,
               margin: float | None) -> "KeptIterate":
        """The kept iterates after iterate ``obj`` with per-frame ``rf``, noise ``floor`` and held-out ``nll``
        (None: no hold-out)."""
        ok = rf >= floor * (1 - margin) if margin is not None else torch.ones_like(self.ok)
        ratio = rf / floor.clamp_min(1e-12)
        if nll is not None:
            better = ok & (~self.ok | (nll < self.nll))
        else:
            nll = torch.zeros_like(self.nll)
            better = ok.clone()  # the latest iterate above the floor
        fallback = ~ok & ~self.ok & (ratio > self.ratio)  # nothing above the floor yet: the closest to it
        take = better | fallback
        return KeptIterate(torch.where(take[:, None, None], obj, self.obj), torch.where(better, nll, self.nll),
                           self.ok | better, torch.where(fallback, ratio, self.ratio))


def _rf_and_floor_per_frame(predicted: torch.Tensor, measured: torch.Tensor, generator: torch.Generator | None,
                            valid: torch.Tensor | None = None):
    """Per-frame R_f of ``predicted`` against ``measured`` and its Poisson noise floor (physics/thinning.py),
    over the measured pixels (``valid`` True) only."""
    if valid is not None:
        predicted = torch.where(valid, predicted, torch.zeros_like(predicted))
        measured = torch.where(valid, measured, torch.zeros_like(measured))
    sp = torch.sqrt(predicted.clamp_min(0))
    sm = torch.sqrt(measured.clamp_min(0))
    rf = (sp - sm).abs().sum(dim=(-2, -1)) / sm.sum(dim=(-2, -1)).clamp_min(1e-12)
    sn = torch.sqrt(torch.poisson(predicted.clamp_min(0), generator=generator))
    floor = (sn - sp).abs().sum(dim=(-2, -1)) / sn.sum(dim=(-2, -1)).clamp_min(1e-12)
    return rf, floor


def tv_gradient(obj: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Gradient of the smoothed isotropic TV of complex images [..., H, W] (periodic differences)."""
    dy = torch.roll(obj, -1, dims=-2) - obj
    dx = torch.roll(obj, -1, dims=-1) - obj
    norm = torch.sqrt(dy.real**2 + dy.imag**2 + dx.real**2 + dx.imag**2 + eps**2)
    py, px = dy / norm, dx / norm
    return -((py - torch.roll(py, 1, dims=-2)) + (px - torch.roll(px, 1, dims=-1)))


def iter_iterative(
    movie, probe, method: str = "mixed-state", config: IterativeConfig | None = None, preview_frame: int | None = None,
    *, release_memory: bool = True,
) -> Generator[dict[str, Any], None, np.ndarray]:
    """Run ``mixed-state`` or ``mf-PIE`` on every frame; yields progress, returns objects [N, H, W].

    ``preview_frame``: after every batch a ``{"event": "preview"}`` with the amplitude and phase of the
    batch's frame nearest to it, and every 20 iterations of the batch that holds it (so a viewer shows a
    first result within seconds). ``release_memory=False`` skips the garbage collection / cache release
    at the end (live mode calls this per block of a few frames, where a full ``gc.collect`` would
    dominate the latency).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown iterative method {method!r}; choose one of {', '.join(METHODS)}")
    cfg = config or IterativeConfig()
    cfg.validate()
    device = resolve_device(cfg.device)
    holdout = cfg.holdout_fraction > 0
    windows = (ThinnedWindows(movie, 1, device, cfg.holdout_fraction, cfg.seed) if holdout
               else FrameWindows(movie, 1, device))
    keep = 1.0 - cfg.holdout_fraction
    generator = torch.Generator(device=device)
    generator.manual_seed(0 if cfg.seed is None else int(cfg.seed))
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
        train_counts = windows.frames(lo, hi)
        measured, valid = split_unmeasured(train_counts / keep)  # the modulus constraint works at the full dose
        train_zeroed = torch.nan_to_num(train_counts, nan=0.0)  # NaN = unmeasured (left out through valid)
        obj = torch.ones_like(measured, dtype=torch.complex64)
        if cfg.start_seed is not None:
            gen = torch.Generator().manual_seed(int(cfg.start_seed) * 1_000_003 + lo)
            phase = (torch.rand(obj.shape, generator=gen) * 2 - 1) * torch.pi
            obj = support * torch.polar(torch.ones_like(phase), phase).to(device) + (1 - support)
        history: list[float] = []
        heldout = windows.heldout_frames(lo, hi) if holdout else None
        best = KeptIterate.start(obj)
        lowest_nll = torch.full((hi - lo,), float("inf"), device=device)  # over all iterates: the stopping rule
        stale = 0
        stopped = "max_iter"
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
            predicted = diffraction_intensity(p, obj) * keep
            rf = _rf(predicted, train_zeroed, valid)
            history.append(rf)
            rf_frames, floor_frames = _rf_and_floor_per_frame(predicted, train_zeroed, generator, valid)
            nll = (poisson_nll_per_frame(predicted * (cfg.holdout_fraction / keep), heldout, valid=valid)
                   if holdout else None)
            best = best.update(obj, rf_frames, floor_frames, nll, cfg.noise_floor_margin)
            if holdout:
                falling = nll < lowest_nll
                lowest_nll = torch.minimum(lowest_nll, nll)
                stale = 0 if bool(falling.any()) else stale + 1
            event = {"event": "progress", "method": method, "frames_done": start, "total_frames": n,
                     "iteration": it + 1, "rf": rf, "rf_floor": float(floor_frames.mean()),
                     "elapsed_s": time.perf_counter() - t0}
            if holdout:
                event["heldout_nll"] = float(nll.mean())
            if it % 5 == 0 or it == cfg.max_iter - 1:
                yield event
            if preview_frame is not None and it % 20 == 9 and lo <= preview_frame < hi:  # early previews
                k = preview_frame - lo
                yield {"event": "preview", "method": method, "frame": int(preview_frame),
                       "amplitude": obj[k].abs().cpu().numpy(), "phase": torch.angle(obj[k]).cpu().numpy(),
                       "frames_done": start, "total_frames": n, "iteration": it + 1, "rf": rf}
            if holdout and stale >= cfg.patience:
                stopped = "heldout_rising"
                break
            if len(history) > cfg.patience and history[-cfg.patience - 1] - rf < cfg.tol * history[-cfg.patience - 1]:
                stopped = "rf_plateau"
                break
        final = best.obj
        out[start:stop] = final[start - lo : start - lo + (stop - start)].cpu().numpy()
        yield {"event": "batch", "method": method, "frames_done": stop, "total_frames": n, "iterations": it + 1,
               "rf": history[-1], "stopped": stopped, "elapsed_s": time.perf_counter() - t0,
               "below_noise_floor_frames": int((~best.ok).sum()),
               **({"heldout_nll": float(best.nll[best.ok].mean())} if holdout and bool(best.ok.any()) else {})}
        if preview_frame is not None:
            k = int(min(max(preview_frame, start), stop - 1))
            yield {"event": "preview", "method": method, "frame": k, "amplitude": np.abs(out[k]),
                   "phase": np.angle(out[k]).astype(np.float32), "frames_done": stop, "total_frames": n,
                   "iterations": it + 1, "rf": history[-1]}
    if release_memory:
        free_device_memory(device)
    return out


def run_iterative(movie, probe, method: str = "mixed-state", config: IterativeConfig | None = None) -> np.ndarray:
    """Drain :func:`iter_iterative` and return the objects."""
    return drain(iter_iterative(movie, probe, method, config))


def config_dict(config: IterativeConfig) -> dict:
    return asdict(config)
