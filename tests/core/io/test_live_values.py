"""Value tests of io/live.py (issue 20, mutation testing): the followers of a growing acquisition on small
files written in-process (no writer process, no sleeping): which frames count as complete, blocks value for
value and in order, resuming after ``start`` frames, dataset discovery, restarts as typed errors, and
:func:`follow`'s events.
"""

from __future__ import annotations

import os
import threading

import h5py
import numpy as np
import pytest
import tifffile

from napari_cxdi.errors import CXDIError, DataValidationError, InputFileError
from napari_cxdi.io import live
from napari_cxdi.io.live import (
    DEFAULT_SETTLE_S, SERIES_DATA, SERIES_PATHS, FrameBlock, Follower, LiveSourceError, SeriesFollower, SWMRFollower,
    TiffFolderFollower, _natural_key, _series_files, _Stat, follow, glob_escape, open_follower, source_kind,
)


def _frames(n=5, h=4, w=5):
    return (np.arange(n * h * w) + 1).reshape(n, h, w).astype(np.uint16)


def _h5(path, frames, chunks=True, dataset="entry/data/data", write=None, extra=None):
    """An HDF5 file (libver latest, readable under SWMR) with ``frames``; ``write``: only these frames written."""
    with h5py.File(path, "w", libver="latest") as f:
        ch = (1, *frames.shape[1:]) if chunks is True else chunks
        d = f.create_dataset(dataset, shape=frames.shape, maxshape=(None, *frames.shape[1:]), dtype=frames.dtype, chunks=ch)
        for i in range(len(frames)) if write is None else write:
            d[i] = frames[i]
        for name, value in (extra or {}).items():
            f[name] = value
    return path


def _blocks(follower, max_frames):
    out = []
    while (b := follower.poll(max_frames)) is not None:
        out.append(b)
    return out


def test_small_helpers():
    assert DEFAULT_SETTLE_S == 0.3 and SERIES_PATHS == ("entry/data/data", "entry/data/data_000001")
    b = FrameBlock(3, np.zeros((2, 1, 1)), 0.0)
    assert (b.start, b.stop) == (3, 5)
    assert _natural_key("f10_b2.tif") == ["f", 10, "_b", 2, ".tif"]
    assert sorted(["f10.tif", "f9.tif", "f100.tif"], key=_natural_key) == ["f9.tif", "f10.tif", "f100.tif"]
    assert glob_escape("run[1]*?.h5") == "run[[]1[]][*][?].h5" and glob_escape("plain") == "plain"
    assert SERIES_DATA.match("scan_data_000012.h5")["stem"] == "scan" and SERIES_DATA.match("scan_data_000012.h5")["num"] == "000012"
    assert SERIES_DATA.match("scan_data_12.h5") is None and SERIES_DATA.match("scan_data_000012.h5x") is None
    err = LiveSourceError("/x/y.h5", "gone")
    assert isinstance(err, CXDIError) and str(err) == "/x/y.h5: gone" and err.path == "/x/y.h5"
    a = _Stat(1, 2, 3, 0.0)
    assert a.same(_Stat(1, 2, 3, 9.0)) and not a.same(_Stat(0, 2, 3, 0.0)) and not a.same(_Stat(1, 0, 3, 0.0))
    assert not a.same(_Stat(1, 2, 0, 0.0))
    f = Follower()
    assert f.position == 0
    with f as g:
        assert g is f


def test_stat_of_a_file(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"12345")
    st = _Stat.of(p)
    raw = os.stat(p)
    assert (st.size, st.mtime_ns, st.inode) == (5, raw.st_mtime_ns, raw.st_ino) and st.since > 0


# -- SWMR: one growing dataset -----------------------------------------------------------------------

