"""Value tests that pin the numbers of napari_cxdi.physics (written to kill mutmut survivors, issue 20).

Every expected number is computed by hand (or from the formula in the module docstring), not read back
from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError, DataValidationError, ProbeMismatchError
from napari_cxdi.physics import fft, forward, geometry, materials, mixed_state, noise, probe, relaxed, thinning

# --------------------------------------------------------------------------------------------- geometry


def test_wavelength_and_pixel_size_hand_values():
    lam = 12.398419843320026 / 5.0 * 1e-10
    assert geometry.wavelength_m(5.0) == pytest.approx(lam, rel=1e-12)
    g = geometry.Geometry(energy_kev=5.0, distance_m=3.14, detector_pixel_um=75.0, n=384)
    dx_nm = lam * 3.14 / (384 * 75e-6) * 1e9
    assert g.wavelength_m == pytest.approx(lam, rel=1e-12)
    assert g.pixel_size_nm == pytest.approx(dx_nm, rel=1e-12)
    assert g.pixel_size_nm == pytest.approx(27.0354, abs=1e-3)
    assert g.field_of_view_um == pytest.approx(384 * dx_nm * 1e-3, rel=1e-12)
    ta = geometry.TA_CHART
    assert (ta.energy_kev, ta.distance_m, ta.detector_pixel_um, ta.n) == (5.0, 3.30, 72.6, 384)
    assert ta.pixel_size_nm == pytest.approx(lam * 3.30 / (384 * 72.6e-6) * 1e9, rel=1e-12)
    assert geometry.AUNP_PVA == geometry.AUNP_SIMULATION == g
    assert geometry.Geometry() == g


def test_binning_keeps_pixel_size_and_shrinks_field_of_view():
    g = geometry.AUNP_SIMULATION
    b = g.binned_to(128)
    assert b.n == 128
    assert b.detector_pixel_um == pytest.approx(75.0 * 3, rel=1e-12)
    assert b.pixel_size_nm == pytest.approx(g.pixel_size_nm, rel=1e-12)
    assert b.field_of_view_um == pytest.approx(g.field_of_view_um / 3, rel=1e-12)
    assert (b.energy_kev, b.distance_m) == (g.energy_kev, g.distance_m)


def test_geometry_errors_name_the_field():
    geometry.Geometry(n=8)  # the smallest allowed frame
    with pytest.raises(ConfigError, match=r"^frame size n must be at least 8 pixels, got 7$"):
        geometry.Geometry(n=7)
    for name in ("energy_kev", "distance_m", "detector_pixel_um"):
        with pytest.raises(ConfigError, match=rf"^geometry: {name} must be in \(0, inf\), got 0$"):
            geometry.Geometry(**{name: 0})
    with pytest.raises(ConfigError, match=r"^photon energy energy_kev must be in \(0, inf\), got -1.0$"):
        geometry.wavelength_m(-1.0)


# -------------------------------------------------------------------------------------------------- fft


@pytest.mark.parametrize("shape", [(4, 4), (5, 7), (6, 3)])
def test_fft_convention_centre_and_inverse(shape):
    h, w = shape
    ones = torch.ones(shape, dtype=torch.complex128)
    f = fft.fft2c(ones)
    expected = torch.zeros(shape, dtype=torch.complex128)
    expected[h // 2, w // 2] = math.sqrt(h * w)  # zero frequency at N // 2, orthonormal scaling
    assert torch.allclose(f, expected, atol=1e-12)
    assert np.allclose(fft.fft2c_np(np.ones(shape)), expected.numpy(), atol=1e-12)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2,) + shape) + 1j * rng.normal(size=(2,) + shape)
    xt = torch.from_numpy(x)
    assert torch.allclose(fft.ifft2c(fft.fft2c(xt)), xt, atol=1e-12)
    assert np.allclose(fft.ifft2c_np(fft.fft2c_np(x)), x, atol=1e-12)
    assert np.allclose(fft.fft2c(xt).numpy(), fft.fft2c_np(x), atol=1e-12)
    assert np.allclose(fft.ifft2c(xt).numpy(), fft.ifft2c_np(x), atol=1e-12)
    # a delta at the real-space origin (not shifted) is flat in the far field
    delta = np.zeros(shape, complex)
    delta[0, 0] = 1.0
    assert np.allclose(fft.fft2c_np(delta), np.full(shape, 1 / math.sqrt(h * w)), atol=1e-12)
    # inverse of a centred delta is flat too (ifftshift before the transform)
    assert np.allclose(fft.ifft2c_np(expected.numpy()), np.ones(shape), atol=1e-12)
    assert torch.allclose(fft.ifft2c(expected), ones, atol=1e-12)


def test_frequency_radius_values():
    r = fft.frequency_radius((4, 4))
    assert r[2, 2] == 0.0
    assert r[0, 0] == pytest.approx(math.hypot(2, 2))
    assert r[2, 3] == pytest.approx(1.0)
    assert r[3, 2] == pytest.approx(1.0)
    r = fft.frequency_radius((4, 8))  # rows scaled by w / h = 2 so radii are isotropic in frequency
    assert r.shape == (4, 8)
    assert r[2, 4] == 0.0
    assert r[3, 4] == pytest.approx(2.0)
    assert r[2, 5] == pytest.approx(1.0)
    assert r[0, 0] == pytest.approx(math.hypot(4, 4))
    r = fft.frequency_radius((5, 5))
    assert r[2, 2] == 0.0 and r[0, 4] == pytest.approx(math.hypot(2, 2))


# -------------------------------------------------------------------------------------------------- noise


def test_photons_per_frame_and_errors():
    assert noise.photons_per_frame(3e6, 0.1) == pytest.approx(3e5)
    assert isinstance(noise.photons_per_frame(2, 3), float)
    with pytest.raises(ConfigError, match=r"^flux and exposure must be positive, got 0 ph/s and 1 s$"):
        noise.photons_per_frame(0, 1)
    with pytest.raises(ConfigError, match=r"got 1 ph/s and 0 s"):
        noise.photons_per_frame(1, 0)
    with pytest.raises(ConfigError):
        noise.photons_per_frame(1, -1)


def test_normalise_to_photons_per_frame():
    x = torch.tensor([[[1.0, 3.0], [0.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    y = noise.normalise_to_photons(x, 16.0)
    assert torch.allclose(y[0], torch.tensor([[2.0, 6.0], [0.0, 8.0]], dtype=torch.float64))
    assert torch.equal(y[1], torch.zeros(2, 2, dtype=torch.float64))  # an empty frame stays empty, no NaN


def test_poisson_counts_checks_and_values():
    with pytest.raises(ConfigError, match=r"^expected intensity must be real$"):
        noise.poisson_counts(torch.ones(2, dtype=torch.complex64))
    for bad in (torch.tensor([1.0, -0.5]), torch.tensor([1.0, float("nan")]), torch.tensor([float("inf")])):
        with pytest.raises(ConfigError, match=r"^expected intensity must be finite and non-negative$"):
            noise.poisson_counts(bad)
    out = noise.poisson_counts(torch.zeros(3, 3, dtype=torch.float64))
    assert out.dtype == torch.float32 and torch.equal(out, torch.zeros(3, 3))
    lam = torch.full((200, 200), 4.0, dtype=torch.float64)
    a = noise.poisson_counts(lam, torch.Generator().manual_seed(3))
    b = noise.poisson_counts(lam, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert float(a.mean()) == pytest.approx(4.0, abs=0.05)
    assert float(a.var()) == pytest.approx(4.0, abs=0.15)
    assert torch.equal(a, a.round())


# ------------------------------------------------------------------------------------------------ forward


def test_probe_shape_errors_and_forward_values():
    with pytest.raises(ProbeMismatchError, match=r"^probe must be \[modes, H, W\], got shape \(4, 4\)$"):
        forward.check_probe_shape(torch.ones(4, 4), (4, 4))
    with pytest.raises(ProbeMismatchError, match=r"^probe frames are \(4, 4\) but diffraction frames are \(4, 5\)$"):
        forward.check_probe_shape(torch.ones(1, 4, 4), (2, 4, 5))
    forward.check_probe_shape(torch.ones(2, 4, 5), (3, 7, 4, 5))
    with pytest.raises(ProbeMismatchError):
        forward.diffraction_intensity(torch.ones(1, 4, 4, dtype=torch.complex64), torch.ones(4, 5, dtype=torch.complex64))
    p = torch.stack([torch.full((4, 4), 2.0 + 0j), torch.full((4, 4), 1j)]).to(torch.complex128)
    o = torch.full((3, 4, 4), 0.5 + 0j, dtype=torch.complex128)
    psi = forward.exit_waves(p, o)
    assert psi.shape == (3, 2, 4, 4)
    assert torch.allclose(psi[1, 0], torch.full((4, 4), 1.0 + 0j, dtype=torch.complex128))
    assert torch.allclose(psi[2, 1], torch.full((4, 4), 0.5j, dtype=torch.complex128))
    inten = forward.diffraction_intensity(p, o)
    # flat waves: all power at the centre, |F|^2 = 16 * (1 + 0.25)
    expected = torch.zeros(3, 4, 4, dtype=torch.float64)
    expected[:, 2, 2] = 16 * 1.25
    assert torch.allclose(inten, expected, atol=1e-10)
    z = torch.tensor([[[[3.0 + 4.0j]]], [[[1.0 - 2.0j]]]]).reshape(2, 1, 1)
    assert torch.allclose(forward.intensity_from_far_field(z), torch.tensor([[30.0]]))


# ---------------------------------------------------------------------------------------------- materials


def test_materials_and_transmission_values():
    assert materials.GOLD_5KEV == materials.Material("Au", 1.20e-4, 1.65e-5)
    assert materials.TANTALUM_5KEV == materials.Material("Ta", 1.04e-4, 1.30e-5)
    assert materials.WATER_5KEV == materials.Material("H2O", 9.2e-6, 1.4e-7)
    assert materials.VACUUM == materials.Material("vacuum", 0.0, 0.0)
    rel = materials.GOLD_5KEV.relative_to(materials.WATER_5KEV)
    assert rel.name == "Au in H2O"
    assert rel.delta == pytest.approx(1.20e-4 - 9.2e-6)
    assert rel.beta == pytest.approx(1.65e-5 - 1.4e-7)
    lam = 2.5e-10
    t = np.array([0.0, 100.0, 1000.0])
    o = materials.transmission(t, materials.GOLD_5KEV, lam)
    assert o.dtype == np.complex64
    k = 2 * np.pi / lam
    phase = -k * 1.20e-4 * t * 1e-9
    amp = np.exp(-k * 1.65e-5 * t * 1e-9)
    assert np.allclose(np.angle(o), phase, atol=1e-5)
    assert np.allclose(np.abs(o), amp, rtol=1e-5)
    assert o[0] == 1.0
    assert np.angle(o[1]) < 0  # the phase shift is negative
    assert materials.transmission([[100]], materials.VACUUM, lam).tolist() == [[1.0]]


# -------------------------------------------------------------------------------------------- mixed state


def test_split_unmeasured():
    m = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    same, mask = mixed_state.split_unmeasured(m)
    assert same is m and mask is None
    same, mask = mixed_state.split_unmeasured(m, torch.ones(2, 2, dtype=torch.bool))
    assert mask is None
    filled, mask = mixed_state.split_unmeasured(torch.tensor([[1.0, float("nan")], [3.0, 4.0]]))
    assert torch.equal(filled, torch.tensor([[1.0, 0.0], [3.0, 4.0]]))
    assert mask.tolist() == [[True, False], [True, True]]
    filled, mask = mixed_state.split_unmeasured(m, torch.tensor([[1, 1], [0, 1]]))
    assert torch.equal(filled, torch.tensor([[1.0, 2.0], [0.0, 4.0]]))
    assert mask.dtype == torch.bool and mask.tolist() == [[True, True], [False, True]]


def test_modulus_projection_hand_values():
    # two modes 3 and 4i at one pixel: total modulus 5; measured 100 -> ratio 2
    psi = torch.tensor([3.0 + 0j, 4j], dtype=torch.complex128).reshape(2, 1, 1)
    out = mixed_state.modulus_projection(psi, torch.tensor([[100.0]], dtype=torch.float64), eps=0.0)
    assert torch.allclose(out.reshape(2), torch.tensor([6.0 + 0j, 8j], dtype=torch.complex128))
    out = mixed_state.modulus_projection(psi, torch.tensor([[100.0]], dtype=torch.float64))  # default eps 1e-8
    assert torch.allclose(out.reshape(2), torch.tensor([6.0 + 0j, 8j], dtype=torch.complex128), atol=1e-8)
    # eps enters under the square root: sqrt(25 + 11) = 6 -> ratio 10 / 6
    out = mixed_state.modulus_projection(psi, torch.tensor([[100.0]], dtype=torch.float64), eps=11.0)
    assert torch.allclose(out.reshape(2), torch.tensor([5.0 + 0j, 20j / 3], dtype=torch.complex128))
    # negative counts are clamped to 0; NaN counts and invalid pixels keep the model modulus
    psi2 = torch.full((1, 1, 3), 2.0 + 0j, dtype=torch.complex128)
    meas = torch.tensor([[-4.0, float("nan"), 9.0]], dtype=torch.float64)
    out = mixed_state.modulus_projection(psi2, meas, eps=0.0)
    assert torch.allclose(out.reshape(3), torch.tensor([0.0, 2.0, 3.0], dtype=torch.complex128))
    out = mixed_state.modulus_projection(psi2, torch.tensor([[1.0, 1.0, 9.0]], dtype=torch.float64), eps=0.0,
                                         valid=torch.tensor([[True, False, True]]))
    assert torch.allclose(out.reshape(3), torch.tensor([1.0, 2.0, 3.0], dtype=torch.complex128))


def test_probe_norm_values_and_error():
    p = torch.zeros(2, 2, 2, dtype=torch.complex128)
    p[0, 0, 0] = 2.0  # power 4 at (0, 0)
    p[1, 1, 1] = 3j  # power 9 at (1, 1)
    p[1, 0, 0] = 1.0  # power 1 at (0, 0)
    assert float(mixed_state.probe_norm(p)) == pytest.approx(9.0)  # max_r (4 + 1, 9)
    assert float(mixed_state.probe_norm(p, "max_total")) == pytest.approx(9.0)
    assert float(mixed_state.probe_norm(p, "sum_max")) == pytest.approx(4.0 + 9.0)
    p[1, 1, 1] = 1.0
    assert float(mixed_state.probe_norm(p, "max_total")) == pytest.approx(5.0)
    assert float(mixed_state.probe_norm(p, "sum_max")) == pytest.approx(5.0)
    assert mixed_state.NORMALISATIONS == ("max_total", "sum_max")
    with pytest.raises(ConfigError, match=r"^unknown normalisation 'max'; choose one of \('max_total', 'sum_max'\)$"):
        mixed_state.probe_norm(p, "max")


def test_mixed_state_update_hand_values():
    # one mode, flat probe 1 on 2x2, object 1: far field has 2 at the centre (ortho), I = 4 there.
    p = torch.ones(1, 2, 2, dtype=torch.complex128)
    o = torch.ones(2, 2, dtype=torch.complex128)
    meas = torch.zeros(2, 2, dtype=torch.float64)
    meas[1, 1] = 16.0  # twice the modulus -> exit wave doubles -> U = 1 everywhere
    u = mixed_state.mixed_state_update(o, p, meas, eps=1e-30)
    assert torch.allclose(u, torch.ones(2, 2, dtype=torch.complex128), atol=1e-12)
    step = mixed_state.mixed_state_step(o, p, meas, alpha=0.5, eps=1e-30)
    assert torch.allclose(step, torch.full((2, 2), 1.5 + 0j, dtype=torch.complex128), atol=1e-12)
    assert torch.allclose(mixed_state.mixed_state_step(o, p, meas, eps=1e-30), 2 * o, atol=1e-12)  # alpha defaults to 1
    # normalisation divides: probe 2 -> |P|^2 = 4 on both norms; U = conj(P)(2P O - P O) / 4 = O
    p2 = 2 * p
    meas2 = torch.zeros(2, 2, dtype=torch.float64)
    meas2[1, 1] = 64.0
    for norm in ("max_total", "sum_max"):
        u = mixed_state.mixed_state_update(o, p2, meas2, eps=1e-30, normalisation=norm)
        assert torch.allclose(u, o, atol=1e-12)
    # masked pixel keeps the model: nothing to update
    u = mixed_state.mixed_state_update(o, p, meas, eps=1e-30, valid=torch.tensor([[True, True], [True, False]]))
    assert torch.allclose(u, torch.zeros(2, 2, dtype=torch.complex128), atol=1e-12)
    with pytest.raises(ProbeMismatchError):
        mixed_state.mixed_state_update(o, torch.ones(1, 3, 3, dtype=torch.complex128), meas)
    with pytest.raises(ConfigError, match="unknown normalisation"):
        mixed_state.mixed_state_step(o, p, meas, normalisation="nope")


# ---------------------------------------------------------------------------------------------- relaxed


def test_sqrt_poisson_std_values():
    i = torch.tensor([-1.0, 0.0, 0.04, 0.25, 4.0, 100.0])
    assert torch.allclose(relaxed.sqrt_poisson_std(i), torch.tensor([0.0, 0.0, 0.2, 0.5, 0.5, 0.5]))


def test_relaxed_projection_soft_threshold_hand_values():
    # one mode, |Psi| = 4 (band = sigma * 1/2); measured sqrt(n) = 10 -> residual 6
    psi = torch.full((1, 1, 1), 4.0 + 0j, dtype=torch.complex128)
    meas = torch.tensor([[100.0]], dtype=torch.float64)
    out = relaxed.relaxed_modulus_projection(psi, meas, sigma=2.0, eps=0.0)
    assert complex(out.reshape(())) == pytest.approx(4.0 + 6.0 - 1.0)  # target 4 + (6 - 1)
    out = relaxed.relaxed_modulus_projection(psi, meas, eps=0.0)  # sigma defaults to 1 -> band 0.5
    assert complex(out.reshape(())) == pytest.approx(9.5)
    out = relaxed.relaxed_modulus_projection(psi, meas, sigma=0.0, eps=0.0)
    assert complex(out.reshape(())) == pytest.approx(10.0)
    # residual below zero: sqrt(n) = 1 -> residual -3, band 1 -> target 4 - 2
    out = relaxed.relaxed_modulus_projection(psi, torch.tensor([[1.0]], dtype=torch.float64), sigma=2.0, eps=0.0)
    assert complex(out.reshape(())) == pytest.approx(2.0)
    # inside the band: no move at all
    out = relaxed.relaxed_modulus_projection(psi, torch.tensor([[17.64]], dtype=torch.float64), sigma=1.0, eps=0.0)
    assert complex(out.reshape(())) == pytest.approx(4.0)
    # weak pixel: |Psi| = 0.1 -> band sigma * 0.1
    weak = torch.full((1, 1, 1), 0.1 + 0j, dtype=torch.complex128)
    out = relaxed.relaxed_modulus_projection(weak, torch.tensor([[1.0]], dtype=torch.float64), sigma=1.0, eps=0.0)
    assert complex(out.reshape(())) == pytest.approx(0.1 + (0.9 - 0.1))
    # default eps 1e-8 barely changes it; eps is added to the power under the root
    out = relaxed.relaxed_modulus_projection(psi, meas, sigma=0.0)
    assert complex(out.reshape(())) == pytest.approx(10.0, abs=1e-6)
    out = relaxed.relaxed_modulus_projection(psi, meas, sigma=0.0, eps=9.0)  # total sqrt(25) = 5 -> 4 * 10 / 5
    assert complex(out.reshape(())) == pytest.approx(8.0)
    # invalid / NaN pixels keep the model modulus; negative counts clamp to 0
    psi3 = torch.full((1, 1, 3), 4.0 + 0j, dtype=torch.complex128)
    m3 = torch.tensor([[float("nan"), 100.0, -5.0]], dtype=torch.float64)
    out = relaxed.relaxed_modulus_projection(psi3, m3, sigma=0.0, eps=0.0, valid=torch.tensor([[True, False, True]]))
    assert torch.allclose(out.reshape(3), torch.tensor([4.0, 4.0, 0.0], dtype=torch.complex128))


def test_relaxed_update_sigma_zero_is_classical_and_values():
    p = torch.ones(1, 2, 2, dtype=torch.complex128)
    o = torch.ones(2, 2, dtype=torch.complex128)
    meas = torch.zeros(2, 2, dtype=torch.float64)
    meas[1, 1] = 16.0
    u = relaxed.relaxed_mixed_state_update(o, p, meas, sigma=0.0, eps=1e-30)
    assert torch.allclose(u, torch.ones(2, 2, dtype=torch.complex128), atol=1e-12)
    # default sigma 1: at the centre |Psi| = 2, target 4 - 0.5; other pixels have |Psi| = 0, measured 0
    u = relaxed.relaxed_mixed_state_update(o, p, meas, eps=1e-30)
    assert torch.allclose(u, torch.full((2, 2), 0.75 + 0j, dtype=torch.complex128), atol=1e-12)
    u = relaxed.relaxed_mixed_state_update(o, 2 * p, 4 * meas, sigma=0.0, eps=1e-30, normalisation="sum_max")
    assert torch.allclose(u, o, atol=1e-12)
    u = relaxed.relaxed_mixed_state_update(o, p, meas, sigma=0.0, eps=1e-30, valid=torch.tensor([[1, 1], [1, 0]]).bool())
    assert torch.allclose(u, torch.zeros(2, 2, dtype=torch.complex128), atol=1e-12)
    with pytest.raises(ProbeMismatchError):
        relaxed.relaxed_mixed_state_update(o, torch.ones(2, 2, dtype=torch.complex128), meas)


# --------------------------------------------------------------------------------------------- thinning


def test_binomial_thinning_values_and_errors():
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match=rf"^the held-out fraction must be in \(0, 1\), got {bad}$"):
            thinning.binomial_thinning(np.ones(3), bad)
    for bad in ([1.0, -1.0], [1.0, np.inf], [-np.inf]):
        with pytest.raises(DataValidationError, match=r"^binomial thinning needs finite, non-negative photon counts"):
            thinning.binomial_thinning(np.array(bad))
    counts = np.array([[0.0, 1.0, 2.4, 2.6], [100.0, np.nan, 7.0, 1000.0]])
    kept, held = thinning.binomial_thinning(counts, 0.3, seed=5)
    assert kept.dtype == np.float32 and held.dtype == np.float32 and kept.shape == counts.shape
    assert np.isnan(kept[1, 1]) and np.isnan(held[1, 1])
    total = kept + held
    assert total[0].tolist() == [0.0, 1.0, 2.0, 3.0]  # counts rounded to integers
    assert total[1, [0, 2, 3]].tolist() == [100.0, 7.0, 1000.0]
    assert np.all(held[~np.isnan(held)] >= 0) and np.all(kept[~np.isnan(kept)] >= 0)
    k2, h2 = thinning.binomial_thinning(counts, 0.3, seed=5)
    assert np.array_equal(k2, kept, equal_nan=True) and np.array_equal(h2, held, equal_nan=True)
    # the held-out fraction: 0.1 by default; no NaN when all pixels are measured
    big = np.full((200, 200), 50.0)
    kept, held = thinning.binomial_thinning(big)
    assert held.mean() == pytest.approx(5.0, abs=0.1)
    assert not np.isnan(kept).any()
    kept, held = thinning.binomial_thinning(big, 0.7, seed=1)
    assert held.mean() == pytest.approx(35.0, abs=0.2)


def test_frame_thinning_is_seeded_by_seed_and_index():
    frame = np.full((50, 50), 20.0)
    a = thinning.frame_thinning(frame, 0.5, 3, 7)
    b = thinning.frame_thinning(frame, 0.5, 3, 7)
    c = thinning.frame_thinning(frame, 0.5, 3, 8)
    d = thinning.frame_thinning(frame, 0.5, 4, 7)
    ref = thinning.binomial_thinning(frame, 0.5, [3, 7])
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[1], ref[1])
    assert not np.array_equal(a[1], c[1]) and not np.array_equal(a[1], d[1])
    assert a[1].mean() == pytest.approx(10.0, abs=0.5)


def test_expected_poisson_rf_values():
    assert thinning.expected_poisson_rf(torch.zeros(4, 4)) == 0.0
    # large counts: |sqrt(n) - sqrt(I)| ~ |N(0, 1/2)| -> mean 0.5 * sqrt(2 / pi); R_f = that / sqrt(I)
    lam = torch.full((300, 300), 400.0)
    rf = thinning.expected_poisson_rf(lam, draws=2, generator=torch.Generator().manual_seed(0))
    assert rf == pytest.approx(0.5 * math.sqrt(2 / math.pi) / 20.0, rel=0.02)
    # valid restricts the sums: masked pixels with huge intensity do not change it
    lam2 = lam.clone()
    lam2[:, :10] = 1e6
    valid = torch.ones_like(lam2, dtype=torch.bool)
    valid[:, :10] = False
    rf2 = thinning.expected_poisson_rf(lam2, generator=torch.Generator().manual_seed(0), valid=valid)
    assert rf2 == pytest.approx(rf, rel=0.03)
    # negative intensities clamp to 0, draws <= 0 still draw once
    assert thinning.expected_poisson_rf(torch.full((3, 3), -5.0), draws=0) == 0.0
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    one = thinning.expected_poisson_rf(torch.full((20, 20), 3.0), draws=0, generator=g1)
    ref = thinning.expected_poisson_rf(torch.full((20, 20), 3.0), draws=1, generator=g2)
    assert one == ref and one > 0


def test_poisson_nll_per_frame_hand_values():
    pred = torch.tensor([[[2.0, 1.0], [4.0, 1.0]]], dtype=torch.float64)
    meas = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]], dtype=torch.float64)
    # deviance per pixel: 2 - 1 - log 2, 0, 4 - 0 - 0, 0 -> mean over 4 pixels
    expected = (1 - math.log(2) + 4) / 4
    out = thinning.poisson_nll_per_frame(pred, meas, eps=1e-300)
    assert out.shape == (1,) and float(out[0]) == pytest.approx(expected, rel=1e-12)
    assert float(thinning.poisson_nll_per_frame(pred, meas)[0]) == pytest.approx(expected, rel=1e-6)
    assert float(thinning.poisson_nll_per_frame(meas + 0.0, meas)[0]) == pytest.approx(0.0, abs=1e-6)
    # NaN counts and invalid pixels are left out of sum and count
    meas_nan = meas.clone()
    meas_nan[0, 1, 0] = float("nan")
    assert float(thinning.poisson_nll_per_frame(pred, meas_nan, eps=1e-300)[0]) == pytest.approx((1 - math.log(2)) / 3)
    valid = torch.tensor([[[True, True], [False, True]]])
    assert float(thinning.poisson_nll_per_frame(pred, meas, eps=1e-300, valid=valid)[0]) == pytest.approx((1 - math.log(2)) / 3)
    none = torch.zeros_like(valid)
    assert float(thinning.poisson_nll_per_frame(pred, meas, valid=none)[0]) == 0.0


# ------------------------------------------------------------------------------------------------- probe


def test_optics_derived_values():
    o = probe.FZPOptics()
    assert (o.aperture_side_um, o.corner_radius_fraction, o.fzp_focal_mm, o.aperture_fzp_mm, o.fzp_sample_mm,
            o.aperture_offset_um, o.fzp_radius_um, o.coherence_length_um) == (10.0, 0.08, 48.38, 145.1, 72.6, 100.0, 100.0, 15.0)
    assert o.magnification == pytest.approx(72.6 / 145.1)
    assert o.probe_side_um == pytest.approx(10.0 * 72.6 / 145.1)
    assert o.defocus_mm == pytest.approx(72.6 - 48.38)
    ta = probe.TA_CHART_OPTICS
    assert ta.magnification == pytest.approx(90.74 / 181.47) and ta.defocus_mm == pytest.approx(90.74 - 60.49)
    assert probe.AUNP_OPTICS == o
    assert probe.AUNP_MODE_SHARES == (0.909, 0.054, 0.022, 0.015)
    assert probe.TA_CHART_MODE_SHARES == (0.896, 0.044, 0.024, 0.017, 0.019)
    spec = probe.ProbeSpec()
    assert spec.photons == pytest.approx(3e5) and spec.mode_shares == probe.AUNP_MODE_SHARES and spec.probe_side_um is None


def test_rounded_triangle_area_and_orientation():
    side, r = 40.0, 3.0
    m = probe.rounded_triangle(64, 1.0, side, r)
    rho = side / (2 * math.sqrt(3))
    side_in = 2 * math.sqrt(3) * (rho - r)
    area = math.sqrt(3) / 4 * side_in**2 + 3 * side_in * r + math.pi * r**2  # offset of the inner triangle by r
    assert m.sum() == pytest.approx(area, rel=0.01)
    assert m.min() == 0.0 and m.max() == 1.0
    assert m[32, 32] == 1.0 and m[0, 0] == 0.0
    # upward triangle: the apex at the top (small row index), the base at the bottom, left-right symmetric
    rows = m.sum(axis=1)
    filled = np.nonzero(rows)[0]
    assert rows[filled[1]] < rows[filled[-2]]
    assert np.allclose(m, m[:, ::-1], atol=1e-9)
    # sharp corners: the full equilateral area; corner radius capped at 0.9 x inradius (near a disc)
    assert probe.rounded_triangle(128, 0.5, side, 0.0).sum() * 0.25 == pytest.approx(math.sqrt(3) / 4 * side**2, rel=0.01)
    disc = probe.rounded_triangle(64, 1.0, side, 100.0)
    r_cap = 0.9 * rho
    s_in = 2 * math.sqrt(3) * (rho - r_cap)
    assert disc.sum() == pytest.approx(math.sqrt(3) / 4 * s_in**2 + 3 * s_in * r_cap + math.pi * r_cap**2, rel=0.02)
    with pytest.raises(ConfigError, match=r"^triangle side must be positive and corner radius non-negative$"):
        probe.rounded_triangle(16, 1.0, 0.0, 1.0)
    with pytest.raises(ConfigError, match="corner radius non-negative"):
        probe.rounded_triangle(16, 1.0, 5.0, -1.0)


def test_mode_shares_and_set_mode_shares():
    modes = np.zeros((2, 4, 4), complex)
    modes[0, 0, 0] = 1.0
    modes[1, 1, 1] = 2.0j
    scaled = probe.set_mode_shares(modes, (3, 1), 100.0)  # shares renormalised to 0.75 / 0.25
    assert scaled.dtype == np.complex64
    assert np.abs(scaled[0, 0, 0]) ** 2 == pytest.approx(75.0, rel=1e-6)
    assert np.abs(scaled[1, 1, 1]) ** 2 == pytest.approx(25.0, rel=1e-6)
    assert np.angle(scaled[1, 1, 1]) == pytest.approx(np.pi / 2)
    assert np.allclose(probe.mode_shares(scaled), [0.75, 0.25])
    for bad in ((1.0,), (1.0, 0.0), (1.0, -1.0), ((1.0, 1.0),)):
        with pytest.raises(ConfigError, match=r"^need 2 positive mode shares, got"):
            probe.set_mode_shares(modes, bad, 1.0)


def test_orthogonal_modes_of_incoherent_fields():
    f = np.zeros((2, 2, 2), complex)
    f[0, 0, 0] = 1.0
    f[1, 1, 1] = 1.0
    modes, occ = probe.orthogonal_modes(f, np.array([0.8, 0.2]), n_modes=2)
    assert modes.shape == (2, 2, 2)
    assert np.allclose(occ, [0.8, 0.2])
    assert np.abs(modes[0, 0, 0]) == pytest.approx(1.0) and np.abs(modes[1, 1, 1]) == pytest.approx(1.0)
    modes, occ = probe.orthogonal_modes(f, n_modes=1)  # equal weights by default
    assert modes.shape == (1, 2, 2) and occ == pytest.approx([0.5])
    # the same field twice: one mode carries everything, orthonormal
    g = np.stack([f[0] + f[1], f[0] + f[1]])
    modes, occ = probe.orthogonal_modes(g, n_modes=2)
    assert occ[0] == pytest.approx(1.0) and occ[1] == pytest.approx(0.0, abs=1e-12)
    assert np.sum(np.abs(modes[0]) ** 2) == pytest.approx(1.0)


def test_synthesize_probe_photons_shares_and_errors():
    g = geometry.AUNP_SIMULATION.binned_to(64)
    spec = probe.ProbeSpec(photons=1e4, probe_side_um=0.8, mode_shares=(0.9, 0.1))
    p = probe.synthesize_probe(g, spec)
    assert p.shape == (2, 64, 64) and p.dtype == np.complex64
    assert float(np.sum(np.abs(p) ** 2)) == pytest.approx(1e4, rel=1e-4)
    assert np.allclose(probe.mode_shares(p), [0.9, 0.1], atol=1e-5)
    overlap = np.vdot(p[0], p[1]) / np.sqrt(np.vdot(p[0], p[0]).real * np.vdot(p[1], p[1]).real)
    assert abs(overlap) < 1e-3  # orthogonal modes
    # the probe footprint is about the triangle's area (0.8 um side)
    area_px = math.sqrt(3) / 4 * (800 / g.pixel_size_nm) ** 2
    footprint = probe.support_mask(p, threshold=0.5, dilate_px=0).sum()
    assert 0.5 * area_px < footprint < 1.5 * area_px
    with pytest.raises(ConfigError, match=r"^photons per frame must be positive, got 0$"):
        probe.synthesize_probe(g, probe.ProbeSpec(photons=0, probe_side_um=0.8))
    fov = g.field_of_view_um
    with pytest.raises(ConfigError, match=rf"^the 5.00 um probe does not fit in the {fov:.2f} um field of view; "
                                          "use a larger frame, or set probe_side_um$"):
        probe.synthesize_probe(g, probe.ProbeSpec(probe_side_um=5.0))
    with pytest.raises(ConfigError, match="does not fit"):
        probe.synthesize_probe(g)  # the default 5 um probe in a 1.7 um field


def test_support_mask_threshold_and_dilation():
    p = np.zeros((1, 9, 9), complex)
    p[0, 4, 4] = 10.0
    p[0, 4, 5] = 1.0  # power 1 = 1 % of the maximum
    m = probe.support_mask(p, threshold=0.05, dilate_px=0)
    assert m.sum() == 1 and m[4, 4]
    assert probe.support_mask(p, threshold=0.005, dilate_px=0).sum() == 2
    m = probe.support_mask(p)  # default threshold 0.05, dilated by 2 (cross structuring element)
    assert m.sum() == 13 and m[2, 4] and m[4, 6] and not m[2, 3] and not m[1, 4]
    assert probe.support_mask(p, dilate_px=1).sum() == 5


def _expected_field(geometry_, spec, iy, ix, pupil_open=True):
    """One coherent field of the Gaussian-Schell set, computed from the module docstring's physics."""
    optics = spec.optics
    n, dx, lam = geometry_.n, geometry_.pixel_size_nm, geometry_.wavelength_m
    side_nm = spec.probe_side_um * 1000.0
    scale = spec.probe_side_um / (optics.aperture_side_um * optics.fzp_sample_mm / optics.aperture_fzp_mm)
    aperture = np.flipud(probe.rounded_triangle(n, dx, side_nm, optics.corner_radius_fraction * side_nm))
    c = (np.arange(n) - (n - 1) / 2) * dx * 1e-9
    y, x = c[:, None], c[None, :]
    radius_m = (optics.fzp_sample_mm - optics.fzp_focal_mm) / 1000.0 * scale * scale
    curvature = np.exp(1j * math.pi * (x * x + y * y) / (lam * radius_m))
    coherence_m = optics.coherence_length_um * 1e-6 * optics.magnification * scale
    sigma_f = 1.0 / (2 * math.pi * coherence_m)
    grid = np.array([-2.5, -5 / 3, -5 / 6, 0.0, 5 / 6, 5 / 3, 2.5]) * sigma_f
    tilt = np.exp(2j * math.pi * (grid[ix] * x + grid[iy] * y))
    field_ = aperture * tilt
    if not pupil_open:
        f = np.fft.fftfreq(n, d=dx * 1e-9)
        cutoff = optics.fzp_radius_um * 1e-6 / (lam * optics.fzp_sample_mm * 1e-3) / scale
        pupil = np.hypot(f[:, None], f[None, :]) <= cutoff
        field_ = np.fft.ifft2(np.fft.fft2(field_) * pupil)
    return field_ * curvature


