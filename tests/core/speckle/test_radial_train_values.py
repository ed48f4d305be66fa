"""Streaming training of the radial speckle models (speckle/radial_train.py), in this process (``workers=0``)
and with a fake clock: configuration errors, the simulated feature vectors and their seeds, the budget and the
cosine learning rate, fresh chunks, what the returned model carries (scaling, read-out, calibration, domain,
provenance), continuing from a model, and the process pool giving the same model as the serial path."""

from __future__ import annotations

import copy
import json
import os
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_cxdi.errors import ConfigError
from napari_cxdi.progress import drain
from napari_cxdi.speckle import radial_train as rt
from napari_cxdi.speckle.calibration import reliability
from napari_cxdi.speckle.dataset import SpeckleDatasetConfig, simulate_pattern
from napari_cxdi.speckle.disks import N_MAX, N_MIN
from napari_cxdi.speckle.evaluate import classification_report
from napari_cxdi.speckle.features import FeatureConfig, add_counts_noise, radial_features, to_feature_grid
from napari_cxdi.speckle.radial import RadialNet, domain_statistics, fit_readout
from napari_cxdi.speckle.radial_train import RadialTrainConfig, simulate_features, train_radial

torch.set_num_threads(1)
FEAT = {"window": 129, "bin": 3, "block": 11, "r_min": 4, "r_max": 28}    # small: 43 x 43 binned, 25 rings
FC = FeatureConfig.from_dict(FEAT)
CLASSES = (2, 20)


def _cfg(**kw) -> RadialTrainConfig:
    base = dict(n_values=CLASSES, chunk_per_class=1, max_per_class=1, val_per_class=3, noisy_copies=1, hidden=8,
                dropout=0.0, batch_size=1024, max_minutes=1.0, workers=0, features=FEAT)
    return RadialTrainConfig(**{**base, **kw})


class Ticks:
    """Fake clock: ``start`` (not 0: ``t + t0`` must differ from ``t - t0``) at the first reading, then
    ``step`` seconds more at every reading."""

    def __init__(self, step: float = 1.0, start: float = 1000.0):
        self.step, self.start, self.readings = step, start, []

    def __call__(self) -> float:
        t = self.start + self.step * len(self.readings)
        self.readings.append(t)
        return t


class Frozen:
    """Fake clock: ``start`` at the first reading (t0), then always ``start + elapsed``."""

    def __init__(self, elapsed: float, start: float = 1000.0):
        self.elapsed, self.start, self.calls = elapsed, start, 0

    def __call__(self) -> float:
        self.calls += 1
        return self.start if self.calls == 1 else self.start + self.elapsed


def _plain(d):
    """A config dict as stored in provenance (JSON types: tuples become lists)."""
    return json.loads(json.dumps(d))


def _run(cfg, clock, **kw):
    events = []
    clf = drain(train_radial(cfg, clock=clock, **kw), events.append)
    return clf, events


# --------------------------------------------------------------------------- configuration
def test_config_defaults_and_conversions():
    c = RadialTrainConfig()
    assert (c.kind, c.arch, c.hidden, c.dropout) == ("mono", "mlp", 256, 0.1)
    assert c.n_values == tuple(range(N_MIN, N_MAX + 1))
    assert (c.photons, c.noisy_copies, c.clean, c.chunk_per_class, c.max_minutes) == ((3e4, 3e7), 2, True, 8, 10.0)
    assert (c.max_per_class, c.val_per_class, c.lr, c.weight_decay, c.batch_size) == (2000, 40, 2e-3, 1e-4, 256)
    assert (c.epochs_per_chunk, c.max_epochs, c.workers, c.method, c.seed, c.val_seed) == (
        3, 1_000_000, 1, "analytic", 1, 2)
    assert c.features == FeatureConfig().to_dict()
    d = RadialTrainConfig(n_values=[np.int64(3), 5.0], photons=[10, np.float32(100)])
    assert d.n_values == (3, 5) and type(d.n_values) is tuple and all(type(n) is int for n in d.n_values)
    assert d.photons == (10.0, 100.0) and type(d.photons) is tuple and all(type(p) is float for p in d.photons)
    assert RadialTrainConfig.from_dict(d.to_dict()) == d
    assert d.validate() is d


