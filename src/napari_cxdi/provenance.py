"""Provenance attached to every result written to disk: code version, configuration, environment."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

from ._version import __version__


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=2, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    return rev or None


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, numpy scalars/arrays and paths to JSON-serialisable values."""
    import numpy as np

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist() if obj.size <= 64 else f"<array {obj.shape} {obj.dtype}>"
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def provenance(config: Any = None, metrics: Any = None, **extra: Any) -> dict:
    """A JSON-serialisable record: package version, git revision, time, platform, config, metrics."""
    import numpy as np
    import torch

    record = {
        "software": "napari-cxdi",
        "version": __version__,
        "git_revision": _git_revision(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "config": to_jsonable(config) if config is not None else None,
        "metrics": to_jsonable(metrics) if metrics is not None else None,
    }
    record.update({k: to_jsonable(v) for k, v in extra.items()})
    return record


def provenance_json(config: Any = None, metrics: Any = None, **extra: Any) -> str:
    return json.dumps(provenance(config, metrics, **extra), indent=1, sort_keys=True)
