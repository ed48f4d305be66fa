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


QM9_HEADER = ("XYZ_file,Index,SMILES,N_atoms,Elements,XYZ_Ang,Dipole_debye,Polarizability_bohr3,HOMO_au,LUMO_au,"
              "HOMO_LUMO_gap_au,InternalEnergy_0K_au,Heatcapacity_Cv_cal_mol_K")


def _qm9_row(index, symbols, xyz, props):
    el = "[" + ",".join(f"'{s}'" for s in symbols) + "]"
    pos = "[" + ",".join("[" + ",".join(repr(float(v)) for v in p) + "]" for p in xyz) + "]"
    return f'"x{index}.xyz",{index},"S",{len(symbols)},"{el}","{pos}",' + ",".join(repr(float(v)) for v in props)


def _fake_qm9(folder):
    """Three CSV parts in qm9pack's layout (extra columns, quoted lists) with four molecules."""
    folder.mkdir()
    rows = [_qm9_row(1, "CHHHH", np.arange(15.0).reshape(5, 3) / 10, [0.5, 13.2, -0.3877, 0.1171, 0.5048, -40.47, 6.47]),
            _qm9_row(2, "NHHH", -np.arange(12.0).reshape(4, 3), [1.6, 9.5, -0.257, 0.0829, 0.3399, -56.52, 6.32]),
            _qm9_row(7, "OHH", np.ones((3, 3)), [1.9, 6.3, -0.2928, 0.0687, 0.3615, -76.40, 6.0]),
            _qm9_row(9, "FCF", [[1.25, -2.5, 3.0], [0, 0, 0], [7, 8, 9]], [0.1, 2.0, -0.4, 0.01, 0.41, -1.0, 3.5])]
    for part, chunk in ((1, rows[:2]), (2, rows[2:3]), (3, rows[3:])):
        (folder / f"qm9_part{part}.csv").write_text(QM9_HEADER + "\n" + "\n".join(chunk) + "\n")
    return folder


def test_qm9_csv_parsing_cache_and_units(tmp_path, monkeypatch):
    from napari_cxdi.scann import datasets

    data = _fake_qm9(tmp_path / "data")
    monkeypatch.setattr(datasets, "_qm9_dir", lambda: data)
    monkeypatch.setenv("NAPARI_CXDI_CACHE", str(tmp_path / "cache"))
    arr = datasets._qm9_arrays()
    assert arr["index"].tolist() == [1, 2, 7, 9] and arr["index"].dtype == np.int64
    assert arr["n_atoms"].tolist() == [5, 4, 3, 3] and arr["n_atoms"].dtype == np.int64
    assert arr["numbers"].tolist() == [6, 1, 1, 1, 1, 7, 1, 1, 1, 8, 1, 1, 9, 6, 9] and arr["numbers"].dtype == np.int8
    expect_pos = np.concatenate([np.arange(15.0).reshape(5, 3) / 10, -np.arange(12.0).reshape(4, 3), np.ones((3, 3)),
                                 [[1.25, -2.5, 3.0], [0, 0, 0], [7, 8, 9]]])
    assert arr["positions"].dtype == np.float64
    np.testing.assert_array_equal(arr["positions"], expect_pos)
    np.testing.assert_array_equal(arr["homo"], [-0.3877, -0.257, -0.2928, -0.4])  # raw Hartree in the table
    np.testing.assert_array_equal(arr["mu"], [0.5, 1.6, 1.9, 0.1])
    np.testing.assert_array_equal(arr["alpha"], [13.2, 9.5, 6.3, 2.0])
    np.testing.assert_array_equal(arr["lumo"], [0.1171, 0.0829, 0.0687, 0.01])
    np.testing.assert_array_equal(arr["gap"], [0.5048, 0.3399, 0.3615, 0.41])
    np.testing.assert_array_equal(arr["u0"], [-40.47, -56.52, -76.40, -1.0])
    np.testing.assert_array_equal(arr["cv"], [6.47, 6.32, 6.0, 3.5])
    cached = tmp_path / "cache" / "scann" / "qm9_v1.npz"
    assert cached.is_file() and [p.name for p in cached.parent.iterdir()] == ["qm9_v1.npz"]
    for f in data.iterdir():  # parsed once: the second call reads the cache only
        f.unlink()
    again = datasets._qm9_arrays()
    assert sorted(again) == sorted(arr) and all(np.array_equal(again[k], arr[k]) for k in arr)
    monkeypatch.setattr(datasets, "QM9_SIZE", 4)
    s = load_qm9(("homo", "cv", "gap"), indices=[3, 1])
    assert s.ids == ["qm9:9", "qm9:2"] and s.target_units == ["eV", "cal/mol/K", "eV"]
    assert [z.tolist() for z in s.numbers] == [[9, 6, 9], [7, 1, 1, 1]]
    np.testing.assert_array_equal(s.positions[0], [[1.25, -2.5, 3.0], [0, 0, 0], [7, 8, 9]])
    np.testing.assert_allclose(s.targets, [[-0.4 * HARTREE_TO_EV, 3.5, 0.41 * HARTREE_TO_EV],
                                           [-0.257 * HARTREE_TO_EV, 6.32, 0.3399 * HARTREE_TO_EV]], rtol=1e-15)
    assert len(load_qm9()) == 4 and load_qm9().ids == ["qm9:1", "qm9:2", "qm9:7", "qm9:9"]
    assert sorted(load_qm9(n=2, seed=5).ids) == sorted(f"qm9:{[1, 2, 7, 9][i]}" for i in
                                                      np.random.default_rng(5).permutation(4)[:2])
    assert load_qm9(("u0", "mu", "alpha", "lumo")).target_units == ["eV", "D", "bohr^3", "eV"]
    np.testing.assert_allclose(load_qm9(("u0", "mu", "lumo"), indices=[0]).targets,
                               [[-40.47 * HARTREE_TO_EV, 0.5, 0.1171 * HARTREE_TO_EV]], rtol=1e-15)


