"""The n-disk model system: radii, placement, rasterised thickness and object function, checked by value."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cxdi.errors import ConfigError
from napari_cxdi.speckle.disks import (
    BOX,
    CONTRASTS,
    N_MAX,
    N_MIN,
    POLY_LAWS,
    PROFILES,
    TOTAL_AREA,
    DiskSystem,
    disk_radii,
    object_function,
    place_disks,
    random_disk_system,
    thickness_map,
)


def test_constants():
    assert BOX == 2000 and (N_MIN, N_MAX) == (2, 20)
    assert TOTAL_AREA == pytest.approx(16200 * np.pi)
    assert CONTRASTS == ("amplitude", "phase", "mixed") and PROFILES == ("flat", "sphere")
    assert POLY_LAWS == ("radius", "area")


def test_disk_system_numbers():
    s = DiskSystem(np.array([[10.0, 10.0], [10.0, 30.0], [40.0, 10.0]]), np.array([3.0, 4.0, 5.0]), box=50)
    assert s.n == 3 and isinstance(s.n, int) and s.box == 50
    assert s.total_area == pytest.approx(np.pi * (9 + 16 + 25))
    # pairs: (0,1) 20 - 7 = 13, (0,2) 30 - 8 = 22, (1,2) sqrt(900 + 400) - 9
    assert s.min_gap() == pytest.approx(13.0)
    assert DiskSystem(np.array([[5.0, 5.0]]), np.array([2.0])).min_gap() == float("inf")
    assert DiskSystem(np.array([[5.0, 5.0]]), np.array([2.0])).box == BOX
    touching = DiskSystem(np.array([[0.0, 0.0], [0.0, 10.0]]), np.array([6.0, 6.0]))
    assert touching.min_gap() == pytest.approx(-2.0)


def test_monodisperse_radii_and_errors():
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(disk_radii(2, rng), [90.0, 90.0])
    np.testing.assert_allclose(disk_radii(4, rng, total_area=4 * np.pi * 25), [5.0] * 4)
    np.testing.assert_allclose(disk_radii(1, rng), [90 * np.sqrt(2)])
    with pytest.raises(ConfigError, match="number of disks must be >= 1, got 0"):
        disk_radii(0, rng)
    with pytest.raises(ConfigError, match=r"unknown polydispersity law 'gauss'; choose one of radius, area"):
        disk_radii(3, rng, True, law="gauss")
    for law in POLY_LAWS:
        with pytest.raises(ConfigError, match="relative radius spread must be >= 0, got -0.1"):
            disk_radii(3, rng, True, rel_sd=-0.1, law=law)
    # a zero spread is allowed: equal radii
    np.testing.assert_allclose(disk_radii(3, rng, True, rel_sd=0.0), disk_radii(3, rng))


def _ref_radius_law(n, seed, rel_sd, area=TOTAL_AREA):
    rng = np.random.default_rng(seed)
    r0 = np.sqrt(area / (n * np.pi))
    radii = rng.normal(r0, rel_sd * r0, size=n)
    while np.any(radii < 0.1 * r0):
        bad = radii < 0.1 * r0
        radii[bad] = rng.normal(r0, rel_sd * r0, size=int(bad.sum()))
    return radii * np.sqrt(area / (np.pi * np.sum(radii**2)))


def _ref_area_law(n, seed, rel_sd, area=TOTAL_AREA):
    rng = np.random.default_rng(seed)
    c = rng.normal(1.0, rel_sd, size=n)
    while np.any(c <= 0):
        bad = c <= 0
        c[bad] = rng.normal(1.0, rel_sd, size=int(bad.sum()))
    return np.sqrt(area * c / (np.pi * c.sum()))


@pytest.mark.parametrize("rel_sd", [1 / 3, 1.5])
def test_polydisperse_radii_keep_the_total_area(rel_sd):
    """Wide spreads (1.5) force redraws: radii below 10 % of the mean (radius law) or non-positive area
    coefficients (area law) are drawn again, never folded or clipped."""
    for seed in range(4):
        for law, ref in (("radius", _ref_radius_law), ("area", _ref_area_law)):
            r = disk_radii(7, np.random.default_rng(seed), True, rel_sd=rel_sd, law=law)
            np.testing.assert_allclose(r, ref(7, seed, rel_sd), rtol=1e-12)
            assert np.pi * np.sum(r**2) == pytest.approx(TOTAL_AREA, rel=1e-12)
    # many draws of a wide spread: some fall between 0.1 / r0 and 0.1 r0 and must be drawn again
    for seed in range(10):
        np.testing.assert_allclose(disk_radii(20, np.random.default_rng(seed), True, rel_sd=1.5),
                                   _ref_radius_law(20, seed, 1.5), rtol=1e-12)
    r = disk_radii(5, np.random.default_rng(1), True, total_area=1000.0)
    assert np.pi * np.sum(r**2) == pytest.approx(1000.0)
    np.testing.assert_allclose(r, _ref_radius_law(5, 1, 1 / 3, 1000.0))
    # the default spread is a third of the mean radius
    many = disk_radii(4000, np.random.default_rng(2), True)
    assert many.std() / many.mean() == pytest.approx(1 / 3, rel=0.05)


def test_placement_bounds_gap_and_order():
    rng = np.random.default_rng(0)
    # margin 90 > r: centres in [90, 110]; r = 95 > margin: centres in [95, 105]
    c = place_disks(np.array([5.0]), rng, box=200)
    assert np.all((c >= 90) & (c <= 110))
    c = place_disks(np.array([95.0]), rng, box=200, margin=90.0)
    assert np.all((c >= 95) & (c <= 105))
    # the largest disk is placed first: with one candidate per batch it takes the first draw
    radii = np.array([5.0, 50.0])
    c = place_disks(radii, np.random.default_rng(7), box=200, margin=0.0, batch=1)
    first = np.random.default_rng(7).uniform(50.0, 150.0, size=(1, 2))[0]
    np.testing.assert_array_equal(c[1], first)
    # crowded boxes: every pair keeps the default 2-unit gap, and some pairs come close to it
    gaps = []
    for seed in range(12):
        radii = np.array([5.0, 5.0, 4.0])
        c = place_disks(radii, np.random.default_rng(seed), box=40, margin=0.0)
        s = DiskSystem(c, radii, 40)
        gaps.append(s.min_gap())
        assert np.all(c >= radii[:, None]) and np.all(c <= 40 - radii[:, None])
    assert min(gaps) >= 2.0 and min(gaps) < 3.0
    c = place_disks(np.array([5.0, 5.0]), np.random.default_rng(3), box=60, margin=0.0, gap=10.0)
    assert DiskSystem(c, np.array([5.0, 5.0])).min_gap() >= 10.0
    # the first candidate that fits is taken (batch of 256 from one draw)
    rng = np.random.default_rng(11)
    c = place_disks(np.array([5.0]), rng, box=100, margin=10.0)
    np.testing.assert_array_equal(c[0], np.random.default_rng(11).uniform(10.0, 90.0, size=(256, 2))[0])
    # defaults: margin 90, batches of 256 candidates (the second disk draws from the stream after 256 pairs)
    c = place_disks(np.array([50.0, 5.0]), np.random.default_rng(12), box=400)
    ref = np.random.default_rng(12)
    first = ref.uniform(90.0, 310.0, size=(256, 2))[0]
    cand = ref.uniform(90.0, 310.0, size=(256, 2))
    ok = np.linalg.norm(cand - first, axis=1) >= 57.0
    np.testing.assert_array_equal(c[0], first)
    np.testing.assert_array_equal(c[1], cand[np.flatnonzero(ok)[0]])


class _Stub:
    """Candidates that never fit (on the placed disk) for the first ``fail`` batches, then one that fits."""

    def __init__(self, fail):
        self.calls, self.fail = 0, fail

    def uniform(self, lo, hi, size):
        self.calls += 1
        out = np.full(size, 50.0)
        if self.calls > self.fail + 1:        # call 1 places the first disk at (50, 50)
            out[0] = (20.0, 20.0)
        return out


def test_placement_gives_up_after_max_batches():
    radii = np.array([5.0, 5.0])
    c = place_disks(radii, _Stub(199), box=100, margin=0.0)   # the 200th batch for disk 2 fits
    np.testing.assert_array_equal(c, [[50.0, 50.0], [20.0, 20.0]])
    with pytest.raises(ConfigError, match="could not place 2 disks"):
        place_disks(radii, _Stub(200), box=100, margin=0.0)     # it would take a 201st
    assert place_disks(radii, _Stub(200), box=100, margin=0.0, max_batches=201)[1].tolist() == [20.0, 20.0]


def test_placement_errors():
    rng = np.random.default_rng(0)
    # box - lo == lo: no room
    with pytest.raises(ConfigError, match=r"disk of radius 100.0 does not fit in a box of 200"):
        place_disks(np.array([100.0]), rng, box=200, margin=0.0)
    place_disks(np.array([99.0]), rng, box=200, margin=0.0)
    with pytest.raises(ConfigError, match="could not place 2 disks without overlap in a box of 30"):
        place_disks(np.array([10.0, 10.0]), rng, box=30, margin=0.0, max_batches=5)
    # one batch is enough for an easy placement; zero batches place nothing
    place_disks(np.array([3.0, 3.0]), rng, box=100, margin=0.0, max_batches=1)
    with pytest.raises(ConfigError, match="could not place"):
        place_disks(np.array([3.0]), rng, box=100, margin=0.0, max_batches=0)


def test_random_disk_system_passes_its_arguments():
    s = random_disk_system(4, 5, polydisperse=True, box=600, total_area=2000.0, poly_law="area")
    assert s.box == 600 and s.n == 4 and s.total_area == pytest.approx(2000.0)
    rng = np.random.default_rng(5)
    r = disk_radii(4, rng, True, total_area=2000.0, law="area")
    np.testing.assert_array_equal(s.radii, r)
    np.testing.assert_array_equal(s.centers, place_disks(r, rng, box=600))
    a, b = random_disk_system(3, 1), random_disk_system(3, 1)
    np.testing.assert_array_equal(a.centers, b.centers)
    assert a.box == BOX and np.all(a.centers >= 90) and np.all(a.centers <= BOX - 90)
    assert a.min_gap() >= 2.0
    np.testing.assert_allclose(a.radii, disk_radii(3, None))


def test_thickness_map_flat_and_sphere():
    s = DiskSystem(np.array([[10.0, 10.0], [20.0, 21.0]]), np.array([5.0, 3.0]), box=30)
    flat = thickness_map(s)
    assert flat.shape == (31, 31) and flat.dtype == np.float32
    assert set(np.unique(flat)) == {0.0, 1.0}
    # lattice points with y^2 + x^2 <= 25 (boundary included): 81; <= 9: 29
    assert flat[:16, :16].sum() == 81 and flat[16:, 16:].sum() == 29
    assert flat[15, 10] == 1 and flat[16, 10] == 0 and flat[10, 5] == 1 and flat[10, 4] == 0
    sph = thickness_map(s, "sphere", dtype=np.float64)
    assert sph.dtype == np.float64
    assert sph[10, 10] == 1.0 and sph[20, 21] == 1.0
    assert sph[13, 14] == pytest.approx(0.0) and sph[13, 13] == pytest.approx(np.sqrt(1 - 18 / 25))
    assert sph[10, 13] == pytest.approx(np.sqrt(1 - 9 / 25)) and sph[20, 23] == pytest.approx(np.sqrt(1 - 4 / 9))
    assert np.all((sph > 0) <= (flat > 0))
    with pytest.raises(ConfigError, match=r"unknown disk profile 'cube'; choose one of flat, sphere"):
        thickness_map(s, "cube")


def test_thickness_map_edges_and_neighbouring_boxes():
    # a disk cut by the box edges, and two disks whose bounding boxes overlap (diagonal neighbours)
    s = DiskSystem(np.array([[1.0, 28.5], [12.0, 12.0], [19.0, 19.0], [26.0, 2.0]]), np.array([4.0, 5.0, 4.5, 3.0]),
                   box=30)
    t = thickness_map(s)
    yy, xx = np.mgrid[:31, :31]
    ref = np.zeros((31, 31))
    for (cy, cx), r in zip(s.centers, s.radii):
        ref = np.maximum(ref, ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(float))
    np.testing.assert_array_equal(t, ref)
    sph = thickness_map(s, "sphere")
    refs = np.zeros((31, 31))
    for (cy, cx), r in zip(s.centers, s.radii):
        rho2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2
        refs = np.maximum(refs, np.sqrt(np.clip(1 - rho2, 0, None)))
    np.testing.assert_allclose(sph, refs, rtol=1e-6, atol=1e-7)


def test_object_function_contrasts():
    s = DiskSystem(np.array([[10.0, 10.0]]), np.array([5.0]), box=20)
    h = thickness_map(s, "sphere")
    np.testing.assert_array_equal(object_function(s, profile="sphere"), h)
    assert object_function(s).dtype == np.float32
    ph = object_function(s, "phase", "sphere", phase=0.7, absorption=0.4)   # absorption ignored for phase
    assert ph.dtype == np.complex64
    np.testing.assert_allclose(ph, np.exp(0.7j * h) - 1, rtol=1e-5, atol=1e-6)
    mixed = object_function(s, "mixed", "sphere", phase=0.7, absorption=0.4)
    np.testing.assert_allclose(mixed, np.exp((0.7j - 0.4) * h) - 1, rtol=1e-5, atol=1e-6)
    assert mixed[10, 10] == pytest.approx(np.exp(0.7j - 0.4) - 1, rel=1e-6)
    assert object_function(s, "phase")[0, 0] == 0
    np.testing.assert_allclose(object_function(s, "phase")[10, 10], np.exp(0.5j) - 1, rtol=1e-6)
    # absorption alone is enough for mixed contrast, not for phase contrast
    np.testing.assert_allclose(object_function(s, "mixed", phase=0.0, absorption=0.3)[10, 10], np.exp(-0.3) - 1,
                               rtol=1e-6)
    with pytest.raises(ConfigError, match=r"^phase contrast needs a non-zero phase \(or absorption for 'mixed'\)$"):
        object_function(s, "phase", phase=0.0, absorption=0.3)
    with pytest.raises(ConfigError, match="needs a non-zero phase"):
        object_function(s, "mixed", phase=0.0)
    with pytest.raises(ConfigError, match=r"unknown contrast 'dark'; choose one of amplitude, phase, mixed"):
        object_function(s, "dark")
