import pytest
import torch

from napari_cxdi.errors import ConfigError
from napari_cxdi.metrics import r_factor
from napari_cxdi.physics.forward import diffraction_intensity
from napari_cxdi.physics.mixed_state import mixed_state_step, mixed_state_update, modulus_projection, probe_norm


def test_modulus_projection_imposes_measured_modulus_and_keeps_mode_ratios():
    g = torch.Generator().manual_seed(0)
    psi = torch.randn(2, 3, 8, 8, generator=g) + 1j * torch.randn(2, 3, 8, 8, generator=g)
    measured = torch.rand(2, 8, 8, generator=g) * 10
    projected = modulus_projection(psi, measured, eps=0)
    total = (projected.abs() ** 2).sum(dim=-3)
    assert torch.allclose(total, measured, rtol=1e-4, atol=1e-5)
    ratio = projected / psi
    assert torch.allclose(ratio[:, 0], ratio[:, 2], rtol=1e-4)  # the same factor for every mode


def test_update_is_zero_at_the_true_object(small_aunp):
    probe = torch.as_tensor(small_aunp.probe)
    obj = torch.as_tensor(small_aunp.objects[:2])
    intensity = diffraction_intensity(probe, obj)
    update = mixed_state_update(obj, probe, intensity, eps=1e-12)
    assert update.abs().max() < 1e-3 * obj.abs().max()


@pytest.mark.parametrize("noisy", [False, True])
def test_iterations_reduce_r_factor_on_a_simulated_frame(noisy):
    from napari_cxdi.simulate import simulate_test_chart

    movie = simulate_test_chart(n_frames=2, size=64, seed=1)
    probe = torch.as_tensor(movie.probe)
    measured = torch.as_tensor(movie.counts if noisy else movie.expected)
    truth_rf = r_factor(movie.expected, measured.numpy())
    obj = torch.ones(2, 64, 64, dtype=torch.complex64)
    rf = [r_factor(diffraction_intensity(probe, obj).numpy(), measured.numpy())]
    for _ in range(30):
        obj = mixed_state_step(obj, probe, measured, alpha=1.0)
    rf.append(r_factor(diffraction_intensity(probe, obj).numpy(), measured.numpy()))
    if noisy:  # reaches the Poisson noise floor of the true object
        assert rf[1] < 0.6 * rf[0] and rf[1] < 1.05 * truth_rf
    else:
        assert rf[1] < 0.25 * rf[0]


def test_normalisations():
    p = torch.zeros(2, 4, 4, dtype=torch.complex64)
    p[0, 1, 1] = 2.0
    p[1, 2, 2] = 1.0
    assert probe_norm(p, "max_total").item() == pytest.approx(4.0)
    assert probe_norm(p, "sum_max").item() == pytest.approx(5.0)
    with pytest.raises(ConfigError):
        probe_norm(p, "bogus")
