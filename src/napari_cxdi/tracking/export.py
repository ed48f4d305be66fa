"""Writing track / particle tables to CSV or HDF5, atomically, with config and provenance.

CSV: one file per table, ``<stem>_<name>.csv`` (or exactly ``path`` for a single table), each starting
with ``# `` comment lines holding the provenance JSON (``pandas.read_csv(path, comment="#")`` reads it).
HDF5 (.h5/.hdf5): one group per table, one dataset per column; the provenance JSON as a root attribute.
Never writes over an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..io.safe_write import atomic_output, check_output, hdf5_file
from ..provenance import provenance

HDF5_SUFFIXES = (".h5", ".hdf5")


def _atomic(path: Path, write, overwrite: bool = True, protected=()) -> None:
    with atomic_output(path, overwrite=overwrite, protected=protected) as tmp:
        write(tmp)


def table_paths(path: str | Path, names: list[str]) -> dict[str, Path]:
    """Where each table goes: HDF5 -> the one file; CSV -> ``path`` (one table) or ``<stem>_<name>.csv``."""
    path = Path(path)
    if path.suffix.lower() in HDF5_SUFFIXES:
        return {n: path for n in names}
    if path.suffix.lower() != ".csv":
        raise ConfigError(f"{path}: choose a .csv, .h5 or .hdf5 output")
    if len(names) == 1:
        return {names[0]: path}
    return {n: path.with_name(f"{path.stem}_{n}.csv") for n in names}


def write_tables(path: str | Path, tables: dict[str, pd.DataFrame], config: Any = None, metrics: Any = None,
                 overwrite: bool = False, protected=()) -> list[Path]:
    """Write named tables with provenance; returns the written paths (all checked before any is written)."""
    if not tables:
        raise ConfigError("no tables to write")
    targets = table_paths(path, list(tables))
    protected = list(protected)
    for p in set(targets.values()):
        check_output(p, overwrite=overwrite, protected=protected)
    record = json.dumps(provenance(config, metrics, tables=list(tables)), sort_keys=True)
    path = Path(path)
    if path.suffix.lower() in HDF5_SUFFIXES:

        def write_h5(tmp: Path) -> None:
            with hdf5_file(tmp) as f:
                f.attrs["provenance"] = record
                for name, table in tables.items():
                    g = f.create_group(name)
                    g.attrs["columns"] = json.dumps([str(c) for c in table.columns])
                    for c in table.columns:
                        g.create_dataset(str(c), data=np.asarray(table[c].to_numpy()))

        _atomic(path, write_h5, overwrite, protected)
        return [path]
    written = []
    for name, p in targets.items():
        def write_csv(tmp: Path, table=tables[name]) -> None:
            with open(tmp, "w", newline="") as fh:
                fh.write(f"# napari-cxdi table: {name}\n# provenance: {record}\n")
                table.to_csv(fh, index=False)

        _atomic(p, write_csv, overwrite, protected)
        written.append(p)
    return written


def read_tables(path: str | Path) -> dict[str, pd.DataFrame]:
    """Tables written by :func:`write_tables` (HDF5: all groups; CSV: the one file, keyed by its stem)."""
    path = Path(path)
    if path.suffix.lower() in HDF5_SUFFIXES:
        import h5py

        with h5py.File(path, "r") as f:
            return {name: pd.DataFrame({c: g[c][()] for c in json.loads(g.attrs["columns"])}) for name, g in f.items()}
    return {path.stem: pd.read_csv(path, comment="#")}


def read_provenance(path: str | Path) -> dict:
    """The provenance record stored with a table file."""
    path = Path(path)
    if path.suffix.lower() in HDF5_SUFFIXES:
        import h5py

        with h5py.File(path, "r") as f:
            return json.loads(f.attrs["provenance"])
    with open(path) as fh:
        for line in fh:
            if line.startswith("# provenance: "):
                return json.loads(line[len("# provenance: "):])
    return {}
