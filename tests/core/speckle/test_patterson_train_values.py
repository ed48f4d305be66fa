"""Streaming training of the Patterson speckle model (speckle/patterson_train.py), in this process
(``workers=0``) and with a fake clock: configuration errors, the simulated maps and features and their seeds,
the budget, the evaluation schedule and learning curve, the bounded sample pool, the loss of a step (ordinal
term, augmentation, bf16), what the returned model carries (scaling, temperature, domain, provenance and
CPU times), continuing from a model, and the process pool giving the same model as the serial path."""

from __future__ import annotations

import copy
import json
import resource
import time
from collections import namedtuple

import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError
from napari_cxdi.progress import drain
from napari_cxdi.speckle import patterson_train as pt
from napari_cxdi.speckle.calibration import fit_temperature, reliability
from napari_cxdi.speckle.dataset import SpeckleDatasetConfig, simulate_pattern
from napari_cxdi.speckle.disks import N_MAX, N_MIN
from napari_cxdi.speckle.evaluate import classification_report
from napari_cxdi.speckle.features import FeatureConfig, add_counts_noise, radial_features, to_feature_grid
from napari_cxdi.speckle.patterson import HALF, N_PEAK_FEATURES, PattersonNet, patterson_features, patterson_maps
from napari_cxdi.speckle.patterson_train import PattersonTrainConfig, ordinal_loss, random_views, simulate_inputs, \
    train_patterson
from napari_cxdi.speckle.radial import domain_statistics

from test_radial_train_values import Ticks  # the fake clock (tests/core/speckle)

torch.set_num_threads(1)
# small: 87 x 87 binned, the smallest window whose Patterson half-map (half 43) holds the peak annuli
FEAT = {"window": 261, "bin": 3, "block": 11, "r_min": 4, "r_max": 60}
FC = FeatureConfig.from_dict(FEAT)
H = 43
CLASSES = (2, 20)


def _cfg(**kw) -> PattersonTrainConfig:
    base = dict(n_values=CLASSES, chunk_per_class=1, max_per_class=1, val_per_class=3, noisy_copies=1, width=2,
                hidden=8, dropout=0.0, batch_size=1024, max_minutes=1.0, max_pool=100, half=H, workers=0,
                features=FEAT, poly_laws=("radius",))
    return PattersonTrainConfig(**{**base, **kw})


def _run(cfg, clock, **kw):
    events = []
    clf = drain(train_patterson(cfg, clock=clock, **kw), events.append)
    return clf, events


def _plain(d):
    return json.loads(json.dumps(d))


def _params_equal(a, b):
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


def _net0(cfg):
    torch.manual_seed(cfg.seed)
    return PattersonNet(FC.n_features + N_PEAK_FEATURES, len(cfg.n_values), cfg.width, cfg.hidden, cfg.dropout,
                        cfg.half)


# --------------------------------------------------------------------------- configuration
def test_config_defaults_and_conversions():
    c = PattersonTrainConfig()
    assert (c.polydisperse, c.poly_laws, c.n_values, c.photons) == (True, ("radius",), tuple(range(N_MIN, N_MAX + 1)),
                                                                     (3e4, 3e7))
    assert (c.noisy_copies, c.clean, c.chunk_per_class, c.max_minutes, c.max_per_class, c.max_pool) == (
        1, True, 4, 30.0, 5000, 60000)
    assert (c.val_per_class, c.width, c.hidden, c.dropout, c.half, c.lr, c.weight_decay, c.batch_size) == (
        30, 16, 256, 0.1, HALF, 2e-3, 1e-4, 64)
    assert (c.epochs_per_chunk, c.ordinal_weight, c.augment, c.bf16, c.workers, c.seed, c.val_seed) == (
        2.0, 0.0, False, False, 1, 11, 12)
    assert c.features == FeatureConfig().to_dict()
    d = PattersonTrainConfig(n_values=[np.int64(3), 5.0], photons=[10, np.float32(100)], poly_laws=["radius", "area"])
    assert d.n_values == (3, 5) and type(d.n_values) is tuple and all(type(n) is int for n in d.n_values)
    assert d.photons == (10.0, 100.0) and type(d.photons) is tuple and all(type(p) is float for p in d.photons)
    assert d.poly_laws == ("radius", "area") and type(d.poly_laws) is tuple
    assert PattersonTrainConfig(poly_laws=[np.str_("area")]).poly_laws == ("area",)
    assert type(PattersonTrainConfig(poly_laws=[np.str_("area")]).poly_laws[0]) is str
    assert PattersonTrainConfig.from_dict(d.to_dict()) == d
    assert d.validate() is d


