"""A trained speckle model with everything needed to apply it: network, classes, pre-processing.

Checkpoint (``torch.save`` of plain dicts/tensors, loadable with ``weights_only=True``)::

    {"format": "napari-cxdi-speckle-v1", "model": {depth, num_classes, width, task},
     "state_dict": ..., "classes": [n, ...], "preprocess": {window, bin, block, transform},
     "target_norm": [mean, std], "provenance": {...}}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..devices import resolve_device
from ..errors import DataValidationError, InputFileError
from .patterns import PreprocessConfig, prepare
from .resnet import SpeckleResNet

FORMAT = "napari-cxdi-speckle-v1"


@dataclass
class SpeckleClassifier:
    """``model`` maps prepared patterns to logits (classification) or normalised n (regression)."""

    model: SpeckleResNet
    classes: np.ndarray
    preprocess: PreprocessConfig
    target_norm: tuple[float, float] = (0.0, 1.0)
    provenance: dict = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.model.task

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device) -> SpeckleClassifier:
        self.model.to(resolve_device(device))
        return self

    @torch.no_grad()
    def predict_prepared(self, x: np.ndarray, batch_size: int = 32) -> dict:
        """Prepared inputs ``(N, S, S)`` -> ``{"pred" (N,) disk numbers, "probs" (N, C) or None,
        "value" (N,) regression output or expected n}``."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        self.model.eval()
        outs = []
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(x[i:i + batch_size]).to(self.device)[:, None]
            outs.append(self.model(xb).float().cpu())
        out = torch.cat(outs)
        classes = np.asarray(self.classes)
        if self.task == "regression":
            mean, std = self.target_norm
            value = out.numpy() * std + mean
            pred = classes[np.abs(value[:, None] - classes[None, :]).argmin(1)]
            return {"pred": pred, "probs": None, "value": value}
        probs = torch.softmax(out, 1).numpy()
        return {"pred": classes[probs.argmax(1)], "probs": probs, "value": probs @ classes}

    def predict(self, patterns: np.ndarray, input_bin: int = 1, batch_size: int = 32) -> dict:
        """Raw intensities ``(H, W)`` or ``(N, H, W)`` (k = 0 at the centre) -> see :meth:`predict_prepared`."""
        return self.predict_prepared(prepare(patterns, self.preprocess, input_bin), batch_size)

    def checkpoint(self, half: bool = False) -> dict:
        state = {k: (v.half() if half and v.is_floating_point() else v).cpu()
                 for k, v in self.model.state_dict().items()}
        return {"format": FORMAT, "model": self.model.config(), "state_dict": state,
                "classes": [int(c) for c in self.classes], "preprocess": asdict(self.preprocess),
                "target_norm": [float(v) for v in self.target_norm],
                # JSON round trip: plain str/float/dict only, so weights_only=True loading works
                "provenance": json.loads(json.dumps(self.provenance, default=str))}


def save_checkpoint(classifier: SpeckleClassifier, path: str | Path, half: bool = False,
                    overwrite: bool = True, protected=()) -> Path:
    """Write through the one write path (temporary + fsync + rename); never onto ``protected``.

    ``half`` stores float16 weights (half the size).
    """
    from ..io.safe_write import torch_save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return torch_save(classifier.checkpoint(half), path, overwrite=overwrite, protected=protected)


def read_checkpoint_file(path: Path):
    """The weights-only payload of a speckle checkpoint file (typed errors for a missing or unreadable file)."""
    if not path.is_file():
        raise InputFileError(path, "checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / foreign files
        raise InputFileError(path, f"cannot read checkpoint: {exc}") from exc


def load_checkpoint(path: str | Path, device: str | torch.device = "auto") -> SpeckleClassifier:
    """Load a checkpoint written by :func:`save_checkpoint` onto ``device`` (float32, eval mode)."""
    path = Path(path)
    ckpt = read_checkpoint_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputFileError(path, f"not a napari-cxdi speckle checkpoint (format {FORMAT})")
    model = SpeckleResNet(**ckpt["model"])
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    model.eval()
    clf = SpeckleClassifier(model, np.asarray(ckpt["classes"]), PreprocessConfig(**ckpt["preprocess"]),
                            tuple(ckpt.get("target_norm", (0.0, 1.0))), ckpt.get("provenance", {}))
    return clf.to(device)


def default_model_path() -> Path:
    """The shipped pretrained classifier."""
    from ..resources import sample_file

    return sample_file("models", "speckle_resnet18_mono.pt")


def check_classes(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Class indices of ``labels``; raises :class:`DataValidationError` for labels outside ``classes``."""
    classes = np.asarray(classes)
    idx = np.searchsorted(classes, labels)
    idx = np.clip(idx, 0, len(classes) - 1)
    if not np.all(classes[idx] == labels):
        bad = sorted(set(np.asarray(labels)[classes[idx] != labels].tolist()))
        raise DataValidationError(f"labels {bad} are not among the model's classes {classes.tolist()}")
    return idx