def test_swmr_reads_every_frame_once_in_blocks(tmp_path):
    frames = _frames(5)
    path = _h5(tmp_path / "a.h5", frames, extra={"entry/instrument/detector/count_time": 0.5})
    with SWMRFollower(path, settle_s=1000) as fol:
        assert fol.info == {"metadata": {}, "detector": {}}
        blocks = _blocks(fol, 2)
        assert [(b.start, b.stop) for b in blocks] == [(0, 2), (2, 4), (4, 5)]
        np.testing.assert_array_equal(np.concatenate([b.frames for b in blocks]), frames)
        assert blocks[0].frames.dtype == np.uint16 and fol.position == 5
        assert fol.info["dataset"] == "entry/data/data" and fol.info["metadata"]["exposure_s"] == 0.5
        assert fol.poll() is None
    assert fol._file is None and fol._dset is None
    # resuming after 3 frames: only the rest; default block of 8
    with SWMRFollower(str(path), start=3) as fol:
        (b,) = _blocks(fol, 8)
        assert (b.start, b.stop) == (3, 5)
        np.testing.assert_array_equal(b.frames, frames[3:])


def test_swmr_a_frame_is_complete_once_its_chunk_is_written(tmp_path):
    frames = _frames(4)
    path = _h5(tmp_path / "a.h5", frames, write=[0, 1, 3])  # frame 2 announced (resized) but never written
    with SWMRFollower(path, settle_s=0) as fol:
        blocks = _blocks(fol, 8)
        assert [(b.start, b.stop) for b in blocks] == [(0, 2)]
        np.testing.assert_array_equal(blocks[0].frames, frames[:2])
        assert fol.poll() is None and fol.position == 2


def test_swmr_other_chunkings_wait_for_the_shape_to_settle(tmp_path):
    frames = _frames(5)
    path = _h5(tmp_path / "a.h5", frames, chunks=(2, 4, 5))
    fol = SWMRFollower(path, settle_s=1000)
    (b,) = _blocks(fol, 8)  # the last frame may still be written: not yet
    assert (b.start, b.stop) == (0, 4)
    np.testing.assert_array_equal(b.frames, frames[:4])
    assert fol.poll() is None
    fol.settle_s = 0.0  # the shape has not changed for settle_s: the last frame too
    (b,) = _blocks(fol, 8)
    assert (b.start, b.stop) == (4, 5)
    np.testing.assert_array_equal(b.frames, frames[4:])
    fol.close()
    # contiguous: no chunks at all
    with h5py.File(tmp_path / "c.h5", "w", libver="latest") as f:
        f["entry/data/data"] = frames
    with SWMRFollower(tmp_path / "c.h5", settle_s=1000) as fol:
        assert _blocks(fol, 8)[0].stop == 4


def test_swmr_trusts_a_frame_counter(tmp_path):
    frames = _frames(5)
    path = _h5(tmp_path / "a.h5", frames, extra={"entry/data/frames_written": np.array([3])})
    with SWMRFollower(path, counter="entry/data/frames_written", settle_s=0) as fol:
        (b,) = _blocks(fol, 8)
        assert (b.start, b.stop) == (0, 3)
    path = _h5(tmp_path / "b.h5", frames, extra={"entry/data/frames_written": 9})
    with SWMRFollower(path, counter="entry/data/frames_written", settle_s=0) as fol:
        assert _blocks(fol, 8)[0].stop == 5  # never more than the dataset holds
    with SWMRFollower(path, counter="entry/data/missing", settle_s=0) as fol:
        assert _blocks(fol, 8)[0].stop == 5  # no counter dataset (yet): the chunk rule


def test_swmr_finds_the_frames_dataset(tmp_path):
    frames = _frames(3)
    for name in ("entry_1/data_1/data", "entry_1/instrument_1/detector_1/data", "entry/data/data", "x/y/frames"):
        path = _h5(tmp_path / f"{name.replace('/', '_')}.h5", frames, dataset=name)
        with SWMRFollower(path, settle_s=0) as fol:
            np.testing.assert_array_equal(_blocks(fol, 8)[0].frames, frames)
            assert fol.info["dataset"] == name
    # CXI first when both are there
    path = _h5(tmp_path / "both.h5", frames, dataset="entry/data/data", extra={"entry_1/data_1/data": 2 * frames})
    with SWMRFollower(path, settle_s=0) as fol:
        assert fol.info["dataset"] == "entry_1/data_1/data" if fol.poll() is not None else False
    # two unknown 3-D datasets: cannot tell, keep waiting (None)
    path = _h5(tmp_path / "two.h5", frames, dataset="a", extra={"b": frames})
    fol = SWMRFollower(path, settle_s=0)
    assert fol.poll() is None and fol._file is None
    # the named one
    with SWMRFollower(path, dataset="b", settle_s=0) as fol:
        np.testing.assert_array_equal(_blocks(fol, 8)[0].frames, frames)
    with pytest.raises(InputFileError, match=r"no dataset 'c'; give the frames' dataset with --dataset"):
        SWMRFollower(path, dataset="c").poll()
    path = _h5(tmp_path / "flat.h5", frames, extra={"img": frames[0]})
    with pytest.raises(InputFileError, match=r"img has shape \(4, 5\); a live movie must be \[frames, H, W\]"):
        SWMRFollower(path, dataset="img").poll()
    # not there yet, or not an HDF5 file yet: wait
    assert SWMRFollower(tmp_path / "later.h5").poll() is None
    (tmp_path / "half.h5").write_bytes(b"\x89HDF\r\n")
    assert SWMRFollower(tmp_path / "half.h5").poll() is None