@pytest.mark.parametrize("kw, message", [
    ({"photons": (0.0, 10.0)}, r"photon range must be 0 < low <= high, got \(0.0, 10.0\)$"),
    ({"photons": (20.0, 10.0)}, "photon range"),
    ({"noisy_copies": -1}, "need noise-free and/or noisy copies$"),
    ({"noisy_copies": 0, "clean": False}, "need noise-free and/or noisy copies$"),
    ({"max_minutes": 0.0}, "max_minutes, chunk_per_class must be > 0, val_per_class >= 2, max_pool >= 100$"),
    ({"chunk_per_class": 0}, "max_minutes"),
    ({"val_per_class": 1}, "max_minutes"),
    ({"max_pool": 99}, "max_minutes"),
    ({"poly_laws": ()}, r"poly_laws must be a non-empty subset of \('radius', 'area'\), got \(\)$"),
    ({"poly_laws": ("radius", "volume")}, r"poly_laws must be a non-empty subset of .*, got \('radius', 'volume'\)$"),
    ({"seed": 4, "val_seed": 4}, "training and validation seeds must differ$"),
    ({"ordinal_weight": -0.5}, "ordinal_weight must be >= 0, got -0.5$"),
    ({"ordinal_weight": float("nan")}, "ordinal_weight must be >= 0, got nan$"),
    ({"workers": -1}, r"workers must be >= 0 \(0: simulate in this process\), got -1$"),
    ({"features": {"window": 128}}, "window 128"),
])
def test_config_errors(kw, message):
    from napari_cxdi.speckle.disks import POLY_LAWS

    assert POLY_LAWS == ("radius", "area")
    with pytest.raises(ConfigError, match="^" + message):
        PattersonTrainConfig(**kw)


def test_config_boundaries_are_accepted():
    for kw in ({"photons": (5.0, 5.0)}, {"photons": (0.5, 1.0)}, {"noisy_copies": 0},
               {"noisy_copies": 1, "clean": False},
               {"max_minutes": 1e-6}, {"chunk_per_class": 1}, {"val_per_class": 2}, {"max_pool": 100},
               {"ordinal_weight": 0.0}, {"workers": 0}, {"poly_laws": ("area", "radius")}):
        PattersonTrainConfig(**kw).validate()
    c = PattersonTrainConfig()
    object.__setattr__(c, "seed", c.val_seed)
    with pytest.raises(ConfigError, match="seeds must differ"):
        drain(train_patterson(c))


# --------------------------------------------------------------------------- simulated inputs
def _grid(n, j, seed, law="radius", poly=True):
    cfg = SpeckleDatasetConfig(n_values=CLASSES, per_class=1, window=FC.window, bin=FC.bin, polydisperse=poly,
                               poly_law=law, method="analytic", seed=seed, block=FC.block)
    return to_feature_grid(simulate_pattern(n, j, cfg)[0][None], FC, input_bin=FC.bin)[0]


def test_simulated_inputs_are_the_seeded_patterns_maps_and_noise():
    out = simulate_inputs(CLASSES, 7, 3, 2, poly_laws=("radius", "area"), photons=(1e4, 1e6), noisy_copies=1,
                          features=FEAT, half=H)
    assert set(out) == {"maps", "x", "y", "photons"}
    np.testing.assert_array_equal(out["y"], [2, 2, 20, 20] * 2)
    assert out["maps"].shape == (8, H + 1, 2 * H + 1) and out["maps"].dtype == np.float16
    assert out["x"].shape == (8, FC.n_features + N_PEAK_FEATURES) and out["x"].dtype == np.float32
    assert np.all(np.isinf(out["photons"][:4])) and np.all((out["photons"][4:] >= 1e4) & (out["photons"][4:] <= 1e6))
    for row, (n, j) in enumerate([(2, 3), (2, 4), (20, 3), (20, 4)]):
        g = _grid(n, j, 7, law=("radius", "area")[j % 2])       # pattern j: law j % 2
        pm = patterson_maps(g[None], H)
        np.testing.assert_array_equal(out["maps"][row], pm[0].astype(np.float16))
        np.testing.assert_allclose(out["x"][row], np.concatenate([radial_features(g[None], FC, FC.bin, counts=False)[0],
                                                                  patterson_features(pm)[0]]), rtol=1e-5, atol=1e-6)
        rng = np.random.default_rng(np.random.SeedSequence([7, n, j, 1]))
        dose = 10 ** rng.uniform(4.0, 6.0)
        noisy = add_counts_noise(g, dose, rng, FC)[0]
        pn = patterson_maps(noisy[None], H)
        assert out["photons"][4 + row] == pytest.approx(dose, rel=1e-12)
        np.testing.assert_array_equal(out["maps"][4 + row], pn[0].astype(np.float16))
        np.testing.assert_allclose(out["x"][4 + row], np.concatenate([radial_features(noisy[None], FC, FC.bin)[0],
                                                                      patterson_features(pn)[0]]), rtol=1e-5, atol=1e-6)


