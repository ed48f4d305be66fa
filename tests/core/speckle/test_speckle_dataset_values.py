"""Speckle datasets (speckle/dataset.py): configuration bounds, per-sample seeding, the simulation wiring
(analytic / DFT / photons / binning), chunked progress, HDF5 round trips, splits and pattern files."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

from napari_cxdi.errors import ConfigError, CXDIError, DataValidationError, InputFileError
from napari_cxdi.speckle.dataset import (
    METHODS,
    SpeckleData,
    SpeckleDatasetConfig,
    _simulate_chunk,
    _single_threaded_children,
    load_dataset,
    load_patterns,
    make_dataset,
    sample_rng,
    simulate,
    simulate_pattern,
    split_indices,
    write_dataset,
)
from napari_cxdi.speckle.disks import disk_radii, object_function, place_disks
from napari_cxdi.speckle.patterns import add_poisson_noise, bin_pattern, block_center, speckle_analytic, speckle_dft

SMALL = SpeckleDatasetConfig(n_values=(2, 4), per_class=3, window=15, bin=3, method="analytic", block=3, seed=4)


def test_config_defaults_and_bounds():
    d = SpeckleDatasetConfig()
    assert d.n_values == tuple(range(2, 21)) and d.per_class == 100 and d.window == 513 and d.bin == 1
    assert (d.polydisperse, d.poly_law, d.contrast, d.profile, d.phase, d.absorption) == (
        False, "radius", "amplitude", "flat", 0.5, 0.0)
    assert (d.photons, d.block, d.method, d.seed, d.pad) == (None, 11, "dft", 0, 18001)
    assert METHODS == ("dft", "analytic")
    assert SMALL.size == 5 and SMALL.to_dict()["n_values"] == (2, 4) and SMALL.to_dict()["window"] == 15
    assert SpeckleDatasetConfig(n_values=[3.0, 1]).n_values == (3, 1)
    SpeckleDatasetConfig(window=3, bin=3, per_class=1, photons=0.5)
    bad = [({"n_values": ()}, "disk numbers must be >= 1, got ()"),
           ({"n_values": (0, 2)}, r"n_values must be in \[1, inf\), got 0"),
           ({"n_values": (2, 2)}, r"disk numbers must be distinct, got \(2, 2\)"),
           ({"window": 16}, "window must be odd and >= 3, got 16"),
           ({"window": 1, "bin": 1}, "window must be odd and >= 3, got 1"),
           ({"bin": 2}, "bin 2 must divide the window 513"),
           ({"method": "fft"}, "unknown method 'fft'; choose one of dft, analytic"),
           ({"poly_law": "x"}, "unknown polydispersity law 'x'; choose one of radius, area"),
           ({"contrast": "dark"}, "unknown contrast/profile 'dark'/'flat'"),
           ({"profile": "cube"}, "unknown contrast/profile 'amplitude'/'cube'"),
           ({"method": "analytic", "contrast": "phase"},
            "^the analytic method covers flat amplitude disks only; use method='dft'$"),
           ({"method": "analytic", "profile": "sphere"}, "covers flat amplitude disks only")]
    for kw, msg in bad:
        with pytest.raises(ConfigError, match=msg):
            SpeckleDatasetConfig(**kw)
    for kw, field in (({"per_class": 0}, "per_class"), ({"photons": 0.0}, "photons"), ({"photons": -1.0}, "photons"),
                      ({"seed": -1}, "seed"), ({"absorption": -0.1}, "absorption"), ({"window": 0}, "window"),
                      ({"bin": 0}, "bin"), ({"block": 0}, "block"), ({"pad": -1}, "pad"), ({"n_values": (0,)}, "n_values")):
        with pytest.raises(ConfigError, match=f"^speckle dataset config: {field} must be"):
            SpeckleDatasetConfig(**kw)
    SpeckleDatasetConfig(method="dft", contrast="phase", profile="sphere")


def test_sample_rng_is_the_seed_sequence():
    a = sample_rng(3, 5, 7).normal(size=4)
    b = np.random.default_rng(np.random.SeedSequence([3, 5, 7])).normal(size=4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(sample_rng(3, 5, 8).normal(size=4), a)
    assert not np.allclose(sample_rng(3, 6, 7).normal(size=4), a)
    assert not np.allclose(sample_rng(4, 5, 7).normal(size=4), a)


def _system(n, j, cfg):
    rng = sample_rng(cfg.seed, n, j)
    radii = disk_radii(n, rng, cfg.polydisperse, law=cfg.poly_law)
    centers = place_disks(radii, rng)
    return radii, centers, rng


def test_simulate_pattern_wiring():
    from napari_cxdi.speckle.disks import DiskSystem

    # analytic, binned, blocked
    p, s = simulate_pattern(3, 1, SMALL)
    radii, centers, _ = _system(3, 1, SMALL)
    np.testing.assert_allclose(s.radii, radii)
    np.testing.assert_allclose(s.centers, centers)
    ref = bin_pattern(block_center(speckle_analytic(DiskSystem(centers, radii), 15, 18001), 3), 3)
    assert p.dtype == np.float32 and p.shape == (5, 5)
    np.testing.assert_allclose(p, ref, rtol=1e-6)
    # polydisperse with the area law and another pad
    cfg = SpeckleDatasetConfig(n_values=(3,), window=9, method="analytic", block=1, polydisperse=True,
                               poly_law="area", pad=9001)
    p, s = simulate_pattern(3, 0, cfg)
    radii, centers, _ = _system(3, 0, cfg)
    np.testing.assert_allclose(s.radii, radii)
    np.testing.assert_allclose(p, block_center(speckle_analytic(DiskSystem(centers, radii), 9, 9001), 1), rtol=1e-6)
    # DFT of the object function (mixed contrast, sphere profile), then photons drawn from the same generator
    cfg = SpeckleDatasetConfig(n_values=(2,), window=9, block=3, contrast="mixed", profile="sphere", phase=0.3,
                               absorption=0.2, photons=1e4, seed=2)
    p, s = simulate_pattern(2, 5, cfg)
    radii, centers, rng = _system(2, 5, cfg)
    obj = object_function(DiskSystem(centers, radii), "mixed", "sphere", 0.3, 0.2)
    clean = block_center(speckle_dft(obj, 9, 18001), 3)
    np.testing.assert_array_equal(p, add_poisson_noise(clean, 1e4, rng, 3).astype(np.float32))
    assert p.sum() == pytest.approx(1e4, rel=0.05) and np.all(p == np.rint(p))
    # noise-free, on a coarser k grid (pad 4001): every argument of the object and the DFT matters
    cfg = SpeckleDatasetConfig(n_values=(2,), window=9, block=1, contrast="mixed", profile="sphere", phase=0.3,
                               absorption=0.2, seed=2, pad=4001)
    p, s = simulate_pattern(2, 5, cfg)
    radii, centers, _ = _system(2, 5, cfg)
    obj = object_function(DiskSystem(centers, radii), "mixed", "sphere", 0.3, 0.2)
    np.testing.assert_allclose(p, block_center(speckle_dft(obj, 9, 4001), 1), rtol=1e-6)
    other = object_function(DiskSystem(centers, radii), "mixed", "sphere", 0.3, 0.0)
    assert np.abs(p - block_center(speckle_dft(other, 9, 4001), 1)).max() > 1e-3 * p.max()


def test_chunks_progress_and_dataset(tmp_path):
    pats, radii, centers = _simulate_chunk((SMALL, [(2, 0), (4, 2)]))
    assert pats.shape == (2, 5, 5) and radii.shape == (2, 4) and centers.shape == (2, 4, 2)
    p4, s4 = simulate_pattern(4, 2, SMALL)
    np.testing.assert_array_equal(pats[1], p4)
    np.testing.assert_allclose(radii[1], s4.radii)
    np.testing.assert_allclose(centers[1], s4.centers)
    assert np.all(radii[0, 2:] == 0) and np.all(centers[0, 2:] == 0) and np.all(radii[0, :2] > 0)
    events = list(simulate(SMALL, chunk=4))
    assert [(e["start"], e["done"], e["total"]) for e in events] == [(0, 4, 6), (4, 6, 6)]
    assert events[0]["labels"].tolist() == [2, 2, 2, 4] and events[1]["labels"].tolist() == [4, 4]
    assert events[0]["sample_index"].tolist() == [0, 1, 2, 0] and events[1]["sample_index"].tolist() == [1, 2]
    np.testing.assert_array_equal(events[1]["patterns"][0], simulate_pattern(4, 1, SMALL)[0])
    assert len(list(simulate(SMALL))) == 1   # default chunk of 8
    data = make_dataset(SMALL)
    assert data.patterns.shape == (6, 5, 5) and data.labels.tolist() == [2, 2, 2, 4, 4, 4]
    assert data.sample_index.tolist() == [0, 1, 2, 0, 1, 2] and data.config == SMALL.to_dict() and data.bin == 3
    np.testing.assert_array_equal(data.patterns[4], simulate_pattern(4, 1, SMALL)[0])
    assert data.radii.shape == (6, 4) and data.centers.shape == (6, 4, 2)
    assert data.patterns.dtype == np.float32 and data.radii.dtype == np.float32 and data.centers.dtype == np.float32
    # three chunks: starts 0, 2, 4
    assert [(e["start"], e["done"]) for e in simulate(SMALL, chunk=2)] == [(0, 2), (2, 4), (4, 6)]
    assert SpeckleData(data.patterns, data.labels, data.sample_index, {}).bin == 1


class _FakePool:
    """Stands in for ProcessPoolExecutor (records how it was made; maps in this process)."""

    made = []

    def __init__(self, max_workers=None, mp_context=None):
        _FakePool.made.append((max_workers, mp_context.get_start_method() if mp_context else None))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items):
        return map(fn, items)


def test_processes_only_when_asked(monkeypatch, tmp_path):
    import napari_cxdi.speckle.dataset as D

    monkeypatch.setattr(D, "ProcessPoolExecutor", _FakePool)
    _FakePool.made = []
    list(simulate(SMALL))
    make_dataset(SMALL)
    list(write_dataset(tmp_path / "a.h5", SMALL))
    assert _FakePool.made == []
    ev = list(simulate(SMALL, workers=2, chunk=2))
    assert [(e["start"], e["done"]) for e in ev] == [(0, 2), (2, 4), (4, 6)]
    np.testing.assert_array_equal(np.concatenate([e["patterns"] for e in ev]), make_dataset(SMALL).patterns)
    make_dataset(SMALL, workers=3)
    list(write_dataset(tmp_path / "b.h5", SMALL, workers=2))
    assert _FakePool.made == [(2, "spawn"), (3, "spawn"), (2, "spawn")]


def test_write_reserves_the_dataset_size(monkeypatch, tmp_path):
    from napari_cxdi.io import safe_write

    seen = []
    real = safe_write.atomic_output

    def spy(path, **kw):
        seen.append(kw.get("needed_bytes"))
        return real(path, **kw)

    monkeypatch.setattr(safe_write, "atomic_output", spy)
    list(write_dataset(tmp_path / "d.h5", SMALL))
    assert seen == [6 * 5 * 5 * 4]


def test_parallel_simulation_matches_serial():
    par = list(simulate(SMALL, workers=2, chunk=4))
    ser = list(simulate(SMALL, chunk=4))
    assert [(e["start"], e["done"]) for e in par] == [(0, 4), (4, 6)]
    for a, b in zip(par, ser):
        np.testing.assert_array_equal(a["patterns"], b["patterns"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
        np.testing.assert_array_equal(a["radii"], b["radii"])


def test_single_threaded_children_restores_the_environment(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with _single_threaded_children():
        assert [os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")] == ["1"] * 3
    assert os.environ["OMP_NUM_THREADS"] == "7"
    assert "OPENBLAS_NUM_THREADS" not in os.environ and "MKL_NUM_THREADS" not in os.environ


def test_hdf5_round_trip(tmp_path):
    path = tmp_path / "d.h5"
    events = list(write_dataset(path, SMALL))
    assert events == [{"done": 6, "total": 6}]
    back = load_dataset(path)
    ref = make_dataset(SMALL)
    np.testing.assert_array_equal(back.patterns, ref.patterns)
    np.testing.assert_array_equal(back.labels, ref.labels)
    np.testing.assert_array_equal(back.sample_index, ref.sample_index)
    np.testing.assert_allclose(back.radii, ref.radii)
    np.testing.assert_allclose(back.centers, ref.centers)
    assert back.bin == 3 and back.config["window"] == 15 and back.config["seed"] == 4
    assert back.sample_index.dtype.kind == "i" and back.labels.dtype.kind == "i"
    with h5py.File(path, "r") as f:
        assert f.attrs["bin"] == 3 and f.attrs["window"] == 15
        prov = json.loads(f.attrs["provenance"])
        assert prov["metrics"] == {"patterns": 6} and prov["config"]["seed"] == 4 and prov["config"]["window"] == 15
        assert f["patterns"].dtype == np.float32 and f["labels"].dtype == np.int32
        assert f["patterns"].chunks == (1, 5, 5) and f["patterns"].compression == "lzf"
    assert [e["done"] for e in write_dataset(tmp_path / "c.h5", SMALL.__class__(**{**SMALL.to_dict(), "per_class": 5}))] == [8, 10]
    with pytest.raises(CXDIError):
        list(write_dataset(path, SMALL))
    list(write_dataset(path, SMALL, overwrite=True))
    # a minimal file: no sample_index, radii or config; bin from the attribute (default 1)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["patterns"] = np.ones((2, 3, 3), np.float32)
        f["labels"] = np.array([2, 5])
        f.attrs["bin"] = 3
    m = load_dataset(tmp_path / "m.h5")
    assert m.sample_index.tolist() == [0, 1] and m.radii is None and m.centers is None and m.config == {"bin": 3}
    with h5py.File(tmp_path / "n.h5", "w") as f:
        f["patterns"] = np.ones((1, 3, 3), np.float32)
        f["labels"] = np.array([2])
    assert load_dataset(tmp_path / "n.h5").bin == 1
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["patterns"] = np.ones((1, 3, 3))
    with pytest.raises(InputFileError, match=r": not a speckle dataset \(needs /patterns and /labels\)$") as err:
        load_dataset(tmp_path / "x.h5")
    assert err.value.path == str(tmp_path / "x.h5")
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f["labels"] = np.ones(1)
    with pytest.raises(InputFileError, match="not a speckle dataset"):
        load_dataset(tmp_path / "y.h5")
    with pytest.raises(InputFileError, match=": file not found$") as err:
        load_dataset(tmp_path / "none.h5")
    assert err.value.path == str(tmp_path / "none.h5")
    (tmp_path / "bad.h5").write_bytes(b"garbage" * 10)
    with pytest.raises(InputFileError, match="cannot read HDF5") as err:
        load_dataset(tmp_path / "bad.h5")
    assert err.value.path == str(tmp_path / "bad.h5")


def test_splits():
    labels = np.repeat([2, 5, 9], [10, 12, 14])
    tr, va, te = split_indices(labels, test_per_class=3, val_fraction=0.25, seed=1)
    assert [int(np.sum(labels[te] == c)) for c in (2, 5, 9)] == [3, 3, 3]
    assert va.size == 9 and tr.size == 36 - 9 - 9    # round(0.25 * 36)
    assert np.all(np.diff(te) > 0) and np.all(np.diff(va) > 0) and np.all(np.diff(tr) > 0)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(36))
    a = split_indices(labels, test_per_class=3, val_fraction=0.25, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, (tr, va, te)))
    b = split_indices(labels, test_per_class=3, val_fraction=0.25, seed=2)
    assert not np.array_equal(b[2], te)
    tr, va, te = split_indices(labels, test_fraction=0.2, val_fraction=0.1)
    assert te.size == 7 and va.size == 4 and tr.size == 25     # round(7.2), round(3.6)
    assert split_indices(labels)[2].size == 4
    assert all(np.array_equal(a, b) for a, b in zip(split_indices(labels), split_indices(labels, seed=0)))
    # drawn without replacement: 9 of 10 samples of a class are 9 different ones, whatever the seed
    for s in range(10):
        te = split_indices(labels, test_per_class=9, val_fraction=0.05, seed=s)[2]
        assert np.unique(te).size == te.size == 27
    with pytest.raises(ConfigError, match="^class 2 has 10 samples, not more than test_per_class=10$"):
        split_indices(labels, test_per_class=10)
    split_indices(labels, test_per_class=9, val_fraction=0.1)
    with pytest.raises(ConfigError, match="^validation fraction leaves no training data$"):
        split_indices(labels, test_fraction=0.5, val_fraction=0.5)
    # exactly one training sample left is allowed
    tr, va, te = split_indices(np.arange(10), test_fraction=0.5, val_fraction=0.4)
    assert tr.size == 1


def test_load_patterns_formats_and_errors(tmp_path):
    import tifffile

    x = np.arange(2 * 4 * 4, dtype=np.float64).reshape(2, 4, 4)
    np.save(tmp_path / "a.npy", x)
    arr, b = load_patterns(tmp_path / "a.npy")
    assert arr.dtype == np.float32 and b == 1
    np.testing.assert_array_equal(arr, x)
    np.savez(tmp_path / "z.npz", first=x[0], second=x)
    np.testing.assert_array_equal(load_patterns(tmp_path / "z.npz")[0], x[0])
    np.testing.assert_array_equal(load_patterns(tmp_path / "z.npz", "second")[0], x)
    assert load_patterns(tmp_path / "z.npz")[1] == 1
    with pytest.raises(InputFileError, match=r"no array 'third' \(has first, second\)") as err:
        load_patterns(tmp_path / "z.npz", "third")
    assert err.value.path == str(tmp_path / "z.npz")
    np.savez(tmp_path / "obj.npz", a=np.array([None, 1], dtype=object))
    with pytest.raises(InputFileError, match="cannot read: ValueError: Object arrays cannot be loaded"):
        load_patterns(tmp_path / "obj.npz")
    np.savez(tmp_path / "e.npz")
    with pytest.raises(InputFileError, match="no array None"):
        load_patterns(tmp_path / "e.npz")
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f["patterns"] = x
        f["other/data"] = x[0]
        f.attrs["bin"] = 3
    arr, b = load_patterns(tmp_path / "p.h5")
    assert b == 3
    np.testing.assert_array_equal(arr, x)
    arr, b = load_patterns(tmp_path / "p.h5", "other/data")
    assert b == 1 and arr.shape == (4, 4)
    with pytest.raises(InputFileError, match=r"no dataset 'missing'; pass its HDF5 path") as err:
        load_patterns(tmp_path / "p.h5", "missing")
    assert err.value.path == str(tmp_path / "p.h5")
    for suffix in (".hdf5", ".nxs"):
        with h5py.File(tmp_path / f"q{suffix}", "w") as f:
            f["patterns"] = x                       # no bin attribute: 1
        arr, b = load_patterns(tmp_path / f"q{suffix}")
        assert b == 1 and arr.shape == (2, 4, 4)
    os.replace(tmp_path / "p.h5", tmp_path / "p.CXI")
    assert load_patterns(tmp_path / "p.CXI")[1] == 3
    tifffile.imwrite(tmp_path / "one.tif", x[0].astype(np.float32))
    arr, b = load_patterns(tmp_path / "one.tif")
    assert arr.shape == (4, 4) and b == 1
    np.testing.assert_array_equal(arr, x[0])
    tifffile.imwrite(tmp_path / "two.tiff", np.ones((2, 6, 6), np.float32))
    assert load_patterns(tmp_path / "two.tiff")[0].shape == (2, 6, 6)
    (tmp_path / "p.png").write_bytes(b"x")
    with pytest.raises(InputFileError, match=r": unsupported pattern file type \(use .npy, .npz, .h5 or .tif\)$") as err:
        load_patterns(tmp_path / "p.png")
    assert err.value.path == str(tmp_path / "p.png")
    (tmp_path / "c.npy").write_bytes(b"garbage!" * 8)
    with pytest.raises(InputFileError, match="cannot read: ValueError: This file contains pickled") as err:
        load_patterns(tmp_path / "c.npy")
    assert err.value.path == str(tmp_path / "c.npy")
    np.save(tmp_path / "o.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    with pytest.raises(InputFileError, match="cannot read: ValueError"):
        load_patterns(tmp_path / "o.npy")
    np.save(tmp_path / "v.npy", np.ones(5))
    with pytest.raises(InputFileError, match=r"expected numeric patterns \(H, W\) or \(N, H, W\), got float64 \(5,\)") as err:
        load_patterns(tmp_path / "v.npy")
    assert err.value.path == str(tmp_path / "v.npy")
    # the smallest patterns: 2 x 2, and a stack of one
    np.save(tmp_path / "2.npy", np.ones((2, 2)))
    assert load_patterns(tmp_path / "2.npy")[0].shape == (2, 2)
    np.save(tmp_path / "1.npy", np.ones((1, 4, 4)))
    assert load_patterns(tmp_path / "1.npy")[0].shape == (1, 4, 4)
    np.save(tmp_path / "t.npy", np.ones((2, 1, 4)))
    with pytest.raises(InputFileError, match="expected numeric patterns"):
        load_patterns(tmp_path / "t.npy")
    np.save(tmp_path / "s.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(InputFileError, match="expected numeric patterns"):
        load_patterns(tmp_path / "s.npy")
    np.save(tmp_path / "k.npy", np.ones((3, 3), np.complex64))
    with pytest.raises(DataValidationError, match="speckle patterns must be real intensities, got complex data"):
        load_patterns(tmp_path / "k.npy")
    np.save(tmp_path / "0.npy", np.zeros((3, 3)))
    with pytest.raises(DataValidationError, match="the patterns are zero everywhere"):
        load_patterns(tmp_path / "0.npy")
    nan = np.ones((3, 3))
    nan[1, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(DataValidationError, match=f"^{tmp_path / 'nan.npy'}: frame 0 contains NaN"):
        load_patterns(tmp_path / "nan.npy")
    with pytest.raises(InputFileError, match="file not found"):
        load_patterns(tmp_path / "none.npy")
    np.save(tmp_path / "i.npy", np.full((3, 3), 7, np.uint16))
    arr, _ = load_patterns(tmp_path / "i.npy")
    assert arr.dtype == np.float32 and arr[0, 0] == 7


def test_load_patterns_out_of_memory(monkeypatch, tmp_path):
    np.save(tmp_path / "m.npy", np.ones((3, 3)))

    def boom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(np, "load", boom)
    with pytest.raises(InputFileError, match=r": declares more data than fits in memory; the file is probably corrupt$") as err:
        load_patterns(tmp_path / "m.npy")
    assert err.value.path == str(tmp_path / "m.npy")
