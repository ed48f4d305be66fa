"""Training of the speckle ResNet (speckle/train.py) on tiny separable inputs: augmentation draws, targets,
losses, progress records, best-epoch weights, early stopping, time limit and provenance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_cxdi.errors import ConfigError, DataValidationError
from napari_cxdi.progress import drain
from napari_cxdi.speckle.patterns import PreprocessConfig
from napari_cxdi.speckle.train import TrainConfig, _loss, _targets, _validate, augment_batch, run_training, train

PRE = PreprocessConfig(window=33, bin=3, block=3)
TINY = TrainConfig(depth=18, width=4, epochs=3, batch_size=8, lr=3e-3, augment=False, patience=None, device="cpu",
                   log_every=2)


def _data(per_class=8, seed=0, classes=(2, 5, 9)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:11, :11] - 5
    r = np.hypot(yy, xx)
    x, y = [], []
    for n in classes:
        for _ in range(per_class):
            x.append(np.exp(-((r - n / 2.0) / 1.0) ** 2) * 3 + rng.normal(0, 0.1, r.shape))
            y.append(n)
    return np.asarray(x, np.float32), np.asarray(y)


def test_config_defaults_and_errors():
    c = TrainConfig()
    assert (c.depth, c.width, c.task, c.coord, c.epochs, c.batch_size, c.lr, c.weight_decay) == (
        18, 16, "classification", False, 10, 32, 1e-3, 0.0)
    assert (c.augment, c.patience, c.seed, c.device, c.log_every, c.max_seconds) == (True, 3, 0, "auto", 10, None)
    for kw in ({"epochs": 0}, {"batch_size": 0}, {"lr": 0.0}, {"lr": -1.0}, {"weight_decay": -1.0}, {"patience": -1},
               {"seed": -1}, {"max_seconds": 0.0}, {"width": 0}):
        with pytest.raises(ConfigError):
            TrainConfig(**kw)
    TrainConfig(patience=0, log_every=0, max_seconds=0.5, batch_size=1)
    for field, kw in (("depth", {"depth": 0}), ("epochs", {"epochs": 0}), ("batch_size", {"batch_size": 0}),
                      ("lr", {"lr": 0.0}), ("log_every", {"log_every": -1}), ("width", {"width": 0})):
        with pytest.raises(ConfigError, match=f"^speckle training config: {field} must be"):
            TrainConfig(**kw)


def test_augmentation_is_per_sample_flips_and_transposes():
    x = torch.arange(4 * 9, dtype=torch.float32).reshape(4, 1, 3, 3)
    g = torch.Generator().manual_seed(3)
    out = augment_batch(x, g)
    flips = torch.rand(4, 3, generator=torch.Generator().manual_seed(3)) < 0.5
    for i in range(4):
        ref = x[i]
        if flips[i, 0]:
            ref = ref.flip(-1)
        if flips[i, 1]:
            ref = ref.flip(-2)
        if flips[i, 2]:
            ref = ref.transpose(-1, -2)
        np.testing.assert_array_equal(out[i], ref)
    # over many samples every operation happens about half the time
    many = augment_batch(torch.arange(9, dtype=torch.float32).reshape(1, 1, 3, 3).repeat(400, 1, 1, 1),
                         torch.Generator().manual_seed(0))
    same = (many == torch.arange(9, dtype=torch.float32).reshape(1, 3, 3)).flatten(1).all(1).float().mean()
    assert 0.05 < same.item() < 0.25        # identity: 1/8 of the draws


def test_targets_and_losses():
    np.testing.assert_array_equal(_targets(np.array([9, 2, 5]), np.array([2, 5, 9]), "classification", (0, 1)),
                                  [2, 0, 1])
    assert _targets(np.array([9, 2]), np.array([2, 5, 9]), "classification", (0, 1)).dtype == torch.long
    t = _targets(np.array([9, 2]), np.array([2, 5, 9]), "regression", (5.0, 2.0))
    assert t.dtype == torch.float32
    np.testing.assert_allclose(t, [2.0, -1.5])
    out = torch.tensor([0.0, 1.0, 0.05])
    tgt = torch.tensor([0.0, 0.0, 0.0])
    # smooth L1 with beta 0.1: 0.5 d^2 / 0.1 below 0.1, d - 0.05 above
    assert _loss(out, tgt, "regression").item() == pytest.approx((0 + 0.95 + 0.5 * 0.05**2 / 0.1) / 3)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    assert _loss(logits, torch.tensor([0, 0]), "classification").item() == pytest.approx(
        F.cross_entropy(logits, torch.tensor([0, 0])).item())


def test_training_records_best_weights_and_provenance():
    torch.set_num_threads(1)
    xt, yt = _data(8, 0)
    xv, yv = _data(3, 1)
    events = []
    clf = drain(train(xt, yt, xv, yv, PRE, TINY, extra_config={"dataset": "rings"}), events.append)
    batches = [e for e in events if e["stage"] == "batch"]
    epochs = [e for e in events if e["stage"] == "epoch"]
    # 24 samples, batch 8: 3 steps; logged at step 2 (log_every) and 3 (the last)
    assert [(b["epoch"], b["step"], b["steps"]) for b in batches] == [(e, s, 3) for e in (1, 2, 3) for s in (2, 3)]
    assert [e["epoch"] for e in epochs] == [1, 2, 3] and all(e["epochs"] == 3 for e in epochs)
    assert all(e["lr"] == pytest.approx(3e-3) for e in epochs) and all(e["seconds"] >= 0 for e in epochs)
    assert all(np.isfinite(e["train_loss"]) and e["train_loss"] > 0 for e in epochs)
    m = clf.provenance["metrics"]
    best = max(epochs, key=lambda e: e["val_accuracy"])
    assert m["best_epoch"] == best["epoch"] and m["val_accuracy"] == best["val_accuracy"]
    assert m["val_mae"] == best["val_mae"] and m["epochs_run"] == 3 and m["n_train"] == 24 and m["n_val"] == 9
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3] and "stage" not in m["history"][0]
    cfg = clf.provenance["config"]
    assert cfg["dataset"] == "rings" and cfg["classes"] == [2, 5, 9] and cfg["train"]["width"] == 4
    assert cfg["preprocess"]["window"] == 33
    # the returned weights are the best epoch's: validating them gives its numbers
    val = _validate(clf, torch.from_numpy(xv), _targets(yv, clf.classes, "classification", (0, 1)), yv, TINY)
    assert val["val_accuracy"] == best["val_accuracy"] and val["val_loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    assert not clf.model.training
    pred = clf.predict_prepared(xv)["pred"]
    assert np.mean(pred == yv) == best["val_accuracy"]
    assert val["val_mae"] == pytest.approx(np.mean(np.abs(pred - yv)))
    # the same seed trains the same network
    seen = []
    one = run_training(train(xt, yt, xv, yv, PRE, dataclasses.replace(TINY, epochs=1)), seen.append)
    assert seen[-1]["stage"] == "epoch"
    again = run_training(train(xt, yt, xv, yv, PRE, dataclasses.replace(TINY, epochs=1)))
    for a, b in zip(one.model.state_dict().values(), again.model.state_dict().values()):
        np.testing.assert_array_equal(a, b)


def test_losses_add_up_and_steps():
    """With every batch logged, the epoch's train loss is the sample-weighted mean of the batch losses."""
    torch.set_num_threads(1)
    xt, yt = _data(6, 0)                 # 18 samples, batches of 8: 8, 8, 2
    xv, yv = _data(2, 1)
    ev = []
    clf = drain(train(xt.astype(np.float64), yt, xv.astype(np.float64), yv, PRE,
                      dataclasses.replace(TINY, epochs=2, log_every=1)), ev.append)
    assert clf is not None and clf.preprocess == PRE and clf.target_norm == (0.0, 1.0)
    for epoch in (1, 2):
        b = [e for e in ev if e["stage"] == "batch" and e["epoch"] == epoch]
        assert [e["step"] for e in b] == [1, 2, 3]
        rec = next(e for e in ev if e["stage"] == "epoch" and e["epoch"] == epoch)
        assert rec["train_loss"] == pytest.approx((8 * b[0]["loss"] + 8 * b[1]["loss"] + 2 * b[2]["loss"]) / 18)
        assert 0 <= rec["seconds"] < 600
    # one sample: trained on (BatchNorm copes with 1 x 2 x 2 pixels); 9 samples: the lone last one is skipped
    ev = []
    big = np.random.default_rng(0).normal(size=(1, 33, 33)).astype(np.float32)   # layer 4 keeps 2 x 2 pixels
    drain(train(big, yt[:1], np.repeat(big, 2, 0), yt[:2], PRE, dataclasses.replace(TINY, epochs=1, log_every=1),
                classes=[2, 5, 9]), ev.append)
    assert [e["step"] for e in ev if e["stage"] == "batch"] == [1]
    ev = []
    drain(train(xt[:9], yt[:9], xv, yv, PRE, dataclasses.replace(TINY, epochs=1, log_every=1), classes=[2, 5, 9]),
          ev.append)
    assert [e["step"] for e in ev if e["stage"] == "batch"] == [1]
    # logged every 3rd step and at the last: 40 samples = 5 steps -> 3, 5
    x40, y40 = _data(14, 2)
    ev = []
    drain(train(x40[:40], y40[:40], xv, yv, PRE, dataclasses.replace(TINY, epochs=1, log_every=3)), ev.append)
    assert [e["step"] for e in ev if e["stage"] == "batch"] == [3, 5]
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        drain(train(xt, yt, xv, yv, PRE, dataclasses.replace(TINY, device="tpu")))


