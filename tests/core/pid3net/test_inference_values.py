"""Whole-movie inference: window placement, overlap averaging, stride, errors, scratch memmap and the
out-of-memory retry, with a stand-in model whose output is known per window (issue 20)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError
from napari_cxdi.pid3net import inference
from napari_cxdi.pid3net.config import PID3NetConfig


class Known(torch.nn.Module):
    """A 'model' whose object for frame j of a window is counts + 1j * j (the position in the window)."""

    def __init__(self, frames=3, size=4, device="cpu"):
        super().__init__()
        self.config = PID3NetConfig(frames=frames)
        self.frame_size = size
        self.probe = torch.zeros(1, size, size, dtype=torch.complex64, device=device)
        self.calls = []
        self.fail = 0

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        if self.fail:
            self.fail -= 1
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        pos = torch.arange(x.shape[1], dtype=torch.float32).view(1, -1, 1, 1)
        return torch.complex(x, pos.expand_as(x))


def _movie(n=7, size=4):
    return (np.arange(n, dtype=np.float32)[:, None, None] * 10 + np.zeros((1, size, size), np.float32))


def _expected(n, T, starts):
    """Mean of counts + 1j * (f - s) over the windows s that hold frame f."""
    out = np.zeros(n, complex)
    for f in range(n):
        pos = [f - s for s in starts if s <= f < s + T]
        out[f] = 10 * f + 1j * np.mean(pos)
    return out


@pytest.mark.parametrize("stride, starts", [(None, [0, 3, 4]), (1, [0, 1, 2, 3, 4]), (2, [0, 2, 4]), (3, [0, 3, 4])])
def test_windows_are_placed_and_overlaps_averaged(stride, starts):
    model = Known(frames=3)
    events = []
    gen = inference.iter_reconstruct(model, _movie(), batch_size=2, stride=stride)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            out = stop.value
            break
    assert out.dtype == np.complex64 and out.shape == (7, 4, 4)
    np.testing.assert_allclose(out[:, 0, 0], _expected(7, 3, starts), rtol=1e-6)
    assert np.all(out == out[:, :1, :1])
    # batches of 2 windows
    assert [c[0] for c in model.calls] == [2] * (len(starts) // 2) + [1] * (len(starts) % 2)
    assert [e["done"] for e in events] == list(range(2, len(starts) + 1, 2)) + ([len(starts)] if len(starts) % 2 else [])
    assert all(e["event"] == "progress" and e["total"] == len(starts) for e in events)
    covered = [len({f for s in starts[:e["done"]] for f in range(s, s + 3)}) for e in events]
    assert [e["frames_done"] for e in events] == covered
    assert all(e["frames_per_s"] == pytest.approx(e["frames_done"] / e["elapsed_s"], rel=1e-6) for e in events)
    assert not model.training


def test_default_batch_and_given_output():
    model = Known(frames=2)
    out = np.full((20, 4, 4), 99, np.complex64)
    res = inference.reconstruct_movie(model, _movie(20), stride=None)
    assert [c[0] for c in model.calls] == [8, 2]  # default batch 8: 10 windows
    np.testing.assert_allclose(res[:, 0, 0], _expected(20, 2, list(range(0, 19, 2))))
    gen = inference.iter_reconstruct(Known(frames=2), _movie(20), out=out)
    for _ in gen:
        pass
    np.testing.assert_allclose(out[:, 0, 0], _expected(20, 2, list(range(0, 19, 2))))  # written into the given array


def test_accumulate_windows_running_mean():
    out = np.zeros((4, 1, 1), np.complex64)
    counts = np.zeros(4, np.int32)
    inference.accumulate_windows(out, counts, [0], np.array([[[[1.0]], [[2.0]]]]), 2)
    inference.accumulate_windows(out, counts, [np.int64(1)], np.array([[[[4.0]], [[8.0]]]]), 2)
    inference.accumulate_windows(out, counts, [1, 2], np.array([[[[7.0]], [[1.0]]], [[[3.0]], [[5.0]]]]), 2)
    # frame 0: 1; frame 1: (2 + 4 + 7) / 3; frame 2: (8 + 1 + 3) / 3; frame 3: 5
    np.testing.assert_allclose(out[:, 0, 0], [1.0, 13 / 3, 4.0, 5.0], rtol=1e-6)
    assert counts.tolist() == [1, 3, 3, 1]


def test_stride_and_movie_errors():
    model = Known(frames=3)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match=r"^inference stride must be a whole number >= 1, got "):
            next(inference.iter_reconstruct(model, _movie(), stride=bad))
    next(inference.iter_reconstruct(model, _movie(), stride=np.int64(2)))
    with pytest.raises(ConfigError, match=r"^the model expects 4x4 frames, the movie has \(5, 5\)$"):
        next(inference.iter_reconstruct(model, _movie(size=5)))
    with pytest.raises(ConfigError, match=r"^the movie has 2 frames, fewer than the model's T = 3$"):
        next(inference.iter_reconstruct(model, _movie(n=2)))
    w = inference.model_windows(model, _movie(n=3))
    assert (w.n_frames, w.T, w.n_windows) == (3, 3, 1)


def test_large_outputs_go_to_an_unlinked_scratch_memmap(monkeypatch, tmp_path):
    monkeypatch.setattr(inference.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(inference, "MEMMAP_ABOVE_BYTES", 7 * 4 * 4 * 8 - 1)
    out = inference.reconstruct_movie(Known(frames=3), _movie())
    assert isinstance(out, np.memmap) and out.dtype == np.complex64
    np.testing.assert_allclose(out[:, 0, 0], _expected(7, 3, [0, 3, 4]), rtol=1e-6)
    assert os.listdir(tmp_path) == []  # nothing left behind
    monkeypatch.setattr(inference, "MEMMAP_ABOVE_BYTES", 7 * 4 * 4 * 8)  # exactly at the limit: in memory
    assert not isinstance(inference.reconstruct_movie(Known(frames=3), _movie()), np.memmap)
    assert inference.MEMMAP_ABOVE_BYTES == 7 * 4 * 4 * 8
    monkeypatch.undo()
    assert inference.MEMMAP_ABOVE_BYTES == 2 * 1024**3
    scratch = inference._scratch_memmap((2, 3))
    scratch[:] = 1 + 2j
    assert scratch.shape == (2, 3) and scratch.dtype == np.complex64 and np.all(scratch == 1 + 2j)


def test_out_of_memory_on_a_gpu_halves_the_batch(monkeypatch):
    model = Known(frames=2)
    model.probe = type("P", (), {"device": torch.device("cuda")})()  # looks like a GPU model; runs on the CPU
    monkeypatch.setattr(inference, "model_windows",
                        lambda m, movie: inference.FrameWindows(movie, m.config.frames, torch.device("cpu")))
    freed = []
    monkeypatch.setattr(inference, "free_device_memory", lambda device: freed.append(device))
    model.fail = 2
    events = []
    gen = inference.iter_reconstruct(model, _movie(12), batch_size=4)
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            out = stop.value
            break
    warnings = [e for e in events if e["event"] == "warning"]
    assert [w["message"] for w in warnings] == ["GPU out of memory: inference batch halved to 2",
                                                "GPU out of memory: inference batch halved to 1"]
    assert [c[0] for c in model.calls] == [4, 2] + [1] * 6 and len(freed) == 2
    np.testing.assert_allclose(out[:, 0, 0], _expected(12, 2, list(range(0, 11, 2))))
    # at batch 1 there is nothing to halve: the error reaches the caller
    model = Known(frames=2)
    model.probe = type("P", (), {"device": torch.device("cuda")})()
    model.fail = 1
    with pytest.raises(RuntimeError, match="out of memory"):
        list(inference.iter_reconstruct(model, _movie(4), batch_size=1))
    # on the CPU an out-of-memory error is not retried
    model = Known(frames=2)
    model.fail = 1
    with pytest.raises(RuntimeError, match="out of memory"):
        list(inference.iter_reconstruct(model, _movie(4), batch_size=4))
    # other errors are never retried
    model = Known(frames=2)
    model.probe = type("P", (), {"device": torch.device("cuda")})()
    model.forward = lambda x: (_ for _ in ()).throw(ValueError("broken"))
    with pytest.raises(ValueError, match="broken"):
        list(inference.iter_reconstruct(model, _movie(4), batch_size=4))


def test_generator_defaults_stride_passthrough_and_timing():
    model = Known(frames=2)
    events = list(inference.iter_reconstruct(model, _movie(20)))
    assert [c[0] for c in model.calls] == [8, 2]  # iter_reconstruct's own default batch of 8
    assert all(0 <= e["elapsed_s"] < 600 for e in events)
    one = inference.reconstruct_movie(Known(frames=2), _movie(5), stride=1)
    np.testing.assert_allclose(one[:, 0, 0], _expected(5, 2, [0, 1, 2, 3]), rtol=1e-6)


def test_scratch_memmap_lives_in_a_named_temporary_folder(monkeypatch, tmp_path):
    made = []
    real = inference.tempfile.TemporaryDirectory

    def recording(*args, **kwargs):
        made.append(kwargs.get("prefix"))
        return real(*args, dir=str(tmp_path), **kwargs)

    monkeypatch.setattr(inference.tempfile, "TemporaryDirectory", recording)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    out = inference._scratch_memmap((3, 2))
    out[:] = 5
    assert made == ["napari-cxdi-inference-"]
    assert os.listdir(work) == [] and os.listdir(tmp_path) == ["cwd"]  # nothing left anywhere


def test_out_of_memory_frees_the_model_device(monkeypatch):
    model = Known(frames=2)
    model.probe = type("P", (), {"device": torch.device("cuda")})()
    monkeypatch.setattr(inference, "model_windows",
                        lambda m, movie: inference.FrameWindows(movie, m.config.frames, torch.device("cpu")))
    freed = []
    monkeypatch.setattr(inference, "free_device_memory", lambda device: freed.append(device))
    model.fail = 1
    list(inference.iter_reconstruct(model, _movie(6), batch_size=2))
    assert freed == [torch.device("cuda")]
