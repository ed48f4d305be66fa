"""Beam-centre estimation for a beam far from the detector's middle (measured data: an off-centre beam).

Before: at the default overlap rule (0.5) a beam at a quarter of the width in both axes came out 13 px off,
one at 8 % of the width 34 px off, silently. Then the search widened its overlap rule until the peak lay
inside it; now the energy rule alone decides which centres are searched (a beam at 10 % of the width in
both axes, refused by the widening search, is found), and a centre that cannot be searched is a
ConfigError that asks for the centre."""

import numpy as np
import pytest

from napari_cxdi.errors import ConfigError
from napari_cxdi.io.detector import MIN_CENTRE_ENERGY, estimate_centre

N = 96
YY, XX = np.mgrid[:N, :N]


def _speckle_rings(cy, cx, seed=0, photons=50.0):
    """Poisson counts of a centrosymmetric ring pattern about (cy, cx) with two module gaps (masked)."""
    r = np.hypot(YY - cy, XX - cx)
    counts = np.random.default_rng(seed).poisson(photons * np.exp(-r / 8.0) * (1 + np.cos(r / 2) ** 2)).astype(float)
    bad = np.zeros((N, N), bool)
    bad[:, 45:47] = True
    bad[30:32, :] = True
    counts[bad] = 0.0
    return counts, bad


@pytest.mark.parametrize("fy, fx", [(0.5, 0.5), (0.25, 0.25), (0.15, 0.5), (0.15, 0.15), (0.8, 0.2)])
def test_off_centre_beams_are_found_to_half_a_pixel(fy, fx):
    cy, cx = fy * N + 0.3, fx * N - 0.2
    counts, bad = _speckle_rings(cy, cx)
    y, x, score = estimate_centre(counts, bad)
    assert abs(y - cy) < 0.5 and abs(x - cx) < 0.5
    assert 0.85 < score <= 1.0 + 1e-9


@pytest.mark.parametrize("f", [0.10, 0.12])
def test_a_beam_in_the_corner_is_found_by_the_energy_rule(f):
    # a beam at 10 % of the width in both axes: its reflection meets most of the pattern's energy, though
    # little of its area (the area rule, even widened to a 5 % overlap, refused it)
    cy = cx = f * N
    counts, bad = _speckle_rings(cy, cx)
    y, x, score = estimate_centre(counts, bad)
    assert abs(y - cy) < 0.5 and abs(x - cx) < 0.5 and score > 0.95


@pytest.mark.parametrize("cy, cx", [(4.0, 4.0), (4.0, 48.0), (90.0, 91.0)])
def test_a_beam_at_the_detector_edge_is_an_error_naming_the_remedy(cy, cx):
    counts, bad = _speckle_rings(cy, cx)
    with pytest.raises(ConfigError, match=r"^cannot estimate the beam centre: .* lies at the edge of what can be "
                                          r"searched \(centres whose reflection meets at least 50% of the "
                                          r"pattern's energy\); the beam is probably near the detector's edge: "
                                          r"give it \(--center Y,X\)$"):
        estimate_centre(counts, bad)
    assert MIN_CENTRE_ENERGY == 0.5


def test_sparse_background_counts_do_not_make_a_centre():
    # a beam 5 px from the top edge of a 128 px detector, with its pattern's sparse far tails: its reflection
    # through any searchable centre meets mostly single background counts. Without the energy rule some of
    # them matched their mirror images perfectly (score 1.000) at a centre 106 px away; now the search finds
    # no centre inside the searchable region: an error, not a guess
    n = 128
    yy, xx = np.mgrid[:n, :n]
    r = np.hypot(yy - (0.04 * n + 0.3), xx - (0.5 * n - 0.2))
    counts = np.random.default_rng(3).poisson(50.0 * np.exp(-r / 10.0) * (1 + np.cos(r / 2) ** 2)).astype(float)
    bad = np.zeros((n, n), bool)
    bad[:, 60:63] = True
    bad[40:42, :] = True
    counts[bad] = 0.0
    with pytest.raises(ConfigError, match="lies at the edge"):
        estimate_centre(counts, bad)
