"""The held-out noise-fitting test (metrics.heldout_excess) and why R_f below the truth's is not one."""

import math

import numpy as np
import pytest

import napari_cxdi.api as cx
from napari_cxdi.errors import DataValidationError
from napari_cxdi.metrics import heldout_excess, poisson_deviance, r_factor
from napari_cxdi.physics.thinning import binomial_thinning
from napari_cxdi.simulate import simulate_test_chart


def test_poisson_deviance_by_hand():
    # n = 0: 2 (0 - (0 - 1)) = 2; n = 2, I = 1: 2 (2 ln 2 - 1); NaN counts are unmeasured
    assert poisson_deviance([1.0, 1.0, 5.0], [0.0, 2.0, np.nan]) == pytest.approx((2 + 2 * (2 * math.log(2) - 1)) / 2)
    assert poisson_deviance([3.0, 0.5], [3.0, 0.0]) == pytest.approx(0.5)  # exact fit: 0; n = 0: 2 I_hat
    assert poisson_deviance([2.0, 7.0], [4.0, 1.0], mask=[False, True]) == pytest.approx(2 * (4 * math.log(2) - 2))
    with pytest.raises(DataValidationError):
        poisson_deviance([1.0], [1.0, 2.0])
    with pytest.raises(DataValidationError):
        poisson_deviance([1.0], [np.nan])


@pytest.fixture(scope="module")
def chart():
    sim = simulate_test_chart(n_frames=16, size=64, seed=0, match_fluence=True)  # the seed's dose: ~2 photons/pixel
    kept, held = binomial_thinning(sim.counts, 0.1, 0)
    return sim, kept, held


def test_r_f_under_the_truth_is_not_noise_fitting_but_heldout_excess_tells(chart):
    sim, kept, held = chart
    true_i = sim.expected
    floor = r_factor(true_i, sim.counts)
    sharpened = true_i ** 1.2 * true_i.sum() / (true_i ** 1.2).sum()  # a deterministic function of the truth
    copy = kept / 0.9  # the training photons themselves: pure noise fitting
    truth = heldout_excess(true_i, true_i, held, 0.1)
    assert truth["heldout_excess"] == 0.0 and truth["heldout_deviance"] == truth["heldout_deviance_truth"]
    # R_f ranks the sharpened truth 20 % "under the noise floor" although it saw no noise at all ...
    assert r_factor(sharpened, sim.counts) < 0.8 * floor
    s = heldout_excess(sharpened, true_i, held, 0.1)
    # ... while the held-out deviance sees it is worse than the truth, by many standard errors
    assert s["heldout_excess"] > 0.1 and s["heldout_excess"] > 5 * s["heldout_excess_se"]
    c = heldout_excess(copy, true_i, held, 0.1)
    assert r_factor(copy, sim.counts) < 0.2 * floor and c["heldout_excess"] > 1.0
    # a small error of scale is seen too (0.9 I: ~1 %), with a standard error that makes it significant
    small = heldout_excess(0.9 * true_i, true_i, held, 0.1)
    assert 0.005 < small["heldout_excess"] < 0.03 and small["heldout_excess"] > 3 * small["heldout_excess_se"]


def test_evaluate_reports_heldout_excess_on_the_methods_split(chart):
    sim, _, _ = chart
    clean = cx.evaluate(sim.objects, sim.counts, sim.probe, truth=sim.objects, heldout_split=(0.1, 0))
    assert clean["heldout_excess"] == 0.0
    flat = np.abs(sim.objects) * np.exp(1j * 0.5 * np.angle(sim.objects))  # half the true phase
    worse = cx.evaluate(flat.astype(np.complex64), sim.counts, sim.probe, truth=sim.objects, heldout_split=(0.1, 0))
    assert worse["heldout_excess"] > 2 * worse["heldout_excess_se"] > 0
    assert "heldout_excess" not in cx.evaluate(sim.objects, sim.counts, sim.probe, truth=sim.objects)