def test_swmr_restarts_are_typed_errors(tmp_path):
    frames = _frames(4)
    path = _h5(tmp_path / "a.h5", frames)
    fol = SWMRFollower(path, settle_s=0)
    assert fol.poll(3).stop == 3
    fol.close()
    shrunk = SWMRFollower(path, start=5, settle_s=0)
    with pytest.raises(LiveSourceError, match=r"a\.h5: entry/data/data shrank to 4 frames after 5 were read: the writer restarted"):
        shrunk.poll()
    shrunk.close()
    fol = SWMRFollower(path, settle_s=0)
    assert fol.poll(2).stop == 2
    fol.close()
    fol._file = None
    fol2 = SWMRFollower(path, settle_s=0)
    assert fol2.poll(1).stop == 1
    os.replace(_h5(tmp_path / "new.h5", frames), path)  # a new acquisition under the same name
    with pytest.raises(LiveSourceError, match=r"the file was replaced or removed while being followed"):
        fol2.poll()
    fol2.close()
    fol3 = SWMRFollower(path, settle_s=0)
    assert fol3.poll(1).stop == 1
    fol3._file.close()
    os.remove(path)
    fol3._file = h5py.File(tmp_path / "new2.h5", "w")  # still 'open': the removal is what it must notice
    with pytest.raises(LiveSourceError, match="replaced or removed"):
        fol3.poll()
    fol3.close()


# -- whole files: Dectris series and TIFF folders -------------------------------------------------------

def _series(folder, frames, per_file, stem="scan"):
    master = folder / f"{stem}_master.h5"
    with h5py.File(master, "w") as f:
        f["entry/instrument/detector/count_time"] = 0.25
    for k, i0 in enumerate(range(0, len(frames), per_file)):
        with h5py.File(folder / f"{stem}_data_{k + 1:06d}.h5", "w") as f:
            f["entry/data/data"] = frames[i0 : i0 + per_file]
    return master


def test_series_files_in_number_order(tmp_path):
    master = _series(tmp_path, _frames(6), 1, stem="s[1]")
    (tmp_path / "s[1]_data_1.h5").write_bytes(b"")  # not a data file name
    (tmp_path / "other_data_000001.h5").write_bytes(b"")
    stem, files = _series_files(master)
    assert stem == "s[1]" and [p.name for p in files] == [f"s[1]_data_{k:06d}.h5" for k in range(1, 7)]
    assert _series_files(tmp_path / "s[1].h5") == (stem, files)  # the stem of a non-master name


def test_series_follower_reads_whole_files_in_order(tmp_path):
    frames = _frames(5)
    master = _series(tmp_path, frames, per_file=2)
    fol = SeriesFollower(master, settle_s=0)
    assert fol.info["metadata"]["exposure_s"] == 0.25
    blocks = _blocks(fol, 8)
    # the last file is read once its size is known stable: seen on one poll, read on the next
    assert [(b.start, b.stop) for b in blocks] == [(0, 2), (2, 4)]
    (b,) = _blocks(fol, 8)
    assert (b.start, b.stop) == (4, 5)
    np.testing.assert_array_equal(np.concatenate([*(x.frames for x in blocks), b.frames]), frames)
    assert fol.poll() is None and fol.position == 5
    # blocks smaller than a file, resuming in the middle of a file, whole files skipped
    fol = SeriesFollower(master, start=3, settle_s=0)
    blocks = _blocks(fol, 1) + _blocks(fol, 1)
    assert [(b.start, b.stop) for b in blocks] == [(3, 4), (4, 5)]
    np.testing.assert_array_equal(np.concatenate([b.frames for b in blocks]), frames[3:])
    fol = SeriesFollower(master, start=4, settle_s=0)
    blocks = _blocks(fol, 8) + _blocks(fol, 8)
    assert [(b.start, b.stop) for b in blocks] == [(4, 5)]
    # a file still settling is not read
    fol = SeriesFollower(master, start=4, settle_s=1000)
    assert _blocks(fol, 8) == [] and _blocks(fol, 8) == [] and fol.position == 4


