"""Structure datasets for SCANN: QM9 (offline, from ``qm9pack``), ase files and databases, seeded
splits, and the cache folder for derived data."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import ConfigError, DataValidationError, InputFileError

HARTREE_TO_EV = 27.211386245988

#: QM9 properties: name -> (qm9pack column, factor to the unit, unit)
QM9_PROPERTIES = {
    "homo": ("HOMO_au", HARTREE_TO_EV, "eV"),
    "lumo": ("LUMO_au", HARTREE_TO_EV, "eV"),
    "gap": ("HOMO_LUMO_gap_au", HARTREE_TO_EV, "eV"),
    "alpha": ("Polarizability_bohr3", 1.0, "bohr^3"),
    "cv": ("Heatcapacity_Cv_cal_mol_K", 1.0, "cal/mol/K"),
    "u0": ("InternalEnergy_0K_au", HARTREE_TO_EV, "eV"),
    "mu": ("Dipole_debye", 1.0, "D"),
}
QM9_SIZE = 130_831
_SYMBOLS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}


def cache_dir() -> Path:
    """Folder for derived, re-computable data (``$NAPARI_CXDI_CACHE`` or ``~/.cache/napari-cxdi``)."""
    root = os.environ.get("NAPARI_CXDI_CACHE") or os.path.join(Path.home(), ".cache", "napari-cxdi")
    path = Path(root) / "scann"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_savez(path: Path, **arrays) -> None:
    """A cache file through the one write path (temporary + fsync + rename)."""
    from ..io.safe_write import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True) as tmp:
        with open(tmp, "wb") as fh:  # a file object: np.savez would append ".npz" to a path
            np.savez(fh, **arrays)


# ----------------------------------------------------------------------------------------------
# raw structures
# ----------------------------------------------------------------------------------------------
@dataclass
class Structures:
    """Structures with optional per-structure targets.

    ``numbers[s]`` (N_s,), ``positions[s]`` (N_s, 3) Å, ``cells[s]`` (3, 3) Å or None for a
    molecule, ``targets`` (S, T) in ``target_units`` (NaN where unknown).
    """

    numbers: list[np.ndarray]
    positions: list[np.ndarray]
    cells: list[np.ndarray | None]
    targets: np.ndarray
    target_names: list[str]
    target_units: list[str]
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.numbers)

    def subset(self, idx: Sequence[int]) -> "Structures":
        idx = np.asarray(idx, dtype=int)
        return Structures(
            [self.numbers[i] for i in idx], [self.positions[i] for i in idx], [self.cells[i] for i in idx],
            self.targets[idx], list(self.target_names), list(self.target_units),
            [self.ids[i] for i in idx] if self.ids else [],
        )

    def atoms(self, s: int):
        """Structure ``s`` as :class:`ase.Atoms`."""
        from ase import Atoms

        cell = self.cells[s]
        return Atoms(numbers=self.numbers[s], positions=self.positions[s],
                     cell=cell if cell is not None else None, pbc=cell is not None)


def _qm9_dir() -> Path:
    spec = importlib.util.find_spec("qm9pack")  # locate without importing (its __init__ needs pkg_resources)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("QM9 needs the 'qm9pack' package (pip install qm9pack); it ships the data offline")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _qm9_arrays() -> dict:
    """All of QM9 as flat arrays, parsed once from qm9pack's CSV files and cached as .npz."""
    path = cache_dir() / "qm9_v1.npz"
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    import pandas as pd

    data = _qm9_dir()
    cols = ["Index", "N_atoms", "Elements", "XYZ_Ang"] + [c for c, _, _ in QM9_PROPERTIES.values()]
    files = [data / f"qm9_part{i}.csv" for i in (1, 2, 3)]
    for f in files:
        if not f.exists():
            raise InputFileError(f, "QM9 CSV file missing from the qm9pack installation")
    df = pd.concat([pd.read_csv(f, usecols=cols) for f in files], ignore_index=True)
    xyz = np.array(",".join(df.XYZ_Ang.str.replace("[", "").str.replace("]", "")).split(","), dtype=float)
    symbols = ",".join(df.Elements.str.slice(1, -1).str.replace("'", "")).split(",")
    numbers = np.array([_SYMBOLS[s.strip()] for s in symbols], dtype=np.int8)
    n_atoms = df.N_atoms.to_numpy(np.int64)
    if xyz.size != 3 * n_atoms.sum() or numbers.size != n_atoms.sum():
        raise InputFileError(data, "QM9 CSV coordinates do not match the atom counts")
    arrays = {"index": df.Index.to_numpy(np.int64), "n_atoms": n_atoms, "numbers": numbers,
              "positions": xyz.reshape(-1, 3).astype(np.float64)}
    for name, (col, _, _) in QM9_PROPERTIES.items():
        arrays[name] = df[col].to_numpy(np.float64)
    _atomic_savez(path, **arrays)
    return arrays


def qm9_subset_indices(n: int | None, seed: int = 0) -> np.ndarray:
    """Rows (0-based, sorted) of the seeded random QM9 subset of size ``n`` used by :func:`load_qm9`."""
    if n is None or n >= QM9_SIZE:
        return np.arange(QM9_SIZE)
    return np.sort(np.random.default_rng(seed).permutation(QM9_SIZE)[:n])


