"""SCANN training: config checks and the learning-rate schedules by hand, target statistics, MAE, the
first step's loss against a recomputation, event counts, early stopping, checkpoints and transfer.
Tiny model (width 8), four small molecules, a few epochs: seconds."""

import math

import numpy as np
import pytest
import torch
from ase.build import molecule

from napari_cxdi.errors import CancelledError, ConfigError, DataValidationError, InputFileError
from napari_cxdi.scann import ScannConfig, VoronoiConfig, build_model, featurize, structures_from_atoms
from napari_cxdi.scann.batching import collate
from napari_cxdi.scann.train import (CHECKPOINT_FORMAT, TrainConfig, _target_stats, _transfer, evaluate, fit,
                                     load_checkpoint, mae, save_checkpoint, set_seed, train_iter)

MC = dict(width=8, n_layers=1, n_heads=2, z_embedding=4, n_gaussians=5, readout=6, dropout=0.0)


def test_config_checks():
    TrainConfig()
    for kw, msg in [(dict(lr=1e-4, lr_min=2e-4), r"need 0 < lr_min <= lr, got lr=0.0001, lr_min=0.0002"),
                    (dict(lr_schedule="step"), r"lr_schedule must be 'restarts' or 'time_cosine', got 'step'"),
                    (dict(lr_schedule="time_cosine"), "'time_cosine' needs time_limit_s"),
                    (dict(loss="huber"), r"loss must be 'mse' or 'l1', got 'huber'"),
                    (dict(snapshots=-1), r"need snapshots >= 0 and 0 < snapshot_fraction < 1, got -1, 0.3"),
                    (dict(snapshot_fraction=1.0), "snapshot_fraction"),
                    (dict(snapshot_fraction=0.0), "snapshot_fraction"),
                    (dict(snapshots=2), "snapshots need lr_schedule 'time_cosine'"),
                    (dict(snapshot_lr=1e-3), r"need lr_min <= snapshot_lr <= lr, got 0.001"),
                    (dict(snapshot_lr=1e-5), "snapshot_lr"),
                    (dict(epochs=0), "epochs"), (dict(batch_size=0), "batch_size"), (dict(lr=0.0), "lr")]:
        with pytest.raises(ConfigError, match=msg):
            TrainConfig(**kw)
    TrainConfig(lr=1e-4, lr_min=1e-4, snapshot_lr=1e-4)
    TrainConfig(lr_schedule="time_cosine", time_limit_s=1.0, snapshots=2, snapshot_lr=5e-4)


def test_time_lr_by_hand():
    c = TrainConfig(lr=1.0, lr_min=0.1, lr_schedule="time_cosine", time_limit_s=10.0)
    assert c.time_lr(0.0) == (1.0, 0) and c.time_lr(1.0) == (pytest.approx(0.1), 0)
    assert c.time_lr(0.5)[0] == pytest.approx(0.55) and c.time_lr(-1)[0] == 1.0 and c.time_lr(2)[0] == pytest.approx(0.1)
    s = TrainConfig(lr=1.0, lr_min=0.1, lr_schedule="time_cosine", time_limit_s=10.0, snapshots=2,
                    snapshot_fraction=0.4)
    assert s.time_lr(0.0) == (1.0, 0)
    assert s.time_lr(0.3) == (pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5))), 0)
    assert s.time_lr(0.6) == (pytest.approx(0.2), 1)     # cycle 1 starts at lr / 5
    assert s.time_lr(0.7) == (pytest.approx(0.15), 1)    # its middle
    assert s.time_lr(0.8) == (pytest.approx(0.2), 2)
    assert s.time_lr(1.0) == (pytest.approx(0.1), 2)     # the end of the last cycle, not a third one
    top = s.__class__(**{**s.__dict__, "snapshot_lr": 0.5})
    assert top.time_lr(0.6) == (pytest.approx(0.5), 1)
    low = TrainConfig(lr=0.3, lr_min=0.1, lr_schedule="time_cosine", time_limit_s=1.0, snapshots=1)
    assert low.time_lr(0.7) == (pytest.approx(0.1), 1)   # lr / 5 below lr_min: lr_min


