"""Self-supervised training of PID3Net on the movie itself, as a generator of progress events.

```
trainer = PID3NetTrainer(movie, probe, config)
for event in trainer.run():        # stop iterating at any time: the best model so far stays usable
    ...                            # event["event"] in {"start", "step", "preview", "epoch", "warning", "done"}
model = trainer.model              # best weights (lowest epoch loss), eval mode
```
Adam with cosine decay to ``lr x lr_final_factor`` (official code), batches of windows sampled
across the movie without replacement each epoch, seedable, AMP on CUDA, early stop on an R_f plateau,
and on CUDA out-of-memory the batch is halved with a warning instead of a crash.

Held-out validation (default, ``holdout_fraction`` = 0.1): every frame's photons are split by binomial
thinning into a training part (90 %) and a held-out part (10 %), two independent Poisson measurements.
The network sees and fits only the training part (its input rescaled to the full dose, its predicted
intensity scaled by 0.9 in the loss); the Poisson NLL of the held-out part against 0.1 x the predicted
intensity is summed over each epoch (every window once). The state with the lowest held-out NLL is
kept, training stops when it has not improved for ``holdout_patience`` epochs and at least
``holdout_patience_steps`` steps, and an epoch whose R_f falls clearly below the noise floor of its own
predicted intensity is never kept.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Iterator

import numpy as np
import torch

from ..devices import free_device_memory, is_out_of_memory, resolve_device
from ..errors import ConfigError, TrainingDivergedError
from ..io.validate import check_probe
from ..physics.mixed_state import split_unmeasured
from .config import PID3NetConfig
from ..physics.thinning import expected_poisson_rf
from .data import FrameWindows, ThinnedWindows
from .losses import diffraction_loss, poisson_deviance, total_variation_3d
from .model import PID3Net


def batch_r_factor(predicted: torch.Tensor, measured: torch.Tensor) -> float:
    """R_f over measured pixels (NaN counts = unmeasured, left out)."""
    measured, valid = split_unmeasured(measured)
    sq = torch.sqrt(measured.clamp_min(0))
    diff = (torch.sqrt(predicted.clamp_min(0)) - sq).abs()
    if valid is not None:
        diff = torch.where(valid, diff, torch.zeros_like(diff))
    return float(diff.sum() / sq.sum().clamp_min(1e-12))


class PID3NetTrainer:
    """Trains a (new or given) PID3Net on ``movie`` [N, H, W] counts with ``probe`` [K, H, W].

    model: continue from this model (resume / transfer) instead of a fresh one.
    preview_frame: the frame whose reconstruction is yielded every ``config.preview_every`` steps.
    """

    def __init__(
        self,
        movie,
        probe=None,
        config: PID3NetConfig | None = None,
        model: PID3Net | None = None,
        preview_frame: int = 0,
        optimizer_state: dict | None = None,
        on_checkpoint=None,
    ):
        #: called as ``on_checkpoint(trainer)`` every ``config.checkpoint_every`` steps (0: every epoch)
        self.on_checkpoint = on_checkpoint
        self.config = config or (model.config if model is not None else PID3NetConfig())
        self.device = resolve_device(self.config.device)
        data = movie.data if hasattr(movie, "frames") and hasattr(movie, "data") else movie
        shape = tuple(data.shape)
        if len(shape) != 3:
            raise ConfigError(f"PID3Net trains on a movie [frames, H, W], got shape {shape}")
        self.config.validate(frame_shape=shape[1:], n_frames=shape[0])
        if model is None:
            if probe is None:
                raise ConfigError("a probe is needed to train PID3Net (load one with napari_cxdi.io.read_probe)")
            probe = check_probe(probe, shape)
            if self.config.seed is not None:
                torch.manual_seed(self.config.seed)
            model = PID3Net(self.config, probe)
        elif model.frame_size != shape[1]:
            raise ConfigError(f"the model was trained on {model.frame_size}px frames, this movie has {shape[1]}px")
        self.model = model.to(self.device)
        if self.config.holdout_fraction > 0:
            self.windows: FrameWindows = ThinnedWindows(movie, self.config.frames, self.device,
                                                        self.config.holdout_fraction, self.config.seed)
        else:
            self.windows = FrameWindows(movie, self.config.frames, self.device)
        self.keep = 1.0 - self.config.holdout_fraction
        if not 0 <= preview_frame < shape[0]:
            raise ConfigError(f"preview frame {preview_frame} is outside the movie (0..{shape[0] - 1})")
        self.preview_frame = preview_frame
        self.batch_size = min(self.config.batch_size, self.windows.n_windows)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        if optimizer_state:
            self.optimizer.load_state_dict(optimizer_state)
        self.history: list[dict[str, Any]] = []
        self.best_loss = math.inf
        self.best_state: dict | None = None
        self.step = 0
        self.stopped_reason: str | None = None
        use_amp = self.config.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp) if use_amp else None
        self._rng = np.random.default_rng(self.config.seed)
        self._noise_generator = torch.Generator(device=self.device)
        self._noise_generator.manual_seed(0 if self.config.seed is None else int(self.config.seed))
        self.best_heldout = math.inf
        self.best_epoch: int | None = None
        self.best_below_floor = False  # the kept state is a fallback below the noise floor
        self.best_score = math.inf
        self.lowest_heldout = math.inf
        self.best_floor_ratio = 0.0

    # -- schedule --------------------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.windows.n_windows / self.batch_size)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs

    def learning_rate(self, step: int) -> float:
        """Cosine decay from lr to lr x lr_final_factor over all steps."""
        c = self.config
        progress = min(step / max(self.total_steps - 1, 1), 1.0)
        floor = c.lr * c.lr_final_factor
        return floor + 0.5 * (c.lr - floor) * (1 + math.cos(math.pi * progress))

    # -- one optimisation step ----------------------------------------------------------------------
    def network_counts(self, counts: torch.Tensor) -> torch.Tensor:
        """The training part of the counts rescaled to the full dose (what the network and its refinement see)."""
        return counts / self.keep if self.keep < 1.0 else counts

    def loss_terms(self, counts: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss of a batch of (training-part) counts; ``predicted`` is the model's intensity at the training dose."""
        obj = self.model(self.network_counts(counts))
        predicted = self.model.predicted_intensity(obj)
        if self.keep < 1.0:
            predicted = predicted * self.keep
        diff = diffraction_loss(self.config.loss, predicted, counts, self.config.poisson_threshold)
        tv = total_variation_3d(obj)
        return {"loss": diff + self.config.tv_weight * tv, "diffraction": diff, "tv": tv, "predicted": predicted}

    def _optimise(self, counts: torch.Tensor, heldout: torch.Tensor | None = None) -> dict[str, float]:
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.loss_terms(counts)
        if self.scaler is not None:
            self.scaler.scale(terms["loss"]).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            terms["loss"].backward()
            self.optimizer.step()
        predicted = terms["predicted"].detach().float()
        values = {
            "loss": float(terms["loss"].detach()),
            "diffraction_loss": float(terms["diffraction"].detach()),
            "tv": float(terms["tv"].detach()),
            "rf": batch_r_factor(predicted, counts),
            "rf_floor": expected_poisson_rf(predicted, generator=self._noise_generator, valid=torch.isfinite(counts)),
        }
        if heldout is not None:
            # the prediction never saw the held-out photons: an unbiased score of the fit
            scale = self.config.holdout_fraction / self.keep
            values["heldout_nll"] = float(poisson_deviance(predicted * scale, heldout, threshold=0.0))
        return values

    def _train_step(self, starts: np.ndarray) -> tuple[dict[str, float], list[dict]]:
        """One step; on CUDA OOM the batch is halved (warning events) and the step retried."""
        warnings: list[dict] = []
        while True:
            try:
                batch = starts[: self.batch_size]
                counts = self.windows.batch(batch)
                heldout = self.windows.heldout_batch(batch) if isinstance(self.windows, ThinnedWindows) else None
                return self._optimise(counts, heldout), warnings
            except Exception as exc:  # noqa: BLE001
                if not (self.device.type == "cuda" and is_out_of_memory(exc)) or self.batch_size == 1:
                    raise
                self.optimizer.zero_grad(set_to_none=True)
                free_device_memory(self.device)
                self.batch_size = max(1, self.batch_size // 2)
                warnings.append({"event": "warning", "message": f"GPU out of memory: batch size halved to {self.batch_size}"})

    # -- preview ---------------------------------------------------------------------------------
    @torch.no_grad()
    def preview(self) -> dict[str, Any]:
        """Current reconstruction of the preview frame: amplitude and phase [H, W]."""
        was_training = self.model.training
        self.model.eval()
        start = min(max(self.preview_frame - self.config.frames // 2, 0), self.windows.n_frames - self.config.frames)
        obj = self.model(self.network_counts(self.windows.batch([start])))[0, self.preview_frame - start]
        self.model.train(was_training)
        return {
            "event": "preview", "step": self.step, "frame": self.preview_frame,
            "amplitude": obj.abs().cpu().numpy(), "phase": torch.angle(obj).cpu().numpy(),
        }

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> Iterator[dict[str, Any]]:
        """Train; yields progress events. Closing the generator early keeps the best model so far."""
        c = self.config
        t0 = time.perf_counter()
        self.model.train()
        yield {
            "event": "start", "total_steps": self.total_steps, "epochs": c.epochs, "steps_per_epoch": self.steps_per_epoch,
            "n_parameters": self.model.n_parameters(), "device": str(self.device), "variant": c.name,
        }
        best_rf, stale, stale_heldout, stale_steps = math.inf, 0, 0, 0
        holdout = isinstance(self.windows, ThinnedWindows)
        try:
            for epoch in range(c.epochs):
                order = self._rng.permutation(self.windows.n_windows)
                sums = {"loss": 0.0, "rf": 0.0, "rf_floor": 0.0, "heldout_nll": 0.0}
                n = 0
                for b in range(self.steps_per_epoch):
                    starts = order[b * self.batch_size : (b + 1) * self.batch_size]
                    if len(starts) == 0:
                        continue
                    lr = self.learning_rate(self.step)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    values, warnings = self._train_step(starts)
                    yield from warnings
                    self._check_finite(values["loss"])
                    self.step += 1
                    if c.checkpoint_every and self.step % c.checkpoint_every == 0:
                        self._checkpoint()
                    n += 1
                    for key in sums:
                        sums[key] += values.get(key, 0.0)
                    elapsed = time.perf_counter() - t0
                    yield {
                        "event": "step", "epoch": epoch, "step": self.step, "total_steps": self.total_steps, "lr": lr,
                        "elapsed_s": elapsed, "eta_s": elapsed / self.step * (self.total_steps - self.step),
                        "batch_size": self.batch_size, **values,
                    }
                    if c.preview_every and self.step % c.preview_every == 0:
                        yield self.preview()
                record = {"epoch": epoch, "loss": sums["loss"] / max(n, 1), "rf": sums["rf"] / max(n, 1),
                          "rf_floor": sums["rf_floor"] / max(n, 1), "lr": lr, "elapsed_s": time.perf_counter() - t0}
                if holdout:
                    record["heldout_nll"] = sums["heldout_nll"] / max(n, 1)
                below_floor = c.noise_floor_margin is not None and record["rf"] < record["rf_floor"] * (1 - c.noise_floor_margin)
                record["below_noise_floor"] = bool(below_floor)
                self.history.append(record)
                # stopping: the held-out NLL of every epoch; keeping: the best held-out NLL among the epochs
                # whose R_f is not clearly below the noise floor (until one is, the closest to the floor)
                if holdout:
                    if record["heldout_nll"] < self.lowest_heldout * (1 - c.holdout_tol):
                        self.lowest_heldout, stale_heldout, stale_steps = record["heldout_nll"], 0, 0
                    else:
                        stale_heldout += 1
                        stale_steps += n
                score = record["heldout_nll"] if holdout else record["loss"]
                if below_floor:
                    ratio = record["rf"] / max(record["rf_floor"], 1e-12)
                    keep = self.best_state is None or (self.best_below_floor and ratio > self.best_floor_ratio)
                    if keep:
                        self.best_floor_ratio = ratio
                else:
                    keep = self.best_state is None or self.best_below_floor or score < self.best_score
                if keep:
                    self.best_below_floor = below_floor
                    self.best_score = score if not below_floor else math.inf
                    self.best_loss = record["loss"]
                    self.best_heldout = record.get("heldout_nll", math.inf)
                    self.best_epoch = epoch
                    self.best_state = copy.deepcopy(self.model.state_dict())
                if not c.checkpoint_every:
                    self._checkpoint()
                yield {"event": "epoch", **record, "best_epoch": self.best_epoch}
                if holdout and stale_heldout >= c.holdout_patience and stale_steps >= c.holdout_patience_steps:
                    self.stopped_reason = "heldout_rising"
                    break
                if c.early_stop_patience:
                    if record["rf"] < best_rf * (1 - c.early_stop_tol):
                        best_rf, stale = record["rf"], 0
                    else:
                        stale += 1
                        if stale >= c.early_stop_patience:
                            self.stopped_reason = "early_stop"
                            break
            self.stopped_reason = self.stopped_reason or "completed"
        finally:
            if self.stopped_reason is None:
                self.stopped_reason = "cancelled"
            self.finish()
        yield {"event": "done", "stopped": self.stopped_reason, "history": self.history, "steps": self.step,
               "best_epoch": self.best_epoch, "best_below_noise_floor": self.best_below_floor,
               "elapsed_s": time.perf_counter() - t0}

    def _check_finite(self, loss: float) -> None:
        """Stop with :class:`TrainingDivergedError` on a NaN/inf loss (the best weights are restored)."""
        if math.isfinite(loss):
            return
        self.stopped_reason = "diverged"
        raise TrainingDivergedError(
            f"training diverged at step {self.step + 1} (loss {loss}); stopped with the best weights so far"
            f"{' (the checkpoint file keeps the last good state)' if self.on_checkpoint else ''}. "
            f"Lower the learning rate (lr = {self.config.lr:g}) or check the movie for bad pixels")

    def _checkpoint(self) -> None:
        """Hand the current (finite) weights to ``on_checkpoint``; never saves NaN weights."""
        if self.on_checkpoint is None:
            return
        if not all(bool(torch.isfinite(v).all()) for v in self.model.state_dict().values() if v.is_floating_point()):
            self._check_finite(float("nan"))
        self.on_checkpoint(self)

    def finish(self) -> PID3Net:
        """Load the best weights seen (if any), re-estimate BatchNorm statistics, switch to eval mode.

        Safe to call more than once."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
            self.calibrate_batchnorm()
        self.model.eval()
        return self.model

    @torch.no_grad()
    def calibrate_batchnorm(self, max_windows: int = 256) -> None:
        """Replace BatchNorm running statistics by their exact average over the movie's windows.

        Short trainings leave the exponential running averages far from the final weights' statistics,
        which makes eval-mode reconstructions worse than the training loss suggests.
        """
        norms = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        saved = [(m, m.momentum) for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        self.model.train()
        starts = np.linspace(0, self.windows.n_windows - 1, min(max_windows, self.windows.n_windows)).astype(int)
        for i in range(0, len(starts), self.batch_size):
            self.model(self.network_counts(self.windows.batch(starts[i : i + self.batch_size])))
        for m, momentum in saved:
            m.momentum = momentum
        self.model.eval()

    def train(self) -> PID3Net:
        """Run to the end without reporting progress."""
        for _ in self.run():
            pass
        return self.model