def test_simulated_inputs_options():
    mono = simulate_inputs((5,), 7, 0, 1, polydisperse=False, noisy_copies=0, features=FEAT, half=H)
    np.testing.assert_array_equal(mono["maps"][0], patterson_maps(_grid(5, 0, 7, poly=False)[None], H)[0]
                                  .astype(np.float16))
    noisy_only = simulate_inputs((5,), 7, 0, 1, noisy_copies=2, clean=False, features=FEAT, half=H)
    assert len(noisy_only["y"]) == 2 and np.all(np.isfinite(noisy_only["photons"]))
    assert noisy_only["photons"][0] != noisy_only["photons"][1]                 # copy c seeds with 1 + c
    rng = np.random.default_rng(np.random.SeedSequence([7, 5, 0, 2]))
    assert noisy_only["photons"][1] == pytest.approx(10 ** rng.uniform(np.log10(3e4), np.log10(3e7)), rel=1e-12)
    # the defaults: the shipped window and half width
    d = simulate_inputs((2,), 7, 0, 1, noisy_copies=0)
    assert d["maps"].shape == (1, HALF + 1, 2 * HALF + 1)
    assert d["x"].shape[1] == FeatureConfig().n_features + N_PEAK_FEATURES


def test_job_arguments_carry_the_config():
    cfg = _cfg(polydisperse=False, poly_laws=("area",), photons=(1e3, 1e5), noisy_copies=2, clean=False)
    args = pt._args(cfg, 9, 4, 2)
    assert args == {"n_values": CLASSES, "seed": 9, "start": 4, "count": 2, "polydisperse": False,
                    "poly_laws": ("area",), "photons": (1e3, 1e5), "noisy_copies": 2, "clean": False,
                    "features": FEAT, "half": H}
    assert pt._args(cfg, 9, 4, 2, noisy_copies=0)["noisy_copies"] == 0
    out = pt._job(pt._args(cfg, 9, 4, 1))
    np.testing.assert_array_equal(out["x"], simulate_inputs(**pt._args(cfg, 9, 4, 1))["x"])


# --------------------------------------------------------------------------- budget, evaluations, pool
def test_budget_steps_evaluation_and_learning_rate():
    """One chunk, the clock ticking 5 s per reading: t0, the validation event (5 s), then before step i
    (0-based) at 10 + 5 i s. The evaluation is due at 60 s (step 11 was just taken); 65 s > 60 s stops."""
    cfg = _cfg()
    clock = Ticks(step=5.0)
    clf, events = _run(cfg, clock)
    m = clf.provenance["metrics"]
    assert m["steps"] == 11 and m["samples_seen"] == 11 * 4 and m["patterns_per_class"] == 1
    assert m["train_seconds"] == clock.readings[-1] - 1000.0 == 70.0
    assert [e["stage"] for e in events] == ["validation", "epoch", "calibrate"]
    assert events[0] == {"stage": "validation", "n": 12, "seconds": 5.0}
    ev = events[1]
    assert ev["step"] == 11 and ev["seconds"] == 60.0 and ev["pool"] == 4 and ev["patterns_per_class"] == 1
    assert ev["lr"] == pytest.approx(0.0, abs=1e-18)         # the cosine's end
    curve = m["learning_curve"]
    assert len(curve) == 2
    assert curve[0]["minutes"] == 1.0 and curve[0]["samples_seen"] == 11 * 4 and curve[0]["patterns_per_class"] == 1
    assert curve[0]["val_accuracy"] == ev["val_accuracy"] and curve[0]["val_macro_f1"] == ev["val_macro_f1"]
    assert curve[1]["minutes"] == pytest.approx(70.0 / 60) and curve[1]["samples_seen"] == 11 * 4
    assert curve[1]["patterns_per_class"] == 1
    assert curve[1]["val_accuracy"] == m["validation"]["accuracy"]
    assert curve[1]["val_macro_f1"] == m["validation"]["macro_f1"]


def test_evaluations_every_five_minutes_after_the_first():
    clock = Ticks(step=100.0)
    clf, events = _run(_cfg(max_minutes=20.0), clock)
    # readings before steps: 200, 300, ..., 1200 s; evaluations at the first >= 60, 360, 660, 960 s
    ev = [e for e in events if e["stage"] == "epoch"]
    assert [e["seconds"] for e in ev] == [200.0, 400.0, 700.0, 1000.0]
    assert [e["step"] for e in ev] == [1, 3, 6, 9]
    for e in ev:
        assert e["lr"] == pytest.approx(2e-3 * 0.5 * (1 + np.cos(np.pi * e["seconds"] / 1200.0)), rel=1e-12)
    assert [c["minutes"] for c in clf.provenance["metrics"]["learning_curve"]] == pytest.approx(
        [200 / 60, 400 / 60, 700 / 60, 1000 / 60, 1400 / 60])
    assert clf.provenance["metrics"]["steps"] == 11
    # 60 s a tick, 10 minutes: evaluations at 120 s (the first reading >= 60 s) and at 360 s, exactly when due
    clf, events = _run(_cfg(max_minutes=10.0), Ticks(step=60.0))
    assert [e["seconds"] for e in events if e["stage"] == "epoch"] == [120.0, 360.0]


