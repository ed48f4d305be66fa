"""Metrics checked against hand-computed values and the invariances they promise (issue 20)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from napari_cxdi.errors import DataValidationError
from napari_cxdi.metrics import frc, r_factor, r_factor_per_frame


def test_r_factor_hand_value():
    measured = np.array([[4.0, 9.0], [16.0, 0.0]])
    predicted = np.array([[1.0, 9.0], [25.0, 4.0]])
    # |1-2| + |3-3| + |5-4| + |2-0| = 4 over sqrt sum 2+3+4+0 = 9
    assert r_factor(predicted, measured) == pytest.approx(4.0 / 9.0)


def test_r_factor_is_normalised_by_the_measurement_not_the_model():
    measured = np.array([[1.0, 4.0], [9.0, 16.0]])
    # model four times brighter: |2 sqrt(I) - sqrt(I)| / sqrt(I) = 1 (would be 0.5 if normalised by the model)
    assert r_factor(4 * measured, measured) == pytest.approx(1.0)
    assert r_factor(measured, 4 * measured) == pytest.approx(0.5)


def test_r_factor_per_frame_hand_values():
    measured = np.stack([np.full((3, 3), 4.0), np.full((3, 3), 1.0)])
    predicted = np.stack([np.full((3, 3), 16.0), np.full((3, 3), 1.0)])
    np.testing.assert_allclose(r_factor_per_frame(predicted, measured), [1.0, 0.0])
    # and the frame values agree with the global R_f of each frame
    assert r_factor_per_frame(predicted, measured)[0] == pytest.approx(r_factor(predicted[0], measured[0]))


def test_r_factor_errors():
    with pytest.raises(DataValidationError):
        r_factor(np.ones((2, 2)), np.ones((3, 3)))
    with pytest.raises(DataValidationError):
        r_factor(np.ones((2, 2)), np.zeros((2, 2)))


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, (2, 5, 5), elements=st.floats(0.0, 1e4)).filter(lambda a: a.sum() > 1e-3),
       st.floats(0.0, 10.0))
def test_r_factor_scale_behaviour(measured, c):
    """R_f(c^2 I, I) = |c - 1| for every measurement and every scale."""
    assert r_factor(c**2 * measured, measured) == pytest.approx(abs(c - 1.0), rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(r_factor_per_frame(c**2 * measured, measured)[measured.sum(axis=(1, 2)) > 0],
                               abs(c - 1.0), rtol=1e-9, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.booleans())
def test_frc_of_an_image_with_itself_is_one(seed, window):
    img = np.random.default_rng(seed).normal(size=(32, 32))
    curve = frc(img, img, pixel_size_nm=10.0, window=window)
    assert np.allclose(curve.curve, 1.0)
    anti = frc(img, -img, pixel_size_nm=10.0, window=window)
    assert np.allclose(anti.curve, -1.0)


def test_frc_of_independent_noise_is_small_and_resolution_in_nm():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 8, 64, 64))
    curve = frc(a, b, pixel_size_nm=10.0)
    assert np.abs(curve.curve[4:]).mean() < 0.1
    # frequencies in cycles per nm: ring r of an N = 64 frame at 10 nm is r / 640 nm^-1
    assert curve.spatial_frequency[5] == pytest.approx(5 / 640.0)
