"""PID3Net training policies by value (issue 20, mutation testing of pid3net/train.py): the out-of-memory
retry (which batch, which warnings, gradients cleared, memory freed, when it gives up), keeping the best
epoch and the noise-floor rule, on a 16x16 toy movie and a few steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cxdi.pid3net import train
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
