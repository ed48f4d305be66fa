"""Writing movies and reconstructions to CXI (HDF5) with metadata and provenance.

Files are written through :mod:`napari_cxdi.io.safe_write` (a temporary file in the same folder, fsync,
then ``os.replace``; a full disk is a typed error) and never over an input file, nor over an existing
file unless ``overwrite=True``.

Layout (CXI 1.6 conventions, read by cdtools' ``Ptycho2DDataset.from_cxi`` / ``tools.data`` and PyNX; every
group carries ``NX_class``; the file's ``default`` is ``entry_1``, the entry's ``default`` its main NXdata):
``/cxi_version`` 160;
``/entry_1/data_1/{data -> detector_1/data, translation -> sample_1/geometry_1/translation}`` (NXdata);
``/entry_1/instrument_1/detector_1/{data [T, H, W] counts, mask [H, W] uint32 (CXI bits: 0 = good,
0x1 = invalid), distance, x_pixel_size, y_pixel_size, basis_vectors (2, 3), corner_position (x, y, z),
count_time}`` (SI units; ``basis_vectors`` rows are the row / column pixel steps, (0, -p, 0) and (-p, 0, 0):
origin top-left as PyNX writes; ``corner_position`` puts the beam at pixel (H // 2, W // 2) at distance z);
``/entry_1/sample_1/geometry_1/translation`` [T, 3] zeros (a single-shot movie: the sample is not scanned);
``/entry_1/instrument_1/source_1/{energy (J), wavelength (m), probe [K, H, W] complex}``;
``/entry_1/probe_1/{data -> source_1/probe, x_pixel_size, y_pixel_size, data_space}`` and the PyNX-style link
``/entry_1/probe -> probe_1``;
``/entry_1/image_1/{data [T, H, W] complex, data_space "real", data_type, x_pixel_size, y_pixel_size}`` the
reconstruction; ``/entry_1/image_1/process_1/configuration`` JSON; ``/entry_1/provenance``;
``/entry_1/result_1/<metric>``; ``/entry_1/napari_cxdi/{metadata_json, ground_truth/..., tables/<name>/<column>}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from ..provenance import provenance, to_jsonable
from .safe_write import atomic_output, check_output, hdf5_file

JOULE_PER_KEV = 1.602176634e-16


def default_output_path(input_path: str | Path, suffix: str = "recon", extension: str = ".cxi") -> Path:
    """``<stem>_<suffix>.cxi`` next to the input, numbered ``_1, _2 ...`` if that name is taken."""
    input_path = Path(input_path)
    candidate = input_path.with_name(f"{input_path.stem}_{suffix}{extension}")
    i = 1
    while candidate.exists() or candidate.resolve() == input_path.resolve():
        candidate = input_path.with_name(f"{input_path.stem}_{suffix}_{i}{extension}")
        i += 1
    return candidate


def check_output_path(path: Path, overwrite: bool, protected: Iterable[str | Path] = ()) -> None:
    """Refuse to write over an input (always) or an existing file (unless ``overwrite``).

    Kept for compatibility: :func:`napari_cxdi.io.safe_write.check_output` does the work.
    """
    check_output(path, overwrite=overwrite, protected=protected)


def _write_frames(group: h5py.Group, name: str, data, dtype) -> h5py.Dataset:
    """Write [T, H, W] (NumPy or dask) frame by frame, chunked per frame, gzip-compressed."""
    shape = tuple(data.shape)
    dset = group.create_dataset(
        name, shape=shape, dtype=dtype, chunks=(1,) + shape[1:] if len(shape) == 3 else None,
        compression="gzip", compression_opts=4, shuffle=True,
    )
    step = 16
    for i in range(0, shape[0], step):
        block = data[i : i + step]
        if hasattr(block, "compute"):
            block = block.compute()
        dset[i : i + step] = np.asarray(block, dtype=dtype)
    return dset


def write_cxi(
    path: str | Path,
    *,
    counts=None,
    probe: np.ndarray | None = None,
    reconstruction=None,
    metadata: dict[str, Any] | None = None,
    config: Any = None,
    metrics: dict[str, Any] | None = None,
    ground_truth: dict[str, np.ndarray] | None = None,
    tables: dict[str, Any] | None = None,
    overwrite: bool = False,
    protected: Iterable[str | Path] = (),
    mask: np.ndarray | None = None,
) -> Path:
    """Write a CXI file atomically and return its path.

    counts: [T, H, W] detector counts; probe: [K, H, W] complex; reconstruction: [T, H, W] complex;
    metadata: ``energy_kev, distance_m, detector_pixel_um, exposure_s, pixel_size_nm`` ...;
    config/metrics: stored as JSON with the provenance; ground_truth: named arrays (simulations);
    tables: name -> pandas DataFrame (e.g. trajectories); protected: input paths never to overwrite;
    mask: [H, W] bool, True = bad pixel (not measured), written as the CXI ``detector_1/mask``.
    """
    path = Path(path)
    protected = list(protected)
    check_output(path, overwrite=overwrite, protected=protected)
    metadata = dict(metadata or {})
    needed = sum(int(np.prod(a.shape)) * size for a, size in ((counts, 4), (reconstruction, 8)) if a is not None)
    with atomic_output(path, overwrite=overwrite, protected=protected, needed_bytes=needed or None) as tmp:
        with hdf5_file(tmp) as f:
            _write_layout(f, metadata, counts, probe, reconstruction, config, mask)
            entry = f["entry_1"]
            record = provenance(config, metrics, metadata=metadata)
            entry.create_dataset("provenance", data=json.dumps(record, sort_keys=True))
            if metrics:
                result = _group(entry, "result_1", "NXcollection")
                for key, value in metrics.items():
                    try:
                        result.create_dataset(key, data=np.asarray(value, dtype=np.float64))
                    except (TypeError, ValueError):
                        result.create_dataset(key, data=json.dumps(to_jsonable(value)))
            ours = _group(entry, "napari_cxdi", "NXcollection")
            ours.create_dataset("metadata_json", data=json.dumps(to_jsonable(metadata), sort_keys=True))
            for name, array in (ground_truth or {}).items():
                _write_frames(_group(ours, "ground_truth", "NXcollection"), name, array, np.asarray(array[:1]).dtype)
            for name, table in (tables or {}).items():
                group = _group(_group(ours, "tables", "NXcollection"), name, "NXcollection")
                group.attrs["columns"] = json.dumps([str(c) for c in table.columns])
                for column in table.columns:
                    group.create_dataset(str(column), data=table[column].to_numpy())
    return path


def _group(parent: h5py.Group, name: str, nx_class: str) -> h5py.Group:
    """``parent[name]``, created if needed, with its ``NX_class``."""
    group = parent.require_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def _scalar(group: h5py.Group, name: str, value: float, unit: str) -> None:
    group.create_dataset(name, data=float(value)).attrs["units"] = unit


def _write_layout(f: h5py.File, metadata: dict, counts, probe, reconstruction, config, mask) -> None:
    """The CXI groups and datasets of the module docstring (everything but provenance, metrics, our extras)."""
    f.create_dataset("cxi_version", data=160)
    f.attrs["default"] = "entry_1"
    f.attrs["creator"] = "napari-cxdi"
    entry = _group(f, "entry_1", "NXentry")
    entry.create_dataset("program_name", data="napari-cxdi")
    instrument = _group(entry, "instrument_1", "NXinstrument")
    detector = _group(instrument, "detector_1", "NXdetector")
    source = _group(instrument, "source_1", "NXsource")
    if metadata.get("energy_kev"):
        _scalar(source, "energy", float(metadata["energy_kev"]) * JOULE_PER_KEV, "J")
        _scalar(source, "wavelength", 12.398419843320026e-10 / float(metadata["energy_kev"]), "m")
    for key, name, scale, unit in (
        ("distance_m", "distance", 1.0, "m"),
        ("detector_pixel_um", "x_pixel_size", 1e-6, "m"),
        ("detector_pixel_um", "y_pixel_size", 1e-6, "m"),
        ("exposure_s", "count_time", 1.0, "s"),
    ):
        if metadata.get(key):
            _scalar(detector, name, float(metadata[key]) * scale, unit)
    frame_shape = next((tuple(a.shape[-2:]) for a in (counts, reconstruction, probe, mask) if a is not None), None)
    if metadata.get("detector_pixel_um") and frame_shape is not None:
        p = float(metadata["detector_pixel_um"]) * 1e-6
        basis = np.array([[0.0, -p, 0.0], [-p, 0.0, 0.0]])  # rows: row step, column step (origin top-left)
        detector.create_dataset("basis_vectors", data=basis).attrs["units"] = "m"
        if metadata.get("distance_m"):
            cy, cx = frame_shape[0] // 2, frame_shape[1] // 2
            corner = np.array([cx * p, cy * p, float(metadata["distance_m"])])
            ds = detector.create_dataset("corner_position", data=corner)
            ds.attrs["units"] = "m"
            ds.attrs["note"] = "pixel (H // 2, W // 2) on the beam axis"
    if mask is not None:
        bad = np.asarray(mask, bool)
        if frame_shape is not None and bad.shape != frame_shape:
            from ..errors import DataValidationError

            raise DataValidationError(f"the mask is {bad.shape} but the frames are {frame_shape}")
        ds = detector.create_dataset("mask", data=bad.astype(np.uint32) * np.uint32(0x1), compression="gzip")
        ds.attrs["note"] = "CXI pixel mask: 0 = good, 0x00000001 = invalid (not measured)"
    if counts is not None:
        dset = _write_frames(detector, "data", counts, np.float32)
        dset.attrs["axes"] = "translation:y:x"
        n_frames = int(dset.shape[0]) if dset.ndim == 3 else 1
        geometry = _group(_group(entry, "sample_1", "NXsample"), "geometry_1", "NXgeometry")
        translation = geometry.create_dataset("translation", data=np.zeros((n_frames, 3)))
        translation.attrs["units"] = "m"
        translation.attrs["note"] = "single-shot movie: the sample is not scanned"
        data_1 = _group(entry, "data_1", "NXdata")
        data_1.attrs["signal"] = "data"
        data_1["data"] = h5py.SoftLink(dset.name)
        data_1["translation"] = h5py.SoftLink(translation.name)
        detector["translation"] = h5py.SoftLink(translation.name)
        entry.attrs["default"] = "data_1"
    dx_m = float(metadata["pixel_size_nm"]) * 1e-9 if metadata.get("pixel_size_nm") else None
    if probe is not None:
        pds = source.create_dataset("probe", data=np.asarray(probe, np.complex64))
        pds.attrs["note"] = "probe modes [K, H, W] in sqrt(photons) per object-plane pixel"
        probe_1 = _group(entry, "probe_1", "NXdata")
        probe_1.attrs["signal"] = "data"
        probe_1["data"] = h5py.SoftLink(pds.name)
        probe_1.create_dataset("data_space", data="real")
        probe_1.create_dataset("data_type", data="probe modes")
        if dx_m:
            for name in ("x_pixel_size", "y_pixel_size"):
                _scalar(probe_1, name, dx_m, "m")
        entry["probe"] = h5py.SoftLink(probe_1.name)  # PyNX's place: entry_N/probe/data
    if reconstruction is not None:
        image = _group(entry, "image_1", "NXdata")
        image.attrs["signal"] = "data"
        _write_frames(image, "data", reconstruction, np.complex64)
        image.create_dataset("data_space", data="real")
        image.create_dataset("data_type", data="complex transmission function")
        if dx_m:
            for name in ("x_pixel_size", "y_pixel_size"):
                _scalar(image, name, dx_m, "m")
        process = _group(image, "process_1", "NXprocess")
        process.create_dataset("program", data="napari-cxdi")
        process.create_dataset("configuration", data=json.dumps(to_jsonable(config)))
        if counts is None:
            entry.attrs["default"] = "image_1"


def read_table(path: str | Path, name: str):
    """A table written with ``write_cxi(tables=...)`` as a pandas DataFrame."""
    import pandas as pd

    with h5py.File(path, "r") as f:
        group = f[f"entry_1/napari_cxdi/tables/{name}"]
        columns = json.loads(group.attrs.get("columns", "[]")) or list(group.keys())
        return pd.DataFrame({k: group[k][()] for k in columns})
