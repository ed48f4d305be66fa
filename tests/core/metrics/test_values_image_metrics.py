"""Phase SSIM, offset removal, entropy, ring averaging and velocity against known answers (issue 20)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import ndimage
from skimage.metrics import structural_similarity

from napari_cxdi.errors import DataValidationError
from napari_cxdi.metrics import estimate_velocity, image_entropy, phase_ssim, register_shift, remove_phase_offset
from napari_cxdi.metrics.radial import ring_index, ring_sum, ring_to_resolution_nm, threshold_crossing


def _smooth(seed, shape=(2, 24, 24)):
    x = np.random.default_rng(seed).normal(size=shape)
    return ndimage.gaussian_filter(x, (0,) * (x.ndim - 2) + (2, 2)) * 3


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(-3.0, 3.0))
def test_offset_removal_undoes_a_constant_phase_per_frame(seed, c):
    ref = _smooth(seed) * 0.3
    shifted = np.angle(np.exp(1j * (ref + np.array([c, -c])[:, None, None])))
    np.testing.assert_allclose(remove_phase_offset(shifted, ref), ref, atol=1e-9)
    assert phase_ssim(shifted, ref) == pytest.approx(1.0)


def test_offset_is_fitted_inside_the_mask_and_with_weights():
    ref = np.zeros((8, 8))
    phase = np.zeros((8, 8))
    phase[:, 4:] = 1.0                       # right half off by 1 rad
    mask = np.zeros((8, 8), bool)
    mask[:, 4:] = True
    np.testing.assert_allclose(remove_phase_offset(phase, ref, mask=mask)[:, 4:], 0.0, atol=1e-12)
    np.testing.assert_allclose(remove_phase_offset(phase, ref, mask=mask)[:, :4], -1.0, atol=1e-12)
    w = np.where(mask, 1.0, 0.0)
    np.testing.assert_allclose(remove_phase_offset(phase, ref, weights=w), remove_phase_offset(phase, ref, mask=mask))
    # unweighted: offset 0.5 (circular mean of 0 and 1 rad, equal halves)
    np.testing.assert_allclose(remove_phase_offset(phase, ref)[0, 0], -0.5, atol=1e-12)


def test_phase_ssim_matches_skimage_and_averages_inside_the_mask():
    ref = _smooth(1)[0]
    noisy = ref + np.random.default_rng(2).normal(0, 0.3, ref.shape)
    rng = float(np.ptp(ref))
    _, full = structural_similarity(remove_phase_offset(noisy, ref), ref, data_range=rng, win_size=7, full=True)
    assert phase_ssim(noisy, ref) == pytest.approx(full.mean(), rel=1e-9)
    mask = np.zeros(ref.shape, bool)
    mask[5:15, 3:20] = True
    off = remove_phase_offset(noisy, ref, mask)
    _, m = structural_similarity(off, ref, data_range=rng, win_size=7, full=True)
    assert phase_ssim(noisy, ref, mask=mask) == pytest.approx(m[mask].mean(), rel=1e-9)
    assert phase_ssim(noisy, ref, data_range=2 * np.pi) != pytest.approx(phase_ssim(noisy, ref))
    assert phase_ssim(np.zeros((5, 5)), np.zeros((5, 5))) == pytest.approx(1.0)  # window shrinks to the image


def test_phase_ssim_errors_name_the_problem():
    with pytest.raises(DataValidationError, match="differ in shape"):
        phase_ssim(np.zeros((4, 4)), np.zeros((5, 5)))
    with pytest.raises(DataValidationError, match="differ in shape"):
        remove_phase_offset(np.zeros((4, 4)), np.zeros((5, 5)))
    with pytest.raises(DataValidationError, match="mask is empty"):
        phase_ssim(np.zeros((8, 8)), np.zeros((8, 8)), mask=np.zeros((8, 8), bool))


def test_entropy_hand_values():
    assert image_entropy(np.zeros((4, 4))) == pytest.approx(0.0)
    two = np.array([0.0, 1.0] * 8)
    assert image_entropy(two) == pytest.approx(1.0)          # two equally likely levels: 1 bit
    four = np.repeat([0.0, 1.0, 2.0, 3.0], 4)
    assert image_entropy(four, bins=4) == pytest.approx(2.0)
    assert image_entropy(np.array([1.0, np.nan, 2.0])) == pytest.approx(1.0)  # NaN ignored
    with pytest.raises(DataValidationError, match="empty"):
        image_entropy(np.array([np.nan]))
    with pytest.raises(DataValidationError):
        image_entropy(np.zeros(0))


def test_ring_helpers_hand_values():
    rings = ring_index((5, 5))
    assert rings[2, 2] == 0 and rings[2, 4] == 2 and rings[0, 0] == 3   # rint(sqrt 8) = 3
    assert ring_index((4, 8))[2, 0] == 2 and ring_index((4, 8))[0, 0] == 3   # x scaled by 4/8
    s = ring_sum(np.ones((2, 5, 5)), rings, 3)
    np.testing.assert_array_equal(s, [2, 2 * 8, 2 * 12])  # per frame: 1 px at r=0; 8 at r=1, sqrt2; 12 at r=2, sqrt5
    assert threshold_crossing(np.array([1.0, 0.9, 0.5, 0.2]), 0.6) == 2
    assert threshold_crossing(np.array([0.1, 0.9, 0.8]), 0.5) is None     # ring 0 is skipped
    assert threshold_crossing(np.array([1.0, 0.9, 0.5]), 0.6, start=0) == 2
    assert ring_to_resolution_nm(4, 64, 10.0) == pytest.approx(160.0)
    assert ring_to_resolution_nm(None, 64, 10.0) == pytest.approx(20.0)
    assert ring_to_resolution_nm(0, 64, 10.0) == pytest.approx(20.0)


@pytest.mark.parametrize("shift", [(1.3, -2.6), (-0.4, 0.7)])
def test_register_shift_recovers_a_known_subpixel_shift(shift):
    ref = _smooth(5, (48, 48))
    mov = ndimage.shift(ref, shift, order=3, mode="nearest")
    np.testing.assert_allclose(register_shift(ref, mov), shift, atol=0.05)
    weights = np.zeros((48, 48))
    weights[8:40, 8:40] = 1.0
    np.testing.assert_allclose(register_shift(ref, mov, weights=weights), shift, atol=0.05)


def test_velocity_in_nm_per_second():
    ref = _smooth(6, (48, 48))
    movie = np.stack([ndimage.shift(ref, (0.0, 0.5 * t), order=3, mode="nearest") for t in range(4)])
    v = estimate_velocity(movie, pixel_size_nm=20.0, frame_interval_s=0.1)
    # 0.5 px/frame * 20 nm / 0.1 s = 100 nm/s along x
    assert v["speed_nm_s"] == pytest.approx(100.0, rel=0.05)
    assert v["mean_nm_s"][1] == pytest.approx(100.0, rel=0.05) and abs(v["mean_nm_s"][0]) < 5
    v2 = estimate_velocity(movie[::2], pixel_size_nm=20.0, frame_interval_s=0.2)
    assert v2["speed_nm_s"] == pytest.approx(100.0, rel=0.05)
    with pytest.raises(DataValidationError):
        estimate_velocity(movie, pixel_size_nm=0.0, frame_interval_s=0.1)
    with pytest.raises(DataValidationError):
        estimate_velocity(movie[:1], pixel_size_nm=1.0, frame_interval_s=0.1)


def test_velocity_record_keys_and_spread():
    ref = _smooth(7, (40, 56))                   # non-square: the Hann window must follow each axis
    movie = np.stack([ndimage.shift(ref, (0.3 * t, -0.6 * t), order=3, mode="nearest") for t in range(4)])
    v = estimate_velocity(movie, pixel_size_nm=10.0, frame_interval_s=1.0)
    assert v["per_pair_nm_s"].shape == (3, 2)
    np.testing.assert_allclose(v["per_pair_nm_s"], [[3.0, -6.0]] * 3, atol=0.3)
    assert v["std_nm_s"].shape == (2,) and np.all(v["std_nm_s"] < 0.3)


@pytest.mark.parametrize("bad", [dict(pixel_size_nm=1.0, frame_interval_s=0.0),
                                 dict(pixel_size_nm=0.0, frame_interval_s=1.0),
                                 dict(pixel_size_nm=1.0, frame_interval_s=-1.0)])
def test_velocity_refuses_non_positive_geometry(bad):
    with pytest.raises(DataValidationError, match="must be positive"):
        estimate_velocity(np.zeros((3, 8, 8)), **bad)


def test_registration_refuses_wrong_shapes():
    with pytest.raises(DataValidationError, match="2D images of equal shape"):
        register_shift(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)))
    with pytest.raises(DataValidationError, match="2D images of equal shape"):
        register_shift(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(DataValidationError, match="lag"):
        estimate_velocity(np.zeros((8, 8)), pixel_size_nm=1.0, frame_interval_s=1.0)
    with pytest.raises(DataValidationError, match="lag"):
        estimate_velocity(np.zeros((3, 8, 8)), pixel_size_nm=1.0, frame_interval_s=1.0, lag=0)


def test_masked_registration_ignores_what_is_outside_the_weights():
    """A static bright edge outside the weights must not pull the shift toward zero."""
    ref = _smooth(8, (48, 48))
    mov = ndimage.shift(ref, (0.0, 1.5), order=3, mode="nearest")
    ref[:, :6] = mov[:, :6] = 50.0                # static, strong feature at the left edge
    weights = np.zeros((48, 48))
    weights[4:44, 12:44] = 1.0
    np.testing.assert_allclose(register_shift(ref, mov, weights=weights), (0.0, 1.5), atol=0.1)
    assert abs(register_shift(ref, mov)[1]) < 0.5   # unweighted, the static edge wins


def test_resolution_curve_record_keys():
    from napari_cxdi.metrics import frc

    d = frc(np.eye(8), np.eye(8), pixel_size_nm=5.0).as_dict()
    assert {"spatial_frequency_per_nm", "curve", "threshold", "resolution_nm"} <= set(d)
    assert d["resolution_nm"] == pytest.approx(10.0)   # never crosses: Nyquist, 2 dx
