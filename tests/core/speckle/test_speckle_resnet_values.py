"""The speckle ResNet (speckle/resnet.py): block wiring checked against hand-composed layers, the stage
layout of ResNet-18/34/50, the |q| coordinate channel, heads and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_cxdi.errors import ConfigError
from napari_cxdi.speckle.resnet import (
    DEPTHS,
    TASKS,
    BasicBlock,
    Bottleneck,
    SpeckleResNet,
    _shortcut,
    build_resnet,
    count_parameters,
)


def _randomise_bn(m):
    g = torch.Generator().manual_seed(0)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=g) * 0.1)


def test_constants_and_errors():
    assert DEPTHS == {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}
    assert TASKS == ("classification", "regression")
    with pytest.raises(ConfigError, match=r"^unsupported ResNet depth 20; choose one of \[18, 34, 50\]$"):
        SpeckleResNet(20)
    with pytest.raises(ConfigError, match=r"^unknown task 'ranking'; choose one of classification, regression$"):
        SpeckleResNet(18, task="ranking")
    with pytest.raises(ConfigError, match=r"^invalid width 3 or number of classes 2$"):
        SpeckleResNet(18, 2, width=3)
    with pytest.raises(ConfigError, match=r"^invalid width 8 or number of classes 0$"):
        SpeckleResNet(18, 0, width=8)
    SpeckleResNet(18, 1, width=4)


def test_blocks_compute_their_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 9)
    b = BasicBlock(4, 8, 2)
    _randomise_bn(b)
    b.eval()
    assert b.expansion == 1 and b.conv1.stride == (2, 2) and b.conv1.kernel_size == (3, 3) and b.conv1.padding == (1, 1)
    assert b.conv2.stride == (1, 1) and b.conv1.bias is None and b.conv2.bias is None
    sc = b.shortcut
    assert isinstance(sc, nn.Sequential) and sc[0].kernel_size == (1, 1) and sc[0].stride == (2, 2) and sc[0].bias is None
    ref = torch.relu(b.bn2(b.conv2(torch.relu(b.bn1(b.conv1(x))))) + sc(x))
    np.testing.assert_allclose(b(x).detach(), ref.detach(), rtol=1e-5, atol=1e-6)
    assert b(x).shape == (2, 8, 5, 5) and b(x).min() >= 0
    same = BasicBlock(4, 4)
    assert isinstance(same.shortcut, nn.Identity)
    _randomise_bn(same)
    same.eval()
    np.testing.assert_allclose(same(x).detach(),
                               torch.relu(same.bn2(same.conv2(torch.relu(same.bn1(same.conv1(x))))) + x).detach(),
                               rtol=1e-5, atol=1e-6)
    bt = Bottleneck(4, 2, 2)
    _randomise_bn(bt)
    bt.eval()
    assert bt.expansion == 4 and bt.conv3.out_channels == 8 and bt.bn3.num_features == 8
    assert bt.conv1.kernel_size == (1, 1) and bt.conv2.kernel_size == (3, 3) and bt.conv2.stride == (2, 2)
    assert bt.conv2.padding == (1, 1) and bt.conv3.kernel_size == (1, 1)
    assert bt.conv1.bias is None and bt.conv2.bias is None and bt.conv3.bias is None
    assert Bottleneck(8, 2).conv2.stride == (1, 1) and isinstance(Bottleneck(8, 2).shortcut, nn.Identity)
    y = torch.relu(bt.bn1(bt.conv1(x)))
    y = torch.relu(bt.bn2(bt.conv2(y)))
    ref = torch.relu(bt.bn3(bt.conv3(y)) + bt.shortcut(x))
    np.testing.assert_allclose(bt(x).detach(), ref.detach(), rtol=1e-5, atol=1e-6)
    assert isinstance(_shortcut(8, 8, 1), nn.Identity)
    assert isinstance(_shortcut(8, 8, 2), nn.Sequential) and isinstance(_shortcut(4, 8, 1), nn.Sequential)
    s = _shortcut(4, 8, 2)
    assert s[0].out_channels == 8 and s[0].stride == (2, 2) and s[1].num_features == 8


@pytest.mark.parametrize("depth, counts, expansion", [(18, (2, 2, 2, 2), 1), (34, (3, 4, 6, 3), 1),
                                                     (50, (3, 4, 6, 3), 4)])
def test_stage_layout(depth, counts, expansion):
    m = SpeckleResNet(depth, 5, width=4)
    stages = [m.layer1, m.layer2, m.layer3, m.layer4]
    assert tuple(len(s) for s in stages) == counts
    for i, s in enumerate(stages):
        planes = 4 * 2**i
        first = s[0]
        assert first.conv1.out_channels == planes
        stride = first.conv2.stride if expansion == 4 else first.conv1.stride
        assert stride == ((2, 2) if i > 0 else (1, 1))
        for blk in s[1:]:
            assert (blk.conv2.stride if expansion == 4 else blk.conv1.stride) == (1, 1)
    assert m.fc.in_features == 32 * expansion and m.fc.out_features == 5
    conv = m.stem[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) == (1, 4, (7, 7), (2, 2), (3, 3))
    assert conv.bias is None and m.stem[1].num_features == 4 and isinstance(m.stem[2], nn.ReLU)
    mp = m.stem[3]
    assert (mp.kernel_size, mp.stride, mp.padding) == (3, 2, 1)
    assert m.config() == {"depth": depth, "num_classes": 5, "width": 4, "task": "classification", "in_channels": 1,
                          "coord": False}


def test_init_features_heads_and_coord_channel():
    torch.manual_seed(0)
    m = SpeckleResNet(18, 3, width=16)
    w = m.layer3[0].conv2.weight                   # kaiming normal, fan_out: std sqrt(2 / (out * 3 * 3))
    assert w.std().item() == pytest.approx(np.sqrt(2 / (64 * 9)), rel=0.1)
    m.eval()
    x = torch.randn(2, 1, 33, 33)
    feat = m.features(x)
    assert feat.shape == (2, 128, 2, 2)
    np.testing.assert_allclose(m(x).detach(), m.fc(feat.mean((2, 3))).detach(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m(x[:, 0]).detach(), m(x).detach())        # (B, H, W) gets its channel
    r = SpeckleResNet(18, 3, width=4, task="regression")
    r.eval()
    assert r.fc.out_features == 1 and r(x).shape == (2,)
    np.testing.assert_allclose(r(x).detach(), r.fc(r.features(x).mean((2, 3)))[:, 0].detach(), rtol=1e-5)
    # the coordinate channel: |q| / 100 from the centre pixel (H // 2, W // 2)
    c = SpeckleResNet(18, 3, width=4, coord=True)
    assert c.stem[0].in_channels == 2 and c.config()["coord"] is True
    seen = {}

    def hook(mod, inp, out):
        seen["x"] = inp[0].detach()

    c.stem[0].register_forward_hook(hook)
    c.eval()
    xi = torch.randn(1, 1, 6, 7)
    c(xi)
    yy, xx = np.mgrid[:6, :7]
    np.testing.assert_allclose(seen["x"][0, 1], np.hypot(yy - 3, xx - 3) / 100.0, rtol=1e-6)
    np.testing.assert_array_equal(seen["x"][0, 0], xi[0, 0])
    b = build_resnet(34, 4, width=8, task="regression", coord=True)
    assert b.config() == {"depth": 34, "num_classes": 4, "width": 8, "task": "regression", "in_channels": 1,
                          "coord": True}
    assert SpeckleResNet().config() == {"depth": 18, "num_classes": 19, "width": 64, "task": "classification",
                                        "in_channels": 1, "coord": False}
    # He initialisation on the fan-out: the stem (1 -> 16 channels, 7 x 7) has std sqrt(2 / (16 * 49))
    torch.manual_seed(1)
    stem = SpeckleResNet(18, 3, width=16).stem[0].weight
    assert stem.std().item() == pytest.approx(np.sqrt(2 / (16 * 49)), rel=0.1)
    # the coordinate channel for an odd height, a batch of two, in double precision, on another device
    c2 = SpeckleResNet(18, 3, width=4, coord=True).double()
    c2.eval()
    got = {}

    def hook2(mod, inp, out):
        got["x"] = inp[0].detach()

    c2.stem[0].register_forward_hook(hook2)
    c2(torch.zeros(2, 1, 7, 6, dtype=torch.float64))
    yy, xx = np.mgrid[:7, :6]
    ref = np.hypot(yy - 3, xx - 3) / 100.0
    assert got["x"].dtype == torch.float64
    np.testing.assert_allclose(got["x"][0, 1], ref, rtol=1e-14)
    np.testing.assert_allclose(got["x"][1, 1], ref, rtol=1e-14)
    meta = SpeckleResNet(18, 3, width=4, coord=True).to("meta")
    assert meta.features(torch.empty(2, 1, 33, 33, device="meta")).shape == (2, 32, 2, 2)
    d = build_resnet()
    assert d.config() == {"depth": 18, "num_classes": 19, "width": 64, "task": "classification", "in_channels": 1,
                          "coord": False}
    assert count_parameters(nn.Linear(3, 2)) == 8
    assert count_parameters(d) == sum(p.numel() for p in d.parameters())