def test_stats_mae_seed():
    y = np.array([[1.0, 5.0], [3.0, 5.0], [np.nan, 5.0]])
    mean, std = _target_stats(y)
    np.testing.assert_allclose(mean, [2.0, 5.0])
    np.testing.assert_allclose(std, [1.0, 1.0])  # constant column: 1, not 0
    assert mae(np.array([[0.0, 1.0], [2.0, 1.0], [9.0, 9.0]]), y) == [pytest.approx(1.0), pytest.approx(4.0)]
    set_seed(5)
    a = (np.random.rand(), torch.rand(1).item())
    set_seed(5)
    assert (np.random.rand(), torch.rand(1).item()) == a


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    frames = [molecule(n) for n in ("H2O", "CH4", "NH3", "CH3OH", "C2H6", "HCN")]
    for k, f in enumerate(frames):
        f.info["y"] = [1.0, 2.0, 4.0, np.nan, 3.0, 5.0][k]
    envs = featurize(structures_from_atoms(frames, ["y"], units=["eV"]), VoronoiConfig(), n_jobs=1, cache=False)
    return envs.subset([0, 1, 2, 3]), envs.subset([4, 5])


def _first_batch_error(mconf, train, seed, batch_size):
    """The standardised error (B, T) of the freshly seeded model on the first shuffled batch of epoch 0, and the
    mask of known targets: what the first training step's loss is computed from."""
    set_seed(seed)
    ref = build_model(mconf)
    mean, std = _target_stats(train.targets)
    ref.target_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
    ref.target_std.copy_(torch.as_tensor(std, dtype=torch.float32))
    b = collate(train, np.random.default_rng(seed * 100003).permutation(len(train))[:batch_size])
    with torch.no_grad():
        d = ref.standardized(ref(b).prediction) - ref.standardized(torch.nan_to_num(b["y"]))
    return d, ~torch.isnan(b["y"])


def test_first_step_loss_and_events(data):
    train, val = data
    cfg = TrainConfig(epochs=3, batch_size=3, lr=1e-3, lr_min=1e-4, restart_epochs=1, log_every=1, patience=10,
                      device="cpu", seed=2)
    mconf = ScannConfig(**MC, target_names=["y"])
    events = list(train_iter(mconf, train, val, cfg))
    kinds = [e["event"] for e in events]
    assert kinds == ["step", "step", "epoch"] * 3 + ["done"]  # ceil(4 / 3) = 2 steps per epoch
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3, 4, 5, 6]
    # the first loss: MSE of the standardised initial predictions on the first shuffled batch (NaN left out)
    d, ok = _first_batch_error(mconf, train, seed=2, batch_size=3)  # statistics of the known targets: 7/3, std
    assert events[0]["loss"] == pytest.approx(float((d[ok] ** 2).mean()), rel=1e-4)
    # cosine warm restarts per epoch (2 steps): lr after step 1 is the middle of the cosine, then a restart
    assert events[0]["lr"] == pytest.approx(1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi / 2)))
    assert events[1]["lr"] == pytest.approx(1e-3)
    ep = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in ep] == [0, 1, 2]
    assert ep[0]["train_loss"] == pytest.approx(np.mean([events[0]["loss"], events[1]["loss"]]))
    done = events[-1]
    res = done["result"]
    assert done["reason"] == "epochs" and not res.model.training
    best = min(ep, key=lambda e: np.mean(e["val_mae"]))
    assert done["best_epoch"] == best["epoch"] == res.best_epoch and res.best_val_mae == best["val_mae"]
    assert ep[0]["improved"] and ep[0]["best_val_mae"] == ep[0]["val_mae"]
    pred = evaluate(res.model, val)
    assert mae(pred, val.targets) == pytest.approx(best["val_mae"], rel=1e-5)  # the best weights are restored
    assert res.history == ep
    np.testing.assert_allclose(res.model.target_mean.numpy(), [7 / 3], rtol=1e-6)
    np.testing.assert_allclose(res.model.target_std.numpy(), [np.std([1.0, 2.0, 4.0])], rtol=1e-6)
    l1 = list(train_iter(mconf, train, val, cfg.__class__(**{**cfg.__dict__, "loss": "l1", "epochs": 1})))
    assert l1[0]["loss"] == pytest.approx(float(d[ok].abs().mean()), rel=1e-4)


