"""HDF5 family readers: CXI, NeXus (NXdata default signal), Dectris EIGER masters, plain HDF5.

EIGER masters keep frames in data files reached through external links
(``/entry/data/data_000001`` ...), usually bitshuffle/LZ4 compressed (``hdf5plugin`` filters).
Everything opens lazily: one dask chunk per frame, the file opened only while reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dask.array as da
import h5py
import hdf5plugin  # noqa: F401
import numpy as np

from ..errors import DataValidationError, InputFileError
from .lazy import H5Stack, lazy_h5_dataset, register_h5_stack
from .mask import DetectorMask, read_hdf5_detector
from .movie import Movie
from .validate import as_frame_stack, check_dtype, check_readable

MAX_PROBE_BYTES = 1 << 30
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi", ".nexus")
JOULE_PER_KEV = 1.602176634e-16

CXI_DATA_PATHS = ("entry_1/data_1/data", "entry_1/instrument_1/detector_1/data")
CXI_PROBE_PATHS = (
    "entry_1/instrument_1/source_1/probe",
    "entry_1/instrument_1/source_1/illumination",
    "entry_1/probe",
    "entry_1/instrument_1/probe",
    "probe",
)
RECONSTRUCTION_PATH = "entry_1/image_1/data"

_LENGTH = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "micron": 1e-6, "nm": 1e-9, "angstrom": 1e-10, "a": 1e-10, "å": 1e-10}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}
_ENERGY_KEV = {"kev": 1.0, "ev": 1e-3, "j": 1 / JOULE_PER_KEV}


@dataclass
class HDF5Layout:
    """What an HDF5 file holds, found without reading any frame."""

    kind: str  # "cxi" | "nexus" | "eiger" | "hdf5"
    datasets: list[str] = field(default_factory=list)  # frame datasets, concatenated along time
    shape: tuple[int, ...] = ()
    dtype: np.dtype | None = None
    probe: str | None = None
    reconstruction: str | None = None
    metadata: dict = field(default_factory=dict)


def _open(path: Path) -> h5py.File:
    check_readable(path)
    try:
        return h5py.File(path, "r")
    except PermissionError as exc:
        raise InputFileError(path, "permission denied: you may not read this file") from exc
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputFileError(path, f"not a readable HDF5 file (truncated or corrupt?): {exc}") from exc


def _scalar(f: h5py.File, names: tuple[str, ...], units: dict, default_unit: str):
    for name in names:
        try:
            obj = f.get(name)
        except (KeyError, OSError):
            obj = None
        if isinstance(obj, h5py.Dataset) and obj.size >= 1 and (
            np.issubdtype(obj.dtype, np.integer) or np.issubdtype(obj.dtype, np.floating)
        ):
            value = float(np.asarray(obj[(0,) * obj.ndim] if obj.ndim else obj[()]).ravel()[0])
            unit = obj.attrs.get("units", obj.attrs.get("unit", default_unit))
            unit = unit.decode() if isinstance(unit, bytes) else str(unit)
            return value * units.get(unit.strip().lower(), units.get(default_unit, 1.0))
    return None


def _read_metadata(f: h5py.File, kind: str) -> dict:
    md: dict = {}
    if kind == "cxi":
        energy = _scalar(f, ("entry_1/instrument_1/source_1/energy",), _ENERGY_KEV, "j")
        distance = _scalar(f, ("entry_1/instrument_1/detector_1/distance",), _LENGTH, "m")
        pixel = _scalar(f, ("entry_1/instrument_1/detector_1/x_pixel_size",), _LENGTH, "m")
        exposure = _scalar(f, ("entry_1/instrument_1/detector_1/count_time", "entry_1/instrument_1/detector_1/exposure_time"), _TIME, "s")
        dx = _scalar(f, ("entry_1/image_1/x_pixel_size", "entry_1/sample_1/pixel_size"), _LENGTH, "m")
    else:
        energy = _scalar(f, ("entry/instrument/source/energy", "entry/instrument/beam/energy", "entry/instrument/monochromator/energy"), _ENERGY_KEV, "kev")
        if energy is None:
            wavelength = _scalar(f, ("entry/instrument/beam/incident_wavelength", "entry/instrument/monochromator/wavelength"), _LENGTH, "angstrom")
            energy = 12.398419843320026e-10 / wavelength if wavelength else None
        distance = _scalar(f, ("entry/instrument/detector/detector_distance", "entry/instrument/detector/distance"), _LENGTH, "m")
        pixel = _scalar(f, ("entry/instrument/detector/x_pixel_size",), _LENGTH, "m")
        exposure = _scalar(f, ("entry/instrument/detector/count_time", "entry/instrument/detector/frame_time"), _TIME, "s")
        dx = None
    for key, value, scale in (
        ("energy_kev", energy, 1.0), ("distance_m", distance, 1.0), ("detector_pixel_um", pixel, 1e6),
        ("exposure_s", exposure, 1.0), ("pixel_size_nm", dx, 1e9),
    ):
        if value is not None and (value != 0 or key != "exposure_s"):
            md[key] = value * scale
    extra = f.get("entry_1/napari_cxdi/metadata_json") if kind == "cxi" else None
    if isinstance(extra, h5py.Dataset):
        import json

        try:
            raw = extra[()]
            stored = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        except (ValueError, TypeError, UnicodeDecodeError, OSError) as exc:
            raise InputFileError(f.filename, f"{extra.name} is not valid JSON ({exc}); the file's metadata are "
                                 "corrupt - rewrite it or remove that dataset") from exc
        if not isinstance(stored, dict):
            raise InputFileError(f.filename, f"{extra.name} must hold a JSON object, got {type(stored).__name__}")
        md = {**stored, **md}
    check_geometry_metadata(md, f.filename)
    return md


GEOMETRY_KEYS = ("energy_kev", "distance_m", "detector_pixel_um", "pixel_size_nm", "exposure_s", "frame_interval_s")


def check_geometry_metadata(md: dict, where) -> None:
    """Energies, distances, pixel sizes and times must be finite and positive (exposure may be 0)."""
    import math

    for key in GEOMETRY_KEYS:
        if key not in md or md[key] is None:
            continue
        value = md[key]
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        ok = ok and math.isfinite(float(value)) and (float(value) > 0 or (key == "exposure_s" and float(value) == 0))
        if not ok:
            raise InputFileError(where, f"the geometry value {key} = {value!r} is not a finite positive number; "
                                 "fix the file's metadata (energy, detector distance, pixel size)")


def _nexus_signal(f: h5py.File) -> str | None:
    entry = f.attrs.get("default")
    entry = entry.decode() if isinstance(entry, bytes) else entry
    groups = [f[entry]] if entry and entry in f else [g for g in f.values() if isinstance(g, h5py.Group)]
    for g in groups:
        data_name = g.attrs.get("default")
        data_name = data_name.decode() if isinstance(data_name, bytes) else data_name
        candidates = [g[data_name]] if data_name and data_name in g else [
            v for v in g.values() if isinstance(v, h5py.Group) and _nx_class(v) == "NXdata"
        ]
        for nxdata in candidates:
            signal = nxdata.attrs.get("signal")
            signal = signal.decode() if isinstance(signal, bytes) else signal
            if signal and signal in nxdata and isinstance(nxdata[signal], h5py.Dataset):
                return nxdata[signal].name
    return None


def _nx_class(obj) -> str:
    c = obj.attrs.get("NX_class", b"")
    return c.decode() if isinstance(c, bytes) else str(c)


def _eiger_links(f: h5py.File, path: Path) -> list[str] | None:
    group = f.get("entry/data", getlink=False)
    if not isinstance(group, h5py.Group):
        return None
    names = sorted(k for k in group.keys() if k.startswith("data_"))
    if not names:
        return None
    for name in names:
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            target = (path.parent / link.filename)
            if not target.exists() and not Path(link.filename).exists():
                raise InputFileError(path, f"EIGER data file {link.filename!r} (linked as /entry/data/{name}) is missing")
    return [f"/entry/data/{n}" for n in names]


def dangling_links(f: h5py.File, limit: int = 2000) -> list[str]:
    """Soft / external links whose target cannot be opened (e.g. a missing EIGER data file)."""
    found: list[str] = []
    seen = 0
    stack: list[h5py.Group] = [f]
    while stack and seen < limit:
        group = stack.pop()
        for name in group:
            seen += 1
            link = group.get(name, getlink=True)
            if isinstance(link, (h5py.SoftLink, h5py.ExternalLink)):
                try:
                    target = group.get(name)
                except (KeyError, OSError, RuntimeError, ValueError):
                    target = None
                if target is None:
                    extra = f" -> {link.filename}:{link.path}" if isinstance(link, h5py.ExternalLink) else f" -> {link.path}"
                    found.append(f"{group.name.rstrip('/')}/{name}{extra}")
                continue
            try:
                obj = group.get(name)
            except (KeyError, OSError, RuntimeError, ValueError):
                continue
            if isinstance(obj, h5py.Group):
                stack.append(obj)
    return found


def _generic_candidates(f: h5py.File) -> list[str]:
    found: list[str] = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3) and obj.size >= 64 and np.issubdtype(obj.dtype, np.number):
            found.append("/" + name)

    f.visititems(visit)
    return found


def inspect_hdf5(path: str | Path, dataset: str | None = None) -> HDF5Layout:
    """Find the diffraction frames (and probe, reconstruction, metadata) of an HDF5 file.

    Raises :class:`InputFileError` if the file cannot be read or holds no recognisable movie.
    """
    path = Path(path)
    with _open(path) as f:
        try:
            layout = _layout(f, path, dataset)
        except (KeyError, OSError, RuntimeError, ValueError, TypeError) as exc:
            raise InputFileError(path, f"cannot read the file structure: {type(exc).__name__}: {exc}") from exc
    return layout


def _layout(f: h5py.File, path: Path, dataset: str | None) -> HDF5Layout:
    if dataset is not None:
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            raise InputFileError(path, f"no dataset {dataset!r} in the file; candidates: {', '.join(_generic_candidates(f)[:8]) or 'none'}")
        kind, datasets = "hdf5", [dataset]
    elif "entry_1" in f or "cxi_version" in f:
        kind = "cxi"
        datasets = [p for p in CXI_DATA_PATHS if isinstance(f.get(p), h5py.Dataset)][:1]
    elif (links := _eiger_links(f, path)) is not None:
        kind, datasets = "eiger", links
    elif (signal := _nexus_signal(f)) is not None:
        kind, datasets = "nexus", [signal]
    else:
        kind, datasets = "hdf5", _generic_candidates(f)
        if len(datasets) > 1:
            raise InputFileError(
                path, f"several datasets could be the movie ({', '.join(datasets[:6])}); choose one (CLI: --dataset PATH, API: dataset=PATH)"
            )
    if not datasets and (broken := dangling_links(f)):
        raise InputFileError(path, f"link(s) to missing data: {', '.join(broken[:5])}; copy the linked files "
                             "next to this one (same relative paths) and open it again")
    layout = HDF5Layout(kind=kind, datasets=datasets)
    if kind == "cxi":
        layout.probe = next((p for p in CXI_PROBE_PATHS if isinstance(f.get(p), h5py.Dataset)), None)
        if isinstance(f.get(RECONSTRUCTION_PATH), h5py.Dataset):
            layout.reconstruction = RECONSTRUCTION_PATH
    layout.metadata = _read_metadata(f, kind)
    if datasets:
        shapes = [f[d].shape for d in datasets]
        dtypes = {f[d].dtype for d in datasets}
        where = f"{path}:{datasets[0]}"
        check_dtype(next(iter(dtypes)), where)
        stacks = [as_frame_stack(s, where) for s in shapes]
        if len({s[1:] for s in stacks}) > 1:
            raise DataValidationError(f"{where}: data files have different frame sizes {sorted({s[1:] for s in stacks})}")
        layout.shape = (sum(s[0] for s in stacks), *stacks[0][1:])
        layout.dtype = np.result_type(*dtypes)
    return layout


def read_hdf5_movie(path: str | Path, dataset: str | None = None) -> Movie:
    """Open the diffraction movie of an HDF5/CXI/NeXus/EIGER file lazily."""
    path = Path(path)
    layout = inspect_hdf5(path, dataset)
    if not layout.datasets:
        what = "a reconstruction only" if layout.reconstruction else "no diffraction frames"
        raise InputFileError(path, f"the file holds {what} (looked for {', '.join(CXI_DATA_PATHS)} and NeXus signals)")
    parts, where = [], []
    with h5py.File(path, "r") as f:
        for name in layout.datasets:
            shape = f[name].shape
            parts.append(lazy_h5_dataset(path, name, shape, f[name].dtype))
            where.append((name, shape[0] if len(shape) >= 3 else 1, len(shape)))
        try:
            detector = read_hdf5_detector(f, layout.kind)
        except (KeyError, OSError, ValueError) as exc:
            raise InputFileError(path, f"cannot read the detector mask / beam centre: {exc}") from exc
    data = parts[0] if len(parts) == 1 else da.concatenate(parts, axis=0)
    if data.ndim == 4:
        data = data[:, 0]
    if data.ndim == 3:
        register_h5_stack(data, H5Stack(path, where))  # crop / bin read frame blocks of the window (io.detector)
    probe = read_hdf5_probe(path, layout.probe) if layout.probe else None
    mask = DetectorMask.for_dtype(data.dtype, saturation=detector.get("saturation"))
    if "bad" in detector:
        mask = mask.with_bad(detector["bad"], detector["source"])
        mask.bit_counts = detector.get("bit_counts", {})
    return Movie(data=data, path=path, dataset=",".join(layout.datasets), format=layout.kind, metadata=layout.metadata,
                 probe=probe, mask=mask, beam_centre=detector.get("centre"))


def read_hdf5_probe(path: str | Path, dataset: str | None = None) -> np.ndarray:
    """Read a complex probe [K, H, W] from an HDF5/CXI file (first known probe path, or ``dataset``)."""
    path = Path(path)
    with _open(path) as f:
        name = dataset or next((p for p in CXI_PROBE_PATHS if isinstance(f.get(p), h5py.Dataset)), None)
        if name is None:
            raise InputFileError(path, f"no probe found (looked for {', '.join(CXI_PROBE_PATHS)})")
        try:
            obj = f[name]
            if not isinstance(obj, h5py.Dataset):
                raise InputFileError(path, f"{name} is not a dataset")
            if obj.ndim not in (2, 3) or obj.size * obj.dtype.itemsize > MAX_PROBE_BYTES:
                raise DataValidationError(f"{path}:{name}: a probe is [modes, H, W] of at most "
                                          f"{MAX_PROBE_BYTES // 2**20} MB, got shape {obj.shape} {obj.dtype}")
            return np.asarray(obj[()])
        except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise InputFileError(path, f"cannot read the probe {name}: {exc}") from exc


def read_hdf5_reconstruction(path: str | Path) -> np.ndarray | None:
    """The complex reconstruction [T, H, W] stored by our writer, or None. Read lazily."""
    path = Path(path)
    with _open(path) as f:
        obj = f.get(RECONSTRUCTION_PATH)
        if not isinstance(obj, h5py.Dataset):
            return None
        shape, dtype = obj.shape, obj.dtype
    return lazy_h5_dataset(path, "/" + RECONSTRUCTION_PATH, shape, dtype)


def is_hdf5(path: str | Path) -> bool:
    """True if the file starts with the HDF5 signature (cheap: reads 8 bytes)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False
