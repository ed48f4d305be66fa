"""Not fitting the noise: binomial thinning, the R_f noise floor, held-out stopping, the relaxed update,
and the GPU acceptance script's dry run (docs/fidelity.md)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError, DataValidationError
from napari_cxdi.metrics import r_factor
from napari_cxdi.physics.fft import fft2c
from napari_cxdi.physics.forward import diffraction_intensity, exit_waves
from napari_cxdi.physics.mixed_state import modulus_projection
from napari_cxdi.physics.relaxed import relaxed_modulus_projection
from napari_cxdi.physics.thinning import binomial_thinning, expected_poisson_rf, frame_thinning
from napari_cxdi.pid3net import PID3NetConfig, PID3NetTrainer, reconstruct_movie
from napari_cxdi.pid3net.data import ThinnedWindows
from napari_cxdi.recon import IterativeConfig, iter_iterative
from napari_cxdi.simulate import simulate_test_chart

ROOT = Path(__file__).resolve().parents[3]


def test_thinning_gives_two_independent_poisson_halves_with_the_right_means():
    rng = np.random.default_rng(1)
    lam = np.repeat([0.3, 4.0, 40.0], 40_000)
    counts = rng.poisson(lam).astype(np.float32)
    kept, held = binomial_thinning(counts, 0.1, seed=7)
    np.testing.assert_array_equal(kept + held, counts)  # every photon in exactly one part
    for level in (0.3, 4.0, 40.0):
        sel = lam == level
        h, k = held[sel], kept[sel]
        se = np.sqrt(level / sel.sum())
        assert abs(h.mean() - 0.1 * level) < 5 * se and abs(k.mean() - 0.9 * level) < 5 * se
        # Poisson: variance equals the mean (binomial thinning of a Poisson stays Poisson)
        assert h.var() == pytest.approx(h.mean(), rel=0.06) and k.var() == pytest.approx(k.mean(), rel=0.06)
        # independent: no correlation between the halves (a fixed total would give a strongly negative one)
        assert abs(np.corrcoef(h, k)[0, 1]) < 0.02
    again = binomial_thinning(counts, 0.1, seed=7)
    np.testing.assert_array_equal(again[1], held)  # seeded
    assert not np.array_equal(binomial_thinning(counts, 0.1, seed=8)[1], held)


def test_thinning_rejects_bad_input():
    with pytest.raises(ConfigError):
        binomial_thinning(np.ones((2, 2)), 1.0)
    with pytest.raises(DataValidationError):
        binomial_thinning(-np.ones((2, 2)), 0.1)
    with pytest.raises(ConfigError):
        PID3NetConfig(holdout_fraction=1.5).validate()


def test_lazy_movies_get_the_same_split_on_every_read(tmp_path):
    counts = np.random.default_rng(0).poisson(5.0, size=(6, 16, 16)).astype(np.float32)
    path = tmp_path / "movie.dat"
    memmap = np.memmap(path, dtype=np.float32, mode="w+", shape=counts.shape)
    try:
        memmap[:] = counts
        w = ThinnedWindows(memmap, 3, torch.device("cpu"), 0.2, seed=3)
        a, b = w.frames(1, 4), w.frames(1, 4)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a + w.heldout_frames(1, 4), torch.from_numpy(counts[1:4]))
        kept, held = frame_thinning(counts[2], 0.2, 3, 2)
        np.testing.assert_array_equal(w.heldout_frames(2, 3)[0].numpy(), held)
    finally:
        del memmap


def test_noise_floor_of_the_true_intensity_matches_the_truths_r_factor():
    chart = simulate_test_chart(n_frames=6, size=48, seed=2, match_fluence=True)
    true_i = diffraction_intensity(torch.as_tensor(chart.probe), torch.as_tensor(chart.objects))
    truth_rf = r_factor(true_i.numpy(), chart.counts)
    g = torch.Generator().manual_seed(0)
    assert expected_poisson_rf(true_i, draws=4, generator=g) == pytest.approx(truth_rf, rel=0.03)
    # a fit that copies the counts is far below the floor
    assert r_factor(chart.counts, chart.counts) < 0.1 * truth_rf


def test_relaxed_projection_is_classical_at_sigma_0_and_ignores_residuals_within_the_noise():
    chart = simulate_test_chart(n_frames=2, size=32, seed=0)
    p, o = torch.as_tensor(chart.probe), torch.as_tensor(chart.objects)
    psi = fft2c(exit_waves(p, o))
    measured = torch.as_tensor(chart.counts)
    torch.testing.assert_close(relaxed_modulus_projection(psi, measured, 0.0), modulus_projection(psi, measured),
                               rtol=1e-4, atol=1e-4)
    # counts equal to the model's own intensity + a sub-noise perturbation: nothing moves
    own = (psi.abs() ** 2).sum(dim=-3)
    bright = own > 4.0
    nudged = torch.where(bright, (own.sqrt() + 0.3) ** 2, own)
    moved = relaxed_modulus_projection(psi, nudged, 1.0)
    torch.testing.assert_close(moved, psi, rtol=1e-3, atol=1e-3)
    assert not torch.allclose(modulus_projection(psi, nudged), psi, rtol=1e-3, atol=1e-3)


TINY = dict(width=4, refine_width=4, refine_steps=1, frames=3, batch_size=4, device="cpu", preview_every=0, lr=3e-3)


def test_heldout_curve_is_in_the_events_and_the_history():
    chart = simulate_test_chart(n_frames=6, size=32, seed=0)
    trainer = PID3NetTrainer(chart.counts, chart.probe, PID3NetConfig(**TINY, epochs=2))
    events = list(trainer.run())
    steps = [e for e in events if e["event"] == "step"]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert all(np.isfinite(e["heldout_nll"]) and e["heldout_nll"] > 0 for e in steps)
    assert [h["heldout_nll"] for h in trainer.history] == [e["heldout_nll"] for e in epochs]
    assert all("rf_floor" in h for h in trainer.history)
    off = PID3NetTrainer(chart.counts, chart.probe, PID3NetConfig(**TINY, epochs=1, holdout_fraction=0.0))
    list(off.run())
    assert "heldout_nll" not in off.history[0]


def test_early_stopping_halts_before_r_f_drops_under_the_noise_floor():
    # a tiny, very noisy movie (the seed's photons per um^2): without the held-out rule a refining network
    # keeps lowering R_f under the truth's; with it, the kept state stays at or above the truth's R_f
    chart = simulate_test_chart(n_frames=8, size=32, seed=0, match_fluence=True)
    true_i = diffraction_intensity(torch.as_tensor(chart.probe), torch.as_tensor(chart.objects)).numpy()
    floor = r_factor(true_i, chart.counts)
    cfg = PID3NetConfig(**{**TINY, "refine_steps": 2, "lr": 1e-2, "batch_size": 2, "alpha0": 1.0}, epochs=20,
                        tv_weight=0.0, holdout_patience=3, holdout_patience_steps=0, refine_mode="additive",
                        refine_relaxation="none", temporal_padding="zeros")  # the thesis' network (with replicate padding it needs > 60 steps to overfit)

    def final_rf(trainer):
        events = list(trainer.run())
        obj = reconstruct_movie(trainer.model, chart.counts)
        pred = trainer.model.predicted_intensity(torch.as_tensor(obj)).detach().numpy()
        return events[-1], r_factor(pred, chart.counts)

    free_done, free_rf = final_rf(PID3NetTrainer(chart.counts, chart.probe,
                                                 cfg.with_(holdout_fraction=0.0, noise_floor_margin=None)))
    assert free_done["stopped"] == "completed" and free_rf < floor  # it does fit the noise
    done, rf = final_rf(PID3NetTrainer(chart.counts, chart.probe, cfg))
    assert done["stopped"] in ("heldout_rising", "noise_floor") and done["steps"] < free_done["steps"]
    assert rf >= 0.98 * floor
    # patience is also counted in optimiser steps: the same run with a 1000-step patience runs to the end,
    # and still keeps the state with the lowest held-out NLL (never a later, noisier one)
    patient = PID3NetTrainer(chart.counts, chart.probe, cfg.with_(holdout_patience_steps=1000))
    patient_done, _ = final_rf(patient)
    assert patient_done["stopped"] == "completed" and patient_done["steps"] == free_done["steps"]
    nll = [h["heldout_nll"] for h in patient.history]
    kept = [h for h in patient.history if not h["below_noise_floor"]]
    if kept:
        assert patient.best_epoch == min(kept, key=lambda h: h["heldout_nll"])["epoch"]
    assert min(nll) < nll[-1]  # it did rise after the best: the patience, not the curve, kept it going


def test_iterative_baselines_use_the_same_heldout_rule():
    chart = simulate_test_chart(n_frames=4, size=32, seed=0, match_fluence=True)
    events = []
    gen = iter_iterative(chart.counts, chart.probe, "mixed-state", IterativeConfig(max_iter=200, patience=5, tol=0.0,
                                                                                  device="cpu"))
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        objects = stop.value
    batch = [e for e in events if e["event"] == "batch"][0]
    assert batch["stopped"] in ("heldout_rising", "noise_floor") and batch["iterations"] < 200
    assert "heldout_nll" in [e for e in events if e["event"] == "progress"][0]
    assert objects.shape == chart.objects.shape and np.isfinite(objects).all()


def test_gpu_acceptance_dry_run(tmp_path, capsys):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("gpu_acceptance", ROOT / "benchmarks" / "gpu_acceptance.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "gpu.json"
    threads = torch.get_num_threads()
    try:
        assert script.main(["--dry-run", "--out", str(out)]) == 0  # in-process: no second torch import
    finally:
        torch.set_num_threads(threads)
    record = json.loads(out.read_text())["metrics"]
    assert record["dry_run"] and record["oom"]["halved"] and record["oom"]["final_batch"] == record["oom"]["start_batch"] // 2
    assert set(record["quality"]["methods"]) == {"PID3Net-PO", "PID3Net-NR", "mixed-state", "mf-PIE"}
    assert record["inference"]["frames_per_s"] > 0 and record["mixed_state"]["s_per_frame_300_iterations"] > 0
    chart = record["chart"]
    assert set(chart["methods"]) == {"PID3Net-PO", "PID3Net-NR"} and chart["velocity_set_nm_s"] == 340.0
    assert all(np.isfinite(m["velocity_nm_s"]) for m in chart["methods"].values())
    printed = capsys.readouterr().out
    assert "OOM -> half batch" in printed and "chart velocity PO nm/s" in printed


def test_gated_refinement_with_unit_gain_is_the_relaxed_classical_step():
    from napari_cxdi.physics.relaxed import relaxed_mixed_state_update
    from napari_cxdi.pid3net import PID3Net

    chart = simulate_test_chart(n_frames=3, size=32, seed=0)
    cfg = PID3NetConfig(**{**TINY, "alpha0": 0.7, "amp": False})
    assert (cfg.refine_mode, cfg.refine_relaxation) == ("gated", "poisson")  # the defaults
    assert cfg.relaxation_sigma == 2.0  # residuals within 2 noise std are left alone (docs/fidelity.md)
    model = PID3Net(cfg, chart.probe)
    assert not hasattr(model, "f_phase")

    class Zero(torch.nn.Module):
        def forward(self, x):
            return torch.zeros_like(x)  # gain 2 sigmoid(0) = 1

    model.f_amplitude = Zero()
    counts = torch.as_tensor(chart.counts[None])
    obj = model.apply_support(torch.ones(1, 3, 32, 32, dtype=torch.complex64) * np.exp(0.3j))
    expected = model.apply_support(obj + 0.7 * relaxed_mixed_state_update(obj, model.probe, counts, cfg.relaxation_sigma, normalisation="sum_max"))
    torch.testing.assert_close(model.refine(obj, counts), expected, rtol=1e-4, atol=1e-4)
    bounded = PID3Net(cfg.with_(alpha0=0.1, alpha_max=0.3), chart.probe)
    assert float(bounded.step_sizes()[0]) == pytest.approx(0.1, rel=1e-5)
    with pytest.raises(ConfigError):
        cfg.with_(alpha_max=0.5, alpha0=0.7).validate()


def test_cli_progress_shows_the_heldout_curve(capsys):
    from napari_cxdi.cli.progress import ProgressPrinter

    bar = ProgressPrinter(quiet=False)
    bar({"stage": "train", "event": "start", "total_steps": 4, "variant": "PID3Net-PO", "device": "cpu"})
    bar({"stage": "train", "event": "step", "epoch": 0, "step": 1, "total_steps": 4, "loss": 1.0, "rf": 0.8,
         "heldout_nll": 0.0723})
    bar({"stage": "train", "event": "epoch", "epoch": 0, "loss": 1.0, "rf": 0.8, "rf_floor": 0.7, "heldout_nll": 0.0719,
         "best_epoch": 0})
    bar({"stage": "iterative", "event": "progress", "frames_done": 0, "total_frames": 2, "iteration": 1, "rf": 0.6,
         "heldout_nll": 0.081})
    bar.close()
    err = capsys.readouterr().err
    assert "heldout=0.0723" in err and "heldout=0.0719" in err and "floor=0.700" in err and "heldout=0.081" in err


def test_checkpoints_written_before_the_gated_block_still_load(tmp_path):
    from napari_cxdi.pid3net import PID3Net, load_checkpoint, save_checkpoint

    chart = simulate_test_chart(n_frames=3, size=32, seed=0)
    old = PID3Net(PID3NetConfig(**TINY, refine_mode="additive", refine_relaxation="none"), chart.probe)
    path = save_checkpoint(tmp_path / "old.pt", old)
    payload = torch.load(path, weights_only=False)
    for key in ("refine_mode", "refine_relaxation", "alpha_max", "relaxation_sigma", "holdout_fraction"):
        payload["config"].pop(key)  # as an older version wrote it
    torch.save(payload, path)
    model, _ = load_checkpoint(path, device="cpu")
    assert model.config.refine_mode == "additive" and hasattr(model, "f_phase")
    assert PID3NetConfig.from_dict(PID3NetConfig().to_dict()).refine_mode == "gated"