def test_early_stopping_stop_and_errors(data):
    train, val = data
    mconf = ScannConfig(**MC, target_names=["y"])
    cfg = TrainConfig(epochs=50, batch_size=8, lr=1e-9, lr_min=1e-9, patience=0, log_every=0, device="cpu")
    events = list(train_iter(mconf, train, val, cfg))
    assert events[-1]["reason"] == "early_stopping" and sum(e["event"] == "epoch" for e in events) == 1
    cfg2 = TrainConfig(epochs=50, batch_size=8, lr=1e-9, lr_min=1e-9, patience=2, log_every=0, device="cpu")
    n = sum(e["event"] == "epoch" for e in train_iter(mconf, train, val, cfg2))
    assert 3 <= n <= 50
    calls = []
    events = list(train_iter(mconf, train, val, TrainConfig(epochs=5, batch_size=1, log_every=0, device="cpu"),
                             stop=lambda: len(calls) > 2 or calls.append(1)))
    assert events[-1]["reason"] == "stopped" and [e["event"] for e in events] == ["epoch", "done"]
    assert len(events[0]["val_mae"]) == 1
    with pytest.raises(DataValidationError, match="must not be empty"):
        list(train_iter(mconf, train.subset([]), val))
    with pytest.raises(DataValidationError, match="must not be empty"):
        list(train_iter(mconf, train, val.subset([])))
    with pytest.raises(ConfigError, match="model predicts 2 targets but the data has 1"):
        list(train_iter(ScannConfig(**MC, n_targets=2, target_names=["a", "b"]), train, val))
    nan = train.subset([3])
    with pytest.raises(DataValidationError, match="no target values"):
        list(train_iter(mconf, nan, val))
    res = fit(mconf, train, val, TrainConfig(epochs=1, batch_size=8, device="cpu"), callback=calls.append)
    assert calls[-1]["event"] == "done" and calls[-1]["result"] is res


