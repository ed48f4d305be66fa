"""Training SCANN / SCANN+ as a generator of progress dicts, checkpoints and transfer learning.

Standardised targets, MSE loss, Adam with cosine warm restarts (5e-4 -> 1e-4), early stopping
on the validation MAE, seeded splits and initialisation (thesis §4.3.5, SPEC §6).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..devices import resolve_device
from ..errors import CancelledError, ConfigError, DataValidationError, InputFileError
from ..provenance import provenance
from .batching import batches
from .environments import EnvironmentSet
from .model import SCANN, ScannConfig, build_model
from .voronoi import VoronoiConfig

CHECKPOINT_FORMAT = "napari-cxdi-scann/1"


@dataclass
class TrainConfig:
    """Optimisation settings (epochs count passes over the training set)."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 5e-4
    lr_min: float = 1e-4
    restart_epochs: int = 10  # T_0 of the warm-restart cosine schedule, in epochs
    patience: int = 30  # early stopping: epochs without a better validation MAE
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    time_limit_s: float | None = None  # stop (keeping the best model) after this wall time
    log_every: int = 20  # yield a "step" dict every this many steps (0: never)
    checkpoint: str | None = None  # write the best model here (atomically) on improvement
    init_from: str | None = None  # transfer learning: start from this checkpoint's weights
    # "restarts": cosine with warm restarts every restart_epochs; "time_cosine": one cosine from lr to
    # lr_min over time_limit_s of wall time (for a fixed compute budget on a busy machine; not
    # bit-reproducible, since the step at which the rate falls depends on the machine's speed)
    lr_schedule: str = "restarts"
    loss: str = "mse"  # "mse" (thesis) or "l1" (mean absolute error of the standardised targets)
    # snapshot ensemble (lr_schedule "time_cosine" only): the last ``snapshot_fraction`` of the time
    # budget is split into ``snapshots`` short cosine cycles (snapshot_lr -> lr_min); the main cosine
    # (lr -> lr_min) ends where they begin. A "snapshot" dict (with the weights) is yielded at the end of
    # the main cosine and of every cycle: snapshots + 1 models from one run (Huang et al. 2017,
    # Garipov et al. 2018), for an ensemble when independent members cannot be afforded.
    snapshots: int = 0
    snapshot_fraction: float = 0.3
    snapshot_lr: float | None = None  # default lr / 5
    # weight of each target's term in the loss (on standardised targets), None: equal. The standardised
    # loss weighs a target's error in its own units by 1 / its standard deviation, so weights equal to the
    # targets' standard deviations make it the loss in target units (QM9 LUMO's spread is ~2.1x HOMO's)
    target_weights: tuple[float, ...] | None = None

    def __post_init__(self):
        from ..checks import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, check_fields

        check_fields(self, {"epochs": AT_LEAST_ONE, "batch_size": AT_LEAST_ONE, "lr": POSITIVE, "lr_min": POSITIVE,
                            "restart_epochs": AT_LEAST_ONE, "patience": NON_NEGATIVE, "weight_decay": NON_NEGATIVE,
                            "seed": NON_NEGATIVE, "time_limit_s": POSITIVE, "log_every": NON_NEGATIVE},
                     where="SCANN training config")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be >= 1")
        if not (0 < self.lr_min <= self.lr):
            raise ConfigError(f"need 0 < lr_min <= lr, got lr={self.lr}, lr_min={self.lr_min}")
        if self.lr_schedule not in ("restarts", "time_cosine"):
            raise ConfigError(f"lr_schedule must be 'restarts' or 'time_cosine', got {self.lr_schedule!r}")
        if self.lr_schedule == "time_cosine" and not self.time_limit_s:
            raise ConfigError("lr_schedule 'time_cosine' needs time_limit_s")
        if self.loss not in ("mse", "l1"):
            raise ConfigError(f"loss must be 'mse' or 'l1', got {self.loss!r}")
        if self.snapshots < 0 or not (0 < self.snapshot_fraction < 1):
            raise ConfigError(f"need snapshots >= 0 and 0 < snapshot_fraction < 1, got {self.snapshots}, "
                              f"{self.snapshot_fraction}")
        if self.snapshots and self.lr_schedule != "time_cosine":
            raise ConfigError("snapshots need lr_schedule 'time_cosine' (cycles are laid out on the time budget)")
        if self.snapshot_lr is not None and not (self.lr_min <= self.snapshot_lr <= self.lr):
            raise ConfigError(f"need lr_min <= snapshot_lr <= lr, got {self.snapshot_lr}")
        if self.target_weights is not None:
            self.target_weights = tuple(float(w) for w in self.target_weights)
            if not self.target_weights or min(self.target_weights) <= 0:  # finite: check_fields
                raise ConfigError(f"target_weights must be > 0, one per target, got {self.target_weights}")

    def time_lr(self, frac: float) -> tuple[float, int]:
        """Learning rate at fraction ``frac`` of the time budget, and the index of the phase it is in
        (0: main cosine, k >= 1: snapshot cycle k)."""
        frac = min(max(frac, 0.0), 1.0)
        if not self.snapshots:
            return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1 + math.cos(math.pi * frac)), 0
        main = 1.0 - self.snapshot_fraction
        if frac < main:
            return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1 + math.cos(math.pi * frac / main)), 0
        width = self.snapshot_fraction / self.snapshots
        k = min(int((frac - main) / width), self.snapshots - 1)
        x = (frac - main - k * width) / width
        top = self.snapshot_lr if self.snapshot_lr is not None else max(self.lr_min, self.lr / 5)
        return self.lr_min + 0.5 * (top - self.lr_min) * (1 + math.cos(math.pi * x)), k + 1


