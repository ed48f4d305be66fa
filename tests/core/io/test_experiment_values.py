"""Value tests of io/experiment.py (issue 20, mutation testing): Fresnel numbers by hand, scan positions
from every layout, the classification, its messages and what it records in the movie.
"""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

from napari_cxdi.io.experiment import (
    CXI_TRANSLATION_PATHS, HC_KEV_M, POSITION_KEYS, ExperimentKindError, ExperimentKindWarning, _spread, check_kind,
    classify, fresnel_number, scan_positions,
)
from napari_cxdi.io.movie import Movie

GEOM = {"energy_kev": 8.0, "distance_m": 5.0, "detector_pixel_um": 75.0}


def test_fresnel_number_by_hand():
    lam = 12.398419843320026e-10 / 8.0
    assert HC_KEV_M == 12.398419843320026e-10
    assert fresnel_number(8.0, 5.0, 1e-5) == pytest.approx(1e-10 / (lam * 5.0), rel=1e-12)
    assert fresnel_number(16.0, 5.0, 1e-5) == pytest.approx(2 * fresnel_number(8.0, 5.0, 1e-5), rel=1e-12)


def test_spread():
    assert _spread(np.array([[0.0, 0.0], [3.0, -1.0], [1.0, 4.0]])) == (3, 5.0)
    assert _spread(np.array([[0.0, 1.0, 2.0, 10.0], [0.0, 0.0, 0.0, 0.0]])) == (4, 10.0)  # (2, N): transposed
    assert _spread(np.array([[0.0, 1.0, 2.0], [5.0, 5.0, 5.0]])) == (2, 5.0)  # (2, 3) stays: 2 points of 3 coordinates
    assert _spread(np.array([[0, 0, 0, 9], [1, 1, 1, 1]]).T) == (4, 9.0)
    assert _spread(np.zeros((3, 5))) == (5, 0.0)  # (3, N): transposed
    assert _spread(np.array([[1.0, 2.0, 3.0, 4.0, 50.0]])) == (1, 0.0)  # one point of 5 coordinates: only x, y, z count
    assert _spread(np.arange(4.0)) == (0, 0.0) and _spread(np.zeros((0, 2))) == (0, 0.0)


def test_scan_positions_npz(tmp_path):
    pos = np.array([[0.0, 0.0], [1e-6, 0.0]])
    np.savez(tmp_path / "a.npz", data=np.ones((2, 8, 8)), Positions=pos)
    where, got = scan_positions(tmp_path / "a.npz")
    assert where == f"{tmp_path / 'a.npz'}[Positions]"
    np.testing.assert_array_equal(got, pos)
    assert scan_positions(tmp_path / "a.npz", dataset="Positions") is None
    np.savez(tmp_path / "b.npz", data=np.ones((2, 8, 8)), probe=np.ones((8, 8)))
    assert scan_positions(tmp_path / "b.npz") is None
    assert "probe_positions_m" in POSITION_KEYS and "scan_positions" in POSITION_KEYS
    for name in ("a.npy", "a.tif", "a.TIFF"):
        assert scan_positions(tmp_path / name) is None
    (tmp_path / "bad.npz").write_bytes(b"junk")
    assert scan_positions(tmp_path / "bad.npz") is None


def test_scan_positions_hdf5(tmp_path):
    for name in CXI_TRANSLATION_PATHS:
        path = tmp_path / (name.replace("/", "_") + ".cxi")
        with h5py.File(path, "w") as f:
            f[name] = np.arange(6.0).reshape(3, 2)
            f["entry_1/other/translation"] = np.ones((3, 2))
        where, got = scan_positions(path)
        assert where == f"{path}:/{name}"
        np.testing.assert_array_equal(got, np.arange(6.0).reshape(3, 2))
    with h5py.File(tmp_path / "order.cxi", "w") as f:
        f["entry_1/sample_1/geometry_1/translation"] = np.ones((2, 3))
        f["entry_1/data_1/translation"] = np.zeros(3)  # 1-D: skipped
    assert scan_positions(tmp_path / "order.cxi")[0].endswith(":/entry_1/sample_1/geometry_1/translation")
    with h5py.File(tmp_path / "a.ptyd", "w") as f:
        f["chunks/0/positions"] = np.array([[0.0, 0.0], [1.0, 1.0]])
        f["chunks/1/positions"] = np.array([[2.0, 2.0]])
        f["chunks/2/other"] = 1.0
        f["chunks/loose"] = 1.0
    where, got = scan_positions(tmp_path / "a.ptyd")
    assert where == f"{tmp_path / 'a.ptyd'}:/chunks/*/positions" and got.shape == (3, 2) and got[2, 0] == 2.0
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_group("chunks/0")
        f["chunks_x"] = 1
    assert scan_positions(tmp_path / "empty.h5") is None
    (tmp_path / "junk.h5").write_bytes(b"junk")
    assert scan_positions(tmp_path / "junk.h5") is None