def test_checkpoints_and_transfer(data, tmp_path):
    train, val = data
    mconf = ScannConfig(**MC, target_names=["y"])
    ck = tmp_path / "best.pt"
    res = fit(mconf, train, val, TrainConfig(epochs=2, batch_size=8, device="cpu", checkpoint=str(ck)))
    model, meta = load_checkpoint(ck)
    assert meta["format"] == CHECKPOINT_FORMAT and meta["target_units"] == ["eV"] and "state_dict" not in meta
    np.testing.assert_allclose(evaluate(model, val), evaluate(res.model, val), atol=1e-6)
    assert meta["target_mean"] == pytest.approx([7 / 3])
    p = save_checkpoint(tmp_path / "m.pt", res.model, voronoi=VoronoiConfig(cutoff=3.5), metrics={"x": 1})
    _, meta = load_checkpoint(p)
    assert meta["voronoi_config"]["cutoff"] == 3.5 and meta["target_units"] == [""]
    assert meta["target_names"] == ["y"] and meta["model_config"]["width"] == 8
    with pytest.raises(Exception, match="exists"):
        save_checkpoint(p, res.model, overwrite=False)
    with pytest.raises(InputFileError, match="checkpoint does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_text("x")
    with pytest.raises(InputFileError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(InputFileError, match="not a SCANN checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    two = build_model(ScannConfig(**{**MC, "readout": 7}, target_names=["y"]))
    info = _transfer(two, str(p))
    src = res.model.state_dict()
    for k, v in two.state_dict().items():
        if k.startswith("F_S") or k.startswith("target_"):
            continue
        torch.testing.assert_close(v, src[k])
    assert "F_S.0.weight" in info["skipped"] and "target_mean" in info["skipped"]
    assert info["copied"] == len(src) - len(info["skipped"])
    ev = list(train_iter(mconf, train, val, TrainConfig(epochs=1, batch_size=8, device="cpu", init_from=str(p))))
    assert ev[0]["event"] == "transfer" and ev[0]["init_from"] == str(p) and ev[0]["skipped"] == ["target_mean", "target_std"]
    with pytest.raises(Exception):
        list(train_iter(mconf, train, val, TrainConfig(epochs=1, device="cpu", init_from=str(p), checkpoint=str(p))))


def test_fit_without_result_is_cancelled(monkeypatch, data):
    import napari_cxdi.scann.train as tr

    monkeypatch.setattr(tr, "train_iter", lambda *a, **k: iter([{"event": "epoch"}]))
    with pytest.raises(CancelledError, match="without a result"):
        fit(ScannConfig(**MC), *data)


class _Clock:
    """time.time() stand-in: every call advances one second (a deterministic wall clock)."""

    def __init__(self):
        self.t = 99.0  # t0 = 100: elapsed times are differences, not clock readings

    def time(self):
        self.t += 1.0
        return self.t


def test_time_cosine_snapshots_on_a_fake_clock(data, monkeypatch):
    """Time budget 20 s, main cosine on the first half, two snapshot cycles of 5 s each; the clock ticks once per
    call: t0 = 0, then per step (rate, step event, time check), per epoch and per snapshot one tick. Worked out:
    rates at t = 1, 4, 8, 11, 16, 20; snapshots after steps 3 (phase 0), 4 (phase 1) and at the end (phase 2);
    the time check after step 6 (t = 22 > 20) stops the run."""
    import napari_cxdi.scann.train as tr

    train, val = data
    monkeypatch.setattr(tr, "time", _Clock())
    cfg = TrainConfig(epochs=5, batch_size=2, lr=1e-3, lr_min=1e-4, lr_schedule="time_cosine", time_limit_s=20.0,
                      snapshots=2, snapshot_fraction=0.5, log_every=1, patience=10, device="cpu")
    events = list(train_iter(ScannConfig(**MC, target_names=["y"]), train, val, cfg))
    assert [e["event"] for e in events] == ["step", "step", "epoch", "step", "snapshot", "step", "epoch", "snapshot",
                                            "step", "step", "epoch", "snapshot", "done"]

    def main(frac):
        return 1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * frac / 0.5))

    cycle = 1e-4 + 0.5 * (2e-4 - 1e-4) * (1 + math.cos(math.pi * 0.2))  # top lr / 5, x = 0.2 into a cycle
    steps = [e for e in events if e["event"] == "step"]
    assert [e["epoch"] for e in steps] == [0, 0, 1, 1, 2, 2]
    assert [e["lr"] for e in steps] == pytest.approx([main(0.05), main(0.2), main(0.4), cycle, cycle, 1e-4], rel=1e-9)
    assert [e["elapsed_s"] for e in steps] == [2, 5, 9, 13, 18, 21]
    snaps = [e for e in events if e["event"] == "snapshot"]
    assert [(s["phase"], s["step"], s["epoch"], s["elapsed_s"]) for s in snaps] == [(0, 3, 1, 12), (1, 4, 2, 17),
                                                                                   (2, 6, 2, 24)]
    for s in snaps:
        assert set(s["state_dict"]) == set(events[-1]["result"].model.state_dict())
        assert all(v.device.type == "cpu" for v in s["state_dict"].values())
    w = "F_S.0.weight"
    assert not torch.equal(snaps[0]["state_dict"][w], snaps[1]["state_dict"][w])  # trained in between
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["elapsed_s"] for e in epochs] == [7, 15, 23] and epochs[-1]["lr"] == pytest.approx(1e-4)
    assert events[-1]["reason"] == "time_limit" and events[-1]["elapsed_s"] == 25


def test_time_limit_with_restarts_and_stop_skips_the_last_snapshot(data, monkeypatch):
    import napari_cxdi.scann.train as tr

    train, val = data
    mconf = ScannConfig(**MC, target_names=["y"])
    monkeypatch.setattr(tr, "time", _Clock())
    # restarts schedule, 3 s budget, one tick per step (the time check): elapsed 1, 2, 3 pass (not over), 4 stops
    cfg = TrainConfig(epochs=5, batch_size=1, lr=1e-3, lr_min=1e-4, restart_epochs=1, time_limit_s=3.0, log_every=0,
                      device="cpu")
    events = list(train_iter(mconf, train, val, cfg))
    assert [e["event"] for e in events] == ["epoch", "done"] and events[-1]["reason"] == "time_limit"
    assert events[0]["step"] == 4
    monkeypatch.setattr(tr, "time", _Clock())
    snap = TrainConfig(epochs=2, batch_size=2, lr=1e-3, lr_min=1e-4, lr_schedule="time_cosine", time_limit_s=1e6,
                       snapshots=1, log_every=0, device="cpu")
    kinds = [e["event"] for e in train_iter(mconf, train, val, snap, stop=lambda: True)]
    assert kinds == ["done"]  # stopped before any step: no epoch, no snapshot
    kinds = [e["event"] for e in train_iter(mconf, train, val, snap)]
    assert kinds == ["epoch", "epoch", "snapshot", "done"]  # the budget not reached: one final snapshot


