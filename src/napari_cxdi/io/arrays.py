"""TIFF stacks and NumPy files.

``.npy`` is memory-mapped; ``.npz`` is read by key: ``--dataset`` / ``dataset=``, else ``arr_0`` (as in the
official PID3Net code) or another known movie name. Probes are read by :mod:`.probes`.
"""

from __future__ import annotations

import contextlib
import logging
import zipfile
from pathlib import Path

import numpy as np
import tifffile

from ..errors import CXDIError, DataValidationError, InputFileError
from .lazy import lazy_frames
from .movie import Movie
from .validate import as_frame_stack, check_dtype, check_readable

TIFF_SUFFIXES = (".tif", ".tiff")
NUMPY_SUFFIXES = (".npy", ".npz")


def _exists(path: Path) -> None:
    check_readable(path)


@contextlib.contextmanager
def _quiet_tifffile():
    """tifffile logs every malformed tag it skips; we report problems ourselves (typed errors)."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _tiff_series_frames(series, path: Path) -> tuple[int, tuple[int, int]]:
    """(frames, (H, W)) of one TIFF series: every axis but Y, X is a frame axis (T, Z, Q, I ...);
    RGB/sample and channel axes are refused (a detector records one value per pixel)."""
    axes, shape = str(series.axes), tuple(int(n) for n in series.shape)
    if "S" in axes and "Y" in axes and axes.index("S") < axes.index("Y") and np.dtype(series.dtype) != np.uint8:
        # planar "samples" of detector data: tifffile stores a plain 3- or 4-frame stack this way; not colour
        axes = axes.replace("S", "Q")
    for axis, what in (("S", "colour samples (an RGB/RGBA image?)"), ("C", "channels")):
        if axis in axes and shape[axes.index(axis)] > 1:
            raise DataValidationError(
                f"{path}: the TIFF holds {shape[axes.index(axis)]} {what} per pixel (axes {axes}, shape {shape}); "
                "a diffraction movie has one count per pixel - export the detector frames as grey-level images")
    if not axes.endswith("YX") or len(shape) < 2:
        raise DataValidationError(f"{path}: TIFF layout {axes} {shape} is not a stack of detector frames [.., Y, X]")
    frames = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return frames, (shape[-2], shape[-1])


def read_tiff_movie(path: str | Path) -> Movie:
    """A TIFF movie as a lazy [T, H, W] stack of ALL its frames.

    One page per frame (the usual detector TIFF), one multi-page series, several series (frames in
    file order) and ImageJ/OME hyperstacks (T, Z ... flattened) are read; RGB and multi-channel
    layouts are refused with :class:`DataValidationError`.
    """
    import dask.array as da

    path = Path(path)
    _exists(path)
    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            all_series = list(tif.series)
            if not all_series:
                raise InputFileError(path, "the TIFF file holds no images")
            layouts = []
            for series in all_series:
                n, frame = _tiff_series_frames(series, path)
                page_index = [getattr(pg, "index", None) for pg in series.pages]
                layouts.append((n, frame, series.dtype, page_index))
    except CXDIError:
        raise
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types (struct, zlib, ValueError ...)
        raise InputFileError(path, f"not a readable TIFF file (truncated or corrupt?): {type(exc).__name__}: {exc}") from exc
    frames = {layout[1] for layout in layouts}
    if len(frames) > 1:
        raise DataValidationError(f"{path}: the TIFF series have different frame sizes {sorted(frames)}; "
                                  "a movie needs one frame size")
    dtype = np.result_type(*[layout[2] for layout in layouts])
    check_dtype(dtype, str(path))
    (h, w), = frames
    parts = []
    for i, (n, _, sdtype, page_index) in enumerate(layouts):
        parts.append(_tiff_series_data(path, i, n, h, w, sdtype, page_index))
    if len(parts) == 1:
        data = parts[0]
    else:
        data = da.concatenate([p if isinstance(p, da.Array) else da.from_array(p, chunks=(1, h, w)) for p in parts], axis=0)
    as_frame_stack(tuple(data.shape), str(path))
    return Movie(data=data, path=path, format="tiff")


def _tiff_series_data(path: Path, index: int, n: int, h: int, w: int, dtype, page_index: list):
    try:
        with _quiet_tifffile():
            data = tifffile.memmap(path, series=index, mode="r")  # uncompressed, contiguous: zero-copy
        if data.size == n * h * w:
            return data.reshape(n, h, w)
    except Exception:  # noqa: BLE001 - compressed / tiled / non-contiguous: read page by page
        pass
    if len(page_index) == n and all(i is not None for i in page_index):

        def read_page(k: int, _p=str(path), _idx=tuple(page_index)) -> np.ndarray:
            try:
                with _quiet_tifffile(), tifffile.TiffFile(_p) as tif:
                    page = tif.pages[_idx[k]]
                    return np.asarray(page.asarray()).reshape(h, w)
            except Exception as exc:  # noqa: BLE001
                raise InputFileError(_p, f"cannot read TIFF frame {k} (page {_idx[k]}): {type(exc).__name__}: {exc}") from exc

        return lazy_frames(read_page, n, (h, w), dtype, name=f"tiff-{path}-{index}")
    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            return np.asarray(tif.series[index].asarray()).reshape(n, h, w)
    except Exception as exc:  # noqa: BLE001
        raise InputFileError(path, f"cannot read TIFF series {index}: {type(exc).__name__}: {exc}") from exc


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
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:  # numpy leaks the file on a bad zip
                key = _npz_key(z, path, dataset)
                data = np.asarray(z[key])
                others = [k for k in z.keys() if k != key]
        else:
            if dataset is not None:
                raise InputFileError(path, f"a .npy file holds one array; --dataset / dataset={dataset!r} applies to NPZ and HDF5 files")
            data = np.load(path, mmap_mode="r", allow_pickle=False)
            others = []
    except CXDIError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, TypeError, RuntimeError, MemoryError) as exc:
        raise InputFileError(path, f"not a readable NumPy file (truncated or corrupt?): {type(exc).__name__}: {exc}") from exc
    check_dtype(data.dtype, f"{path}[{key}]" if key else str(path))
    movie = Movie(data=data.reshape(as_frame_stack(data.shape, f"{path}[{key}]" if key else str(path))), path=path,
                  dataset=key, format=path.suffix.lower()[1:])
    if others:
        movie.metadata["other_arrays"] = ", ".join(others)
    return movie


def _npy_header(fh) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fh)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f"unsupported .npy format version {version}")
    shape, _, dtype = read(fh)
    return tuple(int(n) for n in shape), np.dtype(dtype)


def numpy_header(path: str | Path, dataset: str | None = None) -> tuple[tuple[int, ...], np.dtype, str | None]:
    """(shape, dtype, npz key) of an ``.npy`` / ``.npz`` movie from its header alone (no data read)."""
    path = Path(path)
    _exists(path)
    try:
        if path.suffix.lower() == ".npz":
            with zipfile.ZipFile(path) as z:
                headers = {}
                for name in z.namelist():
                    if name.endswith(".npy"):
                        with z.open(name) as fh:
                            headers[name[:-4]] = _npy_header(fh)

                class _Header:  # what _npz_key reads of an NPZ: keys() and [key].shape
                    def __init__(self, shape):
                        self.shape = shape

                class _Keys(dict):
                    pass

                key = _npz_key(_Keys({k: _Header(v[0]) for k, v in headers.items()}), path, dataset)
                shape, dtype = headers[key]
                return shape, dtype, key
        with open(path, "rb") as fh:
            shape, dtype = _npy_header(fh)
        return shape, dtype, None
    except CXDIError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError, TypeError, SyntaxError) as exc:
        raise InputFileError(path, f"not a readable NumPy file (truncated or corrupt?): {type(exc).__name__}: {exc}") from exc
