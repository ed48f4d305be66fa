"""Checks that turn bad input into a clear, typed error instead of a silent wrong result."""

from __future__ import annotations

import numpy as np

from ..errors import DataValidationError, ProbeMismatchError


def as_frame_stack(shape: tuple[int, ...], where: str) -> tuple[int, int, int]:
    """The [T, H, W] shape a movie of ``shape`` is read as: 2D -> one frame; 3D as is; else an error."""
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        if 0 in shape:
            raise DataValidationError(f"{where}: the movie is empty (shape {shape})")
        return tuple(shape)
    if len(shape) == 4 and shape[1] == 1:
        return (shape[0], shape[2], shape[3])
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


def check_counts(frames: np.ndarray, where: str, first_frame: int = 0, allow_unmeasured: bool = False) -> None:
    """Raise :class:`DataValidationError` if ``frames`` [T, H, W] hold NaN/inf or negative counts.

    allow_unmeasured: NaN marks an unmeasured (masked) pixel and is allowed; infinities and negative
    counts are still errors.
    """
    frames = np.asarray(frames)
    if np.issubdtype(frames.dtype, np.floating):
        bad = np.isinf(frames) if allow_unmeasured else ~np.isfinite(frames)
        if bad.any():
            t = int(np.argwhere(bad)[0][0]) + first_frame
            raise DataValidationError(f"{where}: frame {t} contains NaN or infinite counts ({int(bad.sum())} pixels in this block)")
    if np.issubdtype(frames.dtype, np.signedinteger) or np.issubdtype(frames.dtype, np.floating):
        with np.errstate(invalid="ignore"):
            neg = frames < 0
        if neg.any():
            t = int(np.argwhere(neg)[0][0]) + first_frame
            raise DataValidationError(
                f"{where}: frame {t} contains negative counts (min {frames.min()}); mask or clip detector gaps first"
            )


def check_probe(probe: np.ndarray, frame_shape: tuple[int, ...], where: str = "probe") -> np.ndarray:
    """A complex64 probe [K, H, W] matching ``frame_shape`` (a 2D probe becomes one mode)."""
    p = np.asarray(probe)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3:
        raise ProbeMismatchError(f"{where}: a probe must be [modes, H, W], got shape {p.shape}")
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