def test_evaluate_restores_the_mode_and_predicts_every_structure(data):
    train, val = data
    torch.manual_seed(0)
    m = build_model(ScannConfig(**MC, target_names=["y"]))
    with torch.no_grad():
        m.target_mean.fill_(3.0)
        m.target_std.fill_(2.0)
    m.train()
    got = evaluate(m, train, batch_size=3)
    assert m.training
    with torch.no_grad():
        expect = m.eval()(collate(train, np.arange(4))).prediction.double().numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)
    assert got.shape == (4, 1) and got.dtype == np.float64
    assert not m.training and np.allclose(evaluate(m, train, device=torch.device("cpu")), expect, atol=1e-6)
    assert not m.training


def test_target_stats_threshold():
    mean, std = _target_stats(np.array([[0.0, 0.0, 0.0], [2e-12, 2e-11, 2e-13]]))
    np.testing.assert_allclose(mean, [1e-12, 1e-11, 1e-13])
    np.testing.assert_allclose(std, [1.0, 1e-11, 1.0])  # a spread of 1e-12 or less: unit scale


def test_checkpoint_contents_and_device(data, tmp_path):
    train, val = data
    torch.manual_seed(0)
    m = build_model(ScannConfig(**MC, target_names=["y"]))
    with torch.no_grad():
        m.target_mean.fill_(3.0)
        m.target_std.fill_(2.0)
    cfg = TrainConfig(epochs=7, device="cpu")
    p = save_checkpoint(tmp_path / "m.pt", m, voronoi=VoronoiConfig(cutoff=3.0), train_config=cfg,
                        metrics={"val_mae": [0.5]}, target_units=["eV"])
    obj = torch.load(p, weights_only=True)
    assert obj["target_mean"] == [3.0] and obj["target_std"] == [2.0] and obj["target_units"] == ["eV"]
    assert all(v.device.type == "cpu" for v in obj["state_dict"].values())
    prov = obj["provenance"]
    assert prov["config"]["train"]["epochs"] == 7 and prov["config"]["voronoi"]["cutoff"] == 3.0
    assert prov["config"]["model"]["width"] == 8 and prov["metrics"] == {"val_mae": [0.5]}
    bare = torch.load(save_checkpoint(tmp_path / "b.pt", m), weights_only=True)
    assert bare["provenance"]["config"]["train"] is None and bare["provenance"]["metrics"] is None
    assert bare["voronoi_config"] == VoronoiConfig().to_dict() and bare["target_units"] == [""]
    model, meta = load_checkpoint(p)
    assert not model.training and next(model.parameters()).device.type == "cpu"
    np.testing.assert_allclose(evaluate(model, val), evaluate(m, val), atol=1e-6)
    on_meta, _ = load_checkpoint(p, device=torch.device("meta"))
    assert next(on_meta.parameters()).device.type == "meta" and on_meta.target_mean.device.type == "meta"


def test_batches_are_drawn_with_the_epoch_seed(data, monkeypatch):
    import napari_cxdi.scann.train as tr

    train, val = data
    seen = []
    real = tr.batches

    def spy(envs, batch_size, **kw):
        seen.append((len(envs), batch_size, kw.get("shuffle", False), kw.get("seed")))
        devices.append(kw.get("device"))
        return real(envs, batch_size, **kw)

    devices = []

    monkeypatch.setattr(tr, "batches", spy)
    cfg = TrainConfig(epochs=3, batch_size=3, log_every=2, patience=10, seed=4, device="cpu")
    events = list(train_iter(ScannConfig(**MC, target_names=["y"]), train, val, cfg))
    training = [s for s in seen if s[2]]
    assert training == [(4, 3, True, 4 * 100003 + e) for e in range(3)]
    assert all(s[:3] == (2, 256, False) for s in seen if not s[2])  # validation: in order, default batch
    assert [e["step"] for e in events if e["event"] == "step"] == [2, 4, 6]  # log every 2nd step
    assert devices == [torch.device("cpu")] * len(seen)  # the resolved device, for training and validation


