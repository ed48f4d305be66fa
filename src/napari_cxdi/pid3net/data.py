"""Windows of T consecutive frames, from in-memory or lazy movies."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataValidationError
from ..io.validate import check_counts


class FrameWindows:
    """Serves windows ``frames[s : s + T]`` of a [N, H, W] movie as float32 tensors [B, T, H, W].

    In-memory movies are validated once and kept on the device; lazy (dask / memmap) movies are
    read and validated window by window, so memory stays bounded. NaN counts mark unmeasured
    (masked) pixels and pass through; every consumer leaves them out.
    """

    def __init__(self, movie, frames_per_window: int, device: torch.device, name: str = "movie"):
        data = movie.data if hasattr(movie, "data") and hasattr(movie, "frames") else movie
        if data.ndim != 3:
            raise DataValidationError(f"{name}: expected a movie [frames, H, W], got shape {tuple(data.shape)}")
        self.data = data
        self.name = name
        self.n_frames = int(data.shape[0])
        self.frame_shape = tuple(int(s) for s in data.shape[1:])
        self.T = frames_per_window
        self.device = device
        self.lazy = isinstance(data, np.memmap) or not isinstance(data, np.ndarray)
        self._resident = None
        if not self.lazy:
            array = np.asarray(data, dtype=np.float32)
            if not array.flags.writeable:  # torch warns on read-only arrays (memory maps, views)
                array = array.copy()
            check_counts(array, name, allow_unmeasured=True)
            self._resident = torch.from_numpy(array).to(device)

    @property
    def n_windows(self) -> int:
        return self.n_frames - self.T + 1

    def frames(self, start: int, stop: int) -> torch.Tensor:
        if self._resident is not None:
            return self._resident[start:stop]
        block = self.data[start:stop]
        block = np.asarray(block.compute() if hasattr(block, "compute") else block, dtype=np.float32)
        if not block.flags.writeable:  # torch warns on read-only arrays (memory maps)
            block = block.copy()
        check_counts(block, self.name, first_frame=start, allow_unmeasured=True)
        return torch.from_numpy(block).to(self.device)

    def batch(self, starts) -> torch.Tensor:
        """Windows starting at ``starts`` -> [B, T, H, W]."""
        return torch.stack([self.frames(int(s), int(s) + self.T) for s in starts])


def inference_starts(n_frames: int, frames_per_window: int, stride: int) -> list[int]:
    """Window starts covering every frame: 0, stride, 2 stride, ... and a last window ending at the last frame."""
    last = n_frames - frames_per_window
    starts = list(range(0, last + 1, max(1, stride)))
    if starts[-1] != last:
        starts.append(last)
    return starts


class ThinnedWindows(FrameWindows):
    """Windows of a movie split by binomial thinning into a training part and a held-out part.

    ``batch`` returns the kept counts (``1 - fraction`` of the photons) and ``heldout_batch`` the
    held-out counts of the same windows. In-memory movies are split once (seeded) and kept on the
    device; lazy movies are split frame by frame with a generator seeded by (seed, frame index), so
    every read of a frame gives the same split.
    """

    def __init__(self, movie, frames_per_window: int, device: torch.device, fraction: float,
                 seed: int | None = 0, name: str = "movie"):
        from ..physics.thinning import binomial_thinning

        super().__init__(movie, frames_per_window, device, name)
        self.fraction = float(fraction)
        self.keep = 1.0 - self.fraction
        self.seed = seed
        self._held = None
        if self._resident is not None:
            kept, held = binomial_thinning(self._resident.cpu().numpy(), fraction, seed)
            self._resident = torch.from_numpy(kept).to(device)
            self._held = torch.from_numpy(held).to(device)

    def _lazy_split(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        from ..physics.thinning import frame_thinning

        block = super().frames(start, stop).cpu().numpy()
        pairs = [frame_thinning(f, self.fraction, self.seed, start + i) for i, f in enumerate(block)]
        kept = torch.from_numpy(np.stack([p[0] for p in pairs])).to(self.device)
        held = torch.from_numpy(np.stack([p[1] for p in pairs])).to(self.device)
        return kept, held

    def frames(self, start: int, stop: int) -> torch.Tensor:
        if self._held is not None:
            return self._resident[start:stop]
        return self._lazy_split(start, stop)[0]

    def heldout_frames(self, start: int, stop: int) -> torch.Tensor:
        if self._held is not None:
            return self._held[start:stop]
        return self._lazy_split(start, stop)[1]

    def heldout_batch(self, starts) -> torch.Tensor:
        return torch.stack([self.heldout_frames(int(s), int(s) + self.T) for s in starts])
