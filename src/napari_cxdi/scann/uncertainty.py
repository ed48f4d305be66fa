"""Deep ensembles of SCANN models: mean and standard deviation of every prediction, calibration.

An ensemble is K models of the same architecture trained on the same data: independently seeded
runs (a deep ensemble), or the snapshots of one cyclic-learning-rate run (``TrainConfig.snapshots``;
cheaper, but its members agree more, so its sigma ranks errors less well; the shipped model is one).
For each structure the prediction is the members' mean. Its standard deviation comes from a
:class:`SigmaModel` (files written since issue 16):

    sigma_t^2 = a_t * std_t^2 + b_t * d^2 + c_t

``std_t`` the members' spread for target t, ``d`` the structure's distance to the training data in
the model's latent space (:func:`napari_cxdi.scann.domain.structure_distance`: the mean over its
atoms of the distance of the atom's embedding to the nearest training atom of the same element,
in units of the applicability domain's per-element threshold), and ``a, b, c >= 0`` fitted per
target on a held-out validation split by maximising the Gaussian likelihood of the errors
(:func:`fit_sigma_model`). This is the "ensemble + latent-space distance" uncertainty of Janet et al.
(Chem. Sci. 10, 7913, 2019): the spread of snapshots of one run (the shipped model) hardly ranks
errors (Spearman 0.06 / 0.04 on held-out QM9 HOMO / LUMO), the distance does (0.22 / 0.18, see
``benchmarks/bench_scann.py``). Older files carry only ``sigma = scale * std`` with a per-target
``scale`` fitted on validation (:func:`fit_scale`) so that the errors fall within 1 sigma / 2 sigma
about as often as for a normal distribution; they still load and use it. For structures outside
the applicability domain, sigma is the larger of the two (:func:`out_of_domain_sigma`). GA scores get
a per-atom spread (members' std, unscaled).

Per-target members: every member predicts every target, but a target's prediction may average only
some of them (``target_members``, one list of member indices per target), chosen on held-out data by
greedy forward selection (:func:`select_members`; Caruana et al., ICML 2004): runs trained with
different loss weights are each best at one target, and pooling all of them for every target blurs that.
Mean and spread of a target are over its members; GA scores over the members of the targets asked for.

Files: one ``torch.save`` dict (``ENSEMBLE_FORMAT``) holding the members' weights, the shared model
and Voronoi configs, the per-target members (``None``: all members for every target), the calibration,
the applicability domain (:mod:`.domain`) and provenance; it loads with
``torch.load(weights_only=True)``. Files of format ``/1`` (no per-target members) still load.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigError, InputFileError
from .batching import batches
from .environments import EnvironmentSet
from .model import SCANN, build_model

ENSEMBLE_FORMAT = "napari-cxdi-scann-ensemble/2"
#: Ensemble formats this version reads: ``/1`` (every member serves every target) and ``/2`` (``target_members``).
ENSEMBLE_FORMATS = ("napari-cxdi-scann-ensemble/1", ENSEMBLE_FORMAT)
#: Fractions of a normal distribution within 1 and 2 sigma.
NORMAL_COVERAGE = {1: 0.6827, 2: 0.9545}
SIGMA_MODEL_KIND = "ensemble-variance+latent-distance/1"
_DISTANCE = ("mean over atoms of the distance of the atom's member-0 embedding (after the last local attention "
             "layer) to the nearest training atom of the same element, divided by the applicability domain's "
             "per-element threshold (unknown elements count 1)")


@dataclass(frozen=True)
class SigmaModel:
    """``sigma_t = sqrt(a_t std_t^2 + b_t d^2 + c_t)`` per target (see the module docstring).

    ``a``, ``b``, ``c``: one non-negative coefficient per target of ``target_names`` (``a`` unitless,
    ``b`` and ``c`` in target units squared, eV^2 for eV targets; ``d`` is unitless); ``fitted_on``
    says where.
    """

    target_names: tuple[str, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    fitted_on: str = ""
    distance: str = _DISTANCE
    kind: str = SIGMA_MODEL_KIND
    metrics: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        for name in ("target_names", "a", "b", "c"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self.validate()

    def validate(self) -> "SigmaModel":
        n = len(self.target_names)
        if n == 0 or not (len(self.a) == len(self.b) == len(self.c) == n):
            raise ConfigError(f"sigma model: need one a, b, c per target {list(self.target_names)}, got "
                              f"{len(self.a)}, {len(self.b)}, {len(self.c)}")
        vals = np.asarray(self.a + self.b + self.c, dtype=float)
        if not np.all(np.isfinite(vals)) or np.any(vals < 0):
            raise ConfigError(f"sigma model coefficients must be finite and >= 0, got a={self.a}, b={self.b}, "
                              f"c={self.c}")
        if self.kind != SIGMA_MODEL_KIND:
            raise ConfigError(f"unknown sigma model kind {self.kind!r} (this version reads {SIGMA_MODEL_KIND!r})")
        return self

    def to_dict(self) -> dict:
        return {"kind": self.kind, "target_names": list(self.target_names), "a": [float(v) for v in self.a],
                "b": [float(v) for v in self.b], "c": [float(v) for v in self.c], "fitted_on": self.fitted_on,
                "distance": self.distance, "formula": "sigma^2 = a * ensemble_std^2 + b * distance^2 + c",
                "metrics": json.loads(json.dumps(self.metrics, default=float))}

    @classmethod
    def from_dict(cls, d: dict) -> "SigmaModel":
        known = {k: v for k, v in dict(d).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def with_(self, **changes) -> "SigmaModel":
        from dataclasses import replace

        return replace(self, **changes)

    def select(self, names: Sequence[str]) -> "SigmaModel":
        """The coefficients of ``names`` only (in that order)."""
        missing = [t for t in names if t not in self.target_names]
        if missing:
            raise ConfigError(f"the sigma model covers {list(self.target_names)}, not {missing}")
        idx = [self.target_names.index(t) for t in names]
        return self.with_(target_names=tuple(names), a=tuple(self.a[i] for i in idx),
                          b=tuple(self.b[i] for i in idx), c=tuple(self.c[i] for i in idx))

    def sigma(self, std: np.ndarray, distance: np.ndarray | float) -> np.ndarray:
        """``std`` (..., T) members' spread, ``distance`` (...) latent distance -> sigma (..., T)."""
        std = np.asarray(std, dtype=float)
        d = np.asarray(distance, dtype=float)[..., None]
        return np.sqrt(np.asarray(self.a) * std ** 2 + np.asarray(self.b) * d ** 2 + np.asarray(self.c))


