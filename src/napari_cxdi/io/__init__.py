"""Reading and writing diffraction movies, probes and reconstructions (no Qt).

``open_movie(path)`` reads CXI, NeXus/HDF5 (incl. EIGER masters with external links and
bitshuffle/LZ4), TIFF stacks and NPY/NPZ, lazily where the format allows.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..errors import CXDIError, InputFileError
from .arrays import NUMPY_SUFFIXES, TIFF_SUFFIXES, read_numpy_movie, read_tiff_movie
from .hdf5 import HDF5_SUFFIXES, inspect_hdf5, is_hdf5, read_hdf5_movie, read_hdf5_reconstruction
from .experiment import ExperimentKindError, ExperimentKindWarning, check_kind, classify, scan_positions
from .mask import DetectorMask, read_mask_file, suggest_hot_pixels
from .movie import Movie
from .probes import ProbeFile, emit as emit_notes, fit_probe, load_probe
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
        if dataset is not None:
            raise InputFileError(path, f"a TIFF stack holds one movie; dataset={dataset!r} (CLI --dataset) applies to NPZ and HDF5 files")
        movie = read_tiff_movie(path)
    elif kind == "numpy":
        movie = read_numpy_movie(path, dataset)
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
    if validate:
        check_kind(movie)  # ptychography scans: a warning; near-field data: ExperimentKindError (or a warning)
    return movie


@typed_errors
def read_probe(
    path: str | Path,
    frame_shape: tuple[int, ...] | None = None,
    dataset: str | None = None,
    *,
    pixel_size_nm: float | None = None,
    resample: bool = True,
    opr: str = "first",
    notes: list[str] | None = None,
) -> np.ndarray:
    """A complex probe [K, H, W] from any layout :mod:`.probes` knows (NPY/NPZ, CXI, PyNX, ptypy, cdtools, pty-chi).

    With ``frame_shape`` it is fitted to the diffraction window: resampled when its recorded pixel size
    differs from ``pixel_size_nm`` (the data's object-plane pixel), then cropped/padded about its centre.
    What was assumed or done is appended to ``notes`` (or issued as warnings when ``notes`` is None).
    """
    probe_file = load_probe(path, dataset, opr=opr)
    if frame_shape is None:
        fitted, done = probe_file.modes, list(probe_file.notes)
    else:
        fitted, done = fit_probe(probe_file, frame_shape, pixel_size_nm, resample=resample, where=str(path))
    if notes is None:
        emit_notes(done)
    else:
        notes.extend(done)
    return check_probe(fitted, fitted.shape if frame_shape is None else frame_shape, where=str(path))


@typed_errors
def movie_info(path: str | Path, dataset: str | None = None) -> dict:
    """What a file holds (format, dataset, shape, dtype, geometry, probe, reconstruction) without reading frames."""
    path = Path(path)
    info: dict = {}
    if detect_format(path) == "hdf5":
        layout = inspect_hdf5(path, dataset)
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

        shape, dtype, key = numpy_header(path, dataset)
        check_dtype(dtype, str(path))
        shape = as_frame_stack(shape, str(path))
        info = {"path": str(path), "format": "npz", "dataset": key, "shape": list(shape), "dtype": str(dtype),
                "lazy": False, "probe_modes": None}
        metadata, probe, mask_info = {}, None, {}
    else:
        movie = open_movie(path, dataset=dataset, validate=False)
        info = {**movie.describe(), **info}
        key, shape, metadata, probe, mask_info = movie.dataset, movie.shape, movie.metadata, movie.probe, movie.mask.describe()
    kind = classify(metadata, shape, probe, scan_positions(path, key), str(path))
    info["experiment"] = kind.kind
    if kind.fresnel_number is not None:
        info["fresnel_number"] = kind.fresnel_number
    if kind.n_positions:
        info["scan_positions"] = kind.n_positions
    if kind.message:
        info["note"] = kind.message
    info.update(mask_info)
    return info


__all__ = [
    "DetectorMask", "ExperimentKindError", "ExperimentKindWarning", "Movie", "ProbeFile", "SUPPORTED_SUFFIXES",
    "check_counts", "check_probe", "default_output_path", "detect_format", "fit_probe", "inspect_hdf5", "load_probe",
    "movie_info", "open_movie", "read_hdf5_reconstruction", "read_mask_file", "read_probe", "read_table",
    "suggest_hot_pixels", "typed_errors", "write_cxi",
]
