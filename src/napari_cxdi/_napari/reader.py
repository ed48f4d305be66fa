"""npe2 reader: diffraction movies (and our reconstructions) as napari layers.

Claims ``.cxi`` always, other HDF5 files only when a movie is found in them (other plugins also
read ``*.h5``), TIFF and NumPy files always. Errors are :class:`CXDIError` with the file named.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CXDIError
from ..io import detect_format, inspect_hdf5, open_movie, read_hdf5_reconstruction, typed_errors
from ..io.hdf5 import _open
from .detector_layers import detector_layers, is_detector_movie
from .layers import LayerData, amplitude_layer, diffraction_layer, phase_layer, probe_layer


def _claims(path: str) -> bool:
    try:
        return _claims_unchecked(path)
    except Exception:  # noqa: BLE001 - never raise from get_reader; read_layers reports the typed error
        return detect_format(path) is not None if Path(path).suffix else False


def _claims_unchecked(path: str) -> bool:
    kind = detect_format(path)
    if kind != "hdf5":
        return kind is not None
    if Path(path).suffix.lower() == ".cxi":
        return True
    try:
        layout = inspect_hdf5(path)
    except CXDIError:
        try:  # a file that is not even HDF5 is reported by us; a readable but foreign HDF5 is not ours
            _open(Path(path)).close()
        except CXDIError:
            return True
        return False
    return bool(layout.datasets or layout.reconstruction)


def get_reader(path):
    """Return :func:`read_layers` if napari-cxdi can read ``path`` (a path or a list of paths), else None."""
    paths = path if isinstance(path, list) else [path]
    if not paths or not all(_claims(str(p)) for p in paths):
        return None
    return read_layers


def read_layers(path) -> list[LayerData]:
    """Layer-data tuples for one or several files."""
    paths = path if isinstance(path, list) else [path]
    layers: list[LayerData] = []
    for p in paths:
        layers.extend(file_layers(Path(p)))
    return layers


@typed_errors
def file_layers(path: Path) -> list[LayerData]:
    layers: list[LayerData] = []
    stem = path.stem
    reconstruction = read_hdf5_reconstruction(path) if detect_format(path) == "hdf5" else None
    layout = inspect_hdf5(path) if reconstruction is not None else None
    if layout is None or layout.datasets:
        movie = open_movie(path)
        dx = movie.pixel_size_nm
        meta = {**movie.metadata, "source_path": str(path), "format": movie.format}
        if movie.probe is not None:
            meta["probe"] = movie.probe
        extra: list[LayerData] = []
        if is_detector_movie(movie):
            # a raw detector: layers in detector pixels, with editable mask, beam centre and crop box
            extra, links = detector_layers(movie, stem)
            meta.update(links)
            dx = None
        layers.append(diffraction_layer(movie.data, f"{stem} diffraction", dx, meta))
        layers.extend(extra)
        if movie.probe is not None:
            layers.append(probe_layer(movie.probe, f"{stem} probe", dx))
    else:
        dx = layout.metadata.get("pixel_size_nm")
    if reconstruction is not None:
        import dask.array as da

        meta = {"source_path": str(path)}
        layers.append(amplitude_layer(da.absolute(reconstruction), f"{stem} amplitude", dx, meta))
        layers.append(phase_layer(da.angle(reconstruction).astype(np.float32), f"{stem} phase", dx, meta))
    return layers