def test_classify_scan_and_far_field():
    k = classify({}, (3, 64, 64))
    assert (k.kind, k.fresnel_number, k.message, k.n_positions) == ("far-field CXDI", None, None, None)
    pos = np.array([[0.0, 0.0], [2e-6, 1e-6], [4e-6, 0.0]])
    k = classify({}, (3, 64, 64), positions=("f.cxi:/t", pos), where="W")
    assert (k.kind, k.n_positions, k.scan_extent_m) == ("ptychography scan", 3, pytest.approx(4e-6))
    assert k.message.startswith("W is a ptychography scan (3 scan positions in f.cxi:/t, spread over 4e-06 in the file's units): ")
    assert "each frame is treated as an independent snapshot under a fixed probe" in k.message
    assert classify({}, (3, 64, 64), positions=("x", np.zeros((3, 2)))).kind == "far-field CXDI"
    assert classify({}, (3, 64, 64), positions=("x", np.array([[0.0, 1.0]]))).kind == "far-field CXDI"
    # far field: N_F = lambda z / (4 p^2) from the field of view
    k = classify(dict(GEOM), (3, 64, 64))
    lam_z = HC_KEV_M / 8.0 * 5.0
    assert k.kind == "far-field CXDI" and k.message is None
    assert k.fresnel_size_m == pytest.approx(lam_z / (2 * 75e-6), rel=1e-12)
    assert k.fresnel_number == pytest.approx(lam_z / (4 * 75e-6**2), rel=1e-12)
    assert k.fresnel_size_source == "half the far-field field of view lambda z / p (no probe to measure)"
    for key in GEOM:
        assert classify({**GEOM, key: 0}, (64, 64)).fresnel_number is None


def test_classify_near_field_with_and_without_probe():
    near = {"energy_kev": 8.0, "distance_m": 5.0, "detector_pixel_um": 0.5}
    lam_z = HC_KEV_M / 8.0 * 5.0
    k = classify(near, (2, 64, 64), where="W")
    assert k.kind == "near-field" and k.fresnel_number == pytest.approx(lam_z / (4 * 0.5e-6**2))
    assert k.message.startswith(f"W looks like near-field data: Fresnel number N_F = a^2/(lambda z) = {k.fresnel_number:.3g} > 1 with "
                                f"a = {k.fresnel_size_m * 1e6:.3g} um (half the far-field field of view")
    assert "(energy 8 keV, distance 5 m, detector pixel 0.5 um)" in k.message and f"lambda z = {lam_z:.3g} m^2" in k.message
    probe = np.zeros((1, 64, 64), np.complex64)
    probe[0, 16:48, 16:48] = 1.0  # 1024 px footprint
    k = classify(dict(GEOM), (2, 64, 64), probe=probe)
    dx = lam_z / (64 * 75e-6)
    a = 2.0 * np.sqrt(1024 / np.pi) * dx
    assert k.fresnel_size_source == "the probe footprint's diameter"
    assert k.fresnel_size_m == pytest.approx(a, rel=1e-9) and k.fresnel_number == pytest.approx(a * a / lam_z, rel=1e-9)
    assert k.kind == "far-field CXDI"
    # the same probe with a fine detector pixel: near field (N_F = 4 A / pi * lambda z / (N p)^2)
    tiny = {"energy_kev": 8.0, "distance_m": 5.0, "detector_pixel_um": 0.5}
    k = classify(tiny, (2, 64, 64), probe=probe)
    assert k.fresnel_number > 1 and k.kind == "near-field"
    assert k.fresnel_number == pytest.approx(4 * 1024 / np.pi * lam_z / (64 * 0.5e-6) ** 2, rel=1e-9)
    assert "(the probe footprint's diameter)" in k.message


def test_check_kind_records_warns_and_raises(tmp_path):
    movie = Movie(np.ones((2, 64, 64), np.float32), metadata=dict(GEOM))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        k = check_kind(movie)
    assert k.kind == "far-field CXDI" and movie.metadata["experiment"] == "far-field CXDI"
    assert movie.metadata["fresnel_number"] == pytest.approx(k.fresnel_number) and "experiment_note" not in movie.metadata
    assert "scan_positions" not in movie.metadata
    bare = Movie(np.ones((2, 64, 64), np.float32))
    check_kind(bare)
    assert bare.metadata == {"experiment": "far-field CXDI"}
    near = {"energy_kev": 8.0, "distance_m": 5.0, "detector_pixel_um": 0.5}
    m = Movie(np.ones((2, 64, 64), np.float32), metadata=dict(near))
    with pytest.warns(ExperimentKindWarning, match="^the movie looks like near-field data"):
        check_kind(m)
    assert m.metadata["experiment"] == "near-field" and m.metadata["experiment_note"].startswith("the movie looks like")
    probe = np.zeros((1, 64, 64), np.complex64)
    probe[0, 16:48, 16:48] = 1.0
    tiny = {"energy_kev": 8.0, "distance_m": 5.0, "detector_pixel_um": 0.5}
    path = tmp_path / "m.npy"
    np.save(path, np.ones((2, 64, 64), np.float32))
    with pytest.raises(ExperimentKindError, match=r"m\.npy: looks like near-field data: Fresnel number") as info:
        check_kind(Movie(np.ones((2, 64, 64), np.float32), path=path, metadata=dict(tiny)), probe=probe)
    assert info.value.path == str(path) and not info.value.problem.startswith(str(path))
    with pytest.raises(ExperimentKindError, match="^movie: looks like near-field"):
        check_kind(Movie(np.ones((2, 64, 64), np.float32), metadata=dict(tiny), probe=probe))
    np.savez(tmp_path / "scan.npz", data=np.ones((3, 64, 64)), positions=np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]))
    scan = Movie(np.ones((3, 64, 64), np.float32), path=tmp_path / "scan.npz", dataset="data")
    with pytest.warns(ExperimentKindWarning, match=r"scan\.npz is a ptychography scan \(3 scan positions in .*scan\.npz\[positions\]"):
        k = check_kind(scan)
    assert scan.metadata["scan_positions"] == 3 and scan.metadata["experiment"] == "ptychography scan"


