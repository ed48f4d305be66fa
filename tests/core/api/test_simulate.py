import numpy as np
import pytest

from napari_cxdi.errors import ConfigError
from napari_cxdi.physics.geometry import wavelength_m
from napari_cxdi.physics.materials import GOLD_5KEV, WATER_5KEV
from napari_cxdi.physics.probe import AUNP_OPTICS
from napari_cxdi.simulate import simulate_aunp, simulate_test_chart


def test_aunp_outputs_and_metadata(small_aunp):
    m = small_aunp
    assert m.counts.shape == m.objects.shape == m.expected.shape == (8, 64, 64)
    assert m.probe.shape == (4, 64, 64)
    assert np.all(m.counts >= 0) and np.all(m.counts == np.round(m.counts))
    # photons per frame ~ flux * exposure (absorption of gold is weak)
    assert m.expected.sum(axis=(1, 2)).mean() == pytest.approx(3e6 * 0.1, rel=0.05)
    assert m.metadata["pixel_size_nm"] == pytest.approx(27.03, abs=0.02)
    assert {"frame", "particle", "y", "x", "diameter_nm"} <= set(m.trajectories.columns)


def test_match_fluence_keeps_the_seeds_photons_per_area():
    full = simulate_aunp(n_frames=1, size=64, seed=0, noise=False)
    matched = simulate_aunp(n_frames=1, size=64, seed=0, noise=False, match_fluence=True)
    side, seed_side = matched.metadata["probe_side_um"], AUNP_OPTICS.probe_side_um  # the seed's ~5 um triangle
    assert side < 0.25 * seed_side  # the probe was shrunk to fit 64 px
    ratio = matched.expected.sum() / full.expected.sum()
    assert ratio == pytest.approx((side / seed_side) ** 2, rel=0.02)
    assert matched.metadata["photons_per_frame"] == pytest.approx(3e6 * 0.1 * ratio, rel=0.02)
    # photons per um^2 of the probe equal the seed's 3e5 photons over its (rounded) triangle
    assert matched.metadata["photons_per_frame"] / side**2 == pytest.approx(3e6 * 0.1 / seed_side**2, rel=0.02)


def test_trajectories_follow_the_requested_drift():
    m = simulate_aunp(n_frames=40, size=64, drift_nm_s=(100.0, 200.0), diffusion_nm2_s=500.0, seed=3, noise=False)
    t = m.trajectories.sort_values(["particle", "frame"])
    steps = t.groupby("particle")[["y_nm", "x_nm"]].diff().dropna()
    steps = steps[np.hypot(steps.y_nm, steps.x_nm) < 200]  # ignore nothing but wrap-arounds (ids renewed anyway)
    velocity = steps.mean().to_numpy() / m.metadata["exposure_s"]
    assert velocity == pytest.approx([100.0, 200.0], abs=20.0)
    # Brownian part: per-axis variance of steps = 2 D dt
    assert steps.var().mean() == pytest.approx(2 * 500.0 * 0.1, rel=0.35)


def test_isolated_sphere_phase_matches_projected_thickness():
    m = simulate_aunp(n_frames=1, size=96, area_fraction=0.05, noise=False, seed=0)
    contrast = GOLD_5KEV.delta - WATER_5KEV.delta
    k = 2 * np.pi / wavelength_m(5.0)
    pts = m.trajectories[["y", "x"]].to_numpy()
    checked = 0
    for i, row in m.trajectories.iterrows():
        others = np.delete(pts, i, axis=0)
        if len(others) and np.hypot(*(others - pts[i]).T).min() * m.pixel_size_nm < 320:
            continue
        y, x = int(round(row.y)), int(round(row.x))
        if not (2 <= y < 94 and 2 <= x < 94):
            continue
        d = np.hypot(y - row.y, x - row.x) * m.pixel_size_nm
        thickness_m = 2 * np.sqrt(150.0**2 - d**2) * 1e-9
        assert m.phase[0, y, x] == pytest.approx(-k * contrast * thickness_m, rel=1e-3)
        assert m.amplitude[0, y, x] == pytest.approx(np.exp(-k * (GOLD_5KEV.beta - WATER_5KEV.beta) * thickness_m), rel=1e-4)
        checked += 1
    assert checked >= 1
    assert m.phase.max() <= 1e-6  # gold in water only delays the phase


def test_simulation_is_seeded():
    a = simulate_aunp(n_frames=2, size=64, seed=5)
    b = simulate_aunp(n_frames=2, size=64, seed=5)
    c = simulate_aunp(n_frames=2, size=64, seed=6)
    assert np.array_equal(a.counts, b.counts)
    assert not np.array_equal(a.counts, c.counts)


def test_chart_moves_at_the_set_velocity():
    m = simulate_test_chart(n_frames=6, size=64, velocity_nm_s=(0.0, 340.0), seed=0)
    offsets = np.asarray(m.metadata["chart_offsets"]["dx_nm"])
    assert np.diff(offsets) == pytest.approx(340.0 * 0.007)
    assert m.phase.min() < -1.0  # 500 nm of tantalum at 5 keV: ~ -1.3 rad


def test_bad_config():
    with pytest.raises(ConfigError):
        simulate_aunp(n_frames=0)
    with pytest.raises(ConfigError):
        simulate_aunp(area_fraction=0.9)
