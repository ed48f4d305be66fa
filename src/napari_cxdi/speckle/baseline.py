"""The conventional baseline: first moment of the scattering (its width) -> disk number.

Smaller disks scatter wider, and with fixed total area the disk radius fixes n, so the intensity-
weighted mean ``|q|`` alone predicts n. Read-outs: ``nearest`` (nearest class mean of the moment) or
``regression`` (quadratic fit n(m), rounded to the nearest class).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, DataValidationError
from .patterns import BLOCK, block_center, standardize

MODES = ("raw", "absolute", "shifted", "normalized")
READOUTS = ("nearest", "regression")


def radius_map(shape: tuple[int, int], input_bin: int = 1) -> np.ndarray:
    """``|q|`` in full-resolution pixels from the centre pixel, for a pattern binned by ``input_bin``."""
    h, w = shape
    y = (np.arange(h) - h // 2) * input_bin
    x = (np.arange(w) - w // 2) * input_bin
    return np.hypot(y[:, None], x[None, :])


def first_moment(patterns: np.ndarray, mode: str = "raw", block: int = BLOCK, input_bin: int = 1) -> np.ndarray:
    """First moment ``sum(|q| w) / sum(w)`` (pixels) of ``(H, W)`` or ``(N, H, W)`` patterns.

    ``w`` is the intensity with the central block zeroed (``raw``), or of the standardised pattern
    ``Z``: ``|Z|`` (``absolute``), ``Z + 1`` (``shifted``, the seed's definition) or min-max scaled ``Z``
    (``normalized``). Returns a float or ``(N,)``.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown first-moment mode {mode!r}; choose one of {', '.join(MODES)}")
    x = np.asarray(patterns, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise DataValidationError(f"expected (H, W) or (N, H, W), got {x.shape}")
    blk = block // input_bin
    x = block_center(x, blk + (blk % 2 == 0 and blk > 0)).astype(np.float64)
    if mode != "raw":
        z = standardize(x).astype(np.float64)
        if mode == "absolute":
            x = np.abs(z)
        elif mode == "shifted":
            x = z + 1.0
        else:
            lo = z.min(axis=(-2, -1), keepdims=True)
            x = (z - lo) / (z.max(axis=(-2, -1), keepdims=True) - lo)
    q = radius_map(x.shape[-2:], input_bin)
    den = x.sum(axis=(-2, -1))
    if np.any(den == 0):
        raise DataValidationError("pattern has zero total weight outside the central block")
    return (x * q).sum(axis=(-2, -1)) / den


@dataclass
class FirstMomentBaseline:
    """One-feature classifier on the first moment."""

    readout: str = "nearest"
    classes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    class_means: np.ndarray = field(default_factory=lambda: np.zeros(0))
    coef: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fit(self, moments: np.ndarray, labels: np.ndarray) -> FirstMomentBaseline:
        if self.readout not in READOUTS:
            raise ConfigError(f"unknown read-out {self.readout!r}; choose one of {', '.join(READOUTS)}")
        moments, labels = np.asarray(moments, float), np.asarray(labels)
        self.classes = np.unique(labels)
        self.class_means = np.array([moments[labels == c].mean() for c in self.classes])
        self.coef = np.polyfit(moments, labels.astype(float), 2)
        return self

    def predict_value(self, moments: np.ndarray) -> np.ndarray:
        """Continuous n estimate (regression read-out)."""
        return np.polyval(self.coef, np.asarray(moments, float))

    def predict(self, moments: np.ndarray) -> np.ndarray:
        if self.classes.size == 0:
            raise ConfigError("fit the baseline before predicting")
        moments = np.asarray(moments, float)
        if self.readout == "nearest":
            return self.classes[np.abs(moments[:, None] - self.class_means[None, :]).argmin(1)]
        value = self.predict_value(moments)
        return self.classes[np.abs(value[:, None] - self.classes[None, :]).argmin(1)]
