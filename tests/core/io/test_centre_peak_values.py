"""Beam-centre estimate, by value: the sub-pixel peak of a score map (hand values), the score against a
brute-force normalised self-correlation, and hot pixels the mask misses."""

import numpy as np
import pytest

from napari_cxdi.errors import ConfigError
from napari_cxdi.io.detector import MIN_CENTRE_ENERGY, estimate_centre, subpixel_peak
from napari_cxdi.io.mask import suggest_hot_pixels

NEG = -np.inf


def _map(values: dict, shape=(5, 6), fill=0.0):
    m = np.full(shape, fill)
    for (y, x), v in values.items():
        m[y, x] = v
    return m


def test_subpixel_peak_is_the_vertex_of_a_parabola_per_axis():
    # peak 3 at (2, 3); row neighbours 1 (left) and 2 (right), column neighbours 2 (above) and 0.5 (below)
    m = _map({(2, 3): 3.0, (2, 2): 1.0, (2, 4): 2.0, (1, 3): 2.0, (3, 3): 0.5})
    y, x, peak = subpixel_peak(m)
    assert x == pytest.approx(3 + 0.5 * (1 - 2) / (1 - 6 + 2), abs=1e-15)  # 3 + 1/6
    assert y == pytest.approx(2 + 0.5 * (2 - 0.5) / (2 - 6 + 0.5), abs=1e-15)  # 2 - 3/14
    assert peak == 3.0
    # symmetric neighbours: no offset
    assert subpixel_peak(_map({(1, 1): 5.0, (1, 0): 2.0, (1, 2): 2.0, (0, 1): 4.0, (2, 1): 4.0})) == (1.0, 1.0, 5.0)


def test_subpixel_peak_offset_reaches_half_a_pixel_at_equal_neighbours():
    # the second of two equal maxima is never the peak (argmax takes the first), so a right neighbour equal to
    # the peak gives the largest offset, +0.5, and the parabola stays concave
    y, x, _ = subpixel_peak(_map({(2, 2): 4.0, (2, 3): 4.0, (2, 1): 1.0, (1, 2): 1.0, (3, 2): 1.0}))
    assert (y, x) == (2.0, 2.5)


def test_subpixel_peak_needs_its_four_neighbours_searched_not_its_diagonals():
    base = {(2, 3): 3.0, (2, 2): 1.0, (2, 4): 1.0, (1, 3): 1.0, (3, 3): 1.0}
    for diagonal in ((1, 2), (1, 4), (3, 2), (3, 4)):
        y, x, _ = subpixel_peak(_map({**base, diagonal: NEG}))
        assert (y, x) == (2.0, 3.0)
    for neighbour in ((2, 2), (2, 4), (1, 3), (3, 3)):
        with pytest.raises(ConfigError, match=r"^cannot estimate the beam centre: the pattern's centre of symmetry "
                                              r"lies at the edge of what can be searched \(centres whose reflection "
                                              r"meets at least 50% of the pattern's energy\)"):
            subpixel_peak(_map({**base, neighbour: NEG}))
    # outside the map counts as not searched
    for corner in ((0, 0), (0, 5), (4, 0), (4, 5), (0, 3), (2, 0)):
        with pytest.raises(ConfigError, match="lies at the edge"):
            subpixel_peak(_map({corner: 9.0}))


def _brute_force_score(p, bad):
    """max over integer shifts s (with the energy rule) of sum_r v(r) v(s - r) / sum_r v(r)^2 w(s - r)."""
    w = (~bad).astype(float)
    v = np.log1p(p) * w
    v = np.minimum(v, np.percentile(v[~bad], 99.9))
    h, wd = p.shape
    best, where, dens = -np.inf, None, {}
    for sy in range(2 * h - 1):
        for sx in range(2 * wd - 1):
            num = den = 0.0
            for y in range(max(0, sy - h + 1), min(h, sy + 1)):
                for x in range(max(0, sx - wd + 1), min(wd, sx + 1)):
                    num += v[y, x] * v[sy - y, sx - x]
                    den += v[y, x] ** 2 * w[sy - y, sx - x]
            dens[sy, sx] = (num, den)
    top = max(d for _, d in dens.values())
    for s, (num, den) in dens.items():
        if den > MIN_CENTRE_ENERGY * top and num / den > best:
            best, where = num / den, s
    return best, where


def test_centre_score_is_the_normalised_self_correlation_with_the_clip_over_measured_pixels():
    # a noisy symmetric blob about (7.5, 8) with ~19 % of its pixels masked: the 99.9th percentile clip is
    # taken over measured pixels only (over all pixels it would be lower, and the score different)
    rng = np.random.default_rng(4)
    y, x = np.mgrid[:16, :17]
    p = 40 * np.exp(-((y - 7.5) ** 2 + (x - 8) ** 2) / 18) + rng.uniform(0, 3, (16, 17))
    bad = rng.random((16, 17)) < 0.15
    bad |= bad[::-1, ::-1]  # a centrosymmetric mask: the brightest pixels meet their (measured) mirrors
    assert suggest_hot_pixels(p, bad)[1] == 0
    cy, cx, score = estimate_centre(np.where(bad, 0.0, p), bad)
    best, (sy, sx) = _brute_force_score(p, bad)
    assert score == pytest.approx(best, abs=1e-9)
    assert abs(cy - sy / 2) <= 0.25 and abs(cx - sx / 2) <= 0.25  # the sub-pixel offset is at most half a shift
    assert abs(cy - 7.5) < 0.5 and abs(cx - 8) < 0.5


