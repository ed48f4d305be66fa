"""Streaming training of the Patterson speckle model on freshly simulated patterns.

As :mod:`.radial_train`: a process pool simulates n-disk patterns chunk after chunk (analytic disks, 513
window binned 3 x 3), adds Poisson noise at photon counts drawn log-uniformly from ``photons``, and returns
the Patterson half-maps (float16) and radial features of the noise-free and noisy copies; the main process
trains on a bounded pool of them (``max_pool`` samples; the oldest are dropped when full) while the next
chunk is simulated, with a cosine learning rate over the wall-time budget. Then the temperature is fitted
and the domain statistics measured on a validation split with its own seed.

Seeds: pattern ``j`` of class ``n`` from ``SeedSequence([seed, n, j])`` (training), ``val_seed`` for the
validation split; keep both different from any test seed. ``workers=0`` simulates in this process (no pool);
``clock`` (default :func:`time.perf_counter`) measures the budget, a fake one makes it deterministic.
"""

from __future__ import annotations

import dataclasses
import resource
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..configs import ConfigMethods
from ..errors import ConfigError
from ..provenance import provenance
from .calibration import fit_temperature, reliability
from .dataset import SpeckleDatasetConfig, simulate_pattern
from .disks import N_MAX, N_MIN, POLY_LAWS
from .evaluate import classification_report
from .features import FeatureConfig, add_counts_noise, radial_features, to_feature_grid
from .patterson import (HALF, N_PEAK_FEATURES, PattersonClassifier, PattersonNet, dihedral_views, patterson_features,
                        patterson_maps)
from .radial import domain_statistics
from .radial_train import simulation_pool, wait_first


@dataclass(frozen=True)
class PattersonTrainConfig(ConfigMethods):
    """``poly_laws``: polydispersity laws mixed in the training data (patterns alternate between them);
    ``photons`` (low, high) photons per pattern for the ``noisy_copies`` (log-uniform); ``max_minutes``
    wall-time budget; ``max_pool`` samples kept at most (memory bound: ~15 kB each); ``workers`` simulation
    processes (0: simulate in this process, no pool)."""

    polydisperse: bool = True
    poly_laws: tuple[str, ...] = ("radius",)
    n_values: tuple[int, ...] = tuple(range(N_MIN, N_MAX + 1))
    photons: tuple[float, float] = (3e4, 3e7)
    noisy_copies: int = 1
    clean: bool = True
    chunk_per_class: int = 4
    max_minutes: float = 30.0
    max_per_class: int = 5000
    max_pool: int = 60000
    val_per_class: int = 30
    width: int = 16
    hidden: int = 256
    dropout: float = 0.1
    half: int = HALF
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 64
    epochs_per_chunk: float = 2.0
    #: weight of the ordinal term: squared error (in classes) of the expected class under the softmax, added to
    #: the cross-entropy (neighbouring counts are near; 0 = plain cross-entropy)
    ordinal_weight: float = 0.0
    #: train on a random one of the 4 symmetric views of each map (:func:`.patterson.dihedral_views`: the mirrored
    #: or transposed disk system has the same number of disks; the features are invariant)
    augment: bool = False
    #: bfloat16 autocast for the training steps (about half the CPU time per step on CPUs with bf16 support;
    #: the weights stay float32 and inference runs in float32)
    bf16: bool = False
    workers: int = 1
    seed: int = 11
    val_seed: int = 12
    features: dict = dataclasses.field(default_factory=lambda: FeatureConfig().to_dict())

    def __post_init__(self):
        object.__setattr__(self, "n_values", tuple(int(n) for n in self.n_values))
        object.__setattr__(self, "photons", tuple(float(p) for p in self.photons))
        object.__setattr__(self, "poly_laws", tuple(str(p) for p in self.poly_laws))
        self.validate()

    def validate(self) -> PattersonTrainConfig:
        lo, hi = self.photons
        if not 0 < lo <= hi:
            raise ConfigError(f"photon range must be 0 < low <= high, got {self.photons}")
        if self.noisy_copies < 0 or (self.noisy_copies == 0 and not self.clean):
            raise ConfigError("need noise-free and/or noisy copies")
        if self.max_minutes <= 0 or self.chunk_per_class < 1 or self.val_per_class < 2 or self.max_pool < 100:
            raise ConfigError("max_minutes, chunk_per_class must be > 0, val_per_class >= 2, max_pool >= 100")
        if not self.poly_laws or any(p not in POLY_LAWS for p in self.poly_laws):
            raise ConfigError(f"poly_laws must be a non-empty subset of {POLY_LAWS}, got {self.poly_laws}")
        if self.seed == self.val_seed:
            raise ConfigError("training and validation seeds must differ")
        if not self.ordinal_weight >= 0:
            raise ConfigError(f"ordinal_weight must be >= 0, got {self.ordinal_weight}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0 (0: simulate in this process), got {self.workers}")
        FeatureConfig.from_dict(self.features)
        return self



