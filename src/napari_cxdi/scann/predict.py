"""Prediction with a trained SCANN model: property per structure, GA score per atom, extxyz export."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..devices import resolve_device
from ..errors import ConfigError, InputFileError
from ..resources import sample_file
from .batching import batches
from .datasets import read_atoms, structures_from_atoms
from .environments import EnvironmentSet, featurize
from .domain import DomainModel, DomainReport, OutOfDomainWarning, structure_distance  # noqa: F401 (re-exported)
from .model import SCANN
from .train import load_checkpoint
from .uncertainty import (ENSEMBLE_FORMATS, SigmaModel, check_target_members, load_ensemble_file, member_statistics,
                          out_of_domain_sigma)
from .voronoi import VoronoiConfig

#: Shipped pretrained models (``sample_data/models/``): name -> (file, target or None for all).
#: One ensemble (snapshots of warm-restarted training runs, see scripts/train_scann_qm9.py) predicts HOMO and LUMO,
#: each from its own members; ``qm9-homo``/``qm9-lumo`` select one of them (and run only its members).
PRETRAINED = {"qm9-homo": ("scann_qm9_ensemble.pt", "homo"), "qm9-lumo": ("scann_qm9_ensemble.pt", "lumo"),
              "qm9": ("scann_qm9_ensemble.pt", None)}


@dataclass
class ScannPrediction:
    """Result for one structure.

    ``properties`` {name: value in ``units``} (ensemble mean), ``sigma`` {name: standard deviation}
    (from the model's sigma model: ensemble spread and latent distance, calibrated on held-out data,
    outside the domain at least the scaled ensemble spread; older files: the scaled ensemble spread;
    NaN for a single model without either), ``ga_scores``
    (N,) (sum to 1, ensemble mean) and ``ga_sigma`` (N,) their spread over members, ``domain`` the
    applicability-domain report (None when the model carries no domain), ``latent_distance`` the
    structure's distance to the training data that enters sigma (see
    :func:`napari_cxdi.scann.domain.structure_distance`; NaN without a domain), optionally the local
    attention of each layer (member 0) as (N, K, H) with ``neighbors`` (N, K).
    """

    properties: dict[str, float]
    units: dict[str, str]
    ga_scores: np.ndarray
    local_attention: list[np.ndarray] | None = None
    neighbors: np.ndarray | None = None
    sigma: dict[str, float] = field(default_factory=dict)
    ga_sigma: np.ndarray | None = None
    domain: DomainReport | None = None
    latent_distance: float = float("nan")

    @property
    def relative_ga_scores(self) -> np.ndarray:
        """N * alpha_i: 1 for an atom that gets the average attention (GA scores stay near 1/N)."""
        return self.ga_scores * len(self.ga_scores)

    @property
    def reliable(self) -> bool:
        """False when the structure is outside the model's applicability domain."""
        return self.domain is None or self.domain.in_domain

    def to_dict(self) -> dict:
        """JSON-ready: properties, sigma, units, GA scores and their spread, domain."""
        return {"properties": dict(self.properties), "sigma": {k: _num(v) for k, v in self.sigma.items()},
                "units": dict(self.units), "ga_scores": self.ga_scores.tolist(),
                "ga_sigma": None if self.ga_sigma is None else self.ga_sigma.tolist(),
                "reliable": self.reliable, "latent_distance": _num(self.latent_distance),
                "domain": None if self.domain is None else self.domain.to_dict()}


def _num(v: float):
    return None if v is None or not np.isfinite(v) else float(v)


