"""SCANN / SCANN+: interpretable structure–property models with global-attention scores (no Qt).

Typical use::

    from napari_cxdi.scann import ScannPredictor, export_extxyz, read_atoms
    predictor = ScannPredictor.load("qm9-homo")          # shipped model, or a checkpoint path
    frames = read_atoms("trajectory.traj")
    results = predictor.predict(frames)                    # property per frame, GA score per atom
    export_extxyz(frames, results, "scored.extxyz")        # opens in ase gui / OVITO
"""

from .batching import batches, collate
from .datasets import (
    Structures,
    load_qm9,
    load_structures,
    qm9_subset_indices,
    read_atoms,
    split_indices,
    structures_from_atoms,
)
from .environments import EnvironmentSet, featurize
from .model import SCANN, ScannConfig, ScannOutput, build_model
from .domain import DomainModel, DomainReport, OutOfDomainWarning
from .predict import PRETRAINED, ScannPrediction, ScannPredictor, annotate, export_extxyz, predict
from .uncertainty import (EnsembleOutput, SigmaModel, calibration_report, coverage, ensemble_predict, error_by_sigma,
                          fit_scale, fit_sigma_model)
from .train import TrainConfig, TrainResult, evaluate, fit, load_checkpoint, mae, save_checkpoint, train_iter
from .voronoi import LocalEnvironment, VoronoiConfig, all_faces, local_environment

__all__ = [
    "DomainModel", "DomainReport", "EnsembleOutput", "OutOfDomainWarning", "calibration_report", "coverage",
    "ensemble_predict", "error_by_sigma", "fit_scale", "fit_sigma_model", "SigmaModel",
    "EnvironmentSet", "LocalEnvironment", "PRETRAINED", "SCANN", "ScannConfig", "ScannOutput",
    "ScannPrediction", "ScannPredictor", "Structures", "TrainConfig", "TrainResult", "VoronoiConfig",
    "all_faces", "annotate", "batches", "build_model", "collate", "evaluate", "export_extxyz", "featurize",
    "fit", "load_checkpoint", "load_qm9", "load_structures", "local_environment", "mae", "predict", "qm9_subset_indices",
    "read_atoms", "save_checkpoint", "split_indices", "structures_from_atoms", "train_iter",
]