@pytest.mark.parametrize("kw, message", [
    ({"kind": "crystal"}, "unknown kind 'crystal'; choose one of mono, poly"),
    ({"arch": "vit"}, "unknown architecture 'vit'; choose one of mlp, cnn1d$"),
    ({"photons": (0.0, 10.0)}, r"photon range must be 0 < low <= high, got \(0.0, 10.0\)"),
    ({"photons": (-1.0, 10.0)}, "photon range"),
    ({"photons": (20.0, 10.0)}, "photon range"),
    ({"noisy_copies": -1}, "need noise-free and/or noisy copies"),
    ({"noisy_copies": 0, "clean": False}, "need noise-free and/or noisy copies"),
    ({"max_minutes": 0.0}, "max_minutes, chunk_per_class must be > 0 and val_per_class >= 2"),
    ({"max_minutes": -1.0}, "max_minutes"),
    ({"chunk_per_class": 0}, "max_minutes"),
    ({"val_per_class": 1}, "max_minutes"),
    ({"seed": 4, "val_seed": 4}, "training and validation seeds must differ"),
    ({"workers": -1}, r"workers must be >= 0 \(0: simulate in this process\), got -1"),
    ({"features": {"window": 128}}, "window 128"),
])
def test_config_errors(kw, message):
    with pytest.raises(ConfigError, match="^" + message):
        RadialTrainConfig(**kw)


def test_config_boundaries_are_accepted():
    for kw in ({"photons": (5.0, 5.0)}, {"photons": (0.5, 1.0)}, {"photons": (1.0, 2.0)}, {"noisy_copies": 0},
               {"noisy_copies": 0, "clean": True},
               {"noisy_copies": 1, "clean": False}, {"max_minutes": 1e-6}, {"chunk_per_class": 1},
               {"val_per_class": 2}, {"workers": 0}, {"kind": "poly", "arch": "cnn1d"}):
        RadialTrainConfig(**kw).validate()
    # validate() itself checks (not only construction): a config changed behind its back is refused
    c = RadialTrainConfig()
    object.__setattr__(c, "seed", c.val_seed)
    with pytest.raises(ConfigError, match="seeds must differ"):
        c.validate()
    with pytest.raises(ConfigError, match="seeds must differ"):
        drain(train_radial(c))


# --------------------------------------------------------------------------- simulated features
def _grid(kind, n, j, seed, method="analytic"):
    cfg = SpeckleDatasetConfig(n_values=CLASSES, per_class=1, window=FC.window, bin=FC.bin, polydisperse=kind == "poly",
                               method=method, seed=seed, block=FC.block)
    return to_feature_grid(simulate_pattern(n, j, cfg)[0][None], FC, input_bin=FC.bin)[0]


def test_simulated_features_are_the_seeded_patterns_and_noise():
    out = simulate_features("mono", CLASSES, 7, 3, 2, photons=(1e4, 1e6), noisy_copies=2, features=FEAT)
    assert set(out) == {"x", "y", "photons", "j"}
    # rows: the noise-free copies (class by class, pattern by pattern), then each noisy copy in the same order
    np.testing.assert_array_equal(out["y"], [2, 2, 20, 20] * 3)
    np.testing.assert_array_equal(out["j"], [3, 4, 3, 4] * 3)
    assert out["x"].shape == (12, FC.n_features) and out["x"].dtype == np.float32
    assert np.all(np.isinf(out["photons"][:4])) and np.all((out["photons"][4:] >= 1e4) & (out["photons"][4:] <= 1e6))
    for row, (n, j) in enumerate([(2, 3), (2, 4), (20, 3), (20, 4)]):
        g = _grid("mono", n, j, 7)
        np.testing.assert_allclose(out["x"][row], radial_features(g[None], FC, FC.bin, counts=False)[0], rtol=1e-6)
        for c in range(2):
            rng = np.random.default_rng(np.random.SeedSequence([7, n, j, 1 + c]))
            dose = 10 ** rng.uniform(4.0, 6.0)
            noisy = add_counts_noise(g, dose, rng, FC)[0]
            r = 4 + 4 * c + row
            assert out["photons"][r] == pytest.approx(dose, rel=1e-12)
            np.testing.assert_allclose(out["x"][r], radial_features(noisy[None], FC, FC.bin, counts=True)[0],
                                       rtol=1e-5, atol=1e-6)


