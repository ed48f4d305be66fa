"""Classification metrics: confusion matrix, per-class precision / recall / F1, off-by-k rates."""

from __future__ import annotations

import numpy as np

from ..errors import DataValidationError


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``(C, C)`` counts, rows = true class, columns = predicted class (order of ``classes``)."""
    classes = np.asarray(classes)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise DataValidationError(f"label arrays differ in shape: {y_true.shape} vs {y_pred.shape}")
    lookup = {int(c): i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(y_true.tolist(), y_pred.tolist()):
        if t not in lookup or p not in lookup:
            raise DataValidationError(f"label {t if t not in lookup else p} is not among the classes")
        cm[lookup[t], lookup[p]] += 1
    return cm


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray | None = None) -> dict:
    """Accuracy, macro precision / recall / F1, per-class table, MAE in disks, the share of errors
    larger than one disk, and the confusion matrix (JSON-ready)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.unique(np.concatenate([y_true, y_pred])) if classes is None else np.asarray(classes)
    cm = confusion_matrix(y_true, y_pred, classes)
    tp = np.diag(cm).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / cm.sum(0), 0.0)
        recall = np.where(cm.sum(1) > 0, tp / cm.sum(1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = cm.sum(1) > 0
    err = np.abs(y_true - y_pred)
    return {
        "n": int(y_true.size),
        "accuracy": float(np.mean(err == 0)),
        "errors": int(np.sum(err != 0)),
        "errors_gt1": int(np.sum(err > 1)),
        "errors_gt2": int(np.sum(err > 2)),
        "mae": float(np.mean(err)),
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "per_class": [{"class": int(c), "precision": float(p), "recall": float(r), "f1": float(f),
                       "support": int(s)} for c, p, r, f, s in zip(classes, precision, recall, f1, cm.sum(1))],
        "classes": [int(c) for c in classes],
        "confusion": cm.tolist(),
    }


def format_report(report: dict, title: str = "") -> str:
    """Plain-text per-class table plus the summary line."""
    lines = [title] if title else []
    lines.append(f"{'class':>6} {'precision':>9} {'recall':>7} {'F1':>6} {'support':>8}")
    for row in report["per_class"]:
        lines.append(f"{row['class']:>6} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} {row['support']:>8}")
    lines.append(f"accuracy {report['accuracy']:.4f} ({report['errors']} errors in {report['n']}, "
                 f"{report['errors_gt1']} off by >1), macro F1 {report['macro_f1']:.3f}, MAE {report['mae']:.3f}")
    return "\n".join(lines)
