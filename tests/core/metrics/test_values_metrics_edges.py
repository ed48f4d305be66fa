"""Metrics at the edges a user reaches: integer / single-precision inputs, negative counts, zero-photon pixels,
over-fitting moduli, empty rings, exact messages (issue 20: the mutants that survived the first value tests)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import ndimage

from napari_cxdi.errors import DataValidationError
from napari_cxdi.metrics import (
    ONE_OVER_E, estimate_velocity, fourier_fit_ratio, frc, image_entropy, phase_ssim, prtf, r_factor,
    r_factor_per_frame, register_shift, remove_phase_offset,
)
from napari_cxdi.metrics.radial import ring_index, ring_sum, threshold_crossing


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def _smooth(seed, shape):
    x = np.random.default_rng(seed).normal(size=shape)
    return ndimage.gaussian_filter(x, 2.0) * 3


# ---------------------------------------------------------------- R_f


def test_r_factor_clips_negative_intensities_to_zero():
    """Background-subtracted counts and model intensities can be negative: both count as 0 photons."""
    measured = np.array([[-4.0, 4.0], [1.0, 9.0]])
    predicted = np.array([[4.0, -9.0], [1.0, 9.0]])
    # sqrt: measured [0, 2, 1, 3], predicted [2, 0, 1, 3]; |diff| = 2 + 2 + 0 + 0 = 4 over 0 + 2 + 1 + 3 = 6
    assert r_factor(predicted, measured) == pytest.approx(4.0 / 6.0)
    per_frame = r_factor_per_frame(np.stack([predicted, measured]), np.stack([measured, measured]))
    np.testing.assert_allclose(per_frame, [4.0 / 6.0, 0.0])   # frame 1: the measurement against itself


def test_r_factor_of_a_faint_measurement_is_defined():
    """One pixel of 0.25 photons (sqrt-sum 0.5 < 1) is a valid, if faint, measurement."""
    assert r_factor(np.array([[1.0]]), np.array([[0.25]])) == pytest.approx(1.0)   # |1 - 0.5| / 0.5
    assert r_factor(np.array([[0.0, 0.0]]), np.array([[0.25, 0.0]])) == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_r_factor_of_detector_dtypes_is_computed_in_double_precision(dtype):
    """uint16 / float32 frames give the float64 answer (not the single-precision square roots)."""
    rng = np.random.default_rng(3)
    measured = rng.integers(0, 5000, size=(2, 16, 16))
    predicted = rng.integers(0, 5000, size=(2, 16, 16))
    reference = r_factor(predicted.astype(np.float64), measured.astype(np.float64))
    reference_frames = r_factor_per_frame(predicted.astype(np.float64), measured.astype(np.float64))
    assert r_factor(predicted.astype(dtype), measured.astype(np.float64)) == pytest.approx(reference, rel=1e-13)
    assert r_factor(predicted.astype(np.float64), measured.astype(dtype)) == pytest.approx(reference, rel=1e-13)
    np.testing.assert_allclose(r_factor_per_frame(predicted.astype(dtype), measured.astype(np.float64)),
                               reference_frames, rtol=1e-13)
    np.testing.assert_allclose(r_factor_per_frame(predicted.astype(np.float64), measured.astype(dtype)),
                               reference_frames, rtol=1e-13)


def test_r_factor_messages():
    with pytest.raises(DataValidationError, match=_exact("R_f needs equal shapes, got (2, 2) and (3, 3)")):
        r_factor(np.ones((2, 2)), np.ones((3, 3)))
    with pytest.raises(DataValidationError, match=_exact("R_f is undefined for an all-zero measurement")):
        r_factor(np.ones((2, 2)), np.zeros((2, 2)))


# ---------------------------------------------------------------- Fourier fit ratio and the ring curve


def test_fourier_fit_ratio_hand_values_with_zero_photon_and_over_fitting_pixels():
    """4 x 4 frame, rings 0 (1 px), 1 (8 px): counts 1 photon everywhere except two 0-photon pixels
    (not measured: left out), the model 1.5x too bright on ring 0 (clipped to 1) and half as bright on ring 1."""
    intensity = np.ones((4, 4))
    modulus = np.full((4, 4), 0.5)
    modulus[2, 2] = 1.5                  # ring 0 (the centre): ratio 1.5 -> clipped to 1
    intensity[1, 2] = intensity[2, 1] = 0.0   # two ring-1 pixels without photons: left out
    modulus[1, 2] = modulus[2, 1] = 7.0       # (their model value must not matter)
    curve = fourier_fit_ratio(modulus, intensity, pixel_size_nm=10.0, threshold=0.3)
    assert curve.curve.shape == (2,)           # N // 2 rings
    np.testing.assert_allclose(curve.curve, [1.0, 0.5])   # ring 1: 6 measured pixels at 0.5 / sqrt(1)
    np.testing.assert_allclose(curve.spatial_frequency, [0.0, 1 / 40.0])   # ring r: r / (N dx) per nm
    assert curve.threshold == 0.3 and curve.resolution_nm == pytest.approx(20.0)   # never below 0.3: 2 dx
    assert fourier_fit_ratio(modulus, intensity, 10.0, threshold=0.6).resolution_nm == pytest.approx(40.0)


def test_fourier_fit_ratio_ratio_between_one_and_two_is_clipped():
    intensity = np.full((8, 8), 4.0)
    curve = fourier_fit_ratio(np.full((8, 8), 3.0), intensity, pixel_size_nm=1.0)   # 3 / 2 = 1.5 -> 1
    np.testing.assert_allclose(curve.curve, 1.0)


def test_a_ring_without_measured_pixels_scores_zero_and_crosses():
    """Ring 1 fully masked: its value is 0 (no evidence of a fit), so the curve crosses there."""
    intensity = np.ones((4, 4))
    mask = ring_index((4, 4)) == 1
    curve = fourier_fit_ratio(np.ones((4, 4)), intensity, pixel_size_nm=5.0, mask=mask)
    np.testing.assert_array_equal(curve.curve, [1.0, 0.0])
    assert curve.curve.dtype == np.float64
    assert curve.resolution_nm == pytest.approx(4 * 5.0 / 1)


def test_fourier_fit_ratio_record():
    curve = fourier_fit_ratio(np.ones((2, 8, 8)), np.ones((2, 8, 8)), pixel_size_nm=4.0, threshold=0.5)
    d = curve.as_dict()
    assert set(d) == {"spatial_frequency_per_nm", "curve", "threshold", "resolution_nm"}
    assert d["spatial_frequency_per_nm"] == pytest.approx([0.0, 1 / 32, 2 / 32, 3 / 32])
    assert d["curve"] == pytest.approx([1.0] * 4)
    assert d["threshold"] == 0.5 and d["resolution_nm"] == pytest.approx(8.0)


# ---------------------------------------------------------------- PRTF


def _blob(n=16, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, :n] - n // 2
    support = np.hypot(y, x) < n // 4
    return support * (1 + rng.random((n, n))) * np.exp(1j * rng.uniform(-1, 1, (n, n)))


def test_prtf_of_faint_identical_runs_is_one():
    """Amplitudes far below 1 (ring sums < 1) still give PRTF = 1 for identical runs."""
    o = 1e-4 * _blob()
    curve = prtf(np.stack([o, o * np.exp(0.4j)]), pixel_size_nm=2.0, align_shift=False, align_twin=False)
    np.testing.assert_allclose(curve.curve, 1.0, atol=1e-9)
    assert curve.curve.shape == (8,) and curve.threshold == ONE_OVER_E
    np.testing.assert_allclose(curve.spatial_frequency, np.arange(8) / 32.0)


def test_prtf_hand_value_of_runs_that_disagree_beyond_a_ring():
    """Three runs: two identical, the third with the sign of every Fourier coefficient beyond ring 4 flipped
    (less energy there, so the best global phase is 0): PRTF 1 up to ring 4, |1 + 1 - 1| / 3 = 1/3 beyond."""
    from napari_cxdi.physics.fft import fft2c_np, ifft2c_np

    o = _blob(seed=1)
    flipped = ifft2c_np(fft2c_np(o) * np.where(ring_index((16, 16)) >= 5, -1.0, 1.0))
    curve = prtf(np.stack([o, o, flipped]), pixel_size_nm=2.0, align_shift=False, align_twin=False)
    np.testing.assert_allclose(curve.curve, [1.0] * 5 + [1 / 3] * 3, rtol=1e-9)
    assert curve.resolution_nm == pytest.approx(16 * 2.0 / 5)          # first ring below 1/e: 5
    assert prtf(np.stack([o, o, flipped]), 2.0, threshold=0.3, align_shift=False,
                align_twin=False).resolution_nm == pytest.approx(4.0)  # 1/3 > 0.3: never crosses, 2 dx


# ---------------------------------------------------------------- FRC


def test_frc_removes_the_mean_of_each_frame_separately():
    """Per-frame constant offsets (a background that changes between frames) do not change the FRC."""
    rng = np.random.default_rng(4)
    a = ndimage.gaussian_filter(rng.normal(size=(2, 32, 32)), (0, 1.5, 1.5))
    b = a + 0.5 * rng.normal(size=a.shape)
    offsets = np.array([10.0, -10.0])[:, None, None]
    plain = frc(a, b, pixel_size_nm=1.0)
    shifted = frc(a + offsets, b - offsets, pixel_size_nm=1.0)
    np.testing.assert_allclose(shifted.curve, plain.curve, atol=1e-9)
    assert plain.curve.shape == (16,) and plain.threshold == ONE_OVER_E


def test_frc_of_featureless_images_is_zero_not_one():
    """Constant images have no structure to correlate: FRC 0 on every ring, resolution N dx at ring 1."""
    curve = frc(np.full((16, 16), 3.0), np.full((16, 16), 3.0), pixel_size_nm=2.0, threshold=0.5)
    np.testing.assert_array_equal(curve.curve, np.zeros(8))
    assert curve.curve.dtype == np.float64 and curve.threshold == 0.5
    assert curve.resolution_nm == pytest.approx(16 * 2.0)


def test_frc_record_carries_every_threshold():
    a = _smooth(9, (16, 16))
    d = frc(a, a + 0.1, pixel_size_nm=3.0).as_dict()
    assert set(d) == {"spatial_frequency_per_nm", "curve", "threshold", "resolution_nm", "resolutions_nm",
                      "thresholds"}
    assert set(d["thresholds"]) == {"1/e", "half-bit", "3-sigma"} and len(d["thresholds"]["half-bit"]) == 8
    assert d["thresholds"]["1/e"] == pytest.approx(ONE_OVER_E)
    assert d["resolutions_nm"]["1/e"] == d["resolution_nm"]


def test_frc_shape_message():
    with pytest.raises(DataValidationError, match=_exact("FRC needs equal shapes, got (4, 4) and (4, 5)")):
        frc(np.zeros((4, 4)), np.zeros((4, 5)), pixel_size_nm=1.0)


# ---------------------------------------------------------------- ring helpers


def test_ring_sum_returns_every_requested_ring():
    rings = ring_index((3, 3))                       # rings 0..1 only
    np.testing.assert_array_equal(ring_sum(np.ones((3, 3)), rings, 4), [1.0, 8.0, 0.0, 0.0])


def test_threshold_crossing_needs_a_value_strictly_below():
    assert threshold_crossing(np.array([1.0, 0.5, 0.4]), 0.5) == 2
    assert threshold_crossing(np.array([1.0, 0.5, 0.5]), 0.5) is None


# ---------------------------------------------------------------- phase SSIM, offset, entropy


def test_offset_mask_counts_nonzero_entries_not_their_values():
    """A mask loaded as integers (0/1/5) selects pixels; it does not weight them."""
    ref = np.zeros((4, 4))
    phase = np.zeros((4, 4))
    phase[:2] = 0.4
    phase[2:] = -0.4
    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = 1
    mask[2:] = 5
    np.testing.assert_allclose(remove_phase_offset(phase, ref, mask=mask), phase, atol=1e-12)   # offset 0
    uint8_mask = (np.indices((24, 24))[0] < 12).astype(np.uint8)
    ref2 = _smooth(10, (24, 24)) * 0.3
    noisy = ref2 + np.random.default_rng(11).normal(0, 0.2, ref2.shape)
    assert phase_ssim(noisy, ref2, mask=uint8_mask) == pytest.approx(phase_ssim(noisy, ref2, mask=uint8_mask > 0),
                                                                      rel=1e-12)


def test_phase_ssim_of_a_low_contrast_reference_uses_its_own_range():
    """A reference spanning 0.3 rad: the default data range is 0.3, not a floor of ~1."""
    from skimage.metrics import structural_similarity

    ref = _smooth(12, (24, 24))
    ref = 0.3 * (ref - ref.min()) / np.ptp(ref)
    noisy = ref + np.random.default_rng(13).normal(0, 0.03, ref.shape)
    _, full = structural_similarity(remove_phase_offset(noisy, ref), ref, data_range=0.3, win_size=7, full=True)
    assert phase_ssim(noisy, ref) == pytest.approx(full.mean(), rel=1e-9)


def test_phase_ssim_of_a_thin_non_square_movie():
    """5 x 20 frames: the window shrinks to the short side (5) and the mask keeps the frame's 2-D shape."""
    ref = np.stack([_smooth(14, (5, 20)), _smooth(15, (5, 20))]) * 0.3
    noisy = ref + np.random.default_rng(16).normal(0, 0.05, ref.shape)
    from skimage.metrics import structural_similarity

    off = remove_phase_offset(noisy, ref)
    rng = float(np.ptp(ref))
    expected = np.mean([structural_similarity(a, b, data_range=rng, win_size=5, full=True)[1].mean()
                        for a, b in zip(off, ref)])
    assert phase_ssim(noisy, ref) == pytest.approx(expected, rel=1e-9)


