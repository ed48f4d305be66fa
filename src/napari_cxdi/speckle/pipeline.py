"""Split -> train -> test, with the first-moment baseline on the same split (used by the CLI, the
training script and the benchmark)."""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from ..errors import DataValidationError
from .baseline import FirstMomentBaseline, first_moment
from .classifier import SpeckleClassifier
from .dataset import SpeckleData, split_indices
from .evaluate import classification_report
from .patterns import PreprocessConfig, center_crop, prepare
from .train import TrainConfig, train


def baseline_reports(data: SpeckleData, preprocess: PreprocessConfig, train_idx: np.ndarray,
                     test_idx: np.ndarray, mode: str = "raw") -> dict:
    """First-moment baseline (``nearest`` and ``regression`` read-outs) fitted on ``train_idx`` and
    scored on ``test_idx``, on the same window the network sees."""
    crop = preprocess.input_size * preprocess.bin // data.bin
    moments = first_moment(center_crop(data.patterns, crop), mode, preprocess.block, data.bin)
    out = {}
    for readout in ("nearest", "regression"):
        base = FirstMomentBaseline(readout).fit(moments[train_idx], data.labels[train_idx])
        out[readout] = classification_report(data.labels[test_idx], base.predict(moments[test_idx]), base.classes)
    return out


def evaluate_classifier(clf: SpeckleClassifier, data: SpeckleData, idx: np.ndarray | None = None,
                        batch_size: int = 32) -> dict:
    """Network report on ``data`` (all samples or ``idx``)."""
    idx = np.arange(len(data.labels)) if idx is None else np.asarray(idx)
    preds = [clf.predict(data.patterns[idx[i:i + 256]], data.bin, batch_size)["pred"] for i in range(0, len(idx), 256)]
    return classification_report(data.labels[idx], np.concatenate(preds), clf.classes)


def fit_and_test(data: SpeckleData, preprocess: PreprocessConfig, config: TrainConfig,
                 test_per_class: int | None = None, test_fraction: float = 0.1, val_fraction: float = 0.1,
                 split_seed: int = 0, extra_config: dict | None = None
                 ) -> Generator[dict, None, tuple[SpeckleClassifier, dict]]:
    """Split as in seed 001, train (yielding the training progress), test.

    Returns ``(classifier, report)`` with ``report = {"network": ..., "baseline": {"nearest", "regression"},
    "split": sizes}``; the report is also stored in ``classifier.provenance["metrics"]["test"]``.
    """
    if preprocess.bin % data.bin:
        raise DataValidationError(f"dataset binned by {data.bin} cannot feed a model binned by {preprocess.bin}")
    tr, va, te = split_indices(data.labels, test_per_class, test_fraction, val_fraction, split_seed)
    x = prepare(data.patterns, preprocess, data.bin)
    extra = {"dataset": data.config, "split": {"test_per_class": test_per_class, "test_fraction": test_fraction,
                                               "val_fraction": val_fraction, "split_seed": split_seed},
             **(extra_config or {})}
    clf = yield from train(x[tr], data.labels[tr], x[va], data.labels[va], preprocess, config,
                           classes=np.unique(data.labels), extra_config=extra)
    yield {"stage": "test", "n_test": int(te.size)}
    pred = clf.predict_prepared(x[te])["pred"]
    report = {"network": classification_report(data.labels[te], pred, clf.classes),
              "baseline": baseline_reports(data, preprocess, tr, te),
              "split": {"train": int(tr.size), "val": int(va.size), "test": int(te.size)}}
    clf.provenance.setdefault("metrics", {})["test"] = {
        "accuracy": report["network"]["accuracy"], "macro_f1": report["network"]["macro_f1"],
        "errors": report["network"]["errors"], "n": report["network"]["n"],
        "baseline_nearest_accuracy": report["baseline"]["nearest"]["accuracy"],
        "baseline_regression_accuracy": report["baseline"]["regression"]["accuracy"]}
    return clf, report