def test_coherent_fields_phase_tilt_and_weights():
    g = geometry.AUNP_SIMULATION.binned_to(32)
    wide = probe.FZPOptics(fzp_radius_um=1e6)  # pupil open: the fields are aperture x tilt x curvature exactly
    spec = probe.ProbeSpec(optics=wide, probe_side_um=0.5)
    fields, weights = probe._coherent_fields(g, spec)
    assert fields.shape == (49, 32, 32)
    for iy, ix in ((3, 3), (3, 6), (0, 5), (6, 1)):
        assert np.allclose(fields[iy * 7 + ix], _expected_field(g, spec, iy, ix), atol=1e-9), (iy, ix)
    a = np.linspace(-2.5, 2.5, 7)
    w = np.exp(-(a[:, None] ** 2 + a[None, :] ** 2) / 2).ravel()
    assert weights.sum() == pytest.approx(1.0)
    assert np.allclose(weights, w / w.sum(), atol=1e-12)
    # a finite FZP pupil band-limits each field: |f| <= R / (lambda z2) / scale
    narrow = probe.ProbeSpec(optics=probe.FZPOptics(fzp_radius_um=10.0), probe_side_um=0.5)  # cutoff ~4.8 frequency bins
    fields, _ = probe._coherent_fields(g, narrow)
    for iy, ix in ((3, 3), (1, 4)):
        assert np.allclose(fields[iy * 7 + ix], _expected_field(g, narrow, iy, ix, pupil_open=False), atol=1e-9)


