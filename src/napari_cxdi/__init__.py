"""napari-cxdi: coherent X-ray diffraction movies to real-space movies of moving nanoparticles.

The public API is importable without Qt or napari; sub-packages load on first use::

    import napari_cxdi as cx
    movie = cx.open_movie("scan.cxi")
    result = cx.reconstruct(movie, method="PID3Net-PO", epochs=20)
"""

from __future__ import annotations

import importlib

from ._version import __version__

_EXPORTS = {
    "reconstruct": "api", "iter_reconstruction": "api", "train": "api", "evaluate": "api", "Reconstruction": "api",
    "open_movie": "io", "read_probe": "io", "write_cxi": "io", "movie_info": "io",
    "DetectorSettings": "api", "prepare_input": "api", "read_mask_file": "io", "suggest_hot_pixels": "io",
    "prepare_movie": "io.detector", "estimate_centre": "io.detector", "plan_crop": "io.detector",
    "simulate_aunp": "simulate", "simulate_test_chart": "simulate",
    "PID3Net": "pid3net", "PID3NetConfig": "pid3net", "load_checkpoint": "pid3net", "save_checkpoint": "pid3net",
    "resolve_device": "devices",
    "iter_batch": "batch", "BatchConfig": "batch",  # the blocking form: napari_cxdi.batch.batch / api.batch
    "iter_live": "live", "LiveConfig": "live", "read_live_output": "live",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'napari_cxdi' has no attribute {name!r}")
