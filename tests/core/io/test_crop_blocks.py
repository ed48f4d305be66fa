"""Crop / bin of HDF5 movies in blocks of frames: one window hyperslab per block, same values as frame by frame."""

from __future__ import annotations

from dataclasses import replace

import h5py
import numpy as np
import pytest

from napari_cxdi.errors import InputFileError
from napari_cxdi.io import lazy, open_movie
from napari_cxdi.io.detector import block_frames, prepare_movie
from napari_cxdi.simulate import simulate_aunp
from napari_cxdi.simulate.detector import DetectorLayout, place_on_detector, write_eiger_master


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eiger")
    sim = simulate_aunp(n_frames=13, size=64, seed=7)
    layout = DetectorLayout()
    frames = place_on_detector(sim.counts, layout)
    # 5 frames per data file: blocks of 8 frames cross the file boundaries at 5 and 10
    return write_eiger_master(folder, frames, layout, 8.0, 5.0, 75.0, frames_per_file=5)


@pytest.mark.parametrize("kw", [dict(size=64), dict(size=32, bin=2), dict(size=96), dict(size=24, bin=3, centre=(10.0, 12.0))])
def test_block_reader_matches_frame_by_frame(master, kw, monkeypatch):
    movie = open_movie(master)
    assert lazy.h5_stack_of(movie.data) is not None and lazy.h5_stack_of(movie.data).n_frames == 13
    calls = []
    real = lazy.read_window_block

    def spy(stack, t0, t1, *bounds):
        calls.append((t0, t1))
        return real(stack, t0, t1, *bounds)

    monkeypatch.setattr("napari_cxdi.io.detector.read_window_block", spy)
    monkeypatch.setattr("napari_cxdi.io.detector.MAX_BLOCK_FRAMES", 8)  # small blocks: cross the file boundaries
    fast = prepare_movie(movie, **kw)
    in_memory = replace(movie, data=np.asarray(movie.data.compute()))  # the frame-by-frame path
    assert lazy.h5_stack_of(in_memory.data) is None
    slow = prepare_movie(in_memory, **kw)
    assert fast.data.chunks[0] == (8, 5)
    a, b = fast.data.compute(), slow.data.compute()
    np.testing.assert_array_equal(a, b)  # NaN (unmeasured) at the same places
    assert np.nansum(a) > 0 and (np.isnan(a).any() or kw.get("bin", 1) > 1)  # gaps: NaN unless binned over
    assert sorted(calls) == [(0, 8), (8, 13)]  # one read per block, not per frame
    np.testing.assert_array_equal(fast.data[9:11].compute(), b[9:11])
    assert fast.metadata["crop"] == slow.metadata["crop"]
    np.testing.assert_array_equal(fast.mask.bad, slow.mask.bad)


def test_block_size_is_bounded():
    assert block_frames(64 * 64, 4) == 32
    assert block_frames(512 * 512, 4) == 4  # a block's window stays within a few MiB
    assert block_frames(4096 * 4096, 4) == 1  # a huge window: one frame per task
    assert 1 <= block_frames(1, 2) <= 32


def test_four_d_and_two_d_datasets(tmp_path):
    rng = np.random.default_rng(0)
    counts = rng.poisson(5.0, size=(11, 1, 40, 40)).astype(np.uint16)
    with h5py.File(tmp_path / "m4.h5", "w") as f:  # CXI frames [T, 1, H, W]
        f.create_dataset("entry_1/data_1/data", data=counts, chunks=(1, 1, 40, 40))
    movie = open_movie(tmp_path / "m4.h5")
    prepared = prepare_movie(movie, size=16, centre=(20.0, 20.0))
    assert lazy.h5_stack_of(movie.data) is not None
    np.testing.assert_array_equal(prepared.data.compute(), counts[:, 0, 12:28, 12:28].astype(np.float32))
    with h5py.File(tmp_path / "m2.h5", "w") as f:
        f.create_dataset("data", data=counts[0, 0])
    one = prepare_movie(open_movie(tmp_path / "m2.h5"), size=16, centre=(20.0, 20.0))
    np.testing.assert_array_equal(one.data.compute(), counts[:1, 0, 12:28, 12:28].astype(np.float32))


def test_a_data_file_that_disappears_is_a_typed_error(tmp_path, monkeypatch):
    monkeypatch.setattr("napari_cxdi.io.detector.MAX_BLOCK_FRAMES", 8)
    sim = simulate_aunp(n_frames=12, size=64, seed=1)
    layout = DetectorLayout()
    path = write_eiger_master(tmp_path, place_on_detector(sim.counts, layout), layout, 8.0, 5.0, 75.0, frames_per_file=8)
    prepared = prepare_movie(open_movie(path), size=64)
    (tmp_path / "series_data_000002.h5").unlink()  # no handle is held: the file can go
    assert np.isfinite(prepared.data[:8].compute()).any()
    with pytest.raises(InputFileError, match="missing"):
        prepared.data[8:].compute()