def test_image_messages_and_default_bins():
    with pytest.raises(DataValidationError, match=_exact("the SSIM mask is empty")):
        phase_ssim(np.zeros((8, 8)), np.zeros((8, 8)), mask=np.zeros((8, 8), bool))
    with pytest.raises(DataValidationError, match=_exact("entropy of an empty image")):
        image_entropy(np.array([np.nan, np.inf]))
    # 512 distinct values into the default 256 bins: two per bin, 8 bits (257 bins would not be uniform)
    assert image_entropy(np.arange(512.0)) == pytest.approx(8.0)


# ---------------------------------------------------------------- registration and velocity


def test_register_shift_without_refinement_is_the_tenth_pixel_correlation_estimate():
    """iterations=0 returns the coarse estimate: a periodic shift by (0.3, -0.7) px is found to 0.1 px."""
    from numpy.fft import fft2, ifft2

    ref = _smooth(17, (32, 32))
    mov = ifft2(ndimage.fourier_shift(fft2(ref), (0.3, -0.7))).real
    np.testing.assert_allclose(register_shift(ref, mov, iterations=0), (0.3, -0.7), atol=1e-9)


def test_register_shift_of_integer_images():
    """8-bit frames are registered as the same frames in floating point (no integer interpolation)."""
    ref = _smooth(18, (48, 48))
    ref = np.rint(255 * (ref - ref.min()) / np.ptp(ref))
    mov = np.clip(np.rint(ndimage.shift(ref, (0.6, -1.2), order=3, mode="nearest")), 0, 255)
    expected = register_shift(ref, mov)
    np.testing.assert_allclose(register_shift(ref.astype(np.uint8), mov.astype(np.uint8)), expected, atol=1e-9)
    np.testing.assert_allclose(expected, (0.6, -1.2), atol=0.05)