def test_probe_boundaries():
    assert probe.rounded_triangle(8, 0.1, 0.5, 0.0).sum() > 0  # sub-nm sides are valid
    mask = np.zeros((1, 2, 2), complex)
    mask[0, 0, 0], mask[0, 1, 1] = 1.0, 0.5  # power 0.25 is exactly the threshold: not above it
    assert probe.support_mask(mask, threshold=0.25, dilate_px=0).tolist() == [[True, False], [False, False]]
    with pytest.raises(ConfigError, match=r"^need 2 positive mode shares, got"):
        probe.set_mode_shares(np.ones((2, 2, 2), complex), ((1.0, 1.0), (1.0, 1.0)), 1.0)
    g = geometry.AUNP_SIMULATION.binned_to(32)
    fov = g.field_of_view_um
    with pytest.raises(ConfigError, match="does not fit"):
        probe.synthesize_probe(g, probe.ProbeSpec(probe_side_um=1.2 * fov))
    p = probe.synthesize_probe(g, probe.ProbeSpec(probe_side_um=0.95 * fov * 0.9995, photons=0.5, mode_shares=(0.9, 0.1)))
    assert float(np.sum(np.abs(p) ** 2)) == pytest.approx(0.5, rel=1e-4)


def test_synthesized_modes_are_the_weighted_coherent_modes():
    g = geometry.AUNP_SIMULATION.binned_to(32)
    spec = probe.ProbeSpec(probe_side_um=0.5, mode_shares=(0.8, 0.2))
    p = probe.synthesize_probe(g, spec).astype(np.complex128)
    fields, weights = probe._coherent_fields(g, spec)
    modes, occ = probe.orthogonal_modes(fields, weights, n_modes=2)
    for k in range(2):
        overlap = abs(np.vdot(modes[k], p[k])) / (np.linalg.norm(modes[k]) * np.linalg.norm(p[k]))
        assert overlap == pytest.approx(1.0, abs=2e-6)
    equal, _ = probe.orthogonal_modes(fields, None, n_modes=2)
    assert abs(np.vdot(equal[1], modes[1])) / (np.linalg.norm(equal[1]) * np.linalg.norm(modes[1])) < 1 - 2e-5  # the weights matter
    assert occ[0] > occ[1] > 0 and occ.sum() <= 1 + 1e-12