def test_qm9_csv_errors(tmp_path, monkeypatch):
    from napari_cxdi.scann import datasets

    data = _fake_qm9(tmp_path / "data")
    monkeypatch.setattr(datasets, "_qm9_dir", lambda: data)
    monkeypatch.setenv("NAPARI_CXDI_CACHE", str(tmp_path / "cache"))
    (data / "qm9_part3.csv").unlink()
    with pytest.raises(InputFileError, match="qm9_part3.csv: QM9 CSV file missing from the qm9pack installation$") as err:
        datasets._qm9_arrays()
    assert "qm9_part3.csv" in str(err.value)
    # the atom count, the element list or the coordinates of one molecule disagreeing with the others
    for k, (a, b) in enumerate([(',"S",3,', ',"S",4,'), ("'O','H','H'", "'O','H','H','H'"), ("[1.0,1.0,1.0]]", "[1.0,1.0,1.0],[2.0,2.0,2.0]]")]):
        folder = _fake_qm9(tmp_path / f"d{k}")
        part = folder / "qm9_part2.csv"
        assert a in part.read_text()
        part.write_text(part.read_text().replace(a, b, 1))
        monkeypatch.setattr(datasets, "_qm9_dir", lambda folder=folder: folder)
        with pytest.raises(InputFileError, match="QM9 CSV coordinates do not match the atom counts$") as err:
            datasets._qm9_arrays()
        assert err.value.path == str(folder)
    assert not (tmp_path / "cache" / "scann" / "qm9_v1.npz").exists()


