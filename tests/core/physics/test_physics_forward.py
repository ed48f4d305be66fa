import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError, ProbeMismatchError
from napari_cxdi.physics.fft import fft2c, fft2c_np, ifft2c
from napari_cxdi.physics.forward import diffraction_intensity, far_field
from napari_cxdi.physics.geometry import AUNP_SIMULATION, TA_CHART, Geometry, wavelength_m
from napari_cxdi.physics.noise import normalise_to_photons, poisson_counts


def random_complex(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) + 1j * torch.randn(*shape, generator=g)


def test_fft_round_trip_and_parseval():
    x = random_complex(3, 32, 32)
    X = fft2c(x)
    assert torch.allclose(ifft2c(X), x, atol=1e-5)
    assert torch.allclose((X.abs() ** 2).sum(dim=(-2, -1)), (x.abs() ** 2).sum(dim=(-2, -1)), rtol=1e-5)


def test_fft_zero_frequency_is_centred():
    x = torch.ones(16, 16, dtype=torch.complex64)
    X = fft2c(x)
    assert X.abs().argmax().item() == 8 * 16 + 8
    assert np.allclose(fft2c_np(x.numpy()), X.numpy(), atol=1e-5)


def test_plane_object_gives_probe_far_field_and_photons_are_conserved():
    probe = random_complex(3, 32, 32, seed=1)
    obj = torch.full((32, 32), 0.5 * np.exp(0.7j), dtype=torch.complex64)
    intensity = diffraction_intensity(probe, obj)
    expected = 0.25 * (fft2c(probe).abs() ** 2).sum(0)
    assert torch.allclose(intensity, expected, rtol=1e-4)
    # Parseval over modes: total counts = sum_k sum |P_k O|^2
    assert torch.isclose(intensity.sum(), 0.25 * (probe.abs() ** 2).sum(), rtol=1e-4)


def test_single_mode_point_object_gives_flat_pattern():
    probe = torch.ones(1, 16, 16, dtype=torch.complex64)
    obj = torch.zeros(16, 16, dtype=torch.complex64)
    obj[3, 5] = 2.0
    intensity = diffraction_intensity(probe, obj)
    assert torch.allclose(intensity, torch.full((16, 16), 4.0 / 256), rtol=1e-5)


def test_batched_shapes_and_gradients():
    probe = random_complex(4, 16, 16)
    obj = random_complex(2, 5, 16, 16, seed=3).requires_grad_(True)
    assert far_field(probe, obj).shape == (2, 5, 4, 16, 16)
    intensity = diffraction_intensity(probe, obj)
    assert intensity.shape == (2, 5, 16, 16)
    intensity.sum().backward()
    # d/dO sum |F(P O)|^2 = sum |P O|^2 -> gradient 2 * sum_k |P_k|^2 * O (Wirtinger, torch convention)
    expected = 2 * (probe.abs() ** 2).sum(0) * obj.detach()
    assert torch.allclose(obj.grad, expected, rtol=1e-3, atol=1e-3)


def test_probe_shape_mismatch_is_a_clear_error():
    with pytest.raises(ProbeMismatchError, match="16, 16"):
        diffraction_intensity(random_complex(2, 16, 16), random_complex(3, 32, 32))


def test_geometry_pixel_size_matches_seed():
    assert AUNP_SIMULATION.pixel_size_nm == pytest.approx(27.03, abs=0.02)  # Table B.2
    assert wavelength_m(5.0) == pytest.approx(2.4797e-10, rel=1e-4)
    binned = AUNP_SIMULATION.binned_to(128)
    assert binned.pixel_size_nm == pytest.approx(AUNP_SIMULATION.pixel_size_nm)
    assert binned.field_of_view_um == pytest.approx(AUNP_SIMULATION.field_of_view_um / 3)
    assert TA_CHART.pixel_size_nm == pytest.approx(29.35, abs=0.05)
    with pytest.raises(ConfigError):
        Geometry(energy_kev=-1)


def test_poisson_noise_statistics():
    expected = torch.full((200, 64), 7.0)
    counts = poisson_counts(expected, torch.Generator().manual_seed(0))
    assert torch.all(counts == counts.round())
    assert counts.mean().item() == pytest.approx(7.0, rel=0.02)
    assert counts.var().item() == pytest.approx(7.0, rel=0.05)
    scaled = normalise_to_photons(torch.rand(3, 8, 8), 1000.0)
    assert torch.allclose(scaled.sum(dim=(-2, -1)), torch.full((3,), 1000.0))
    with pytest.raises(ConfigError):
        poisson_counts(torch.tensor([-1.0]))
