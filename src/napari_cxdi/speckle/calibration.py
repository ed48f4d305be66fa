"""Probability calibration: temperature scaling (Guo et al. 2017) fitted on a validation split, the
expected calibration error and the reliability curve."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from ..errors import DataValidationError


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of class indices ``labels`` under ``softmax(logits / T)``."""
    logp = log_softmax(np.asarray(logits, float) / temperature, axis=1)
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The ``T`` minimising the validation NLL of ``softmax(logits / T)`` (``labels``: class indices).

    One parameter, so the ranking (and the accuracy) is unchanged; ``T > 1`` softens over-confident
    networks."""
    logits, labels = np.asarray(logits, float), np.asarray(labels, int)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise DataValidationError(f"need logits (N, C) and N labels, got {logits.shape} and {labels.shape}")
    res = minimize_scalar(lambda lt: nll(logits, labels, float(np.exp(lt))),
                          bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded")
    return float(np.exp(res.x))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict:
    """Confidence (max probability) binned into ``bins`` equal-width bins: per bin the mean confidence,
    accuracy and count; plus the expected calibration error ``ECE = sum_b n_b/N |acc_b - conf_b|``."""
    probs, labels = np.asarray(probs, float), np.asarray(labels, int)
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(which, conf, bins) / count
        acc = np.bincount(which, correct.astype(float), bins) / count
    ece = float(np.nansum(count / max(len(labels), 1) * np.abs(acc - mean_conf)))
    return {"edges": edges.tolist(), "confidence": np.nan_to_num(mean_conf).tolist(),
            "accuracy": np.nan_to_num(acc).tolist(), "count": count.tolist(), "ece": ece}