def test_series_follower_waits_for_incomplete_files_and_single_frames(tmp_path):
    frames = _frames(3)
    master = _series(tmp_path, frames[:1], per_file=1)
    with h5py.File(tmp_path / "scan_data_000001.h5", "w") as f:
        f["entry/data/data"] = frames[0]  # one 2-D frame per file
    with h5py.File(tmp_path / "scan_data_000002.h5", "w") as f:
        f["entry/data/other"] = frames  # structure not written yet
    fol = SeriesFollower(master, settle_s=0)
    (b,) = _blocks(fol, 8)
    assert (b.start, b.stop) == (0, 1) and b.frames.shape == (1, 4, 5)
    np.testing.assert_array_equal(b.frames[0], frames[0])
    assert _blocks(fol, 8) == [] and _blocks(fol, 8) == []
    (tmp_path / "scan_data_000003.h5").write_bytes(b"\x89HDF\r\n\x1a\n")  # truncated: wait
    assert _blocks(fol, 8) == [] and fol.position == 1
    with h5py.File(tmp_path / "scan_data_000002.h5", "w") as f:
        f["entry/data/data_000001"] = frames[1:]  # now complete (the other known dataset name)
    blocks = _blocks(fol, 8) + _blocks(fol, 8)
    assert [(b.start, b.stop) for b in blocks] == [(1, 3)]
    np.testing.assert_array_equal(blocks[0].frames, frames[1:])
    # a master that does not exist (yet): no metadata
    assert SeriesFollower(tmp_path / "none_master.h5").info == {"metadata": {}, "detector": {}}


def test_series_follower_notices_a_rewritten_file(tmp_path):
    frames = _frames(4)
    master = _series(tmp_path, frames, per_file=2)
    fol = SeriesFollower(master, settle_s=0)
    assert fol.poll(8).stop == 2
    os.rename(tmp_path / "scan_data_000001.h5", tmp_path / "archived.h5")  # moved away after reading: fine
    assert _blocks(fol, 8) + _blocks(fol, 8) != [] and fol.position == 4
    fol = SeriesFollower(master, settle_s=0)
    fol.poll(8)
    with h5py.File(tmp_path / "scan_data_000002.h5", "w") as f:
        f["entry/data/data"] = frames[:1]
    fol.poll(8)
    fol.poll(8)
    with h5py.File(tmp_path / "scan_data_000002.h5", "w") as f:
        f["entry/data/data"] = 2 * frames[:1]
    os.utime(tmp_path / "scan_data_000002.h5", ns=(1, 1))
    with pytest.raises(LiveSourceError, match=r"scan_data_000002\.h5: a file that was already read changed"):
        fol.poll(8)