def test_register_shift_refines_to_the_interpolation_model():
    """A cubic-spline shift of the reference (edges continued) is recovered to 1e-4 px."""
    ref = _smooth(19, (40, 40))
    mov = ndimage.shift(ref, (0.45, -0.8), order=3, mode="nearest")
    np.testing.assert_allclose(register_shift(ref, mov), (0.45, -0.8), atol=1e-4)


def test_register_shift_of_featureless_frames_is_zero():
    """A blank frame shows no motion (the flat correlation used to report an arbitrary (-0.7, -0.7) px)."""
    flat = np.full((16, 16), 2.0)
    textured = _smooth(21, (16, 16))
    for ref, mov in [(flat, flat), (flat, textured), (textured, flat)]:
        s = register_shift(ref, mov)
        assert isinstance(s, np.ndarray)
        np.testing.assert_array_equal(s, [0.0, 0.0])
    v = estimate_velocity(np.stack([flat] * 3), pixel_size_nm=10.0, frame_interval_s=1.0)
    assert v["speed_nm_s"] == 0.0


def test_masked_coarse_estimate_uses_both_masks():
    """With weights, the coarse (iterations=0) estimate is the masked correlation of the inside only."""
    ref = _smooth(8, (48, 48))
    mov = ndimage.shift(ref, (0.0, 3.0), order=3, mode="nearest")
    ref[:, :6] = mov[:, :6] = 50.0                # static, strong feature at the left edge
    weights = np.zeros((48, 48))
    weights[4:44, 12:44] = 1.0
    np.testing.assert_allclose(register_shift(ref, mov, weights=weights, iterations=0), (0.0, 3.0), atol=0.5)


