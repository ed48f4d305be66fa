"""PID3Net training policies by value (issue 20, mutation testing of pid3net/train.py): the out-of-memory
retry (which batch, which warnings, gradients cleared, memory freed, when it gives up), keeping the best
epoch and the noise-floor rule, on a 16x16 toy movie and a few steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cxdi.pid3net import train
from napari_cxdi.errors import ConfigError, TrainingDivergedError
from napari_cxdi.pid3net.config import PID3NetConfig
from napari_cxdi.pid3net.train import PID3NetTrainer

torch.set_num_threads(1)

TINY = dict(width=2, refine_width=2, refine_steps=1, frames=2, batch_size=4, device="cpu", epochs=1, preview_every=0,
            holdout_fraction=0.0, noise_floor_margin=None, lr=1e-3)


def _toy(n=5, size=16, seed=0):
    yy, xx = np.mgrid[:size, :size] - size / 2
    probe = (np.exp(-(yy**2 + xx**2) / 10.0) * 4).astype(np.complex64)[None]
    rng = np.random.default_rng(seed)
    counts = rng.poisson(20 * np.exp(-(yy**2 + xx**2) / 8.0), size=(n, size, size)).astype(np.float32)
    return counts, probe


def _flaky(trainer, failures, error=None):
    """Replace trainer._optimise: the first ``failures`` calls leave gradients behind and raise ``error``."""
    real = trainer._optimise
    calls = []

    def optimise(counts, heldout=None):
        grads_cleared = all(p.grad is None for p in trainer.model.parameters())
        calls.append({"counts": counts.clone(), "heldout": None if heldout is None else heldout.clone(),
                      "grads_cleared": grads_cleared})
        if len(calls) <= failures:
            trainer.model.predicted_intensity(trainer.model(counts)).sum().backward()  # gradients left behind
            raise error or RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(counts, heldout)

    trainer._optimise = optimise
    return calls


def test_out_of_memory_halves_the_batch_until_it_fits(monkeypatch):
    counts, probe = _toy()
    t = PID3NetTrainer(counts, probe, PID3NetConfig(**{**TINY, "holdout_fraction": 0.2}))
    t.device = torch.device("cuda")  # only the out-of-memory policy looks at it; everything runs on the CPU
    freed = []
    monkeypatch.setattr(train, "free_device_memory", lambda device: freed.append(str(device)))
    calls = _flaky(t, failures=2)
    starts = np.array([3, 1, 0, 2])
    values, warnings = t._train_step(starts)
    assert [m["message"] for m in warnings] == ["GPU out of memory: batch size halved to 2",
                                                "GPU out of memory: batch size halved to 1"]
    assert all(w["event"] == "warning" for w in warnings)
    assert t.batch_size == 1 and freed == ["cuda", "cuda"]
    # each try takes the first batch_size starts of the same order, with their held-out part
    for call, n in zip(calls, (4, 2, 1)):
        torch.testing.assert_close(call["counts"], t.windows.batch(starts[:n]))
        torch.testing.assert_close(call["heldout"], t.windows.heldout_batch(starts[:n]))
    # the gradients of a failed try are dropped before the next one
    assert [c["grads_cleared"] for c in calls] == [True, True, True]
    assert set(values) == {"loss", "diffraction_loss", "tv", "rf", "rf_floor", "heldout_nll"}


def test_out_of_memory_gives_up_at_batch_one_on_the_cpu_and_on_other_errors(monkeypatch):
    counts, probe = _toy()
    monkeypatch.setattr(train, "free_device_memory", lambda device: None)
    one = PID3NetTrainer(counts, probe, PID3NetConfig(**{**TINY, "batch_size": 1}))
    one.device = torch.device("cuda")
    calls = _flaky(one, failures=1)
    with pytest.raises(RuntimeError, match="^CUDA out of memory"):
        one._train_step(np.array([0, 1]))
    assert len(calls) == 1 and one.batch_size == 1
    cpu = PID3NetTrainer(counts, probe, PID3NetConfig(**TINY))
    calls = _flaky(cpu, failures=1)
    with pytest.raises(RuntimeError, match="^CUDA out of memory"):
        cpu._train_step(np.array([0, 1, 2, 3]))
    assert len(calls) == 1 and cpu.batch_size == 4
    other = PID3NetTrainer(counts, probe, PID3NetConfig(**TINY))
    other.device = torch.device("cuda")
    calls = _flaky(other, failures=1, error=ValueError("not a memory problem"))
    with pytest.raises(ValueError, match="^not a memory problem$"):
        other._train_step(np.array([0, 1, 2, 3]))
    assert len(calls) == 1 and other.batch_size == 4
    # without a held-out split no held-out batch is passed
    plain = PID3NetTrainer(counts, probe, PID3NetConfig(**TINY))
    calls = _flaky(plain, failures=0)
    values, warnings = plain._train_step(np.array([2, 0]))
    assert warnings == [] and calls[0]["heldout"] is None and "heldout_nll" not in values
    torch.testing.assert_close(calls[0]["counts"], plain.windows.batch([2, 0]))


def test_run_reports_the_halved_batch_and_goes_on(monkeypatch):
    counts, probe = _toy()
    monkeypatch.setattr(train, "free_device_memory", lambda device: None)
    t = PID3NetTrainer(counts, probe, PID3NetConfig(**{**TINY, "epochs": 2}))
    t.device = torch.device("cuda")
    _flaky(t, failures=1)
    events = list(t.run())
    kinds = [e["event"] for e in events]
    # 4 windows, batch 4: one step in the first epoch (it trains 2 windows after the halving), then 2 per epoch
    assert kinds == ["start", "warning", "step", "epoch", "step", "step", "epoch", "done"]
    assert events[0]["total_steps"] == 2 and events[1]["message"] == "GPU out of memory: batch size halved to 2"
    steps = [e for e in events if e["event"] == "step"]
    assert [s["batch_size"] for s in steps] == [2, 2, 2] and [s["total_steps"] for s in steps] == [4, 4, 4]
    assert [s["step"] for s in steps] == [1, 2, 3] and events[-1]["stopped"] == "completed"


def test_epoch_averages_schedule_and_timing_by_value():
    import time

    counts, probe = _toy(n=6)
    cfg = PID3NetConfig(**{**TINY, "batch_size": 2, "epochs": 2, "holdout_fraction": 0.2, "lr": 1e-2,
                           "lr_final_factor": 0.2})
    t = PID3NetTrainer(counts, probe, cfg)
    t0 = time.perf_counter()
    events = list(t.run())
    wall = time.perf_counter() - t0
    # 6 frames, T = 2: 5 windows, batch 2 -> 3 steps per epoch, the last one of a single window
    steps = [e for e in events if e["event"] == "step"]
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5, 6] and [s["epoch"] for s in steps] == [0, 0, 0, 1, 1, 1]
    epochs = [e for e in events if e["event"] == "epoch"]
    for e, part in zip(epochs, (steps[:3], steps[3:])):
        assert e["heldout_nll"] == pytest.approx(np.mean([s["heldout_nll"] for s in part]), rel=1e-12)
        assert e["loss"] == pytest.approx(np.mean([s["loss"] for s in part]), rel=1e-12)
    # the optimiser runs at the scheduled rate: the last step's is lr x lr_final_factor
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(2e-3) == t.learning_rate(5)
    # elapsed time since the start, and the remaining time extrapolated from the mean step time
    assert all(0 <= s["elapsed_s"] <= wall for s in steps)
    assert [s["elapsed_s"] for s in steps] == sorted(s["elapsed_s"] for s in steps)
    for s in steps:
        assert s["eta_s"] == pytest.approx(s["elapsed_s"] / s["step"] * (6 - s["step"]), rel=1e-12)


def _scripted(trainer, rows):
    """Replace the optimiser step: step k reports rows[k] (rf, rf_floor, heldout_nll, loss) and marks the weights
    with k, so the weights kept tell which epoch was kept."""
    it = iter(enumerate(rows))
    first = next(iter(trainer.model.parameters()))

    def step(starts):
        k, (rf, floor, heldout, loss) = next(it)
        with torch.no_grad():
            first.fill_(float(k))
        return {"loss": loss, "diffraction_loss": loss, "tv": 0.0, "rf": rf, "rf_floor": floor, "heldout_nll": heldout}, []

    trainer._train_step = step
    return first


def test_keeping_the_best_epoch_and_the_noise_floor_rule():
    import time

    counts, probe = _toy()
    # 4 windows, batch 4: one step per epoch, so an epoch's record is its step's values
    cfg = PID3NetConfig(**{**TINY, "epochs": 9, "holdout_fraction": 0.2, "holdout_patience": 100,
                           "holdout_patience_steps": 0, "noise_floor_margin": 0.25})
    t = PID3NetTrainer(counts, probe, cfg)
    rows = [  # rf, rf_floor, held-out NLL, loss; below the floor: rf < 0.75 rf_floor
        (0.2, 0.5, 10.0, 10.0),    # 0 below (ratio 0.4): kept, nothing better yet
        (0.3, 1.0, 10.0, 10.0),    # 1 below, ratio 0.3: further from the floor: not kept
        (0.3, 0.5, 10.0, 10.0),    # 2 below, ratio 0.6: closer: kept
        (0.3, 0.5, 10.0, 10.0),    # 3 the same ratio: not kept
        (0.375, 0.5, 8.0, 3.0),    # 4 exactly on the bound: not below: kept over any below-floor epoch
        (0.45, 0.5, 9.0, 1.0),     # 5 worse held-out NLL (better loss): not kept
        (0.45, 0.5, 8.0, 1.0),     # 6 an equal held-out NLL: not kept
        (0.2, 0.5, 1.0, 1.0),      # 7 below the floor: never kept once an epoch above it was
        (0.45, 0.5, 7.0, 2.0),     # 8 better: kept
    ]
    first = _scripted(t, rows)
    t0 = time.perf_counter()
    events = list(t.run())
    wall = time.perf_counter() - t0
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["best_epoch"] for e in epochs] == [0, 0, 2, 2, 4, 4, 4, 4, 8]
    assert [e["below_noise_floor"] for e in epochs] == [True, True, True, True, False, False, False, True, False]
    assert [h["epoch"] for h in t.history] == list(range(9))
    for h, (rf, floor, heldout, loss) in zip(t.history, rows):
        assert (h["rf"], h["rf_floor"], h["heldout_nll"], h["loss"]) == (rf, floor, heldout, loss)
    assert all(0 <= h["elapsed_s"] <= wall for h in t.history)
    assert [h["elapsed_s"] for h in t.history] == sorted(h["elapsed_s"] for h in t.history)
    assert (t.best_epoch, t.best_heldout, t.best_loss, t.best_score, t.best_below_floor) == (8, 7.0, 2.0, 7.0, False)
    assert t.best_floor_ratio == pytest.approx(0.6)
    assert events[-1]["best_below_noise_floor"] is False and events[-1]["best_epoch"] == 8
    assert events[-1]["history"] is t.history and t.history[-1]["elapsed_s"] <= events[-1]["elapsed_s"] <= wall
    assert float(first.detach().flatten()[0]) == 8.0  # the kept epoch's weights are the model's


def test_below_the_floor_only_keeps_the_closest_epoch():
    counts, probe = _toy()
    cfg = PID3NetConfig(**{**TINY, "epochs": 3, "holdout_fraction": 0.2, "noise_floor_margin": 0.25})
    t = PID3NetTrainer(counts, probe, cfg)
    first = _scripted(t, [(0.1, 0.5, 5.0, 5.0), (0.3, 0.5, 9.0, 9.0), (0.2, 0.5, 1.0, 1.0)])
    events = list(t.run())
    assert [e["best_epoch"] for e in events if e["event"] == "epoch"] == [0, 1, 1]
    assert (t.best_epoch, t.best_heldout, t.best_loss, t.best_score, t.best_below_floor) == (1, 9.0, 9.0, float("inf"), True)
    assert events[-1]["best_below_noise_floor"] is True and float(first.detach().flatten()[0]) == 1.0
    # no noise-floor rule: the lowest held-out NLL
    t = PID3NetTrainer(counts, probe, cfg.with_(noise_floor_margin=None))
    _scripted(t, [(0.1, 0.5, 5.0, 5.0), (0.3, 0.5, 9.0, 9.0), (0.2, 0.5, 1.0, 1.0)])
    events = list(t.run())
    assert [e["best_epoch"] for e in events if e["event"] == "epoch"] == [0, 0, 2]
    assert not any(h["below_noise_floor"] for h in t.history)


def test_held_out_stopping_counts_epochs_and_steps():
    counts, probe = _toy()
    cfg = PID3NetConfig(**{**TINY, "epochs": 6, "holdout_fraction": 0.2, "holdout_patience": 1, "holdout_patience_steps": 0})
    # an equal held-out NLL is no improvement (tol 0): stop after the second epoch
    t = PID3NetTrainer(counts, probe, cfg)
    _scripted(t, [(0.5, 0.5, 10.0, 1.0)] * 6)
    assert (list(t.run())[-1]["stopped"], len(t.history)) == ("heldout_rising", 2)
    # ... and at least 2 steps without improvement (one step per epoch): stop after the third
    t = PID3NetTrainer(counts, probe, cfg.with_(holdout_patience_steps=2))
    _scripted(t, [(0.5, 0.5, 10.0 + k, 1.0) for k in range(6)])
    assert (list(t.run())[-1]["stopped"], len(t.history)) == ("heldout_rising", 3)
    # an improvement starts the count again
    t = PID3NetTrainer(counts, probe, cfg.with_(holdout_patience_steps=2))
    _scripted(t, [(0.5, 0.5, h, 1.0) for h in (10.0, 11.0, 9.0, 12.0, 13.0, 14.0)])
    assert (list(t.run())[-1]["stopped"], len(t.history)) == ("heldout_rising", 5)


def test_without_held_out_data_the_loss_decides_and_early_stop_needs_a_real_improvement():
    counts, probe = _toy()
    cfg = PID3NetConfig(**{**TINY, "epochs": 6, "early_stop_patience": 1, "early_stop_tol": 0.0})
    t = PID3NetTrainer(counts, probe, cfg)
    first = _scripted(t, [(0.5, 0.5, 0.0, 3.0), (0.4, 0.5, 0.0, 2.0), (0.4, 0.5, 0.0, 1.0), (0.1, 0.5, 0.0, 0.5)])
    events = list(t.run())
    # epoch 2's R_f only equals the best: no improvement, stop (patience 1); the loss picks epoch 2
    assert (events[-1]["stopped"], len(t.history)) == ("early_stop", 3)
    assert [e["best_epoch"] for e in events if e["event"] == "epoch"] == [0, 1, 2]
    assert (t.best_epoch, t.best_loss, t.best_score, t.best_heldout) == (2, 1.0, 1.0, float("inf"))
    assert "heldout_nll" not in t.history[0] and float(first.detach().flatten()[0]) == 2.0


def test_a_new_trainer_state_defaults_and_config_checks():
    counts, probe = _toy()
    t = PID3NetTrainer(counts, probe)  # no config: the defaults
    assert t.config == PID3NetConfig() and t.preview_frame == 0
    assert (t.best_loss, t.best_heldout, t.best_score, t.best_epoch, t.best_state, t.best_below_floor, t.best_floor_ratio,
            t.lowest_heldout, t.stopped_reason, t.step, t.history) == (
        float("inf"), float("inf"), float("inf"), None, None, False, 0.0, float("inf"), None, 0, [])
    with pytest.raises(ConfigError, match=r"^PID3Net needs square frames, got 16x12; crop the movie first$"):
        PID3NetTrainer(counts[:, :, :12], probe[:, :, :12], PID3NetConfig(**TINY))
    with pytest.raises(ConfigError, match=r"^T = 3 frames per window is more than the movie's 2 frames$"):
        PID3NetTrainer(counts[:2], probe, PID3NetConfig(**{**TINY, "frames": 3}))
    # two steps in all: the second one is already at the final rate
    two = PID3NetTrainer(counts[:3], probe, PID3NetConfig(**{**TINY, "batch_size": 1, "lr": 1e-2, "lr_final_factor": 0.5}))
    assert two.total_steps == 2 and two.learning_rate(1) == pytest.approx(5e-3) and two.learning_rate(0) == pytest.approx(1e-2)


def test_everything_random_follows_the_seed():
    counts, probe = _toy(n=10)
    cfg = PID3NetConfig(**{**TINY, "seed": 7, "holdout_fraction": 0.2})
    a, b = PID3NetTrainer(counts, probe, cfg), PID3NetTrainer(counts, probe, cfg)
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name
    assert list(a._rng.permutation(9)) == list(b._rng.permutation(9))
    assert list(a._rng.permutation(9)) == _second_permutation(7, 9)  # the window order of epoch 2, from the seed
    from napari_cxdi.physics.thinning import binomial_thinning

    _, held = binomial_thinning(counts, 0.2, 7)
    torch.testing.assert_close(a.windows.heldout_batch([3]), torch.from_numpy(held[None, 3:5]))
    assert torch.equal(a._noise_generator.get_state(), torch.Generator().manual_seed(7).get_state())
    none = PID3NetTrainer(counts, probe, cfg.with_(seed=None))
    assert torch.equal(none._noise_generator.get_state(), torch.Generator().manual_seed(0).get_state())


def _second_permutation(seed, n):
    rng = np.random.default_rng(seed)
    rng.permutation(n)
    return list(rng.permutation(n))


def test_the_noise_floor_of_a_step_is_seeded_and_leaves_unmeasured_pixels_out():
    from napari_cxdi.physics.thinning import expected_poisson_rf

    counts, probe = _toy()
    counts[:, 3, 4] = np.nan  # an unmeasured pixel
    t = PID3NetTrainer(counts, probe, PID3NetConfig(**{**TINY, "seed": 5}))
    batch = t.windows.batch([0, 1])
    with torch.no_grad():
        pred = t.model.predicted_intensity(t.model(batch)).float()
    values = t._optimise(batch)
    expected = expected_poisson_rf(pred, generator=torch.Generator().manual_seed(5), valid=torch.isfinite(batch))
    assert values["rf_floor"] == pytest.approx(expected, rel=1e-6)
    other = expected_poisson_rf(pred, generator=torch.Generator().manual_seed(0), valid=torch.isfinite(batch))
    assert other != pytest.approx(expected, rel=1e-6)  # the seed matters at this size


def test_resuming_takes_the_optimiser_state_and_divergence_message():
    counts, probe = _toy()
    a = PID3NetTrainer(counts, probe, PID3NetConfig(**TINY))
    a._optimise(a.windows.batch([0, 1]))
    state = a.optimizer.state_dict()
    b = PID3NetTrainer(counts, probe, PID3NetConfig(**TINY), model=a.model, optimizer_state=state)
    sa, sb = state["state"], b.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys() and len(sa) > 0
    for k in sa:
        assert torch.equal(sa[k]["exp_avg"], sb[k]["exp_avg"]) and torch.equal(sa[k]["exp_avg_sq"], sb[k]["exp_avg_sq"])
    c = PID3NetTrainer(counts, probe, PID3NetConfig(**TINY), on_checkpoint=lambda tr: None)
    c.step = 2
    with pytest.raises(TrainingDivergedError) as err:
        c._check_finite(float("nan"))
    assert str(err.value) == ("training diverged at step 3 (loss nan); stopped with the best weights so far (the checkpoint "
                              "file keeps the last good state). Lower the learning rate (lr = 0.001) or check the movie "
                              "for bad pixels")


def test_a_movie_object_trains_like_its_array():
    from napari_cxdi.io.movie import Movie

    counts, probe = _toy()
    t = PID3NetTrainer(Movie(data=counts), probe, PID3NetConfig(**TINY))
    assert (t.windows.n_frames, t.windows.n_windows, t.steps_per_epoch) == (5, 4, 1)
    torch.testing.assert_close(t.windows.batch([1]), torch.from_numpy(counts[None, 1:3]))


def test_a_given_model_does_not_skip_the_square_frame_check():
    from napari_cxdi.pid3net.model import PID3Net

    counts, probe = _toy()
    model = PID3Net(PID3NetConfig(**TINY), probe)
    with pytest.raises(ConfigError, match=r"^PID3Net needs square frames, got 16x12; crop the movie first$"):
        PID3NetTrainer(counts[:, :, :12], config=PID3NetConfig(**TINY), model=model)