def test_qm9_package_location_and_cache_folder(tmp_path, monkeypatch):
    import importlib.util

    from napari_cxdi.scann import datasets

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"^QM9 needs the 'qm9pack' package \(pip install qm9pack\); it ships the "
                                          r"data offline$"):
        datasets._qm9_dir()

    class Spec:
        submodule_search_locations = [str(tmp_path / "qm9pack")]

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: Spec() if name == "qm9pack" else None)
    assert datasets._qm9_dir() == tmp_path / "qm9pack" / "data"
    Spec.submodule_search_locations = []
    with pytest.raises(ConfigError, match="needs the 'qm9pack' package"):
        datasets._qm9_dir()
    monkeypatch.delenv("NAPARI_CXDI_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "napari-cxdi" / "scann" and cache_dir().is_dir()
    monkeypatch.setenv("NAPARI_CXDI_CACHE", "")  # empty: the default
    assert cache_dir() == tmp_path / "home" / ".cache" / "napari-cxdi" / "scann"
    monkeypatch.setenv("NAPARI_CXDI_CACHE", str(tmp_path / "deep" / "er"))
    assert cache_dir() == tmp_path / "deep" / "er" / "scann" and cache_dir().is_dir()
    datasets._atomic_savez(tmp_path / "new" / "sub" / "a.npz", x=np.arange(3), y=np.ones(2))
    with np.load(tmp_path / "new" / "sub" / "a.npz") as f:
        assert sorted(f.files) == ["x", "y"] and f["x"].tolist() == [0, 1, 2]
    assert [p.name for p in (tmp_path / "new" / "sub").iterdir()] == ["a.npz"]
    datasets._atomic_savez(tmp_path / "new" / "sub" / "a.npz", x=np.arange(2))  # replaced
    with np.load(tmp_path / "new" / "sub" / "a.npz") as f:
        assert f.files == ["x"] and f["x"].tolist() == [0, 1]


def test_subset_and_atoms_carry_every_field():
    cu = bulk("Cu", "fcc", a=3.6)
    w = molecule("H2O")
    s = structures_from_atoms([w, cu, molecule("CH4")], source="f")
    sub = s.subset([1, 0])
    assert sub.target_names == [] and sub.ids == ["f:1", "f:0"]
    np.testing.assert_array_equal(sub.positions[1], w.positions)
    np.testing.assert_allclose(sub.cells[0], cu.cell[:])
    assert sub.cells[1] is None
    empty = s.subset([])
    assert len(empty) == 0 and empty.targets.shape == (0, 0) and empty.ids == []
    w.info["gap"] = 1.0
    g = structures_from_atoms([w, w], ["gap"], units=["eV"])
    assert g.subset([1]).target_names == ["gap"] and g.subset(np.array([1])).targets.tolist() == [[1.0]]
    a = s.atoms(0)
    np.testing.assert_array_equal(a.positions, w.positions)
    assert a.get_chemical_formula() == "H2O" and not a.pbc.any()
    c = s.atoms(1)
    np.testing.assert_allclose(c.cell[:], cu.cell[:])
    assert c.pbc.all()


def test_properties_take_the_first_value_and_missing_results():
    w = molecule("H2O")
    w.info["dipole"] = np.array([0.5, 0.1, 0.2])  # a vector property: its first component
    w.info["name"] = "1.25"                      # a number written as text
    s = structures_from_atoms([w], ["dipole", "name"])
    assert s.targets.tolist() == [[0.5, 1.25]]
    w.info["gap"] = [2.0, "n/a"]  # a list with text in it is no number, even if its first entry is
    with pytest.raises(DataValidationError, match=r"property 'gap' of structure 0 is not a number: \[2.0, 'n/a'\]"):
        structures_from_atoms([w], ["gap"])

    class NoResults:  # a calculator object without a results dict
        pass

    m = molecule("CH4")
    m.calc = NoResults()
    assert _property(m, "energy") is None
    with pytest.raises(DataValidationError, match=r"^no structures given$"):
        structures_from_atoms(iter([]))


def test_file_errors_name_the_file(tmp_path):
    import ase.db
    import ase.io

    missing = tmp_path / "none.xyz"
    with pytest.raises(InputFileError, match=r"none\.xyz: file does not exist$") as err:
        read_atoms(missing)
    assert err.value.path == str(missing)
    bad = tmp_path / "bad.xyz"
    bad.write_text("x\n")
    with pytest.raises(InputFileError, match=r"bad\.xyz: cannot read structures with ase: \w+Error: ") as err:
        read_atoms(bad)
    assert err.value.path == str(bad) and "NoneType" not in str(err.value)
    empty = tmp_path / "empty.db"
    with ase.db.connect(str(empty)) as db:
        db.write(molecule("H2O"))
        db.delete([1])
    with pytest.raises(InputFileError, match=r"empty\.db: no structures in file$") as err:
        read_atoms(empty)
    assert err.value.path == str(empty) and err.value.problem == "no structures in file"
    frames = [molecule("H2O"), molecule("CH4"), molecule("NH3")]
    for k, f in enumerate(frames):
        f.info["y"] = float(k)
    ase.io.write(tmp_path / "three.xyz", frames)
    s = load_structures(tmp_path / "three.xyz", ["y"])
    assert len(s) == 3 and s.targets[:, 0].tolist() == [0.0, 1.0, 2.0] and s.ids == ["three.xyz:0", "three.xyz:1",
                                                                                       "three.xyz:2"]
    one = load_structures(tmp_path / "three.xyz", ["y"], index=1)
    assert len(one) == 1 and one.targets.tolist() == [[1.0]]
    assert len(load_structures(str(tmp_path / "three.xyz"), index="1:")) == 2


def test_default_seeds_are_zero(tmp_path, monkeypatch):
    from napari_cxdi.scann import datasets

    np.testing.assert_array_equal(qm9_subset_indices(7), qm9_subset_indices(7, seed=0))
    assert not np.array_equal(qm9_subset_indices(7, seed=0), qm9_subset_indices(7, seed=1))
    for a, b in zip(split_indices(50, [10, 5]), split_indices(50, [10, 5], seed=0)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(split_indices(50, [10])[0], split_indices(50, [10], seed=1)[0])
    data = _fake_qm9(tmp_path / "data")
    monkeypatch.setattr(datasets, "_qm9_dir", lambda: data)
    monkeypatch.setenv("NAPARI_CXDI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "QM9_SIZE", 4)
    rows = [1, 2, 7, 9]
    for seed in range(4):
        expect = [f"qm9:{rows[i]}" for i in sorted(np.random.default_rng(seed).permutation(4)[:2])]
        assert load_qm9(n=2, seed=seed).ids == expect
    assert load_qm9(n=2).ids == load_qm9(n=2, seed=0).ids
    assert load_qm9().target_names == ["homo"] and load_qm9().target_units == ["eV"]
    none = load_qm9(indices=[])
    assert len(none) == 0 and none.targets.shape == (0, 1)
    np.testing.assert_allclose(load_qm9(indices=np.array([2])).targets, [[-0.2928 * HARTREE_TO_EV]], rtol=1e-15)
    with pytest.raises(InputFileError) as err:
        monkeypatch.setattr(datasets, "QM9_SIZE", 5)
        load_qm9()
    assert err.value.path == str(data) and err.value.problem == "expected 5 QM9 molecules, found 4"
