import numpy as np
import pytest

from napari_cxdi.errors import ConfigError
from napari_cxdi.physics.geometry import AUNP_SIMULATION
from napari_cxdi.physics.probe import (
    AUNP_MODE_SHARES, TA_CHART_MODE_SHARES, FZPOptics, ProbeSpec, mode_shares, rounded_triangle,
    support_mask, synthesize_probe,
)


def test_probe_modes_are_orthogonal_with_requested_shares_and_photons():
    geometry = AUNP_SIMULATION.binned_to(128)
    probe = synthesize_probe(geometry, ProbeSpec(photons=3e5, probe_side_um=1.7))
    assert probe.shape == (4, 128, 128) and probe.dtype == np.complex64
    flat = probe.reshape(4, -1).astype(np.complex128)
    gram = flat.conj() @ flat.T
    norms = np.sqrt(np.outer(gram.diagonal().real, gram.diagonal().real))
    assert np.allclose(np.abs(gram) / norms, np.eye(4), atol=1e-4)
    assert np.allclose(mode_shares(probe), np.array(AUNP_MODE_SHARES) / sum(AUNP_MODE_SHARES), atol=1e-5)
    assert (np.abs(probe) ** 2).sum() == pytest.approx(3e5, rel=1e-4)


def test_seed_geometry_gives_a_5_um_triangle():
    probe = synthesize_probe(AUNP_SIMULATION, ProbeSpec(mode_shares=TA_CHART_MODE_SHARES))
    assert probe.shape[0] == 5
    mask = support_mask(probe, threshold=0.5, dilate_px=0)
    area_um2 = mask.sum() * (AUNP_SIMULATION.pixel_size_nm * 1e-3) ** 2
    side = FZPOptics().probe_side_um
    assert side == pytest.approx(5.0, rel=0.01)  # 10 um aperture demagnified by 72.6 / 145.1
    assert area_um2 == pytest.approx(np.sqrt(3) / 4 * side**2, rel=0.15)
    # the main mode carries a diverging spherical phase (curvature radius z2 - f = 24.2 mm)
    assert FZPOptics().defocus_mm == pytest.approx(24.22, abs=0.01)


def test_rounded_triangle_area():
    dx, side, r = 5.0, 1000.0, 100.0
    mask = rounded_triangle(400, dx, side, r)
    inradius = side / (2 * np.sqrt(3))
    inner_side = (inradius - r) * 2 * np.sqrt(3)
    expected = np.sqrt(3) / 4 * inner_side**2 + 3 * inner_side * r + np.pi * r**2  # Minkowski sum
    assert mask.sum() * dx**2 == pytest.approx(expected, rel=0.01)


def test_probe_that_does_not_fit_is_rejected():
    with pytest.raises(ConfigError, match="does not fit"):
        synthesize_probe(AUNP_SIMULATION.binned_to(64))
