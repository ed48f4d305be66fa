"""Deep ensembles of SCANN models: mean and standard deviation of every prediction, calibration.

An ensemble is K models of the same architecture trained on the same data: independently seeded
runs (a deep ensemble), or the snapshots of one cyclic-learning-rate run (``TrainConfig.snapshots``;
cheaper, but its members agree more, so its sigma ranks errors less well; the shipped model is one).
For each structure the prediction is the members' mean and ``sigma = scale * std`` over members,
where the per-target ``scale`` is fitted on a held-out validation split (:func:`fit_scale`) so that
the errors fall within 1 sigma / 2 sigma about as often as for a normal distribution. GA scores
get a per-atom spread the same way (members' std, unscaled).

Files: one ``torch.save`` dict (``ENSEMBLE_FORMAT``) holding the members' weights, the shared model
and Voronoi configs, the calibration, the applicability domain (:mod:`.domain`) and provenance;
it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigError, InputFileError
from .batching import batches
from .environments import EnvironmentSet
from .model import SCANN, build_model

ENSEMBLE_FORMAT = "napari-cxdi-scann-ensemble/1"
#: Fractions of a normal distribution within 1 and 2 sigma.
NORMAL_COVERAGE = {1: 0.6827, 2: 0.9545}


@dataclass
class EnsembleOutput:
    """Predictions of K members for S structures.

    ``members`` (K, S, T), ``mean``/``std`` (S, T) (std over members, unscaled, ddof=0),
    ``ga_mean``/``ga_std``: per structure (N_s,) arrays, ``atom_features``: per structure (N_s, h)
    atom vectors of member 0 (for the applicability domain), or None when not asked.
    """

    members: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    ga_mean: list[np.ndarray]
    ga_std: list[np.ndarray]
    atom_features: list[np.ndarray] | None


@torch.no_grad()
def ensemble_predict(models: Sequence[SCANN], envs: EnvironmentSet, batch_size: int = 256,
                     atom_features: bool = False, device=None) -> EnsembleOutput:
    """Run every member over ``envs``; see :class:`EnsembleOutput`."""
    if not models:
        raise ConfigError("an ensemble needs at least one model")
    device = device or next(models[0].parameters()).device
    K, S, T = len(models), len(envs), models[0].config.n_targets
    preds = np.zeros((K, S, T))
    ga_mean: list = [None] * S
    ga_std: list = [None] * S
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
            ga_mean[s] = gas[:, b, :n].mean(axis=0)
            ga_std[s] = gas[:, b, :n].std(axis=0)
            if feats is not None:
                feats[s] = f0[b, :n].copy()
    return EnsembleOutput(preds, preds.mean(axis=0), preds.std(axis=0), ga_mean, ga_std, feats)


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


def calibration_report(mean: np.ndarray, sigma: np.ndarray, target: np.ndarray, names: Sequence[str]) -> dict:
    """MAE, mean sigma, fraction within 1 and 2 sigma and the error–sigma rank correlation per target."""
    from scipy.stats import spearmanr

    err = np.abs(mean - target)
    c1, c2 = coverage(mean, sigma, target, 1), coverage(mean, sigma, target, 2)
    rep = {}
    for t, name in enumerate(names):
        ok = ~np.isnan(err[:, t])
        rho = spearmanr(err[ok, t], sigma[ok, t]).statistic if ok.sum() > 2 else float("nan")
        rep[name] = {"mae": float(err[ok, t].mean()), "mean_sigma": float(sigma[ok, t].mean()),
                     "within_1_sigma": float(c1[t]), "within_2_sigma": float(c2[t]),
                     "spearman_error_sigma": float(rho), "n": int(ok.sum())}
    return rep


def save_ensemble(path: str | os.PathLike, models: Sequence[SCANN], *, voronoi: dict, scale: Sequence[float],
                  target_units: Sequence[str], domain: dict | None, provenance: dict) -> Path:
    """Write an ensemble file (see module docstring) atomically."""
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
        "sigma_scale": [float(s) for s in scale],
        "domain": domain,
        "provenance": json.loads(json.dumps(provenance, default=str)),
    }
    path = Path(path)
    _atomic_torch_save(obj, path)
    return path


def load_ensemble_file(obj: dict, path, device) -> tuple[list[SCANN], dict]:
    """Members (eval mode) and metadata from a loaded ensemble dict."""
    if obj.get("format") != ENSEMBLE_FORMAT:
        raise InputFileError(path, f"not a SCANN ensemble (expected format {ENSEMBLE_FORMAT!r})")
    models = []
    for sd in obj["members"]:
        m = build_model(obj["model_config"])
        m.load_state_dict(sd)
        models.append(m.to(device).eval())
    meta = {k: v for k, v in obj.items() if k != "members"}
    return models, meta
