"""Training of the speckle ResNet (Adam + cross-entropy, or Smooth-L1 on n for the regression head).

:func:`train` is a generator yielding progress dicts (``stage`` = ``"batch"`` or ``"epoch"``) so a GUI
worker or the CLI can show and stop it; its return value (``StopIteration.value``, or
:func:`run_training`) is the trained :class:`SpeckleClassifier` with the best validation weights.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..devices import resolve_device
from ..errors import ConfigError, DataValidationError
from ..provenance import provenance
from .classifier import SpeckleClassifier, check_classes
from .patterns import PreprocessConfig
from .resnet import SpeckleResNet


@dataclass(frozen=True)
class TrainConfig:
    """Network and optimiser settings. ``patience``: epochs without validation improvement before the
    learning rate is halved (and, after ``2 * patience``, training stops); None disables both.
    ``max_seconds``: stop after the epoch that exceeds this wall time. ``coord``: add the ``|q|`` input
    channel (see :class:`SpeckleResNet`)."""

    depth: int = 18
    width: int = 16
    task: str = "classification"
    coord: bool = False
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    augment: bool = True
    patience: int | None = 3
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    max_seconds: float | None = None

    def __post_init__(self):
        from ..checks import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, check_fields

        check_fields(self, {"depth": AT_LEAST_ONE, "width": AT_LEAST_ONE, "epochs": AT_LEAST_ONE,
                            "batch_size": AT_LEAST_ONE, "lr": POSITIVE, "weight_decay": NON_NEGATIVE,
                            "patience": NON_NEGATIVE, "seed": NON_NEGATIVE, "log_every": NON_NEGATIVE,
                            "max_seconds": POSITIVE}, where="speckle training config")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"invalid epochs {self.epochs} / batch size {self.batch_size} / lr {self.lr}")


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random flips of both axes and transposition per sample (``x`` ``(B, 1, S, S)``).

    Valid for speckle: ``|F(k)|^2 = |F(-k)|^2`` for a real object and the disk statistics are isotropic.
    """
    b = x.shape[0]
    flips = torch.rand(b, 3, generator=generator) < 0.5
    x = torch.where(flips[:, 0, None, None, None], x.flip(-1), x)
    x = torch.where(flips[:, 1, None, None, None], x.flip(-2), x)
    return torch.where(flips[:, 2, None, None, None], x.transpose(-1, -2), x)


def _targets(labels: np.ndarray, classes: np.ndarray, task: str, norm: tuple[float, float]) -> torch.Tensor:
    if task == "regression":
        return torch.as_tensor((labels - norm[0]) / norm[1], dtype=torch.float32)
    return torch.as_tensor(check_classes(labels, classes), dtype=torch.long)