N = 96
YY, XX = np.mgrid[:N, :N]


def _rings_with_gaps(rng):
    """A ring pattern of Poisson counts about a random centre in the middle 40 %, two masked module gaps (zeroed)."""
    cy, cx = rng.uniform(0.3 * N, 0.7 * N, 2)
    r = np.hypot(YY - cy, XX - cx)
    counts = rng.poisson(50 * np.exp(-r / 8) * (1 + np.cos(r / 2) ** 2)).astype(float)
    bad = np.zeros((N, N), bool)
    bad[:, 45:47] = True
    bad[30:32, :] = True
    counts[bad] = 0.0
    return cy, cx, counts, bad


@pytest.mark.parametrize("seed", range(6))
def test_hot_pixels_the_mask_misses_do_not_decide_the_centre(seed):
    # 20 unmasked hot pixels (1e6 counts) in a 96 x 96 ring pattern with module gaps: before, they decided
    # the centre (36 of 60 random beams came out wrong, silently)
    rng = np.random.default_rng(1000 + seed)
    cy, cx, counts, bad = _rings_with_gaps(rng)
    hot = rng.integers(0, N, (20, 2))
    counts[hot[:, 0], hot[:, 1]] = 1e6
    counts[bad] = 0.0
    y, x, score = estimate_centre(counts, bad)
    assert abs(y - cy) < 0.5 and abs(x - cx) < 0.5 and score > 0.9
    # the data are not changed: the hot pixels stay in the pattern the caller holds
    assert (counts[hot[:, 0], hot[:, 1]][~bad[hot[:, 0], hot[:, 1]]] == 1e6).all()


def test_a_pattern_of_isolated_pixels_only_keeps_them():
    # two lone bright pixels are all there is: they look hot, but they are the pattern
    p = np.zeros((20, 24))
    p[5, 7] = p[15, 17] = 12.0
    assert suggest_hot_pixels(p)[1] == 2
    assert estimate_centre(p)[:2] == (10.0, 12.0)
    # with one more (dim, not isolated) feature, the lone bright pixels are left out of the estimate: the
    # centre is the feature's
    p[7:10, 8:11] = 1.0
    assert suggest_hot_pixels(p)[1] == 2
    assert estimate_centre(p)[:2] == (8.0, 9.0)


def test_estimate_does_not_depend_on_the_inputs_number_type():
    # a float32 or integer summed pattern gives the float64 pattern's answer exactly (computed in float64)
    rng = np.random.default_rng(7)
    r = np.hypot(*(np.mgrid[:40, :44] - np.array([18.3, 23.6])[:, None, None]))
    counts = rng.poisson(30 * np.exp(-r / 6) * (1 + np.cos(r / 2) ** 2))
    ref = estimate_centre(counts.astype(np.float64))
    for dtype in (np.float32, np.int32, np.uint16):
        assert estimate_centre(counts.astype(dtype)) == ref
    # the peak finder too: an integer map is read as float64 (-inf padding), not cast back to integers
    m = _map({(2, 3): 3, (2, 2): 1, (2, 4): 2, (1, 3): 2, (3, 3): 0}).astype(np.int64)
    assert subpixel_peak(m) == subpixel_peak(m.astype(np.float64))
    third = (m / 3).astype(np.float32)
    assert subpixel_peak(third) == subpixel_peak(third.astype(np.float64))


def test_hot_pixels_half_in_the_mask_are_still_left_out():
    # hot pairs whose neighbour is masked (the mask caught one of the two): the masked neighbour's value does not
    # count as a bright neighbour, so the unmasked hot pixel is still isolated among measured pixels
    rng = np.random.default_rng(1003)
    cy, cx, counts, bad = _rings_with_gaps(rng)
    hot = rng.integers(1, N - 2, (20, 2))
    counts[hot[:, 0], hot[:, 1]] = 1e6
    counts[hot[:, 0], hot[:, 1] + 1] = 1e6  # its neighbour: hot too, and masked (its value left in the frame)
    bad[hot[:, 0], hot[:, 1] + 1] = True
    bad[hot[:, 0], hot[:, 1]] = False
    y, x, _ = estimate_centre(counts, bad)
    assert abs(y - cy) < 0.5 and abs(x - cx) < 0.5


def test_isolated_pixels_are_all_the_pattern_has_even_beside_masked_counts():
    # counts under the mask are not data: two lone bright pixels are still all the pattern has
    p = np.zeros((20, 24))
    p[5, 7] = p[15, 17] = 12.0
    bad = np.zeros(p.shape, bool)
    p[0:3, 20:23] = 5.0
    bad[0:3, 20:23] = True
    assert estimate_centre(p, bad)[:2] == (10.0, 12.0)