def test_simulated_features_options():
    fixed = simulate_features("mono", (5,), 7, 0, 2, photons=(1e4, 1e6), noisy_copies=1, clean=False,
                              features=FEAT, fixed_photons=3e5)
    np.testing.assert_array_equal(fixed["photons"], [3e5, 3e5])
    np.testing.assert_array_equal(fixed["y"], [5, 5])
    rng = np.random.default_rng(np.random.SeedSequence([7, 5, 1, 1]))      # no log-uniform draw at a fixed dose
    noisy = add_counts_noise(_grid("mono", 5, 1, 7), 3e5, rng, FC)[0]
    np.testing.assert_allclose(fixed["x"][1], radial_features(noisy[None], FC, FC.bin, counts=True)[0], rtol=1e-5,
                               atol=1e-6)
    clean = simulate_features("poly", (5,), 7, 0, 1, noisy_copies=0, features=FEAT)
    poly = radial_features(_grid("poly", 5, 0, 7)[None], FC, FC.bin, counts=False)[0]
    np.testing.assert_allclose(clean["x"][0], poly, rtol=1e-6)
    mono = simulate_features("mono", (5,), 7, 0, 1, noisy_copies=0, features=FEAT)["x"][0]
    assert not np.allclose(clean["x"][0], mono)
    # default features: the shipped 513 window (242 features)
    assert simulate_features("mono", (2,), 7, 0, 1, noisy_copies=0)["x"].shape == (1, FeatureConfig().n_features)
    # default copies and doses: the noise-free one and two noisy ones at 3e4 .. 3e7 photons
    d = simulate_features("mono", (5,), 7, 0, 1, features=FEAT)
    assert np.isinf(d["photons"][0]) and np.all((d["photons"][1:] >= 3e4) & (d["photons"][1:] <= 3e7))
    assert len(d["y"]) == 3


def test_simulated_features_follow_the_feature_window_block_and_bin():
    """The patterns are simulated with the feature settings: a window larger than the shipped one, another
    central block and another bin reach the simulation and the noise."""
    big = {"window": 525, "bin": 3, "block": 11, "r_min": 4, "r_max": 80}
    assert simulate_features("mono", (2,), 7, 0, 1, noisy_copies=0, features=big)["x"].shape == (
        1, FeatureConfig.from_dict(big).n_features)
    other = {"window": 75, "bin": 5, "block": 5, "r_min": 2, "r_max": 10}
    fc = FeatureConfig.from_dict(other)
    out = simulate_features("mono", (5,), 7, 0, 1, noisy_copies=1, features=other, fixed_photons=1e5)
    cfg = SpeckleDatasetConfig(n_values=(5,), per_class=1, window=75, bin=5, method="analytic", seed=7, block=5)
    g = to_feature_grid(simulate_pattern(5, 0, cfg)[0][None], fc, input_bin=5)[0]
    np.testing.assert_allclose(out["x"][0], radial_features(g[None], fc, 5, counts=False)[0], rtol=1e-6)
    noisy = add_counts_noise(g, 1e5, np.random.default_rng(np.random.SeedSequence([7, 5, 0, 1])), fc)[0]
    np.testing.assert_allclose(out["x"][1], radial_features(noisy[None], fc, 5, counts=True)[0], rtol=1e-5, atol=1e-6)


def test_noisy_copies_are_read_as_counts_at_any_dose():
    # 2e9 photons: more than looks_like_counts accepts as counts, but the simulated copies are counts
    out = simulate_features("mono", (5,), 7, 0, 1, noisy_copies=1, clean=False, features=FEAT, fixed_photons=2e9)
    rng = np.random.default_rng(np.random.SeedSequence([7, 5, 0, 1]))
    noisy = add_counts_noise(_grid("mono", 5, 0, 7), 2e9, rng, FC)[0]
    np.testing.assert_allclose(out["x"][0], radial_features(noisy[None], FC, FC.bin, counts=True)[0], rtol=1e-5,
                               atol=1e-6)


def test_chunk_arguments_carry_the_config():
    cfg = _cfg(kind="poly", photons=(1e3, 1e5), noisy_copies=3, clean=False, method="analytic")
    args = rt._chunk_args(cfg, 9, 4, 2)
    assert args == {"kind": "poly", "n_values": CLASSES, "seed": 9, "start": 4, "count": 2, "photons": (1e3, 1e5),
                    "noisy_copies": 3, "clean": False, "method": "analytic", "features": FEAT}
    out = rt._chunk_job(args)
    ref = simulate_features(**args)
    np.testing.assert_array_equal(out["x"], ref["x"])
    np.testing.assert_array_equal(out["j"], [4, 5, 4, 5] * 3)