def _loss(out: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    return F.smooth_l1_loss(out, target, beta=0.1) if task == "regression" else F.cross_entropy(out, target)


def train(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
          preprocess: PreprocessConfig, config: TrainConfig = TrainConfig(),
          classes: np.ndarray | None = None, extra_config: dict | None = None
          ) -> Generator[dict, None, SpeckleClassifier]:
    """Train on prepared inputs ``x_* (N, S, S)`` with disk-number labels ``y_* (N,)``.

    Yields ``{"stage": "batch", "epoch", "step", "steps", "loss"}`` every ``log_every`` batches and at an
    epoch's last batch (``log_every`` 0: no batch events; a caller can then stop only between epochs), and
    ``{"stage": "epoch", "epoch", "epochs", "train_loss", "val_loss", "val_accuracy", "val_mae", "lr",
    "seconds"}`` after each epoch. Returns the classifier with the best validation accuracy
    (regression: lowest validation MAE), its metrics in ``provenance["metrics"]``.
    """
    x_train = np.asarray(x_train, dtype=np.float32)
    x_val = np.asarray(x_val, dtype=np.float32)
    if x_train.ndim != 3 or x_train.shape[0] != len(y_train) or x_val.shape[0] != len(y_val):
        raise DataValidationError(f"inputs must be (N, S, S) matching the labels, got {x_train.shape} / {len(y_train)}")
    if len(x_train) == 0 or len(x_val) == 0:
        raise DataValidationError("training and validation sets must not be empty")
    classes = np.unique(y_train) if classes is None else np.asarray(sorted(classes))
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    model = SpeckleResNet(config.depth, len(classes), config.width, config.task, coord=config.coord).to(device)
    norm = (float(np.mean(classes)), float(np.std(classes) or 1.0)) if config.task == "regression" else (0.0, 1.0)
    yt = _targets(np.asarray(y_train), classes, config.task, norm)
    yv = _targets(np.asarray(y_val), classes, config.task, norm)
    xt, xv = torch.from_numpy(x_train), torch.from_numpy(x_val)
    _check_batch_statistics(model, x_train.shape[1:], config.batch_size, len(x_train), device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = (torch.optim.lr_scheduler.ReduceLROnPlateau(opt, "max", factor=0.5, patience=config.patience)
             if config.patience else None)
    clf = SpeckleClassifier(model, classes, preprocess, norm)
    steps = int(np.ceil(len(xt) / config.batch_size))
    best, best_state, stale, history = -np.inf, None, 0, []
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for step in range(steps):
            idx = perm[step * config.batch_size:(step + 1) * config.batch_size]
            if len(idx) < 2 and step > 0:  # BatchNorm needs > 1 sample
                continue
            xb = xt[idx][:, None]
            if config.augment:
                xb = augment_batch(xb, gen)
            loss = _loss(model(xb.to(device)), yt[idx].to(device), config.task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            if config.log_every and ((step + 1) % config.log_every == 0 or step + 1 == steps):
                yield {"stage": "batch", "epoch": epoch, "step": step + 1, "steps": steps, "loss": float(loss.detach())}
        val = _validate(clf, xv, yv, np.asarray(y_val), config)
        score = val["val_accuracy"] if config.task == "classification" else -val["val_mae"]
        if sched is not None:
            sched.step(score)
        if score > best:
            best, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
        record = {"stage": "epoch", "epoch": epoch, "epochs": config.epochs, "train_loss": total / len(xt),
                  **val, "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        history.append(record)
        yield record
        if config.patience and stale >= 2 * config.patience:
            break
        if config.max_seconds is not None and time.perf_counter() - start > config.max_seconds:
            break
    model.load_state_dict(best_state)
    model.eval()
    best_rec = max(history, key=lambda r: r["val_accuracy"] if config.task == "classification" else -r["val_mae"])
    metrics = {"best_epoch": best_rec["epoch"], "val_accuracy": best_rec["val_accuracy"],
               "val_mae": best_rec["val_mae"], "epochs_run": len(history), "n_train": len(xt), "n_val": len(xv),
               "history": [{k: v for k, v in r.items() if k != "stage"} for r in history]}
    cfg = {"train": asdict(config), "preprocess": asdict(preprocess), "classes": classes.tolist(), **(extra_config or {})}
    clf.provenance = provenance(cfg, metrics)
    return clf


@torch.no_grad()
def _validate(clf: SpeckleClassifier, xv: torch.Tensor, yv: torch.Tensor, labels: np.ndarray,
              config: TrainConfig) -> dict:
    model = clf.model
    model.eval()
    device = clf.device
    outs = [model(xv[i:i + 64][:, None].to(device)).float().cpu() for i in range(0, len(xv), 64)]
    out = torch.cat(outs)
    loss = float(_loss(out, yv, config.task))
    if config.task == "regression":
        value = out.numpy() * clf.target_norm[1] + clf.target_norm[0]
        pred = clf.classes[np.abs(value[:, None] - clf.classes[None, :]).argmin(1)]
    else:
        pred = clf.classes[out.argmax(1).numpy()]
    return {"val_loss": loss, "val_accuracy": float(np.mean(pred == labels)),
            "val_mae": float(np.mean(np.abs(pred - labels)))}


def _check_batch_statistics(model: torch.nn.Module, shape: tuple[int, int], batch_size: int, n_train: int,
                            device) -> None:
    """A typed error when a training batch would give some BatchNorm one value per channel (torch's ValueError).

    ``shape``: a pattern's (H, W). The ResNet halves its input five times: a 32 x 32 pattern reaches its last
    BatchNorm as 1 x 1, so a batch of one pattern cannot be normalised there; a 64 x 64 one (2 x 2) can.
    """
    planes: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, inp, _out: planes.append(int(np.prod(inp[0].shape[2:]))))
             for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 1, *shape, device=device))
    finally:
        for h in hooks:
            h.remove()
    smallest = min(planes, default=2)
    if min(batch_size, n_train) * smallest >= 2:
        return
    h, w = shape
    where = f"the network's last BatchNorm sees {smallest} value per channel and pattern for {h} x {w} px inputs"
    if n_train < 2:
        raise DataValidationError(f"speckle training needs at least 2 training patterns: {where}; got {n_train}")
    raise ConfigError(f"speckle training config: batch_size {batch_size} is too small: {where}; use a batch size "
                      f"of at least 2 (or larger patterns)")


def run_training(gen: Generator[dict, None, SpeckleClassifier], callback=None) -> SpeckleClassifier:
    """Drive a :func:`train` generator to the end (``callback(progress)`` per yield); return the model."""
    from ..progress import drain

    return drain(gen, callback)