def test_velocity_messages_and_record():
    msg = "pixel size and frame interval must be positive"
    with pytest.raises(DataValidationError, match=_exact(msg)):
        estimate_velocity(np.zeros((3, 8, 8)), pixel_size_nm=1.0, frame_interval_s=0.0)
    with pytest.raises(DataValidationError, match=_exact("need a movie [T > lag, H, W] and lag >= 1, got shape (8, 8), lag 1")):
        estimate_velocity(np.zeros((8, 8)), pixel_size_nm=1.0, frame_interval_s=1.0)
    with pytest.raises(DataValidationError, match=_exact("need two 2D images of equal shape, got (8, 8) and (8, 9)")):
        register_shift(np.zeros((8, 8)), np.zeros((8, 9)))
    ref = _smooth(20, (40, 40))
    movie = np.stack([ndimage.shift(ref, (0.0, d), order=3, mode="nearest") for d in (0.0, 0.5, 1.5)])
    v = estimate_velocity(movie, pixel_size_nm=2.0, frame_interval_s=0.5)
    assert set(v) == {"per_pair_nm_s", "mean_nm_s", "std_nm_s", "speed_nm_s"}
    # pairs: 0.5 px and 1.0 px along x in 0.5 s at 2 nm/px -> 2 and 4 nm/s; mean 3, std 1
    np.testing.assert_allclose(v["per_pair_nm_s"], [[0.0, 2.0], [0.0, 4.0]], atol=0.01)
    np.testing.assert_allclose(v["std_nm_s"], [0.0, 1.0], atol=0.01)
    assert v["speed_nm_s"] == pytest.approx(3.0, abs=0.01)