def test_tiff_folder_follower(tmp_path):
    frames = _frames(6)
    tifffile.imwrite(tmp_path / "f2.tif", frames[1])
    tifffile.imwrite(tmp_path / "f10.TIFF", frames[2:4])  # several frames in one file
    tifffile.imwrite(tmp_path / "f1.tif", frames[0])
    tifffile.imwrite(tmp_path / ".f0.tif", frames[5])  # hidden: a writer's temporary
    (tmp_path / "notes.txt").write_text("x")
    tifffile.imwrite(tmp_path / "f11.tif", frames[4:5])
    (tmp_path / "f20.tif").mkdir()  # a folder with a TIFF name is not a frame file
    fol = TiffFolderFollower(tmp_path, settle_s=0)
    assert [p.name for p in fol._listing()] == ["f1.tif", "f2.tif", "f10.TIFF", "f11.tif"]
    blocks = _blocks(fol, 8) + _blocks(fol, 8)
    assert [(b.start, b.stop) for b in blocks] == [(0, 1), (1, 2), (2, 4), (4, 5)]
    np.testing.assert_array_equal(np.concatenate([b.frames for b in blocks]), frames[:5])
    assert TiffFolderFollower(tmp_path, pattern="f1*.tif").pattern == "f1*.tif"
    assert [p.name for p in TiffFolderFollower(tmp_path, pattern="f1*")._listing()] == ["f1.tif", "f10.TIFF", "f11.tif"]
    # a truncated TIFF is not complete yet; a colour TIFF is refused
    (tmp_path / "f12.tif").write_bytes(b"II*\x00\x08\x00\x00\x00")
    assert fol.poll() is None and fol.poll() is None and fol.position == 5
    os.remove(tmp_path / "f12.tif")
    tifffile.imwrite(tmp_path / "f13.tif", np.zeros((4, 3, 3), np.uint8), photometric="rgb")
    fol.poll()
    with pytest.raises(DataValidationError, match=r"f13\.tif: the TIFF holds 3 colour samples \(an RGB/RGBA image\?\) "
                                                  r"per pixel"):
        fol.poll()
    # one-sample planes [n, 1, H, W] are frames
    sub = tmp_path / "planes"
    sub.mkdir()
    tifffile.imwrite(sub / "a.tif", frames[:2, None], photometric="minisblack", metadata=None)
    fol = TiffFolderFollower(sub, settle_s=0)
    blocks = _blocks(fol, 8) + _blocks(fol, 8)
    assert sum(len(b.frames) for b in blocks) == 2 and blocks[0].frames.ndim == 3
    # upper-case names (cameras write IMG_0001.TIF) are found by the default pattern; a folder moved away: nothing
    upper = tmp_path / "upper"
    upper.mkdir()
    tifffile.imwrite(upper / "IMG_0002.TIF", frames[1])
    tifffile.imwrite(upper / "IMG_0001.TIF", frames[0])
    fol = TiffFolderFollower(upper, settle_s=0)
    blocks = _blocks(fol, 8) + _blocks(fol, 8)
    np.testing.assert_array_equal(np.concatenate([b.frames for b in blocks]), frames[:2])
    os.rename(upper, tmp_path / "moved")
    assert fol._listing() == [] and fol.poll() is None


# -- choosing and driving a follower ---------------------------------------------------------------------

def test_source_kind_and_open_follower(tmp_path):
    frames = _frames(2)
    master = _series(tmp_path, frames, per_file=2)
    assert source_kind(tmp_path) == "tiff-folder" and source_kind(master) == "series"
    assert source_kind(tmp_path / "scan.h5") == "series"  # data files beside it
    assert source_kind(tmp_path / "run_master.h5") == "series"
    assert source_kind(tmp_path / "movie.h5") == "swmr"
    assert type(open_follower(tmp_path)).__name__ == "TiffFolderFollower"
    fol = open_follower(master, start=1, settle_s=0.5)
    assert type(fol) is SeriesFollower and (fol._skip, fol.settle_s) == (1, 0.5)
    fol = open_follower(tmp_path / "movie.h5", start=2, dataset="d", settle_s=0.1, counter="c")
    assert type(fol) is SWMRFollower and (fol.position, fol._dataset, fol.settle_s, fol.counter) == (2, "d", 0.1, "c")
    fol = open_follower(tmp_path)
    assert fol.settle_s == DEFAULT_SETTLE_S and fol.position == 0 and fol._skip == 0
    fol = open_follower(tmp_path, start=2, settle_s=0.5)
    assert type(fol) is TiffFolderFollower and (fol._skip, fol.settle_s) == (2, 0.5)
    home = open_follower("~")
    assert home.path == type(home.path)(os.path.expanduser("~"))
    with pytest.raises(InputFileError) as err:
        open_follower(tmp_path / "no" / "movie.h5")
    assert str(err.value) == f"{tmp_path / 'no' / 'movie.h5'}: neither the file nor its folder exists; check the path of the acquisition"
    assert err.value.path == str(tmp_path / "no" / "movie.h5")


