"""SCANN training options used for the shipped model: L1 loss and a snapshot ensemble from one run
(cyclic cosine learning rate on a wall-time budget)."""

import math

import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError
from napari_cxdi.scann import ScannConfig, TrainConfig, featurize, load_qm9, split_indices, train_iter
from napari_cxdi.scann.batching import batches
from napari_cxdi.scann.model import build_model

TINY = dict(width=16, n_layers=1, n_heads=2, readout=16, dropout=0.0, target_names=["homo"])


@pytest.fixture(scope="module")
def qm9_tiny():
    envs = featurize(load_qm9(("homo",), n=120, seed=2))
    tr, va = split_indices(len(envs), [100, 20], seed=0)
    return envs.subset(tr), envs.subset(va)


def test_time_lr_is_one_cosine_then_snapshot_cycles():
    cfg = TrainConfig(lr=1e-3, lr_min=1e-5, lr_schedule="time_cosine", time_limit_s=100, snapshots=3,
                      snapshot_fraction=0.3, snapshot_lr=2e-4)
    assert cfg.time_lr(0.0) == (pytest.approx(1e-3), 0)
    assert cfg.time_lr(0.35) == (pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5)), 0)  # half of the main cosine
    lr_end, phase = cfg.time_lr(0.7 - 1e-9)
    assert phase == 0 and lr_end == pytest.approx(1e-5, rel=1e-3)
    starts = [cfg.time_lr(0.7 + k * 0.1 + 1e-12) for k in range(3)]
    assert [p for _, p in starts] == [1, 2, 3] and all(lr == pytest.approx(2e-4) for lr, _ in starts)
    assert cfg.time_lr(0.85) == (pytest.approx(1e-5 + 0.5 * (2e-4 - 1e-5)), 2)  # middle of cycle 2
    assert cfg.time_lr(1.0) == (pytest.approx(1e-5), 3) and cfg.time_lr(7.0) == cfg.time_lr(1.0)
    # without snapshots: the plain cosine over the whole budget
    plain = TrainConfig(lr=1e-3, lr_min=1e-5, lr_schedule="time_cosine", time_limit_s=100)
    assert plain.time_lr(0.5) == (pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5)), 0)
    # the rate falls monotonically inside every phase
    fr = np.linspace(0, 1, 2001)
    lrs, phases = np.array([cfg.time_lr(f) for f in fr]).T
    for p in range(4):
        assert np.all(np.diff(lrs[phases == p]) <= 1e-15)


@pytest.mark.parametrize("kwargs", [
    dict(loss="huber"),
    dict(snapshots=2),  # snapshots need the time-based schedule
    dict(snapshots=2, lr_schedule="time_cosine", time_limit_s=10, snapshot_fraction=1.0),
    dict(lr_schedule="time_cosine", time_limit_s=10, snapshots=2, snapshot_lr=1.0),  # above lr
])
def test_bad_snapshot_and_loss_settings_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        TrainConfig(**kwargs)


def test_l1_loss_is_the_mean_absolute_standardised_error(qm9_tiny):
    train, val = qm9_tiny
    cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-3, seed=5, device="cpu", loss="l1", log_every=1)
    events = train_iter(ScannConfig(**TINY), train, val, cfg)
    first = next(e for e in events if e["event"] == "step")
    events.close()
    # the same initial model and first batch, built independently
    np.random.seed(5)
    torch.manual_seed(5)
    model = build_model(ScannConfig(**TINY))
    y = train.targets
    model.target_mean.fill_(float(np.mean(y)))
    model.target_std.fill_(float(np.std(y)))
    _, batch = next(iter(batches(train, 32, shuffle=True, seed=5 * 100003)))
    with torch.no_grad():
        d = model.standardized(model(batch).prediction) - model.standardized(batch["y"])
    assert first["loss"] == pytest.approx(float(d.abs().mean()), rel=1e-5)
    assert first["loss"] != pytest.approx(float((d ** 2).mean()), rel=1e-3)


def test_one_run_yields_a_snapshot_per_phase_with_distinct_weights(qm9_tiny):
    train, val = qm9_tiny
    cfg = TrainConfig(epochs=100000, batch_size=16, lr=3e-3, lr_min=1e-4, device="cpu", lr_schedule="time_cosine",
                      time_limit_s=4.0, snapshots=2, snapshot_fraction=0.5, loss="l1", log_every=0, patience=10**6)
    events = list(train_iter(ScannConfig(**TINY), train, val, cfg))
    snaps = [e for e in events if e["event"] == "snapshot"]
    assert events[-1]["event"] == "done" and events[-1]["reason"] == "time_limit"
    # phases 0, 1, 2 in order; a starved process (nice 19 on a loaded machine) can sleep through the
    # start of the last cycle, then the run ends in cycle 1 and yields 2 snapshots
    phases = [s["phase"] for s in snaps]
    assert phases in ([0, 1, 2], [0, 1]), phases
    t = [s["elapsed_s"] for s in snaps]
    assert t[0] >= 2.0 and t[1] > t[0] and t[-1] >= 4.0  # phase ends: 50 %, 75 %, 100 % of 4 s
    if len(t) == 3:
        assert t[1] >= 3.0
    w = [s["state_dict"]["F_S.2.weight"] for s in snaps]
    assert all(not torch.equal(a, b) for a, b in zip(w, w[1:]))
    live = events[-1]["result"].model.state_dict()["F_S.2.weight"]
    assert all(x.data_ptr() != live.data_ptr() for x in w)  # copies, not views of the live weights
    assert all(math.isfinite(float(x.abs().sum())) for x in w)