# ---------------------------------------------------------------- R_f with bad pixels (mask and NaN)


def test_r_factor_leaves_out_masked_and_nan_pixels():
    measured = np.array([[[4.0, 9.0], [16.0, np.nan]], [[1.0, 1.0], [25.0, 36.0]]])
    predicted = np.array([[[1.0, 9.0], [1e6, 7.0]], [[4.0, 1.0], [-3.0, 1e6]]])
    mask = np.array([[False, False], [True, False]])       # detector pixel (1, 0) is dead in every frame
    # frame 0: |1-2| + |3-3| over 2 + 3 (16 masked, NaN left out) = 1/5; frame 1: |2-1| + 0 + (36: 6 vs 1000)
    expected_frames = [1.0 / 5.0, (1.0 + 0.0 + 994.0) / (1.0 + 1.0 + 6.0)]
    np.testing.assert_allclose(r_factor_per_frame(predicted, measured, mask=mask), expected_frames, rtol=1e-12)
    assert r_factor(predicted, measured, mask=mask) == pytest.approx((1.0 + 1.0 + 994.0) / (5.0 + 8.0), rel=1e-12)
    # a mask loaded as 0/1 integers, and a full-shape mask, mean the same
    assert r_factor(predicted, measured, mask=mask.astype(np.uint8)) == r_factor(predicted, measured, mask=mask)
    full = np.broadcast_to(mask, measured.shape)
    np.testing.assert_array_equal(r_factor_per_frame(predicted, measured, mask=full.astype(np.uint8)),
                                  r_factor_per_frame(predicted, measured, mask=mask))
    # without the mask the dead pixel counts: frame 0 gains |1000 - 4| over 4 more photons
    assert r_factor_per_frame(predicted, measured)[0] == pytest.approx((1.0 + 996.0) / 9.0)


