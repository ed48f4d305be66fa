"""PID3Net training by value on a 16x16 toy movie, a few steps: schedule, loss terms, events, stopping
rules, checkpoints and errors (issue 20)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError, TrainingDivergedError
from napari_cxdi.pid3net import losses
from napari_cxdi.pid3net.config import PID3NetConfig
from napari_cxdi.pid3net.data import ThinnedWindows
from napari_cxdi.pid3net.model import PID3Net
from napari_cxdi.pid3net.train import PID3NetTrainer, batch_r_factor

torch.set_num_threads(1)


def _toy(n=5, size=16, seed=0):
    yy, xx = np.mgrid[:size, :size] - size / 2
    probe = (np.exp(-(yy**2 + xx**2) / 10.0) * 4).astype(np.complex64)[None]
    rng = np.random.default_rng(seed)
    counts = rng.poisson(20 * np.exp(-(yy**2 + xx**2) / 8.0), size=(n, size, size)).astype(np.float32)
    return counts, probe


TINY = dict(width=2, refine_width=2, refine_steps=1, frames=2, batch_size=2, device="cpu", epochs=2, preview_every=0,
            holdout_fraction=0.0, noise_floor_margin=None, lr=1e-3)


def _events(trainer):
    return list(trainer.run())


def test_batch_r_factor_by_hand():
    pred = torch.tensor([[4.0, 9.0, 1.0]])
    meas = torch.tensor([[1.0, 4.0, float("nan")]])
    assert batch_r_factor(pred, meas) == pytest.approx(2 / 3)  # the NaN pixel is left out
    assert batch_r_factor(pred, torch.tensor([[1.0, 4.0, 0.0]])) == pytest.approx(3 / 3)
    assert batch_r_factor(torch.tensor([[-1.0]]), torch.tensor([[4.0]])) == pytest.approx(1.0)
    assert batch_r_factor(torch.tensor([[1.0]]), torch.tensor([[0.0]])) == pytest.approx(1e12)


def test_constructor_checks_and_sizes():
    counts, probe = _toy()
    with pytest.raises(ConfigError, match=r"^PID3Net trains on a movie \[frames, H, W\], got shape \(16, 16\)$"):
        PID3NetTrainer(counts[0], probe, PID3NetConfig(**TINY))
    with pytest.raises(ConfigError, match=r"^a probe is needed to train PID3Net"):
        PID3NetTrainer(counts, None, PID3NetConfig(**TINY))
    with pytest.raises(ConfigError, match=r"^preview frame 5 is outside the movie \(0\.\.4\)$"):
        PID3NetTrainer(counts, probe, PID3NetConfig(**TINY), preview_frame=5)
    with pytest.raises(ConfigError, match=r"^preview frame -1 is outside"):
        PID3NetTrainer(counts, probe, PID3NetConfig(**TINY), preview_frame=-1)
    model = PID3Net(PID3NetConfig(**TINY), np.ones((1, 32, 32), np.complex64))
    with pytest.raises(ConfigError, match=r"^the model was trained on 32px frames, this movie has 16px$"):
        PID3NetTrainer(counts, config=PID3NetConfig(**TINY), model=model)
    t = PID3NetTrainer(counts, probe, PID3NetConfig(**{**TINY, "batch_size": 3}), preview_frame=4)
    # 5 frames, T = 2: 4 windows; batch 3 -> 2 steps per epoch
    assert (t.windows.n_windows, t.batch_size, t.steps_per_epoch, t.total_steps) == (4, 3, 2, 4)
    assert PID3NetTrainer(counts, probe, PID3NetConfig(**{**TINY, "batch_size": 8})).batch_size == 4
    assert t.keep == 1.0 and not isinstance(t.windows, ThinnedWindows) and t.scaler is None
    h = PID3NetTrainer(counts, probe, PID3NetConfig(**{**TINY, "holdout_fraction": 0.2}))
    assert isinstance(h.windows, ThinnedWindows) and h.keep == pytest.approx(0.8)
    c = torch.full((1, 2, 16, 16), 8.0)
    assert torch.equal(h.network_counts(c), c / 0.8) and t.network_counts(c) is c
    # the config comes from the model when not given
    m = PID3Net(PID3NetConfig(**TINY), probe)
    assert PID3NetTrainer(counts, model=m).config is m.config


def test_learning_rate_schedule():
    counts, probe = _toy()
    t = PID3NetTrainer(counts, probe, PID3NetConfig(**{**TINY, "lr": 1e-2, "lr_final_factor": 0.2, "epochs": 3}))
    # 2 steps per epoch, 6 steps: cosine from 1e-2 (step 0) to 2e-3 (step 5)
    assert t.total_steps == 6
    assert t.learning_rate(0) == pytest.approx(1e-2)
    assert t.learning_rate(5) == pytest.approx(2e-3)
    assert t.learning_rate(9) == pytest.approx(2e-3)
    assert t.learning_rate(2.5) == pytest.approx(2e-3 + 0.5 * 8e-3)
    assert t.learning_rate(1) == pytest.approx(2e-3 + 0.5 * 8e-3 * (1 + math.cos(math.pi / 5)))
    one = PID3NetTrainer(counts[:2], probe, PID3NetConfig(**{**TINY, "epochs": 1, "lr": 1e-2}))
    assert one.total_steps == 1 and one.learning_rate(0) == pytest.approx(1e-2)  # no division by zero


def test_loss_terms_and_one_step_values():
    counts, probe = _toy()
    cfg = PID3NetConfig(**{**TINY, "holdout_fraction": 0.25, "tv_weight": 0.5, "loss": "mae"})
    t = PID3NetTrainer(counts, probe, cfg)
    batch = t.windows.batch([0, 1])
    terms = t.loss_terms(batch)
    obj = t.model(batch / 0.75)
    pred = t.model.predicted_intensity(obj) * 0.75
    torch.testing.assert_close(terms["predicted"], pred)
    torch.testing.assert_close(terms["diffraction"], losses.mae(pred, batch))
    torch.testing.assert_close(terms["tv"], losses.total_variation_3d(obj))
    torch.testing.assert_close(terms["loss"], terms["diffraction"] + 0.5 * terms["tv"])
    held = t.windows.heldout_batch([0, 1])
    values = t._optimise(batch, held)
    assert set(values) == {"loss", "diffraction_loss", "tv", "rf", "rf_floor", "heldout_nll"}
    assert values["loss"] == pytest.approx(float(terms["loss"].detach()), rel=1e-5)
    assert values["rf"] == pytest.approx(batch_r_factor(pred.detach(), batch), rel=1e-5)
    assert values["heldout_nll"] == pytest.approx(float(losses.poisson_deviance(pred.detach() * (0.25 / 0.75), held, 0.0)), rel=1e-5)
    assert values["rf_floor"] > 0 and math.isfinite(values["rf_floor"])
    # the step changed the weights
    after = t.loss_terms(batch)["loss"]
    assert float(after.detach()) != pytest.approx(float(terms["loss"].detach()), rel=1e-7)
    plain = PID3NetTrainer(counts, probe, PID3NetConfig(**{**TINY, "poisson_threshold": 3.0}))
    b = plain.windows.batch([2])
    terms = plain.loss_terms(b)
    pred = plain.model.predicted_intensity(plain.model(b))
    torch.testing.assert_close(terms["diffraction"], losses.poisson_deviance(pred, b, 3.0))
    assert "heldout_nll" not in plain._optimise(b)


def test_events_history_and_previews():
    counts, probe = _toy()
    cfg = PID3NetConfig(**{**TINY, "preview_every": 3, "epochs": 2, "lr": 5e-3})
    t = PID3NetTrainer(counts, probe, cfg, preview_frame=4)
    events = _events(t)
    kinds = [e["event"] for e in events]
    assert kinds == ["start", "step", "step", "epoch", "step", "preview", "step", "epoch", "done"]
    start = events[0]
    assert (start["total_steps"], start["epochs"], start["steps_per_epoch"], start["variant"], start["device"]) == (
        4, 2, 2, "PID3Net-PO", "cpu")
    assert start["n_parameters"] == t.model.n_parameters()
    steps = [e for e in events if e["event"] == "step"]
    assert [s["step"] for s in steps] == [1, 2, 3, 4] and [s["epoch"] for s in steps] == [0, 0, 1, 1]
    assert [s["lr"] for s in steps] == pytest.approx([t.learning_rate(k) for k in range(4)])
    assert all(s["batch_size"] == 2 and s["total_steps"] == 4 for s in steps)
    assert steps[-1]["eta_s"] == 0 and steps[0]["eta_s"] == pytest.approx(steps[0]["elapsed_s"] * 3)
    preview = events[5]
    assert (preview["step"], preview["frame"]) == (3, 4) and preview["amplitude"].shape == (16, 16)
    epochs = [e for e in events if e["event"] == "epoch"]
    assert epochs[0]["loss"] == pytest.approx(np.mean([s["loss"] for s in steps[:2]]))
    assert epochs[1]["rf"] == pytest.approx(np.mean([s["rf"] for s in steps[2:]]))
    assert epochs[1]["rf_floor"] == pytest.approx(np.mean([s["rf_floor"] for s in steps[2:]]))
    assert epochs[1]["lr"] == steps[-1]["lr"] and epochs[0]["below_noise_floor"] is False
    assert "heldout_nll" not in epochs[0]
    assert t.history == [{k: v for k, v in e.items() if k not in ("event", "best_epoch")} for e in epochs]
    done = events[-1]
    assert (done["stopped"], done["steps"], done["best_epoch"], done["best_below_noise_floor"]) == ("completed", 4, done["best_epoch"], False)
    best = int(np.argmin([e["loss"] for e in epochs]))
    assert done["best_epoch"] == best and t.best_loss == pytest.approx(epochs[best]["loss"])
    assert not t.model.training and t.stopped_reason == "completed"
    # the preview window holds the preview frame: frame 4 is the last frame of the last window
    t2 = PID3NetTrainer(counts, probe, cfg, preview_frame=0)
    p = t2.preview()
    with torch.no_grad():
        t2.model.eval()
        ref = t2.model(t2.windows.batch([0]))[0, 0]
    np.testing.assert_allclose(p["phase"], torch.angle(ref).numpy(), atol=1e-5)
    assert t2.model.training is False


def test_stopping_rules_and_checkpoints():
    counts, probe = _toy()
    calls = []
    cfg = PID3NetConfig(**{**TINY, "epochs": 3, "checkpoint_every": 3})
    t = PID3NetTrainer(counts, probe, cfg, on_checkpoint=lambda tr: calls.append(tr.step))
    t.train()
    assert calls == [3, 6]
    calls.clear()
    t = PID3NetTrainer(counts, probe, cfg.with_(checkpoint_every=0), on_checkpoint=lambda tr: calls.append(tr.step))
    t.train()
    assert calls == [2, 4, 6]  # once per epoch
    # early stop: the first epoch improves on "none yet"; then no epoch improves by 99.9 %: stop after
    # patience more epochs without improvement
    t = PID3NetTrainer(counts, probe, cfg.with_(epochs=10, early_stop_patience=2, early_stop_tol=0.999))
    done = _events(t)[-1]
    assert (done["stopped"], len(t.history)) == ("early_stop", 3)
    t = PID3NetTrainer(counts, probe, cfg.with_(epochs=10, early_stop_patience=3, early_stop_tol=0.999))
    assert (_events(t)[-1]["stopped"], len(t.history)) == ("early_stop", 4)
    # held-out: the same with tol 0.999: stop holdout_patience epochs after the first
    held = cfg.with_(epochs=10, holdout_fraction=0.2, holdout_patience=2, holdout_tol=0.999, holdout_patience_steps=0)
    t = PID3NetTrainer(counts, probe, held)
    events = _events(t)
    assert (events[-1]["stopped"], len(t.history)) == ("heldout_rising", 3)
    # ... and at least holdout_patience_steps optimiser steps: 3 epochs' worth of steps -> 1 + 3 epochs
    t3 = PID3NetTrainer(counts, probe, held.with_(holdout_patience_steps=3 * t.steps_per_epoch))
    assert (_events(t3)[-1]["stopped"], len(t3.history)) == ("heldout_rising", 4)
    assert all("heldout_nll" in h for h in t.history)
    assert t.best_heldout == min(h["heldout_nll"] for h in t.history)
    # cancelled: closing the generator keeps the best model and evaluates it
    t = PID3NetTrainer(counts, probe, cfg.with_(epochs=5))
    gen = t.run()
    for e in gen:
        if e["event"] == "epoch":
            break
    gen.close()
    assert t.stopped_reason == "cancelled" and t.best_epoch == 0 and not t.model.training


def test_divergence_is_a_typed_error_with_the_step_and_lr():
    counts, probe = _toy()
    t = PID3NetTrainer(counts, probe, PID3NetConfig(**{**TINY, "lr": 0.05}))
    with pytest.raises(TrainingDivergedError) as err:
        t.step = 6
        t._check_finite(float("inf"))
    assert str(err.value) == ("training diverged at step 7 (loss inf); stopped with the best weights so far. "
                              "Lower the learning rate (lr = 0.05) or check the movie for bad pixels")
    assert t.stopped_reason == "diverged"
    t2 = PID3NetTrainer(counts, probe, PID3NetConfig(**TINY), on_checkpoint=lambda tr: None)
    with pytest.raises(TrainingDivergedError, match=r"\(the checkpoint file keeps the last good state\)"):
        t2._check_finite(float("nan"))
    t2._check_finite(1.0)
    with torch.no_grad():
        next(p for p in t2.model.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDivergedError):
        t2._checkpoint()
