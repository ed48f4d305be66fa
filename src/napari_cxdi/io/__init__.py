"""Reading and writing diffraction movies, probes and reconstructions (no Qt).

``open_movie(path)`` reads CXI, NeXus/HDF5 (incl. EIGER masters with external links and
bitshuffle/LZ4), TIFF stacks and NPY/NPZ, lazily where the format allows.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..errors import CXDIError, InputFileError
from .arrays import NUMPY_SUFFIXES, TIFF_SUFFIXES, read_numpy_movie, read_numpy_probe, read_tiff_movie
from .hdf5 import HDF5_SUFFIXES, inspect_hdf5, is_hdf5, read_hdf5_movie, read_hdf5_probe, read_hdf5_reconstruction
from .movie import Movie
from .validate import check_counts, check_probe
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


def typed_errors(func):
    """Last line of defence at the reading boundary: any untyped exception becomes :class:`InputFileError`.

    The readers raise specific typed errors; this catches what a library raises for inputs nobody
    foresaw (struct/zlib errors of a corrupt file, MemoryError of a absurd declared size ...).
    """

    @functools.wraps(func)
    def wrapper(path, *args, **kwargs):
        try:
            return func(path, *args, **kwargs)
        except CXDIError:
            raise
        except PermissionError as exc:
            raise InputFileError(path, "permission denied: you may not read this file (check its permissions)") from exc
        except IsADirectoryError as exc:
            raise InputFileError(path, "is a folder, not a file; choose the movie file inside it") from exc
        except MemoryError as exc:
            raise InputFileError(path, "declares more data than fits in memory; the file is probably corrupt") from exc
        except (OSError, ValueError, TypeError, KeyError, IndexError, RuntimeError, AttributeError,
                ArithmeticError, EOFError, UnicodeError, LookupError) as exc:
            raise InputFileError(path, f"cannot be read ({type(exc).__name__}: {exc}); the file may be corrupt "
                                 "or of an unexpected layout") from exc
        except Exception as exc:  # noqa: BLE001 - e.g. struct.error, zlib.error, zipfile.BadZipFile
            raise InputFileError(path, f"cannot be read ({type(exc).__module__}.{type(exc).__name__}: {exc}); "
                                 "the file may be corrupt") from exc

    return wrapper


@typed_errors
def open_movie(path: str | Path, dataset: str | None = None, validate: bool = True) -> Movie:
    """Open a diffraction movie [T, H, W] from any supported file, lazily where possible.

    ``dataset`` picks the HDF5 dataset when a plain HDF5 file holds several. With ``validate``, the
    first, middle and last frames are checked for NaN and negative counts (the reconstruction code
    checks every frame it loads). Raises :class:`InputFileError` / :class:`DataValidationError`.
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
    if validate:
        for t in sorted({0, movie.n_frames // 2, movie.n_frames - 1}):
            check_counts(movie.frames(t, t + 1), str(path), first_frame=t)
    if movie.probe is not None:
        movie.probe = check_probe(movie.probe, movie.shape, where=f"{path} (probe)")
    return movie


@typed_errors
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


@typed_errors
def movie_info(path: str | Path) -> dict:
    """What a file holds (format, dataset, shape, dtype, geometry, probe, reconstruction) without reading frames."""
    path = Path(path)
    info: dict = {}
    if detect_format(path) == "hdf5":
        layout = inspect_hdf5(path)
        info["reconstruction"] = layout.reconstruction
        if not layout.datasets:
            if not layout.reconstruction:
                raise InputFileError(path, "holds no diffraction frames and no reconstruction (looked for CXI paths, "
                                     "NeXus signals, EIGER data links and 2-D/3-D numeric datasets)")
            info.update({"path": str(path), "format": layout.kind, **layout.metadata})
            return info
    if detect_format(path) == "numpy" and path.suffix.lower() == ".npz":  # header only: npz cannot be mapped
        from .arrays import numpy_header
        from .validate import as_frame_stack, check_dtype

        shape, dtype, key = numpy_header(path)
        check_dtype(dtype, str(path))
        return {"path": str(path), "format": "npz", "dataset": key, "shape": list(as_frame_stack(shape, str(path))),
                "dtype": str(dtype), "lazy": False, "probe_modes": None}
    movie = open_movie(path, validate=False)
    info = {**movie.describe(), **info}
    return info


__all__ = [
    "Movie", "SUPPORTED_SUFFIXES", "check_counts", "check_probe", "default_output_path", "detect_format",
    "inspect_hdf5", "movie_info", "open_movie", "read_hdf5_reconstruction", "read_probe", "read_table", "typed_errors",
    "write_cxi",
]