# ---------------------------------------------------------------- ring-curve thresholds and records


def test_a_curve_exactly_at_the_threshold_has_not_crossed_it():
    intensity = np.ones((4, 4))
    modulus = np.full((4, 4), 0.5)
    modulus[2, 2] = 1.0
    assert fourier_fit_ratio(modulus, intensity, 10.0, threshold=0.5).resolution_nm == pytest.approx(20.0)
    # a threshold of 1 or more is 'too few pixels for the criterion': never a crossing
    assert fourier_fit_ratio(modulus, intensity, 10.0, threshold=1.0).resolution_nm == pytest.approx(20.0)
    assert fourier_fit_ratio(modulus, intensity, 10.0, threshold=0.9999).resolution_nm == pytest.approx(40.0)


def test_fourier_fit_ratio_of_single_precision_counts_and_integer_masks():
    rng = np.random.default_rng(5)
    counts = rng.integers(1, 2000, size=(2, 8, 8)).astype(np.float64)
    modulus = np.sqrt(counts) * rng.uniform(0.2, 0.9, size=counts.shape)
    reference = fourier_fit_ratio(modulus, counts, 1.0).curve
    np.testing.assert_allclose(fourier_fit_ratio(modulus, counts.astype(np.float32), 1.0).curve, reference, rtol=1e-13)
    mask = np.zeros((8, 8), bool)
    mask[:, :3] = True
    flags = mask.astype(np.uint8) * 2                      # an integer mask: any nonzero value is bad
    np.testing.assert_array_equal(fourier_fit_ratio(modulus, counts, 1.0, mask=flags).curve,
                                  fourier_fit_ratio(modulus, counts, 1.0, mask=mask).curve)
    with pytest.raises(DataValidationError, match=_exact("the mask (3, 3) does not fit the data (2, 8, 8)")):
        fourier_fit_ratio(modulus, counts, 1.0, mask=np.zeros((3, 3), bool))
    with pytest.raises(DataValidationError,
                       match=_exact("the Fourier fit ratio needs equal shapes, got (2, 8, 8) and (8, 8)")):
        fourier_fit_ratio(modulus, counts[0], 1.0)


def test_threshold_helpers_hand_values():
    from napari_cxdi.metrics import sigma_threshold

    assert sigma_threshold(100) == pytest.approx(0.3)
    assert sigma_threshold(0) == pytest.approx(3.0) and sigma_threshold(1) == pytest.approx(3.0)
    np.testing.assert_allclose(sigma_threshold(np.array([4, 16]), n_sigma=2.0), [1.0, 0.5])


