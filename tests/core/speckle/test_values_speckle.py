"""Speckle baseline and explanations checked where the answer is known (issue 20)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from napari_cxdi.speckle.baseline import first_moment, radius_map
from napari_cxdi.speckle.patterns import block_center, standardize
from napari_cxdi.speckle.saliency import grad_cam, saliency_map


def _ring(n, r0, width):
    q = radius_map((n, n))
    return np.exp(-((q - r0) / width) ** 2)


@pytest.mark.parametrize("mode", ["raw", "absolute", "shifted", "normalized"])
def test_first_moment_matches_a_hand_computation(mode):
    x = _ring(41, 12.0, 2.0) + 0.01
    q = radius_map((41, 41))
    b = block_center(x, 11).astype(np.float64)
    if mode == "raw":
        w = b
    else:
        z = standardize(b).astype(np.float64)
        w = {"absolute": np.abs(z), "shifted": z + 1.0,
             "normalized": (z - z.min()) / (z.max() - z.min())}[mode]
    assert first_moment(x, mode) == pytest.approx((w * q).sum() / w.sum(), rel=1e-6)


@pytest.mark.parametrize("mode", ["raw", "absolute", "shifted", "normalized"])
def test_first_moment_grows_with_the_scattering_width(mode):
    near, far = _ring(61, 10.0, 2.0), _ring(61, 22.0, 2.0)
    m = first_moment(np.stack([near, far]), mode)
    assert m[1] > m[0] + 2.0, m


class _TwoChannel(nn.Module):
    """A 'network' whose score depends only on the top-left quadrant of its input."""

    task = "classification"

    def __init__(self, n):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        tl = torch.zeros(n, n)
        tl[: n // 2, : n // 2] = 1
        self.register_buffer("tl", tl)

    def features(self, x):
        # channel 0 sees the top-left quadrant, channel 1 the rest
        return self.scale * torch.cat([x * self.tl, x * (1 - self.tl)], dim=1)

    def head(self, feat):
        s = feat[:, 0].sum(dim=(-2, -1))
        return torch.stack([s, -s], dim=1)

    def forward(self, x):
        return self.head(self.features(x))


def test_grad_cam_and_saliency_point_at_the_quadrant_the_model_uses():
    n = 16
    model = _TwoChannel(n)
    x = np.random.default_rng(0).uniform(0.5, 1.0, (n, n)).astype(np.float32)
    cam = grad_cam(model, x, target=0)
    assert cam[: n // 2, : n // 2].mean() > 0.5
    assert cam[n // 2 + 1:, n // 2 + 1:].max() == pytest.approx(0.0, abs=1e-6)
    sal = saliency_map(model, x, target=0)
    assert sal[: n // 2, : n // 2].min() > 0.99
    assert sal[n // 2:, :].max() == 0.0 and sal[:, n // 2:].max() == 0.0
