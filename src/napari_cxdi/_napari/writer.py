"""npe2 writer: an image layer (diffraction movie or real-valued reconstruction) to CXI."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import write_cxi


def write_image_cxi(path: str, data, attributes: dict) -> list[str]:
    """Write one image layer; diffraction counts go to the detector data, other images to ``image_1``."""
    meta = dict(attributes.get("metadata") or {})
    probe = meta.pop("probe", None)
    source = meta.get("source_path")
    scale = attributes.get("scale") or (1.0, 1.0, 1.0)
    if meta.get("kind") != "diffraction" and "pixel_size_nm" not in meta and scale[-1] != 1.0:
        meta["pixel_size_nm"] = float(scale[-1])
    plain_meta = {k: v for k, v in meta.items() if not isinstance(v, np.ndarray)}
    kwargs = {"counts": data} if meta.get("kind") == "diffraction" else {"reconstruction": np.asarray(data).astype(np.complex64)}
    out = write_cxi(
        Path(path), probe=probe, metadata=plain_meta, config={"layer": attributes.get("name")},
        overwrite=True, protected=[source] if source else (), **kwargs,
    )
    return [str(out)]
