"""Streaming training of the radial speckle models on freshly simulated patterns.

A process pool (1-2 workers) simulates n-disk patterns chunk after chunk (ideal analytic disks, 513 window
binned 3 x 3), adds Poisson noise at photon counts drawn log-uniformly from ``photons`` (augmentation),
and returns only the feature vectors; the main process trains on the growing feature cache while the
next chunk is simulated (no fixed dataset, no images kept). The learning rate follows a cosine over the
time budget. Afterwards the one-disk-fit read-out is combined with the network (weight and temperature
chosen on a validation split simulated with its own seed, :func:`.radial.fit_readout`) and the domain
statistics are measured on that split.

``workers=0`` simulates in this process, a chunk when the training waits for it (no pool: tests, debugging);
``clock`` (default :func:`time.perf_counter`) measures the budget, a fake one makes it deterministic.

Seeds: training pattern ``j`` of class ``n`` comes from ``SeedSequence([seed, n, j])``; validation from
``val_seed``; keep both different from any test seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import time
from collections.abc import Callable, Generator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..configs import ConfigMethods
from ..errors import ConfigError
from ..provenance import provenance
from .calibration import reliability
from .dataset import SpeckleDatasetConfig, _single_threaded_children, simulate_pattern
from .disks import N_MAX, N_MIN
from .evaluate import classification_report
from .features import FeatureConfig, add_counts_noise, radial_features, to_feature_grid
from .radial import ARCHS, RadialClassifier, RadialNet, domain_statistics, fit_readout

KINDS = ("mono", "poly")


@dataclass(frozen=True)
class RadialTrainConfig(ConfigMethods):
    """``kind``: mono- or polydisperse disks. ``photons``: (low, high) photons per pattern for the noisy
    copies (log-uniform); ``noisy_copies`` noisy feature vectors per simulated pattern, plus the noise-free
    one if ``clean``. ``max_minutes`` wall-time budget (training goes on over the cached features until it
    is spent), ``max_per_class`` patterns per class at most, ``epochs_per_chunk`` passes over the cache
    before waiting for the next simulated chunk, ``max_epochs`` a cap on the passes (small tests).
    ``workers`` simulation processes (0: simulate in this process, no pool)."""

    kind: str = "mono"
    arch: str = "mlp"
    hidden: int = 256
    dropout: float = 0.1
    n_values: tuple[int, ...] = tuple(range(N_MIN, N_MAX + 1))
    photons: tuple[float, float] = (3e4, 3e7)
    noisy_copies: int = 2
    clean: bool = True
    chunk_per_class: int = 8
    max_minutes: float = 10.0
    max_per_class: int = 2000
    val_per_class: int = 40
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    epochs_per_chunk: int = 3
    max_epochs: int = 1_000_000
    workers: int = 1
    method: str = "analytic"
    seed: int = 1
    val_seed: int = 2
    features: dict = dataclasses.field(default_factory=lambda: FeatureConfig().to_dict())

    def __post_init__(self):
        object.__setattr__(self, "n_values", tuple(int(n) for n in self.n_values))
        object.__setattr__(self, "photons", tuple(float(p) for p in self.photons))
        self.validate()

    def validate(self) -> RadialTrainConfig:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")
        lo, hi = self.photons
        if not 0 < lo <= hi:
            raise ConfigError(f"photon range must be 0 < low <= high, got {self.photons}")
        if self.noisy_copies < 0 or (self.noisy_copies == 0 and not self.clean):
            raise ConfigError("need noise-free and/or noisy copies")
        if self.max_minutes <= 0 or self.chunk_per_class < 1 or self.val_per_class < 2:
            raise ConfigError("max_minutes, chunk_per_class must be > 0 and val_per_class >= 2")
        if self.seed == self.val_seed:
            raise ConfigError("training and validation seeds must differ")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0 (0: simulate in this process), got {self.workers}")
        FeatureConfig.from_dict(self.features)
        return self



def simulate_features(kind: str, n_values, seed: int, start: int, count: int, photons=(3e4, 3e7),
                      noisy_copies: int = 2, clean: bool = True, method: str = "analytic",
                      features: dict | None = None, fixed_photons: float | None = None) -> dict:
    """Features of patterns ``j = start .. start+count-1`` of every class in ``n_values``.

    Returns ``{"x" (M, F) float32, "y" (M,), "photons" (M,) (inf = noise-free), "j" (M,)}``. The noise of
    copy ``c`` of pattern ``(n, j)`` comes from ``SeedSequence([seed, n, j, 1 + c])``; ``fixed_photons``
    replaces the log-uniform draw (test sets at one dose)."""
    fcfg = FeatureConfig.from_dict(features or {})
    cfg = SpeckleDatasetConfig(n_values=tuple(n_values), per_class=1, window=fcfg.window, bin=fcfg.bin,
                               polydisperse=kind == "poly", method=method, seed=seed, block=fcfg.block)
    grids, ys, js = [], [], []
    for n in n_values:
        for j in range(start, start + count):
            pat, _ = simulate_pattern(n, j, cfg)
            grids.append(pat)
            ys.append(n)
            js.append(j)
    grid = to_feature_grid(np.stack(grids), fcfg, input_bin=fcfg.bin)
    ys, js = np.asarray(ys), np.asarray(js)
    xs, yy, ph, jj = [], [], [], []
    if clean:
        xs.append(radial_features(grid, fcfg, fcfg.bin, counts=False))
        yy.append(ys), ph.append(np.full(len(ys), np.inf)), jj.append(js)
    lo, hi = np.log10(photons[0]), np.log10(photons[1])
    for c in range(noisy_copies):
        noisy = np.empty_like(grid)
        dose = np.empty(len(ys))
        for i, (n, j) in enumerate(zip(ys, js)):
            rng = np.random.default_rng(np.random.SeedSequence([seed, int(n), int(j), 1 + c]))
            dose[i] = fixed_photons if fixed_photons else 10 ** rng.uniform(lo, hi)
            noisy[i] = add_counts_noise(grid[i], dose[i], rng, fcfg)[0]
        xs.append(radial_features(noisy, fcfg, fcfg.bin, counts=True))
        yy.append(ys), ph.append(dose), jj.append(js)
    return {"x": np.concatenate(xs), "y": np.concatenate(yy), "photons": np.concatenate(ph), "j": np.concatenate(jj)}


def _chunk_job(args):
    return simulate_features(**args)


class _Deferred:
    """A chunk simulated in this process (``workers=0``): computed when the training first asks for it."""

    def __init__(self, fn, args):
        self._fn, self._args, self._result, self._done = fn, args, None, False

    def done(self) -> bool:
        return self._done

    def result(self):
        if not self._done:
            self._result, self._done = self._fn(self._args), True
        return self._result

    def cancel(self) -> bool:
        return not self._done


class _InProcess:
    def submit(self, fn, args) -> _Deferred:
        return _Deferred(fn, args)


@contextlib.contextmanager
def simulation_pool(workers: int):
    """``workers`` spawned simulation processes (one BLAS thread each), or this process for ``workers=0``."""
    if workers == 0:
        yield _InProcess()
        return
    with _single_threaded_children(), ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        yield pool


def wait_first(pending: list, timeout: float) -> None:
    """Wait until one of the ``pending`` chunks is ready (at most ``timeout`` s for a pool); an in-process
    chunk is simulated now."""
    if isinstance(pending[0], _Deferred):
        pending[0].result()
    else:
        wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)


def _chunk_args(config: RadialTrainConfig, seed: int, start: int, count: int) -> dict:
    return {"kind": config.kind, "n_values": config.n_values, "seed": seed, "start": start, "count": count,
            "photons": config.photons, "noisy_copies": config.noisy_copies, "clean": config.clean,
            "method": config.method, "features": config.features}


def train_radial(config: RadialTrainConfig, name: str = "", init: RadialClassifier | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> Generator[dict, None, RadialClassifier]:
    """Train (yielding ``{"stage": "validation"|"epoch"|"calibrate", ...}`` progress) and return the
    calibrated :class:`RadialClassifier`; ``classifier.provenance["metrics"]`` holds the validation
    report, the temperature, the ECE before/after and the training time. ``init``: continue from this
    model's network and feature scaling (same architecture; use a new ``seed`` so the patterns are new).
    ``clock``: seconds for the budget and the reported times."""
    config.validate()
    torch.manual_seed(config.seed)
    fcfg = FeatureConfig.from_dict(config.features)
    classes = np.asarray(sorted(config.n_values))
    t0 = clock()
    budget = config.max_minutes * 60.0
    chunks_total = int(np.ceil(config.max_per_class / config.chunk_per_class))
    with simulation_pool(config.workers) as pool:
        val_future = pool.submit(_chunk_job, _chunk_args(config, config.val_seed, 0, config.val_per_class))
        pending = [pool.submit(_chunk_job, _chunk_args(config, config.seed, k * config.chunk_per_class,
                                                       config.chunk_per_class))
                   for k in range(min(config.workers + 1, chunks_total))]
        submitted = len(pending)
        val = val_future.result()
        yield {"stage": "validation", "n": len(val["y"]), "seconds": clock() - t0}
        first = pending.pop(0).result()
        xs, ys = [first["x"]], [first["y"]]
        mean = first["x"].mean(0)
        std = first["x"].std(0) + 1e-3 * (np.abs(first["x"].mean(0)) + 1e-3)
        net = RadialNet(config.arch, fcfg.n_features, fcfg.n_rings, len(classes), config.hidden, config.dropout)
        if init is not None:
            if init.net.config() != net.config() or not np.array_equal(init.classes, classes):
                raise ConfigError("the initial model has another architecture or other classes")
            net.load_state_dict(init.net.state_dict())
            mean, std = init.feature_mean, init.feature_std
        clf = RadialClassifier(net, classes, fcfg, mean.astype(np.float32), std.astype(np.float32), name=name)
        opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        zval = torch.from_numpy(clf.standardize(val["x"]))
        yval = np.searchsorted(classes, val["y"])
        gen = torch.Generator().manual_seed(config.seed)
        epoch, patterns, since_new = 0, config.chunk_per_class, 0
        while True:
            elapsed = clock() - t0
            if elapsed > budget or epoch >= config.max_epochs:
                break
            if pending and since_new >= config.epochs_per_chunk:
                # enough passes over the cache: wait for fresh patterns instead of over-fitting it
                wait_first(pending, budget - elapsed)
                elapsed = clock() - t0
            # take finished chunks, keep the pool busy
            for fut in [f for f in pending if f.done()]:
                since_new = 0
                pending.remove(fut)
                part = fut.result()
                xs.append(part["x"])
                ys.append(part["y"])
                patterns += config.chunk_per_class
            while len(pending) < config.workers + 1 and submitted < chunks_total and elapsed < 0.9 * budget:
                pending.append(pool.submit(_chunk_job, _chunk_args(config, config.seed,
                                                                   submitted * config.chunk_per_class,
                                                                   config.chunk_per_class)))
                submitted += 1
            x = torch.from_numpy(clf.standardize(np.concatenate(xs)))
            y = torch.from_numpy(np.searchsorted(classes, np.concatenate(ys)))
            lr = config.lr * 0.5 * (1 + np.cos(np.pi * min(elapsed / budget, 1.0)))
            for g in opt.param_groups:
                g["lr"] = lr
            net.train()
            perm = torch.randperm(len(y), generator=gen)
            total = 0.0
            for i in range(0, len(y), config.batch_size):
                b = perm[i:i + config.batch_size]
                loss = F.cross_entropy(net(x[b]), y[b], label_smoothing=0.0)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
            epoch += 1
            since_new += 1
            if epoch % 10 == 1:
                net.eval()
                with torch.no_grad():
                    acc = float((net(zval).argmax(1).numpy() == yval).mean())
                yield {"stage": "epoch", "epoch": epoch, "train_loss": total / len(y), "val_accuracy": acc,
                       "samples": int(len(y)), "patterns_per_class": patterns, "lr": lr,
                       "seconds": clock() - t0}
        for fut in pending:
            fut.cancel()
    train_seconds = clock() - t0
    yield {"stage": "calibrate"}
    chosen = fit_readout(clf, np.concatenate(xs), np.concatenate(ys), val["x"], val["y"])
    logits = clf.logits(val["x"])
    before = reliability(torch.softmax(torch.from_numpy(logits), 1).numpy(), yval)
    after_probs = clf.predict_features(val["x"])["probs"]
    after = reliability(after_probs, yval)
    domain_statistics(clf, val["x"], val["y"])
    report = classification_report(val["y"], classes[after_probs.argmax(1)], classes)
    history = list(init.provenance.get("config", {}).get("history", [])) + [init.provenance.get("config", {}).get("train")] \
        if init is not None else []
    clf.provenance = provenance(
        {"train": config.to_dict(), "name": name, "history": history},
        {"validation": {k: report[k] for k in ("accuracy", "macro_f1", "n", "errors")},
         "temperature": clf.temperature, "readout_weight": chosen["weight"], "val_ece_before": before["ece"], "val_ece_after": after["ece"],
         "train_seconds": train_seconds, "epochs": epoch, "patterns_per_class": patterns,
         "feature_vectors": int(sum(len(v) for v in ys)), "torch_threads": torch.get_num_threads()})
    return clf
