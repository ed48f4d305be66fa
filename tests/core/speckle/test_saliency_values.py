"""Saliency and Grad-CAM on models whose gradients are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_cxdi.errors import DataValidationError
from napari_cxdi.speckle.patterns import PreprocessConfig
from napari_cxdi.speckle.resnet import build_resnet
from napari_cxdi.speckle.saliency import grad_cam, saliency_map, to_pattern_frame, upsample_to_frame


class _Linear(nn.Module):
    """Score of class 0 = sum(w * x), class 1 = -score; feature channels: x * mask_c (c = 0, 1)."""

    def __init__(self, w: np.ndarray, task: str = "classification", pool: int = 1):
        super().__init__()
        self.task = task
        self.pool = pool
        self.register_buffer("w", torch.as_tensor(w, dtype=torch.float32))
        self.p = nn.Parameter(torch.ones(()))

    def features(self, x):
        x = self.p * x
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)
        return torch.cat([x, 2 * x], dim=1)

    def head(self, feat):
        w = self.w if self.pool == 1 else F.avg_pool2d(self.w[None, None], self.pool)[0, 0]
        s = (feat[:, 0] * w).sum(dim=(-2, -1)) + 0.0 * feat[:, 1].sum(dim=(-2, -1))
        return s if self.task == "regression" else torch.stack([s, -s], dim=1)

    def forward(self, x):
        return self.head(self.features(x))


W = np.array([[1.0, -3.0, 0.0, 2.0], [0.5, 0.0, 1.0, -1.0], [0.0, 0.0, 4.0, 0.0], [-2.0, 1.0, 0.0, 0.0]])
X = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 1.0, 2.0], [3.0, 1.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0]])


def test_saliency_is_the_scaled_absolute_gradient():
    m = saliency_map(_Linear(W), X, target=0)
    assert m.dtype == np.float32 and m.shape == (4, 4)
    np.testing.assert_allclose(m, np.abs(W) / 4.0, rtol=1e-6)
    np.testing.assert_allclose(saliency_map(_Linear(W), X, target=1), np.abs(W) / 4.0, rtol=1e-6)
    np.testing.assert_allclose(saliency_map(_Linear(W, "regression"), X), np.abs(W) / 4.0, rtol=1e-6)
    # a flat gradient (every |w| equal) gives zeros, not a division by zero
    assert np.all(saliency_map(_Linear(np.full((4, 4), -2.0)), X, target=0) == 0.0)
    with pytest.raises(DataValidationError, match=r"expected one prepared pattern \(S, S\), got \(1, 4, 4\)"):
        saliency_map(_Linear(W), X[None])


def test_grad_cam_weights_channels_by_their_mean_gradient():
    # class 0: d score / d feat0 = w (mean 5.5 / 16 > 0), d / d feat1 = 0: cam = relu(mean(w) * x)
    cam = grad_cam(_Linear(W), X, target=0)
    assert cam.dtype == np.float32
    ref = X * W.mean()
    np.testing.assert_allclose(cam, (ref - ref.min()) / (ref.max() - ref.min()), rtol=1e-5, atol=1e-6)
    # class 1: the weight is negative, relu leaves nothing
    assert np.all(grad_cam(_Linear(W), X, target=1) == 0.0)
    # default target = the predicted class: for positive scores class 0, for negative inputs class 1
    np.testing.assert_allclose(grad_cam(_Linear(W), X), cam, rtol=1e-6)
    # (class 1 of -x: weight -mean(w) on -x, the same map; class 0 of -x would be all zeros)
    np.testing.assert_allclose(grad_cam(_Linear(W), -X), cam, rtol=1e-6)
    assert np.all(grad_cam(_Linear(W), -X, target=0) == 0.0)
    np.testing.assert_allclose(grad_cam(_Linear(W, "regression"), X), cam, rtol=1e-6)
    # gradients are taken even when the caller disabled them
    with torch.no_grad():
        np.testing.assert_allclose(grad_cam(_Linear(W), X, target=0), cam, rtol=1e-6)


def test_grad_cam_upsamples_bilinearly_to_the_input():
    x = np.arange(16, dtype=float).reshape(4, 4) + 1.0
    cam = grad_cam(_Linear(W, pool=2), x, target=0)
    feat = F.avg_pool2d(torch.as_tensor(x, dtype=torch.float32)[None, None], 2)
    wp = F.avg_pool2d(torch.as_tensor(W, dtype=torch.float32)[None, None], 2)
    ref = F.interpolate(torch.relu(feat * wp.mean()), size=(4, 4), mode="bilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(cam, (ref - ref.min()) / (ref.max() - ref.min()), rtol=1e-5, atol=1e-6)
    # bilinear, not nearest: more than 4 distinct values
    assert len(np.unique(np.round(cam, 5))) > 4


class _TwoW(nn.Module):
    """Class 0 score sum(w x) (predicted for positive x), class 1 score 0.1 sum(v x): different gradients."""

    task = "classification"

    def __init__(self, w, v):
        super().__init__()
        self.register_buffer("w", torch.as_tensor(w, dtype=torch.float32))
        self.register_buffer("v", torch.as_tensor(v, dtype=torch.float32))
        self.p = nn.Parameter(torch.ones(()))

    def forward(self, x):
        x = self.p * x[:, 0]
        return torch.stack([(x * self.w).sum((-2, -1)) + 100.0, 0.1 * (x * self.v).sum((-2, -1))], 1)


def test_saliency_of_the_class_asked_for():
    v = np.arange(16, dtype=float).reshape(4, 4)
    m = _TwoW(W, v)
    np.testing.assert_allclose(saliency_map(m, X, target=1), v / 15.0, rtol=1e-6)
    np.testing.assert_allclose(saliency_map(m, X), np.abs(W) / 4.0, rtol=1e-6)


def test_inputs_follow_the_model():
    from napari_cxdi.speckle.saliency import _input

    meta = nn.Linear(1, 1, device="meta")
    t = _input(np.ones((3, 3)), meta)
    assert t.device.type == "meta" and t.shape == (1, 1, 3, 3) and t.dtype == torch.float32
    # float64 and integer patterns reach a float32 network as float32
    torch.manual_seed(0)
    net = build_resnet(18, 3, width=4)
    x64 = np.random.default_rng(0).normal(size=(32, 32))
    np.testing.assert_allclose(saliency_map(net, x64, 0), saliency_map(net, x64.astype(np.float32), 0), rtol=1e-5)
    assert grad_cam(net, np.arange(32 * 32).reshape(32, 32) % 7, 1).shape == (32, 32)


def test_maps_use_the_model_in_eval_mode():
    torch.manual_seed(0)
    model = build_resnet(18, 3, width=4)
    model.train()
    x = np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32)
    sal = saliency_map(model, x, target=2)
    assert not model.training
    model.train()
    cam = grad_cam(model, x, target=2)
    assert not model.training
    # the same maps computed by hand in eval mode
    inp = torch.as_tensor(x)[None, None].requires_grad_(True)
    (g,) = torch.autograd.grad(model(inp)[0, 2], inp)
    a = g[0, 0].abs()
    np.testing.assert_allclose(sal, ((a - a.min()) / (a.max() - a.min())).numpy(), rtol=1e-4, atol=1e-6)
    feat = model.features(torch.as_tensor(x)[None, None])
    (gf,) = torch.autograd.grad(model.head(feat)[0, 2], feat)
    c = torch.relu((gf.mean(dim=(2, 3), keepdim=True) * feat).sum(1, keepdim=True))
    c = F.interpolate(c, size=(32, 32), mode="bilinear", align_corners=False)[0, 0].detach()
    np.testing.assert_allclose(cam, ((c - c.min()) / (c.max() - c.min())).numpy(), rtol=1e-4, atol=1e-5)


def test_maps_are_placed_back_on_the_raw_frame():
    m = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    out = upsample_to_frame(m, 3, (10, 11))
    assert out.shape == (10, 11) and out.dtype == np.float32
    # 6 x 6 block centred: rows 2..7, columns 2..7 (k = 0 at 5, 5)
    ref = np.zeros((10, 11), np.float32)
    ref[2:8, 2:8] = np.kron(m, np.ones((3, 3)))
    np.testing.assert_array_equal(out, ref)
    assert out[2, 2] == 1 and out[7, 7] == 4 and out[2, 5] == 2
    pre = PreprocessConfig(window=9, bin=3)  # only the binning matters here
    np.testing.assert_array_equal(to_pattern_frame(m, pre, (10, 11)), ref)
    np.testing.assert_array_equal(to_pattern_frame(m, pre, (4, 4), input_bin=3), np.pad(m, 1))