class _Scripted(Follower):
    def __init__(self, plan):
        self.plan = list(plan)
        self.asked = []

    def poll(self, max_frames=8):
        self.asked.append(max_frames)
        n = self.plan.pop(0) if self.plan else 0
        if not n:
            return None
        block = FrameBlock(self.position, np.zeros((n, 1, 1)), 0.0)
        self.position += n
        return block


def test_follow_events_and_idle_timeout():
    fol = _Scripted([2, 0, 3])
    gen = follow(fol, block_frames=4, idle_timeout_s=0.2, poll_s=0.0)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    kinds = [e["event"] for e in events]
    assert kinds[:3] == ["frames", "waiting", "frames"] and set(kinds[3:]) == {"waiting"}
    assert result == 5 and set(fol.asked) == {4}
    assert [e["block"].start for e in events if e["event"] == "frames"] == [0, 2]
    waits = [e for e in events if e["event"] == "waiting"]
    assert waits[0]["position"] == 2 and all(e["position"] == 5 for e in waits[1:])
    assert all(0 <= e["idle_s"] < 0.2 for e in waits)
    assert [e["idle_s"] for e in waits[1:]] == sorted(e["idle_s"] for e in waits[1:])
    # timeout 0: return at the first empty poll
    fol = _Scripted([1])
    assert [e["event"] for e in follow(fol, idle_timeout_s=0.0, poll_s=0.0)] == ["frames"] and fol.asked == [8, 8]
    # no timeout: until cancelled
    cancel = threading.Event()
    fol = _Scripted([1])
    events = []
    for e in follow(fol, idle_timeout_s=None, poll_s=0.0, cancel=cancel):
        events.append(e)
        if len(events) == 4:
            cancel.set()
    assert [e["event"] for e in events] == ["frames", "waiting", "waiting", "waiting"]
    cancel = threading.Event()
    cancel.set()
    assert list(follow(_Scripted([1]), cancel=cancel)) == []


def test_a_file_that_changes_while_read_is_read_again_and_unreadable_masters(tmp_path):
    frames = _frames(2)
    tifffile.imwrite(tmp_path / "a.tif", frames[0])
    fol = TiffFolderFollower(tmp_path, settle_s=0)
    real = fol._read
    reads = []

    def read_then_grow(path):
        out = real(path)
        reads.append(path.name)
        if len(reads) == 1:  # the writer was still appending while we read
            with open(path, "ab") as fh:
                fh.write(b"\0" * 16)
        return out

    fol._read = read_then_grow
    assert fol.poll() is None and fol.poll() is None  # seen; read but changed meanwhile: not delivered
    assert reads == ["a.tif"] and fol.position == 0
    b = fol.poll()  # the size seen after the read is the new reference: stable since then, read again
    assert reads == ["a.tif", "a.tif"] and (b.start, b.stop) == (0, 1)
    np.testing.assert_array_equal(b.frames[0], frames[0])
    (tmp_path / "x_master.h5").write_bytes(b"not hdf5")
    assert SeriesFollower(tmp_path / "x_master.h5").info == {"metadata": {}, "detector": {}}


def test_a_file_gone_between_listing_and_reading_is_waited_for(tmp_path):
    fol = TiffFolderFollower(tmp_path, settle_s=0)
    fol._listing = lambda: [tmp_path / "ghost.tif"]  # listed, then removed by the writer before it is looked at
    assert fol.poll() is None and fol.position == 0 and fol._seen == {}


WRITER = """
import sys, time, h5py
f = h5py.File(sys.argv[1], "w", libver="latest")
f["entry/instrument/detector/count_time"] = 0.5
d = f.create_dataset("entry/data/data", shape=(0, 4, 5), maxshape=(None, 4, 5), dtype="u2", chunks=(1, 4, 5))
f.swmr_mode = True
d.resize(2, axis=0)
d[0] = 7
d[1] = 9
d.flush()
print("ready", flush=True)
sys.stdin.readline()
"""


