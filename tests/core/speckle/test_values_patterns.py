"""Speckle pre-processing helpers against hand-made arrays (issue 20: mutation testing of speckle/patterns.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_cxdi.errors import ConfigError, DataValidationError
from napari_cxdi.speckle.patterns import add_poisson_noise, bin_pattern, block_center, center_crop, standardize


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def test_block_center_zeroes_a_centred_block_in_a_float32_copy():
    x = np.ones((6, 6), np.float32)
    one = block_center(x, 1)
    assert one.dtype == np.float32 and one.sum() == 35 and one[3, 3] == 0     # k = 0 at (H//2, W//2)
    assert x.sum() == 36                                                      # the input is untouched
    assert block_center(np.ones((6, 6), np.int64), 1).dtype == np.float32
    np.testing.assert_array_equal(block_center(x, 0), x)
    assert block_center(np.ones((5, 5)), 5).sum() == 0 and block_center(np.ones((5, 5)), 7).sum() == 0
    three = block_center(np.ones((2, 7, 8)), 3)
    assert three.sum() == 2 * (56 - 9) and three[:, 2:5, 3:6].sum() == 0


def test_center_crop_and_bin_pattern_hand_values():
    x = np.arange(2 * 5 * 5, dtype=float).reshape(2, 5, 5)
    np.testing.assert_array_equal(center_crop(x, 3), x[:, 1:4, 1:4])
    np.testing.assert_array_equal(center_crop(x, 5), x)
    with pytest.raises(DataValidationError, match=_exact("cannot crop 6 x 6 from a 5 x 5 pattern")):
        center_crop(x, 6)
    y = np.arange(2 * 4 * 6, dtype=float).reshape(2, 4, 6)
    b = bin_pattern(y, 2)
    assert b.shape == (2, 2, 3)
    assert b[0, 0, 0] == pytest.approx((0 + 1 + 6 + 7) / 4) and b[1, 1, 2] == pytest.approx((40 + 41 + 46 + 47) / 4)
    assert bin_pattern(y, 1) is y
    with pytest.raises(DataValidationError, match=_exact("pattern 4 x 6 is not divisible by the binning factor 4")):
        bin_pattern(y, 4)
    with pytest.raises(DataValidationError, match=_exact("pattern 4 x 6 is not divisible by the binning factor 3")):
        bin_pattern(y, 3)


def test_standardize_hand_values_and_refusal():
    z = standardize(np.array([[1.0, 3.0], [1.0, 3.0]]))
    assert z.dtype == np.float32
    np.testing.assert_allclose(z, [[-1.0, 1.0], [-1.0, 1.0]])
    with pytest.raises(DataValidationError, match=_exact("cannot standardise a constant or non-finite pattern")):
        standardize(np.ones((3, 3)))


def test_add_poisson_noise_scales_each_pattern_outside_the_block():
    intensity = np.stack([np.ones((21, 21)), 100 * np.ones((21, 21))])
    counts = add_poisson_noise(intensity, photons=1e6, rng=0)
    assert counts.dtype == np.float32
    assert counts[:, 5:16, 5:16].sum() == 0                  # default block: 11 x 11 around (10, 10)
    assert counts[:, 4, :].min() > 0
    np.testing.assert_allclose(counts.sum(axis=(1, 2)), 1e6, rtol=0.01)   # each pattern on its own
    faint = add_poisson_noise(np.full((3, 3), 0.05), photons=0.5, rng=1, block=1)   # total 0.4 < 1 is fine
    assert faint.shape == (3, 3) and faint[1, 1] == 0
    with pytest.raises(ConfigError, match=_exact("photon count must be > 0, got 0")):
        add_poisson_noise(intensity, photons=0)
    with pytest.raises(DataValidationError, match=_exact("pattern has no intensity outside the central block")):
        add_poisson_noise(np.pad(np.ones((3, 3)), 1), photons=10.0, block=3)


def test_preprocess_config_limits_and_messages():
    from napari_cxdi.speckle.patterns import PreprocessConfig

    for field_name in ("window", "bin", "block"):
        with pytest.raises(ConfigError, match=_exact(f"speckle preprocessing: {field_name} must be in [1, inf), got 0")):
            PreprocessConfig(**{field_name: 0})
    assert PreprocessConfig(window=3, bin=1).input_size == 3          # the smallest valid input: 3 x 3
    assert PreprocessConfig(window=6, bin=2).input_size == 3
    for window, bin_ in [(2, 1), (5, 2)]:
        with pytest.raises(ConfigError, match=_exact(f"invalid window {window} / bin {bin_}")):
            PreprocessConfig(window=window, bin=bin_)
    with pytest.raises(ConfigError, match=_exact("unknown transform 'sqrt'; choose one of linear, log")):
        PreprocessConfig(transform="sqrt")


def test_prepare_log_transform_by_hand():
    """window 3, bin 1, block 1: crop the centre 3 x 3, zero its centre, log1p(I / mean I) per pattern
    (negative counts clipped to 0 after the mean), standardise. A pattern and 10x it (or 1e-3 x it) give the same input."""
    from napari_cxdi.speckle.patterns import PreprocessConfig, prepare

    x = np.arange(25, dtype=float).reshape(5, 5)
    x[1, 1] = -4.0
    cfg = PreprocessConfig(window=3, bin=1, block=1, transform="log")
    c = x[1:4, 1:4].copy()
    c[1, 1] = 0.0
    expected = np.log1p(np.clip(c, 0, None) / c.mean())               # the mean of the unclipped crop
    expected = (expected - expected.mean()) / expected.std()
    out = prepare(np.stack([x, 10 * x, 1e-3 * x]), cfg)
    assert out.shape == (3, 3, 3) and out.dtype == np.float32
    for frame in out:
        np.testing.assert_allclose(frame, expected, rtol=1e-5, atol=1e-6)
    linear = prepare(x, PreprocessConfig(window=3, bin=1, block=1))
    assert not np.allclose(linear, expected, atol=1e-3)


def test_prepare_even_block_and_refusals():
    from napari_cxdi.speckle.patterns import PreprocessConfig, prepare

    x = np.arange(49, dtype=float).reshape(7, 7) + 1.0
    out = prepare(x, PreprocessConfig(window=5, bin=1, block=2))         # block 2 -> 3: centre 3 x 3 zeroed
    z = x[1:6, 1:6].copy()
    z[1:4, 1:4] = 0.0
    np.testing.assert_allclose(out, (z - z.mean()) / z.std(), rtol=1e-5, atol=1e-6)
    binned = prepare(np.ones((6, 6)) + np.arange(6.0), PreprocessConfig(window=6, bin=2, block=1), input_bin=2)
    # block 1 on data binned by 2 is 0 binned pixels: nothing is blocked (crop columns hold 3, 4, 5)
    np.testing.assert_allclose(binned, np.tile([-np.sqrt(1.5), 0.0, np.sqrt(1.5)], (3, 1)), rtol=1e-5, atol=1e-6)
    with pytest.raises(DataValidationError, match=_exact("pattern contains NaN or infinite values")):
        prepare(np.full((5, 5), np.nan), PreprocessConfig(window=3, bin=1))
    with pytest.raises(DataValidationError,
                       match=_exact("expected a pattern (H, W) or a stack (N, H, W), got shape (1, 1, 5, 5)")):
        prepare(np.ones((1, 1, 5, 5)), PreprocessConfig(window=3, bin=1))
    with pytest.raises(ConfigError, match=_exact("data binned by 2 cannot be re-binned to 3")):
        prepare(np.ones((9, 9)), PreprocessConfig(window=9, bin=3), input_bin=2)
