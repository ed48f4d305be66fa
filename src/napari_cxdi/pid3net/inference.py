"""Inference over a whole movie: every frame reconstructed, leftover frames included.

Windows of T frames start at 0, stride, 2 stride, ... plus a last window that ends on the last
frame; where windows overlap the complex objects are averaged. Frames are streamed from lazy
movies window batch by window batch; the output is a NumPy array or, for very large movies,
a memory-mapped scratch file in a :class:`tempfile.TemporaryDirectory` whose name is removed at once
(the mapping keeps the data; nothing is left in the temporary folder on exit, cancel or kill).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from typing import Any, Generator

import numpy as np
import torch

from ..devices import free_device_memory, is_out_of_memory
from ..errors import ConfigError
from ..progress import drain
from .data import FrameWindows, inference_starts
from .model import PID3Net

MEMMAP_ABOVE_BYTES = 2 * 1024**3


def iter_reconstruct(
    model: PID3Net,
    movie,
    batch_size: int = 8,
    stride: int | None = None,
    out: np.ndarray | None = None,
) -> Generator[dict[str, Any], None, np.ndarray]:
    """Reconstruct every frame; yields ``{"event": "progress", "done", "total", ...}``, returns objects [N, H, W] complex64.

    stride: window step (default T: no overlap except the last window; 1 = average every overlap).
    """
    if stride is not None and (isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1):
        raise ConfigError(f"inference stride must be a whole number >= 1, got {stride!r}")
    windows = model_windows(model, movie)
    device, T = model.probe.device, model.config.frames
    n, h, w = windows.n_frames, *windows.frame_shape
    if out is None:
        if n * h * w * 8 > MEMMAP_ABOVE_BYTES:
            out = _scratch_memmap((n, h, w))
        else:
            out = np.zeros((n, h, w), np.complex64)
    counts = np.zeros(n, np.int32)
    starts = inference_starts(n, T, stride or T)
    model.eval()
    t0 = time.perf_counter()
    i = 0
    with torch.no_grad():
        while i < len(starts):
            chunk = starts[i : i + batch_size]
            try:
                objects = model(windows.batch(chunk)).cpu().numpy()
            except Exception as exc:  # noqa: BLE001
                if device.type == "cuda" and is_out_of_memory(exc) and batch_size > 1:
                    free_device_memory(device)
                    batch_size //= 2
                    yield {"event": "warning", "message": f"GPU out of memory: inference batch halved to {batch_size}"}
                    continue
                raise
            accumulate_windows(out, counts, chunk, objects, T)
            i += len(chunk)
            elapsed = time.perf_counter() - t0
            yield {"event": "progress", "done": i, "total": len(starts), "frames_done": int((counts > 0).sum()),
                   "elapsed_s": elapsed, "frames_per_s": int((counts > 0).sum()) / max(elapsed, 1e-9)}
    assert (counts > 0).all()
    return out


def _scratch_memmap(shape: tuple[int, ...]) -> np.memmap:
    """A writable complex64 memmap whose file is already unlinked (no leftovers, even after a kill)."""
    scratch = tempfile.TemporaryDirectory(prefix="napari-cxdi-inference-")
    try:
        out = np.lib.format.open_memmap(os.path.join(scratch.name, "objects.npy"), mode="w+",
                                        dtype=np.complex64, shape=shape)
    finally:
        with contextlib.suppress(OSError):  # POSIX: the open mapping keeps the data alive
            scratch.cleanup()
    return out


def accumulate_windows(out: np.ndarray, counts: np.ndarray, starts, objects, T: int) -> None:
    """Put window reconstructions ``objects`` [B, T, H, W] starting at ``starts`` into ``out`` [N, H, W]:
    the first window of a frame is copied, later ones enter a running mean (``counts``: windows per frame).

    The order of the calls fixes the floating-point result: the sharded inference calls it in the
    same window order as :func:`iter_reconstruct`.
    """
    for s, obj in zip(starts, objects):
        s = int(s)
        fresh = counts[s : s + T] == 0
        out[s : s + T][fresh] = obj[fresh]
        if (~fresh).any():  # running mean over overlapping windows
            k = counts[s : s + T][~fresh][:, None, None]
            out[s : s + T][~fresh] = (out[s : s + T][~fresh] * k + obj[~fresh]) / (k + 1)
        counts[s : s + T] += 1


def model_windows(model: PID3Net, movie) -> FrameWindows:
    """The movie's T-frame windows for ``model`` on its device; frames of the model's size, at least T of them."""
    T = model.config.frames
    windows = FrameWindows(movie, T, model.probe.device)
    if windows.frame_shape != (model.frame_size, model.frame_size):
        raise ConfigError(f"the model expects {model.frame_size}x{model.frame_size} frames, the movie has {windows.frame_shape}")
    if windows.n_frames < T:
        raise ConfigError(f"the movie has {windows.n_frames} frames, fewer than the model's T = {T}")
    return windows


def reconstruct_movie(model: PID3Net, movie, batch_size: int = 8, stride: int | None = None) -> np.ndarray:
    """Drain :func:`iter_reconstruct` and return the objects [N, H, W] complex64."""
    return drain(iter_reconstruct(model, movie, batch_size, stride))
