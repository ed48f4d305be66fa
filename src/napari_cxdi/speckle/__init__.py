"""n-disk speckle simulation, ResNet classifier, first-moment baseline and saliency (seed 001).

Modules: ``disks`` (model system), ``patterns`` (|F|^2 on the 9x-oversampled k grid, pre-processing),
``dataset`` (parallel simulation, HDF5, splits), ``resnet``, ``train``, ``classifier`` (checkpoints),
``evaluate``, ``baseline``, ``saliency``, ``pipeline`` (split -> train -> test with the baseline),
``features`` (ring I(q), speckle contrast, moments, one-disk fit), ``radial`` / ``radial_train`` (the
radial-feature models and their streaming training), ``patterson`` / ``patterson_train`` (the 2-D model on
the Patterson map, i.e. the autocorrelation, for polydisperse disks), ``calibration``, ``models`` (shipped models by name,
``classify_patterns`` / ``explain_pattern`` with the out-of-domain warning).
Names below are imported on first use, so ``import napari_cxdi.speckle`` does not load torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DiskSystem": "disks", "random_disk_system": "disks", "object_function": "disks", "thickness_map": "disks",
    "speckle_dft": "patterns", "speckle_analytic": "patterns", "airy_pattern": "patterns",
    "PreprocessConfig": "patterns", "prepare": "patterns", "standardize": "patterns",
    "add_poisson_noise": "patterns",
    "SpeckleDatasetConfig": "dataset", "make_dataset": "dataset", "write_dataset": "dataset",
    "load_dataset": "dataset", "split_indices": "dataset", "load_patterns": "dataset",
    "SpeckleResNet": "resnet", "build_resnet": "resnet",
    "TrainConfig": "train", "run_training": "train",
    "SpeckleClassifier": "classifier", "save_checkpoint": "classifier", "load_checkpoint": "classifier",
    "default_model_path": "classifier",
    "classification_report": "evaluate", "confusion_matrix": "evaluate",
    "first_moment": "baseline", "FirstMomentBaseline": "baseline",
    "saliency_map": "saliency", "grad_cam": "saliency",
    "fit_and_test": "pipeline",
    "FeatureConfig": "features", "radial_features": "features",
    "RadialClassifier": "radial", "load_radial": "radial", "save_radial": "radial",
    "RadialTrainConfig": "radial_train", "train_radial": "radial_train",
    "PattersonClassifier": "patterson", "load_patterson": "patterson", "save_patterson": "patterson",
    "patterson_maps": "patterson", "patterson_features": "patterson",
    "PattersonTrainConfig": "patterson_train", "train_patterson": "patterson_train",
    "fit_temperature": "calibration", "reliability": "calibration",
    "MODELS": "models", "DEFAULT_MODEL": "models", "model_names": "models", "load_model": "models",
    "classify_patterns": "models", "explain_pattern": "models", "OutOfDomainWarning": "models",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
