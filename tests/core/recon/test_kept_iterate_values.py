"""Which iterate the classical baselines keep, and when they stop (issue 20: survivors of recon.iterative).

``KeptIterate`` is checked on hand-made per-frame numbers; the two stopping rules on an exact fixed point
(a step size so small that every iterate is bit-identical to the start), where "rises" and "stops falling"
must not be confused with "stays equal"."""

from __future__ import annotations

import numpy as np
import torch

from napari_cxdi.progress import drain
from napari_cxdi.recon import IterativeConfig, iter_iterative
from napari_cxdi.recon.iterative import KeptIterate

torch.set_num_threads(1)


def _obj(values):
    return torch.tensor(values, dtype=torch.complex64)[:, None, None] * torch.ones(1, 2, 2, dtype=torch.complex64)


def test_below_the_floor_the_iterate_closest_to_it_is_kept_by_rf_over_floor():
    k = KeptIterate.start(_obj([0.0, 0.0]))
    # iterate 1: R_f 0.5 under a floor of 0.8 (ratio 0.625) in frame 0; 0.3 / 0.5 (0.6) in frame 1
    k = k.update(_obj([1.0, 1.0]), torch.tensor([0.5, 0.3]), torch.tensor([0.8, 0.5]), None, margin=0.0)
    # iterate 2: frame 0 0.375 / 0.5 = 0.75 (closer: kept; its product 0.1875 < 0.40 would say otherwise,
    # and so would R_f alone); frame 1 0.36 / 0.9 = 0.4 (farther: not kept, though its product 0.324 > 0.15)
    k = k.update(_obj([2.0, 2.0]), torch.tensor([0.375, 0.36]), torch.tensor([0.5, 0.9]), None, margin=0.0)
    np.testing.assert_allclose(k.obj[:, 0, 0].real.numpy(), [2.0, 1.0])
    np.testing.assert_allclose(k.ratio.numpy(), [0.75, 0.6], rtol=1e-6)
    assert not k.ok.any()
    # an exact tie in R_f / floor keeps the earlier iterate (0.75 / 1 and 0.3 / 0.5 again)
    k = k.update(_obj([3.0, 3.0]), torch.tensor([0.75, 0.3]), torch.tensor([1.0, 0.5]), None, margin=0.0)
    np.testing.assert_allclose(k.obj[:, 0, 0].real.numpy(), [2.0, 1.0])


def test_above_the_floor_the_lowest_heldout_nll_wins_and_margin_sets_the_floor():
    k = KeptIterate.start(_obj([0.0]))
    # 0.76 >= 0.8 x (1 - 0.05) = 0.76: on the floor counts as above it
    k = k.update(_obj([1.0]), torch.tensor([0.76]), torch.tensor([0.8]), torch.tensor([2.0]), margin=0.05)
    assert bool(k.ok[0]) and float(k.nll[0]) == 2.0
    k = k.update(_obj([2.0]), torch.tensor([0.9]), torch.tensor([0.8]), torch.tensor([2.5]), margin=0.05)
    assert float(k.obj[0, 0, 0].real) == 1.0  # higher NLL: not kept
    k = k.update(_obj([3.0]), torch.tensor([0.5]), torch.tensor([0.8]), torch.tensor([0.1]), margin=0.05)
    assert float(k.obj[0, 0, 0].real) == 1.0  # lower NLL but under the floor: not kept
    k = k.update(_obj([4.0]), torch.tensor([0.5]), torch.tensor([0.8]), torch.tensor([1.0]), margin=None)
    assert float(k.obj[0, 0, 0].real) == 4.0 and float(k.nll[0]) == 1.0  # no floor rule: lower NLL kept
    k = k.update(_obj([5.0]), torch.tensor([0.9]), torch.tensor([0.8]), torch.tensor([1.0]), margin=None)
    assert float(k.obj[0, 0, 0].real) == 4.0  # an equal NLL is no improvement: the earlier iterate stays


def test_without_holdout_the_latest_iterate_above_the_floor_is_kept():
    k = KeptIterate.start(_obj([0.0]))
    for v in (1.0, 2.0):
        k = k.update(_obj([v]), torch.tensor([0.9]), torch.tensor([0.8]), None, margin=0.0)
    assert float(k.obj[0, 0, 0].real) == 2.0 and float(k.nll[0]) == 0.0


def _fixed_point_run(**cfg):
    size = 8
    yy, xx = np.mgrid[:size, :size] - size / 2
    probe = (3 * np.exp(-(yy**2 + xx**2) / 8.0)).astype(np.complex64)[None]
    counts = np.random.default_rng(0).poisson(4.0, (2, size, size)).astype(np.float32)
    events = []
    drain(iter_iterative(counts, probe, "mixed-state", IterativeConfig(
        max_iter=12, patience=2, alpha=1e-30, tol=0.0, device="cpu", **cfg)), events.append)
    return [e for e in events if e["event"] == "batch"][0]


def test_a_flat_rf_curve_with_tol_0_is_not_a_plateau():
    # every iterate equals the start: R_f never falls, but "falls by less than 0 x R_f" is never true
    batch = _fixed_point_run(holdout_fraction=0.0)
    assert batch["stopped"] == "max_iter" and batch["iterations"] == 12


def test_a_flat_heldout_nll_is_not_falling():
    # the held-out NLL stays exactly equal: it stops falling, so the hold-out rule stops after `patience`
    batch = _fixed_point_run(holdout_fraction=0.1)
    assert batch["stopped"] == "heldout_rising" and batch["iterations"] == 3