def load_qm9(targets: Sequence[str] = ("homo",), n: int | None = None, seed: int = 0,
             indices: Sequence[int] | None = None) -> Structures:
    """QM9 molecules (130,831) with ``targets`` converted to eV where they are energies.

    ``n``: a random subset of this size (seeded); ``indices``: explicit rows (0-based).
    """
    bad = [t for t in targets if t not in QM9_PROPERTIES]
    if bad:
        raise ConfigError(f"unknown QM9 target(s) {bad}; choose from {sorted(QM9_PROPERTIES)}")
    arr = _qm9_arrays()
    if arr["n_atoms"].size != QM9_SIZE:
        raise InputFileError(_qm9_dir(), f"expected {QM9_SIZE} QM9 molecules, found {arr['n_atoms'].size}")
    indices = qm9_subset_indices(n, seed) if indices is None else np.asarray(indices, dtype=int)
    ptr = np.concatenate([[0], np.cumsum(arr["n_atoms"])])
    numbers = [arr["numbers"][ptr[i]:ptr[i + 1]].astype(np.int64) for i in indices]
    positions = [arr["positions"][ptr[i]:ptr[i + 1]] for i in indices]
    y = np.stack([arr[t][indices] * QM9_PROPERTIES[t][1] for t in targets], axis=1)
    return Structures(numbers, positions, [None] * len(indices), y, list(targets),
                      [QM9_PROPERTIES[t][2] for t in targets], [f"qm9:{arr['index'][i]}" for i in indices])


def read_atoms(path: str | os.PathLike, index: str | int = ":") -> list:
    """All frames of an ase-readable file (xyz, extxyz, traj, cif, db, ...) as ase Atoms."""
    import ase.io

    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "file does not exist")
    try:
        if path.suffix == ".db":
            import ase.db

            frames = []
            with ase.db.connect(str(path)) as db:
                for row in db.select():
                    atoms = row.toatoms()
                    info = dict(row.key_value_pairs)
                    for key in ("energy", "free_energy"):
                        if row.get(key) is not None:
                            info.setdefault(key, row.get(key))
                    atoms.info.update(info)
                    frames.append(atoms)
        else:
            frames = ase.io.read(str(path), index=index)
    except Exception as exc:  # ase raises many types for bad files
        raise InputFileError(path, f"cannot read structures with ase: {type(exc).__name__}: {exc}") from exc
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise InputFileError(path, "no structures in file")
    return frames


def _property(atoms, key: str):
    if key in atoms.info:
        return atoms.info[key]
    calc = atoms.calc
    if calc is not None and key in getattr(calc, "results", {}):
        return calc.results[key]
    return None


def structures_from_atoms(frames: Iterable, properties: Sequence[str] = (), units: Sequence[str] | None = None,
                          source: str = "") -> Structures:
    """Convert ase Atoms to :class:`Structures`; ``properties`` are read from ``atoms.info`` or
    the attached calculator (``energy``...), NaN where missing."""
    numbers, positions, cells, ys, ids = [], [], [], [], []
    for k, atoms in enumerate(frames):
        numbers.append(atoms.get_atomic_numbers().astype(np.int64))
        positions.append(atoms.get_positions())
        pbc = np.all(atoms.pbc) and atoms.cell.rank == 3
        cells.append(np.asarray(atoms.cell[:], dtype=float) if pbc else None)
        row = []
        for key in properties:
            v = _property(atoms, key)
            try:
                row.append(float(np.asarray(v, dtype=float).reshape(-1)[0]) if v is not None else np.nan)
            except (TypeError, ValueError) as exc:
                raise DataValidationError(f"property {key!r} of structure {k} is not a number: {v!r}") from exc
        ys.append(row)
        ids.append(f"{source}:{k}" if source else str(k))
    if not numbers:
        raise DataValidationError("no structures given")
    y = np.asarray(ys, dtype=float).reshape(len(numbers), len(properties))
    for t, key in enumerate(properties):
        if np.all(np.isnan(y[:, t])):
            raise DataValidationError(f"property {key!r} found in none of the {len(numbers)} structures")
    return Structures(numbers, positions, cells, y, list(properties),
                      list(units) if units else ["" for _ in properties], ids)


def load_structures(path: str | os.PathLike, properties: Sequence[str] = (), index: str | int = ":") -> Structures:
    """Structures (all frames) and per-structure ``properties`` from an ase-readable file or ase db."""
    return structures_from_atoms(read_atoms(path, index), properties, source=Path(path).name)


def split_indices(n: int, sizes: Sequence[float | int], seed: int = 0) -> list[np.ndarray]:
    """Seeded random split of ``range(n)`` into parts given as counts or fractions."""
    sizes = list(sizes)
    counts = [int(round(s * n)) if isinstance(s, float) and s <= 1.0 else int(s) for s in sizes]
    if sum(counts) > n:
        raise ConfigError(f"split sizes {counts} exceed the {n} available structures")
    perm = np.random.default_rng(seed).permutation(n)
    out, start = [], 0
    for c in counts:
        out.append(np.sort(perm[start:start + c]))
        start += c
    return out
