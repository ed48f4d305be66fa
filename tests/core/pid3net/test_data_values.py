"""Frame windows of in-memory and lazy movies, window starts and the thinned (held-out) split (issue 20)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cxdi.errors import DataValidationError
from napari_cxdi.physics.thinning import binomial_thinning, frame_thinning
from napari_cxdi.pid3net.data import FrameWindows, ThinnedWindows, inference_starts

CPU = torch.device("cpu")


def _movie(n=5, size=3):
    return np.arange(n * size * size, dtype=np.float64).reshape(n, size, size)


class _Lazy:
    """A minimal lazy array: slicing gives an object with .compute(), counts the reads."""

    def __init__(self, data):
        self._data = data
        self.shape = data.shape
        self.ndim = data.ndim
        self.reads = []

    def __getitem__(self, key):
        self.reads.append(key)
        outer = self

        class Block:
            def compute(self):
                return outer._data[key]
        return Block()


def test_in_memory_windows():
    m = _movie()
    w = FrameWindows(m, 2, CPU, name="train")
    assert (w.n_frames, w.frame_shape, w.T, w.n_windows, w.lazy, w.name) == (5, (3, 3), 2, 4, False, "train")
    assert w.data is m
    f = w.frames(1, 3)
    assert f.dtype == torch.float32 and torch.equal(f, torch.as_tensor(m[1:3], dtype=torch.float32))
    b = w.batch([0, np.int64(3)])
    assert b.shape == (2, 2, 3, 3) and torch.equal(b[1], torch.as_tensor(m[3:5], dtype=torch.float32))
    assert isinstance(w.frame_shape[0], int) and isinstance(w.n_frames, int)
    # a movie object (with .data and .frames) is unwrapped
    movie = type("M", (), {"data": m, "frames": 5})()
    assert FrameWindows(movie, 1, CPU).n_windows == 5
    ro = m.copy()
    ro.flags.writeable = False
    assert torch.equal(FrameWindows(ro, 1, CPU).frames(0, 5), torch.as_tensor(m, dtype=torch.float32))


def test_checks_and_errors():
    with pytest.raises(DataValidationError, match=r"^clip: expected a movie \[frames, H, W\], got shape \(3, 3\)$"):
        FrameWindows(np.zeros((3, 3)), 1, CPU, name="clip")
    with pytest.raises(DataValidationError, match=r"^movie: expected a movie"):
        FrameWindows(np.zeros((1, 2, 3, 3)), 1, CPU)
    bad = _movie()
    bad[2, 1, 0] = -1
    with pytest.raises(DataValidationError, match=r"^movie: frame 2 contains negative counts \(first at pixel y=1, x=0"):
        FrameWindows(bad, 1, CPU)
    holed = _movie()
    holed[1, 0, 0] = np.nan  # NaN = unmeasured: allowed and kept
    assert torch.isnan(FrameWindows(holed, 1, CPU).frames(1, 2)[0, 0, 0])
    inf = _movie()
    inf[3, 2, 2] = np.inf
    with pytest.raises(DataValidationError, match=r"^movie: frame 3 contains NaN or infinite counts"):
        FrameWindows(inf, 1, CPU)


def test_lazy_windows_are_read_and_checked_block_by_block(tmp_path):
    m = _movie()
    lazy = _Lazy(m)
    w = FrameWindows(lazy, 2, CPU)
    assert w.lazy and w._resident is None and lazy.reads == []  # nothing read up front
    f = w.frames(2, 4)
    assert f.dtype == torch.float32 and torch.equal(f, torch.as_tensor(m[2:4], dtype=torch.float32))
    assert lazy.reads == [slice(2, 4)]
    bad = _movie()
    bad[3, 0, 1] = -5
    w = FrameWindows(_Lazy(bad), 2, CPU, name="scan")
    w.frames(0, 3)
    with pytest.raises(DataValidationError, match=r"^scan: frame 3 contains negative counts \(first at pixel y=0, x=1"):
        w.frames(2, 4)  # the frame number counts from the start of the movie, not of the block
    path = tmp_path / "m.npy"
    np.save(path, m.astype(np.float32))
    mm = np.load(path, mmap_mode="r")
    w = FrameWindows(mm, 2, CPU)
    assert w.lazy and torch.equal(w.batch([1])[0], torch.as_tensor(m[1:3], dtype=torch.float32))


def test_inference_starts():
    assert inference_starts(7, 3, 3) == [0, 3, 4]
    assert inference_starts(6, 3, 3) == [0, 3]
    assert inference_starts(7, 3, 1) == [0, 1, 2, 3, 4]
    assert inference_starts(7, 3, 0) == [0, 1, 2, 3, 4]  # a stride below 1 steps by 1
    assert inference_starts(7, 3, 10) == [0, 4]
    assert inference_starts(3, 3, 2) == [0]
    assert inference_starts(10, 4, 4) == [0, 4, 6]


def test_thinned_windows_in_memory():
    rng = np.random.default_rng(0)
    counts = rng.poisson(20.0, size=(4, 6, 6)).astype(np.float32)
    w = ThinnedWindows(counts, 2, CPU, fraction=0.25, seed=3, name="x")
    assert (w.fraction, w.keep, w.seed, w.T, w.name) == (0.25, 0.75, 3, 2, "x")
    kept, held = binomial_thinning(counts, 0.25, 3)
    assert torch.equal(w.frames(0, 4), torch.as_tensor(kept)) and torch.equal(w.heldout_frames(0, 4), torch.as_tensor(held))
    assert torch.equal(w.frames(0, 4) + w.heldout_frames(0, 4), torch.as_tensor(counts))
    b, h = w.batch([1, 2]), w.heldout_batch([1, 2])
    assert b.shape == h.shape == (2, 2, 6, 6)
    assert torch.equal(h[1], torch.as_tensor(held[2:4])) and torch.equal(b[0], torch.as_tensor(kept[1:3]))
    ratio = float(w.heldout_frames(0, 4).sum() / counts.sum())
    assert ratio == pytest.approx(0.25, abs=0.03)
    other = ThinnedWindows(counts, 2, CPU, fraction=0.25, seed=4)
    assert not torch.equal(other.frames(0, 4), w.frames(0, 4))
    assert ThinnedWindows(counts, 1, CPU, 0.1).seed == 0  # the default seed


def test_thinned_windows_lazy_split_per_frame():
    rng = np.random.default_rng(1)
    counts = rng.poisson(15.0, size=(4, 5, 5)).astype(np.float32)
    lazy = _Lazy(counts)
    w = ThinnedWindows(lazy, 2, CPU, fraction=0.3, seed=7)
    assert w._held is None and lazy.reads == []
    kept = w.frames(1, 3)
    held = w.heldout_frames(1, 3)
    for i, f in enumerate((1, 2)):
        k, h = frame_thinning(counts[f], 0.3, 7, f)  # seeded by (seed, absolute frame index)
        assert torch.equal(kept[i], torch.as_tensor(k)) and torch.equal(held[i], torch.as_tensor(h))
    assert torch.equal(kept + held, torch.as_tensor(counts[1:3]))
    # every read of a frame gives the same split, whichever window it is read in
    assert torch.equal(w.frames(2, 4)[0], kept[1]) and torch.equal(w.heldout_batch([2])[0, 0], held[1])
    assert torch.equal(w.batch([0])[0, 1], kept[0])


def test_read_only_sources_are_copied_without_warnings(tmp_path):
    import warnings

    ro = np.arange(18, dtype=np.float32).reshape(2, 3, 3)
    ro.flags.writeable = False
    path = tmp_path / "m.npy"
    np.save(path, ro)
    mm = np.load(path, mmap_mode="r")  # a read-only memory map: read block by block
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when it wraps a read-only array
        w = FrameWindows(ro, 1, CPU)
        assert torch.equal(w.frames(0, 2), torch.as_tensor(np.array(ro)))
        assert torch.equal(FrameWindows(mm, 1, CPU).frames(0, 2), torch.as_tensor(np.array(ro)))
    assert w.device == CPU and FrameWindows(mm, 1, CPU).device == CPU


def test_lazy_blocks_allow_unmeasured_pixels_and_default_names():
    holed = _movie().astype(np.float32)
    holed[2, 1, 1] = np.nan
    w = FrameWindows(_Lazy(holed), 1, CPU)
    assert torch.isnan(w.frames(2, 3)[0, 1, 1])  # NaN = unmeasured, allowed in lazy blocks too
    bad = _movie()
    bad[0, 0, 0] = -1
    with pytest.raises(DataValidationError, match=r"^movie: frame 0 contains negative counts"):
        ThinnedWindows(bad, 1, CPU, 0.1)
    t = ThinnedWindows(_movie(), 1, CPU, 0.1)
    assert t.name == "movie" and t.device == CPU
