"""Layer-data tuples ``(data, kwargs, layer_type)`` for napari, built without importing napari.

Every real-space layer of a movie uses the same scale ``(1 frame, dx nm, dx nm)`` with units
``(pixel, nm, nm)``, so reconstructions, ground truth and tracks overlay frame by frame and napari keeps
its nm units (one set of units for all layers: no "Inconsistent units" warnings). The diffraction movie
is shown on the same grid (the detector frame has as many pixels as the object frame); its own
reciprocal-space scale, ``q_pixel_per_nm = 1 / (N dx)`` (spatial frequency per detector pixel, nm^-1),
is carried in its metadata and shown by the reconstruction dock.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

LayerData = tuple[Any, dict[str, Any], str]


def movie_scale(pixel_size_nm: float | None) -> tuple[float, float, float]:
    dx = float(pixel_size_nm) if pixel_size_nm else 1.0
    return (1.0, dx, dx)


def _spatial_kwargs(name: str, pixel_size_nm: float | None, metadata: dict | None, ndim: int = 3) -> dict[str, Any]:
    """name, scale (frame, nm, nm), axis labels and units for a [T, H, W] (or [H, W]) layer."""
    kwargs: dict[str, Any] = {"name": name, "scale": movie_scale(pixel_size_nm)[-ndim:], "metadata": dict(metadata or {})}
    kwargs["axis_labels"] = ("t", "y", "x")[-ndim:]
    if pixel_size_nm:
        kwargs["units"] = ("pixel", "nm", "nm")[-ndim:]
    return kwargs


def spatial_geometry(pixel_size_nm: float | None, ndim: int = 3) -> dict[str, Any]:
    """scale, axis labels and units of a [T, H, W] (or [H, W]) real-space layer: what every movie layer shares."""
    return {k: v for k, v in _spatial_kwargs("", pixel_size_nm, None, ndim).items() if k in ("scale", "axis_labels", "units")}


def _contrast_limits(sample: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(sample)), float(np.percentile(sample, 99.95))
    return (lo, hi if hi > lo else lo + 1.0)


def diffraction_layer(data, name: str, pixel_size_nm: float | None = None, metadata: dict | None = None) -> LayerData:
    """Counts [T, H, W] (NumPy or dask): magma colormap, gamma 0.3 to show the weak speckles."""
    first = np.asarray(data[0].compute() if hasattr(data[0], "compute") else data[0])
    meta = {"kind": "diffraction", **(metadata or {})}
    if pixel_size_nm:
        meta.setdefault("q_pixel_per_nm", 1.0 / (float(pixel_size_nm) * int(np.shape(data)[-1])))
    kwargs = _spatial_kwargs(name, pixel_size_nm, meta)
    kwargs.update(colormap="magma", gamma=0.3, contrast_limits=_contrast_limits(first))
    return (data, kwargs, "image")


def phase_layer(phase, name: str, pixel_size_nm: float | None = None, metadata: dict | None = None) -> LayerData:
    """Phase [T, H, W] in radians with the cyclic ``twilight_shifted`` colormap over (-pi, pi)."""
    kwargs = _spatial_kwargs(name, pixel_size_nm, {"kind": "phase", **(metadata or {})}, np.ndim(phase))
    kwargs.update(colormap="twilight_shifted", contrast_limits=(-np.pi, np.pi))
    return (phase, kwargs, "image")


def amplitude_layer(amplitude, name: str, pixel_size_nm: float | None = None, metadata: dict | None = None) -> LayerData:
    kwargs = _spatial_kwargs(name, pixel_size_nm, {"kind": "amplitude", **(metadata or {})}, np.ndim(amplitude))
    kwargs.update(colormap="gray")
    return (amplitude, kwargs, "image")


def probe_layer(probe: np.ndarray, name: str, pixel_size_nm: float | None = None) -> LayerData:
    """Probe modes' intensity [K, H, W] (the first axis runs over modes)."""
    kwargs = _spatial_kwargs(name, pixel_size_nm, {"kind": "probe", "probe": probe})
    kwargs["axis_labels"] = ("mode", "y", "x")
    kwargs.update(colormap="viridis", visible=False)
    return ((np.abs(probe) ** 2).astype(np.float32), kwargs, "image")


def tracks_layer(trajectories: pd.DataFrame, name: str, pixel_size_nm: float | None = None) -> LayerData:
    """Tracks ``[track_id, t, y, x]`` in pixels (scaled to nm like the movie), with diameter as a feature."""
    data = trajectories[["particle", "frame", "y", "x"]].to_numpy(dtype=float)
    kwargs = _spatial_kwargs(name, pixel_size_nm, {"kind": "tracks"})
    kwargs.update(
        features=pd.DataFrame({"diameter_nm": trajectories["diameter_nm"].to_numpy(dtype=float)}),
        tail_length=10,
        tail_width=2,
    )
    return (data, kwargs, "tracks")