def test_a_file_open_for_writing_is_read_under_swmr(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "live.h5"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(OSError):  # a plain reader is locked out by the writer
            h5py.File(path, "r").close()
        assert live._detector_info(path)["metadata"] == {"exposure_s": 0.5}
        with SWMRFollower(path, settle_s=0) as fol:
            blocks = _blocks(fol, 8)
            assert fol.info["metadata"] == {"exposure_s": 0.5}
        assert [(b.start, b.stop) for b in blocks] == [(0, 2)]
        np.testing.assert_array_equal(blocks[0].frames[:, 0, 0], [7, 9])
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=30)


def _cxi_master(path):
    with h5py.File(path, "w") as f:
        f["entry_1/instrument_1/detector_1/count_time"] = 0.25
        f["entry_1/instrument_1/detector_1/distance"] = 2.0
        f["entry_1/instrument_1/detector_1/mask"] = np.array([[0, 1 << 3], [0, 0]], np.uint32)
    return path


def test_detector_info_of_cxi_and_nexus_files_with_and_without_swmr(tmp_path, monkeypatch):
    cxi = _cxi_master(tmp_path / "c.h5")
    with h5py.File(tmp_path / "v.h5", "w") as f:  # CXI by its version number only
        f["cxi_version"] = 160
        f["entry_1/instrument_1/detector_1/distance"] = 3.0
    with h5py.File(tmp_path / "cv.h5", "w") as f:  # a CXI version number and NeXus-like paths: read as CXI
        f["cxi_version"] = 160
        f["entry/instrument/detector/count_time"] = 0.5
    with h5py.File(tmp_path / "n.h5", "w") as f:
        f["entry/instrument/detector/count_time"] = 0.5
        f["entry/instrument/detector/saturation_value"] = 100
    real = h5py.File
    for swmr_refused in (False, True):
        if swmr_refused:  # a file HDF5 will not open in SWMR mode: the plain reading gives the same
            def no_swmr(*args, **kwargs):
                if kwargs.get("swmr"):
                    raise OSError("not a SWMR file")
                return real(*args, **kwargs)

            monkeypatch.setattr(live.h5py, "File", no_swmr)
        info = live._detector_info(cxi)
        assert info["metadata"] == {"exposure_s": 0.25, "distance_m": 2.0}
        np.testing.assert_array_equal(info["detector"]["bad"], [[False, True], [False, False]])
        assert info["detector"]["source"] == "c.h5:/entry_1/instrument_1/detector_1/mask"
        assert live._detector_info(tmp_path / "v.h5")["metadata"] == {"distance_m": 3.0}
        assert live._detector_info(tmp_path / "cv.h5")["metadata"] == {}
        assert live._detector_info(tmp_path / "n.h5") == {"metadata": {"exposure_s": 0.5}, "detector": {"saturation": 100.0}}


def test_swmr_discovery_prefers_the_known_paths_and_more_values(tmp_path):
    frames = _frames(3)
    for name in ("entry_1/instrument_1/detector_1/data", "entry/data/data"):
        path = _h5(tmp_path / f"{name.replace('/', '_')}.h5", frames, dataset=name, extra={"other/stack": 2 * frames})
        with SWMRFollower(path, settle_s=0) as fol:
            np.testing.assert_array_equal(_blocks(fol, 8)[0].frames, frames)
            assert fol.info["dataset"] == name
    path = _h5(tmp_path / "two.h5", frames, dataset="a", extra={"b": frames, "img": frames[0]})
    with pytest.raises(InputFileError) as err:
        SWMRFollower(path, dataset="c").poll()
    assert err.value.path == str(path)
    with pytest.raises(InputFileError) as err:
        SWMRFollower(path, dataset="img").poll()
    assert err.value.path == str(path)
    # the default block is 8 frames; each block says when it was seen
    import time

    path = _h5(tmp_path / "ten.h5", _frames(10))
    with SWMRFollower(path, settle_s=0) as fol:
        t0 = time.time()
        b = fol.poll()
        assert (b.start, b.stop) == (0, 8) and t0 <= b.seen_s <= time.time()
        f = fol._file
    assert not f.id.valid  # closed
    # replaced: the exact message, naming the file
    path = _h5(tmp_path / "r.h5", frames)
    fol = SWMRFollower(path, settle_s=0)
    fol.poll(1)
    os.replace(_h5(tmp_path / "r2.h5", frames), path)
    with pytest.raises(LiveSourceError) as err:
        fol.poll()
    assert str(err.value) == (f"{path}: the file was replaced or removed while being followed (a new acquisition?); "
                              "start a new output for it") and err.value.path == str(path)
    fol.close()