def test_best_epoch_weights_are_kept():
    """A learning rate far too high: later epochs get worse; the returned weights are the best epoch's (its
    validation loss reproduces), not the last ones."""
    torch.set_num_threads(1)
    xt, yt = _data(8, 0)
    xv, yv = _data(3, 1)
    ev = []
    clf = drain(train(xt, yt, xv, yv, PRE, dataclasses.replace(TINY, epochs=4, lr=0.5)), ev.append)
    eps = [e for e in ev if e["stage"] == "epoch"]
    best = max(eps, key=lambda e: e["val_accuracy"])
    assert clf.provenance["metrics"]["best_epoch"] == best["epoch"]
    val = _validate(clf, torch.from_numpy(xv), _targets(yv, clf.classes, "classification", (0, 1)), yv, TINY)
    assert val["val_loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    # regression: the best epoch is the one of the smallest error, and its weights are returned
    r = drain(train(xt, yt, xv, yv, PRE, dataclasses.replace(TINY, task="regression", epochs=4, lr=0.05)))
    hist = r.provenance["metrics"]["history"]
    rb = min(hist, key=lambda h: h["val_mae"])
    assert r.provenance["metrics"]["best_epoch"] == rb["epoch"]
    tn = r.target_norm
    vr = _validate(r, torch.from_numpy(xv), _targets(yv, r.classes, "regression", tn), yv,
                   dataclasses.replace(TINY, task="regression"))
    assert vr["val_mae"] == rb["val_mae"] and vr["val_loss"] == pytest.approx(rb["val_loss"], rel=1e-5)


def test_training_options():
    torch.set_num_threads(1)
    xt, yt = _data(8, 0)
    xv, yv = _data(3, 1)
    # a last batch of one sample is skipped (BatchNorm), a first one is not
    odd = drain(train(xt[:17], yt[:17], xv, yv, PRE, dataclasses.replace(TINY, epochs=1, log_every=1)))
    assert odd.provenance["metrics"]["n_train"] == 17
    ev = []
    drain(train(xt[:17], yt[:17], xv, yv, PRE, dataclasses.replace(TINY, epochs=1, log_every=1)), ev.append)
    assert [e["step"] for e in ev if e["stage"] == "batch"] == [1, 2]
    # the classes given are used (sorted), not only those in the training labels
    c = drain(train(xt, yt, xv, yv, PRE, dataclasses.replace(TINY, epochs=1), classes=[9, 2, 5, 12]))
    assert c.classes.tolist() == [2, 5, 9, 12] and c.model.fc.out_features == 4
    # patience 1: the learning rate halves after 2 epochs without a better validation accuracy, training
    # stops after 2 such epochs in a row (replayed here from the recorded accuracies)
    slow = dataclasses.replace(TINY, epochs=20, lr=3e-3, patience=2)
    ev = []
    assert drain(train(xt, yt, xv, yv, PRE, slow), ev.append) is not None
    eps = [e for e in ev if e["stage"] == "epoch"]
    best, stale, bad, lr, stop = -1.0, 0, 0, 3e-3, 20
    for e in eps:
        better = e["val_accuracy"] > best
        best, stale = (e["val_accuracy"], 0) if better else (best, stale + 1)
        bad = 0 if better else bad + 1
        if bad > 2:
            lr, bad = lr / 2, 0
        assert e["lr"] == pytest.approx(lr)
        if stale >= 4:
            stop = e["epoch"]
            break
    assert len(eps) == stop < 20
    # a time limit stops after the epoch that passed it
    ev = []
    assert drain(train(xt, yt, xv, yv, PRE, dataclasses.replace(TINY, epochs=5, max_seconds=1e-6)), ev.append)
    assert [e["epoch"] for e in ev if e["stage"] == "epoch"] == [1]
    ev = []
    drain(train(xt, yt, xv, yv, PRE, dataclasses.replace(TINY, epochs=2, max_seconds=1000.0)), ev.append)
    assert [e["epoch"] for e in ev if e["stage"] == "epoch"] == [1, 2]
    # augmentation and weight decay change the result
    a = drain(train(xt, yt, xv, yv, PRE, dataclasses.replace(TINY, epochs=1, augment=True)))
    p = drain(train(xt, yt, xv, yv, PRE, dataclasses.replace(TINY, epochs=1)))
    assert not torch.equal(a.model.fc.weight, p.model.fc.weight)
    wd = drain(train(xt, yt, xv, yv, PRE, dataclasses.replace(TINY, epochs=1, weight_decay=0.5)))
    assert not torch.equal(wd.model.fc.weight, p.model.fc.weight)
    co = drain(train(xt, yt, xv, yv, PRE, dataclasses.replace(TINY, epochs=1, coord=True)))
    assert co.model.coord and co.model.stem[0].in_channels == 2
    # regression: targets normalised by the classes' mean and spread; the MAE is the score
    r = drain(train(xt, yt, xv, yv, PRE, dataclasses.replace(TINY, task="regression", epochs=2)))
    assert r.task == "regression" and r.target_norm == pytest.approx((16 / 3, np.std([2, 5, 9])))
    m = r.provenance["metrics"]
    assert m["val_mae"] == min(h["val_mae"] for h in m["history"])
    one = drain(train(xt[yt == 5], yt[yt == 5], xv, yv, PRE, dataclasses.replace(TINY, task="regression", epochs=1)))
    assert one.target_norm == (5.0, 1.0)


def test_training_input_errors():
    xt, yt = _data(2, 0)
    with pytest.raises(DataValidationError, match=r"^inputs must be \(N, S, S\) matching the labels"):
        drain(train(xt[:, 0], yt, xt, yt, PRE, TINY))
    with pytest.raises(DataValidationError, match="matching the labels"):
        drain(train(xt, yt[:-1], xt, yt, PRE, TINY))
    with pytest.raises(DataValidationError, match="matching the labels"):
        drain(train(xt, yt, xt, yt[:-1], PRE, TINY))
    with pytest.raises(DataValidationError, match="^training and validation sets must not be empty$"):
        drain(train(xt[:0], yt[:0], xt, yt, PRE, TINY))
    with pytest.raises(DataValidationError, match="must not be empty"):
        drain(train(xt, yt, xt[:0], yt[:0], PRE, TINY))


def test_randomness_and_task_reach_the_parts(monkeypatch):
    """Shuffling and augmentation draw from the run's own generator (seeded by config.seed), and the
    regression task reaches the targets and the loss."""
    import napari_cxdi.speckle.train as T

    seen = {"perm": [], "aug": [], "targets": [], "loss": set()}
    real_perm, real_aug, real_targets, real_loss = torch.randperm, T.augment_batch, T._targets, T._loss

    def perm(n, generator=None, **kw):
        seen["perm"].append(generator)
        return real_perm(n, generator=generator, **kw)

    def aug(x, generator):
        seen["aug"].append(generator)
        return real_aug(x, generator)

    def targets(labels, classes, task, norm):
        seen["targets"].append(task)
        return real_targets(labels, classes, task, norm)

    def loss(out, target, task):
        seen["loss"].add(task)
        return real_loss(out, target, task)

    monkeypatch.setattr(T.torch, "randperm", perm)
    monkeypatch.setattr(T, "augment_batch", aug)
    monkeypatch.setattr(T, "_targets", targets)
    monkeypatch.setattr(T, "_loss", loss)
    xt, yt = _data(4, 0)
    drain(train(xt, yt, xt, yt, PRE, dataclasses.replace(TINY, epochs=1, augment=True, task="regression")))
    assert seen["perm"] and all(isinstance(g, torch.Generator) for g in seen["perm"])
    assert seen["aug"] and all(g is seen["perm"][0] for g in seen["aug"])
    assert seen["targets"] == ["regression", "regression"] and seen["loss"] == {"regression"}


@pytest.mark.parametrize("task, best", [("classification", 2), ("regression", 3)])
def test_best_epoch_by_the_task_score(monkeypatch, task, best):
    """Scripted validation results: classification keeps the most accurate epoch (2), regression the one of
    the smallest error (3), whatever the other number says."""
    import napari_cxdi.speckle.train as T

    script = iter([{"val_loss": 1.0, "val_accuracy": 0.5, "val_mae": 0.1},
                   {"val_loss": 1.0, "val_accuracy": 0.9, "val_mae": 2.0},
                   {"val_loss": 1.0, "val_accuracy": 0.6, "val_mae": 0.05}])
    monkeypatch.setattr(T, "_validate", lambda *a, **k: dict(next(script)))
    xt, yt = _data(4, 0)
    clf = drain(train(xt, yt, xt, yt, PRE, dataclasses.replace(TINY, epochs=3, task=task)))
    m = clf.provenance["metrics"]
    assert m["best_epoch"] == best
    assert (m["val_accuracy"], m["val_mae"]) == ((0.9, 2.0) if best == 2 else (0.6, 0.05))