def out_of_domain_sigma(sigma: np.ndarray, ensemble_sigma: np.ndarray | None, in_domain) -> np.ndarray:
    """Sigma (S, T) where structures outside the applicability domain (``in_domain`` (S,) False) get the
    larger of the sigma model's value and the scaled ensemble spread ``ensemble_sigma`` (S, T): the sigma
    model is fitted on held-out in-domain molecules only, where the members' spread ranks errors poorly
    and so gets a small weight, while outside the domain the spread is often what grows (other elements,
    crystals). The conservative choice where nothing validates either."""
    sigma = np.asarray(sigma, dtype=float)
    if ensemble_sigma is None:
        return sigma
    out = np.asarray(in_domain, dtype=bool)
    return np.where(out[..., None], sigma, np.maximum(sigma, np.asarray(ensemble_sigma, dtype=float)))


def _gaussian_nll(params: np.ndarray, feats: np.ndarray, e2: np.ndarray) -> tuple[float, np.ndarray]:
    w = np.exp(params)
    s2 = feats @ w
    val = 0.5 * np.mean(np.log(s2) + e2 / s2)
    grad = 0.5 * np.mean(feats * ((1.0 / s2 - e2 / s2 ** 2)[:, None]), axis=0) * w  # d/dlog w
    return float(val), grad


