"""Building blocks of PID3Net (thesis Fig. 3.4a).

Temporal block (TB): 1x1x1 conv (F) -> three parallel 3D convs with kernels (t, 3, 3), t = 1, 3, 5
and F, F/2, F/2 channels -> concat (2F) -> 1x1x1 conv (F) -> BatchNorm -> swish.
Tensors are [B, C, T, H, W].

Temporal padding (docs/fidelity.md, "chart velocity"): the thesis pads the time axis with zeros. The
zeros tell every layer where in the window a frame sits, and a network trained on a slowly moving
sample learns to output a fixed drift per window position whatever the data say (a window of one
frame repeated T times came out drifting 0.18 px; a time-reversed window still drifted forward).
``temporal_padding="replicate"`` repeats the edge frames instead: a window of identical frames then
gives identical output frames, so any motion in the output comes from the data (and the chart's
motion was learned faster: 343 vs 223 nm/s for 340 after 270 steps).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

TEMPORAL_PADDINGS = ("zeros", "replicate")


class TemporalBlock(nn.Module):
    """Multi-scale spatio-temporal convolution with kernels 1, 3 and 5 frames long."""

    def __init__(self, in_channels: int, channels: int, temporal_padding: str = "zeros"):
        super().__init__()
        if temporal_padding not in TEMPORAL_PADDINGS:
            raise ConfigError(f"temporal_padding must be one of {TEMPORAL_PADDINGS}, got {temporal_padding!r}")
        self.temporal_padding = temporal_padding
        zeros = temporal_padding == "zeros"
        half = max(channels // 2, 1)
        self.squeeze = nn.Conv3d(in_channels, channels, kernel_size=1)
        self.t1 = nn.Conv3d(channels, channels, kernel_size=(1, 3, 3), padding=(0, 1, 1))
        self.t3 = nn.Conv3d(channels, half, kernel_size=(3, 3, 3), padding=(1 if zeros else 0, 1, 1))
        self.t5 = nn.Conv3d(channels, half, kernel_size=(5, 3, 3), padding=(2 if zeros else 0, 1, 1))
        self.merge = nn.Conv3d(channels + 2 * half, channels, kernel_size=1)
        self.norm = nn.BatchNorm3d(channels)

    def _time_padded(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """x with ``frames`` edge frames repeated before and after (time axis only); zeros: x itself."""
        if self.temporal_padding == "zeros":
            return x
        return nn.functional.pad(x, (0, 0, 0, 0, frames, frames), mode="replicate")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        x = torch.cat([self.t1(x), self.t3(self._time_padded(x, 1)), self.t5(self._time_padded(x, 2))], dim=1)
        return nn.functional.silu(self.norm(self.merge(x)))


class Encoder(nn.Module):
    """Four TBs each followed by max-pool (1, 2, 2), then a latent TB: [B,1,T,m,m] -> [B,8F,T,m/16,m/16]."""

    def __init__(self, width: int, temporal_padding: str = "zeros"):
        super().__init__()
        chans = [1, width, 2 * width, 4 * width, 8 * width]
        self.stages = nn.ModuleList(TemporalBlock(a, b, temporal_padding) for a, b in zip(chans[:-1], chans[1:]))
        self.pool = nn.MaxPool3d(kernel_size=(1, 2, 2))
        self.latent = TemporalBlock(chans[-1], chans[-1], temporal_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = self.pool(stage(x))
        return self.latent(x)


class Decoder(nn.Module):
    """Mirrored TBs (8F, 4F, 2F, F) each ending in a transposed conv (1,3,3) stride (1,2,2), then a (1,3,3) conv to one channel."""

    def __init__(self, width: int, temporal_padding: str = "zeros"):
        super().__init__()
        chans = [8 * width, 8 * width, 4 * width, 2 * width, width]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [
                TemporalBlock(a, b, temporal_padding),
                nn.ConvTranspose3d(b, b, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), output_padding=(0, 1, 1)),
            ]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv3d(width, 1, kernel_size=(1, 3, 3), padding=(0, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z))


class UpdateNet(nn.Module):
    """F_A or F_phi of the refinement block: one TB + a (1,3,3) conv, [B,T,H,W] -> [B,T,H,W] (pre-activation)."""

    def __init__(self, width: int, temporal_padding: str = "zeros"):
        super().__init__()
        self.tb = TemporalBlock(1, width, temporal_padding)
        self.head = nn.Conv3d(width, 1, kernel_size=(1, 3, 3), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1).contiguous(memory_format=torch.channels_last_3d)
        return self.head(self.tb(x)).squeeze(1)
