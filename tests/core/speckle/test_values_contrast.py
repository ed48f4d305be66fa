"""The ring speckle contrast the radial features read has the value random-phasor statistics predict.

For ``n`` disks the amplitude on a ring of wave number ``q`` is ``sum_j f_j(q) exp(i q . c_j)`` with
``f_j = a_j 2 J1(q r_j) / (q r_j)``. Away from k = 0 the phases are uniform and independent, so
``<I^2> / <I>^2 = 2 - sum f^4 / (sum f^2)^2``: 1 for one disk (a ring of constant intensity), ``2 - 1/n``
for ``n`` equal disks. The feature stores ``<I^2>/<I>^2 - 1``, i.e. 0, ``1 - 1/n`` and
``1 - sum f^4 / (sum f^2)^2``. Read here on the unbinned 513 window (``bin = 1``), where a ring one pixel
wide holds tens of independent speckles.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_cxdi.speckle.disks import DiskSystem, random_disk_system
from napari_cxdi.speckle.features import FeatureConfig, radial_features
from napari_cxdi.speckle.patterns import PAD, _disk_form_factor, speckle_analytic

# rings 60..240 full-resolution pixels: beyond the structure-factor region, inside the window
CFG = FeatureConfig(bin=1, r_min=60, r_max=240)


def _contrast(system: DiskSystem) -> np.ndarray:
    f = radial_features(speckle_analytic(system), CFG, 1, counts=False)[0]
    return f[CFG.n_rings:2 * CFG.n_rings].astype(float)


def _predicted(system: DiskSystem) -> np.ndarray:
    """``1 - sum f^4 / (sum f^2)^2`` per ring (ring centre ``q``)."""
    k = 2 * np.pi * CFG.ring_radii_px() / PAD
    f = np.stack([np.pi * r**2 * _disk_form_factor(k * r) for r in system.radii])   # (n, R)
    return 1.0 - (f**4).sum(0) / (f**2).sum(0) ** 2


def test_one_disk_has_no_speckle():
    c = _contrast(DiskSystem(np.array([[1000.0, 1000.0]]), np.array([60.0])))
    # rings cut across the Airy profile, so only near its zeros does the intensity vary within a ring
    assert np.median(np.abs(c)) < 0.01
    assert np.mean(np.abs(c) < 0.05) > 0.8


@pytest.mark.parametrize("n", [2, 5, 12])
def test_equal_disks_give_one_minus_one_over_n(n):
    c = np.mean([_contrast(random_disk_system(n, seed)).mean() for seed in range(3)])
    assert c == pytest.approx(1 - 1 / n, abs=0.04)
    # the effective number 1 / (1 - contrast) reads n
    assert 1 / (1 - c) == pytest.approx(n, rel=0.3)


def test_unequal_disks_follow_the_fourth_moment():
    """Polydisperse (area law): the measured contrast follows ``1 - sum f^4 / (sum f^2)^2`` ring by ring,
    clearly below the equal-disk value ``1 - 1/n``."""
    n = 6
    meas, pred = [], []
    for seed in range(4):
        s = random_disk_system(n, seed, polydisperse=True, poly_law="area")
        meas.append(_contrast(s))
        pred.append(_predicted(s))
    meas, pred = np.concatenate(meas), np.concatenate(pred)
    assert meas.mean() == pytest.approx(pred.mean(), abs=0.04)
    # binned in predicted value, the measured mean tracks it (the form factors change the weights with q)
    lo, hi = pred < np.quantile(pred, 0.3), pred > np.quantile(pred, 0.7)
    assert meas[hi].mean() - meas[lo].mean() == pytest.approx(pred[hi].mean() - pred[lo].mean(), abs=0.06)
    assert pred[lo].mean() < 1 - 1 / n - 0.05