def _load_model_file(path: Path, device) -> tuple[list[SCANN], dict]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise InputFileError(path, "model file does not exist") from exc
    except Exception as exc:
        raise InputFileError(path, f"not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, dict) and obj.get("format") in ENSEMBLE_FORMATS:
        return load_ensemble_file(obj, path, device)
    model, meta = load_checkpoint(path, device)
    return [model], meta


class ScannPredictor:
    """A loaded model or deep ensemble with the Voronoi settings it was trained with.

    ``targets``: predict only these of the model's targets (default all). Each target averages its own
    members (the file's ``target_members``; all when it has none); members that serve none of
    ``targets`` are not run, except member 0, whose atom vectors the applicability domain measures.
    """

    def __init__(self, model: SCANN | Sequence[SCANN], meta: dict, targets: Sequence[str] | None = None):
        self.models = [model] if isinstance(model, SCANN) else list(model)
        for m in self.models:
            m.eval()
        self.model = self.models[0]
        self.meta = meta
        self.voronoi = VoronoiConfig.from_dict(meta.get("voronoi_config", {}))
        names = list(meta.get("target_names", self.model.config.target_names))
        units = list(meta.get("target_units", [""] * len(names)))
        wanted = list(targets) if targets else names
        bad = [t for t in wanted if t not in names]
        if bad:
            raise ConfigError(f"the model predicts {names}, not {bad}")
        self._cols = [names.index(t) for t in wanted]
        self.target_names = wanted
        self.target_units = [units[c] for c in self._cols]
        every = check_target_members(meta.get("target_members"), len(self.models), names)
        # per asked target, its members (indices into self.models); the members run: those and member 0
        all_members = list(range(len(self.models)))
        self._target_members = [every[c] if every is not None else all_members for c in self._cols]
        self._ga_members = sorted(set().union(*self._target_members))  # the members that serve an asked target
        self._run = sorted(set(self._ga_members) | {0})
        scale = meta.get("sigma_scale")
        spread = np.array([len(idx) > 1 for idx in self._target_members])  # one member: no spread to scale (NaN)
        self.sigma_scale = (None if scale is None or not spread.any()
                            else np.where(spread, np.asarray(scale, float)[self._cols], np.nan))
        self.domain = DomainModel(meta["domain"]) if meta.get("domain") else None
        # sigma^2 = a std^2 + b d^2 + c (files since issue 16); needs the domain for the latent distance d
        sm = meta.get("sigma_model")
        self.sigma_model = SigmaModel.from_dict(sm).select(wanted) if sm and self.domain is not None else None

    @property
    def n_members(self) -> int:
        """How many members serve the asked targets (a file's members may be split between targets)."""
        return len(self._ga_members)

    @property
    def target_members(self) -> dict[str, list[int]]:
        """{target: the indices of the members whose mean and spread it reports}."""
        return {t: list(idx) for t, idx in zip(self.target_names, self._target_members)}

    @classmethod
    def load(cls, path_or_name: str | os.PathLike, device: str = "auto",
             targets: Sequence[str] | None = None) -> "ScannPredictor":
        """From a checkpoint or ensemble path, or a shipped model name (``qm9-homo``, ``qm9-lumo``, ``qm9``)."""
        name = str(path_or_name)
        if name in PRETRAINED:
            fname, target = PRETRAINED[name]
            path = sample_file("models", fname)
            targets = targets or ([target] if target else None)
        else:
            path = Path(path_or_name)
            if not path.exists():
                raise InputFileError(path, f"model file does not exist (shipped models: {', '.join(PRETRAINED)})")
        models, meta = _load_model_file(path, resolve_device(device))
        return cls(models, meta, targets)

    @torch.no_grad()
    def predict_environments(self, envs: EnvironmentSet, batch_size: int = 128, local_attention: bool = False,
                             periodic: Sequence[bool] | None = None) -> list[ScannPrediction]:
        """Predictions for featurised structures; ``periodic[s]`` marks crystals (domain check)."""
        device = next(self.model.parameters()).device
        results: list[ScannPrediction | None] = [None] * len(envs)
        units = dict(zip(self.target_names, self.target_units))
        cols = self._cols
        for sel, batch in batches(envs, batch_size, device=device):
            outs = {k: self.models[k](batch, return_local_attention=local_attention and k == 0) for k in self._run}
            preds = np.zeros((len(self.models), len(sel), len(cols)))  # (K, B, T); members not run stay 0, unused
            for k, o in outs.items():
                preds[k] = o.prediction.double().cpu().numpy()[:, cols]
            gas = np.stack([outs[k].ga_scores.double().cpu().numpy() for k in self._ga_members])  # (K_used, B, M)
            feats = outs[0].atom_features.float().cpu().numpy()
            mean, std = member_statistics(preds, self._target_members)
            if self.sigma_model is None:
                sigma = std * self.sigma_scale if self.sigma_scale is not None else np.full_like(mean, np.nan)
            else:
                sigma = np.full_like(mean, np.nan)  # filled per structure below (needs its latent distance)
            att = [a.cpu().numpy() for a in outs[0].local_attention] if local_attention else None
            nbr = batch["neighbors"].cpu().numpy()
            nmask = batch["neighbor_mask"].cpu().numpy()
            z = batch["z"].cpu().numpy()
            for b, s in enumerate(sel):
                n = int(batch["n_atoms"][b])
                report, dist = None, float("nan")
                if self.domain is not None:
                    e0, e1 = envs.edge_ptr[s], envs.edge_ptr[s + 1]
                    report = self.domain.check(z[b, :n], bool(periodic[s]) if periodic is not None else False,
                                               feats[b, :n], (envs.center[e0:e1], envs.neighbor[e0:e1]))
                    dist = structure_distance(report.atom_distance)
                if self.sigma_model is not None:
                    sigma[b] = self.sigma_model.sigma(std[b], dist)
                    if report is not None and self.sigma_scale is not None:
                        sigma[b] = out_of_domain_sigma(sigma[b], std[b] * self.sigma_scale, report.in_domain)
                results[s] = ScannPrediction(
                    {t: float(mean[b, i]) for i, t in enumerate(self.target_names)}, units,
                    gas[:, b, :n].mean(axis=0),
                    [a[b, :n] for a in att] if att else None,
                    np.where(nmask[b, :n], nbr[b, :n], -1) if local_attention else None,
                    sigma={t: float(sigma[b, i]) for i, t in enumerate(self.target_names)},
                    ga_sigma=gas[:, b, :n].std(axis=0) if len(self._ga_members) > 1 else None,
                    domain=report, latent_distance=dist)
        return results  # type: ignore[return-value]

    def predict(self, structures, batch_size: int = 128, local_attention: bool = False,
                n_jobs: int | None = None, warn: bool = True) -> list[ScannPrediction]:
        """Predict for ase Atoms, a list of them (e.g. a trajectory) or a file path (all frames).

        Structures outside the applicability domain get ``prediction.domain.in_domain == False``
        and, with ``warn``, one :class:`OutOfDomainWarning` naming the reasons."""
        frames = as_frames(structures)
        s = structures_from_atoms(frames)
        envs = featurize(s, self.voronoi, n_jobs=n_jobs, cache=False)
        results = self.predict_environments(envs, batch_size, local_attention,
                                            periodic=[c is not None for c in s.cells])
        if warn:
            warn_out_of_domain(frames, results)
        return results


def warn_out_of_domain(frames: Sequence, results: Sequence[ScannPrediction], stacklevel: int = 3) -> None:
    """One :class:`OutOfDomainWarning` for all out-of-domain structures (first three named)."""
    bad = [k for k, r in enumerate(results) if not r.reliable]
    if not bad:
        return
    lines = [f"structure {k} ({frames[k].get_chemical_formula()}): {results[k].domain.message()}" for k in bad[:3]]
    more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
    warnings.warn(f"{len(bad)} of {len(results)} structures are outside the model's applicability domain; "
                  "their predictions are unreliable. " + " | ".join(lines) + more, OutOfDomainWarning,
                  stacklevel=stacklevel)


def as_frames(structures) -> list:
    """ase Atoms, a sequence of them or a path -> list of Atoms."""
    if isinstance(structures, (str, os.PathLike)):
        return read_atoms(structures)
    if hasattr(structures, "get_atomic_numbers"):
        return [structures]
    frames = list(structures)
    if not frames:
        raise ConfigError("no structures to predict")
    return frames


def predict(model: ScannPredictor | str | os.PathLike, structures, **kwargs) -> list[ScannPrediction]:
    """Property per structure and GA score per atom (see :meth:`ScannPredictor.predict`)."""
    predictor = model if isinstance(model, ScannPredictor) else ScannPredictor.load(model)
    return predictor.predict(structures, **kwargs)


def annotate(frames: Sequence, results: Sequence[ScannPrediction], model: str | None = None) -> list:
    """Copies of the frames with per-atom ``ga_score``, ``ga_score_relative`` and ``ga_score_sigma``
    arrays, the predicted properties and their sigma in ``info`` (``<name>_pred``, ``<name>_sigma``),
    ``in_domain`` / ``domain_reasons``, and the software version / model used."""
    from .._version import __version__

    out = []
    for atoms, res in zip(frames, results):
        a = atoms.copy()
        a.calc = None
        a.set_array("ga_score", np.asarray(res.ga_scores, dtype=float))
        a.set_array("ga_score_relative", np.asarray(res.relative_ga_scores, dtype=float))
        if res.ga_sigma is not None:
            a.set_array("ga_score_sigma", np.asarray(res.ga_sigma, dtype=float))
        for k, v in res.properties.items():
            a.info[f"{k}_pred"] = v
            if k in res.sigma and np.isfinite(res.sigma[k]):
                a.info[f"{k}_sigma"] = res.sigma[k]
            if res.units.get(k):
                a.info[f"{k}_unit"] = res.units[k]
        if np.isfinite(getattr(res, "latent_distance", float("nan"))):
            a.info["latent_distance"] = float(res.latent_distance)
        if res.domain is not None:
            a.info["in_domain"] = bool(res.domain.in_domain)
            if res.domain.reasons:
                a.info["domain_reasons"] = " | ".join(res.domain.reasons)
        a.info["scann_software"] = f"napari-cxdi {__version__}"
        if model:
            a.info["scann_model"] = str(model)
        out.append(a)
    return out


def export_extxyz(frames: Sequence, results: Sequence[ScannPrediction], path: str | os.PathLike,
                  overwrite: bool = False, source: str | os.PathLike | None = None,
                  model: str | None = None, protected=()) -> Path:
    """Write an extxyz file (one frame per structure) with a ``ga_score`` column, readable by
    ase gui and OVITO. Never overwrites ``source`` (the input), nor an existing file unless asked."""
    import ase.io

    from ..io.safe_write import atomic_output

    path = Path(path)
    if len(frames) != len(results):
        raise ConfigError(f"{len(frames)} frames but {len(results)} predictions")
    annotated = annotate(frames, results, model)
    with atomic_output(path, overwrite=overwrite, protected=[source, *protected]) as tmp:
        ase.io.write(str(tmp), annotated, format="extxyz")
    return path