# --------------------------------------------------------------------------- pool or this process
def test_in_process_chunks_are_simulated_when_asked_for():
    calls = []

    def job(args):
        calls.append(args)
        return {"v": args * 2}

    with rt.simulation_pool(0) as pool:
        a, b = pool.submit(job, 1), pool.submit(job, 2)
    assert not a.done() and calls == []                 # nothing simulated yet
    rt.wait_first([a, b], 5.0)                          # waiting simulates the first one only
    assert a.done() and not b.done() and calls == [1]
    assert a.result() == {"v": 2} and a.result() is a.result() and calls == [1]   # once
    assert a.cancel() is False and b.cancel() is True
    assert b.result() == {"v": 4} and calls == [1, 2]


def test_process_pool_and_waiting_on_it(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    with rt.simulation_pool(2) as pool:                 # no job submitted: no process is started
        assert isinstance(pool, ProcessPoolExecutor) and pool._max_workers == 2
        assert pool._mp_context.get_start_method() == "spawn"
        assert os.environ["OMP_NUM_THREADS"] == "1" and os.environ["MKL_NUM_THREADS"] == "1"
    assert os.environ["OMP_NUM_THREADS"] == "4"
    done, never = Future(), Future()
    done.set_result(1)
    import time

    t = time.perf_counter()
    rt.wait_first([never, done], 3.0)                   # returns at the first finished future
    rt.wait_first([never], 0.05)                        # returns at the timeout
    assert time.perf_counter() - t < 2.0


# --------------------------------------------------------------------------- budget, schedule, chunks
def test_budget_stops_at_the_first_reading_past_it_and_the_lr_follows_the_cosine():
    """One chunk (nothing to wait for); the clock ticks 1 s per reading. Readings: t0, the validation
    event (1 s), then before epoch e (0-based) at e + 2 + ceil(e / 10) s (one extra reading per epoch
    event: epochs 1, 11, 21, ...): 60 s is first passed before epoch 53 (61 s), so 53 epochs run."""
    cfg = _cfg()
    clock = Ticks()
    clf, events = _run(cfg, clock)
    m = clf.provenance["metrics"]
    assert m["epochs"] == 53 and m["patterns_per_class"] == 1 and m["feature_vectors"] == 4
    assert m["train_seconds"] == clock.readings[-1] - 1000.0 == 62.0
    stages = [e["stage"] for e in events]
    assert stages == ["validation"] + ["epoch"] * 6 + ["calibrate"]
    assert events[0] == {"stage": "validation", "n": 12, "seconds": 1.0}
    ep = events[1:-1]
    assert [e["epoch"] for e in ep] == [1, 11, 21, 31, 41, 51]
    assert [e["seconds"] for e in ep] == [3.0, 14.0, 25.0, 36.0, 47.0, 58.0]
    for e in ep:
        # the learning rate was set from the reading before the epoch (one tick before the event's)
        assert e["lr"] == pytest.approx(2e-3 * 0.5 * (1 + np.cos(np.pi * (e["seconds"] - 1.0) / 60.0)), rel=1e-12)
        assert e["samples"] == 4 and e["patterns_per_class"] == 1
    assert ep[0]["lr"] > ep[-1]["lr"] > 0


def test_budget_reading_equal_to_the_budget_still_trains():
    # a reading exactly at the budget trains (with lr 0), the next one stops
    clf, _ = _run(_cfg(max_minutes=1.0), Ticks(step=10.0))
    # readings: t0, 10 (validation), 20 (epoch 0), 30 (event 1), 40, 50, 60 (epochs 1-3), 70 > 60: stop
    assert clf.provenance["metrics"]["epochs"] == 4
    assert clf.provenance["metrics"]["train_seconds"] == 80.0


def test_max_epochs_and_the_learning_rate_at_the_end_of_the_budget():
    cfg = _cfg(max_epochs=3)
    torch.manual_seed(cfg.seed)
    net0 = RadialNet(cfg.arch, FC.n_features, FC.n_rings, 2, cfg.hidden, cfg.dropout)
    # every reading at exactly the budget: the cosine is at its end, lr = 0 and AdamW leaves the weights
    clf, events = _run(cfg, Frozen(60.0))
    assert clf.provenance["metrics"]["epochs"] == 3
    assert events[1]["lr"] == 0.0
    for k, v in net0.state_dict().items():
        torch.testing.assert_close(clf.net.state_dict()[k], v, rtol=0, atol=0)
    # half way: lr = lr0 / 2 and the weights move
    clf, events = _run(cfg, Frozen(30.0))
    assert events[1]["lr"] == pytest.approx(1e-3, rel=1e-12) and events[1]["seconds"] == 30.0
    assert any(not torch.equal(clf.net.state_dict()[k], v) for k, v in net0.state_dict().items())
    # at the start: the full learning rate
    clf, events = _run(cfg, Frozen(0.0))
    assert clf.provenance["metrics"]["epochs"] == 3 and events[1]["lr"] == 2e-3


def test_first_epoch_loss_accuracy_and_feature_scaling():
    """One epoch, one batch, no dropout: the reported loss is the cross-entropy of the seeded initial
    network on the standardised first chunk; the accuracy that of the trained network on the validation split;
    the scaling is the first chunk's mean and (floored) standard deviation."""
    cfg = _cfg(max_epochs=1, chunk_per_class=2, max_per_class=2)
    clf, events = _run(cfg, Frozen(0.0))
    first = simulate_features(**rt._chunk_args(cfg, cfg.seed, 0, 2))
    mean = first["x"].mean(0)
    std = first["x"].std(0) + 1e-3 * (np.abs(mean) + 1e-3)
    np.testing.assert_allclose(clf.feature_mean, mean.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(clf.feature_std, std.astype(np.float32), rtol=1e-6)
    assert clf.feature_mean.dtype == np.float32 and clf.feature_std.dtype == np.float32
    torch.manual_seed(cfg.seed)
    net0 = RadialNet(cfg.arch, FC.n_features, FC.n_rings, 2, cfg.hidden, cfg.dropout)
    z = torch.from_numpy(((first["x"] - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32))
    y = torch.from_numpy(np.searchsorted(CLASSES, first["y"]))
    with torch.no_grad():
        loss0 = float(F.cross_entropy(net0(z), y))
    ep = events[1]
    assert ep["epoch"] == 1 and ep["train_loss"] == pytest.approx(loss0, rel=1e-5) and ep["samples"] == 8
    val = simulate_features(**rt._chunk_args(cfg, cfg.val_seed, 0, cfg.val_per_class))
    clf.net.eval()
    with torch.no_grad():
        acc = float((clf.net(torch.from_numpy(clf.standardize(val["x"]))).argmax(1).numpy()
                     == np.searchsorted(CLASSES, val["y"])).mean())
    assert ep["val_accuracy"] == acc
    # two batches: the mean of the two losses weighted by their sizes (checked against one batch of all)
    clf2, events2 = _run(_cfg(max_epochs=1, chunk_per_class=2, max_per_class=2, batch_size=5), Frozen(0.0))
    assert events2[1]["train_loss"] == pytest.approx(loss0, rel=0.1) and events2[1]["train_loss"] != ep["train_loss"]


def test_fresh_chunks_arrive_every_epochs_per_chunk_passes():
    """In this process a chunk is simulated when the training waits for it: after ``epochs_per_chunk``
    passes over the cache. Elapsed time frozen at 0: only ``max_epochs`` ends the run."""
    cfg = _cfg(max_per_class=3, epochs_per_chunk=2, max_epochs=12)
    clf, events = _run(cfg, Frozen(0.0))
    m = clf.provenance["metrics"]
    assert m["patterns_per_class"] == 3 and m["feature_vectors"] == 3 * 2 * 2
    ep = {e["epoch"]: e for e in events if e["stage"] == "epoch"}
    # epochs 1-2 on chunk 0; chunk 1 before epoch 3, chunk 2 before epoch 5; epoch 11 on all three
    assert ep[1]["patterns_per_class"] == 1 and ep[1]["samples"] == 4
    assert ep[11]["patterns_per_class"] == 3 and ep[11]["samples"] == 12
    cfg = _cfg(max_per_class=3, epochs_per_chunk=2, max_epochs=4)
    assert _run(cfg, Frozen(0.0))[0].provenance["metrics"]["patterns_per_class"] == 2
    cfg = _cfg(max_per_class=3, epochs_per_chunk=3, max_epochs=4)
    assert _run(cfg, Frozen(0.0))[0].provenance["metrics"]["patterns_per_class"] == 2
    cfg = _cfg(max_per_class=3, epochs_per_chunk=3, max_epochs=3)
    assert _run(cfg, Frozen(0.0))[0].provenance["metrics"]["patterns_per_class"] == 1
    # chunk sizes other than 1, and a last chunk past max_per_class (ceil)
    cfg = _cfg(chunk_per_class=2, max_per_class=3, epochs_per_chunk=1, max_epochs=5)
    assert _run(cfg, Frozen(0.0))[0].provenance["metrics"]["patterns_per_class"] == 4


def test_no_new_chunk_is_started_in_the_last_tenth_of_the_budget():
    cfg = _cfg(max_per_class=3, epochs_per_chunk=1, max_epochs=6)
    assert _run(cfg, Frozen(54.0))[0].provenance["metrics"]["patterns_per_class"] == 1       # 0.9 x 60 s
    assert _run(cfg, Frozen(53.9))[0].provenance["metrics"]["patterns_per_class"] == 3


# --------------------------------------------------------------------------- the returned model
def test_model_calibration_domain_and_provenance():
    cfg = _cfg(max_epochs=15, chunk_per_class=2, max_per_class=4, epochs_per_chunk=3, val_per_class=4, dropout=0.1)
    clf, events = _run(cfg, Frozen(10.0), name="tiny")
    assert clf.name == "tiny" and list(clf.classes) == list(CLASSES) and clf.features == FC
    assert clf.net.config() == RadialNet("mlp", FC.n_features, FC.n_rings, 2, 8, 0.1).config()
    m = clf.provenance["metrics"]
    assert set(m) == {"validation", "temperature", "readout_weight", "val_ece_before", "val_ece_after",
                      "train_seconds", "epochs", "patterns_per_class", "feature_vectors", "torch_threads"}
    assert m["train_seconds"] == 10.0 and m["torch_threads"] == torch.get_num_threads()
    assert m["epochs"] == 15 and m["patterns_per_class"] == 4 and m["feature_vectors"] == 16
    c = clf.provenance["config"]
    assert c["train"] == _plain(cfg.to_dict()) and c["name"] == "tiny" and c["history"] == []
    assert {"config", "metrics"} <= set(clf.provenance)
    # the read-out, temperature, ECE, domain statistics and report, recomputed from the validation split
    val = simulate_features(**rt._chunk_args(cfg, cfg.val_seed, 0, cfg.val_per_class))
    train = [simulate_features(**rt._chunk_args(cfg, cfg.seed, k, 2)) for k in (0, 2)]
    yval = np.searchsorted(CLASSES, val["y"])
    ref = copy.deepcopy(clf)
    chosen = fit_readout(ref, np.concatenate([t["x"] for t in train]), np.concatenate([t["y"] for t in train]),
                         val["x"], val["y"])
    assert m["readout_weight"] == chosen["weight"] and clf.readout.get("weight", 0.0) == chosen["weight"]
    assert clf.temperature == pytest.approx(ref.temperature, rel=1e-9) and m["temperature"] == clf.temperature
    before = reliability(torch.softmax(torch.from_numpy(clf.logits(val["x"])), 1).numpy(), yval)
    probs = clf.predict_features(val["x"])["probs"]
    after = reliability(probs, yval)
    assert m["val_ece_before"] == pytest.approx(before["ece"], rel=1e-9, abs=1e-12)
    assert m["val_ece_after"] == pytest.approx(after["ece"], rel=1e-9, abs=1e-12)
    assert m["val_ece_before"] != m["val_ece_after"]
    dom = domain_statistics(copy.deepcopy(clf), val["x"], val["y"])
    assert clf.domain["threshold"] == pytest.approx(dom["threshold"], rel=1e-9)
    assert clf.domain["residual_threshold"] == pytest.approx(dom["residual_threshold"], rel=1e-9)
    rep = classification_report(val["y"], np.asarray(CLASSES)[probs.argmax(1)], np.asarray(CLASSES))
    assert m["validation"] == {k: rep[k] for k in ("accuracy", "macro_f1", "n", "errors")}
    assert m["validation"]["n"] == 16
    assert events[-1] == {"stage": "calibrate"}


def test_seeds_make_runs_repeat():
    cfg = _cfg(max_epochs=4, dropout=0.2, batch_size=3)
    a, _ = _run(cfg, Frozen(5.0))
    b, _ = _run(cfg, Frozen(5.0))
    for k, v in a.net.state_dict().items():
        torch.testing.assert_close(b.net.state_dict()[k], v, rtol=0, atol=0)
    c, _ = _run(_cfg(max_epochs=4, dropout=0.2, batch_size=3, seed=5), Frozen(5.0))
    assert not np.allclose(c.feature_mean, a.feature_mean)          # other training patterns
    assert c.domain["threshold"] != a.domain["threshold"]
    # the validation split comes from val_seed: another one gives another report
    d, _ = _run(_cfg(max_epochs=4, dropout=0.2, batch_size=3, val_seed=7), Frozen(5.0))
    np.testing.assert_array_equal(d.feature_mean, a.feature_mean)
    assert d.domain["threshold"] != a.domain["threshold"]


def test_continuing_from_a_model():
    cfg = _cfg(max_epochs=3)
    init, _ = _run(cfg, Frozen(10.0), name="first")
    cont_cfg = _cfg(max_epochs=3, seed=8)
    # lr 0 (every reading at the budget): the network and scaling stay those of the initial model
    clf, _ = _run(cont_cfg, Frozen(60.0), init=init, name="second")
    for k, v in init.net.state_dict().items():
        torch.testing.assert_close(clf.net.state_dict()[k], v, rtol=0, atol=0)
    assert clf.net is not init.net
    np.testing.assert_array_equal(clf.feature_mean, init.feature_mean)
    np.testing.assert_array_equal(clf.feature_std, init.feature_std)
    hist = clf.provenance["config"]["history"]
    assert hist == [init.provenance["config"]["train"]] and hist[0]["seed"] == 1
    again, _ = _run(_cfg(max_epochs=1, seed=9), Frozen(60.0), init=clf)
    assert again.provenance["config"]["history"] == [_plain(cfg.to_dict()), _plain(cont_cfg.to_dict())]
    with pytest.raises(ConfigError, match="^the initial model has another architecture or other classes$"):
        drain(train_radial(_cfg(hidden=16), init=init, clock=Frozen(0.0)))
    with pytest.raises(ConfigError, match="^the initial model has another architecture"):
        drain(train_radial(_cfg(n_values=(2, 19)), init=init, clock=Frozen(0.0)))


def test_process_pool_gives_the_serial_model():
    """One chunk only (so no timing decides which chunks arrive): one simulation process gives the same
    model as simulating in this process."""
    cfg = _cfg(max_epochs=2)
    serial, _ = _run(cfg, Frozen(5.0))
    pooled, events = _run(_cfg(max_epochs=2, workers=1), Frozen(5.0))
    assert events[0]["n"] == 12
    np.testing.assert_array_equal(pooled.feature_mean, serial.feature_mean)
    for k, v in serial.net.state_dict().items():
        torch.testing.assert_close(pooled.net.state_dict()[k], v, rtol=0, atol=0)
    assert pooled.provenance["metrics"]["validation"] == serial.provenance["metrics"]["validation"]


# --------------------------------------------------------------------------- against a hand-run epoch
def test_one_epoch_is_adamw_over_the_seeded_batches():
    """One epoch of two batches (no dropout) replayed by hand: the seeded initial network, the batches in
    the order of the seeded permutation, AdamW at the cosine's learning rate with the configured weight decay;
    the reported loss is the mean over the samples."""
    cfg = _cfg(max_epochs=1, chunk_per_class=2, max_per_class=2, batch_size=5, weight_decay=0.05)
    clf, events = _run(cfg, Frozen(20.0))
    first = simulate_features(**rt._chunk_args(cfg, cfg.seed, 0, 2))
    z = torch.from_numpy(clf.standardize(first["x"]))
    y = torch.from_numpy(np.searchsorted(CLASSES, first["y"]))
    torch.manual_seed(cfg.seed)
    net = RadialNet(cfg.arch, FC.n_features, FC.n_rings, 2, cfg.hidden, cfg.dropout)
    lr = 2e-3 * 0.5 * (1 + np.cos(np.pi * 20.0 / 60.0))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(cfg.seed))
    total = 0.0
    for i in (0, 5):
        b = perm[i:i + 5]
        loss = F.cross_entropy(net(z[b]), y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(b)
    assert events[1]["lr"] == pytest.approx(lr, rel=1e-12)
    assert events[1]["train_loss"] == pytest.approx(total / 8, rel=1e-5)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(clf.net.state_dict()[k], v, rtol=1e-5, atol=1e-7)


def test_a_reading_past_the_budget_after_waiting_trains_at_lr_zero():
    """Waiting for a chunk can end past the budget: that epoch still runs, with the cosine capped at its end
    (lr 0: the weights stay), and the next reading stops the run."""
    cfg = _cfg(max_per_class=2, epochs_per_chunk=1, max_epochs=1)
    one, _ = _run(cfg, Frozen(0.0))
    two, events = _run(cfg.with_(max_epochs=5), Readings([1.0, 0.0, 0.0, 0.0, 90.0]))
    # readings: t0, validation, before epoch 1 (0 s), its event (0 s), before epoch 2 (0 s), after the wait 90 s
    m = two.provenance["metrics"]
    assert m["epochs"] == 2 and m["patterns_per_class"] == 2
    for k, v in one.net.state_dict().items():
        torch.testing.assert_close(two.net.state_dict()[k], v, rtol=0, atol=0)


class Readings:
    """Fake clock: ``start`` then ``start + offset`` for the given offsets, then 1000 s more at every reading."""

    def __init__(self, offsets, start: float = 1000.0):
        self.values = [start] + [start + o for o in offsets]
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        if self.calls <= len(self.values):
            return self.values[self.calls - 1]
        return self.values[-1] + 1000.0 * (self.calls - len(self.values))


def test_chunks_submitted_and_wait_timeouts(monkeypatch):
    """What the training asks of its pool: the validation split, then the training chunks in order, one in
    flight beyond the one in use (``workers + 1``), none past ``max_per_class``; waits bounded by the time
    left."""
    submitted, waits = [], []
    real_pool, real_wait = rt.simulation_pool, rt.wait_first
    clock = Frozen(15.0)

    def pool(workers):
        assert workers == 0
        inner = real_pool(workers).__enter__()

        class Spy:
            def submit(self, fn, args):
                submitted.append((args["seed"], args["start"], args["count"], clock.calls))
                return inner.submit(fn, args)

        import contextlib

        @contextlib.contextmanager
        def cm():
            yield Spy()

        return cm()

    def wait(pending, timeout):
        waits.append((len(pending), timeout))
        real_wait(pending, timeout)

    monkeypatch.setattr(rt, "simulation_pool", pool)
    monkeypatch.setattr(rt, "wait_first", wait)
    cfg = _cfg(chunk_per_class=2, max_per_class=5, epochs_per_chunk=2, max_epochs=9)
    clf, _ = _run(cfg, clock)
    # (seed, start, count, clock readings so far): the validation split and the first chunk after t0; chunk
    # 1 at the reading before epoch 1 (3: after t0 and the validation event); chunk 2 as soon as chunk 1
    # came in, at the wait's reading before epoch 3 (epoch 1 event 4, before epoch 2: 5, before epoch 3: 6,
    # the wait: 7)
    assert submitted == [(2, 0, 3, 1), (1, 0, 2, 1), (1, 2, 2, 3), (1, 4, 2, 7)]
    assert waits == [(1, 45.0), (1, 45.0)]
    assert clf.provenance["metrics"]["patterns_per_class"] == 6


def test_history_from_models_without_full_provenance():
    cfg = _cfg(max_epochs=1)
    init, _ = _run(cfg, Frozen(0.0))
    init.provenance = {}
    assert _run(cfg, Frozen(0.0), init=init)[0].provenance["config"]["history"] == [None]
    init.provenance = {"config": {"train": {"seed": 3}}}
    assert _run(cfg, Frozen(0.0), init=init)[0].provenance["config"]["history"] == [{"seed": 3}]
    clf, _ = _run(_cfg(max_epochs=1, n_values=(20, 2)), Frozen(0.0))
    assert list(clf.classes) == [2, 20]


def test_name_default_and_the_accuracy_during_training():
    cfg = _cfg(max_epochs=1, n_values=(2, 8, 20), noisy_copies=0)
    clf, events = _run(cfg, Frozen(0.0))
    assert clf.name == "" and clf.provenance["config"]["name"] == ""
    val = simulate_features(**rt._chunk_args(cfg, cfg.val_seed, 0, cfg.val_per_class))
    clf.net.eval()
    with torch.no_grad():
        pred = clf.net(torch.from_numpy(clf.standardize(val["x"]))).argmax(1).numpy()
    # nine validation feature vectors: the share right is never one half (a flipped comparison would show)
    assert events[1]["val_accuracy"] == pytest.approx(float((pred == np.searchsorted((2, 8, 20), val["y"])).mean()))
