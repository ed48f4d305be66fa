"""Reading and writing diffraction movies, probes and reconstructions (no Qt).

``open_movie(path)`` reads CXI, NeXus/HDF5 (incl. EIGER masters with external links and
bitshuffle/LZ4), TIFF stacks and NPY/NPZ, lazily where the format allows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputFileError
from .arrays import NUMPY_SUFFIXES, TIFF_SUFFIXES, read_numpy_movie, read_numpy_probe, read_tiff_movie
from .hdf5 import HDF5_SUFFIXES, inspect_hdf5, is_hdf5, read_hdf5_movie, read_hdf5_probe, read_hdf5_reconstruction
from .mask import DetectorMask, read_mask_file, suggest_hot_pixels
from .movie import Movie
from .validate import check_counts, check_measured, check_probe
from .writer import default_output_path, read_table, write_cxi

SUPPORTED_SUFFIXES = HDF5_SUFFIXES + TIFF_SUFFIXES + NUMPY_SUFFIXES


def detect_format(path: str | Path) -> str | None:
    """``"hdf5" | "tiff" | "numpy"`` from the suffix (and HDF5 signature), or None if not ours."""
    suffix = Path(path).suffix.lower()
    if suffix in HDF5_SUFFIXES or (suffix not in TIFF_SUFFIXES + NUMPY_SUFFIXES and is_hdf5(path)):
        return "hdf5"
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in NUMPY_SUFFIXES:
        return "numpy"
    return None


def open_movie(
    path: str | Path,
    dataset: str | None = None,
    validate: bool = True,
    mask=None,
    use_file_mask: bool = True,
) -> Movie:
    """Open a diffraction movie [T, H, W] from any supported file, lazily where possible.

    ``dataset`` picks the HDF5 dataset when a plain HDF5 file holds several. ``movie.mask`` is the
    :class:`~napari_cxdi.io.mask.DetectorMask`: the file's pixel mask (unless ``use_file_mask=False``),
    plus ``mask`` (a bad-pixel array [H, W], True = bad, or a mask file), plus the per-frame
    invalid-value rules; ``movie.beam_centre`` is the centre the file records, if any. With
    ``validate``, the first, middle and last frames must each hold measured pixels (the
    reconstruction checks every frame it loads). Raises :class:`InputFileError` / :class:`DataValidationError`.
    """
    path = Path(path)
    kind = detect_format(path)
    if kind == "hdf5":
        movie = read_hdf5_movie(path, dataset)
    elif kind == "tiff":
        movie = read_tiff_movie(path)
    elif kind == "numpy":
        movie = read_numpy_movie(path)
    else:
        raise InputFileError(path, f"unsupported file type {path.suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    if movie.mask is None:
        movie.mask = DetectorMask.for_dtype(movie.data.dtype)
    if not use_file_mask:
        movie.mask = movie.mask.without_file_mask()
    if mask is not None:
        extra = read_mask_file(mask) if isinstance(mask, (str, Path)) else np.asarray(mask, bool)
        movie.mask = movie.mask.with_bad(extra, str(mask) if isinstance(mask, (str, Path)) else "given")
    movie.mask.check_shape(movie.shape[1:], str(path))
    if validate:
        for t in sorted({0, movie.n_frames // 2, movie.n_frames - 1}):
            check_measured(movie.frames_raw(t, t + 1), movie.mask, str(path), first_frame=t)
    if movie.probe is not None:
        movie.probe = check_probe(movie.probe, movie.shape, where=f"{path} (probe)")
    return movie


def read_probe(path: str | Path, frame_shape: tuple[int, ...] | None = None, dataset: str | None = None) -> np.ndarray:
    """A complex probe [K, H, W] from NPY/NPZ or CXI/HDF5; checked against ``frame_shape`` if given."""
    path = Path(path)
    kind = detect_format(path)
    if kind == "numpy":
        probe = read_numpy_probe(path)
    elif kind == "hdf5":
        probe = read_hdf5_probe(path, dataset)
    else:
        raise InputFileError(path, f"unsupported probe file type {path.suffix!r}; use .npy, .npz, .cxi or .h5")
    probe = np.asarray(probe)
    if probe.ndim == 2:
        probe = probe[None]
    shape = frame_shape if frame_shape is not None else probe.shape
    return check_probe(probe, shape, where=str(path))


def movie_info(path: str | Path) -> dict:
    """What a file holds (format, dataset, shape, dtype, geometry, probe, reconstruction) without reading frames."""
    path = Path(path)
    info: dict = {}
    if detect_format(path) == "hdf5":
        layout = inspect_hdf5(path)
        info["reconstruction"] = layout.reconstruction
        if not layout.datasets:
            info.update({"path": str(path), "format": layout.kind, **layout.metadata})
            return info
    movie = open_movie(path, validate=False)
    info = {**movie.describe(), **info}
    info.update(movie.mask.describe())
    return info


__all__ = [
    "DetectorMask", "Movie", "SUPPORTED_SUFFIXES", "check_counts", "read_mask_file", "suggest_hot_pixels", "check_probe", "default_output_path", "detect_format",
    "inspect_hdf5", "movie_info", "open_movie", "read_hdf5_reconstruction", "read_probe", "read_table", "write_cxi",
]