def fit_sigma_model(std: np.ndarray, distance: np.ndarray, error: np.ndarray, target_names: Sequence[str],
                    fitted_on: str = "") -> SigmaModel:
    """Fit ``a, b, c >= 0`` per target by minimising the Gaussian negative log-likelihood of the
    held-out ``error`` (S, T) (prediction - target; NaN ignored) under ``sigma^2 = a std^2 + b d^2 + c``,
    with ``std`` (S, T) the members' spread and ``distance`` (S,) the latent distance. Coefficients are
    fitted as logarithms (so they stay positive; one that does not help goes to ~0)."""
    from scipy.optimize import minimize

    std, error = np.asarray(std, float), np.asarray(error, float)
    distance = np.asarray(distance, float)
    if std.shape != error.shape or std.ndim != 2 or distance.shape != (len(error),):
        raise ConfigError(f"fit_sigma_model: need std and error (S, T) and distance (S,), got {std.shape}, "
                          f"{error.shape}, {distance.shape}")
    a, b, c, metrics = [], [], [], {}
    for t, name in enumerate(target_names):
        ok = np.isfinite(error[:, t]) & np.isfinite(distance) & np.isfinite(std[:, t])
        if ok.sum() < 10:
            raise ConfigError(f"fit_sigma_model: {int(ok.sum())} usable errors for {name!r}; need >= 10")
        feats = np.stack([std[ok, t] ** 2, distance[ok] ** 2, np.ones(int(ok.sum()))], axis=1)
        e2 = error[ok, t] ** 2
        # start: each term explains a third of the mean squared error (a zero column starts at 1)
        p0 = np.log(e2.mean() / 3 / np.maximum(feats.mean(axis=0), 1e-12))
        res = minimize(_gaussian_nll, p0, args=(feats, e2), jac=True, method="L-BFGS-B",
                       bounds=[(-60.0, 60.0)] * 3)
        w = np.exp(res.x)
        w[~np.any(feats > 0, axis=0)] = 0.0  # e.g. a single model (no spread): its coefficient is meaningless
        a.append(float(w[0]))
        b.append(float(w[1]))
        c.append(float(w[2]))
        metrics[name] = {"nll": float(res.fun), "n": int(ok.sum())}
    return SigmaModel(tuple(target_names), tuple(a), tuple(b), tuple(c), fitted_on=fitted_on, metrics=metrics)


def structure_distances(domain, numbers: Sequence[np.ndarray], features: Sequence[np.ndarray]) -> np.ndarray:
    """(S,) latent distance of each structure (see :func:`napari_cxdi.scann.domain.structure_distance`)
    from its atomic numbers and member-0 atom vectors (``EnsembleOutput.atom_features``)."""
    from .domain import DomainModel

    dm = domain if isinstance(domain, DomainModel) else DomainModel(domain)
    return np.array([dm.structure_distance(z, f) for z, f in zip(numbers, features)])


def check_target_members(target_members, n_members: int, target_names: Sequence[str]) -> list[list[int]] | None:
    """Per-target member lists, validated: ``None`` (all members serve every target), or one list of
    member indices per target, given as ``{name: [k, ...]}`` (every name of ``target_names``) or as a
    sequence in ``target_names`` order. Returns sorted, duplicate-free lists in ``target_names`` order.
    Raises :class:`ConfigError` naming the target and the bad value."""
    if target_members is None:
        return None
    names = list(target_names)
    if isinstance(target_members, dict):
        unknown = [t for t in target_members if t not in names]
        missing = [t for t in names if t not in target_members]
        if unknown or missing:
            raise ConfigError(f"target_members must name every target {names} once; unknown {unknown}, "
                              f"missing {missing}")
        lists = [target_members[t] for t in names]
    else:
        lists = list(target_members)
        if len(lists) != len(names):
            raise ConfigError(f"target_members has {len(lists)} lists for {len(names)} targets {names}")
    out = []
    for name, idx in zip(names, lists):
        try:  # whole numbers only (1.0 is member 1, 1.5 is no member)
            ks = [int(k) for k in idx] if all(float(k) == int(k) for k in idx) else []
        except (TypeError, ValueError):
            ks = []
        if not ks or any(not 0 <= k < n_members for k in ks):
            raise ConfigError(f"target_members[{name!r}] must be a non-empty list of member indices in "
                              f"0..{n_members - 1}, got {idx!r}")
        out.append(sorted(set(ks)))
    return out


def used_members(target_members: Sequence[Sequence[int]] | None, n_members: int) -> list[int]:
    """Sorted indices of the members that serve at least one target (all when ``target_members`` is None)."""
    if target_members is None:
        return list(range(n_members))
    return sorted({int(k) for idx in target_members for k in idx})