def test_fresh_chunks_and_the_bounded_pool():
    """In this process a chunk is simulated when the training waits for it: after ``epochs_per_chunk``
    passes over the pool (one batch = the whole pool here: one pass per step). 7 patterns per class and 4
    copies: 56 samples per chunk; a pool of 100 keeps one chunk, 112 keeps two."""
    cfg = _cfg(chunk_per_class=7, max_per_class=21, noisy_copies=3, epochs_per_chunk=2.0, max_minutes=20.0)
    clf, events = _run(cfg, Ticks(step=100.0))
    # readings before steps (100 s a tick): 200 (step 1, evaluation; next due at 360), 300 (step 2: two passes),
    # 400 + 500 after waiting (chunk 1; step 3, evaluation; next at 660), 600 (4), 700 + 800 (chunk 2, the last;
    # step 5, evaluation; next at 960), 900 (6), 1000 (7, evaluation), 1100, 1200 (8, 9), 1300 > 1200: stop
    ev = [e for e in events if e["stage"] == "epoch"]
    assert [(e["seconds"], e["step"], e["patterns_per_class"], e["pool"]) for e in ev] == [
        (200.0, 1, 7, 56), (500.0, 3, 14, 56), (800.0, 5, 21, 56), (1000.0, 7, 21, 56)]
    m = clf.provenance["metrics"]
    assert m["patterns_per_class"] == 21 and m["steps"] == 9 and m["samples_seen"] == 9 * 56
    clf, events = _run(cfg.with_(max_pool=112), Ticks(step=100.0))
    assert [e["pool"] for e in events if e["stage"] == "epoch"] == [56, 112, 112, 112]
    assert clf.provenance["metrics"]["samples_seen"] == 2 * 56 + 7 * 112


def test_batches_walk_through_the_pool():
    cfg = _cfg(chunk_per_class=5, max_per_class=5, batch_size=8, max_minutes=0.25)
    # 5 patterns x 2 copies x 2 classes = 20 samples: batches 8, 8, 4, then a new permutation
    clf, _ = _run(cfg, Ticks(step=1.0))
    m = clf.provenance["metrics"]
    assert m["steps"] == 14 and m["samples_seen"] == 4 * 20 + 8 + 8


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


def test_no_new_chunk_is_started_in_the_last_twentieth_of_the_budget():
    cfg = _cfg(max_per_class=3, epochs_per_chunk=1.0, max_minutes=20.0)
    # readings: validation 10 s, then before steps 1140 s (= 0.95 x 1200 s: too late to start a chunk), 1150,
    # 1160 s, and 1201 s > 1200 s stops: three steps on the first chunk only
    clf, _ = _run(cfg, Readings([10.0, 1140.0, 1150.0, 1160.0, 1201.0]))
    assert clf.provenance["metrics"]["patterns_per_class"] == 1 and clf.provenance["metrics"]["steps"] == 3
    # 1139 s: chunk 1 is started, and waited for before the second step (the wait reads 1160 s)
    clf, _ = _run(cfg, Readings([10.0, 1139.0, 1150.0, 1160.0, 1201.0]))
    assert clf.provenance["metrics"]["patterns_per_class"] == 2 and clf.provenance["metrics"]["steps"] == 2


# --------------------------------------------------------------------------- the loss of a step
def _first_step(cfg, monkeypatch=None):
    """Train one step at lr 0 (the clock reads the budget at the first step): the reported loss is that of
    the seeded initial network, which the step leaves unchanged."""
    clf, events = _run(cfg, Ticks(step=30.0))
    assert clf.provenance["metrics"]["steps"] == 1 and events[1]["lr"] == pytest.approx(0.0, abs=1e-18)
    return clf, events[1]["train_loss"]


def _pool_inputs(cfg):
    first = simulate_inputs(**pt._args(cfg, cfg.seed, 0, cfg.chunk_per_class))
    val = simulate_inputs(**pt._args(cfg, cfg.val_seed, 0, cfg.val_per_class))
    mean = val["x"].mean(0)
    std = val["x"].std(0) + 1e-2 * (np.abs(mean) + 1.0)
    z = ((first["x"] - mean.astype(np.float32)) / std.astype(np.float32)).astype(np.float32)
    return first, val, mean, std, torch.from_numpy(z), torch.from_numpy(np.searchsorted(CLASSES, first["y"]))


