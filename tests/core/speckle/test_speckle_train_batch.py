"""Speckle training with batches too small for BatchNorm: a typed error naming the remedy, not torch's ValueError."""

import numpy as np
import torch
import pytest

from napari_cxdi.errors import ConfigError, DataValidationError
from napari_cxdi.speckle.patterns import PreprocessConfig
from napari_cxdi.speckle.train import TrainConfig, run_training, train

CFG = dict(depth=18, width=4, epochs=1, augment=False, patience=None, device="cpu", log_every=0)


def _data(n, size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, size, size)).astype(np.float32), np.array([2, 8] * (n // 2) + [2] * (n % 2))


def test_a_batch_of_one_32_px_pattern_is_a_config_error():
    x, y = _data(4, 32)
    with pytest.raises(ConfigError, match=r"^speckle training config: batch_size 1 is too small: the network's last "
                                          r"BatchNorm sees 1 value per channel and pattern for 32 x 32 px inputs; use a "
                                          r"batch size of at least 2 \(or larger patterns\)$"):
        run_training(train(x, y, x, y, PreprocessConfig(), TrainConfig(batch_size=1, **CFG)))


def test_one_training_pattern_is_a_data_error():
    x, y = _data(4, 32)
    with pytest.raises(DataValidationError, match=r"^speckle training needs at least 2 training patterns: .* got 1$"):
        run_training(train(x[:1], y[:1], x, y, PreprocessConfig(), TrainConfig(batch_size=8, **CFG), classes=[2, 8]))


def test_batches_that_batchnorm_can_normalise_still_train():
    # 64 px patterns reach the last BatchNorm as 2 x 2: a batch of one is fine; 32 px with batches of 2 too
    for size, batch in ((64, 1), (32, 2)):
        x, y = _data(4, size)
        clf = run_training(train(x, y, x, y, PreprocessConfig(), TrainConfig(batch_size=batch, **CFG)))
        assert clf.model.training is False and list(clf.classes) == [2, 8]


def test_log_every_zero_means_no_batch_events_not_a_division_by_zero():
    x, y = _data(6, 32)
    events = list(train(x, y, x, y, PreprocessConfig(), TrainConfig(batch_size=2, **{**CFG, "epochs": 2})))
    assert [e["stage"] for e in events] == ["epoch", "epoch"]
    events = list(train(x, y, x, y, PreprocessConfig(), TrainConfig(batch_size=2, **{**CFG, "log_every": 2})))
    assert [(e["stage"], e.get("step")) for e in events] == [("batch", 2), ("batch", 3), ("epoch", None)]


def test_the_check_follows_each_axis_of_the_patterns():
    # 64 x 32 px reaches the last BatchNorm as 2 x 1 (two values per channel): a batch of one is fine; 32 x 32 is not
    x = np.random.default_rng(1).random((4, 64, 32)).astype(np.float32)
    y = np.array([2, 8, 2, 8])
    clf = run_training(train(x, y, x, y, PreprocessConfig(), TrainConfig(batch_size=1, **CFG)))
    assert list(clf.classes) == [2, 8]
    with pytest.raises(ConfigError, match=r"for 32 x 32 px inputs"):
        run_training(train(x[:, :32], y, x[:, :32], y, PreprocessConfig(), TrainConfig(batch_size=1, **CFG)))
    # two training patterns in batches of one: the batch size is the cause, not the number of patterns
    with pytest.raises(ConfigError, match=r"^speckle training config: batch_size 1 is too small"):
        run_training(train(x[:2, :32], y[:2], x[:, :32], y, PreprocessConfig(), TrainConfig(batch_size=1, **CFG)))


def test_classification_keeps_the_weights_of_the_most_accurate_epoch(monkeypatch):
    # scripted validation: epoch 1 is the most accurate, epoch 2 has the lowest MAE; classification keeps epoch 1's
    # weights (regression would keep epoch 2's)
    import napari_cxdi.speckle.train as T

    real = T._validate
    scripted = iter([(0.9, 3.0), (0.5, 1.0), (0.4, 2.0)])
    states = []

    def validate(clf, *args):
        out = real(clf, *args)
        states.append({k: v.clone() for k, v in clf.model.state_dict().items()})
        out["val_accuracy"], out["val_mae"] = next(scripted)
        return out

    monkeypatch.setattr(T, "_validate", validate)
    x, y = _data(6, 32)
    clf = run_training(train(x, y, x, y, PreprocessConfig(), TrainConfig(batch_size=2, **{**CFG, "epochs": 3})))
    final = clf.model.state_dict()
    for k, v in final.items():
        if v.dtype.is_floating_point:
            assert torch.equal(v, states[0][k]), k
    assert any(not torch.equal(states[0][k], states[1][k]) for k in final if final[k].dtype.is_floating_point)
    assert clf.provenance["metrics"]["best_epoch"] == 1