def test_frc_thresholds_count_pixels_frames_and_hermitian_halves():
    """8 x 8 rings hold 1, 8, 12 and 16 pixels; three real frames: x 3 / 2 independent pixels."""
    from napari_cxdi.metrics import half_bit_threshold

    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(2, 3, 8, 8))
    counts = np.array([1.0, 8.0, 12.0, 16.0])
    real = frc(a, b, pixel_size_nm=1.0, n_sigma=2.0)
    n_real = counts * 3 / 2
    np.testing.assert_allclose(real.thresholds["2-sigma"], 2.0 / np.sqrt(np.maximum(n_real, 1.0)))
    np.testing.assert_allclose(real.thresholds["half-bit"], half_bit_threshold(n_real))
    single = frc(a[0], b[0], pixel_size_nm=1.0)                    # one real frame
    np.testing.assert_allclose(single.thresholds["3-sigma"], 3.0 / np.sqrt(np.maximum(counts / 2, 1.0)))
    for x, y in [(a + 0j, b), (a, b + 0j), (a + 0j, b + 0j)]:      # any complex image: no Hermitian halving
        c = frc(x, y, pixel_size_nm=1.0)
        np.testing.assert_allclose(c.thresholds["3-sigma"], 3.0 / np.sqrt(counts * 3))


def test_resolution_records_are_json_ready():
    import json

    a = _smooth(9, (16, 16))
    d = json.loads(json.dumps(frc(a, a + 0.1, pixel_size_nm=3.0).as_dict()))
    assert isinstance(d["thresholds"]["half-bit"], list)
    o = _blob()
    curve = prtf(np.stack([o, o]), pixel_size_nm=2.0)
    d = json.loads(json.dumps(curve.as_dict()))
    assert d["thresholds"] == {"1/e": pytest.approx(ONE_OVER_E), "random-phase floor": pytest.approx(2 ** -0.5)}
    assert d["resolutions_nm"] == {"1/e": pytest.approx(4.0)}
    assert d["notes"] == ["only 2 runs: random phases would still average to ~0.71 (1/e = 0.37); use at least 12 runs"]


# ---------------------------------------------------------------- PRTF options: probe, alignment switches, masks


def test_prtf_takes_a_single_mode_probe_and_names_a_mismatch():
    o = _blob()
    y, x = np.mgrid[:16, :16] - 8
    probe = np.exp(-(x**2 + y**2) / 30.0) * np.exp(0.2j * x)
    runs = np.stack([o, o * np.exp(1j * 1.5 * (x > 0))])
    two_d = prtf(runs, probe=probe)
    np.testing.assert_array_equal(two_d.curve, prtf(runs, probe=probe[None]).curve)
    assert two_d.curve[3:].min() < 0.999                           # the runs do differ
    with pytest.raises(DataValidationError, match=_exact("the probe (8, 8) does not match the reconstructions (16, 16)")):
        prtf(runs, probe=np.ones((8, 8)))


def test_prtf_alignment_switches_are_obeyed():
    """Without a probe translation and twin are aligned by default; explicit False keeps them as disagreement."""
    o = _blob(seed=2)
    shifted = np.stack([o, np.roll(o, (2, -3), axis=(0, 1))])
    assert prtf(shifted).curve[1:].min() > 0.999
    assert prtf(shifted, align_shift=False).curve[1:].min() < 0.9
    twin = np.stack([o, np.fft.ifft2(np.conj(np.fft.fft2(o)))])     # far field conj(F): the twin image
    assert prtf(twin, align_shift=False).curve[1:].min() > 0.999
    assert prtf(twin, align_shift=False, align_twin=False).curve[1:].min() < 0.9


def test_prtf_aligns_sub_pixel_translations():
    """A half-pixel translation lies on the 1/20-px alignment grid: recovered exactly, PRTF = 1."""
    o = _blob(seed=3)
    moved = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(o), (0.5, -0.5)))
    np.testing.assert_allclose(prtf(np.stack([o, moved]), align_twin=False).curve, 1.0, atol=1e-9)


