"""Speckle simulation (speckle/patterns.py: speckle_dft, speckle_analytic, airy_pattern, prepare) against
direct float64 sums of the Fourier transform on small grids."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from napari_cxdi.errors import DataValidationError
from napari_cxdi.speckle.disks import DiskSystem
from napari_cxdi.speckle.patterns import PreprocessConfig, airy_pattern, prepare, speckle_analytic, speckle_dft


def _ff(kr):
    kr = np.asarray(kr, float)
    out = np.ones_like(kr)
    nz = kr > 0
    out[nz] = 2 * special.j1(kr[nz]) / kr[nz]
    return out


def _direct_disks(centers, radii, window, pad):
    q = np.arange(window) - window // 2
    k = 2 * np.pi * q / pad
    ky, kx = np.meshgrid(k, k, indexing="ij")
    kabs = np.hypot(ky, kx)
    f = np.zeros((window, window), complex)
    for (cy, cx), r in zip(centers, radii):
        f += np.pi * r**2 * _ff(kabs * r) * np.exp(-1j * (ky * cy + kx * cx))
    return np.abs(f) ** 2


def _direct_dft(obj, window, pad):
    q = np.arange(window) - window // 2
    m = np.arange(obj.shape[0])
    w = np.exp(-2j * np.pi * np.outer(q, m) / pad)
    return np.abs(w @ obj @ w.T) ** 2


def test_dft_of_real_and_complex_objects():
    rng = np.random.default_rng(0)
    obj = rng.uniform(size=(8, 8))
    p = speckle_dft(obj, 7, 23)
    assert p.dtype == np.float32 and p.shape == (7, 7)
    np.testing.assert_allclose(p, _direct_dft(obj, 7, 23), rtol=2e-5, atol=1e-5)
    cobj = obj * np.exp(1j * rng.uniform(0, 2 * np.pi, (8, 8)))
    pc = speckle_dft(cobj, 7, 23)
    assert pc.dtype == np.float32
    np.testing.assert_allclose(pc, _direct_dft(cobj, 7, 23), rtol=2e-5, atol=1e-5)
    # a complex object is not its real part
    assert np.abs(pc - speckle_dft(cobj.real, 7, 23)).max() > 0.1
    for bad in (np.ones((3, 4)), np.ones((4, 3)), np.ones(4), np.ones((2, 3, 3))):
        with pytest.raises(DataValidationError, match=r"^object must be a square 2D array, got shape"):
            speckle_dft(bad, 3, 11)


def test_analytic_patterns_are_the_disk_sums():
    window, pad = 15, 101
    # one disk: the Airy pattern
    one = DiskSystem(np.array([[20.0, 33.0]]), np.array([4.0]))
    p1 = speckle_analytic(one, window, pad)
    assert p1.dtype == np.float32
    np.testing.assert_allclose(p1, _direct_disks(one.centers, one.radii, window, pad), rtol=1e-4)
    np.testing.assert_allclose(p1, airy_pattern(4.0, window, pad), rtol=1e-4)
    assert airy_pattern(4.0, window, pad).dtype == np.float32
    # equal disks (the fast path) and unequal disks (the sum)
    for radii in ([3.0, 3.0, 3.0], [2.0, 3.5, 5.0]):
        s = DiskSystem(np.array([[10.0, 12.0], [40.0, 25.0], [27.0, 60.0]]), np.array(radii))
        p = speckle_analytic(s, window, pad)
        assert p.dtype == np.float32 and p.shape == (window, window)
        np.testing.assert_allclose(p, _direct_disks(s.centers, s.radii, window, pad), rtol=2e-4,
                                   atol=2e-6 * p.max())


def test_prepare_refuses_values_beyond_float32():
    big = np.full((33, 33), 1e39)
    with pytest.raises(DataValidationError, match=r"beyond the float32 range .* at 1089 pixels"):
        prepare(big, PreprocessConfig(window=33, bin=3, block=3))   # 1e39 is inf in float32