def test_expected_poisson_rf_single_draw_by_hand():
    lam = torch.tensor([[0.3, 2.0], [5.0, 0.0]])
    for seed in range(5):
        n = torch.poisson(lam, generator=torch.Generator().manual_seed(seed))
        sn = torch.sqrt(n)
        num = 0.0 + float((sn - torch.sqrt(lam)).abs().sum())
        den = 0.0 + float(sn.sum())
        expected = num / max(den, 1e-12)
        got = thinning.expected_poisson_rf(lam, draws=1, generator=torch.Generator().manual_seed(seed))
        assert got == expected  # exact: one draw, the same generator state
    # den == 1 exactly (one pixel counting one photon): the 1e-12 guard never changes a real denominator
    quarter = torch.tensor([[0.25]])
    for seed in range(200):
        if float(torch.poisson(quarter, generator=torch.Generator().manual_seed(seed))) == 1.0:
            break
    assert thinning.expected_poisson_rf(quarter, generator=torch.Generator().manual_seed(seed)) == 0.5


def test_poisson_nll_single_measured_pixel():
    pred = torch.tensor([[[3.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
    meas = torch.tensor([[[1.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
    valid = torch.tensor([[[True, False], [False, False]]])
    got = float(thinning.poisson_nll_per_frame(pred, meas, eps=1e-300, valid=valid)[0])
    assert got == pytest.approx(2 - math.log(3))  # one pixel: the mean is that pixel's deviance


def test_thinning_of_lazy_counts_and_unseeded_frames():
    import dask.array as da

    counts = np.arange(12.0).reshape(3, 4)
    kept, held = thinning.binomial_thinning(da.from_array(counts, chunks=2), 0.5, seed=2)
    assert isinstance(kept, np.ndarray) and (kept + held).tolist() == counts.tolist()
    ref = thinning.binomial_thinning(counts, 0.5, seed=2)
    assert np.array_equal(held, ref[1])
    kept, held = thinning.frame_thinning(counts, 0.5, None, 3)  # unseeded: still an exact split
    assert (kept + held).tolist() == counts.tolist()
    assert noise.photons_per_frame(0.5, 4.0) == 2.0


def test_update_defaults_and_valid_pass_through():
    p = torch.ones(1, 2, 2, dtype=torch.complex128)
    o = torch.ones(2, 2, dtype=torch.complex128)
    meas = torch.zeros(2, 2, dtype=torch.float64)
    meas[1, 1] = 16.0
    one = torch.ones(2, 2, dtype=torch.complex128)
    # default eps (1e-8) is negligible next to the 4-photon model intensity
    assert torch.allclose(mixed_state.mixed_state_update(o, p, meas), one, atol=1e-6)
    assert torch.allclose(relaxed.relaxed_mixed_state_update(o, p, meas, sigma=0.0), one, atol=1e-6)
    valid = torch.tensor([[True, True], [True, False]])
    assert torch.allclose(mixed_state.mixed_state_step(o, p, meas, eps=1e-30, valid=valid), o, atol=1e-12)
