"""Checkpoints: weights + config + probe (and its hash) + training history + provenance."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..devices import resolve_device
from ..errors import InputFileError
from ..io.safe_write import check_output, torch_save
from ..provenance import provenance
from .config import PID3NetConfig
from .model import PID3Net

FORMAT = "napari-cxdi/pid3net/1"


def probe_hash(probe) -> str:
    """SHA-256 (first 16 hex digits) of a probe's complex64 bytes."""
    arr = np.ascontiguousarray(np.asarray(probe, dtype=np.complex64))
    return hashlib.sha256(arr.tobytes()).hexdigest()[:16]


def save_checkpoint(
    path: str | Path,
    model: PID3Net,
    history: list[dict] | None = None,
    optimizer_state: dict | None = None,
    scheduler_state: dict | None = None,
    metrics: dict | None = None,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
    protected: Iterable[str | Path | None] = (),
) -> Path:
    """Write a checkpoint through the one write path (temporary + fsync + rename).

    Refuses to replace a file unless ``overwrite`` and never writes onto ``protected`` (the inputs).
    """
    path = check_output(path, overwrite=overwrite, protected=protected)
    probe = model.probe.detach().cpu().numpy()
    payload = {
        "format": FORMAT,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "probe": probe,
        "probe_hash": probe_hash(probe),
        "frame_size": model.frame_size,
        "history": history or [],
        "optimizer": optimizer_state,
        "scheduler": scheduler_state,
        "provenance": provenance(model.config, metrics, n_parameters=model.n_parameters(), **(extra or {})),
    }
    return torch_save(payload, path, overwrite=overwrite, protected=protected)


def load_checkpoint(path: str | Path, device: str | torch.device = "auto") -> tuple[PID3Net, dict]:
    """Rebuild the model from a checkpoint; returns (model in eval mode on ``device``, payload)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise InputFileError(path, f"not a readable PID3Net checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputFileError(path, "not a napari-cxdi PID3Net checkpoint")
    config = PID3NetConfig.from_dict(payload["config"])
    model = PID3Net(config, payload["probe"])
    model.load_state_dict(payload["state_dict"])
    model.to(resolve_device(device)).eval()
    return model, payload