def test_equal_validation_error_is_no_improvement(data):
    """With a rate of 1e-30 the weights cannot change in float32: every epoch has the same validation MAE,
    which is no improvement, so patience 2 stops after epoch 2."""
    train, val = data
    cfg = TrainConfig(epochs=10, batch_size=8, lr=1e-30, lr_min=1e-30, patience=2, log_every=0, device="cpu")
    ep = [e for e in train_iter(ScannConfig(**MC, target_names=["y"]), train, val, cfg) if e["event"] == "epoch"]
    assert [e["improved"] for e in ep] == [True, False, False]
    assert ep[1]["val_mae"] == ep[0]["val_mae"]


def test_weight_decay_and_improvement_checkpoints(data, tmp_path):
    train, val = data
    mconf = ScannConfig(**MC, target_names=["y"])
    plain = fit(mconf, train, val, TrainConfig(epochs=1, batch_size=8, device="cpu"))
    decayed = fit(mconf, train, val, TrainConfig(epochs=1, batch_size=8, weight_decay=100.0, device="cpu"))
    w = "F_S.0.weight"
    assert not torch.allclose(plain.model.state_dict()[w], decayed.model.state_dict()[w])
    ck = tmp_path / "best.pt"
    res = fit(mconf, train, val, TrainConfig(epochs=3, batch_size=2, patience=10, device="cpu", checkpoint=str(ck)))
    obj = torch.load(ck, weights_only=True)
    assert obj["provenance"]["metrics"]["epoch"] == res.best_epoch
    assert obj["provenance"]["metrics"]["val_mae"] == pytest.approx(res.best_val_mae)
    assert obj["provenance"]["config"]["train"]["checkpoint"] == str(ck)


def test_config_messages_name_the_field():
    for kw, msg in [(dict(epochs=0), "epochs must be in [1, inf), got 0"),
                    (dict(batch_size=0), "batch_size must be in [1, inf), got 0"),
                    (dict(lr=0.0), "lr must be in (0, inf), got 0.0"),
                    (dict(lr_min=0.0), "lr_min must be in (0, inf), got 0.0"),
                    (dict(restart_epochs=0), "restart_epochs must be in [1, inf), got 0"),
                    (dict(patience=-1), "patience must be in [0, inf), got -1"),
                    (dict(weight_decay=-1.0), "weight_decay must be in [0, inf), got -1.0"),
                    (dict(seed=-1), "seed must be in [0, inf), got -1"),
                    (dict(time_limit_s=0.0), "time_limit_s must be in (0, inf), got 0.0"),
                    (dict(log_every=-1), "log_every must be in [0, inf), got -1"),
                    (dict(lr_schedule="time_cosine"), "lr_schedule 'time_cosine' needs time_limit_s"),
                    (dict(snapshots=2), "snapshots need lr_schedule 'time_cosine' (cycles are laid out on the time "
                                        "budget)")]:
        with pytest.raises(ConfigError) as err:
            TrainConfig(**kw)
        prefix = "" if "lr_schedule" in kw or "snapshots" in kw else "SCANN training config: "
        assert str(err.value) == prefix + msg


def test_time_lr_cycles_at_the_default_fraction():
    """snapshot_fraction 0.3, two cycles of 0.15 after a main cosine ending at 0.7: at 0.73 the first cycle is
    0.2 of its way down from lr / 5."""
    c = TrainConfig(lr=1.0, lr_min=0.1, lr_schedule="time_cosine", time_limit_s=1.0, snapshots=2)
    lr, phase = c.time_lr(0.73)
    assert phase == 1 and lr == pytest.approx(0.1 + 0.5 * 0.1 * (1 + math.cos(math.pi * 0.2)))
    lr, phase = c.time_lr(0.94)
    assert phase == 2 and lr == pytest.approx(0.1 + 0.5 * 0.1 * (1 + math.cos(math.pi * 0.6)))