@dataclass
class TrainResult:
    model: SCANN
    best_val_mae: list[float]
    best_epoch: int
    history: list[dict] = field(default_factory=list)


def set_seed(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate(model: SCANN, envs: EnvironmentSet, batch_size: int = 256, device=None) -> np.ndarray:
    """Predictions (S, T) in target units for all structures of ``envs``."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.zeros((len(envs), model.config.n_targets))
    for sel, batch in batches(envs, batch_size, device=device):
        out[sel] = model(batch).prediction.double().cpu().numpy()
    model.train(was_training)
    return out


def mae(pred: np.ndarray, target: np.ndarray) -> list[float]:
    """Mean absolute error per target column, ignoring NaN targets."""
    return [float(np.nanmean(np.abs(pred[:, t] - target[:, t]))) for t in range(target.shape[1])]


def _atomic_torch_save(obj, path: Path, protected=()) -> None:
    from ..io.safe_write import torch_save

    path.parent.mkdir(parents=True, exist_ok=True)
    torch_save(obj, path, overwrite=True, protected=protected)


def save_checkpoint(path: str | os.PathLike, model: SCANN, *, voronoi: VoronoiConfig | None = None,
                    train_config: TrainConfig | None = None, metrics: dict | None = None,
                    target_units: list[str] | None = None, overwrite: bool = True) -> Path:
    """Write a self-contained checkpoint (weights, model + Voronoi config, target statistics, provenance)."""
    from ..io.safe_write import check_output

    path = check_output(path, overwrite=overwrite)
    config = {"model": asdict(model.config), "voronoi": asdict(voronoi or VoronoiConfig()),
              "train": asdict(train_config) if train_config else None}
    obj = {
        "format": CHECKPOINT_FORMAT,
        "model_config": asdict(model.config),
        "voronoi_config": asdict(voronoi or VoronoiConfig()),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "target_names": list(model.config.target_names),
        "target_units": list(target_units or [""] * model.config.n_targets),
        "target_mean": model.target_mean.cpu().tolist(),
        "target_std": model.target_std.cpu().tolist(),
        # plain JSON types only, so the file loads with torch.load(weights_only=True)
        "provenance": json.loads(json.dumps(provenance(config, metrics), default=str)),
    }
    _atomic_torch_save(obj, path)
    return path


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[SCANN, dict]:
    """Model (eval mode) and the checkpoint's metadata (everything but the weights)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "checkpoint does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputFileError(path, f"not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise InputFileError(path, f"not a SCANN checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    model = build_model(obj["model_config"])
    model.load_state_dict(obj["state_dict"])
    model.to(resolve_device(device)).eval()
    meta = {k: v for k, v in obj.items() if k != "state_dict"}
    return model, meta


def _transfer(model: SCANN, path: str) -> dict:
    """Copy every weight whose name and shape match from a checkpoint (the readout may differ)."""
    src, _ = load_checkpoint(path)
    own = model.state_dict()
    copied, skipped = [], []
    for k, v in src.state_dict().items():
        if k in own and own[k].shape == v.shape and not k.startswith("target_"):
            own[k] = v.clone()
            copied.append(k)
        else:
            skipped.append(k)
    model.load_state_dict(own)
    return {"copied": len(copied), "skipped": skipped}


def _target_stats(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = np.nanmean(y, axis=0)
    std = np.nanstd(y, axis=0)
    return mean, np.where(std > 1e-12, std, 1.0)


def train_iter(model_config: ScannConfig, train_set: EnvironmentSet, val_set: EnvironmentSet,
               config: TrainConfig | None = None, voronoi: VoronoiConfig | None = None,
               stop=None) -> Iterator[dict]:
    """Train SCANN, yielding progress dicts; the last one has ``event == "done"`` and the model.

    Dicts: ``{"event": "step", "epoch", "step", "loss", "lr", "elapsed_s"}`` every ``log_every``
    steps, ``{"event": "epoch", ..., "train_loss", "val_mae" (list, target units), "best_val_mae",
    "improved"}`` after each epoch, and ``{"event": "done", "result": TrainResult, "reason"}``.
    Closing the generator (or ``stop()`` returning True) stops between steps.
    """
    cfg = config or TrainConfig()
    if len(train_set) == 0 or len(val_set) == 0:
        raise DataValidationError("training and validation sets must not be empty")
    if train_set.targets.shape[1] != model_config.n_targets:
        raise ConfigError(f"model predicts {model_config.n_targets} targets but the data has "
                          f"{train_set.targets.shape[1]}")
    if np.all(np.isnan(train_set.targets)):
        raise DataValidationError("the training set has no target values")
    if cfg.target_weights is not None and len(cfg.target_weights) != model_config.n_targets:
        raise ConfigError(f"target_weights has {len(cfg.target_weights)} values for {model_config.n_targets} "
                          f"targets: give one weight per target")
    if cfg.checkpoint:  # never train onto the model we start from; checked before any work
        from ..io.safe_write import check_output

        check_output(cfg.checkpoint, overwrite=True, protected=[cfg.init_from])
    set_seed(cfg.seed)
    device = resolve_device(cfg.device)
    model = build_model(model_config)
    info = _transfer(model, cfg.init_from) if cfg.init_from else None
    mean, std = _target_stats(train_set.targets)
    model.target_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
    model.target_std.copy_(torch.as_tensor(std, dtype=torch.float32))
    model.to(device).train()
    weights = torch.as_tensor(cfg.target_weights or [1.0] * model_config.n_targets, dtype=torch.float32,
                              device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=max(1, cfg.restart_epochs * steps_per_epoch), eta_min=cfg.lr_min)
    if info is not None:
        yield {"event": "transfer", "init_from": cfg.init_from, **info}

    best, best_epoch, best_state, history = [math.inf], -1, None, []
    step, t0, reason = 0, time.time(), "epochs"
    stopped, phase = False, 0
    for epoch in range(cfg.epochs):
        losses = []
        for _, batch in batches(train_set, cfg.batch_size, shuffle=True, seed=cfg.seed * 100003 + epoch,
                                device=device):
            if stop is not None and stop():
                stopped, reason = True, "stopped"
                break
            out = model(batch)
            y = batch["y"]
            ok = ~torch.isnan(y)
            diff = model.standardized(out.prediction) - model.standardized(torch.nan_to_num(y))
            loss = ((diff.abs() if cfg.loss == "l1" else diff ** 2) * weights)[ok].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if cfg.lr_schedule == "time_cosine":
                lr_now, phase_now = cfg.time_lr((time.time() - t0) / cfg.time_limit_s)
                for group in optimizer.param_groups:
                    group["lr"] = lr_now
                if phase_now != phase:  # the previous phase ended at its lowest rate: a snapshot
                    yield _snapshot(model, phase, step, epoch, t0)
                    phase = phase_now
            else:
                scheduler.step()
            step += 1
            losses.append(float(loss.detach()))
            if cfg.log_every and step % cfg.log_every == 0:
                yield {"event": "step", "epoch": epoch, "step": step, "loss": losses[-1],
                       "lr": optimizer.param_groups[0]["lr"], "elapsed_s": time.time() - t0}
            if cfg.time_limit_s is not None and time.time() - t0 > cfg.time_limit_s:
                stopped, reason = True, "time_limit"
                break
        if not losses:
            break
        val = mae(evaluate(model, val_set, device=device), val_set.targets)
        improved = float(np.mean(val)) < float(np.mean(best))
        if improved:
            best, best_epoch = val, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if cfg.checkpoint:
                save_checkpoint(cfg.checkpoint, model, voronoi=voronoi, train_config=cfg,
                                metrics={"val_mae": val, "epoch": epoch}, target_units=train_set.target_units)
        record = {"event": "epoch", "epoch": epoch, "step": step, "train_loss": float(np.mean(losses)),
                  "val_mae": val, "best_val_mae": best, "improved": improved,
                  "lr": optimizer.param_groups[0]["lr"], "elapsed_s": time.time() - t0}
        history.append(record)
        yield record
        if stopped:
            break
        if epoch - best_epoch >= cfg.patience:
            reason = "early_stopping"
            break
    if cfg.snapshots and reason != "stopped":  # the last cycle's end (or as far as it got)
        yield _snapshot(model, phase, step, epoch, t0)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    yield {"event": "done", "reason": reason, "best_val_mae": best, "best_epoch": best_epoch,
           "elapsed_s": time.time() - t0,
           "result": TrainResult(model, best, best_epoch, history)}


def _snapshot(model: SCANN, phase: int, step: int, epoch: int, t0: float) -> dict:
    return {"event": "snapshot", "phase": phase, "step": step, "epoch": epoch, "elapsed_s": time.time() - t0,
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}


def fit(model_config: ScannConfig, train_set: EnvironmentSet, val_set: EnvironmentSet,
        config: TrainConfig | None = None, voronoi: VoronoiConfig | None = None, callback=None) -> TrainResult:
    """Run :func:`train_iter` to the end; ``callback(progress_dict)`` sees every dict."""
    for p in train_iter(model_config, train_set, val_set, config, voronoi):
        if callback is not None:
            callback(p)
        if p["event"] == "done":
            return p["result"]
    raise CancelledError("training ended without a result")
