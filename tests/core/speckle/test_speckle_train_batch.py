"""Speckle training with batches too small for BatchNorm: a typed error naming the remedy, not torch's ValueError."""

import numpy as np
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
