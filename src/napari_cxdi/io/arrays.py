"""TIFF stacks and NumPy files.

``.npy`` is memory-mapped; ``.npz`` is read by key: ``--dataset`` / ``dataset=``, else ``arr_0`` (as in the
official PID3Net code) or another known movie name. Probes are read by :mod:`.probes`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import tifffile

from ..errors import InputFileError
from .lazy import lazy_frames
from .movie import Movie
from .validate import as_frame_stack, check_dtype

TIFF_SUFFIXES = (".tif", ".tiff")
NUMPY_SUFFIXES = (".npy", ".npz")


def _exists(path: Path) -> None:
    if not path.exists():
        raise InputFileError(path, "file not found")
    if path.stat().st_size == 0:
        raise InputFileError(path, "the file is empty (0 bytes)")


def read_tiff_movie(path: str | Path) -> Movie:
    """A TIFF stack (one frame per page, or one 3D page series) as a lazy [T, H, W] movie."""
    path = Path(path)
    _exists(path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), series.dtype
            n_pages = len(tif.pages)
    except (tifffile.TiffFileError, OSError, ValueError, IndexError) as exc:
        raise InputFileError(path, f"not a readable TIFF file: {exc}") from exc
    check_dtype(dtype, str(path))
    t, h, w = as_frame_stack(shape, str(path))
    try:
        data = tifffile.memmap(path, mode="r")  # uncompressed, contiguous: zero-copy
        data = data.reshape(t, h, w)
    except (ValueError, OSError):
        if n_pages == t:

            def read_page(i: int, _p=str(path)) -> np.ndarray:
                return tifffile.imread(_p, key=i)

            data = lazy_frames(read_page, t, (h, w), dtype, name=f"tiff-{path}")
        else:
            data = tifffile.imread(path).reshape(t, h, w)
    return Movie(data=data, path=path, format="tiff")


MOVIE_KEYS = ("arr_0", "data", "counts", "intensity", "diffraction", "reciprocal", "patterns", "frames")


def _npz_key(z, path: Path, dataset: str | None = None) -> str:
    keys = list(z.keys())
    if dataset is not None:
        key = dataset.lstrip("/")
        if key not in keys:
            raise InputFileError(path, f"no array {dataset!r} in the NPZ file; its keys: {', '.join(keys)}")
        return key
    for key in MOVIE_KEYS:
        if key in keys:
            return key
    if len(keys) == 1:
        return keys[0]
    shapes = ", ".join(f"{k} {z[k].shape}" for k in keys[:8])
    raise InputFileError(path, f"cannot tell which array is the movie among {shapes}; choose one "
                               "(CLI: --dataset KEY, API: dataset=KEY)")


def read_numpy_movie(path: str | Path, dataset: str | None = None) -> Movie:
    """``.npy`` (memory-mapped, lazy) or ``.npz`` (key ``dataset``, else ``arr_0`` or another known name) as [T, H, W]."""
    path = Path(path)
    _exists(path)
    key = None
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                key = _npz_key(z, path, dataset)
                data = np.asarray(z[key])
                others = [k for k in z.keys() if k != key]
        else:
            if dataset is not None:
                raise InputFileError(path, f"a .npy file holds one array; --dataset / dataset={dataset!r} applies to NPZ and HDF5 files")
            data = np.load(path, mmap_mode="r", allow_pickle=False)
            others = []
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputFileError(path, f"not a readable NumPy file (truncated or corrupt?): {exc}") from exc
    check_dtype(data.dtype, f"{path}[{key}]" if key else str(path))
    movie = Movie(data=data.reshape(as_frame_stack(data.shape, f"{path}[{key}]" if key else str(path))), path=path,
                  dataset=key, format=path.suffix.lower()[1:])
    if others:
        movie.metadata["other_arrays"] = ", ".join(others)
    return movie
