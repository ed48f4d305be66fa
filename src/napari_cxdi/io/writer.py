"""Writing movies and reconstructions to CXI (HDF5) with metadata and provenance.

Files are written through :mod:`napari_cxdi.io.safe_write` (a temporary file in the same folder, fsync,
then ``os.replace``; a full disk is a typed error) and never over an input file, nor over an existing
file unless ``overwrite=True``.

Layout (CXI 1.6 conventions, readable by PyNX/cdtools tools and h5py):
``/cxi_version``; ``/entry_1/data_1/data`` -> detector counts [T, H, W];
``/entry_1/instrument_1/detector_1/{data, distance, x_pixel_size, y_pixel_size, count_time}`` (SI);
``/entry_1/instrument_1/source_1/{energy (J), probe [K, H, W] complex}``;
``/entry_1/image_1/{data [T, H, W] complex, x_pixel_size, y_pixel_size}`` the reconstruction;
``/entry_1/image_1/process_1/{provenance, configuration}`` JSON; ``/entry_1/result_1/<metric>``;
``/entry_1/napari_cxdi/{metadata_json, ground_truth/..., tables/<name>/<column>}``.
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
) -> Path:
    """Write a CXI file atomically and return its path.

    counts: [T, H, W] detector counts; probe: [K, H, W] complex; reconstruction: [T, H, W] complex;
    metadata: ``energy_kev, distance_m, detector_pixel_um, exposure_s, pixel_size_nm`` ...;
    config/metrics: stored as JSON with the provenance; ground_truth: named arrays (simulations);
    tables: name -> pandas DataFrame (e.g. trajectories); protected: input paths never to overwrite.
    """
    path = Path(path)
    protected = list(protected)
    check_output(path, overwrite=overwrite, protected=protected)
    metadata = dict(metadata or {})
    needed = sum(int(np.prod(a.shape)) * size for a, size in ((counts, 4), (reconstruction, 8)) if a is not None)
    with atomic_output(path, overwrite=overwrite, protected=protected, needed_bytes=needed or None) as tmp:
        with hdf5_file(tmp) as f:
            f.create_dataset("cxi_version", data=160)
            f.attrs["default"] = "entry_1"
            entry = f.create_group("entry_1")
            entry.attrs["NX_class"] = "NXentry"
            instrument = entry.create_group("instrument_1")
            detector = instrument.create_group("detector_1")
            source = instrument.create_group("source_1")
            if metadata.get("energy_kev"):
                source.create_dataset("energy", data=float(metadata["energy_kev"]) * JOULE_PER_KEV).attrs["units"] = "J"
            for key, name, scale, unit in (
                ("distance_m", "distance", 1.0, "m"),
                ("detector_pixel_um", "x_pixel_size", 1e-6, "m"),
                ("detector_pixel_um", "y_pixel_size", 1e-6, "m"),
                ("exposure_s", "count_time", 1.0, "s"),
            ):
                if metadata.get(key):
                    detector.create_dataset(name, data=float(metadata[key]) * scale).attrs["units"] = unit
            if counts is not None:
                dset = _write_frames(detector, "data", counts, np.float32)
                dset.attrs["axes"] = "translation:y:x"
                data_1 = entry.create_group("data_1")
                data_1.attrs["NX_class"] = "NXdata"
                data_1.attrs["signal"] = "data"
                data_1["data"] = h5py.SoftLink(dset.name)
                entry.attrs["default"] = "data_1"
            if probe is not None:
                source.create_dataset("probe", data=np.asarray(probe, np.complex64))
            if reconstruction is not None:
                image = entry.create_group("image_1")
                image.attrs["NX_class"] = "NXdata"
                image.attrs["signal"] = "data"
                _write_frames(image, "data", reconstruction, np.complex64)
                if metadata.get("pixel_size_nm"):
                    for name in ("x_pixel_size", "y_pixel_size"):
                        image.create_dataset(name, data=float(metadata["pixel_size_nm"]) * 1e-9).attrs["units"] = "m"
                process = image.create_group("process_1")
                process.create_dataset("configuration", data=json.dumps(to_jsonable(config)))
            record = provenance(config, metrics, metadata=metadata)
            entry.create_dataset("provenance", data=json.dumps(record, sort_keys=True))
            if metrics:
                result = entry.create_group("result_1")
                for key, value in metrics.items():
                    try:
                        result.create_dataset(key, data=np.asarray(value, dtype=np.float64))
                    except (TypeError, ValueError):
                        result.create_dataset(key, data=json.dumps(to_jsonable(value)))
            ours = entry.create_group("napari_cxdi")
            ours.create_dataset("metadata_json", data=json.dumps(to_jsonable(metadata), sort_keys=True))
            for name, array in (ground_truth or {}).items():
                _write_frames(ours.require_group("ground_truth"), name, array, np.asarray(array[:1]).dtype)
            for name, table in (tables or {}).items():
                group = ours.require_group(f"tables/{name}")
                group.attrs["columns"] = json.dumps([str(c) for c in table.columns])
                for column in table.columns:
                    group.create_dataset(str(column), data=table[column].to_numpy())
    return path


def read_table(path: str | Path, name: str):
    """A table written with ``write_cxi(tables=...)`` as a pandas DataFrame."""
    import pandas as pd

    with h5py.File(path, "r") as f:
        group = f[f"entry_1/napari_cxdi/tables/{name}"]
        columns = json.loads(group.attrs.get("columns", "[]")) or list(group.keys())
        return pd.DataFrame({k: group[k][()] for k in columns})
