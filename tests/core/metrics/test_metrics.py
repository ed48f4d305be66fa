import numpy as np
import pytest
from scipy import ndimage

from napari_cxdi.errors import DataValidationError
from napari_cxdi.metrics import (
    ONE_OVER_E, estimate_velocity, fourier_fit_ratio, frc, image_entropy, phase_ssim, r_factor, register_shift,
    remove_phase_offset,
)


def smooth_image(rng, n=64, sigma=2.0):
    return ndimage.gaussian_filter(rng.normal(size=(n, n)), sigma)


def test_r_factor_known_cases(rng):
    intensity = rng.uniform(1, 100, size=(3, 16, 16))
    assert r_factor(intensity, intensity) == 0.0
    assert r_factor(4 * intensity, intensity) == pytest.approx(1.0)  # |2 sqrt(I) - sqrt(I)| / sqrt(I)
    assert r_factor(np.zeros_like(intensity), intensity) == pytest.approx(1.0)
    with pytest.raises(DataValidationError):
        r_factor(intensity[:1], intensity)


def test_fourier_fit_ratio_is_one_for_a_perfect_fit_and_drops_for_a_bad_one(rng):
    intensity = rng.uniform(1, 100, size=(2, 64, 64))
    perfect = fourier_fit_ratio(np.sqrt(intensity), intensity, pixel_size_nm=27.0)
    assert np.allclose(perfect.curve[:32], 1.0)
    assert perfect.resolution_nm == pytest.approx(54.0)  # never crosses 1/e: Nyquist, 2 dx
    half = fourier_fit_ratio(0.2 * np.sqrt(intensity), intensity, pixel_size_nm=27.0)
    assert half.resolution_nm > 64 * 27.0 / 2  # below 1/e from the first ring


def test_frc_identical_unrelated_and_band_limited(rng):
    a = smooth_image(rng)
    same = frc(a, a, pixel_size_nm=10.0)
    assert np.allclose(same.curve[1:], 1.0)
    assert same.resolution_nm == pytest.approx(20.0)
    b = smooth_image(np.random.default_rng(99))
    unrelated = frc(a, b, pixel_size_nm=10.0)
    assert abs(unrelated.curve[1:20]).mean() < 0.3
    # image plus strong white noise: correlation high at low q, lost at high q
    noisy = a + 0.5 * a.std() * rng.normal(size=a.shape) * 3
    curve = frc(a, noisy, pixel_size_nm=10.0)
    assert curve.curve[2] > 0.8 and curve.curve[-1] < ONE_OVER_E
    assert 20.0 < curve.resolution_nm < 64 * 10.0


def test_phase_ssim_ignores_global_offset(rng):
    phase = np.clip(smooth_image(rng) * 5, -1.5, 1.5)
    shifted = np.angle(np.exp(1j * (phase + 2.5)))
    assert phase_ssim(shifted, phase) == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(remove_phase_offset(shifted, phase), phase, atol=1e-6)
    assert phase_ssim(rng.uniform(-np.pi, np.pi, phase.shape), phase) < 0.2


def test_entropy():
    assert image_entropy(np.ones((8, 8))) == 0.0
    assert image_entropy(np.arange(256.0), bins=256) == pytest.approx(8.0)


def test_registration_recovers_a_known_subpixel_shift(rng):
    big = smooth_image(rng, n=96, sigma=2.5)
    moved = ndimage.shift(big, (0.3, -1.7), order=3, mode="wrap")
    s = register_shift(big[16:-16, 16:-16], moved[16:-16, 16:-16])
    assert s == pytest.approx([0.3, -1.7], abs=0.03)


def test_velocity_of_the_moving_chart():
    from napari_cxdi.simulate import simulate_test_chart

    chart = simulate_test_chart(n_frames=12, size=64, noise=False)
    v = estimate_velocity(chart.phase, chart.pixel_size_nm, chart.metadata["frame_interval_s"], lag=3)
    assert v["mean_nm_s"] == pytest.approx([0.0, 340.0], abs=15.0)


def test_registration_inside_a_static_window_is_not_biased(rng):
    """A pattern moving behind a fixed aperture (as a sample behind the probe): weights restrict
    the registration to the aperture's inside, whose fixed edge would otherwise pull the shift to 0."""
    from napari_cxdi.api import interior_weights

    big = smooth_image(rng, n=96, sigma=2.0)
    yy, xx = np.mgrid[:96, :96]
    aperture = np.hypot(yy - 48, xx - 48) < 30
    frames = np.array([ndimage.shift(big, (0, 0.4 * t), order=3, mode="wrap") * aperture for t in range(4)])
    weighted = estimate_velocity(frames, 1.0, 1.0, weights=interior_weights(aperture))["mean_nm_s"]
    assert weighted == pytest.approx([0.0, 0.4], abs=0.03)