def test_first_step_loss_scaling_and_ordinal_term():
    cfg = _cfg(chunk_per_class=2, max_per_class=2, ordinal_weight=0.7)
    clf, loss = _first_step(cfg)
    first, val, mean, std, z, y = _pool_inputs(cfg)
    np.testing.assert_allclose(clf.feature_mean, mean.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(clf.feature_std, std.astype(np.float32), rtol=1e-6)
    assert clf.feature_mean.dtype == np.float32 and clf.feature_std.dtype == np.float32
    net0 = _net0(cfg)
    assert _params_equal(clf.net, net0)
    net0.train()
    gen = torch.Generator().manual_seed(cfg.seed)
    b = torch.randperm(len(y), generator=gen)
    with torch.no_grad():
        out = net0(torch.from_numpy(first["maps"])[b].float(), z[b])
    assert loss == pytest.approx(float(ordinal_loss(out, y[b], 0.7)), rel=1e-5)
    assert loss > float(ordinal_loss(out, y[b], 0.0)) * 1.001


def test_augmented_step_uses_the_seeded_views():
    cfg = _cfg(chunk_per_class=3, max_per_class=3, augment=True)
    clf, loss = _first_step(cfg)
    first, _, _, _, z, y = _pool_inputs(cfg)
    net0 = _net0(cfg)
    net0.train()
    gen = torch.Generator().manual_seed(cfg.seed)
    b = torch.randperm(len(y), generator=gen)
    mb = random_views(torch.from_numpy(first["maps"])[b].float(), gen)
    with torch.no_grad():
        ref = float(ordinal_loss(net0(mb, z[b]), y[b], 0.0))
        plain = float(ordinal_loss(net0(torch.from_numpy(first["maps"])[b].float(), z[b]), y[b], 0.0))
    assert loss == pytest.approx(ref, rel=1e-5) and abs(loss - plain) > 1e-6 * abs(plain)


def test_bf16_step_is_close_to_the_float32_one():
    cfg = _cfg(chunk_per_class=2, max_per_class=2)
    _, loss32 = _first_step(cfg)
    _, loss16 = _first_step(cfg.with_(bf16=True))
    assert loss16 != loss32 and loss16 == pytest.approx(loss32, rel=0.05)


# --------------------------------------------------------------------------- the returned model
def test_model_calibration_domain_provenance_and_cpu_times(monkeypatch):
    usage = namedtuple("usage", "ru_utime ru_stime")
    calls = []

    def getrusage(who):
        calls.append(who)
        return usage(1.0, 2.0) if len(calls) == 1 else usage(4.0, 8.0)

    cpu = iter([5.0, 7.5])
    monkeypatch.setattr(pt.resource, "getrusage", getrusage)
    monkeypatch.setattr(pt.time, "process_time", lambda: next(cpu))
    cfg = _cfg(chunk_per_class=2, max_per_class=4, val_per_class=4, dropout=0.1, epochs_per_chunk=3.0)
    clf, events = _run(cfg, Ticks(step=5.0), name="tiny")
    monkeypatch.undo()
    assert calls == [resource.RUSAGE_CHILDREN] * 2
    m = clf.provenance["metrics"]
    assert m["cpu_seconds_main"] == 2.5 and m["cpu_seconds_simulation"] == 9.0
    assert set(m) == {"validation", "temperature", "val_ece_before", "val_ece_after", "train_seconds",
                      "cpu_seconds_main", "cpu_seconds_simulation", "steps", "samples_seen", "patterns_per_class",
                      "learning_curve", "torch_threads"}
    assert m["torch_threads"] == torch.get_num_threads() and m["patterns_per_class"] == 4
    assert clf.name == "tiny" and list(clf.classes) == list(CLASSES) and clf.features == FC
    assert clf.net.config() == _net0(cfg.with_(dropout=0.1)).config()
    c = clf.provenance["config"]
    assert c["train"] == _plain(cfg.to_dict()) and c["name"] == "tiny" and c["history"] == []
    val = simulate_inputs(**pt._args(cfg, cfg.val_seed, 0, cfg.val_per_class))
    yval = np.searchsorted(CLASSES, val["y"])
    logits = clf.logits_maps(val["maps"], val["x"])
    assert clf.temperature == pytest.approx(fit_temperature(logits, yval), rel=1e-9)
    assert m["temperature"] == clf.temperature
    before = reliability(torch.softmax(torch.from_numpy(logits), 1).numpy(), yval)
    probs = torch.softmax(torch.from_numpy(logits / clf.temperature), 1).numpy()
    after = reliability(probs, yval)
    assert m["val_ece_before"] == pytest.approx(before["ece"], rel=1e-9, abs=1e-12)
    assert m["val_ece_after"] == pytest.approx(after["ece"], rel=1e-9, abs=1e-12)
    assert m["val_ece_before"] != m["val_ece_after"]
    dom = domain_statistics(copy.deepcopy(clf), val["x"], val["y"])
    assert clf.domain["threshold"] == pytest.approx(dom["threshold"], rel=1e-9)
    assert clf.domain["residual_threshold"] == pytest.approx(dom["residual_threshold"], rel=1e-9)
    rep = classification_report(val["y"], np.asarray(CLASSES)[probs.argmax(1)], np.asarray(CLASSES))
    assert m["validation"] == {k: rep[k] for k in ("accuracy", "macro_f1", "n", "errors")} and rep["n"] == 16
    # the evaluation during training scores the network's plain logits on the validation split
    ev = [e for e in events if e["stage"] == "epoch"][-1]
    assert 0.0 <= ev["val_accuracy"] <= 1.0 and ev["train_loss"] > 0
    assert events[-1] == {"stage": "calibrate"}


def test_evaluation_scores_the_validation_split():
    cfg = _cfg(chunk_per_class=2, max_per_class=2, val_per_class=4)
    clf, events = _run(cfg, Ticks(step=30.0))         # one step at lr 0: the network is the initial one
    val = simulate_inputs(**pt._args(cfg, cfg.val_seed, 0, cfg.val_per_class))
    pred = np.asarray(CLASSES)[clf.logits_maps(val["maps"], val["x"]).argmax(1)]
    rep = classification_report(val["y"], pred, np.asarray(CLASSES))
    assert events[1]["val_accuracy"] == rep["accuracy"] and events[1]["val_macro_f1"] == rep["macro_f1"]


def test_seeds_make_runs_repeat():
    cfg = _cfg(chunk_per_class=2, max_per_class=2, dropout=0.2, batch_size=3)
    a, _ = _run(cfg, Ticks(step=4.0))
    b, _ = _run(cfg, Ticks(step=4.0))
    assert _params_equal(a.net, b.net)
    c, _ = _run(cfg.with_(seed=5), Ticks(step=4.0))
    assert not _params_equal(a.net, c.net)
    np.testing.assert_array_equal(c.feature_mean, a.feature_mean)      # scaling from the validation split
    d, _ = _run(cfg.with_(val_seed=7), Ticks(step=4.0))
    assert not np.allclose(d.feature_mean, a.feature_mean)


def test_continuing_from_a_model():
    cfg = _cfg(chunk_per_class=2, max_per_class=2)
    init, _ = _run(cfg, Ticks(step=10.0), name="first")
    m0 = init.provenance["metrics"]
    cont_cfg = cfg.with_(seed=8)
    clf, _ = _run(cont_cfg, Ticks(step=30.0), init=init, name="second")     # one step at lr 0
    assert _params_equal(clf.net, init.net) and clf.net is not init.net
    np.testing.assert_array_equal(clf.feature_mean, init.feature_mean)
    np.testing.assert_array_equal(clf.feature_std, init.feature_std)
    hist = clf.provenance["config"]["history"]
    assert hist == [{"train": _plain(cfg.to_dict()), "command": None, "train_seconds": m0["train_seconds"],
                     "cpu_seconds_main": m0["cpu_seconds_main"], "cpu_seconds_simulation": m0["cpu_seconds_simulation"],
                     "patterns_per_class": m0["patterns_per_class"], "learning_curve": m0["learning_curve"]}]
    init.provenance["config"]["command"] = "train it"
    again, _ = _run(cfg.with_(seed=9), Ticks(step=30.0), init=clf)
    h2 = again.provenance["config"]["history"]
    assert len(h2) == 2 and h2[0] == hist[0] and h2[1]["train"] == _plain(cont_cfg.to_dict())
    assert h2[1]["train_seconds"] == clf.provenance["metrics"]["train_seconds"] == 120.0
    with pytest.raises(ConfigError, match="^the initial model has another architecture or other classes$"):
        drain(train_patterson(cfg.with_(hidden=16), init=init, clock=Ticks()))
    with pytest.raises(ConfigError, match="^the initial model has another architecture"):
        drain(train_patterson(cfg.with_(n_values=(2, 19)), init=init, clock=Ticks()))


def test_process_pool_gives_the_serial_model():
    cfg = _cfg(chunk_per_class=2, max_per_class=2)
    serial, _ = _run(cfg, Ticks(step=10.0))
    t = time.perf_counter()
    pooled, events = _run(cfg.with_(workers=1), Ticks(step=10.0))
    assert events[0]["n"] == 12 and time.perf_counter() - t < 120
    np.testing.assert_array_equal(pooled.feature_mean, serial.feature_mean)
    assert _params_equal(pooled.net, serial.net)
    assert pooled.provenance["metrics"]["validation"] == serial.provenance["metrics"]["validation"]


# --------------------------------------------------------------------------- against a hand-run step
def test_one_step_is_adamw_on_the_seeded_batch():
    """One step at lr > 0 replayed by hand (seeded network and permutation, AdamW with the configured weight
    decay at the cosine's learning rate for the reading before the step; batch-norm statistics included)."""
    cfg = _cfg(chunk_per_class=2, max_per_class=2, batch_size=5, weight_decay=0.05, ordinal_weight=0.3)
    clf, _ = _run(cfg, Readings([10.0, 20.0, 61.0]))
    first, _, _, _, z, y = _pool_inputs(cfg)
    net = _net0(cfg)
    net.train()
    lr = 2e-3 * 0.5 * (1 + np.cos(np.pi * 20.0 / 60.0))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05)
    b = torch.randperm(len(y), generator=torch.Generator().manual_seed(cfg.seed))[:5]
    loss = ordinal_loss(net(torch.from_numpy(first["maps"])[b].float(), z[b]), y[b], 0.3)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert clf.provenance["metrics"]["steps"] == 1 and clf.provenance["metrics"]["samples_seen"] == 5
    for k, v in net.state_dict().items():
        torch.testing.assert_close(clf.net.state_dict()[k], v, rtol=1e-5, atol=1e-7)


