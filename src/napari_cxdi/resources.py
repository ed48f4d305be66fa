"""Locate the shipped ``sample_data/`` folder, in a wheel install and in a source checkout.

In a wheel the top-level ``sample_data/`` is packaged as ``napari_cxdi/sample_data``; in an
editable install or source checkout it is the repository's top-level folder.
"""

from __future__ import annotations

from pathlib import Path

from .errors import InputFileError

_PACKAGE_DIR = Path(__file__).resolve().parent


def sample_data_dir() -> Path:
    """Directory holding shipped sample files and pretrained models."""
    for candidate in (_PACKAGE_DIR / "sample_data", _PACKAGE_DIR.parent.parent / "sample_data"):
        if candidate.is_dir():
            return candidate
    raise InputFileError(_PACKAGE_DIR / "sample_data", "the shipped sample_data folder is missing from this install")


def sample_file(*parts: str) -> Path:
    """Path of a shipped file, e.g. ``sample_file("models", "scann_qm9_homo.pt")``."""
    path = sample_data_dir().joinpath(*parts)
    if not path.exists():
        raise InputFileError(path, "shipped sample file not found in this install")
    return path
