"""Lazy, frame-chunked access to movies larger than memory.

A :class:`H5FrameSource` opens its HDF5 file only for the duration of each read, so a dask array
built on it holds no file handle (the file can be moved, rewritten or deleted by its owner, and
napari never keeps it locked). Each dask chunk is one frame. A crop / bin of the movie
(:func:`napari_cxdi.io.detector.prepare_movie`) reads instead a block of frames of its window per task
(:class:`H5Stack`, :func:`read_window_block`), the file opened once per block.
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
            raise InputFileError(self.path, f"cannot read {self.dataset}{_fmt_key(key)}: {read_error_hint(exc)} ({exc})") from exc


def read_error_hint(exc: Exception) -> str:
    """What a failed HDF5 read most likely means, for the user (a missing filter, link or a corrupt chunk)."""
    text = str(exc)
    if "filter" in text.lower() or "plugin" in text.lower():
        return ("the data are compressed with an HDF5 filter that is not available here; install "
                "hdf5plugin (bitshuffle, LZ4, Blosc, Zstd ...) or the writer's plugin")
    if isinstance(exc, KeyError) or "doesn't exist" in text or "unable to open" in text.lower():
        return "the dataset or a file it links to is missing"
    return "a data chunk is corrupt or truncated"


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


# -- block reads of a window (crop / bin at disk speed) -------------------------------------------------

class H5Stack:
    """Where the frames of a lazy HDF5 movie live: ``parts`` = [(dataset, n_frames, ndim)], concatenated in time.

    :func:`read_window_block` reads frames ``t0:t1`` of a detector window with the file open once per
    block, as one hyperslab per dataset (``dset[t0:t1, y0:y1, x0:x1]``: HDF5 decompresses only the
    chunks that intersect it), so a crop runs at the speed of a plain h5py read; no handle is held
    between blocks.
    """

    def __init__(self, path: str | Path, parts: list[tuple[str, int, int]]):
        self.path = str(path)
        self.parts = [(str(d), int(n), int(nd)) for d, n, nd in parts]  # ndim 4: [T, 1, H, W], frame = [:, 0]
        self.n_frames = sum(n for _, n, _ in self.parts)

    def __dask_tokenize__(self):
        return ("H5Stack", self.path, tuple(self.parts))


_STACKS: dict[str, H5Stack] = {}
_MAX_STACKS = 512


def register_h5_stack(data: da.Array, stack: H5Stack) -> da.Array:
    """Record that the dask array ``data`` (by its name) is exactly the frames of ``stack``."""
    if isinstance(data, da.Array) and data.shape[0] == stack.n_frames:
        if len(_STACKS) >= _MAX_STACKS:
            _STACKS.pop(next(iter(_STACKS)))
        _STACKS[data.name] = stack
    return data


def h5_stack_of(data) -> H5Stack | None:
    """The :class:`H5Stack` a lazy movie array reads, or None (not an HDF5 movie, or transformed since)."""
    stack = _STACKS.get(data.name) if isinstance(data, da.Array) else None
    # names follow the path: a file rewritten and reopened since re-registers it; an old array keeps its shape
    return stack if stack is not None and data.ndim == 3 and data.shape[0] == stack.n_frames else None


def read_window_block(stack: H5Stack, t0: int, t1: int, ys: int, ye: int, xs: int, xe: int) -> np.ndarray:
    """Frames ``t0:t1`` of the detector window ``[ys:ye, xs:xe]`` (native dtype), the file opened once."""
    pieces = []
    try:
        with h5py.File(stack.path, "r") as f:
            start = 0
            for name, count, ndim in stack.parts:
                a, b = max(t0, start), min(t1, start + count)
                if a < b:
                    dset = f[name]
                    if ndim == 2:
                        pieces.append(dset[ys:ye, xs:xe][None])
                    elif ndim == 4:
                        pieces.append(dset[a - start : b - start, 0, ys:ye, xs:xe])
                    else:
                        pieces.append(dset[a - start : b - start, ys:ye, xs:xe])
                start += count
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise InputFileError(stack.path, f"cannot read frames {t0}:{t1} of {stack.parts[0][0]}: {read_error_hint(exc)} "
                                         f"({exc})") from exc
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=0)
