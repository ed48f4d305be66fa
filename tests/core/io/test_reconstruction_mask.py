"""The reconstruction file carries its mask (CXI detector_1/mask) and ``evaluate`` scores with it."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import napari_cxdi as cx
from napari_cxdi.cli import main
from napari_cxdi.io.mask import mask_from_cxi
from napari_cxdi.simulate import simulate_aunp
from napari_cxdi.simulate.detector import DetectorLayout, place_on_detector, write_eiger_master

GEOMETRY = dict(energy_kev=8.0, distance_m=5.0, pixel_um=75.0)


@pytest.fixture(scope="module")
def sim():
    return simulate_aunp(n_frames=3, size=64, seed=5)


def test_mask_round_trips_and_evaluate_matches_the_run(tmp_path, sim):
    layout = DetectorLayout()
    master = write_eiger_master(tmp_path, place_on_detector(sim.counts, layout), layout, **GEOMETRY)
    probe = tmp_path / "probe.npy"
    np.save(probe, sim.probe)
    # a user mask the detector file does not know: only the stored mask can tell evaluate about it
    extra = np.zeros(layout.shape, bool)
    extra[60:66, 50:58] = True
    result = cx.reconstruct(master, probe, method="mixed-state", max_iter=8, tol=0.0, mask=extra)
    assert result.mask is not None and result.mask.shape == (64, 64)
    window = result.metadata["crop"]
    assert result.mask[60 - window["y0"]:66 - window["y0"], 50 - window["x0"]:58 - window["x0"]].all()
    gaps = layout.pixel_mask() != 0
    n_file = int(gaps[window["y0"]:window["y0"] + 64, window["x0"]:window["x0"] + 64].sum())
    assert result.mask.sum() > n_file > 0  # the gaps and the extra pixels

    out = tmp_path / "recon.cxi"
    result.save(out, metadata=result.metadata)
    with h5py.File(out, "r") as f:
        stored = mask_from_cxi(f["entry_1/instrument_1/detector_1/mask"][()])
    np.testing.assert_array_equal(stored, result.mask)

    report = tmp_path / "metrics.json"
    assert main(["evaluate", str(out), str(master), "--probe", str(probe), "--json", str(report)]) == 0
    metrics = json.loads(report.read_text())
    assert metrics["rf"] == pytest.approx(result.metrics["rf"], rel=1e-5, abs=1e-7)

    # without the stored mask (an older file), the extra pixels count and R_f differs
    with h5py.File(out, "a") as f:
        del f["entry_1/instrument_1/detector_1/mask"]
    assert main(["evaluate", str(out), str(master), "--probe", str(probe), "--json", str(report)]) == 0
    assert json.loads(report.read_text())["rf"] != pytest.approx(result.metrics["rf"], rel=1e-5, abs=1e-7)


def test_save_skips_a_mask_of_other_frames(tmp_path, sim):
    r = cx.api.Reconstruction(objects=np.ones((2, 16, 16), np.complex64), method="mixed-state",
                              mask=np.ones((8, 8), bool))
    r.save(tmp_path / "r.cxi")
    with h5py.File(tmp_path / "r.cxi", "r") as f:
        assert "entry_1/instrument_1/detector_1/mask" not in f
    r.mask = np.zeros((16, 16), bool)
    r.mask[3, 4] = True
    r.save(tmp_path / "r2.cxi")
    with h5py.File(tmp_path / "r2.cxi", "r") as f:
        assert mask_from_cxi(f["entry_1/instrument_1/detector_1/mask"][()]).sum() == 1
