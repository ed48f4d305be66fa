"""Value tests for physics behaviour the earlier tests left open (issue 20: surviving mutants of
physics/thinning, noise, relaxed and probe). Every expected number is computed by hand or from a
definition independent of the code under test."""

import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError
from napari_cxdi.physics.geometry import Geometry
from napari_cxdi.physics.mixed_state import probe_norm
from napari_cxdi.physics.noise import normalise_to_photons
from napari_cxdi.physics.probe import ProbeSpec, orthogonal_modes, rounded_triangle, synthesize_probe
from napari_cxdi.physics.relaxed import relaxed_mixed_state_update
from napari_cxdi.physics.thinning import poisson_nll_per_frame


def _deviance(pred, n):
    """Poisson deviance of one pixel by hand (0 log 0 = 0)."""
    return pred - n - (n * np.log(pred / n) if n > 0 else 0.0)


def test_poisson_nll_per_frame_hand_values_with_masked_pixels():
    # two frames of 2x2; frame 0 has one masked (NaN) pixel, frame 1 none: each mean is over its own pixels
    pred = torch.tensor([[[2.0, 1.0], [4.0, 0.5]], [[3.0, 3.0], [1.0, 2.0]]], dtype=torch.float64)
    meas = torch.tensor([[[1.0, 3.0], [float("nan"), 0.0]], [[3.0, 1.0], [2.0, 5.0]]], dtype=torch.float64)
    got = poisson_nll_per_frame(pred, meas, eps=0.0 + 1e-300).numpy()
    f0 = np.mean([_deviance(2.0, 1.0), _deviance(1.0, 3.0), _deviance(0.5, 0.0)])
    f1 = np.mean([_deviance(3.0, 3.0), _deviance(3.0, 1.0), _deviance(1.0, 2.0), _deviance(2.0, 5.0)])
    np.testing.assert_allclose(got, [f0, f1], rtol=1e-9)
    # a deviance is >= 0 and exactly 0 where the prediction equals the counts
    same = poisson_nll_per_frame(meas.nan_to_num(1.0) + 0.0, meas.nan_to_num(1.0)).numpy()
    np.testing.assert_allclose(same, 0.0, atol=1e-6)


def test_normalise_to_photons_also_scales_frames_with_less_than_one_photon():
    intensity = torch.tensor([[[0.1, 0.15], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[2.0, 6.0], [0.0, 0.0]]])
    out = normalise_to_photons(intensity, 100.0)
    np.testing.assert_allclose(out.sum(dim=(-2, -1)).numpy(), [100.0, 0.0, 100.0], rtol=1e-6)
    np.testing.assert_allclose(out[0, 0].numpy(), [40.0, 60.0], rtol=1e-6)  # the shape of the frame is kept


def test_relaxed_update_uses_the_requested_step_normalisation():
    # two modes with different peak powers: "max_total" (peak of the summed power) != "sum_max" (sum of peaks)
    g = torch.Generator().manual_seed(0)
    probe = torch.zeros(2, 8, 8, dtype=torch.complex64)
    probe[0, 2:6, 2:6] = 2.0
    probe[1, 6:8, 0:2] = 1.0j  # no overlap with mode 0
    obj = torch.exp(1j * 0.3 * torch.rand(1, 8, 8, generator=g)).to(torch.complex64)
    measured = torch.poisson(torch.full((1, 8, 8), 3.0), generator=g)
    a = relaxed_mixed_state_update(obj, probe, measured, sigma=0.5, normalisation="max_total")
    b = relaxed_mixed_state_update(obj, probe, measured, sigma=0.5, normalisation="sum_max")
    n_total, n_sum = float(probe_norm(probe, "max_total")), float(probe_norm(probe, "sum_max"))
    assert n_total == pytest.approx(4.0) and n_sum == pytest.approx(5.0)  # by hand: 2^2; 2^2 + 1^2
    assert float(a.abs().max()) > 0
    np.testing.assert_allclose(b.numpy() * n_sum, a.numpy() * n_total, rtol=1e-5, atol=1e-7)


