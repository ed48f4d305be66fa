"""ResNet-18/34/50 for one-channel speckle patterns of any size (He et al. 2016), written in PyTorch.

Input ``(B, 1, H, W)`` standardised patterns (k = 0 at pixel ``H//2, W//2``); output ``(B, num_classes)``
logits, or ``(B,)`` for the regression head (predicted disk number). ``width`` is the stem width (64 in
the original; 16-32 is enough for CPU training here). Global average pooling makes the net
size-agnostic. ``coord=True`` appends a fixed ``|q|`` channel (distance from the pattern centre in input
pixels / 100, CoordConv-style): with global pooling a plain CNN cannot tell where a ring is, and
ring radii are what encode the disk size.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}
TASKS = ("classification", "regression")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(cin, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.shortcut = _shortcut(cin, out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class SpeckleResNet(nn.Module):
    """ResNet classifier/regressor. ``features(x)`` gives the last conv stage ``(B, C, h, w)`` (Grad-CAM)."""

    def __init__(self, depth: int = 18, num_classes: int = 19, width: int = 64, task: str = "classification",
                 in_channels: int = 1, coord: bool = False):
        super().__init__()
        if depth not in DEPTHS:
            raise ConfigError(f"unsupported ResNet depth {depth}; choose one of {sorted(DEPTHS)}")
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        if width < 4 or num_classes < 1:
            raise ConfigError(f"invalid width {width} or number of classes {num_classes}")
        kind, blocks = DEPTHS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.depth, self.width, self.task, self.num_classes = depth, width, task, num_classes
        self.in_channels, self.coord = in_channels, bool(coord)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels + int(self.coord), width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        layers, cin = [], width
        for i, nb in enumerate(blocks):
            planes = width * 2**i
            stage = []
            for b in range(nb):
                stage.append(block(cin, planes, 2 if (b == 0 and i > 0) else 1))
                cin = planes * block.expansion
            layers.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, 1 if task == "regression" else num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.coord:
            h, w = x.shape[-2:]
            y = torch.arange(h, device=x.device, dtype=x.dtype) - h // 2
            xx = torch.arange(w, device=x.device, dtype=x.dtype) - w // 2
            r = torch.sqrt(y[:, None] ** 2 + xx[None, :] ** 2) / 100.0
            x = torch.cat([x, r.expand(x.shape[0], 1, h, w)], 1)
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def head(self, feat: torch.Tensor) -> torch.Tensor:
        out = self.fc(torch.flatten(self.pool(feat), 1))
        return out[:, 0] if self.task == "regression" else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            x = x[:, None]
        return self.head(self.features(x))

    def config(self) -> dict:
        return {"depth": self.depth, "num_classes": self.num_classes, "width": self.width, "task": self.task,
                "in_channels": self.in_channels, "coord": self.coord}


def build_resnet(depth: int = 18, num_classes: int = 19, width: int = 64, task: str = "classification",
                 coord: bool = False) -> SpeckleResNet:
    """A ResNet-``depth`` for one-channel inputs (``coord``: add the ``|q|`` channel)."""
    return SpeckleResNet(depth, num_classes, width, task, coord=coord)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
