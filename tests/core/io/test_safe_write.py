"""The one write path: atomic, never onto an input, typed errors on a full disk, no leftovers, umask modes."""

from __future__ import annotations

import errno
import json
import os
import stat
import time

import numpy as np
import pytest

from napari_cxdi.errors import CXDIError, OutputExistsError, OutputWriteError
from napari_cxdi.io import safe_write
from napari_cxdi.io.safe_write import (
    TMP_SUFFIX, atomic_output, check_output, hdf5_output, is_same_file, remove_stale_temporaries, torch_save,
    write_bytes, write_json, write_text,
)


class FullDisk:
    """A raw file whose writes fail with ENOSPC once ``budget`` bytes are written (a patched full disk)."""

    def __init__(self, path, budget: int):
        self._fh = open(path, "w+b", buffering=0)  # noqa: SIM115
        self.budget = budget

    def write(self, b):
        n = len(memoryview(b).cast("B"))
        if n > self.budget:
            if self.budget:
                self._fh.write(memoryview(b).cast("B")[: self.budget])
                self.budget = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.budget -= n
        return self._fh.write(b)

    def __getattr__(self, name):
        return getattr(self._fh, name)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(TMP_SUFFIX) or p.name.endswith(".tmp"))


def test_write_text_is_atomic_and_has_umask_mode(tmp_path):
    target = tmp_path / "a.txt"
    old = os.umask(0o022)
    try:
        write_text(target, "hello")
    finally:
        os.umask(old)
    assert target.read_text() == "hello"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert _leftovers(tmp_path) == []


def test_existing_output_refused_without_overwrite(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"x": 1})
    with pytest.raises(OutputExistsError, match="exists"):
        write_json(target, {"x": 2})
    write_json(target, {"x": np.float32(2.5)}, overwrite=True)
    assert json.loads(target.read_text()) == {"x": 2.5}


def test_input_never_overwritten_even_with_overwrite_symlink_and_hardlink(tmp_path):
    movie = tmp_path / "movie.cxi"
    movie.write_bytes(b"precious")
    link = tmp_path / "link.cxi"
    link.symlink_to(movie)
    hard = tmp_path / "hard.cxi"
    os.link(movie, hard)
    for out in (movie, link, hard, tmp_path / "." / "movie.cxi"):
        with pytest.raises(OutputExistsError, match="input"):
            write_text(out, "x", overwrite=True, protected=[movie])
    assert movie.read_bytes() == b"precious"
    assert is_same_file(hard, movie) and is_same_file(link, movie)
    assert not is_same_file(tmp_path / "other", movie)


def test_check_output_refuses_folder_and_missing_parent(tmp_path):
    with pytest.raises(OutputExistsError, match="folder"):
        check_output(tmp_path, overwrite=True)
    with pytest.raises(OutputExistsError, match="does not exist"):
        check_output(tmp_path / "nope" / "a.cxi")
    assert check_output(tmp_path / "new.cxi") == tmp_path / "new.cxi"


def test_unwritable_folder_is_typed(tmp_path, monkeypatch):
    real = os.access
    monkeypatch.setattr(safe_write.os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real(p, mode))
    with pytest.raises(OutputWriteError, match="not writable"):
        check_output(tmp_path / "a.txt")


def test_failed_writer_leaves_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.bin"
    write_bytes(target, b"old")
    with pytest.raises(ZeroDivisionError):
        with atomic_output(target, overwrite=True) as tmp:
            tmp.write_bytes(b"half")
            1 / 0
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_disk_errors_become_output_write_error(tmp_path, code):
    target = tmp_path / "a.bin"
    write_bytes(target, b"old")
    with pytest.raises(OutputWriteError) as info:
        with atomic_output(target, overwrite=True, needed_bytes=5_000_000) as tmp:
            tmp.write_bytes(b"part")
            raise OSError(code, os.strerror(code))
    assert str(target) in str(info.value)
    if code in (errno.ENOSPC, errno.EDQUOT):
        assert "disk is full" in str(info.value) and "5.0 MB needed" in str(info.value)
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_torch_runtime_write_failure_is_typed(tmp_path):
    with pytest.raises(OutputWriteError):
        with atomic_output(tmp_path / "m.pt") as tmp:
            tmp.write_bytes(b"x")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


