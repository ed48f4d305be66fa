"""EnvironmentSet (flat arrays of many structures), featurize (chunks, workers, cache, errors): values.

Tiny molecules from ase.build; the cache always goes to a temporary folder (never the user's)."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from napari_cxdi.errors import DataValidationError
from napari_cxdi.scann import VoronoiConfig, local_environment
from napari_cxdi.scann.datasets import Structures, structures_from_atoms
from napari_cxdi.scann.environments import (EnvironmentSet, _featurize_chunk, _featurize_one, _hash_structures,
                                            _ranges, featurize)

NAMES = ("H2O", "CH4", "NH3")


def mols():
    out = []
    for k, name in enumerate(NAMES):
        m = molecule(name)
        m.info["gap"] = 1.0 + k
        out.append(m)
    return out


def envset():
    envs = [local_environment(m) for m in mols()]
    return envs, EnvironmentSet.from_environments(envs, np.array([[1.0], [2.0], [3.0]]), ["gap"], ["eV"])


def assert_same_env(a, b):
    np.testing.assert_array_equal(a.numbers, b.numbers)
    np.testing.assert_array_equal(a.center, b.center)
    np.testing.assert_array_equal(a.neighbor, b.neighbor)
    np.testing.assert_allclose(a.distance, b.distance, rtol=1e-6)
    np.testing.assert_allclose(a.solid_angle, b.solid_angle, rtol=1e-6)


def test_from_environments_pointers_and_dtypes():
    envs, es = envset()
    assert len(es) == 3
    np.testing.assert_array_equal(es.atom_ptr, [0, 3, 8, 12])
    np.testing.assert_array_equal(es.n_atoms, [3, 5, 4])
    ne = [len(e.center) for e in envs]
    np.testing.assert_array_equal(es.edge_ptr, np.concatenate([[0], np.cumsum(ne)]))
    np.testing.assert_array_equal(es.numbers, [8, 1, 1, 6, 1, 1, 1, 1, 7, 1, 1, 1])
    assert es.numbers.dtype == es.center.dtype == es.neighbor.dtype == np.int64
    assert es.distance.dtype == es.solid_angle.dtype == np.float32
    assert es.targets.dtype == np.float64 and es.targets.shape == (3, 1)
    assert es.target_names == ["gap"] and es.target_units == ["eV"]
    for s, e in enumerate(envs):
        got = es.environment(s)
        assert_same_env(got, e)
        assert got.positions.shape == (e.n_atoms, 3) and not got.positions.any()
        assert got.offset.shape == (len(e.center), 3) and got.offset.dtype == np.int64
        assert got.n_atoms == e.n_atoms


def test_from_environments_defaults_and_empty():
    envs, _ = envset()
    es = EnvironmentSet.from_environments(envs)
    assert es.targets.shape == (3, 0) and es.target_names == [] and es.target_units == []
    empty = EnvironmentSet.from_environments([])
    assert len(empty) == 0 and empty.numbers.dtype == np.int64 and empty.distance.dtype == np.float32
    np.testing.assert_array_equal(empty.atom_ptr, [0])
    np.testing.assert_array_equal(empty.edge_ptr, [0])


@pytest.mark.parametrize("idx", [[2, 0], [1], [1, 1, 0, 2], []])
def test_subset_keeps_each_structure(idx):
    envs, es = envset()
    sub = es.subset(idx)
    assert len(sub) == len(idx)
    np.testing.assert_array_equal(sub.targets[:, 0], [1.0 + i for i in idx])
    for s, i in enumerate(idx):
        assert_same_env(sub.environment(s), envs[i])
    np.testing.assert_array_equal(sub.n_atoms, [envs[i].n_atoms for i in idx])
    assert sub.target_names == ["gap"] and sub.target_units == ["eV"]
    assert sub.target_names is not es.target_names  # copies, not shared lists


def test_arrays_round_trip(tmp_path):
    _, es = envset()
    d = es.arrays()
    assert d["target_names"].tolist() == ["gap"] and d["target_units"].tolist() == ["eV"]
    np.savez(tmp_path / "e.npz", **d)
    with np.load(tmp_path / "e.npz") as f:
        back = EnvironmentSet.from_arrays({k: f[k] for k in f.files})
    for k in ("numbers", "atom_ptr", "center", "neighbor", "distance", "solid_angle", "edge_ptr", "targets"):
        np.testing.assert_array_equal(getattr(back, k), getattr(es, k))
    assert back.target_names == ["gap"] and back.target_units == ["eV"]
    assert all(type(s) is str for s in back.target_names + back.target_units)


def test_ranges():
    np.testing.assert_array_equal(_ranges(np.array([5, 0, 10]), np.array([2, 3, 1])), [5, 6, 0, 1, 2, 10])
    np.testing.assert_array_equal(_ranges(np.array([4, 7, 1]), np.array([0, 2, 0])), [7, 8])
    out = _ranges(np.array([3]), np.array([0]))
    assert out.size == 0 and out.dtype == np.int64


def test_featurize_one_and_chunk():
    cu = bulk("Cu", "fcc", a=3.6)
    env = _featurize_one((cu.numbers, cu.positions, cu.cell[:], VoronoiConfig()))
    assert len(env.center) == 12 and env.open_solid_angle is None  # used the lattice
    co = Atoms("CO", positions=[[0, 0, 0], [3.5, 0, 0]], cell=np.eye(3) * 4.0, pbc=True)
    env = _featurize_one((co.numbers, co.positions, None, VoronoiConfig(cutoff=3.0)))  # no cell: a molecule
    assert env.open_solid_angle is not None and len(env.center) == 0  # 3.5 Å > the 3 Å cutoff
    env = _featurize_one((co.numbers, co.positions, None, VoronoiConfig()))
    np.testing.assert_allclose(env.solid_angle, 2 * np.pi)
    m = molecule("H2O")
    bad = (np.array([6]), np.zeros((1, 3)), None)
    out = _featurize_chunk(([(4, (m.numbers, m.positions, None)), (7, bad)], VoronoiConfig()))
    assert [k for k, _, _ in out] == [4, 7]
    assert out[0][2] is None and out[0][1].n_atoms == 3
    assert out[1][1] is None and "at least 2 atoms" in out[1][2]


def test_hash_depends_on_everything_that_changes_features():
    s = structures_from_atoms(mols(), ["gap"])
    h = _hash_structures(s, VoronoiConfig())
    assert len(h) == 20 and all(c in "0123456789abcdef" for c in h)
    assert _hash_structures(structures_from_atoms(mols(), ["gap"]), VoronoiConfig()) == h
    assert _hash_structures(s, VoronoiConfig(cutoff=3.9)) != h
    moved = structures_from_atoms(mols(), ["gap"])
    moved.positions[1] = moved.positions[1] + 1e-6
    assert _hash_structures(moved, VoronoiConfig()) != h
    other = structures_from_atoms(mols(), ["gap"])
    other.numbers[2] = other.numbers[2].copy()
    other.numbers[2][0] = 15
    assert _hash_structures(other, VoronoiConfig()) != h
    boxed = structures_from_atoms(mols(), ["gap"])
    boxed.cells[0] = np.eye(3) * 10
    assert _hash_structures(boxed, VoronoiConfig()) != h
    boxed2 = structures_from_atoms(mols(), ["gap"])
    boxed2.cells[0] = np.eye(3) * 11
    assert _hash_structures(boxed2, VoronoiConfig()) != _hash_structures(boxed, VoronoiConfig())
    # the targets do not change features: same hash
    t = structures_from_atoms(mols(), ["gap"])
    t.targets = t.targets + 1
    assert _hash_structures(t, VoronoiConfig()) == h


def test_featurize_values_progress_and_cache(tmp_path, monkeypatch):
    s = structures_from_atoms(mols(), ["gap"], units=["eV"])
    calls = []
    es = featurize(s, cache=tmp_path, progress=lambda d, n: calls.append((d, n)))
    assert calls == [(1, 3), (2, 3), (3, 3)]  # 3 // 4 structures per chunk -> at least 1
    np.testing.assert_allclose(es.targets[:, 0], [1, 2, 3])
    assert es.target_names == ["gap"] and es.target_units == ["eV"]
    for k, m in enumerate(mols()):
        assert_same_env(es.environment(k), local_environment(m))
    files = list(tmp_path.glob("env_*.npz"))
    assert [f.name for f in files] == [f"env_{_hash_structures(s, VoronoiConfig())}.npz"]
    # second call reads the cache (no tessellation) and takes the targets of the structures given
    import napari_cxdi.scann.environments as envmod

    monkeypatch.setattr(envmod, "local_environment", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    s.targets = s.targets * 10
    s.target_names, s.target_units = ["gap2"], ["meV"]
    again = featurize(s, cache=tmp_path)
    np.testing.assert_allclose(again.targets[:, 0], [10, 20, 30])
    assert again.targets.dtype == np.float64
    assert again.target_names == ["gap2"] and again.target_units == ["meV"]
    for k in range(3):
        assert_same_env(again.environment(k), es.environment(k))
    with pytest.raises(AssertionError, match="recomputed"):
        featurize(s, cache=False)  # no cache: computed
    with pytest.raises(AssertionError, match="recomputed"):
        featurize(s, VoronoiConfig(cutoff=3.5), cache=tmp_path)  # another config: another file


def test_featurize_default_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CXDI_CACHE", str(tmp_path))
    s = structures_from_atoms(mols())
    featurize(s)
    assert len(list((tmp_path / "scann").glob("env_*.npz"))) == 1
    featurize(s, cache=False)
    assert len(list((tmp_path / "scann").glob("env_*.npz"))) == 1


def test_featurize_chunks_and_workers(tmp_path):
    base = mols()
    frames = [base[k % 3] for k in range(10)]
    calls = []
    one = featurize(structures_from_atoms(frames), cache=False, progress=lambda d, n: calls.append((d, n)))
    assert calls == [(2, 10), (4, 10), (6, 10), (8, 10), (10, 10)]  # chunks of 10 // 4 structures
    frames = [base[k % 3] for k in range(64)]
    calls = []
    serial = featurize(structures_from_atoms(frames), n_jobs=1, cache=False, progress=lambda d, n: calls.append(d))
    assert calls == [16, 32, 48, 64]
    calls = []
    par = featurize(structures_from_atoms(frames), n_jobs=2, cache=False, progress=lambda d, n: calls.append(d))
    assert calls == [8 * k for k in range(1, 9)]  # two workers: chunks of 64 // 8
    for k in ("numbers", "atom_ptr", "center", "neighbor", "distance", "solid_angle", "edge_ptr"):
        np.testing.assert_array_equal(getattr(par, k), getattr(serial, k))
    np.testing.assert_array_equal(one.numbers[:12], serial.numbers[:12])


def test_featurize_names_the_bad_structure():
    frames = mols() + [Atoms("C", positions=[[0, 0, 0]])]
    s = structures_from_atoms(frames, source="set.xyz")
    with pytest.raises(DataValidationError, match=r"^structure set\.xyz:3: a molecule needs at least 2 atoms"):
        featurize(s, cache=False)
    s = Structures(s.numbers, s.positions, s.cells, s.targets, [], [], [])  # no ids: the index
    with pytest.raises(DataValidationError, match=r"^structure 3: a molecule"):
        featurize(s, cache=False)


def test_featurize_crystal_uses_its_cell():
    s = structures_from_atoms([bulk("Cu", "fcc", a=3.6), molecule("H2O")])
    es = featurize(s, cache=False)
    assert es.edge_ptr[1] == 12
    np.testing.assert_allclose(es.solid_angle[:12], np.pi / 3, rtol=1e-6)


# -- reviewed survivors of the first mutation run ------------------------------------------------------

def test_edge_cases_of_the_flat_arrays():
    empty = EnvironmentSet.from_environments([])
    assert empty.numbers.size == 0 and empty.distance.size == 0 and empty.center.size == 0
    envs, _ = envset()
    es = EnvironmentSet.from_environments(envs, [[1], [2], [3]])  # integer targets are stored as float64
    assert es.targets.dtype == np.float64
    np.testing.assert_array_equal(_ranges(np.array([5]), np.array([1])), [5])
    np.testing.assert_array_equal(_ranges(np.array([2, 9]), np.array([1, 0])), [2])


def test_featurize_one_keeps_the_config_for_crystals():
    cu = bulk("Cu", "fcc", a=3.6)  # nearest neighbours at 2.55 Å
    env = _featurize_one((cu.numbers, cu.positions, cu.cell[:], VoronoiConfig(cutoff=2.0)))
    assert len(env.center) == 0


def test_cache_key_is_stable():
    """The cache key of a fixed set (a molecule and a crystal) does not change between versions unless
    the features change (then the tag inside the key is bumped on purpose)."""
    s = structures_from_atoms([molecule("H2O"), bulk("Cu", "fcc", a=3.6)])
    assert _hash_structures(s, VoronoiConfig()) == KEY


KEY = "4dfd0f0acdda532c3019"  # ase.build H2O + fcc Cu, default config (computed when the key was last changed)


def test_cached_integer_targets_are_float(tmp_path):
    s = structures_from_atoms(mols(), ["gap"])
    featurize(s, cache=tmp_path)
    s.targets = np.array([[1], [2], [3]])
    assert featurize(s, cache=tmp_path).targets.dtype == np.float64


def test_featurize_worker_count_is_limited_by_the_set_size():
    frames = [mols()[k % 3] for k in range(70)]
    calls = []
    featurize(structures_from_atoms(frames), n_jobs=3, cache=False, progress=lambda d, n: calls.append(d))
    # 70 structures: at most 70 // 32 = 2 workers, chunks of 70 // 8 = 8 structures
    assert sorted(np.diff([0] + calls).tolist()) == [6] + [8] * 8 and calls[-1] == 70
