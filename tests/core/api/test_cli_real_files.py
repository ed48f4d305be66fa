"""CLI on files from elsewhere: NPZ keys with --dataset, probes from other codes, scans and near-field data."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from napari_cxdi.cli import main
from napari_cxdi.io import ExperimentKindError, ExperimentKindWarning, open_movie, write_cxi
from napari_cxdi.simulate import simulate_aunp


@pytest.fixture(scope="module")
def sim():
    return simulate_aunp(n_frames=3, size=32, seed=2)


def test_npz_dataset_in_info_and_reconstruct(tmp_path, capsys, sim):
    # an APS-like NPZ: no known movie key, positions of a scan beside the patterns
    np.savez(tmp_path / "aps.npz", patterns_raw=sim.counts, position=np.c_[np.arange(3.0), np.zeros(3)], dark=np.zeros((32, 32)))
    np.save(tmp_path / "probe.npy", sim.probe)
    assert main(["info", str(tmp_path / "aps.npz")]) == 2
    err = capsys.readouterr().err
    assert "cannot tell which array is the movie" in err and "--dataset" in err and "patterns_raw (3, 32, 32)" in err
    assert main(["info", str(tmp_path / "aps.npz"), "--dataset", "patterns_raw", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == [3, 32, 32] and info["dataset"] == "patterns_raw"
    assert info["experiment"] == "ptychography scan" and "overlap between positions is not used" in info["note"]
    assert main(["info", str(tmp_path / "aps.npz"), "--dataset", "nope"]) == 2
    assert "no array 'nope'" in capsys.readouterr().err
    out = tmp_path / "r.cxi"
    assert main(["reconstruct", str(tmp_path / "aps.npz"), "--dataset", "patterns_raw", "--probe", str(tmp_path / "probe.npy"),
                 "--method", "mixed-state", "--max-iter", "3", "--device", "cpu", "--quiet", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "note:" in printed and "ptychography scan" in printed and out.exists()


def test_probe_errors_name_the_cli_option(tmp_path, capsys, sim):
    movie = tmp_path / "m.npy"
    np.save(movie, sim.counts)
    args = ["reconstruct", str(movie), "--method", "mixed-state", "--max-iter", "2", "--device", "cpu", "--quiet"]
    assert main(args) == 2
    assert "give one with --probe FILE" in capsys.readouterr().err
    with h5py.File(tmp_path / "junk.h5", "w") as f:
        f["weights"] = np.ones((4, 4))
    assert main(args + ["--probe", str(tmp_path / "junk.h5")]) == 2
    err = capsys.readouterr().err
    assert f"--probe {tmp_path / 'junk.h5'}" in err and "no probe layout recognised" in err and "/weights" in err
    with h5py.File(tmp_path / "ptychi.h5", "w") as f:  # a pty-chi probe, smaller than the frames
        f["probe"] = np.stack([sim.probe[:, 4:28, 4:28], 0.1 * sim.probe[:, 4:28, 4:28]])
    assert main(args + ["--probe", str(tmp_path / "ptychi.h5"), "-o", str(tmp_path / "o.cxi")]) == 0
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    # the frames are cropped to the probe's 24 x 24 window around the beam centre (issue 13: m = probe size)
    assert "first OPR mode" in printed and "24x24 window" in printed


def test_evaluate_runs_give_the_prtf(tmp_path, capsys, sim):
    movie = write_cxi(tmp_path / "m.cxi", counts=sim.counts, probe=sim.probe, metadata=sim.metadata)
    outs = []
    for k in range(3):
        out = tmp_path / f"r{k}.cxi"
        assert main(["reconstruct", str(movie), "--method", "mixed-state", "--max-iter", "5", "--device", "cpu",
                     "--quiet", "-o", str(out)] + (["--prtf-runs", "2"] if k == 0 else [])) == 0
        outs.append(out)
    printed = capsys.readouterr().out
    assert "prtf_resolution_nm" in printed and "fourier_fit_resolution_nm" in printed
    assert main(["evaluate", str(outs[0]), str(movie)]) == 0
    assert "give them with --runs" in capsys.readouterr().out
    assert main(["evaluate", str(outs[0]), str(movie), "--runs", str(outs[1]), str(outs[2]), "--json", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["prtf_runs"] == 3 and metrics["prtf_resolution_nm"] > 0
    assert main(["reconstruct", str(movie), "--method", "PID3Net-NR", "--prtf-runs", "3", "--quiet"]) == 2
    assert "--prtf-runs" in capsys.readouterr().err


def test_near_field_and_scan_files_are_told(tmp_path, capsys, sim):
    # PETRA-like near field: 13.8 keV, 0.3 m, 0.65 um effective pixels -> N_F = lambda z / (4 p^2) ~ 16
    near = write_cxi(tmp_path / "near.cxi", counts=sim.counts, metadata={"energy_kev": 13.8, "distance_m": 0.3, "detector_pixel_um": 0.65})
    with pytest.warns(ExperimentKindWarning, match="near-field"):
        movie = open_movie(near)
    assert movie.metadata["experiment"] == "near-field" and movie.metadata["fresnel_number"] == pytest.approx(15.9, rel=0.02)
    with_probe = write_cxi(tmp_path / "near_probe.cxi", counts=sim.counts, probe=sim.probe,
                           metadata={"energy_kev": 13.8, "distance_m": 0.3, "detector_pixel_um": 0.65})
    with pytest.raises(ExperimentKindError, match=r"Fresnel number N_F = .* > 1"):
        open_movie(with_probe)
    assert main(["reconstruct", str(with_probe), "--method", "mixed-state", "--quiet"]) == 2
    assert "near-field" in capsys.readouterr().err
    # our own far-field files stay far field
    far = write_cxi(tmp_path / "far.cxi", counts=sim.counts, probe=sim.probe, metadata=sim.metadata)
    assert open_movie(far).metadata["experiment"] == "far-field CXDI"
    # a CXI ptychography scan (PyNX stores translations as (3, N)) is a warning, not an error
    with h5py.File(far, "a") as f:
        del f["entry_1/sample_1/geometry_1/translation"]
        f["entry_1/sample_1/geometry_1/translation"] = np.array([[0, 1e-6, 2e-6], [0, 0, 1e-6], [0, 0, 0]])
    with pytest.warns(ExperimentKindWarning, match="ptychography scan"):
        assert open_movie(far).metadata["scan_positions"] == 3
