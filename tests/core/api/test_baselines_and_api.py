"""Iterative baselines, the public API and the train/reconstruct/evaluate CLI."""

import json

import numpy as np
import pytest
import torch

import napari_cxdi as cx
from napari_cxdi.cli import main
from napari_cxdi.errors import ConfigError
from napari_cxdi.metrics import r_factor
from napari_cxdi.physics.forward import diffraction_intensity
from napari_cxdi.recon import IterativeConfig, iter_iterative, run_iterative
from napari_cxdi.simulate import simulate_test_chart


@pytest.fixture(scope="module")
def chart():
    return simulate_test_chart(n_frames=6, size=32, seed=0)


def rf_of(objects, movie):
    predicted = diffraction_intensity(torch.as_tensor(movie.probe), torch.as_tensor(objects)).numpy()
    return r_factor(predicted, movie.counts)


@pytest.mark.parametrize("method", ["mixed-state", "mf-PIE"])
def test_iterative_baselines_reduce_r_factor(method):
    chart = simulate_test_chart(n_frames=6, size=64, seed=0)
    start = rf_of(np.ones_like(chart.objects), chart)
    events = []
    gen = iter_iterative(chart.counts, chart.probe, method, IterativeConfig(max_iter=40, batch_size=4, device="cpu"))
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            objects = stop.value
            break
    assert objects.shape == (6, 64, 64)
    floor = rf_of(chart.objects, chart)  # the true object's R_f: the Poisson noise floor
    assert rf_of(objects, chart) < start - 0.8 * (start - floor)
    assert events[-1]["frames_done"] == 6


def test_mf_pie_couples_neighbouring_frames(chart):
    cfg = IterativeConfig(max_iter=20, batch_size=6, device="cpu", tv_weight=0.0)
    plain = run_iterative(chart.counts, chart.probe, "mixed-state", cfg)
    coupled = run_iterative(chart.counts, chart.probe, "mf-PIE", cfg)
    jump = lambda o: np.abs(np.diff(o, axis=0)).mean()  # noqa: E731
    assert jump(coupled) < jump(plain)  # the virtual-overlap constraint smooths in time


def test_api_reconstruct_evaluate_and_save(chart, tmp_path):
    result = cx.reconstruct(chart, method="PID3Net-NR", truth=chart, epochs=2, width=4, frames=3, device="cpu")
    assert result.method == "PID3Net-NR" and result.objects.shape == (6, 32, 32)
    assert {"rf", "prtf_resolution_nm", "phase_ssim_frames", "frc_resolution_nm", "velocity_nm_s"} <= set(result.metrics)
    # the 32-px chart's probe footprint holds no chart feature: phase SSIM is undefined there, not 1
    assert result.metrics["phase_ssim_frames"] == 0 and "phase_ssim" not in result.metrics
    assert "no frame" in result.metrics["phase_ssim_note"]
    assert result.timings["training_s"] > 0 and result.history
    path = result.save(tmp_path / "r.cxi")
    from napari_cxdi.io import read_hdf5_reconstruction

    assert read_hdf5_reconstruction(path).shape == (6, 32, 32)
    import h5py

    with h5py.File(path) as f:
        assert f["entry_1/result_1/rf"][()] == pytest.approx(result.metrics["rf"])
        assert "PID3Net-NR" in f["entry_1/image_1/process_1/configuration"][()].decode()
    yy, xx = np.mgrid[:32, :32] - 16
    marked = chart.objects * np.exp(0.5j * np.exp(-(yy**2 + xx**2) / 8.0)).astype(np.complex64)  # structure under the probe
    metrics = cx.evaluate(marked, chart.counts, chart.probe, chart.pixel_size_nm, truth=marked)
    assert metrics["phase_ssim"] == pytest.approx(1.0, abs=1e-6) and metrics["phase_ssim_frames"] == 6
    metrics = cx.evaluate(chart.objects, chart.counts, chart.probe, chart.pixel_size_nm, truth=chart.objects)
    assert metrics["rf"] == pytest.approx(r_factor(chart.expected, chart.counts), rel=1e-4)
    with pytest.raises(ConfigError, match="unknown method"):
        cx.reconstruct(chart, method="magic")
    with pytest.raises(ConfigError, match="probe"):
        cx.reconstruct(chart.counts, probe=None)


def test_cli_train_reconstruct_evaluate(tmp_path, capsys):
    movie = tmp_path / "chart.cxi"
    assert main(["simulate", "chart", "-o", str(movie), "--frames", "6", "--size", "32"]) == 0
    ckpt = tmp_path / "m.pt"
    common = ["--epochs", "1", "--width", "4", "--frames", "3", "--refine-steps", "1", "--device", "cpu", "--quiet"]
    assert main(["train", str(movie), "-o", str(ckpt), *common]) == 0
    assert main(["reconstruct", str(movie), "--model", str(ckpt), "--quiet"]) == 0
    out = tmp_path / "chart_pid3net_po.cxi"
    assert out.exists()
    assert main(["reconstruct", str(movie), "--method", "mixed-state", "--max-iter", "10", "--quiet"]) == 0
    assert main(["evaluate", str(tmp_path / "chart_mixed-state.cxi"), str(movie), "--truth", str(movie),
                 "--json", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    # the 32-px chart has no feature under the probe: phase SSIM is undefined, the scored frame count says so
    assert 0 < metrics["rf"] < 1 and metrics["phase_ssim_frames"] == 0 and "phase_ssim_note" in metrics
    capsys.readouterr()
    assert main(["reconstruct", str(movie), "--method", "mixed-state", "-o", str(movie)]) == 2
    assert "input" in capsys.readouterr().err
