"""The ordinal training term: cross-entropy plus the squared distance of the expected class from the true one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_cxdi.errors import ConfigError
from napari_cxdi.speckle.patterson_train import PattersonTrainConfig, ordinal_loss


def test_zero_weight_is_cross_entropy():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    y = torch.tensor([0, 2])
    assert float(ordinal_loss(logits, y, 0.0)) == pytest.approx(float(F.cross_entropy(logits, y)))


def test_term_is_the_squared_error_of_the_expected_class():
    # two classes equally likely out of three: expected index 1 (between 0 and 2), true 0 -> error 1
    logits = torch.tensor([[0.0, -1e4, 0.0]])
    y = torch.tensor([0])
    ce = float(F.cross_entropy(logits, y))
    assert float(ordinal_loss(logits, y, 0.5)) == pytest.approx(ce + 0.5 * 1.0, abs=1e-5)
    # the same probability put on a far class costs more than on a near one
    near = torch.tensor([[0.0, 0.0, -1e4, -1e4, -1e4]])
    far = torch.tensor([[0.0, -1e4, -1e4, -1e4, 0.0]])
    t = torch.tensor([0])
    assert float(F.cross_entropy(near, t)) == pytest.approx(float(F.cross_entropy(far, t)))
    d_near = float(ordinal_loss(near, t, 1.0) - F.cross_entropy(near, t))
    d_far = float(ordinal_loss(far, t, 1.0) - F.cross_entropy(far, t))
    assert d_near == pytest.approx(0.25, abs=1e-5) and d_far == pytest.approx(4.0, abs=1e-5)


def test_negative_weight_is_a_config_error():
    with pytest.raises(ConfigError, match="ordinal_weight"):
        PattersonTrainConfig(ordinal_weight=-0.1)
    assert PattersonTrainConfig(ordinal_weight=0.2).to_dict()["ordinal_weight"] == 0.2
    assert np.isfinite(PattersonTrainConfig.from_dict(PattersonTrainConfig(ordinal_weight=0.3).to_dict()).ordinal_weight)


def test_random_views_are_symmetric_copies_of_each_map():
    """Augmentation: every map is replaced by one of its 4 symmetric views (of the same map), all 4 occur,
    and a centro-symmetric map's view is again a valid half-map (same origin value, same sum)."""
    from napari_cxdi.speckle.patterson import dihedral_views
    from napari_cxdi.speckle.patterson_train import random_views

    g = torch.Generator().manual_seed(3)
    maps = torch.randn(64, 5, 9, generator=g)
    views = torch.stack(dihedral_views(maps))                     # (4, N, h+1, 2h+1)
    out = random_views(maps, torch.Generator().manual_seed(0))
    which = [[k for k in range(4) if torch.equal(out[i], views[k, i])] for i in range(len(maps))]
    assert all(len(w) == 1 for w in which)
    assert {w[0] for w in which} == {0, 1, 2, 3}
    assert torch.equal(out[:, -1, 4], maps[:, -1, 4])              # the origin stays the origin
    # a transposed view of a map with one off-axis peak moves the peak to the transposed position
    one = torch.zeros(1, 5, 9)
    one[0, 1, 6] = 1.0                                              # pair vector (dy, dx) = (-3, 2)
    t = dihedral_views(one)[2][0]
    assert t[2, 7] == 1.0 and t.sum() == 1.0                        # (dy, dx) = (-2, 3) after transposing