def random_views(maps: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each half-map of ``(N, h+1, 2h+1)`` replaced by one of its 4 symmetric views, drawn uniformly."""
    k = torch.randint(0, 4, (len(maps),), generator=generator)
    return torch.stack(dihedral_views(maps))[k, torch.arange(len(maps))]


def ordinal_loss(logits: torch.Tensor, target: torch.Tensor, weight: float = 0.0) -> torch.Tensor:
    """Cross-entropy plus ``weight x`` the mean squared distance (in classes) between the expected class
    index under the softmax and the true one: classes are ordered counts, so a 12 taken for 20 costs more
    than one taken for 13. ``weight = 0`` is the plain cross-entropy."""
    ce = F.cross_entropy(logits, target)
    if weight == 0:
        return ce
    idx = torch.arange(logits.shape[1], dtype=logits.dtype)
    expected = torch.softmax(logits, 1) @ idx
    return ce + weight * torch.mean((expected - target.to(logits.dtype)) ** 2)


def simulate_inputs(n_values, seed: int, start: int, count: int, polydisperse: bool = True,
                    poly_laws=("radius",), photons=(3e4, 3e7), noisy_copies: int = 1, clean: bool = True,
                    features: dict | None = None, half: int = HALF) -> dict:
    """Patterson half-maps and features (radial + Patterson peak statistics) of patterns ``j = start .. start+count-1`` of every class.

    Pattern ``j`` uses the polydispersity law ``poly_laws[j % len(poly_laws)]``. Returns ``{"maps" (M, h+1,
    2h+1) float16, "x" (M, F) float32, "y" (M,), "photons" (M,) (inf = noise-free)}``; the noise of copy
    ``c`` of pattern ``(n, j)`` comes from ``SeedSequence([seed, n, j, 1 + c])``."""
    fcfg = FeatureConfig.from_dict(features or {})
    grids, ys, js = [], [], []
    cfgs = {law: SpeckleDatasetConfig(n_values=tuple(n_values), per_class=1, window=fcfg.window, bin=fcfg.bin,
                                      polydisperse=polydisperse, poly_law=law, method="analytic", seed=seed,
                                      block=fcfg.block) for law in poly_laws}
    for n in n_values:
        for j in range(start, start + count):
            pat, _ = simulate_pattern(n, j, cfgs[poly_laws[j % len(poly_laws)]])
            grids.append(pat)
            ys.append(n)
            js.append(j)
    grid = to_feature_grid(np.stack(grids), fcfg, input_bin=fcfg.bin)
    ys, js = np.asarray(ys), np.asarray(js)
    maps, xs, yy, ph = [], [], [], []
    if clean:
        pm = patterson_maps(grid, half)
        maps.append(pm.astype(np.float16))
        xs.append(np.concatenate([radial_features(grid, fcfg, fcfg.bin, counts=False), patterson_features(pm)], 1))
        yy.append(ys), ph.append(np.full(len(ys), np.inf))
    lo, hi = np.log10(photons[0]), np.log10(photons[1])
    for c in range(noisy_copies):
        noisy = np.empty_like(grid)
        dose = np.empty(len(ys))
        for i, (n, j) in enumerate(zip(ys, js)):
            rng = np.random.default_rng(np.random.SeedSequence([seed, int(n), int(j), 1 + c]))
            dose[i] = 10 ** rng.uniform(lo, hi)
            noisy[i] = add_counts_noise(grid[i], dose[i], rng, fcfg)[0]
        pm = patterson_maps(noisy, half)
        maps.append(pm.astype(np.float16))
        xs.append(np.concatenate([radial_features(noisy, fcfg, fcfg.bin, counts=True), patterson_features(pm)], 1))
        yy.append(ys), ph.append(dose)
    return {"maps": np.concatenate(maps), "x": np.concatenate(xs), "y": np.concatenate(yy),
            "photons": np.concatenate(ph)}


def _job(args):
    return simulate_inputs(**args)


def _args(config: PattersonTrainConfig, seed: int, start: int, count: int, noisy_copies=None) -> dict:
    return {"n_values": config.n_values, "seed": seed, "start": start, "count": count,
            "polydisperse": config.polydisperse, "poly_laws": config.poly_laws, "photons": config.photons,
            "noisy_copies": config.noisy_copies if noisy_copies is None else noisy_copies,
            "clean": config.clean, "features": config.features, "half": config.half}


def train_patterson(config: PattersonTrainConfig, name: str = "", init: PattersonClassifier | None = None,
                    clock: Callable[[], float] = time.perf_counter) -> Generator[dict, None, PattersonClassifier]:
    """Train (yielding ``{"stage": "validation"|"epoch"|"calibrate", ...}``) and return the calibrated
    :class:`~.patterson.PattersonClassifier`; ``provenance["metrics"]`` holds the validation report, the
    temperature, ECE before/after, wall and CPU seconds, and the learning curve (validation macro-F1 against
    training minutes and patterns seen). ``clock``: seconds for the budget and the reported times."""
    config.validate()
    torch.manual_seed(config.seed)
    fcfg = FeatureConfig.from_dict(config.features)
    classes = np.asarray(sorted(config.n_values))
    t0, c0 = clock(), time.process_time()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    budget = config.max_minutes * 60.0
    chunks_total = int(np.ceil(config.max_per_class / config.chunk_per_class))
    curve = []
    with simulation_pool(config.workers) as pool:
        val_future = pool.submit(_job, _args(config, config.val_seed, 0, config.val_per_class))
        pending = [pool.submit(_job, _args(config, config.seed, k * config.chunk_per_class, config.chunk_per_class))
                   for k in range(min(config.workers + 1, chunks_total))]
        submitted = len(pending)
        val = val_future.result()
        yield {"stage": "validation", "n": len(val["y"]), "seconds": clock() - t0}
        first = pending.pop(0).result()
        maps, xs, ys = [first["maps"]], [first["x"]], [first["y"]]
        # feature scaling from the validation split (many more patterns than the first chunk; labels unused),
        # with a floor so that features nearly constant there (high-threshold peak counts) stay bounded
        mean = val["x"].mean(0)
        std = val["x"].std(0) + 1e-2 * (np.abs(mean) + 1.0)
        net = PattersonNet(fcfg.n_features + N_PEAK_FEATURES, len(classes), config.width, config.hidden, config.dropout, config.half)
        if init is not None:   # continue: same network and feature scaling (give a new seed: new patterns)
            if init.net.config() != net.config() or not np.array_equal(init.classes, classes):
                raise ConfigError("the initial model has another architecture or other classes")
            net.load_state_dict(init.net.state_dict())
            mean, std = init.feature_mean, init.feature_std
        clf = PattersonClassifier(net, classes, fcfg, mean.astype(np.float32), std.astype(np.float32), name=name)
        opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        yval = np.searchsorted(classes, val["y"])
        gen = torch.Generator().manual_seed(config.seed)
        patterns, seen, since_new, step = config.chunk_per_class, 0, 0.0, 0
        m_all = torch.from_numpy(np.concatenate(maps))
        z_all = torch.from_numpy(clf.standardize(np.concatenate(xs)))
        y_all = torch.from_numpy(np.searchsorted(classes, np.concatenate(ys)))
        perm, pos = torch.randperm(len(y_all), generator=gen), 0
        next_eval = 60.0
        while True:
            elapsed = clock() - t0
            if elapsed > budget:
                break
            if pending and since_new >= config.epochs_per_chunk:
                wait_first(pending, budget - elapsed)
                elapsed = clock() - t0
            fresh = [f for f in pending if f.done()]
            for fut in fresh:
                pending.remove(fut)
                part = fut.result()
                maps.append(part["maps"])
                xs.append(part["x"])
                ys.append(part["y"])
                patterns += config.chunk_per_class
            if fresh:
                while sum(len(m) for m in maps) > config.max_pool and len(maps) > 1:
                    maps.pop(0), xs.pop(0), ys.pop(0)
                m_all = torch.from_numpy(np.concatenate(maps))
                z_all = torch.from_numpy(clf.standardize(np.concatenate(xs)))
                y_all = torch.from_numpy(np.searchsorted(classes, np.concatenate(ys)))
                perm, pos, since_new = torch.randperm(len(y_all), generator=gen), 0, 0.0
            while len(pending) < config.workers + 1 and submitted < chunks_total and elapsed < 0.95 * budget:
                pending.append(pool.submit(_job, _args(config, config.seed, submitted * config.chunk_per_class,
                                                       config.chunk_per_class)))
                submitted += 1
            if pos >= len(perm):
                perm, pos = torch.randperm(len(y_all), generator=gen), 0
            b = perm[pos:pos + config.batch_size]
            pos += len(b)
            since_new += len(b) / len(y_all)
            lr = config.lr * 0.5 * (1 + np.cos(np.pi * min(elapsed / budget, 1.0)))
            for g in opt.param_groups:
                g["lr"] = lr
            net.train()
            mb = m_all[b].float()
            if config.augment:
                mb = random_views(mb, gen)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                out = net(mb, z_all[b])
            loss = ordinal_loss(out.float(), y_all[b], config.ordinal_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            seen += len(b)
            if elapsed >= next_eval:
                next_eval += 300.0
                rep = classification_report(val["y"], classes[clf.logits_maps(val["maps"], val["x"]).argmax(1)], classes)
                curve.append({"minutes": elapsed / 60, "patterns_per_class": patterns, "samples_seen": seen,
                              "val_accuracy": rep["accuracy"], "val_macro_f1": rep["macro_f1"]})
                yield {"stage": "epoch", "step": step, "train_loss": float(loss.detach()),
                       "val_accuracy": rep["accuracy"], "val_macro_f1": rep["macro_f1"], "pool": int(len(y_all)),
                       "patterns_per_class": patterns, "lr": lr, "seconds": elapsed}
        for fut in pending:
            fut.cancel()
    train_seconds = clock() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_main = time.process_time() - c0
    cpu_children = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    yield {"stage": "calibrate"}
    logits = clf.logits_maps(val["maps"], val["x"])
    clf.temperature = fit_temperature(logits, yval)
    before = reliability(torch.softmax(torch.from_numpy(logits), 1).numpy(), yval)
    after_probs = torch.softmax(torch.from_numpy(logits / clf.temperature), 1).numpy()
    after = reliability(after_probs, yval)
    domain_statistics(clf, val["x"], val["y"])
    report = classification_report(val["y"], classes[after_probs.argmax(1)], classes)
    curve.append({"minutes": train_seconds / 60, "patterns_per_class": patterns, "samples_seen": seen,
                  "val_accuracy": report["accuracy"], "val_macro_f1": report["macro_f1"]})
    history = []
    if init is not None:
        ic, im = init.provenance.get("config", {}), init.provenance.get("metrics", {})
        history = list(ic.get("history", [])) + [{"train": ic.get("train"), "command": ic.get("command"),
                                                   "train_seconds": im.get("train_seconds"),
                                                   "cpu_seconds_main": im.get("cpu_seconds_main"),
                                                   "cpu_seconds_simulation": im.get("cpu_seconds_simulation"),
                                                   "patterns_per_class": im.get("patterns_per_class"),
                                                   "learning_curve": im.get("learning_curve")}]
    clf.provenance = provenance(
        {"train": config.to_dict(), "name": name, "history": history},
        {"validation": {k: report[k] for k in ("accuracy", "macro_f1", "n", "errors")},
         "temperature": clf.temperature, "val_ece_before": before["ece"], "val_ece_after": after["ece"],
         "train_seconds": train_seconds, "cpu_seconds_main": cpu_main, "cpu_seconds_simulation": cpu_children,
         "steps": step, "samples_seen": seen, "patterns_per_class": patterns, "learning_curve": curve,
         "torch_threads": torch.get_num_threads()})
    return clf
