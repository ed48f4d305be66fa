"""Speckle classification metrics and calibration against hand-computed values (issue 20: mutation testing of
speckle/evaluate.py and speckle/calibration.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_cxdi.errors import DataValidationError
from napari_cxdi.speckle.calibration import fit_temperature, nll, reliability
from napari_cxdi.speckle.evaluate import classification_report, confusion_matrix, format_report


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


Y_TRUE = np.array([2, 2, 3, 4, 4, 4])
Y_PRED = np.array([2, 3, 3, 4, 2, 4])


def test_confusion_matrix_hand_value_and_refusals():
    cm = confusion_matrix(Y_TRUE, Y_PRED, np.array([2, 3, 4]))
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])      # rows true, columns predicted
    np.testing.assert_array_equal(confusion_matrix(Y_TRUE, Y_PRED, [4, 3, 2]), [[2, 0, 1], [0, 1, 0], [0, 1, 1]])
    assert cm.dtype == np.int64
    with pytest.raises(DataValidationError, match=_exact("label arrays differ in shape: (6,) vs (5,)")):
        confusion_matrix(Y_TRUE, Y_PRED[:5], [2, 3, 4])
    with pytest.raises(DataValidationError, match=_exact("label 5 is not among the classes")):
        confusion_matrix(np.array([2, 5]), np.array([2, 2]), [2, 3, 4])
    with pytest.raises(DataValidationError, match=_exact("label 7 is not among the classes")):
        confusion_matrix(np.array([2, 3]), np.array([2, 7]), [2, 3, 4])


def test_classification_report_hand_values():
    r = classification_report(Y_TRUE, Y_PRED)
    # precision = diag / column sums (2, 2, 2); recall = diag / row sums (2, 1, 3)
    precision, recall = [0.5, 0.5, 1.0], [0.5, 1.0, 2 / 3]
    f1 = [0.5, 2 / 3, 0.8]
    assert r["n"] == 6 and r["accuracy"] == pytest.approx(4 / 6)
    assert r["errors"] == 2 and r["errors_gt1"] == 1 and r["errors_gt2"] == 0 and r["mae"] == pytest.approx(0.5)
    assert r["macro_precision"] == pytest.approx(np.mean(precision))
    assert r["macro_recall"] == pytest.approx(np.mean(recall))
    assert r["macro_f1"] == pytest.approx(np.mean(f1))
    assert r["classes"] == [2, 3, 4] and r["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    for row, c, p, rc, f, s in zip(r["per_class"], [2, 3, 4], precision, recall, f1, [2, 1, 3]):
        assert row == {"class": c, "precision": pytest.approx(p), "recall": pytest.approx(rc),
                       "f1": pytest.approx(f), "support": s}


def test_classification_report_absent_classes_and_large_errors():
    """Class 7 is predicted but never true: precision 0, recall 0 (no support), left out of the macro means;
    class 9 is listed but never seen: all zeros."""
    y_true = np.array([2, 2, 3, 3])
    y_pred = np.array([2, 7, 3, 3])
    r = classification_report(y_true, y_pred, classes=[2, 3, 7, 9])
    assert r["errors_gt1"] == 1 and r["errors_gt2"] == 1 and r["mae"] == pytest.approx(5 / 4)
    rows = {row["class"]: row for row in r["per_class"]}
    assert rows[7] == {"class": 7, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert rows[9] == {"class": 9, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["macro_precision"] == pytest.approx(1.0)                 # classes 2 and 3 only
    assert r["macro_recall"] == pytest.approx(0.75) and r["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)
    off_by_two = classification_report(np.array([2, 4]), np.array([4, 4]))
    assert off_by_two["errors_gt1"] == 1 and off_by_two["errors_gt2"] == 0


def test_format_report_text():
    text = format_report(classification_report(Y_TRUE, Y_PRED), title="test set")
    assert text.splitlines() == [
        "test set",
        " class precision  recall     F1  support",
        "     2     0.500   0.500  0.500        2",
        "     3     0.500   1.000  0.667        1",
        "     4     1.000   0.667  0.800        3",
        "accuracy 0.6667 (2 errors in 6, 1 off by >1), macro F1 0.656, MAE 0.500",
    ]
    assert format_report(classification_report(Y_TRUE, Y_PRED)).splitlines()[0].startswith(" class")


def test_nll_hand_values():
    logits = np.array([[0.0, np.log(3.0)]])
    assert nll(logits, np.array([1])) == pytest.approx(-np.log(0.75))
    assert nll(logits, np.array([0])) == pytest.approx(-np.log(0.25))
    p = np.sqrt(3.0) / (1 + np.sqrt(3.0))                  # softmax of (0, ln 3) / 2
    assert nll(logits, np.array([1]), temperature=2.0) == pytest.approx(-np.log(p))


def test_fit_temperature_matches_the_empirical_frequency():
    """Logits (0, ln 9) say 90 %; 3 of 4 are right, so the calibrated odds are 3: (ln 9) / T = ln 3, T = 2."""
    logits = np.tile([0.0, np.log(9.0)], (4, 1))
    assert fit_temperature(logits, np.array([1, 1, 1, 0])) == pytest.approx(2.0, rel=1e-4)
    # 1 in 10 right would need a negative temperature: the search stops at the upper bound
    many = np.tile([0.0, np.log(9.0)], (10, 1))
    assert fit_temperature(many, np.array([1] + [0] * 9), bounds=(0.5, 4.0)) == pytest.approx(4.0, rel=1e-3)
    # always right: the sharpest allowed temperature
    assert fit_temperature(logits, np.array([1, 1, 1, 1]), bounds=(0.5, 4.0)) == pytest.approx(0.5, rel=1e-3)


def test_fit_temperature_refusals():
    with pytest.raises(DataValidationError, match=_exact("need logits (N, C) and N labels, got (4,) and (4,)")):
        fit_temperature(np.zeros(4), np.zeros(4))
    with pytest.raises(DataValidationError, match=_exact("need logits (N, C) and N labels, got (4, 2) and (3,)")):
        fit_temperature(np.zeros((4, 2)), np.zeros(3))
    with pytest.raises(DataValidationError, match=_exact("need logits (N, C) and N labels, got (0, 2) and (0,)")):
        fit_temperature(np.zeros((0, 2)), np.zeros(0))


def test_reliability_hand_values():
    probs = np.array([[0.93, 0.07], [0.64, 0.36], [0.28, 0.72], [0.55, 0.45], [0.02, 0.98]])
    labels = np.array([0, 1, 1, 0, 0])
    # confidences 0.93, 0.64, 0.72, 0.55, 0.98; right: yes, no, yes, yes, no
    two = reliability(probs, labels, bins=2)
    assert two["edges"] == [0.0, 0.5, 1.0] and two["count"] == [0, 5]
    assert two["confidence"] == [0.0, pytest.approx(3.82 / 5)] and two["accuracy"] == [0.0, pytest.approx(0.6)]
    assert two["ece"] == pytest.approx(abs(0.6 - 3.82 / 5))
    ten = reliability(probs, labels)
    assert ten["count"] == [0, 0, 0, 0, 0, 1, 1, 1, 0, 2]
    assert ten["confidence"][9] == pytest.approx((0.93 + 0.98) / 2) and ten["accuracy"][9] == pytest.approx(0.5)
    assert ten["accuracy"][5:8] == [1.0, 0.0, 1.0]
    # ECE: 1/5 (|1 - 0.55| + |0 - 0.64| + |1 - 0.72|) + 2/5 |0.5 - 0.955|
    assert ten["ece"] == pytest.approx((0.45 + 0.64 + 0.28) / 5 + 0.4 * 0.455)
    sure = reliability(np.array([[1.0, 0.0], [0.01, 0.99]]), np.array([0, 1]))
    assert sure["count"][9] == 2 and sure["ece"] == pytest.approx(0.005)   # confidence 1.0 lands in the top bin


def test_classification_report_of_a_class_never_predicted_is_clean():
    """Class 3 is true once but never predicted: precision 0 (not NaN), recall 0, and no numpy warning
    reaches the user's console; an error of exactly 3 disks counts as more than 2."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = classification_report(np.array([2, 3, 2]), np.array([2, 2, 5]), classes=[2, 3, 5])
    rows = {row["class"]: row for row in r["per_class"]}
    assert rows[3] == {"class": 3, "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert r["errors_gt2"] == 1 and r["errors_gt1"] == 1
    assert r["macro_precision"] == pytest.approx(0.5 / 2)          # classes 2 (1/2) and 3 (0)


def test_nll_is_a_mean_over_samples_of_a_softmax_per_sample():
    logits = np.array([[0.0, np.log(3.0)], [np.log(4.0), 0.0]])
    # row 0: p(1) = 3/4; row 1: p(0) = 4/5
    assert nll(logits, np.array([1, 0])) == pytest.approx(-(np.log(0.75) + np.log(0.8)) / 2)


def test_fit_temperature_takes_labels_stored_as_floats():
    logits = np.tile([0.0, np.log(9.0)], (4, 1))
    assert fit_temperature(logits, np.array([1.0, 1.0, 1.0, 0.0])) == pytest.approx(2.0, rel=1e-4)


def test_reliability_keeps_every_bin_and_stays_quiet():
    """Confidences only in the middle bins: all `bins` entries are still reported (empty ones 0) without a
    numpy warning; with 20 classes a confidence of 0.06 lands in the first bin; one sample: ECE = |acc - conf|."""
    import warnings

    probs = np.array([[0.62, 0.38], [0.28, 0.72]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = reliability(probs, np.array([0, 0]))
    assert r["count"] == [0, 0, 0, 0, 0, 0, 1, 1, 0, 0]
    assert r["confidence"] == [0.0] * 6 + [pytest.approx(0.62), pytest.approx(0.72), 0.0, 0.0]
    assert r["accuracy"] == [0.0] * 6 + [1.0, 0.0, 0.0, 0.0]
    flat = np.full((1, 20), 0.94 / 19)
    flat[0, 3] = 0.06
    low = reliability(flat, np.array([3]))
    assert low["count"][0] == 1 and low["accuracy"][0] == 1.0 and low["confidence"][0] == pytest.approx(0.06)
    assert low["ece"] == pytest.approx(0.94)
    one = reliability(np.array([[0.3, 0.7]]), np.array([0]))
    assert one["ece"] == pytest.approx(0.7)
