"""Following an acquisition that is still being written (no Qt): only complete frames, each once.

Three kinds of growing source, all behind one interface (:func:`open_follower`, :meth:`Follower.poll`):

* :class:`SWMRFollower` - one HDF5 dataset ``[N, H, W]`` growing under SWMR (h5py ``swmr_mode``). The
  reader opens the file with ``swmr=True`` and calls ``refresh()`` before every look at the shape. A frame
  counts as complete when, with one frame per chunk, its chunk has been written (``get_chunk_info_by_coord``:
  a writer killed between ``resize`` and the write leaves the chunk unallocated and the frame is never
  used); with other chunkings, when a later frame exists or the shape has not changed for ``settle_s``.
  A writer that keeps a frame counter dataset (``counter=`` path, e.g. ``/entry/data/frames_written``)
  is trusted instead.
* :class:`SeriesFollower` - a Dectris-style series: ``<stem>_master.h5`` beside data files
  ``<stem>_data_000001.h5, _000002 ...``. A data file is read once it is complete: the next data file
  exists, or its size and modification time have not changed for ``settle_s`` and it opens cleanly
  (HDF5 file locking refuses a file a writer still has open).
* :class:`TiffFolderFollower` - a folder filling up with TIFF files (one or several frames each), taken in
  natural name order; a file is read once its size has been stable for ``settle_s`` and tifffile parses
  every page of it.

``poll(max_frames)`` returns the next block of at most ``max_frames`` complete frames (a :class:`FrameBlock`)
or None; the follower's ``position`` counts the frames delivered, so nothing is read twice and memory is
bounded by one block. :func:`follow` turns a follower into a generator with an idle timeout.

A writer that restarts - the file replaced (new inode), truncated below what was read, or a consumed
data file / TIFF rewritten - raises :class:`LiveSourceError` (a :class:`~napari_cxdi.errors.CXDIError`)
naming the file; nothing already delivered is silently re-read.
"""

from __future__ import annotations

import fnmatch
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generator

import h5py
import numpy as np

from ..errors import CXDIError, InputFileError

DEFAULT_SETTLE_S = 0.3
SERIES_DATA = re.compile(r"^(?P<stem>.+)_data_(?P<num>\d{6})\.h5$")
SERIES_PATHS = ("entry/data/data", "entry/data/data_000001")


