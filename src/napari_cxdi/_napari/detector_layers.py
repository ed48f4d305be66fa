"""Detector layers (mask, beam centre, crop box) and their reading back, without importing napari or Qt.

On opening a detector file the reader adds, beside the diffraction movie (in detector pixels):

* ``<stem> mask``: an editable Labels layer, 1 = bad pixel (the file's mask); paint to add, erase to remove;
* ``<stem> beam centre``: a Points layer with one point you can drag;
* ``<stem> crop``: a Shapes rectangle, the largest centred window; a reconstruction crops to the probe's
  size unless you resize the box (then the box's size counts; its position follows the beam centre).

The diffraction layer's metadata links them (``mask_layer``, ``centre_layer``, ``crop_layer``), and
:func:`detector_inputs` turns the layers back into what :func:`napari_cxdi.api.iter_reconstruction`
takes, so what you paint and drag is what the reconstruction uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .layers import LayerData


def is_detector_movie(movie, probe_size: int | None = None) -> bool:
    """True when a movie needs masking/centring/cropping: bad pixels in the file mask, a recorded beam centre
    off the frame's middle, or frames that are not square or not of the probe's size."""
    h, w = movie.shape[1:]
    has_mask = movie.mask is not None and movie.mask.bad is not None and bool(movie.mask.bad.any())
    c = movie.beam_centre
    off_centre = c is not None and (abs(c.y - h // 2) > 1 or abs(c.x - w // 2) > 1)
    return has_mask or off_centre or h != w or (probe_size is not None and probe_size != h)


def crop_rectangle(window) -> np.ndarray:
    """Corners [[y, x] x 4] of a crop window's detector rectangle (pixel edges)."""
    y0, x0, e = window.y0 - 0.5, window.x0 - 0.5, window.extent
    return np.array([[y0, x0], [y0, x0 + e], [y0 + e, x0 + e], [y0 + e, x0]], float)


def detector_layers(movie, stem: str, probe_size: int | None = None) -> tuple[list[LayerData], dict[str, Any]]:
    """(mask, centre and crop layer-data, the metadata that links them from the diffraction layer)."""
    from ..io.detector import plan_crop

    h, w = movie.shape[1:]
    centre, window = plan_crop(movie, probe_size, 1, None)
    bad = movie.mask.bad if movie.mask is not None and movie.mask.bad is not None else np.zeros((h, w), bool)
    names = {"mask_layer": f"{stem} mask", "centre_layer": f"{stem} beam centre", "crop_layer": f"{stem} crop"}
    common = {"axis_labels": ("y", "x")}
    layers: list[LayerData] = [
        (bad.astype(np.uint8), {"name": names["mask_layer"], "opacity": 0.5, "metadata": {"kind": "mask", "sources": list(
            movie.mask.sources) if movie.mask is not None else []}, **common}, "labels"),
        (np.array([[centre.y, centre.x]]), {"name": names["centre_layer"], "size": max(3, min(h, w) // 60),
                                             "face_color": "cyan", "metadata": {"kind": "beam_centre", "source": centre.source},
                                             **common}, "points"),
        ([crop_rectangle(window)], {"name": names["crop_layer"], "shape_type": "rectangle", "edge_color": "cyan",
                                     "face_color": "transparent", "edge_width": 1,
                                     "metadata": {"kind": "crop", "bin": 1, "planned_extent": window.extent}, **common}, "shapes"),
    ]
    return layers, names


def _layer(layers, name):
    if not name:
        return None
    try:
        return layers[name] if name in layers else None
    except (KeyError, TypeError):
        return None


def detector_inputs(diffraction_layer, layers) -> dict[str, Any]:
    """Keyword arguments for :func:`napari_cxdi.api.iter_reconstruction` from the linked layers.

    Returns ``{}`` for a layer without linked detector layers; else ``movie`` (the file reopened
    lazily when the layer came from one, so its geometry and saturation rules come along) and
    ``detector`` (:class:`~napari_cxdi.api.DetectorSettings`: the painted mask, the dragged centre,
    the crop box's size).
    """
    from ..api import DetectorSettings

    meta = diffraction_layer.metadata
    mask_layer = _layer(layers, meta.get("mask_layer"))
    centre_layer = _layer(layers, meta.get("centre_layer"))
    crop_layer = _layer(layers, meta.get("crop_layer"))
    if mask_layer is None and centre_layer is None and crop_layer is None:
        return {}
    frame = tuple(diffraction_layer.data.shape[-2:])
    settings: dict[str, Any] = {}
    if mask_layer is not None:
        bad = np.asarray(mask_layer.data)
        bad = bad.reshape(bad.shape[-2:]) if bad.ndim > 2 and np.prod(bad.shape[:-2]) == 1 else bad
        if bad.ndim == 2 and bad.shape == frame:
            settings["mask"] = bad != 0
            settings["use_file_mask"] = False  # the layer started as the file's mask: what is painted now counts
    if centre_layer is not None and len(centre_layer.data):
        y, x = np.asarray(centre_layer.data)[-1][-2:]
        settings["center"] = (float(y), float(x))
    if crop_layer is not None and len(crop_layer.data):
        corners = np.asarray(crop_layer.data[-1])[:, -2:]
        extent = float(max(np.ptp(corners[:, 0]), np.ptp(corners[:, 1])))
        b = int(crop_layer.metadata.get("bin", 1))
        size = int(round(extent / b)) // 2 * 2
        untouched = abs(extent - crop_layer.metadata.get("planned_extent", -1)) < 0.5 and b == 1
        if size >= 8 and not untouched:  # an untouched box: the size follows the probe
            settings["crop_size"] = size
            settings["bin"] = b
    out: dict[str, Any] = {"detector": DetectorSettings(**settings)}
    source = meta.get("source_path")
    if source and Path(source).exists():
        from ..io import open_movie

        movie = open_movie(source, validate=False)
        if tuple(movie.shape[1:]) == frame:
            out["movie"] = movie
    return out
