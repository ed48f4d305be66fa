"""Value tests of io/lazy.py (issue 20, mutation testing): lazy HDF5 frames and window blocks read back
value for value, the stack registry, error hints and messages.
"""

from __future__ import annotations

import dask.array as da
import h5py
import numpy as np
import pytest

from napari_cxdi.errors import InputFileError
from napari_cxdi.io import lazy
from napari_cxdi.io.lazy import (
    H5FrameSource, H5Stack, _fmt_key, h5_stack_of, lazy_frames, lazy_h5_dataset, read_error_hint, read_window_block,
    register_h5_stack,
)


def _frames(t=5, h=6, w=7):
    return np.arange(t * h * w, dtype=np.uint16).reshape(t, h, w)


def test_frame_source_reopens_per_read(tmp_path):
    frames = _frames()
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["d"] = frames
    src = H5FrameSource(tmp_path / "a.h5", "d", frames.shape, "uint16")
    assert src.path == str(tmp_path / "a.h5") and src.shape == (5, 6, 7) and src.ndim == 3 and src.dtype == np.uint16
    np.testing.assert_array_equal(src[1:3], frames[1:3])
    np.testing.assert_array_equal(src[4, 2], frames[4, 2])
    with pytest.raises(InputFileError, match=r"cannot read nope\[1:3\]: the dataset or a file it links to is missing") as info:
        H5FrameSource(tmp_path / "a.h5", "nope", frames.shape, "uint16")[1:3, :]
    assert info.value.path == str(tmp_path / "a.h5")
    with pytest.raises(InputFileError, match=r"cannot read d: the dataset or a file it links to is missing"):
        H5FrameSource(tmp_path / "gone.h5", "d", frames.shape, "uint16")[0]


def test_error_hints_and_keys():
    assert read_error_hint(OSError("Can't read data (required filter 'bitshuffle' is not registered)")).startswith(
        "the data are compressed with an HDF5 filter that is not available here; install hdf5plugin")
    assert read_error_hint(OSError("can't open: PLUGIN missing")).startswith("the data are compressed")
    assert read_error_hint(KeyError("x")) == "the dataset or a file it links to is missing"
    assert read_error_hint(OSError("object 'x' doesn't exist")) == "the dataset or a file it links to is missing"
    assert read_error_hint(OSError("Unable to open file")) == "the dataset or a file it links to is missing"
    assert read_error_hint(OSError("bad checksum")) == "a data chunk is corrupt or truncated"
    assert _fmt_key((slice(2, 5), slice(None))) == "[2:5]"
    assert _fmt_key(slice(2, 5)) == "" and _fmt_key(3) == "" and _fmt_key(()) == "" and _fmt_key((3, slice(1, 2))) == ""


def test_lazy_h5_dataset_and_frames(tmp_path):
    frames = _frames()
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["d"] = frames
        f["img"] = frames[0]
    arr = lazy_h5_dataset(tmp_path / "a.h5", "d", frames.shape, frames.dtype)
    assert arr.chunks == ((1,) * 5, (6,), (7,)) and arr.dtype == np.uint16
    assert arr.name == f"h5-{tmp_path / 'a.h5'}-d"
    np.testing.assert_array_equal(arr.compute(), frames)
    one = lazy_h5_dataset(tmp_path / "a.h5", "img", frames.shape[1:], frames.dtype)
    assert one.shape == (1, 6, 7) and one.chunks == ((1,), (6,), (7,))
    np.testing.assert_array_equal(one.compute()[0], frames[0])
    calls = []

    def read(i):
        calls.append(i)
        return frames[i]

    lz = lazy_frames(read, 5, (6, 7), np.uint16, "t")
    assert lz.shape == (5, 6, 7) and lz.dtype == np.uint16 and calls == []
    np.testing.assert_array_equal(lz[3].compute(), frames[3])
    assert calls == [3]
    np.testing.assert_array_equal(lz.compute(), frames)


def test_stack_registry(tmp_path, monkeypatch):
    stack = H5Stack(tmp_path / "a.h5", [("a", np.int64(3), 3), ("b", 2, 3)])
    assert stack.path == str(tmp_path / "a.h5") and stack.n_frames == 5 and stack.parts == [("a", 3, 3), ("b", 2, 3)]
    assert type(stack.parts[0][1]) is int
    assert stack.__dask_tokenize__() == ("H5Stack", str(tmp_path / "a.h5"), (("a", 3, 3), ("b", 2, 3)))
    data = da.zeros((5, 4, 4), chunks=(1, 4, 4))
    assert register_h5_stack(data, stack) is data and h5_stack_of(data) is stack
    assert h5_stack_of(data[1:]) is None and h5_stack_of(data[:, :2]) is None  # a transformed array has a new name
    other = da.zeros((4, 4, 4), chunks=(1, 4, 4))
    register_h5_stack(other, stack)  # wrong number of frames: not registered
    assert h5_stack_of(other) is None and h5_stack_of(np.zeros((5, 4, 4))) is None
    assert register_h5_stack(np.zeros((5, 4, 4)), stack).shape == (5, 4, 4)
    monkeypatch.setattr(lazy, "_STACKS", {})
    monkeypatch.setattr(lazy, "_MAX_STACKS", 2)
    arrays = [da.zeros((5, 4, 4), chunks=(1, 4, 4)) + i for i in range(3)]
    for a in arrays:
        register_h5_stack(a, stack)
    assert len(lazy._STACKS) == 2 and h5_stack_of(arrays[0]) is None and h5_stack_of(arrays[2]) is stack
    two_d = da.zeros((5, 4), chunks=(1, 4))
    register_h5_stack(two_d, stack)
    assert h5_stack_of(two_d) is None