def test_one_step_per_epoch_restarts_every_step(data):
    train, val = data
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-3, lr_min=1e-4, restart_epochs=1, log_every=1, patience=10,
                      device="cpu")
    events = list(train_iter(ScannConfig(**MC, target_names=["y"]), train, val, cfg))
    assert [e["lr"] for e in events if e["event"] == "step"] == pytest.approx([1e-3] * 3)  # T_0 = 1 step


def test_never_improving_and_one_shot_stop(data):
    """A validation set without targets never improves (MAE NaN): best_epoch stays -1 and patience 1 stops
    after the first epoch. A stop request is honoured once: training does not resume when stop() turns False."""
    train, val = data
    mconf = ScannConfig(**MC, target_names=["y"])
    nan_val = val.subset([0, 1])
    nan_val.targets[:] = np.nan
    with pytest.warns(RuntimeWarning):
        events = list(train_iter(mconf, train, nan_val, TrainConfig(epochs=5, batch_size=8, patience=1, device="cpu")))
    assert [e["event"] for e in events] == ["epoch", "done"]
    assert events[-1]["reason"] == "early_stopping" and events[-1]["best_epoch"] == -1
    assert events[0]["improved"] is False and events[-1]["best_val_mae"] == [math.inf]
    calls = []

    def once():  # True on the 2nd call only
        calls.append(1)
        return len(calls) == 2

    events = list(train_iter(mconf, train, val, TrainConfig(epochs=5, batch_size=2, log_every=0, device="cpu"),
                             stop=once))
    assert [e["event"] for e in events] == ["epoch", "done"] and events[-1]["reason"] == "stopped"
    assert events[0]["step"] == 1 and len(calls) == 2


def test_checkpoint_overwrites_and_keeps_the_voronoi_settings(data, tmp_path):
    train, val = data
    mconf = ScannConfig(**MC, target_names=["y"])
    ck = tmp_path / "best.pt"
    ck.write_text("an older checkpoint")
    res = fit(mconf, train, val, TrainConfig(epochs=1, batch_size=8, device="cpu", checkpoint=str(ck)),
              voronoi=VoronoiConfig(cutoff=3.0))
    _, meta = load_checkpoint(ck)
    assert meta["voronoi_config"]["cutoff"] == 3.0
    ev = list(train_iter(mconf, train, val, TrainConfig(epochs=1, batch_size=8, device="cpu", checkpoint=str(ck)),
                         voronoi=VoronoiConfig(cutoff=2.5)))
    assert load_checkpoint(ck)[1]["voronoi_config"]["cutoff"] == 2.5
    assert ev[-1]["best_val_mae"] == ev[-1]["result"].best_val_mae and res.best_epoch == 0