class LiveSourceError(CXDIError):
    """The acquisition being followed changed under the reader (restarted, replaced or truncated)."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        super().__init__(f"{path}: {problem}")


@dataclass
class FrameBlock:
    """``frames`` [k, H, W] (native dtype) are source frames ``start .. start + k - 1``; ``seen_s`` is the
    ``time.time()`` at which the follower found them complete (for latency figures)."""

    start: int
    frames: np.ndarray
    seen_s: float

    @property
    def stop(self) -> int:
        return self.start + len(self.frames)


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


@dataclass
class _Stat:
    size: int
    mtime_ns: int
    inode: int
    since: float

    @classmethod
    def of(cls, path: Path) -> "_Stat":
        st = os.stat(path)
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, time.monotonic())

    def same(self, other: "_Stat") -> bool:
        return (self.size, self.mtime_ns, self.inode) == (other.size, other.mtime_ns, other.inode)


class Follower:
    """Common interface: ``position`` (frames delivered), ``poll(max_frames)``, ``info``, ``close()``."""

    path: Path
    position: int = 0
    info: dict[str, Any]

    def poll(self, max_frames: int = 8) -> FrameBlock | None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _detector_info(path: Path) -> dict[str, Any]:
    """Metadata, pixel mask and beam centre a (master) file records, if it can be read now."""
    from .hdf5 import _read_metadata
    from .mask import read_hdf5_detector

    try:
        with h5py.File(path, "r", libver="latest", swmr=True) as f:
            kind = "cxi" if ("entry_1" in f or "cxi_version" in f) else "nexus"
            return {"metadata": _read_metadata(f, kind), "detector": read_hdf5_detector(f, kind)}
    except (OSError, KeyError, ValueError, RuntimeError):
        try:
            with h5py.File(path, "r") as f:
                kind = "cxi" if ("entry_1" in f or "cxi_version" in f) else "nexus"
                return {"metadata": _read_metadata(f, kind), "detector": read_hdf5_detector(f, kind)}
        except (OSError, KeyError, ValueError, RuntimeError):
            return {"metadata": {}, "detector": {}}


class SWMRFollower(Follower):
    """One growing HDF5 dataset [N, H, W] read under SWMR (see the module docstring)."""

    def __init__(self, path: str | Path, dataset: str | None = None, start: int = 0, settle_s: float = DEFAULT_SETTLE_S,
                 counter: str | None = None):
        self.path = Path(path)
        self.position = int(start)
        self.settle_s = settle_s
        self.counter = counter
        self._file = None
        self._dset = None
        self._dataset = dataset
        self._inode = None
        self._last_n = -1
        self._last_change = time.monotonic()
        self.info = {"metadata": {}, "detector": {}}

    def _open(self) -> bool:
        if self._file is not None:
            return True
        if not self.path.exists():
            return False
        try:
            f = h5py.File(self.path, "r", libver="latest", swmr=True)
        except OSError:
            return False  # not created completely yet (or not in SWMR mode yet): try again later
        name = self._dataset
        if name is None:
            name = next((p for p in ("entry_1/data_1/data", "entry_1/instrument_1/detector_1/data", "entry/data/data")
                         if isinstance(f.get(p), h5py.Dataset)), None)
            if name is None:
                found = []
                f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.ndim == 3 else None)
                name = found[0] if len(found) == 1 else None
        if name is None or not isinstance(f.get(name), h5py.Dataset):
            f.close()
            if self._dataset is not None:
                raise InputFileError(self.path, f"no dataset {self._dataset!r}; give the frames' dataset with --dataset")
            return False
        dset = f[name]
        if dset.ndim != 3:
            shape = dset.shape  # read before closing: a closed file's dataset has no shape
            f.close()
            raise InputFileError(self.path, f"{name} has shape {shape}; a live movie must be [frames, H, W]")
        self._file, self._dset, self._dataset = f, dset, name
        self._inode = os.stat(self.path).st_ino
        self.info = _detector_info(self.path)
        self.info["dataset"] = name
        return True

    def _complete_count(self) -> int:
        dset = self._dset
        dset.refresh()
        n = int(dset.shape[0])
        if n < self.position:
            raise LiveSourceError(self.path, f"{self._dataset} shrank to {n} frames after {self.position} were read: "
                                             "the writer restarted; start a new output (or resume against the old file)")
        now = time.monotonic()
        if n != self._last_n:
            self._last_n, self._last_change = n, now
        if self.counter is not None:
            c = self._file.get(self.counter)
            if isinstance(c, h5py.Dataset):
                c.refresh()
                return min(n, int(np.asarray(c[()]).ravel()[0]))
        chunks = dset.chunks
        if chunks is not None and chunks[0] == 1:
            k = self.position
            while k < n:
                try:
                    info = dset.id.get_chunk_info_by_coord((k, 0, 0))
                except (RuntimeError, ValueError, KeyError):
                    info = None
                if info is None or info.byte_offset is None:
                    break
                k += 1
            return k
        if now - self._last_change >= self.settle_s:
            return n
        return max(n - 1, self.position)

    def poll(self, max_frames: int = 8) -> FrameBlock | None:
        if not self._open():
            return None
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            inode = None
        if inode != self._inode:
            raise LiveSourceError(self.path, "the file was replaced or removed while being followed (a new acquisition?); "
                                             "start a new output for it")
        n = self._complete_count()
        if n <= self.position:
            return None
        stop = min(n, self.position + max_frames)
        frames = np.asarray(self._dset[self.position:stop])
        block = FrameBlock(self.position, frames, time.time())
        self.position = stop
        return block

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._dset = None


def _series_files(master: Path) -> tuple[str, list[Path]]:
    stem = master.name[: -len("_master.h5")] if master.name.endswith("_master.h5") else master.stem
    files = [p for p in master.parent.glob(f"{glob_escape(stem)}_data_*.h5") if SERIES_DATA.match(p.name)]
    return stem, sorted(files, key=lambda p: int(SERIES_DATA.match(p.name)["num"]))


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)


class _FileQueue(Follower):
    """Shared logic of followers whose frames come in whole files: settle, read once, detect rewrites."""

    def __init__(self, path: Path, start: int, settle_s: float):
        self.path = path
        self.position = 0
        self._skip = int(start)
        self.settle_s = settle_s
        self._seen: dict[Path, _Stat] = {}
        self._done: dict[Path, _Stat] = {}
        self._pending: list[np.ndarray] = []  # frames of the current file not yet delivered
        self._pending_start = 0
        self.info: dict[str, Any] = {"metadata": {}, "detector": {}}

    def _listing(self) -> list[Path]:  # pragma: no cover - interface
        raise NotImplementedError

    def _read(self, path: Path) -> np.ndarray | None:  # pragma: no cover - interface
        raise NotImplementedError

    def _check_consumed(self) -> None:
        for p, st in self._done.items():
            try:
                now = _Stat.of(p)
            except FileNotFoundError:
                continue  # a consumed file moved away (archived): fine, it was read
            if now.inode != st.inode or now.size != st.size or now.mtime_ns != st.mtime_ns:
                raise LiveSourceError(p, "a file that was already read changed (the writer restarted or rewrote it); "
                                         "start a new output for the new acquisition")

    def _next_file(self) -> np.ndarray | None:
        files = self._listing()
        todo = [p for p in files if p not in self._done]
        if not todo:
            return None
        p = todo[0]
        later = len(todo) > 1
        try:
            st = _Stat.of(p)
        except FileNotFoundError:
            return None
        old = self._seen.get(p)
        if old is None or not old.same(st):
            self._seen[p] = st
            if not later:
                return None
            old = st
        if not later and time.monotonic() - old.since < self.settle_s:
            return None
        frames = self._read(p)
        if frames is None:
            return None
        after = _Stat.of(p)
        if not after.same(st):  # still being written while we read it
            self._seen[p] = after
            return None
        self._done[p] = st
        return frames

    def poll(self, max_frames: int = 8) -> FrameBlock | None:
        self._check_consumed()
        while not self._pending:
            frames = self._next_file()
            if frames is None:
                return None
            if self._skip >= len(frames):  # resuming: whole file already processed
                self._skip -= len(frames)
                self.position += len(frames)
                continue
            if self._skip:
                self.position += self._skip
                frames = frames[self._skip:]
                self._skip = 0
            self._pending = [frames]
        frames = self._pending[0]
        block = FrameBlock(self.position, np.asarray(frames[:max_frames]), time.time())
        rest = frames[max_frames:]
        self._pending = [rest] if len(rest) else []
        self.position += len(block.frames)
        return block


class SeriesFollower(_FileQueue):
    """A Dectris-style series: ``<stem>_master.h5`` and ``<stem>_data_NNNNNN.h5`` files appearing beside it."""

    def __init__(self, master: str | Path, start: int = 0, settle_s: float = DEFAULT_SETTLE_S):
        super().__init__(Path(master), start, settle_s)
        self.info = _detector_info(self.path) if self.path.exists() else self.info

    def _listing(self) -> list[Path]:
        return _series_files(self.path)[1]

    def _read(self, path: Path) -> np.ndarray | None:
        try:
            with h5py.File(path, "r") as f:
                dset = next((f[p] for p in SERIES_PATHS if isinstance(f.get(p), h5py.Dataset)), None)
                if dset is None:
                    return None  # structure not written yet
                frames = np.asarray(dset[()])
        except (OSError, RuntimeError, KeyError):
            return None  # locked by the writer or incomplete: wait
        if frames.ndim == 2:
            frames = frames[None]
        return frames


class TiffFolderFollower(_FileQueue):
    """A folder of ``*.tif`` / ``*.tiff`` files filling up (natural name order). ``pattern`` matches the file
    names regardless of case (cameras often write ``IMG_0001.TIF``)."""

    def __init__(self, folder: str | Path, start: int = 0, settle_s: float = DEFAULT_SETTLE_S, pattern: str = "*.tif*"):
        super().__init__(Path(folder), start, settle_s)
        self.pattern = pattern

    def _listing(self) -> list[Path]:
        pattern = self.pattern.lower()
        try:
            names = list(self.path.iterdir())
        except FileNotFoundError:  # the folder moved away: nothing (new) to read
            return []
        files = [p for p in names if fnmatch.fnmatchcase(p.name.lower(), pattern)
                 and p.suffix.lower() in (".tif", ".tiff") and not p.name.startswith(".") and p.is_file()]
        return sorted(files, key=lambda p: _natural_key(p.name))

    def _read(self, path: Path) -> np.ndarray | None:
        """The file's frames [n, H, W], laid out as :func:`~napari_cxdi.io.arrays.read_tiff_movie` reads them
        (every series, every axis but Y, X a frame axis; a plain 3- or 4-frame stack that tifffile wrote as
        planar samples is frames); colour and multi-channel TIFFs are refused. None: not complete yet."""
        import tifffile

        from .arrays import _quiet_tifffile, _tiff_series_frames

        try:
            with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
                series = [(s, np.asarray(s.asarray())) for s in tif.series]
        except Exception:  # noqa: BLE001 - tifffile raises many kinds on a truncated file: not complete yet
            return None
        if not series:  # a header without images yet
            return None
        parts = []
        for s, data in series:
            n, (h, w) = _tiff_series_frames(s, path)
            parts.append(data.reshape(n, h, w))
        sizes = sorted({p.shape[1:] for p in parts})
        if len(sizes) != 1:
            raise InputFileError(path, f"a TIFF with frame sizes {sizes}; live mode needs one frame size")
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


def source_kind(source: str | Path) -> str:
    """``"tiff-folder"``, ``"series"`` (Dectris master) or ``"swmr"`` (one growing HDF5 dataset)."""
    p = Path(source)
    if p.is_dir():
        return "tiff-folder"
    if p.name.endswith("_master.h5") or _series_files(p)[1]:
        return "series"
    return "swmr"


def open_follower(source: str | Path, start: int = 0, dataset: str | None = None, settle_s: float = DEFAULT_SETTLE_S,
                  counter: str | None = None) -> Follower:
    """The follower for ``source`` (see :func:`source_kind`), positioned after ``start`` frames."""
    p = Path(source).expanduser()
    if not p.exists() and not p.parent.is_dir():
        raise InputFileError(p, "neither the file nor its folder exists; check the path of the acquisition")
    kind = source_kind(p)
    if kind == "tiff-folder":
        return TiffFolderFollower(p, start, settle_s)
    if kind == "series":
        return SeriesFollower(p, start, settle_s)
    return SWMRFollower(p, dataset, start, settle_s, counter)


def follow(follower: Follower, block_frames: int = 8, idle_timeout_s: float | None = 30.0, poll_s: float = 0.05,
           cancel: threading.Event | None = None) -> Generator[dict[str, Any], None, int]:
    """Yield ``{"event": "frames", "block": FrameBlock}`` as frames complete and ``{"event": "waiting",
    "idle_s"}`` while none do (so a consumer can cancel); return the number of frames delivered when
    ``idle_timeout_s`` passes without a new frame (None: follow until ``cancel`` is set)."""
    last = time.monotonic()
    while cancel is None or not cancel.is_set():
        block = follower.poll(block_frames)
        if block is not None:
            yield {"event": "frames", "block": block}
            last = time.monotonic()  # idle time counts from here: the consumer's work on a block is not idleness
            continue
        idle = time.monotonic() - last
        if idle_timeout_s is not None and idle >= idle_timeout_s:
            break
        yield {"event": "waiting", "idle_s": idle, "position": follower.position}
        time.sleep(poll_s)
    return follower.position
