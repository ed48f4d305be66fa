"""Checks that turn bad input into a clear, typed error instead of a silent wrong result."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from typing import Any, Generator

import numpy as np

from ..errors import DataValidationError, InputFileError, ProbeMismatchError

MAX_FRAMES = 10_000_000  # a declared shape beyond these is corrupt (never allocated, never chunked)
MAX_FRAME_SIDE = 65_536


def check_readable(path) -> None:
    """A typed :class:`InputFileError` for a missing, empty, folder or unreadable path."""
    if not os.path.lexists(path):
        raise InputFileError(path, "file not found")
    if not os.path.exists(path):
        raise InputFileError(path, f"is a symbolic link to a missing file ({os.readlink(path)})")
    if os.path.isdir(path):
        raise InputFileError(path, "is a folder, not a file; choose the movie file inside it")
    if not os.access(path, os.R_OK):
        raise InputFileError(path, "permission denied: you may not read this file (check its permissions)")
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise InputFileError(path, f"cannot be read: {exc}") from exc
    if size == 0:
        raise InputFileError(path, "the file is empty (0 bytes)")


def as_frame_stack(shape: tuple[int, ...], where: str) -> tuple[int, int, int]:
    """The [T, H, W] shape a movie of ``shape`` is read as: 2D -> one frame; 3D as is; else an error."""
    shape = tuple(int(n) for n in shape)
    if len(shape) == 2:
        stack = (1, *shape)
    elif len(shape) == 3:
        stack = shape
    elif len(shape) == 4 and shape[1] == 1:
        stack = (shape[0], shape[2], shape[3])
    else:
        stack = None
    if stack is not None:
        if 0 in stack:
            raise DataValidationError(f"{where}: the movie is empty (shape {shape})")
        if stack[0] > MAX_FRAMES or max(stack[1:]) > MAX_FRAME_SIDE or min(stack[1:]) < 2:
            raise DataValidationError(
                f"{where}: declared shape {shape} is not a plausible diffraction movie (at most {MAX_FRAMES} frames "
                f"of at most {MAX_FRAME_SIDE} pixels a side, at least 2x2); the file is probably corrupt")
        return stack
    raise DataValidationError(f"{where}: expected a diffraction movie [frames, H, W], got {len(shape)}-D data of shape {shape}")


def check_dtype(dtype, where: str) -> None:
    if np.issubdtype(dtype, np.complexfloating):
        raise DataValidationError(f"{where}: diffraction counts must be real, the data are complex ({dtype})")
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.bool_)):
        raise DataValidationError(f"{where}: diffraction counts must be numeric, got dtype {dtype}")


def check_measured(frames: np.ndarray, mask, where: str, first_frame: int = 0) -> None:
    """Raise :class:`DataValidationError` if a frame of ``frames`` [T, H, W] has no measured pixel.

    Invalid values (NaN, inf, negative, the integer maximum, saturated) are unmeasured pixels, not errors;
    a frame made only of them is.
    """
    frames = np.asarray(frames)
    invalid = mask.invalid(frames)
    if mask.bad is not None:
        invalid |= mask.bad
    for i in range(len(frames)):
        if invalid[i].all():
            f = frames[i]
            nan = int((~np.isfinite(f)).sum()) if np.issubdtype(f.dtype, np.floating) else 0
            neg = int((f < 0).sum()) if np.issubdtype(f.dtype, np.signedinteger) or np.issubdtype(f.dtype, np.floating) else 0
            raise DataValidationError(
                f"{where}: frame {i + first_frame} has no measured pixel ({nan} NaN or infinite, {neg} negative counts, "
                f"the rest masked or invalid); check the dataset and the mask"
            )


def check_counts(frames: np.ndarray, where: str, first_frame: int = 0, mask: np.ndarray | None = None,
                 allow_unmeasured: bool = False) -> None:
    """Raise :class:`DataValidationError` if ``frames`` [T, H, W] hold NaN/inf or negative counts.

    ``mask`` [H, W] bool, True = bad detector pixel: those pixels may hold anything and are ignored.
    ``allow_unmeasured``: NaN marks an unmeasured (masked) pixel and is allowed; infinities and negative
    counts are still errors. The error names the frame and the first bad pixel (y, x).
    """
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if np.iscomplexobj(frames):
        raise DataValidationError(f"{where}: diffraction counts must be real, the data are complex ({frames.dtype})")
    good = None if mask is None else ~np.asarray(mask, dtype=bool)
    if np.issubdtype(frames.dtype, np.floating):
        bad = np.isinf(frames) if allow_unmeasured else ~np.isfinite(frames)
        if good is not None:
            bad &= good
        if bad.any():
            t, y, x = (int(v) for v in np.argwhere(bad)[0])
            raise DataValidationError(
                f"{where}: frame {t + first_frame} contains NaN or infinite counts (first at pixel y={y}, x={x}; "
                f"{int(bad.sum())} pixels in this block); mask those pixels or fix the file")
    if np.issubdtype(frames.dtype, np.signedinteger) or np.issubdtype(frames.dtype, np.floating):
        with np.errstate(invalid="ignore"):
            neg = frames < 0
        if good is not None:
            neg &= good
        if neg.any():
            t, y, x = (int(v) for v in np.argwhere(neg)[0])
            raise DataValidationError(
                f"{where}: frame {t + first_frame} contains negative counts (first at pixel y={y}, x={x}: "
                f"{frames[t, y, x]}); mask or clip detector gaps first"
            )


def _cache_key(source: Any, mask: np.ndarray | None) -> tuple | None:
    """(path, dataset, mtime, size, mask hash) for a movie read from a file, else None (not cached)."""
    path = getattr(source, "path", None)
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    mask_hash = None if mask is None else hashlib.sha1(np.packbits(np.asarray(mask, bool)).tobytes()).hexdigest()
    return (os.path.realpath(path), getattr(source, "dataset", None), st.st_mtime_ns, st.st_size, mask_hash)


_CHECKED: OrderedDict[tuple, dict] = OrderedDict()
_CHECKED_LOCK = threading.Lock()
_CACHE_SIZE = 64


def iter_check_movie(
    movie, where: str | None = None, mask=None, block: int = 16,
) -> Generator[dict[str, Any], None, dict[str, Any]]:
    """Check EVERY frame of a movie before long work: real, finite, non-negative, not all zero.

    ``mask`` may also be a :class:`~napari_cxdi.io.mask.DetectorMask`: then the per-frame invalid values
    (NaN, inf, negative, gap sentinels, saturation) are unmeasured pixels, and a frame must hold some
    measured pixel.

    A streaming pass (``block`` frames at a time, so a lazy movie never sits in memory) that yields
    ``{"event": "progress", "stage": "validate", "done", "total"}`` and returns a summary
    ``{"frames", "total_counts", "max_count"}``. ``mask`` [H, W] (True = bad pixel) excludes pixels
    from all checks. The result is cached per file (path, dataset, mtime, size, mask), so a movie is
    checked once. Raises :class:`DataValidationError` naming the file, frame and pixel.
    """
    data = movie.data if hasattr(movie, "data") and hasattr(movie, "frames") else movie
    where = where or str(getattr(movie, "path", None) or "movie")
    shape = tuple(data.shape)
    if len(shape) == 2:
        data, shape = data[None], (1, *shape)
    if len(shape) != 3 or 0 in shape:
        raise DataValidationError(f"{where}: expected a movie [frames, H, W], got shape {shape}")
    check_dtype(data.dtype, where)
    detector_mask = mask if hasattr(mask, "invalid") else None  # io.mask.DetectorMask
    if detector_mask is not None:
        mask = detector_mask.bad
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != shape[1:]:
            raise DataValidationError(f"{where}: the mask is {mask.shape}, the frames are {shape[1:]}")
    key = _cache_key(movie, mask)
    if key is not None:
        with _CHECKED_LOCK:
            if key in _CHECKED:
                _CHECKED.move_to_end(key)
                return dict(_CHECKED[key])
    n = shape[0]
    total, peak = 0.0, 0.0
    invalid_pixels = invalid_frames = 0
    yield {"event": "progress", "stage": "validate", "done": 0, "total": n}
    for start in range(0, n, block):
        part = data[start:start + block]
        if hasattr(part, "compute"):
            part = part.compute()
        part = np.asarray(part)
        if detector_mask is not None:  # NaN, negative, gap sentinels, saturation: unmeasured, not errors
            if np.iscomplexobj(part):
                raise DataValidationError(f"{where}: diffraction counts must be real, the data are complex ({part.dtype})")
            check_measured(part, detector_mask, where, first_frame=start)
            excluded = detector_mask.invalid(part)
            if mask is not None:
                excluded &= ~mask  # count only the per-frame invalid values of good pixels
            n_bad = excluded.sum(axis=(1, 2))
            invalid_pixels += int(n_bad.sum())
            invalid_frames += int((n_bad > 0).sum())
            if mask is not None:
                excluded |= mask
            part = np.where(excluded, 0, part)
        else:
            check_counts(part, where, first_frame=start, mask=mask)
            if mask is not None:
                part = np.where(mask, 0, part)
        total += float(part.sum(dtype=np.float64))
        peak = max(peak, float(part.max()) if part.size else 0.0)
        yield {"event": "progress", "stage": "validate", "done": min(start + block, n), "total": n}
    if total <= 0:
        raise DataValidationError(
            f"{where}: all {n} frames are zero (no counts{' outside the mask' if mask is not None else ''}); "
            "check the dataset, the exposure or the detector mask")
    summary = {"frames": n, "total_counts": total, "max_count": peak, "invalid_pixels": invalid_pixels,
               "invalid_frames": invalid_frames}
    if key is not None:
        with _CHECKED_LOCK:
            _CHECKED[key] = summary
            while len(_CHECKED) > _CACHE_SIZE:
                _CHECKED.popitem(last=False)
    return summary


def check_movie(movie, where: str | None = None, mask: np.ndarray | None = None, progress=None) -> dict[str, Any]:
    """Blocking form of :func:`iter_check_movie`."""
    from ..progress import drain

    return drain(iter_check_movie(movie, where, mask), progress)


def check_probe(probe: np.ndarray, frame_shape: tuple[int, ...], where: str = "probe") -> np.ndarray:
    """A complex64 probe [K, H, W] matching ``frame_shape`` (a 2D probe becomes one mode)."""
    p = np.asarray(probe)
    if not np.issubdtype(p.dtype, np.number):
        raise ProbeMismatchError(f"{where}: a probe must be numeric (complex), got dtype {p.dtype}")
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3 or min(p.shape) < 1 or min(p.shape[-2:]) < 2:
        raise ProbeMismatchError(f"{where}: a probe must be [modes, H, W] (H, W >= 2), got shape {p.shape}")
    if tuple(p.shape[-2:]) != tuple(frame_shape[-2:]):
        raise ProbeMismatchError(
            f"{where}: probe frames are {p.shape[-2]}x{p.shape[-1]} but the diffraction frames are "
            f"{frame_shape[-2]}x{frame_shape[-1]}"
        )
    if not np.isfinite(p).all():
        raise DataValidationError(f"{where}: the probe contains NaN or infinite values")
    if not np.any(p):
        raise DataValidationError(f"{where}: the probe is zero everywhere")
    return p.astype(np.complex64)
