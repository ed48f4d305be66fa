"""Split -> train -> test (speckle/pipeline.py) with a tiny ResNet: the reports are the numbers the parts
compute (network on the test split, first-moment baselines on the same window), nothing else."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_cxdi.errors import DataValidationError
from napari_cxdi.progress import drain
from napari_cxdi.speckle.baseline import FirstMomentBaseline, first_moment
from napari_cxdi.speckle.dataset import SpeckleData, split_indices
from napari_cxdi.speckle.evaluate import classification_report
from napari_cxdi.speckle.patterns import PreprocessConfig, center_crop, prepare
from napari_cxdi.speckle.pipeline import baseline_reports, evaluate_classifier, fit_and_test
from napari_cxdi.speckle.train import TrainConfig

PRE = PreprocessConfig(window=33, bin=3, block=3)          # 11 x 11 network input
CFG = TrainConfig(depth=18, width=4, epochs=2, batch_size=16, augment=False, patience=None, device="cpu", seed=1)


def _data(per_class=20, size=39, bin_=1, classes=(2, 5, 9), swap=0):
    """Rings whose radius grows with the label (plus noise): the first moment separates the classes. The
    window beyond 33 px (bin 1) holds a bright frame that a wrong crop would read."""
    rng = np.random.default_rng(0)
    c = size // 2
    y, x = np.mgrid[:size, :size] - c
    r = np.hypot(y, x) * bin_
    pats, labels = [], []
    for n in classes:
        for _ in range(per_class):
            r0 = 3.0 + 1.2 * n + rng.normal(0, 0.3)
            p = np.exp(-((r - r0) / 2.0) ** 2) + 0.05 * rng.uniform(size=r.shape)
            p[np.maximum(np.abs(y), np.abs(x)) * bin_ > 16] = 50.0
            pats.append(p)
            labels.append(n)
    pats = np.asarray(pats, np.float32)
    labels = np.asarray(labels)
    # `swap` samples carry another class's ring: which of them land in the test split changes the scores
    for i in rng.choice(len(labels), swap, replace=False):
        j = int(np.flatnonzero(labels != labels[i])[0])
        pats[i] = pats[j]
    return SpeckleData(pats, labels, np.arange(len(labels)), {"bin": bin_, "name": "rings"})


@pytest.mark.parametrize("bin_", [1, 3])
def test_baselines_read_the_network_window(bin_):
    data = _data(size=39 if bin_ == 1 else 13, bin_=bin_)
    tr, va, te = split_indices(data.labels, 4, seed=3)
    rep = baseline_reports(data, PRE, tr, te)
    crop = 33 // bin_
    for mode in ("raw",):
        m = first_moment(center_crop(data.patterns, crop), mode, PRE.block, bin_)
        for readout in ("nearest", "regression"):
            b = FirstMomentBaseline(readout).fit(m[tr], data.labels[tr])
            ref = classification_report(data.labels[te], b.predict(m[te]), b.classes)
            assert rep[readout] == ref
    assert rep["nearest"]["accuracy"] > 0.9   # rings inside the window separate the classes
    # the reports list every class of the model, also when the test samples hold one class only
    one = te[data.labels[te] == 2]
    r1 = baseline_reports(data, PRE, tr, one)
    assert r1["nearest"]["classes"] == [2, 5, 9] and r1["regression"]["classes"] == [2, 5, 9]
    # another first-moment mode is passed through
    sh = baseline_reports(data, PRE, tr, te, mode="shifted")
    m = first_moment(center_crop(data.patterns, crop), "shifted", PRE.block, bin_)
    b = FirstMomentBaseline("nearest").fit(m[tr], data.labels[tr])
    assert sh["nearest"] == classification_report(data.labels[te], b.predict(m[te]), b.classes)


def test_fit_and_test_reports_its_parts():
    torch.set_num_threads(1)
    data = _data(swap=9)
    events = []
    clf, report = drain(fit_and_test(data, PRE, CFG, test_per_class=4, val_fraction=0.2, split_seed=2,
                                     extra_config={"run": "x"}), events.append)
    tr, va, te = split_indices(data.labels, 4, 0.1, 0.2, 2)
    assert report["split"] == {"train": tr.size, "val": va.size, "test": te.size} == {"train": 36, "val": 12, "test": 12}
    assert {"stage": "test", "n_test": 12} in events
    assert [e["epoch"] for e in events if e["stage"] == "epoch"] == [1, 2]
    x = prepare(data.patterns, PRE, 1)
    pred = clf.predict_prepared(x[te])["pred"]
    assert report["network"] == classification_report(data.labels[te], pred, clf.classes)
    assert report["baseline"] == baseline_reports(data, PRE, tr, te)
    # (the split seed matters: another seed's test split scores differently)
    tr0, _, te0 = split_indices(data.labels, 4, 0.1, 0.2, 0)
    assert baseline_reports(data, PRE, tr0, te0) != report["baseline"]
    assert clf.provenance["metrics"]["n_train"] == 36 and clf.provenance["metrics"]["n_val"] == 12
    m = clf.provenance["metrics"]["test"]
    assert m == {"accuracy": report["network"]["accuracy"], "macro_f1": report["network"]["macro_f1"],
                 "errors": report["network"]["errors"], "n": report["network"]["n"],
                 "baseline_nearest_accuracy": report["baseline"]["nearest"]["accuracy"],
                 "baseline_regression_accuracy": report["baseline"]["regression"]["accuracy"]}
    cfg = clf.provenance["config"]
    assert cfg["dataset"] == {"bin": 1, "name": "rings"} and cfg["run"] == "x"
    assert cfg["split"] == {"test_per_class": 4, "test_fraction": 0.1, "val_fraction": 0.2, "split_seed": 2}
    np.testing.assert_array_equal(clf.classes, [2, 5, 9])
    # the network report on chosen samples is the classifier's own prediction on them
    ev = evaluate_classifier(clf, data, te)
    assert ev == report["network"]
    assert evaluate_classifier(clf, data, te[:1])["classes"] == [2, 5, 9]
    full = evaluate_classifier(clf, data)
    assert full["n"] == 60
    assert full == classification_report(data.labels, clf.predict(data.patterns, 1)["pred"], clf.classes)


def test_fit_and_test_fraction_split_and_binned_data():
    torch.set_num_threads(1)
    data = _data(per_class=10, size=13, bin_=3)
    clf, report = drain(fit_and_test(data, PRE, dataclasses.replace(CFG, epochs=1),
                                     test_fraction=0.2, val_fraction=0.2))
    tr, va, te = split_indices(data.labels, None, 0.2, 0.2, 0)
    assert report["split"] == {"train": tr.size, "val": va.size, "test": te.size} == {"train": 18, "val": 6, "test": 6}
    assert clf.provenance["config"]["split"]["test_per_class"] is None
    x = prepare(data.patterns, PRE, 3)
    assert report["network"] == classification_report(data.labels[te], clf.predict_prepared(x[te])["pred"],
                                                      clf.classes)
    assert "run" not in clf.provenance["config"]


def test_network_report_lists_every_class(monkeypatch):
    """The network report names all the model's classes, also those neither in the test split nor predicted
    (the network here answers 2 for everything)."""
    from napari_cxdi.speckle.classifier import SpeckleClassifier

    torch.set_num_threads(1)
    full = _data(per_class=10, size=13, bin_=3)
    keep = np.flatnonzero(full.labels != 9)[:20].tolist() + [int(np.flatnonzero(full.labels == 9)[0])]
    data = SpeckleData(full.patterns[keep], full.labels[keep], np.arange(21), full.config)
    seed = next(s for s in range(100) if 20 in split_indices(data.labels, None, 0.2, 0.2, s)[1])
    monkeypatch.setattr(SpeckleClassifier, "predict_prepared",
                        lambda self, x, batch_size=32: {"pred": np.full(len(x), 2), "probs": None, "value": None})
    _, report = drain(fit_and_test(data, PRE, dataclasses.replace(CFG, epochs=1), test_fraction=0.2,
                                   val_fraction=0.2, split_seed=seed))
    assert report["network"]["classes"] == [2, 5, 9]
    assert len(report["network"]["confusion"]) == 3


def test_classes_come_from_the_whole_dataset():
    """A class whose only sample is in the validation split is still a class of the model and of the report."""
    torch.set_num_threads(1)
    full = _data(per_class=10, size=13, bin_=3)
    keep = np.flatnonzero(full.labels != 9)[:20].tolist() + [int(np.flatnonzero(full.labels == 9)[0])]
    data = SpeckleData(full.patterns[keep], full.labels[keep], np.arange(21), full.config)
    seed = next(s for s in range(100) if 20 in split_indices(data.labels, None, 0.2, 0.2, s)[1])
    clf, report = drain(fit_and_test(data, PRE, dataclasses.replace(CFG, epochs=1), test_fraction=0.2,
                                     val_fraction=0.2, split_seed=seed))
    assert clf.classes.tolist() == [2, 5, 9] and clf.model.fc.out_features == 3
    assert report["network"]["classes"] == [2, 5, 9]


def test_evaluate_classifier_in_chunks_and_bin_errors():
    torch.set_num_threads(1)
    data = _data(per_class=100, size=13, bin_=3)      # 300 samples: two chunks of 256
    clf, _ = drain(fit_and_test(data, PRE, dataclasses.replace(CFG, epochs=1),
                                test_per_class=2))
    pred = clf.predict(data.patterns, 3)["pred"]
    assert evaluate_classifier(clf, data) == classification_report(data.labels, pred, clf.classes)
    idx = np.arange(5, 290, 2)
    assert evaluate_classifier(clf, data, idx, batch_size=7) == classification_report(data.labels[idx], pred[idx],
                                                                                       clf.classes)
    odd = _data(per_class=3, size=19, bin_=2)
    with pytest.raises(DataValidationError, match="^dataset binned by 2 cannot feed a model binned by 3$"):
        drain(fit_and_test(odd, PRE, CFG))