def test_rounded_triangle_inside_test_and_pixel_units():
    # a small triangle (side 4 nm) on a fine grid (0.1 nm): pixels more than one pixel away from every edge
    # are exactly 0 (outside) or 1 (inside), by an independent barycentric test of the same triangle
    n, dx, side = 80, 0.1, 4.0
    mask = rounded_triangle(n, dx, side, corner_radius_nm=0.0)
    inradius = side / (2 * np.sqrt(3))
    ang = np.deg2rad([90.0, 210.0, 330.0])
    vy, vx = -2 * inradius * np.sin(ang), 2 * inradius * np.cos(ang)
    c = (np.arange(n) - n / 2 + 0.5) * dx
    y, x = np.meshgrid(c, c, indexing="ij")
    d_edges = []
    inside = np.ones_like(y, bool)
    for i in range(3):
        ay, ax, by, bx = vy[i], vx[i], vy[(i + 1) % 3], vx[(i + 1) % 3]
        # signed distance to the edge's line; the centroid (0, 0) is on the inside
        nrm = np.hypot(by - ay, bx - ax)
        s = ((bx - ax) * (y - ay) - (by - ay) * (x - ax)) / nrm
        s0 = ((bx - ax) * (0 - ay) - (by - ay) * (0 - ax)) / nrm
        s = s * np.sign(s0)
        inside &= s > 0
        d_edges.append(np.abs(s))
    far = np.min(d_edges, axis=0) > 1.5 * dx
    assert far.sum() > 1000 and inside[far].sum() > 200
    np.testing.assert_array_equal(mask[far], inside[far].astype(float))
    # the anti-aliasing ramp is one pixel wide: half covered pixels lie within one pixel of an edge
    ramp = (mask > 0.05) & (mask < 0.95)
    assert np.all(np.min(d_edges, axis=0)[ramp] <= 1.0 * dx + 1e-9)


def test_orthogonal_modes_defaults_normalisation_and_occupations():
    rng = np.random.default_rng(1)
    fields = (rng.normal(size=(6, 5, 5)) + 1j * rng.normal(size=(6, 5, 5))) * 1e-3  # tiny: trace << 1
    modes, occ = orthogonal_modes(fields)
    assert modes.shape == (4, 5, 5) and occ.shape == (4,)  # 4 modes by default
    # occupations are eigenvalues of the weighted Gram matrix over its trace, by hand
    a = np.sqrt(np.ones(6) / 6)[:, None] * fields.reshape(6, -1)
    ev = np.sort(np.linalg.eigvalsh(a @ a.conj().T))[::-1]
    np.testing.assert_allclose(occ, ev[:4] / ev.sum(), rtol=1e-9)
    _, occ_all = orthogonal_modes(fields, n_modes=6)
    assert occ_all.sum() == pytest.approx(1.0, abs=1e-12)
    # a rank-deficient set (3 copies of one field): the first occupation is 1, the rest exactly >= 0
    one = fields[:1].repeat(3, axis=0)
    m1, occ1 = orthogonal_modes(one, n_modes=3)
    assert occ1[0] == pytest.approx(1.0) and np.all(occ1 >= 0.0)
    np.testing.assert_allclose(np.vdot(m1[0], m1[0]).real, 1.0, rtol=1e-9)


def test_a_probe_of_exactly_95_percent_of_the_field_fits():
    geometry = Geometry(n=64)
    limit_nm = 0.95 * geometry.n * geometry.pixel_size_nm
    side = limit_nm / 1e3
    for _ in range(64):  # the largest side whose size in nm is not above the limit
        if side * 1e3 > limit_nm:
            side = np.nextafter(side, 0.0)
        elif np.nextafter(side, np.inf) * 1e3 <= limit_nm:
            side = np.nextafter(side, np.inf)
    assert side * 1e3 == limit_nm  # exactly on the limit (this geometry has such a side)
    probe = synthesize_probe(geometry, ProbeSpec(probe_side_um=side))
    assert probe.shape[1:] == (64, 64)
    with pytest.raises(ConfigError, match="does not fit"):
        synthesize_probe(geometry, ProbeSpec(probe_side_um=side * (1 + 1e-9)))
