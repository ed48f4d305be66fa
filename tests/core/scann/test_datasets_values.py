"""Structure datasets: conversion from ase (properties, cells, ids), files and databases, seeded splits,
QM9 subset rows, cache folder; typed errors with their messages. No QM9 parsing (seconds)."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from napari_cxdi.errors import ConfigError, DataValidationError, InputFileError
from napari_cxdi.scann.datasets import (HARTREE_TO_EV, QM9_PROPERTIES, QM9_SIZE, Structures, _property, cache_dir,
                                        load_qm9, load_structures, qm9_subset_indices, read_atoms, split_indices,
                                        structures_from_atoms)


def test_structures_from_atoms_values():
    w = molecule("H2O")
    w.info["gap"] = 7.5
    m = molecule("CH4")
    m.calc = SinglePointCalculator(m, energy=-3.25)
    cu = bulk("Cu", "fcc", a=3.6)
    cu.info["gap"] = np.array([0.0])
    s = structures_from_atoms([w, m, cu], ["gap", "energy"], units=["eV", "eV"], source="f.xyz")
    assert len(s) == 3 and s.ids == ["f.xyz:0", "f.xyz:1", "f.xyz:2"]
    np.testing.assert_array_equal(s.targets[:, 0], [7.5, np.nan, 0.0])
    np.testing.assert_array_equal(s.targets[:, 1], [np.nan, -3.25, np.nan])
    assert s.target_names == ["gap", "energy"] and s.target_units == ["eV", "eV"]
    assert s.numbers[0].dtype == np.int64 and s.numbers[1].tolist() == [6, 1, 1, 1, 1]
    np.testing.assert_allclose(s.positions[0], w.positions)
    assert s.cells[0] is None and s.cells[1] is None
    np.testing.assert_allclose(s.cells[2], cu.cell[:])
    plain = structures_from_atoms([w, m])
    assert plain.ids == ["0", "1"] and plain.targets.shape == (2, 0) and plain.target_units == []
    assert structures_from_atoms([w], ["gap"]).target_units == [""]
    slab = Atoms("Cu", positions=[[0, 0, 0]], cell=[3, 3, 0], pbc=[True, True, False])
    assert structures_from_atoms([slab, w]).cells[0] is None  # not periodic in all directions
    flat = Atoms("CuCu", positions=[[0, 0, 0], [1.5, 0, 0]], cell=[3, 3, 0], pbc=True)
    assert structures_from_atoms([flat]).cells[0] is None  # a cell of rank 2 is no crystal
    with pytest.raises(DataValidationError, match="no structures given"):
        structures_from_atoms([])
    with pytest.raises(DataValidationError, match=r"property 'gap' found in none of the 2 structures"):
        structures_from_atoms([m, m], ["gap"])
    bad = molecule("H2O")
    bad.info["gap"] = "high"
    with pytest.raises(DataValidationError, match=r"property 'gap' of structure 1 is not a number: 'high'"):
        structures_from_atoms([w, bad], ["gap"])
    assert _property(m, "energy") == -3.25 and _property(w, "energy") is None and _property(w, "gap") == 7.5


def test_subset_and_atoms():
    frames = [molecule(n) for n in ("H2O", "CH4", "NH3")]
    for k, f in enumerate(frames):
        f.info["y"] = float(k)
    s = structures_from_atoms(frames, ["y"], units=["eV"])
    sub = s.subset([2, 0])
    assert sub.ids == ["2", "0"] and sub.targets[:, 0].tolist() == [2.0, 0.0] and sub.target_units == ["eV"]
    assert [len(z) for z in sub.numbers] == [4, 3]
    noid = Structures(s.numbers, s.positions, s.cells, s.targets, ["y"], ["eV"])
    assert noid.subset([1]).ids == []
    a = s.atoms(1)
    assert a.get_chemical_formula() == "CH4" and not a.pbc.any()
    s.cells[1] = np.eye(3) * 9.0
    a = s.atoms(1)
    assert a.pbc.all() and np.allclose(a.cell[:], np.eye(3) * 9.0)


def test_read_atoms_and_database(tmp_path):
    import ase.db
    import ase.io

    ase.io.write(tmp_path / "two.xyz", [molecule("H2O"), molecule("CH4")])
    assert [len(a) for a in read_atoms(tmp_path / "two.xyz")] == [3, 5]
    assert [len(a) for a in read_atoms(tmp_path / "two.xyz", index=1)] == [5]
    assert [len(a) for a in read_atoms(tmp_path / "two.xyz", index="0")] == [3]
    with pytest.raises(InputFileError, match="file does not exist"):
        read_atoms(tmp_path / "none.xyz")
    (tmp_path / "bad.xyz").write_text("x\n")
    with pytest.raises(InputFileError, match="cannot read structures with ase: "):
        read_atoms(tmp_path / "bad.xyz")
    (tmp_path / "empty.xyz").write_text("")
    with pytest.raises(InputFileError):
        read_atoms(tmp_path / "empty.xyz")
    m = molecule("CH4")
    m.calc = SinglePointCalculator(m, energy=-1.5, free_energy=-1.75)
    with ase.db.connect(str(tmp_path / "s.db")) as db:
        db.write(m, gap=2.0)
        w = molecule("H2O")
        w.calc = SinglePointCalculator(w, energy=9.0)
        db.write(w, gap=3.0)
    frames = read_atoms(tmp_path / "s.db")
    assert [f.info["gap"] for f in frames] == [2.0, 3.0]
    assert frames[0].info["energy"] == -1.5 and frames[0].info["free_energy"] == -1.75
    assert frames[1].info["energy"] == 9.0 and "free_energy" not in frames[1].info
    s = load_structures(tmp_path / "s.db", ["gap"])
    assert s.ids == ["s.db:0", "s.db:1"] and s.targets[:, 0].tolist() == [2.0, 3.0]


def test_split_indices():
    parts = split_indices(10, [0.5, 0.3, 0.2], seed=1)
    assert [len(p) for p in parts] == [5, 3, 2]
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))
    perm = np.random.default_rng(1).permutation(10)
    assert parts[0].tolist() == sorted(perm[:5].tolist()) and parts[2].tolist() == sorted(perm[8:].tolist())
    assert [len(p) for p in split_indices(10, [4, 1])] == [4, 1]
    assert [len(p) for p in split_indices(10, [1.0])] == [10]       # a fraction of 1.0 is everything
    assert [len(p) for p in split_indices(10, [2.0, 3])] == [2, 3]  # floats above 1 are counts
    assert [len(p) for p in split_indices(10, [0.25])] == [2]       # rounded (2.5 -> 2, banker's)
    assert split_indices(10, [3], seed=2)[0].tolist() == sorted(np.random.default_rng(2).permutation(10)[:3].tolist())
    split_indices(10, [5, 5])
    with pytest.raises(ConfigError, match=r"split sizes \[6, 5\] exceed the 10 available structures"):
        split_indices(10, [6, 5])


def test_qm9_rows_units_and_errors(tmp_path, monkeypatch):
    assert QM9_SIZE == 130_831 and HARTREE_TO_EV == pytest.approx(27.2114, abs=1e-4)
    assert QM9_PROPERTIES["homo"] == ("HOMO_au", HARTREE_TO_EV, "eV")
    assert QM9_PROPERTIES["alpha"][1:] == (1.0, "bohr^3")
    np.testing.assert_array_equal(qm9_subset_indices(None), np.arange(QM9_SIZE))
    np.testing.assert_array_equal(qm9_subset_indices(QM9_SIZE), np.arange(QM9_SIZE))
    rows = qm9_subset_indices(5, seed=3)
    assert rows.tolist() == sorted(np.random.default_rng(3).permutation(QM9_SIZE)[:5].tolist())
    assert qm9_subset_indices(QM9_SIZE - 1).size == QM9_SIZE - 1
    with pytest.raises(ConfigError, match=r"unknown QM9 target\(s\) \['band'\]; choose from \['alpha', 'cv', 'gap'"):
        load_qm9(("homo", "band"))
    monkeypatch.setenv("NAPARI_CXDI_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "scann" and cache_dir().is_dir()
    # a small fake QM9 table in the cache: rows, unit factors and ids
    n = np.ones(QM9_SIZE, dtype=np.int64)
    n[:2] = [3, 2]
    arrays = {"index": np.arange(1, QM9_SIZE + 1), "n_atoms": n,
              "numbers": np.r_[[8, 1, 1, 6, 1], np.ones(QM9_SIZE - 2)].astype(np.int8),
              "positions": np.arange(3.0 * n.sum()).reshape(-1, 3)}
    for k in QM9_PROPERTIES:
        arrays[k] = np.arange(QM9_SIZE, dtype=float) * 0.5
    np.savez(cache_dir() / "qm9_v1.npz", **arrays)
    s = load_qm9(("homo", "alpha"), indices=[1, 0])
    assert s.ids == ["qm9:2", "qm9:1"] and s.target_units == ["eV", "bohr^3"] and s.target_names == ["homo", "alpha"]
    assert [z.tolist() for z in s.numbers] == [[6, 1], [8, 1, 1]] and s.numbers[0].dtype == np.int64
    np.testing.assert_array_equal(s.positions[0], np.arange(9.0, 15.0).reshape(2, 3))
    np.testing.assert_allclose(s.targets, [[0.5 * HARTREE_TO_EV, 0.5], [0.0, 0.0]])
    assert s.cells == [None, None]
    assert len(load_qm9(n=4, seed=1)) == 4
    arrays["n_atoms"] = n[:-1]
    np.savez(cache_dir() / "qm9_v1.npz", **arrays)
    with pytest.raises(InputFileError, match=f"expected {QM9_SIZE} QM9 molecules, found {QM9_SIZE - 1}"):
        load_qm9()
