"""Lazy, frame-chunked access to movies larger than memory.

A :class:`H5FrameSource` opens its HDF5 file only for the duration of each read, so a dask array
built on it holds no file handle (the file can be moved, rewritten or deleted by its owner, and
napari never keeps it locked). Each dask chunk is one frame.
"""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import h5py
import hdf5plugin  # noqa: F401  (registers bitshuffle/LZ4 and other HDF5 filters)
import numpy as np

from ..errors import InputFileError


class H5FrameSource:
    """Array-like view of an HDF5 dataset (``shape``, ``dtype``, ``__getitem__``) that reopens the file per read."""

    def __init__(self, path: str | Path, dataset: str, shape: tuple[int, ...], dtype):
        self.path = str(path)
        self.dataset = dataset
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        try:
            with h5py.File(self.path, "r") as f:
                return f[self.dataset][key]
        except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
            text = str(exc)
            if "filter" in text.lower() or "plugin" in text.lower():
                hint = ("the data are compressed with an HDF5 filter that is not available here; install "
                        "hdf5plugin (bitshuffle, LZ4, Blosc, Zstd ...) or the writer's plugin")
            elif isinstance(exc, KeyError) or "doesn't exist" in text or "unable to open" in text.lower():
                hint = "the dataset or a file it links to is missing"
            else:
                hint = "a data chunk is corrupt or truncated"
            raise InputFileError(self.path, f"cannot read {self.dataset}{_fmt_key(key)}: {hint} ({exc})") from exc


def _fmt_key(key) -> str:
    if isinstance(key, tuple) and key and isinstance(key[0], slice):
        return f"[{key[0].start}:{key[0].stop}]"
    return ""


def lazy_h5_dataset(path: str | Path, dataset: str, shape, dtype) -> da.Array:
    """A dask array [T, H, W] over an HDF5 dataset, chunked by frame (a 2D dataset becomes one frame)."""
    source = H5FrameSource(path, dataset, shape, dtype)
    chunks = (1,) + tuple(shape[1:]) if len(shape) == 3 else tuple(shape)
    arr = da.from_array(source, chunks=chunks, asarray=True, fancy=False, lock=False, name=f"h5-{path}-{dataset}")
    return arr[None] if arr.ndim == 2 else arr


def lazy_frames(read_frame, n_frames: int, frame_shape: tuple[int, int], dtype, name: str) -> da.Array:
    """A dask array [T, H, W] from a function ``read_frame(i) -> [H, W]`` (e.g. one TIFF page)."""
    delayed = dask.delayed(read_frame, pure=True)
    frames = [da.from_delayed(delayed(i), shape=frame_shape, dtype=dtype, name=f"{name}-{i}") for i in range(n_frames)]
    return da.stack(frames)