def test_swmr_settling_counts_from_the_last_change(tmp_path):
    import time

    path = _h5(tmp_path / "a.h5", _frames(1), chunks=(2, 4, 5))
    fol = SWMRFollower(path, settle_s=0.2)
    time.sleep(0.25)  # the wait before the first look does not count
    assert fol.poll() is None
    time.sleep(0.25)
    b = fol.poll()  # unchanged for settle_s since it was first seen: complete
    assert (b.start, b.stop) == (0, 1)
    fol.close()
    path = _h5(tmp_path / "b.h5", _frames(3), chunks=(2, 4, 5))
    fol = SWMRFollower(path, settle_s=0.05)
    assert fol.poll().stop == 2 and fol.poll() is None
    time.sleep(0.1)
    assert fol.poll().stop == 3  # polls in between do not restart the wait
    fol.close()


def test_file_queue_remainders_defaults_and_rewrites(tmp_path):
    import time

    frames = _frames(12)
    tifffile.imwrite(tmp_path / "a.tif", frames[:3], photometric="minisblack")
    tifffile.imwrite(tmp_path / "b.tif", frames[3:])
    fol = TiffFolderFollower(tmp_path, settle_s=0)
    t0 = time.time()
    b1, b2 = fol.poll(2), fol.poll(2)
    assert [(b1.start, b1.stop), (b2.start, b2.stop)] == [(0, 2), (2, 3)]  # the rest of a file first
    np.testing.assert_array_equal(b2.frames, frames[2:3])
    assert t0 <= b1.seen_s <= time.time()
    fol.poll()
    b = fol.poll()  # default block: 8 of the 9 frames of the file
    assert (b.start, b.stop) == (3, 11)
    # a consumed file moved away does not hide a later one rewritten: same size, same time, new inode
    series = tmp_path / "s"
    series.mkdir()
    master = _series(series, _frames(4), per_file=2)
    fol = SeriesFollower(master, settle_s=0)
    assert [x.stop for x in _blocks(fol, 8) + _blocks(fol, 8)] == [2, 4]
    os.rename(series / "scan_data_000001.h5", tmp_path / "archived.h5")
    second = series / "scan_data_000002.h5"
    st = os.stat(second)
    copy = series / "copy.tmp"
    copy.write_bytes(second.read_bytes())
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(copy, second)
    with pytest.raises(LiveSourceError) as err:
        fol.poll()
    assert str(err.value) == (f"{second}: a file that was already read changed (the writer restarted or rewrote it); "
                              "start a new output for the new acquisition")


def test_follow_defaults_and_an_empty_first_poll():
    import inspect

    params = inspect.signature(follow).parameters
    assert (params["block_frames"].default, params["idle_timeout_s"].default, params["poll_s"].default) == (8, 30.0, 0.05)
    events = list(follow(_Scripted([0, 1]), idle_timeout_s=0.3))
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["waiting", "frames"] and 3 <= kinds.count("waiting") <= 9  # a poll every 0.05 s
    assert follow_position_after(_Scripted([0, 0, 2])) == 2


def follow_position_after(fol):
    gen = follow(fol, idle_timeout_s=0.1, poll_s=0.0)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def test_one_row_frames_are_frames(tmp_path):
    frames = _frames(2, h=1, w=6)
    tifffile.imwrite(tmp_path / "a.tif", frames, photometric="minisblack")
    fol = TiffFolderFollower(tmp_path, settle_s=0)
    blocks = _blocks(fol, 8) + _blocks(fol, 8)
    np.testing.assert_array_equal(np.concatenate([b.frames for b in blocks]), frames)


def test_follow_gives_up_after_30_idle_seconds_by_default(monkeypatch):
    from types import SimpleNamespace

    clock = iter(np.arange(0.0, 100.0, 0.5))
    monkeypatch.setattr(live, "time", SimpleNamespace(monotonic=lambda: float(next(clock)), sleep=lambda s: None))
    waits = [e["idle_s"] for e in follow(_Scripted([]))]
    assert waits[0] == 0.5 and waits[-1] == 29.5