def test_atomic_save_and_load_errors(tmp_path):
    import datetime

    from napari_cxdi.scann.train import _atomic_torch_save

    deep = tmp_path / "a" / "b" / "m.pt"
    _atomic_torch_save({"x": torch.ones(2)}, deep)  # folders created (ensemble files use this path)
    assert torch.load(deep, weights_only=True)["x"].tolist() == [1.0, 1.0]
    with pytest.raises(Exception, match="input"):
        _atomic_torch_save({"x": 1}, deep, protected=[deep])
    missing = tmp_path / "none.pt"
    with pytest.raises(InputFileError, match=r"none\.pt: checkpoint does not exist$") as err:
        load_checkpoint(missing)
    assert err.value.path == str(missing)
    bad = tmp_path / "bad.pt"
    bad.write_text("x")
    with pytest.raises(InputFileError, match=r"not a readable PyTorch checkpoint \(UnpicklingError: ") as err:
        load_checkpoint(bad)
    assert err.value.path == str(bad)
    torch.manual_seed(0)
    good = save_checkpoint(tmp_path / "g.pt", build_model(ScannConfig(**MC, target_names=["y"])))
    obj = torch.load(good, weights_only=True)
    obj["when"] = datetime.date(2020, 1, 1)  # a pickled object: never loaded
    torch.save(obj, tmp_path / "evil.pt")
    with pytest.raises(InputFileError, match=r"not a readable PyTorch checkpoint \(UnpicklingError: "):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.MonkeyPatch.context() as mp:  # explicit, even where the environment turns the default off
        mp.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
        with pytest.raises(InputFileError, match=r"not a readable PyTorch checkpoint \(UnpicklingError: "):
            load_checkpoint(tmp_path / "evil.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(InputFileError, match=r"not a SCANN checkpoint \(expected format 'napari-cxdi-scann/1'\)$") as err:
        load_checkpoint(tmp_path / "other.pt")
    assert err.value.path == str(tmp_path / "other.pt")


def test_anchored_data_messages(data, monkeypatch):
    import napari_cxdi.scann.train as tr

    train, val = data
    mconf = ScannConfig(**MC, target_names=["y"])
    with pytest.raises(DataValidationError, match=r"^training and validation sets must not be empty$"):
        list(train_iter(mconf, train.subset([]), val))
    with pytest.raises(DataValidationError, match=r"^the training set has no target values$"):
        list(train_iter(mconf, train.subset([3]), val))
    monkeypatch.setattr(tr, "train_iter", lambda *a, **k: iter([]))
    with pytest.raises(CancelledError, match=r"^training ended without a result$"):
        fit(mconf, train, val)


def test_target_weights_checks():
    assert TrainConfig(target_weights=[1, 2.5]).target_weights == (1.0, 2.5)
    assert TrainConfig().target_weights is None
    for bad, msg in [([1.0, 0.0], r"target_weights must be > 0, one per target, got \(1.0, 0.0\)"),
                     ([1.0, -2.0], r"must be > 0, one per target, got \(1.0, -2.0\)"),
                     ([], r"target_weights must be > 0, one per target, got \(\)"),
                     ([1.0, float("nan")], "target_weights must be finite"), ([float("inf")], "must be finite")]:
        with pytest.raises(ConfigError, match=msg):
            TrainConfig(target_weights=bad)


@pytest.fixture(scope="module")
def data2():
    torch.set_num_threads(1)
    frames = [molecule(n) for n in ("H2O", "CH4", "NH3", "CH3OH", "C2H6", "HCN")]
    ys = [[1.0, -3.0], [2.0, np.nan], [4.0, -1.0], [np.nan, 0.5], [3.0, -2.0], [5.0, 2.0]]
    for f, (a, b) in zip(frames, ys):
        f.info["a"], f.info["b"] = a, b
    envs = featurize(structures_from_atoms(frames, ["a", "b"], units=["eV", "eV"]), VoronoiConfig(), n_jobs=1,
                     cache=False)
    return envs.subset([0, 1, 2, 3]), envs.subset([4, 5])


@pytest.mark.parametrize("loss", ["l1", "mse"])
def test_target_weights_scale_each_targets_loss_term(data2, loss):
    """The first step's loss with weights (w_a, w_b): mean over the known entries of w_t * |d| (or w_t * d^2),
    d the standardised error; a NaN target leaves its entry out, not its weight."""
    train, val = data2
    mconf = ScannConfig(**MC, n_targets=2, target_names=["a", "b"])
    cfg = TrainConfig(epochs=1, batch_size=3, lr=1e-3, lr_min=1e-4, log_every=1, device="cpu", seed=3, loss=loss,
                      target_weights=(0.5, 3.0))
    first = next(e for e in train_iter(mconf, train, val, cfg) if e["event"] == "step")
    d, ok = _first_batch_error(mconf, train, seed=3, batch_size=3)
    per = d.abs() if loss == "l1" else d ** 2
    assert ok.sum() < ok.numel()  # the batch has a missing target, so the mask matters
    expect = float((per * torch.tensor([0.5, 3.0]))[ok].mean())
    assert first["loss"] == pytest.approx(expect, rel=1e-5)
    plain = next(e for e in train_iter(mconf, train, val, TrainConfig(**{**cfg.__dict__, "target_weights": None}))
                 if e["event"] == "step")
    assert plain["loss"] == pytest.approx(float(per[ok].mean()), rel=1e-5)
    assert abs(plain["loss"] - first["loss"]) > 1e-3


def test_target_weights_need_one_per_target(data2):
    train, val = data2
    mconf = ScannConfig(**MC, n_targets=2, target_names=["a", "b"])
    with pytest.raises(ConfigError, match=r"target_weights has 3 values for 2 targets: give one weight per target"):
        next(train_iter(mconf, train, val, TrainConfig(epochs=1, device="cpu", target_weights=(1, 2, 3))))
