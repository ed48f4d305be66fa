"""Speckle session (Qt-free): the last classification and its out-of-domain checks.

``ood_checks`` is a list of callables ``check(result) -> str | None``; each returns a warning when the
pattern looks outside the model's training domain. The default uses the class probabilities (low top
probability or high entropy); a proper feature-space check can be appended (``session.ood_checks.append``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from psygnal import Signal

from ._base import RunSession

MIN_TOP_PROBABILITY = 0.5
MAX_NORMALISED_ENTROPY = 0.6


def probability_ood(result: dict) -> str | None:
    """Warn when the classifier is unsure: top probability < 0.5 or normalised entropy > 0.6 (mean over frames)."""
    probs = result.get("probs")
    if probs is None or np.size(probs) == 0:
        return None
    p = np.clip(np.asarray(probs, float), 1e-12, 1.0)
    top = float(p.max(axis=1).mean())
    entropy = float((-(p * np.log(p)).sum(axis=1) / np.log(p.shape[1])).mean()) if p.shape[1] > 1 else 0.0
    if top < MIN_TOP_PROBABILITY or entropy > MAX_NORMALISED_ENTROPY:
        return (f"out of the model's domain? top probability {top:.2f}, normalised entropy {entropy:.2f}: the pattern "
                "may differ from the training patterns (e.g. polydisperse disks, another binning or window); "
                "do not trust n without checking")
    return None


class SpeckleSession(RunSession):
    """Signals: ``result_changed(dict)``, ``warning(str)``."""

    result_changed = Signal(dict)
    warning = Signal(str)

    def __init__(self):
        super().__init__("speckle")
        self.last_result: dict | None = None
        self.ood_checks: list[Callable[[dict], str | None]] = [probability_ood]
        self.target_layer: str | None = None

    def handle(self, event: dict) -> None:
        if "total" in event:
            self.set_progress(event["done"], event["total"])
            self.set_status(f"{event['done']}/{event['total']} frames")
        elif "stage" in event:
            self.set_status(event["stage"])

    def ood_warnings(self, result: dict) -> list[str]:
        out = []
        for check in self.ood_checks:
            msg = check(result)
            if msg:
                out.append(msg)
        return out

    def accept(self, result: dict | None) -> list[str]:
        """Keep a classification; returns (and emits) its out-of-domain warnings."""
        if result is None:
            self.cancelled()
            return []
        warnings = self.ood_warnings(result)
        result = {**result, "ood_warnings": warnings}
        self.last_result = result
        self.end("")
        self.result_changed.emit(result)
        for w in warnings:
            self.warning.emit(w)
        return warnings

    @staticmethod
    def result_text(result: dict) -> str:
        preds = result["pred"]
        if len(preds) == 1:
            text = f"n = {int(preds[0])}"
            if result["probs"] is not None:
                text += f"  (p = {float(result['probs'][0].max()):.2f})"
            else:
                text += f"  (regression {float(result['value'][0]):.2f})"
        else:
            vals, counts = np.unique(preds, return_counts=True)
            text = f"{len(preds)} frames; most frequent n = {int(vals[counts.argmax()])}; mean n = {preds.mean():.2f}"
        if result.get("ood_warnings"):
            text += "\n⚠ " + "\n⚠ ".join(result["ood_warnings"])
        return text