def test_a_reading_past_the_budget_after_waiting_trains_at_lr_zero():
    cfg = _cfg(max_per_class=2, epochs_per_chunk=1.0, max_minutes=1.0)
    # readings: validation, step 1 at 0 s, then 59 s, a wait that ends at 90 s: step 2 at lr 0, then stop
    one, _ = _run(cfg, Readings([0.0, 0.0, 61.0]))
    two, _ = _run(cfg, Readings([0.0, 0.0, 59.0, 90.0]))
    assert one.provenance["metrics"]["steps"] == 1
    assert two.provenance["metrics"]["steps"] == 2 and two.provenance["metrics"]["patterns_per_class"] == 2
    assert _params_equal(one.net, two.net)


def test_chunks_submitted_and_wait_timeouts(monkeypatch):
    import contextlib

    submitted, waits = [], []
    real_pool, real_wait = pt.simulation_pool, pt.wait_first

    @contextlib.contextmanager
    def pool(workers):
        assert workers == 0
        with real_pool(workers) as inner:
            class Spy:
                def submit(self, fn, args):
                    submitted.append((args["seed"], args["start"], args["count"], args["noisy_copies"]))
                    return inner.submit(fn, args)

            yield Spy()

    def wait(pending, timeout):
        waits.append((len(pending), timeout))
        real_wait(pending, timeout)

    monkeypatch.setattr(pt, "simulation_pool", pool)
    monkeypatch.setattr(pt, "wait_first", wait)
    cfg = _cfg(chunk_per_class=2, max_per_class=5, epochs_per_chunk=2.0, max_minutes=20.0, noisy_copies=2)
    clf, _ = _run(cfg, Ticks(step=100.0))
    assert submitted == [(12, 0, 3, 2), (11, 0, 2, 2), (11, 2, 2, 2), (11, 4, 2, 2)]
    # waits before steps 3 and 5 (readings 400 and 700 s): the time left
    assert waits == [(1, 800.0), (1, 500.0)]
    assert clf.provenance["metrics"]["patterns_per_class"] == 6