def test_errno_parsed_from_h5py_message():
    exc = OSError("Driver write request failed (file write failed: errno = 28, error message = 'No space left on device')")
    assert safe_write._errno_of(exc) == errno.ENOSPC


def test_stale_temporaries_removed_fresh_ones_kept(tmp_path):
    old = tmp_path / f".x.cxi.dead{TMP_SUFFIX}"
    old.write_bytes(b"0" * 100)
    day_ago = time.time() - 2 * 86400
    os.utime(old, (day_ago, day_ago))
    fresh = tmp_path / f".y.cxi.live{TMP_SUFFIX}"
    fresh.write_bytes(b"1")
    foreign = tmp_path / ".someone.tmp"
    foreign.write_bytes(b"2")
    os.utime(foreign, (day_ago, day_ago))
    write_text(tmp_path / "z.txt", "z")  # any write into the folder cleans
    assert not old.exists() and fresh.exists() and foreign.exists()
    assert remove_stale_temporaries(tmp_path, older_than_s=-1) == [fresh]


def test_hdf5_output_roundtrip_and_guarded_full_disk(tmp_path, monkeypatch):
    import h5py

    target = tmp_path / "t.h5"
    with hdf5_output(target) as f:
        f.create_dataset("d", data=np.arange(1000.0).reshape(10, 100), chunks=(1, 100), compression="gzip")
    with h5py.File(target, "r") as f:
        assert f["d"][7, 3] == 703.0
    # a write failing half-way through: HDF5 never sees it (no segfault), we raise a typed error
    monkeypatch.setattr(safe_write, "open", lambda path, mode, buffering=-1: FullDisk(path, budget=3000), raising=False)
    with pytest.raises(OutputWriteError, match="disk is full"):
        with hdf5_output(target, overwrite=True) as f:
            f.create_dataset("d", data=np.random.default_rng(0).random((50, 100)), chunks=(1, 100))
    monkeypatch.undo()
    with h5py.File(target, "r") as f:  # the previous file is intact
        assert f["d"][7, 3] == 703.0
    assert _leftovers(tmp_path) == []


def test_torch_save_roundtrip(tmp_path):
    import torch

    torch_save({"w": torch.arange(4.0)}, tmp_path / "m.pt")
    assert torch.load(tmp_path / "m.pt")["w"].tolist() == [0, 1, 2, 3]
    with pytest.raises(OutputExistsError):
        torch_save({}, tmp_path / "m.pt")


def test_errors_are_cxdi_errors():
    assert issubclass(OutputWriteError, CXDIError) and issubclass(OutputExistsError, CXDIError)


def test_temporary_of_a_killed_process_removed_by_next_write(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(proc.stdout)
    orphan = tmp_path / f".a.cxi.{safe_write._HOST}-{dead}-abcd{TMP_SUFFIX}"
    orphan.write_bytes(b"partial")
    mine = safe_write.temporary_name(tmp_path / "b.cxi")
    mine.write_bytes(b"in progress")  # this process is alive: kept
    other_host = tmp_path / f".c.cxi.ffffff-{dead}-abcd{TMP_SUFFIX}"
    other_host.write_bytes(b"someone else's")
    write_text(tmp_path / "z.txt", "z")
    assert not orphan.exists() and mine.exists() and other_host.exists()


def test_legacy_temporaries_beside_their_file_removed_when_old(tmp_path):
    (tmp_path / "movie.cxi").write_bytes(b"final")
    legacy = tmp_path / ".movie.cxi.k3j_9xq2.tmp"
    legacy.write_bytes(b"x" * 1000)
    by_pid = tmp_path / ".movie.cxi.12345.tmp"
    by_pid.write_bytes(b"y")
    unrelated = tmp_path / ".other.txt.abcdefgh.tmp"  # no file "other.txt": not ours to judge
    unrelated.write_bytes(b"z")
    recent = tmp_path / ".movie.cxi.abcdefgh.tmp"
    recent.write_bytes(b"w")
    old = time.time() - 3 * 86400
    for p in (legacy, by_pid, unrelated):
        os.utime(p, (old, old))
    write_text(tmp_path / "z.txt", "z")
    assert not legacy.exists() and not by_pid.exists()
    assert unrelated.exists() and recent.exists()