def member_statistics(members: np.ndarray, target_members: Sequence[Sequence[int]] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """``members`` (K, S, T) -> mean, std (S, T) (ddof=0), each target over its members (all when None)."""
    members = np.asarray(members)
    if target_members is None:
        return members.mean(axis=0), members.std(axis=0)
    if len(target_members) != members.shape[2]:
        raise ConfigError(f"target_members has {len(target_members)} lists for {members.shape[2]} targets")
    cols = [members[list(idx), :, t] for t, idx in enumerate(target_members)]  # (K_t, S) each
    return np.column_stack([c.mean(axis=0) for c in cols]), np.column_stack([c.std(axis=0) for c in cols])


def select_members(members: np.ndarray, target: np.ndarray, min_members: int = 2) -> list[list[int]]:
    """Each target's members by greedy forward selection on held-out data (Caruana et al., ICML 2004,
    without replacement): start from the member with the lowest MAE, add the member that lowers the
    MAE of the mean most, stop when none lowers it, with at least ``min(min_members, K)`` members (a
    spread needs two). ``members`` (K, S, T) predictions, ``target`` (S, T) (NaN ignored). Ties go to
    the lower index. Returns sorted member lists, one per target."""
    members, target = np.asarray(members), np.asarray(target)
    if members.ndim != 3 or target.shape != members.shape[1:]:
        raise ConfigError(f"select_members: need members (K, S, T) and target (S, T), got {members.shape}, "
                          f"{target.shape}")
    if min_members < 1:
        raise ConfigError(f"select_members: min_members must be >= 1, got {min_members}")
    K = members.shape[0]
    out = []
    for t in range(members.shape[2]):
        ok = np.isfinite(target[:, t])
        if not ok.any():
            raise ConfigError(f"select_members: target column {t} has no finite value to select on")
        p, y = members[:, ok, t], target[ok, t]
        chosen: list[int] = []
        total = np.zeros(y.shape)
        best = np.inf
        while len(chosen) < K:
            cands = [k for k in range(K) if k not in chosen]
            maes = [float(np.mean(np.abs((total + p[k]) / (len(chosen) + 1) - y))) for k in cands]
            j = int(np.argmin(maes))
            if maes[j] >= best and len(chosen) >= min(min_members, K):
                break
            chosen.append(cands[j])
            total += p[cands[j]]
            best = maes[j]
        out.append(sorted(chosen))
    return out


@dataclass
class EnsembleOutput:
    """Predictions of K members for S structures.

    ``members`` (K, S, T) (every member, every target), ``mean``/``std`` (S, T) over each target's
    members (``target_members``; all when None; std unscaled, ddof=0), ``ga_mean``/``ga_std``: per
    structure (N_s,) arrays over the members that serve a target, ``ga_members`` per structure
    (K, N_s) every member's GA scores, ``atom_features``: per structure (N_s, h) atom vectors of
    member 0 (for the applicability domain), or None when not asked.
    """

    members: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    ga_mean: list[np.ndarray]
    ga_std: list[np.ndarray]
    atom_features: list[np.ndarray] | None
    ga_members: list[np.ndarray] | None = None
    target_members: list[list[int]] | None = None

    def with_members(self, target_members) -> "EnsembleOutput":
        """The same predictions with mean, std and GA statistics over other per-target members
        (one list of member indices per target column, or None for all)."""
        from dataclasses import replace

        K, _, T = self.members.shape
        tm = check_target_members(target_members, K, [f"column {t}" for t in range(T)])
        mean, std = member_statistics(self.members, tm)
        use = used_members(tm, K)
        if self.ga_members is None:
            raise ConfigError("these ensemble outputs keep no per-member GA scores to select from")
        return replace(self, mean=mean, std=std, target_members=tm,
                       ga_mean=[g[use].mean(axis=0) for g in self.ga_members],
                       ga_std=[g[use].std(axis=0) for g in self.ga_members])


@torch.no_grad()
def ensemble_predict(models: Sequence[SCANN], envs: EnvironmentSet, batch_size: int = 256,
                     atom_features: bool = False, device=None, target_members=None) -> EnsembleOutput:
    """Run every member over ``envs``; see :class:`EnsembleOutput` (``target_members`` as in
    :func:`check_target_members`)."""
    if not models:
        raise ConfigError("an ensemble needs at least one model")
    device = device or next(models[0].parameters()).device
    K, S, T = len(models), len(envs), models[0].config.n_targets
    names = list(models[0].config.target_names)
    tm = check_target_members(target_members, K, names if len(names) == T else [f"column {t}" for t in range(T)])
    preds = np.zeros((K, S, T))
    ga_members: list = [None] * S
    feats: list | None = [None] * S if atom_features else None
    for m in models:
        m.eval()
    for sel, batch in batches(envs, batch_size, device=device):
        gas = []
        for k, m in enumerate(models):
            out = m(batch)
            preds[k, sel] = out.prediction.double().cpu().numpy()
            gas.append(out.ga_scores.double().cpu().numpy())
            if k == 0 and feats is not None:
                f0 = out.atom_features.float().cpu().numpy()
        gas = np.stack(gas)  # (K, B, M)
        n_atoms = batch["n_atoms"].cpu().numpy()
        for b, s in enumerate(sel):
            n = int(n_atoms[b])
            ga_members[s] = gas[:, b, :n].copy()
            if feats is not None:
                feats[s] = f0[b, :n].copy()
    mean, std = member_statistics(preds, tm)
    use = used_members(tm, K)
    return EnsembleOutput(preds, mean, std, [g[use].mean(axis=0) for g in ga_members],
                          [g[use].std(axis=0) for g in ga_members], feats, ga_members, tm)


def coverage(mean: np.ndarray, sigma: np.ndarray, target: np.ndarray, k: float) -> np.ndarray:
    """Fraction of |error| <= k sigma per target column (NaN targets ignored)."""
    err = np.abs(np.asarray(mean) - np.asarray(target))
    ok = ~np.isnan(err)
    return np.array([float(np.mean(err[ok[:, t], t] <= k * np.asarray(sigma)[ok[:, t], t]))
                     for t in range(err.shape[1])])


def fit_scale(mean: np.ndarray, std: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-target factor ``s`` such that ``s * std`` covers the validation errors like a normal
    distribution at both 1 and 2 sigma: ``s = max(q_68.27(|e|/std), q_95.45(|e|/std) / 2)``
    (the larger of the two, so neither coverage falls short on the validation split)."""
    z = np.abs(np.asarray(mean) - np.asarray(target)) / np.maximum(np.asarray(std), 1e-12)
    out = []
    for t in range(z.shape[1]):
        zt = z[~np.isnan(z[:, t]), t]
        if zt.size == 0:
            out.append(1.0)
            continue
        out.append(float(max(np.quantile(zt, NORMAL_COVERAGE[1]), np.quantile(zt, NORMAL_COVERAGE[2]) / 2.0)))
    return np.asarray(out)


def error_by_sigma(error: np.ndarray, sigma: np.ndarray, bins: int = 10) -> list[dict]:
    """Structures sorted by sigma and cut into ``bins`` equal-count groups (most confident first):
    per group the sigma range, mean sigma, MAE and RMSE of ``error`` (1D arrays, NaN ignored). A sigma
    that ranks errors has a MAE rising from the first group to the last."""
    error, sigma = np.abs(np.asarray(error, float)), np.asarray(sigma, float)
    ok = np.isfinite(error) & np.isfinite(sigma)
    order = np.argsort(sigma[ok], kind="stable")
    e, s = error[ok][order], sigma[ok][order]
    out = []
    for k, idx in enumerate(np.array_split(np.arange(e.size), bins)):
        if idx.size == 0:
            continue
        out.append({"bin": k, "n": int(idx.size), "sigma_min": float(s[idx].min()), "sigma_max": float(s[idx].max()),
                    "mean_sigma": float(s[idx].mean()), "mae": float(e[idx].mean()),
                    "rmse": float(np.sqrt(np.mean(e[idx] ** 2)))})
    return out


def calibration_report(mean: np.ndarray, sigma: np.ndarray, target: np.ndarray, names: Sequence[str],
                       bins: int = 10) -> dict:
    """Per target: MAE, mean sigma, fraction within 1 and 2 sigma, the error–sigma Spearman rank
    correlation, the Gaussian negative log-likelihood, the MAE of the 10 % most / least confident
    structures and the error-vs-sigma table of :func:`error_by_sigma` (``bins`` groups)."""
    from scipy.stats import spearmanr

    err = np.abs(mean - target)
    c1, c2 = coverage(mean, sigma, target, 1), coverage(mean, sigma, target, 2)
    rep = {}
    for t, name in enumerate(names):
        ok = ~np.isnan(err[:, t])
        e, s = err[ok, t], np.asarray(sigma)[ok, t]
        # a constant sigma (or error) has no rank correlation: nan, without scipy's warning
        varies = ok.sum() > 2 and np.ptp(e) > 0 and np.ptp(s) > 0
        rho = float(spearmanr(e, s).statistic) if varies else float("nan")
        order = np.argsort(s, kind="stable")
        n10 = max(1, e.size // 10)
        with np.errstate(divide="ignore", invalid="ignore"):
            nll = float(np.mean(0.5 * np.log(2 * np.pi * s ** 2) + e ** 2 / (2 * s ** 2)))
        rep[name] = {"mae": float(e.mean()), "mean_sigma": float(s.mean()),
                     "within_1_sigma": float(c1[t]), "within_2_sigma": float(c2[t]),
                     "spearman_error_sigma": float(rho), "gaussian_nll": nll,
                     "mae_most_confident_10pct": float(e[order[:n10]].mean()),
                     "mae_least_confident_10pct": float(e[order[-n10:]].mean()),
                     "error_by_sigma": error_by_sigma(e, s, bins), "n": int(ok.sum())}
    return rep


def save_ensemble(path: str | os.PathLike, models: Sequence[SCANN], *, voronoi: dict, scale: Sequence[float],
                  target_units: Sequence[str], domain: dict | None, provenance: dict,
                  sigma_model: SigmaModel | None = None, target_members=None, protected=()) -> Path:
    """Write an ensemble file (see module docstring) atomically; ``sigma_model`` (fitted on held-out
    data, needs ``domain``) replaces ``scale`` for sigma when given; ``scale`` is kept for older readers.
    ``target_members`` (see :func:`check_target_members`; None: all members for every target)."""
    from dataclasses import asdict

    from .train import _atomic_torch_save

    cfgs = [asdict(m.config) for m in models]
    if any(c != cfgs[0] for c in cfgs):
        raise ConfigError("ensemble members must share one architecture")
    obj = {
        "format": ENSEMBLE_FORMAT,
        "model_config": cfgs[0],
        "voronoi_config": dict(voronoi),
        "members": [{k: v.detach().cpu() for k, v in m.state_dict().items()} for m in models],
        "target_names": list(models[0].config.target_names),
        "target_units": list(target_units),
        "target_members": None,
        "sigma_scale": [float(s) for s in scale],
        "domain": domain,
        "sigma_model": None if sigma_model is None else sigma_model.to_dict(),
        "provenance": json.loads(json.dumps(provenance, default=str)),
    }
    tm = check_target_members(target_members, len(models), obj["target_names"])
    if tm is not None:
        obj["target_members"] = {t: idx for t, idx in zip(obj["target_names"], tm)}
    if sigma_model is not None:
        if domain is None:
            raise ConfigError("a sigma model needs the applicability domain (its latent distance) in the same file")
        missing = [t for t in obj["target_names"] if t not in sigma_model.target_names]
        if missing:
            raise ConfigError(f"the sigma model has no coefficients for {missing}")
    path = Path(path)
    _atomic_torch_save(obj, path, protected=protected)
    return path


def load_ensemble_file(obj: dict, path, device) -> tuple[list[SCANN], dict]:
    """Members (eval mode) and metadata from a loaded ensemble dict."""
    if obj.get("format") not in ENSEMBLE_FORMATS:
        raise InputFileError(path, f"not a SCANN ensemble (expected format {' or '.join(map(repr, ENSEMBLE_FORMATS))})")
    try:
        if obj.get("target_members") is not None:
            check_target_members(obj["target_members"], len(obj.get("members") or []), obj.get("target_names") or [])
    except ConfigError as exc:
        raise InputFileError(path, f"damaged SCANN ensemble: {exc}") from exc
    models = []
    for sd in obj["members"]:
        m = build_model(obj["model_config"])
        m.load_state_dict(sd)
        models.append(m.to(device).eval())
    meta = {k: v for k, v in obj.items() if k != "members"}
    return models, meta
