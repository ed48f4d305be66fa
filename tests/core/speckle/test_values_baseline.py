"""First-moment baseline against hand-made patterns: radius map units, blocked centre, read-outs, messages
(issue 20: mutation testing of speckle/baseline.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from napari_cxdi.errors import ConfigError, DataValidationError
from napari_cxdi.speckle.baseline import FirstMomentBaseline, first_moment, radius_map


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def test_radius_map_is_in_full_resolution_pixels_from_the_centre_pixel():
    q = radius_map((3, 4), input_bin=2)
    # rows at (0 - 1) * 2, 0, 2; columns at (-2, -1, 0, 1) * 2
    expected = np.hypot(np.array([-2.0, 0.0, 2.0])[:, None], np.array([-4.0, -2.0, 0.0, 2.0])[None, :])
    np.testing.assert_allclose(q, expected)
    assert radius_map((5, 5))[2, 2] == 0.0 and radius_map((5, 5))[0, 4] == pytest.approx(np.sqrt(8.0))


def test_first_moment_hand_value_without_a_block():
    x = np.zeros((5, 5))
    x[2, 4] = 1.0      # |q| = 2
    x[0, 2] = 3.0      # |q| = 2
    x[1, 1] = 2.0      # |q| = sqrt 2
    assert first_moment(x, block=0) == pytest.approx((2.0 + 6.0 + 2.0 * np.sqrt(2.0)) / 6.0)
    assert first_moment(x, block=0, input_bin=1) == first_moment(x[None], block=0)[0]
    assert np.asarray(first_moment(np.stack([x, 2 * x]), block=0)).shape == (2,)


def test_the_blocked_centre_is_odd_and_follows_the_binning():
    """9 x 9 ones binned by 2 with a 4-px block: 2 binned pixels, rounded up to an odd 3 x 3 block. What is
    left on the axes at binned distance 2 is at |q| = 4 full-resolution pixels."""
    x = np.zeros((9, 9))
    for dy, dx in [(0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (-1, -1)]:
        x[4 + dy, 4 + dx] = 100.0                  # inside the 3 x 3 block: ignored
    for dy, dx in [(0, 2), (2, 0), (0, -2), (-2, 0)]:
        x[4 + dy, 4 + dx] = 1.0
    assert first_moment(x, block=4, input_bin=2) == pytest.approx(4.0)
    assert first_moment(x, block=3, input_bin=1) == pytest.approx(2.0)        # odd block: kept as is
    y = np.zeros((9, 9))
    y[4, 6] = y[4, 1] = 1.0                          # |q| = 2 and 3 (binned 1)
    y[4, 3] = 50.0                                   # inside a 3-wide block (2 rounded up), outside a 1-wide
    assert first_moment(y, block=2) == pytest.approx(2.5)


def test_shifted_mode_weights_are_the_standardised_pattern_plus_one():
    """The seed's definition: w = Z + 1, not a constant (it must follow the pattern)."""
    x = np.zeros((5, 5))
    x[2, 4] = 4.0
    x[0, 0] = 1.0
    m = first_moment(x, "shifted", block=0)
    z = (x - x.mean()) / x.std()
    w = z + 1.0
    q = radius_map((5, 5))
    assert m == pytest.approx((w * q).sum() / w.sum(), rel=1e-6)
    brighter_far = x.copy()
    brighter_far[0, 0] = 4.0
    brighter_far[2, 4] = 1.0
    assert first_moment(brighter_far, "shifted", block=0) > m + 0.05


def test_first_moment_messages():
    with pytest.raises(ConfigError, match=_exact("unknown first-moment mode 'wide'; choose one of raw, absolute, "
                                                 "shifted, normalized")):
        first_moment(np.ones((5, 5)), "wide")
    with pytest.raises(DataValidationError, match=_exact("expected (H, W) or (N, H, W), got (5,)")):
        first_moment(np.ones(5))
    with pytest.raises(DataValidationError, match=_exact("pattern has zero total weight outside the central block")):
        first_moment(np.pad(np.ones((3, 3)), 4), block=3)


def test_baseline_read_outs_hand_values():
    moments = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])
    labels = np.array([1, 1, 4, 4, 9, 9])            # n = m^2 exactly
    nearest = FirstMomentBaseline("nearest").fit(moments + np.array([-0.1, 0.1] * 3), labels)
    np.testing.assert_allclose(nearest.class_means, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(nearest.classes, [1, 4, 9])
    np.testing.assert_array_equal(nearest.predict(np.array([0.2, 1.55, 2.4, 7.0])), [1, 4, 4, 9])
    regression = FirstMomentBaseline("regression").fit(moments, labels)
    np.testing.assert_allclose(regression.coef, [1.0, 0.0, 0.0], atol=1e-9)
    assert regression.predict_value(np.array([2.5]))[0] == pytest.approx(6.25)
    # m = 1.55: n = 2.4025 is nearer class 1 than 4 (regression), while the moment is nearer class mean 2 (4)
    np.testing.assert_array_equal(regression.predict(np.array([1.55, 2.9])), [1, 9])
    with pytest.raises(ConfigError, match=_exact("fit the baseline before predicting")):
        FirstMomentBaseline().predict(np.array([1.0]))
    with pytest.raises(ConfigError, match=_exact("unknown read-out 'mean'; choose one of nearest, regression")):
        FirstMomentBaseline("mean").fit(moments, labels)


def test_without_a_block_the_centre_pixel_counts_at_q_zero():
    x = np.zeros((5, 5))
    x[2, 4] = 1.0      # |q| = 2
    x[2, 2] = 3.0      # the centre: |q| = 0, weight 3
    assert first_moment(x, block=0) == pytest.approx(2.0 / 4.0)


def test_normalized_mode_scales_each_pattern_on_its_own():
    """Two-level pattern: min-max scaled weights are 0 and 1, so the moment is the mean |q| of the bright
    pixels; in a stack every pattern keeps its own min and max."""
    x = np.zeros((4, 4))
    x[0, 0] = x[0, 2] = 2.0                          # |q| = sqrt 8 and 2 from the centre pixel (2, 2)
    x[2, 3] = x[3, 2] = 2.0                          # |q| = 1 and 1 (half the pixels bright: z = +-1 would
    x[1, 1] = x[1, 0] = x[3, 3] = x[0, 3] = 2.0      # make max + min vanish); 8 of 16 pixels at 2
    q = radius_map((4, 4))
    expected = q[x > 0].mean()
    assert first_moment(x, "normalized", block=0) == pytest.approx(expected)
    other = radius_map((4, 4)) ** 2                  # a continuous pattern: its standardised range is not +-1
    stack = first_moment(np.stack([x, other]), "normalized", block=0)
    assert stack[0] == pytest.approx(expected)
    assert stack[1] == pytest.approx(first_moment(other, "normalized", block=0))


def test_class_means_are_double_precision_for_single_precision_moments():
    moments = np.array([0.1, 0.2, 0.7, 0.8], np.float32)
    base = FirstMomentBaseline().fit(moments, np.array([2, 2, 8, 8]))
    np.testing.assert_allclose(base.class_means, [moments[:2].astype(np.float64).mean(),
                                                  moments[2:].astype(np.float64).mean()], rtol=1e-15)
