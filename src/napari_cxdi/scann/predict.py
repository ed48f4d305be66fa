"""Prediction with a trained SCANN model: property per structure, GA score per atom, extxyz export."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..devices import resolve_device
from ..errors import ConfigError
from ..resources import sample_file
from .data import EnvironmentSet, batches, featurize, read_atoms, structures_from_atoms
from .model import SCANN
from .train import load_checkpoint
from .voronoi import VoronoiConfig

#: Shipped pretrained models (``sample_data/models/``), by QM9 target.
PRETRAINED = {"qm9-homo": "scann_qm9_homo.pt", "qm9-lumo": "scann_qm9_lumo.pt"}


@dataclass
class ScannPrediction:
    """Result for one structure: ``properties`` {name: value in ``units``}, ``ga_scores`` (N,)
    (sum to 1), optionally the local attention of each layer as (N, K, H) with ``neighbors`` (N, K)."""

    properties: dict[str, float]
    units: dict[str, str]
    ga_scores: np.ndarray
    local_attention: list[np.ndarray] | None = None
    neighbors: np.ndarray | None = None

    @property
    def relative_ga_scores(self) -> np.ndarray:
        """N * alpha_i: 1 for an atom that gets the average attention (GA scores stay near 1/N)."""
        return self.ga_scores * len(self.ga_scores)


class ScannPredictor:
    """A loaded model with the Voronoi settings it was trained with."""

    def __init__(self, model: SCANN, meta: dict):
        self.model = model.eval()
        self.meta = meta
        self.voronoi = VoronoiConfig(**meta.get("voronoi_config", {}))
        self.target_names = list(meta.get("target_names", model.config.target_names))
        self.target_units = list(meta.get("target_units", [""] * len(self.target_names)))

    @classmethod
    def load(cls, path_or_name: str | os.PathLike, device: str = "auto") -> "ScannPredictor":
        """From a checkpoint path or a shipped model name (``qm9-homo``, ``qm9-lumo``)."""
        name = str(path_or_name)
        if name in PRETRAINED:
            path = sample_file("models", PRETRAINED[name])
        else:
            path = Path(path_or_name)
        model, meta = load_checkpoint(path, resolve_device(device))
        return cls(model, meta)

    @torch.no_grad()
    def predict_environments(self, envs: EnvironmentSet, batch_size: int = 128,
                             local_attention: bool = False) -> list[ScannPrediction]:
        device = next(self.model.parameters()).device
        results: list[ScannPrediction | None] = [None] * len(envs)
        units = dict(zip(self.target_names, self.target_units))
        for sel, batch in batches(envs, batch_size, device=device):
            out = self.model(batch, return_local_attention=local_attention)
            pred = out.prediction.double().cpu().numpy()
            ga = out.ga_scores.double().cpu().numpy()
            att = [a.cpu().numpy() for a in out.local_attention] if local_attention else None
            nbr = batch["neighbors"].cpu().numpy()
            nmask = batch["neighbor_mask"].cpu().numpy()
            for b, s in enumerate(sel):
                n = int(batch["n_atoms"][b])
                results[s] = ScannPrediction(
                    {t: float(pred[b, i]) for i, t in enumerate(self.target_names)}, units, ga[b, :n].copy(),
                    [a[b, :n] for a in att] if att else None,
                    np.where(nmask[b, :n], nbr[b, :n], -1) if local_attention else None)
        return results  # type: ignore[return-value]

    def predict(self, structures, batch_size: int = 128, local_attention: bool = False,
                n_jobs: int | None = None) -> list[ScannPrediction]:
        """Predict for ase Atoms, a list of them (e.g. a trajectory) or a file path (all frames)."""
        frames = as_frames(structures)
        s = structures_from_atoms(frames)
        envs = featurize(s, self.voronoi, n_jobs=n_jobs, cache=False)
        return self.predict_environments(envs, batch_size, local_attention)


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
    """Copies of the frames with per-atom ``ga_score`` and ``ga_score_relative`` arrays, the
    predicted properties in ``info`` (``<name>_pred``) and the software version / model used."""
    from .._version import __version__

    out = []
    for atoms, res in zip(frames, results):
        a = atoms.copy()
        a.calc = None
        a.set_array("ga_score", np.asarray(res.ga_scores, dtype=float))
        a.set_array("ga_score_relative", np.asarray(res.relative_ga_scores, dtype=float))
        for k, v in res.properties.items():
            a.info[f"{k}_pred"] = v
            if res.units.get(k):
                a.info[f"{k}_unit"] = res.units[k]
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
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=overwrite, protected=[source, *protected]) as tmp:
        ase.io.write(tmp, annotate(frames, results, model), format="extxyz")
    return path