def test_prtf_per_frame_mask_hand_value():
    """Frame 0: runs disagree beyond ring 4 but those pixels are masked in frame 0 only; frame 1 (twice as
    bright) agrees everywhere. Every ring keeps only agreeing pixels: PRTF = 1. Without the mask the outer
    rings mix 1/3 (frame 0, weight 1) and 1 (frame 1, weight 2): 7/9."""
    from napari_cxdi.physics.fft import fft2c_np, ifft2c_np

    o = _blob(seed=1)
    outer = ring_index((16, 16)) >= 5
    flipped = ifft2c_np(fft2c_np(o) * np.where(outer, -1.0, 1.0))
    runs = np.stack([np.stack([o, 2 * o]), np.stack([o, 2 * o]), np.stack([flipped, 2 * o])])   # [R=3, T=2, H, W]
    mask = np.stack([outer, np.zeros_like(outer)])
    opts = dict(align_shift=False, align_twin=False)
    np.testing.assert_allclose(prtf(runs, mask=mask, **opts).curve, 1.0, rtol=1e-9)
    np.testing.assert_allclose(prtf(runs, **opts).curve, [1.0] * 5 + [7 / 9] * 3, rtol=1e-9)
    # a movie [R, 2, 1, H, W] with its mask [2, 1, H, W]: the same frames, the same answer
    np.testing.assert_allclose(prtf(runs[:, :, None], mask=mask[:, None], **opts).curve, 1.0, rtol=1e-9)


# ---------------------------------------------------------------- registration corner cases


def test_coarse_registration_is_robust_to_edges():
    """A non-periodic shift (edges continued): the unnormalised correlation lands within 0.3 px
    (phase correlation, which whitens the spectrum, would lock onto the edges at 0)."""
    ref = _smooth(5, (48, 48))
    mov = ndimage.shift(ref, (0.3, 0.74), order=3, mode="nearest")
    np.testing.assert_allclose(register_shift(ref, mov, iterations=0), (0.3, 0.74), atol=0.3)


def test_registration_with_uniform_weights_models_the_edges():
    """Weights over the whole frame: the continued edges of the cubic-spline model must match (1e-4 px)."""
    ref = _smooth(19, (40, 40))
    mov = ndimage.shift(ref, (0.45, -0.8), order=3, mode="nearest")
    np.testing.assert_allclose(register_shift(ref, mov, weights=np.ones((40, 40))), (0.45, -0.8), atol=1e-4)


def test_registration_without_usable_gradient_keeps_the_coarse_estimate():
    """Structure only on the border row, where the Hann window is 0: no refinement is possible."""
    ref = np.zeros((16, 16))
    ref[0] = np.sin(np.arange(16.0))
    mov = np.roll(ref, 2, axis=1)
    s = register_shift(ref, mov)
    assert isinstance(s, np.ndarray)
    np.testing.assert_array_equal(s, register_shift(ref, mov, iterations=0))


def test_entropy_of_a_half_precision_image_is_that_of_its_values():
    """float16 images are binned like the same values in double precision (numpy would bin in float16)."""
    x = np.random.default_rng(0).normal(size=10000).astype(np.float16)
    assert image_entropy(x) == pytest.approx(image_entropy(x.astype(np.float64)), rel=1e-12)


def test_defaults_a_user_relies_on():
    """Crossings count from ring 1; the PRTF is in pixels unless told the pixel size; shifts are between
    consecutive frames."""
    from napari_cxdi.metrics import estimate_shifts

    assert threshold_crossing(np.array([1.0, 0.2, 0.1]), 0.5) == 1
    o = _blob()
    curve = prtf(np.stack([o, o]))
    np.testing.assert_allclose(curve.spatial_frequency, np.arange(8) / 16.0)    # cycles per pixel
    assert curve.resolution_nm == pytest.approx(2.0)                           # Nyquist: 2 pixels
    ref = _smooth(22, (40, 40))
    movie = np.stack([ndimage.shift(ref, (0.0, 0.6 * t), order=3, mode="nearest") for t in range(3)])
    np.testing.assert_allclose(estimate_shifts(movie), [[0.0, 0.6], [0.0, 0.6]], atol=0.02)