def test_a_chunk_larger_than_the_pool_is_kept():
    cfg = _cfg(chunk_per_class=13, max_per_class=26, noisy_copies=3, epochs_per_chunk=1.0, max_minutes=20.0)
    # 13 patterns x 4 copies x 2 classes = 104 samples > max_pool 100: the newest chunk stays, alone
    _, events = _run(cfg, Ticks(step=100.0))
    assert [e["pool"] for e in events if e["stage"] == "epoch"][-1] == 104


def test_history_from_models_without_full_provenance():
    cfg = _cfg()
    init, _ = _run(cfg, Ticks(step=30.0))
    init.provenance = {}
    hist = _run(cfg, Ticks(step=30.0), init=init)[0].provenance["config"]["history"]
    assert hist == [dict.fromkeys(("train", "command", "train_seconds", "cpu_seconds_main", "cpu_seconds_simulation",
                                   "patterns_per_class", "learning_curve"))]
    init.provenance = {"config": {"history": [{"old": 1}], "command": "c"}, "metrics": {"train_seconds": 7.0}}
    hist = _run(cfg, Ticks(step=30.0), init=init)[0].provenance["config"]["history"]
    assert hist[0] == {"old": 1} and hist[1]["command"] == "c" and hist[1]["train_seconds"] == 7.0
    clf, _ = _run(_cfg(n_values=(20, 2)), Ticks(step=30.0))
    assert list(clf.classes) == [2, 20]