def test_slicing_keeps_or_drops_the_stack():
    stack = H5Stack("x.h5", [("a", 5, 3)])
    data = register_h5_stack(da.ones((5, 4, 4), chunks=(1, 4, 4)), stack)
    assert h5_stack_of(data) is stack
    assert h5_stack_of(data[:, :2]) is None  # transformed: a new array, read the ordinary way


def test_read_window_block(tmp_path):
    a, b = _frames(3), _frames(2) + 1000
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["a"] = a
        f["b"] = b
        f["img"] = a[0] + 7
        f["four"] = a[:, None]
    st = H5Stack(tmp_path / "m.h5", [("a", 3, 3), ("b", 2, 3)])
    np.testing.assert_array_equal(read_window_block(st, 0, 5, 1, 4, 2, 6), np.concatenate([a, b])[:, 1:4, 2:6])
    np.testing.assert_array_equal(read_window_block(st, 2, 4, 0, 6, 0, 7), np.concatenate([a[2:], b[:1]]))
    np.testing.assert_array_equal(read_window_block(st, 3, 5, 0, 2, 0, 2), b[:, :2, :2])
    np.testing.assert_array_equal(read_window_block(st, 1, 2, 0, 2, 0, 2), a[1:2, :2, :2])
    st2 = H5Stack(tmp_path / "m.h5", [("img", 1, 2), ("four", 3, 4)])
    got = read_window_block(st2, 0, 4, 2, 5, 1, 3)
    np.testing.assert_array_equal(got[0], (a[0] + 7)[2:5, 1:3])
    np.testing.assert_array_equal(got[1:], a[:, 2:5, 1:3])
    np.testing.assert_array_equal(read_window_block(st2, 2, 3, 0, 6, 0, 7), a[1:2])
    bad = H5Stack(tmp_path / "m.h5", [("zz", 3, 3)])
    with pytest.raises(InputFileError, match=r"cannot read frames 0:2 of zz: the dataset or a file it links to is missing"):
        read_window_block(bad, 0, 2, 0, 1, 0, 1)
    with pytest.raises(InputFileError, match=r"m2\.h5: cannot read frames 1:2 of a: "):
        read_window_block(H5Stack(tmp_path / "m2.h5", [("a", 3, 3)]), 1, 2, 0, 1, 0, 1)


def test_hint_text_frame_names_and_block_edges(tmp_path):
    assert read_error_hint(OSError("filter missing")) == (
        "the data are compressed with an HDF5 filter that is not available here; install hdf5plugin "
        "(bitshuffle, LZ4, Blosc, Zstd ...) or the writer's plugin")
    frames = _frames()
    lz = lazy_frames(lambda i: frames[i], 5, (6, 7), np.uint16, "tiff-x")
    keys = {k[0] for k in lz.dask.keys() if isinstance(k, tuple)}
    assert {f"tiff-x-{i}" for i in range(5)} <= keys  # every frame's task carries the given name
    # three parts: frames 5..6 live in the third; a window that ends where a part starts takes nothing of it
    a, b, c = _frames(3), _frames(2) + 1000, _frames(2) + 2000
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["a"], f["b"], f["c"], f["img"] = a, b, c, a[0] + 7
    st = H5Stack(tmp_path / "m.h5", [("a", 3, 3), ("b", 2, 3), ("c", 2, 3)])
    np.testing.assert_array_equal(read_window_block(st, 5, 7, 0, 6, 0, 7), c)
    np.testing.assert_array_equal(read_window_block(st, 4, 6, 0, 6, 0, 7), np.concatenate([b[1:], c[:1]]))
    one = H5Stack(tmp_path / "m.h5", [("img", 1, 2), ("a", 3, 3)])
    np.testing.assert_array_equal(read_window_block(one, 1, 2, 0, 6, 0, 7), a[:1])
    np.testing.assert_array_equal(read_window_block(one, 0, 1, 0, 6, 0, 7), (a[0] + 7)[None])
