"""The forward model's symmetries, as property tests (issue 20)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from napari_cxdi.errors import DataValidationError, ProbeMismatchError
from napari_cxdi.io.validate import check_probe
from napari_cxdi.physics.forward import diffraction_intensity


def _random(seed, k=2, n=16):
    g = torch.Generator().manual_seed(seed)
    probe = torch.complex(torch.randn(k, n, n, generator=g), torch.randn(k, n, n, generator=g))
    obj = torch.polar(1 + 0.2 * torch.rand(3, n, n, generator=g), 2 * torch.randn(3, n, n, generator=g))
    return probe.to(torch.complex128), obj.to(torch.complex128)


def _reflect(x):
    """Point reflection r -> -r about the centre pixel N//2 (the FFT convention's origin)."""
    return torch.roll(torch.flip(x, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(-np.pi, np.pi))
def test_global_phase_is_invisible(seed, theta):
    probe, obj = _random(seed)
    i0 = diffraction_intensity(probe, obj)
    i1 = diffraction_intensity(probe, obj * np.exp(1j * theta))
    i2 = diffraction_intensity(probe * np.exp(-1j * theta), obj)
    torch.testing.assert_close(i1, i0)
    torch.testing.assert_close(i2, i0)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_conjugate_twin_gives_the_same_intensity(seed):
    probe, obj = _random(seed)
    i0 = diffraction_intensity(probe, obj)
    twin = diffraction_intensity(_reflect(probe).conj(), _reflect(obj).conj())
    torch.testing.assert_close(twin, i0)
    # and a plain conjugate (without reflection) is not a symmetry: the test can fail
    assert not torch.allclose(diffraction_intensity(probe.conj(), obj.conj()), i0)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(-7, 7), st.integers(-7, 7))
def test_shifting_probe_and_object_together_is_invisible(seed, dy, dx):
    probe, obj = _random(seed)
    i0 = diffraction_intensity(probe, obj)
    shifted = diffraction_intensity(torch.roll(probe, (dy, dx), (-2, -1)), torch.roll(obj, (dy, dx), (-2, -1)))
    torch.testing.assert_close(shifted, i0)


def test_intensity_is_the_incoherent_sum_of_modes_and_conserves_photons():
    probe, obj = _random(3)
    total = diffraction_intensity(probe, obj)
    per_mode = sum(diffraction_intensity(probe[k:k + 1], obj) for k in range(probe.shape[0]))
    torch.testing.assert_close(total, per_mode)
    # orthonormal FFT (Parseval): detector photons = sum over modes of |P_k O|^2
    exit_power = (probe.abs()[None] ** 2 * obj.abs()[:, None] ** 2).sum(dim=(1, 2, 3))
    torch.testing.assert_close(total.sum(dim=(-2, -1)), exit_power)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_probe_with_nan_or_inf_is_refused(bad):
    p = np.ones((2, 8, 8), np.complex64)
    p[1, 3, 4] = bad
    with pytest.raises(DataValidationError, match="NaN or infinite"):
        check_probe(p, (8, 8))


def test_zero_probe_and_wrong_shape_are_refused():
    with pytest.raises(DataValidationError, match="zero"):
        check_probe(np.zeros((1, 8, 8), np.complex64), (8, 8))
    with pytest.raises(ProbeMismatchError):
        check_probe(np.ones((1, 8, 8), np.complex64), (8, 9))
    good = check_probe(np.ones((8, 8)), (8, 8))
    assert good.shape == (1, 8, 8) and good.dtype == np.complex64