def test_simulated_inputs_follow_the_feature_settings_and_defaults():
    """A window larger than the shipped one, another central block and bin reach the simulation and the
    noise; the simulated noisy copies are read as counts even past the dose looks_like_counts accepts; the
    defaults are polydisperse radius-law disks, one noisy copy at 3e4 .. 3e7 photons."""
    big = {"window": 525, "bin": 3, "block": 11, "r_min": 4, "r_max": 80}
    assert simulate_inputs((2,), 7, 0, 1, noisy_copies=0, features=big, half=H)["x"].shape == (
        1, FeatureConfig.from_dict(big).n_features + N_PEAK_FEATURES)
    other = {"window": 435, "bin": 5, "block": 5, "r_min": 2, "r_max": 40}
    fc = FeatureConfig.from_dict(other)
    cfg = SpeckleDatasetConfig(n_values=(5,), per_class=1, window=435, bin=5, polydisperse=True, poly_law="radius",
                               method="analytic", seed=7, block=5)
    g = to_feature_grid(simulate_pattern(5, 0, cfg)[0][None], fc, input_bin=5)[0]
    out = simulate_inputs((5,), 7, 0, 1, photons=(1e5, 1e5), features=other, half=H)
    pm = patterson_maps(g[None], H)
    np.testing.assert_allclose(out["x"][0], np.concatenate([radial_features(g[None], fc, 5, counts=False)[0],
                                                            patterson_features(pm)[0]]), rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(np.random.SeedSequence([7, 5, 0, 1]))
    noisy = add_counts_noise(g, 10 ** rng.uniform(5.0, 5.0), rng, fc)[0]            # the dose draw comes first
    pn = patterson_maps(noisy[None], H)
    np.testing.assert_allclose(out["x"][1], np.concatenate([radial_features(noisy[None], fc, 5, counts=True)[0],
                                                            patterson_features(pn)[0]]), rtol=1e-5, atol=1e-6)
    hot = simulate_inputs((5,), 7, 0, 1, photons=(2e9, 2e9), clean=False, features=FEAT, half=H)
    rng = np.random.default_rng(np.random.SeedSequence([7, 5, 0, 1]))
    noisy = add_counts_noise(_grid(5, 0, 7), 10 ** rng.uniform(np.log10(2e9), np.log10(2e9)), rng, FC)[0]
    np.testing.assert_allclose(hot["x"][0, :FC.n_features], radial_features(noisy[None], FC, FC.bin, counts=True)[0],
                               rtol=1e-5, atol=1e-6)
    d = simulate_inputs((5,), 7, 0, 1, features=FEAT, half=H)
    assert len(d["y"]) == 2 and np.isinf(d["photons"][0]) and 3e4 <= d["photons"][1] <= 3e7
    np.testing.assert_array_equal(d["maps"][0], patterson_maps(_grid(5, 0, 7)[None], H)[0].astype(np.float16))


def test_ordinal_loss_default_and_targets_past_the_first_class():
    logits = torch.tensor([[0.0, 1.0, 3.0], [2.0, 0.0, -1.0]])
    y = torch.tensor([2, 1])
    assert float(ordinal_loss(logits, y)) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)))
    p = torch.softmax(logits, 1)
    expected = p @ torch.arange(3.0)
    ref = torch.nn.functional.cross_entropy(logits, y) + 0.5 * torch.mean((expected - y.float()) ** 2)
    assert float(ordinal_loss(logits, y, 0.5)) == pytest.approx(float(ref), rel=1e-6)


def test_random_views_draw_from_the_given_generator():
    from napari_cxdi.speckle.patterson import dihedral_views

    maps = torch.randn(32, 5, 9, generator=torch.Generator().manual_seed(1))
    k = torch.randint(0, 4, (32,), generator=torch.Generator().manual_seed(5))
    views = dihedral_views(maps)
    torch.manual_seed(123)                            # the global generator must not be used
    out = random_views(maps, torch.Generator().manual_seed(5))
    for i in range(32):
        assert torch.equal(out[i], views[int(k[i])][i])


def test_training_batches_pair_maps_features_and_labels(monkeypatch):
    """Every training step sees whole samples (map, standardised features and label of one pattern copy), in
    the order of the seeded permutations: one drawn at the start, after a fresh chunk and whenever the pool
    is used up; after a chunk comes in the oldest is dropped (56 + 56 samples > a pool of 100)."""
    seen = []

    class Recording(PattersonNet):
        def forward(self, maps, feats):
            if self.training:
                seen.append([maps.detach().clone(), feats.detach().clone()])
            return super().forward(maps, feats)

    def loss(logits, target, weight=0.0):
        seen[-1].append(target.clone())
        return ordinal_loss(logits, target, weight)

    monkeypatch.setattr(pt, "PattersonNet", Recording)
    monkeypatch.setattr(pt, "ordinal_loss", loss)
    cfg = _cfg(chunk_per_class=7, max_per_class=14, noisy_copies=3, epochs_per_chunk=1.0, max_minutes=10.0)
    clf, _ = _run(cfg, Ticks(step=100.0))
    # readings: 200 (step 1 on chunk 0; chunk 1 asked for), 300 + the wait 400 (chunk 1 replaces chunk 0,
    # step 2), 500 and 600 (steps 3, 4: a new permutation each, the pool being used up), 700 > 600: stop
    assert len(seen) == 4 and clf.provenance["metrics"]["steps"] == 4
    chunks = [simulate_inputs(**pt._args(cfg, cfg.seed, k * 7, 7)) for k in (0, 1)]
    gen = torch.Generator().manual_seed(cfg.seed)
    for step, (maps, feats, target) in enumerate(seen):
        c = chunks[0 if step == 0 else 1]
        b = torch.randperm(56, generator=gen)
        torch.testing.assert_close(maps, torch.from_numpy(c["maps"])[b].float(), rtol=0, atol=0)
        torch.testing.assert_close(feats, torch.from_numpy(clf.standardize(c["x"]))[b], rtol=0, atol=0)
        torch.testing.assert_close(target, torch.from_numpy(np.searchsorted(CLASSES, c["y"]))[b], rtol=0, atol=0)


def test_default_name():
    clf, _ = _run(_cfg(), Ticks(step=30.0))
    assert clf.name == "" and clf.provenance["config"]["name"] == ""