def test_spread_and_scan_edges():
    assert _spread(np.array([[5.0, 7.0]])) == (1, 0.0)  # one position: a single point
    assert _spread(np.array([[5.0]])) == (1, 0.0)
    # 5 positions of 4 coordinates: only x, y, z count
    assert _spread(np.array([[0.0, 0.0, 0.0, 100.0], [1.0, 0.0, 0.0, 0.0]] + [[0.0, 0.0, 0.0, 0.0]] * 3)) == (5, 1.0)
    two = classify({}, (3, 64, 64), positions=("x", np.array([[0.0, 0.0], [0.0, 3.0]])), where="W")
    assert (two.kind, two.n_positions, two.scan_extent_m) == ("ptychography scan", 2, 3.0)
    assert two.message == (
        "W is a ptychography scan (2 scan positions in x, spread over 3 in the file's units): napari-cxdi reconstructs "
        "single-shot CXDI movies, so each frame is treated as an independent snapshot under a fixed probe; the overlap "
        "between positions is not used. For a ptychographic reconstruction use PyNX, ptypy, pty-chi or cdtools (their "
        "probe can be read here with --probe).")
    nowhere = classify({}, (3, 64, 64), positions=("x", np.array([[0.0, 0.0], [0.0, 3.0]])))
    assert nowhere.message.startswith(" is a ptychography scan (2 scan positions in x")


def test_fresnel_number_boundaries_and_the_frame_width():
    # N_F = lambda z / (4 p^2) exactly 1 (far field) and exactly 2 (near field)
    one = classify({"energy_kev": 8.0, "distance_m": 0.025809740599517475, "detector_pixel_um": 1.0}, (2, 64, 64))
    assert one.fresnel_number == 1.0 and one.kind == "far-field CXDI"
    two = classify({"energy_kev": 8.0, "distance_m": 0.05161948119903495, "detector_pixel_um": 1.0}, (2, 64, 64), where="W")
    assert two.fresnel_number == 2.0 and two.kind == "near-field"
    assert two.message == (
        f"W looks like near-field data: Fresnel number N_F = a^2/(lambda z) = 2 > 1 with a = {two.fresnel_size_m * 1e6:.3g} um "
        "(half the far-field field of view lambda z / p (no probe to measure)), lambda z = 8e-12 m^2 (energy 8 keV, "
        "distance 0.05162 m, detector pixel 1 um). napari-cxdi reconstructs far-field (Fraunhofer) single-shot CXDI only; "
        "near-field holography/ptychography needs a Fresnel propagator (e.g. cdtools, PyNX). If the file's energy, distance "
        "or pixel size are wrong, correct them.")
    # the object pixel uses the frame width (the last axis) with a probe footprint
    probe = np.zeros((1, 32, 64), np.complex64)
    probe[0, 8:24, 16:48] = 1.0  # 512 px; a faint halo below the 5 % threshold is not part of it
    probe[0, 0, :] = 0.2
    lam_z = HC_KEV_M / 8.0 * 5.0
    k = classify(dict(GEOM), (2, 32, 64), probe=probe)
    dx = lam_z / (64 * 75e-6)
    assert k.fresnel_size_m == pytest.approx(2.0 * np.sqrt(512 / np.pi) * dx, rel=1e-9)


def test_check_kind_passes_the_dataset_and_probe_and_warns_at_the_caller(tmp_path):
    # the movie itself is stored under a position-like key: not a scan
    frame = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)  # one frame: 2-D like a positions table
    np.savez(tmp_path / "p.npz", positions=frame)
    m = Movie(frame[None], path=tmp_path / "p.npz", dataset="positions")
    assert check_kind(m).kind == "far-field CXDI"
    probe = np.zeros((1, 64, 64), np.complex64)
    probe[0, 16:48, 16:48] = 1.0
    tiny = {"energy_kev": 8.0, "distance_m": 5.0, "detector_pixel_um": 0.5}
    with pytest.raises(ExperimentKindError, match=r"\(the probe footprint's diameter\)"):
        check_kind(Movie(np.ones((2, 64, 64), np.float32), metadata=dict(tiny)), probe=probe)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_kind(Movie(np.ones((2, 64, 64), np.float32), metadata=dict(tiny)))
    assert [w.category for w in caught] == [ExperimentKindWarning]
