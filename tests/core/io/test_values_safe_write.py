"""Value tests of the one write path (issue 20, mutation testing): exact messages, exact modes,
which temporaries are removed and which are kept, errno parsing, the guarded HDF5 file's bookkeeping."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import time

import numpy as np
import pytest

from napari_cxdi.errors import OutputExistsError, OutputWriteError
from napari_cxdi.io import safe_write
from napari_cxdi.io.safe_write import (
    TMP_SUFFIX, atomic_output, check_output, remove_stale_temporaries, write_bytes, write_json, write_text,
)

DAY = 86400.0


def _age(p, seconds):
    t = time.time() - seconds
    os.utime(p, (t, t), follow_symlinks=False)


# -- check_output: exact messages -------------------------------------------------------------------
def test_check_output_messages_are_exact(tmp_path):
    movie = tmp_path / "movie.cxi"
    movie.write_bytes(b"m")
    with pytest.raises(OutputExistsError) as info:
        check_output(movie, overwrite=True, protected=[None, tmp_path / "other.cxi", movie])
    assert str(info.value) == (
        f"{movie}: this is an input of the run ({movie}); napari-cxdi never writes onto its inputs, "
        "even with overwrite - choose another output name")
    with pytest.raises(OutputExistsError) as info:
        check_output(tmp_path, overwrite=True)
    assert str(info.value) == f"{tmp_path}: is a folder; give a file name"
    with pytest.raises(OutputExistsError) as info:
        check_output(movie)
    assert str(info.value) == f"{movie}: file exists; pass overwrite=True (CLI: --overwrite) to replace it"
    missing = tmp_path / "nope" / "a.cxi"
    with pytest.raises(OutputExistsError) as info:
        check_output(missing, overwrite=True)
    assert str(info.value) == (
        f"{missing}: the folder {missing.parent} does not exist; create it or choose another folder")


def test_check_output_unprotected_existing_with_overwrite_returns_expanded_path(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    target.write_text("x")
    assert check_output(str(target), overwrite=True, protected=[None]) == target
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_output("~/b.txt") == tmp_path / "b.txt"


def test_dangling_symlink_counts_as_existing(tmp_path):
    link = tmp_path / "dangling.txt"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OutputExistsError, match="file exists"):
        check_output(link)
    assert check_output(link, overwrite=True) == link


def test_relative_output_name_uses_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen = []
    real = os.access
    monkeypatch.setattr(safe_write.os, "access", lambda p, mode: seen.append((str(p), mode)) or real(p, mode))
    assert check_output("a.txt") == safe_write.Path("a.txt")
    assert seen == [(".", os.W_OK | os.X_OK)]
    write_text("a.txt", "here")
    assert (tmp_path / "a.txt").read_text() == "here"


def test_unwritable_folder_message_and_modes(tmp_path, monkeypatch):
    modes = []

    def access(p, mode):
        modes.append(mode)
        return False

    monkeypatch.setattr(safe_write.os, "access", access)
    with pytest.raises(OutputWriteError) as info:
        check_output(tmp_path / "a.txt")
    assert str(info.value) == f"{tmp_path / 'a.txt'}: the folder {tmp_path} is not writable; choose another folder"
    assert info.value.path == str(tmp_path / "a.txt")
    assert modes == [os.W_OK | os.X_OK]


def test_is_same_file_of_missing_files_compares_resolved_paths(tmp_path):
    assert safe_write.is_same_file(tmp_path / "x" / ".." / "a", tmp_path / "a")
    assert not safe_write.is_same_file(tmp_path / "a", tmp_path / "b")
    (tmp_path / "a").write_bytes(b"1")
    (tmp_path / "b").write_bytes(b"1")
    assert not safe_write.is_same_file(tmp_path / "a", tmp_path / "b")
    assert safe_write._identity(tmp_path / "a") == (os.stat(tmp_path / "a").st_dev, os.stat(tmp_path / "a").st_ino)
    assert safe_write._identity(tmp_path / "missing") is None


# -- modes and the umask ----------------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0o000, 0o666)])
def test_written_file_mode_follows_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_bytes(tmp_path / "a.bin", b"abc")
        assert safe_write._umask() == umask  # reading the umask leaves it unchanged
        assert os.umask(umask) == umask
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == mode


# -- atomic_output ----------------------------------------------------------------------------------
def test_writer_producing_no_file_is_an_error(tmp_path):
    target = tmp_path / "a.bin"
    with pytest.raises(OutputWriteError) as info:
        with atomic_output(target):
            pass
    assert str(info.value) == f"{target}: the writer produced no file (internal error)"
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_temporary_name_is_beside_and_recognised(tmp_path, monkeypatch):
    target = tmp_path / "movie.cxi"
    tmp = safe_write.temporary_name(target)
    assert tmp.parent == tmp_path
    assert tmp.name.startswith(f".movie.cxi.{safe_write._HOST}-{os.getpid()}-") and tmp.name.endswith(TMP_SUFFIX)
    assert len(tmp.name) == len(f".movie.cxi.{safe_write._HOST}-{os.getpid()}-") + 8 + len(TMP_SUFFIX)
    m = safe_write._OWNER.search(tmp.name)
    assert m and m.group(1) == safe_write._HOST and int(m.group(2)) == os.getpid()
    with atomic_output(target) as t:
        assert t.parent == tmp_path and t.name.endswith(TMP_SUFFIX) and not t.exists()
        t.write_bytes(b"x")
    assert target.read_bytes() == b"x"


def test_writer_leaving_a_folder_is_cleaned(tmp_path):
    target = tmp_path / "a.zarr"
    with pytest.raises(ValueError):
        with atomic_output(target) as tmp:
            (tmp / "sub").mkdir(parents=True)
            (tmp / "sub" / "chunk").write_bytes(b"1")
            raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_leaving_a_symlink_is_cleaned(tmp_path):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "f").write_bytes(b"1")
    with pytest.raises(ValueError):
        with atomic_output(tmp_path / "a.bin") as tmp:
            tmp.symlink_to(keep)
            raise ValueError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"] and (keep / "f").read_bytes() == b"1"
    with pytest.raises(ValueError):
        with atomic_output(tmp_path / "b.bin") as tmp:
            tmp.symlink_to(tmp_path / "nowhere")  # a dangling link is removed too
            raise ValueError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]


def test_output_that_became_an_input_meanwhile_is_refused(tmp_path):
    movie = tmp_path / "movie.cxi"
    movie.write_bytes(b"precious")
    target = tmp_path / "out.cxi"
    with pytest.raises(OutputExistsError, match="input of the run"):
        with atomic_output(target, protected=iter([movie])) as tmp:  # an iterator: read twice
            tmp.write_bytes(b"new")
            target.symlink_to(movie)
    assert movie.read_bytes() == b"precious" and target.is_symlink()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(TMP_SUFFIX)] == []


def test_existing_file_appearing_meanwhile_is_replaced(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"new")
        target.write_bytes(b"written by someone meanwhile")
    assert target.read_bytes() == b"new"


def test_oserror_not_of_the_disk_is_wrapped_with_its_text(tmp_path):
    target = tmp_path / "a.bin"
    exc = OSError(errno.ENOENT, "gone")
    with pytest.raises(OutputWriteError) as info:
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"1")
            raise exc
    assert str(info.value) == f"{target}: could not be written: {exc}"
    assert info.value.__cause__ is exc


def test_permission_error_is_a_disk_error(tmp_path):
    target = tmp_path / "a.bin"
    exc = PermissionError(errno.EACCES, "Permission denied")
    with pytest.raises(OutputWriteError) as info:
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"1")
            raise exc
    assert str(info.value) == (
        f"{target}: could not be written: {os.strerror(errno.EACCES)}; check the disk and the folder's "
        "permissions, or save elsewhere; the previous file, if any, is unchanged")
    assert info.value.__cause__ is exc


@pytest.mark.parametrize("code", sorted(safe_write._DISK_ERRNOS))
def test_each_disk_errno_is_a_disk_error(tmp_path, code):
    target = tmp_path / "a.bin"
    with pytest.raises(OutputWriteError, match=f"could not be written: {os.strerror(code)};"):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"1")
            raise OSError(code, "whatever")


def test_runtime_error_not_a_write_failure_passes_through(tmp_path, monkeypatch):
    monkeypatch.setattr(safe_write, "_free_bytes", lambda folder: 1 << 30)
    with pytest.raises(RuntimeError, match="^shape mismatch$"):
        with atomic_output(tmp_path / "a.pt") as tmp:
            tmp.write_bytes(b"1")
            raise RuntimeError("shape mismatch")
    assert list(tmp_path.iterdir()) == []


def test_runtime_write_failure_message(tmp_path, monkeypatch):
    monkeypatch.setattr(safe_write, "_free_bytes", lambda folder: 2_500_000)
    target = tmp_path / "a.pt"
    exc = RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    with pytest.raises(OutputWriteError) as info:
        with atomic_output(target, needed_bytes=7_000_000) as tmp:
            tmp.write_bytes(b"1")
            raise exc
    assert str(info.value) == (
        f"{target}: could not be written: {exc}; check the disk and the folder's permissions, or save elsewhere; "
        "the previous file, if any, is unchanged")
    assert info.value.__cause__ is exc


# -- disk_error and errno parsing -------------------------------------------------------------------
def test_disk_error_full_disk_message(tmp_path, monkeypatch):
    monkeypatch.setattr(safe_write, "_free_bytes", lambda folder: 1_234_567 if folder == tmp_path else None)
    target = tmp_path / "a.cxi"
    err = safe_write.disk_error(target, OSError(errno.ENOSPC, "x"), needed_bytes=9_876_543)
    assert isinstance(err, OutputWriteError) and err.path == str(target)
    assert str(err) == (
        f"{target}: could not be written: {os.strerror(errno.ENOSPC)}; the disk is full (1.2 MB free, about 9.9 MB "
        "needed); free some space or save to another disk; the previous file, if any, is unchanged")
    err = safe_write.disk_error(target, OSError(errno.EDQUOT, "x"))
    assert str(err) == (
        f"{target}: could not be written: {os.strerror(errno.EDQUOT)}; the disk is full (1.2 MB free); "
        "free some space or save to another disk; the previous file, if any, is unchanged")


def test_disk_error_unknown_free_space(tmp_path, monkeypatch):
    monkeypatch.setattr(safe_write, "_free_bytes", lambda folder: None)
    target = tmp_path / "a.cxi"
    assert str(safe_write.disk_error(target, OSError(errno.ENOSPC, "x"), 2_000_000)) == (
        f"{target}: could not be written: {os.strerror(errno.ENOSPC)}; the disk is full (, about 2.0 MB needed); "
        "free some space or save to another disk; the previous file, if any, is unchanged")
    assert str(safe_write.disk_error(target, ValueError("odd"))) == (
        f"{target}: could not be written: odd; check the disk and the folder's permissions, or save elsewhere; "
        "the previous file, if any, is unchanged")


def test_free_bytes(tmp_path):
    assert safe_write._free_bytes(tmp_path) == pytest.approx(os.statvfs(tmp_path).f_bavail
                                                             * os.statvfs(tmp_path).f_frsize, rel=0.01)
    assert safe_write._free_bytes(tmp_path / "missing") is None


@pytest.mark.parametrize("exc, code", [
    (OSError(errno.ENOSPC, "x"), errno.ENOSPC),
    (OSError(errno.EFBIG, "x"), errno.EFBIG),
    (OSError(errno.ENOENT, "x"), errno.ENOENT),
    (OSError(errno.ENOENT, "errno = 28"), 28),
    (OSError("write failed: errno=5"), 5),
    (OSError("write failed: ERRNO = 122"), None),
    (RuntimeError("No space left on device"), errno.ENOSPC),
    (RuntimeError("no space left on device"), None),
    (RuntimeError("Disk quota exceeded"), errno.EDQUOT),
    (RuntimeError("something else"), None),
    (OSError("plain"), None),
])
def test_errno_of(exc, code):
    assert safe_write._errno_of(exc) == code


def test_errno_of_ignores_non_integer_errno():
    exc = RuntimeError("x")
    exc.errno = "28"
    assert safe_write._errno_of(exc) is None


@pytest.mark.parametrize("text, free, expected", [
    ("PytorchStreamWriter failed writing file", 1 << 40, True),
    ("No Space left", 1 << 40, True),
    ("[enforce fail at inline_container.cc:672]", 1 << 40, True),
    ("unexpected pos 576 vs 534", 1 << 40, True),
    ("Errno 28", 1 << 40, True),
    ("shape mismatch", 1 << 40, False),
    ("shape mismatch", (1 << 20) - 1, True),
    ("shape mismatch", 1 << 20, False),
    ("shape mismatch", None, False),
])
def test_looks_like_write_failure(tmp_path, monkeypatch, text, free, expected):
    seen = []
    monkeypatch.setattr(safe_write, "_free_bytes", lambda folder: seen.append(folder) or free)
    assert safe_write._looks_like_write_failure(RuntimeError(text), tmp_path / "a.pt") is expected
    assert seen in ([], [tmp_path])


# -- stale temporaries ------------------------------------------------------------------------------
def test_stale_age_boundary_and_default(tmp_path):
    assert safe_write.STALE_AFTER_S == 24 * 3600.0
    young = tmp_path / f".a.x{TMP_SUFFIX}"
    young.write_bytes(b"1")
    _age(young, DAY - 600)
    old = tmp_path / f".b.x{TMP_SUFFIX}"
    old.write_bytes(b"1")
    _age(old, DAY + 600)
    visible = tmp_path / f"c.x{TMP_SUFFIX}"  # not hidden: not ours
    visible.write_bytes(b"1")
    _age(visible, 3 * DAY)
    assert remove_stale_temporaries(tmp_path) == [old]
    assert young.exists() and visible.exists()
    assert remove_stale_temporaries(tmp_path, older_than_s=DAY - 1200) == [young]


def test_stale_temporary_folder_and_symlink_removed(tmp_path):
    folder = tmp_path / f".a.zarr{TMP_SUFFIX}"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "c").write_bytes(b"1")
    _age(folder, 2 * DAY)
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "f").write_bytes(b"1")
    link = tmp_path / f".b.zarr{TMP_SUFFIX}"
    link.symlink_to(keep)
    _age(link, 2 * DAY)
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted([folder.name, link.name])
    assert not folder.exists() and not link.is_symlink() and (keep / "f").read_bytes() == b"1"


def test_stale_scan_of_missing_folder_is_empty(tmp_path):
    assert remove_stale_temporaries(tmp_path / "missing") == []
    assert safe_write._legacy_temporaries(tmp_path / "missing") == []


def test_unremovable_temporary_is_skipped(tmp_path, monkeypatch):
    a = tmp_path / f".a.x{TMP_SUFFIX}"
    b = tmp_path / f".b.x{TMP_SUFFIX}"
    for p in (a, b):
        p.write_bytes(b"1")
        _age(p, 2 * DAY)
    real = safe_write.Path.unlink

    def unlink(self, *args, **kwargs):
        if self.name == a.name:
            raise PermissionError(errno.EACCES, "no")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(safe_write.Path, "unlink", unlink)
    assert remove_stale_temporaries(tmp_path) == [b]
    assert a.exists() and not b.exists()


def test_mtime(tmp_path):
    p = tmp_path / "a"
    p.write_bytes(b"1")
    _age(p, 1000)
    assert safe_write._mtime(p) == pytest.approx(time.time() - 1000, abs=5)
    assert safe_write._mtime(tmp_path / "missing") == float("inf")


def test_legacy_temporaries_rules(tmp_path):
    (tmp_path / "movie.cxi").write_bytes(b"final")
    (tmp_path / "folder.cxi").mkdir()
    ours = [".movie.cxi.abcdEF_9.tmp", ".movie.cxi.7.tmp"]
    theirs = [".movie.cxi.abcdefg.tmp", ".movie.cxi.abcdefghi.tmp", ".movie.cxi.abc-efgh.tmp",
              ".movie.cxi.12a.tmp", ".folder.cxi.abcdefgh.tmp", ".movie.cxi..tmp", ".abcdefgh.tmp",
              ".other.cxi.abcdefgh.tmp", "movie.cxi.abcdefgh.tmp"]
    for name in ours + theirs:
        (tmp_path / name).write_bytes(b"x")
    found = sorted(p.name for p in safe_write._legacy_temporaries(tmp_path))
    assert found == sorted(ours)


def test_legacy_temporaries_removed_only_when_old(tmp_path):
    (tmp_path / "movie.cxi").write_bytes(b"final")
    old = tmp_path / ".movie.cxi.12345.tmp"
    old.write_bytes(b"1")
    _age(old, DAY + 600)
    young = tmp_path / ".movie.cxi.12346.tmp"
    young.write_bytes(b"1")
    _age(young, DAY - 600)
    assert remove_stale_temporaries(tmp_path) == [old]
    assert young.exists()


def test_orphan_rules(tmp_path, monkeypatch):
    host = safe_write._HOST
    alive = {os.getpid(), 4242}
    monkeypatch.setattr(safe_write, "_pid_alive", lambda pid: pid in alive)
    assert safe_write._orphaned(tmp_path / f".a.{host}-999999-ab12{TMP_SUFFIX}")
    assert not safe_write._orphaned(tmp_path / f".a.{host}-4242-ab12{TMP_SUFFIX}")
    assert not safe_write._orphaned(tmp_path / f".a.ffffff-999999-ab12{TMP_SUFFIX}".replace("ffffff", "0" * 6
                                                                                          if host != "0" * 6 else "1" * 6))
    assert not safe_write._orphaned(tmp_path / f".a.{host}-999999-ab12.tmp")
    assert not safe_write._orphaned(tmp_path / f".a.{host}x-999999-ab12{TMP_SUFFIX}")
    # our own pid is never an orphan, even if the probe says it is gone
    alive.clear()
    assert not safe_write._orphaned(tmp_path / f".a.{host}-{os.getpid()}-ab12{TMP_SUFFIX}")
    assert safe_write._orphaned(tmp_path / f".a.{host}-4242-ab12{TMP_SUFFIX}")


def test_pid_alive(monkeypatch):
    assert safe_write._pid_alive(os.getpid())
    calls = []

    def kill(pid, sig):
        calls.append((pid, sig))
        raise {1: ProcessLookupError, 2: PermissionError, 3: OSError}[pid]()

    monkeypatch.setattr(safe_write.os, "kill", kill)
    assert safe_write._pid_alive(1) is False
    assert safe_write._pid_alive(2) is True
    assert safe_write._pid_alive(3) is True
    assert calls == [(1, 0), (2, 0), (3, 0)]
    monkeypatch.setattr(safe_write.os, "name", "nt")
    assert safe_write._pid_alive(1) is True and len(calls) == 3


def test_host_tag_and_owner_pattern():
    import hashlib
    import socket

    assert safe_write._HOST == hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
    assert safe_write._OWNER.search(f".a.cxi.0a1b2c-17-beef{TMP_SUFFIX}").groups() == ("0a1b2c", "17")
    assert safe_write._OWNER.search(f".a.cxi.0a1b2c-17-beef{TMP_SUFFIX}.x") is None
    assert safe_write._OWNER.search(".a.cxi.0a1b2c-17-beefXcxdi-tmp") is None


# -- the guarded HDF5 file ---------------------------------------------------------------------------
class _Failing(io.RawIOBase):
    def __init__(self, fail_after: int):
        super().__init__()
        self.data = bytearray()
        self.pos = 0
        self.fail_after = fail_after
        self.partial = True

    def write(self, b):
        b = bytes(b)
        if self.pos + len(b) > self.fail_after:
            raise OSError(errno.ENOSPC, "No space left on device")
        chunk = b[:3] if self.partial and len(b) > 3 else b  # short writes: the loop must continue
        self.data[self.pos:self.pos + len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)

    def seek(self, pos, whence=0):
        self.pos = pos if whence == 0 else self.pos + pos if whence == 1 else len(self.data) + pos
        return self.pos

    def tell(self):
        return self.pos

    def truncate(self, size=None):
        if self.fail_after < 0:
            raise OSError(errno.EIO, "io")
        size = self.pos if size is None else size
        del self.data[size:]
        return size


def test_guarded_file_short_writes_and_failures(tmp_path):
    g = safe_write._GuardedFile(tmp_path / "g.bin")
    assert g.readable() and g.writable() and g.seekable()
    g._fh.close()
    fake = _Failing(fail_after=10)
    g._fh = fake
    assert g.write(b"abcdefgh") == 8 and bytes(fake.data) == b"abcdefgh" and g.tell() == 8
    assert g.error is None
    assert g.write(memoryview(np.arange(2, dtype=np.uint16))) == 4  # counted in bytes, not items
    assert isinstance(g.error, OSError) and g.error.errno == errno.ENOSPC
    assert g.tell() == 12  # the whole failed write is skipped over
    first = g.error
    assert g.write(b"zz") == 2 and g.tell() == 14 and g.error is first
    assert g.truncate(5) == 5 and g.truncate() == 14 and bytes(fake.data) == b"abcdefgh"
    assert g.flush() is None
    g.close()
    assert g.closed


def test_guarded_file_truncate_and_read(tmp_path):
    g = safe_write._GuardedFile(tmp_path / "g.bin")
    assert g.write(b"0123456789") == 10
    assert g.truncate(4) == 4
    assert g.seek(0) == 0
    buf = bytearray(10)
    assert g.readinto(buf) == 4 and bytes(buf[:4]) == b"0123"
    assert g.seek(-2, 2) == 2 and g.tell() == 2
    g._fh.close()
    fake = _Failing(fail_after=-1)
    fake.pos = 7
    g._fh = fake
    assert g.truncate(3) == 3 and isinstance(g.error, OSError) and g.error.errno == errno.EIO
    assert g.truncate() == 7
    g.close()
    g.close()  # twice is fine
    assert (tmp_path / "g.bin").read_bytes() == b"0123"


def test_guarded_file_close_swallows_oserror(tmp_path):
    g = safe_write._GuardedFile(tmp_path / "g.bin")

    class Bad:
        def close(self):
            raise OSError(errno.EIO, "io")

    real = g._fh
    g._fh = Bad()
    g.close()
    assert g.closed
    real.close()


def test_hdf5_file_reports_close_failure(tmp_path, monkeypatch):
    import h5py

    real = h5py.File.close

    def close(self):
        real(self)
        raise ValueError("close failed")

    monkeypatch.setattr(h5py.File, "close", close)
    with pytest.raises(OSError) as info:
        with safe_write.hdf5_file(tmp_path / "a.h5") as f:
            f["x"] = np.arange(3)
    assert info.value.errno == errno.EIO and str(info.value) == f"[Errno {errno.EIO}] close failed"


def test_hdf5_file_close_oserror_kept(tmp_path, monkeypatch):
    import h5py

    real = h5py.File.close
    err = OSError(errno.ENOSPC, "full at close")

    def close(self):
        real(self)
        raise err

    monkeypatch.setattr(h5py.File, "close", close)
    with pytest.raises(OSError) as info:
        with safe_write.hdf5_file(tmp_path / "a.h5") as f:
            f["x"] = np.arange(3)
    assert info.value is err


def test_hdf5_file_exception_in_block(tmp_path):
    with pytest.raises(KeyError, match="mine"):
        with safe_write.hdf5_file(tmp_path / "a.h5") as f:
            f["x"] = np.arange(3)
            raise KeyError("mine")
    import h5py

    with h5py.File(tmp_path / "a.h5", "r") as f:  # closed cleanly
        assert f["x"][2] == 2


def test_hdf5_file_open_failure_closes_guard(tmp_path, monkeypatch):
    import h5py

    guards = []
    real_init = safe_write._GuardedFile.__init__

    def init(self, path):
        real_init(self, path)
        guards.append(self)

    monkeypatch.setattr(safe_write._GuardedFile, "__init__", init)
    monkeypatch.setattr(h5py, "File", lambda *a, **k: (_ for _ in ()).throw(ValueError("cannot open")))
    with pytest.raises(ValueError, match="cannot open"):
        with safe_write.hdf5_file(tmp_path / "a.h5"):
            pass
    assert len(guards) == 1 and guards[0].closed


def test_hdf5_output_passes_options(tmp_path):
    import h5py

    movie = tmp_path / "movie.h5"
    movie.write_bytes(b"m")
    with pytest.raises(OutputExistsError, match="input"):
        with safe_write.hdf5_output(movie, overwrite=True, protected=[movie]):
            pass
    with safe_write.hdf5_output(tmp_path / "o.h5") as f:
        f["v"] = np.array([1.5, 2.5])
    with h5py.File(tmp_path / "o.h5", "r") as f:
        assert f["v"][1] == 2.5
    with pytest.raises(OutputExistsError, match="exists"):
        with safe_write.hdf5_output(tmp_path / "o.h5"):
            pass


# -- the small writers -------------------------------------------------------------------------------
def test_write_json_format_and_options(tmp_path):
    target = tmp_path / "a.json"
    assert write_json(target, {"b": np.int64(2), "a": [np.float32(0.5)]}) == target
    assert target.read_text() == '{\n "b": 2,\n "a": [\n  0.5\n ]\n}\n'
    write_json(target, {"z": 1}, indent=None, overwrite=True)
    assert target.read_text() == '{"z": 1}\n'
    with pytest.raises(OutputExistsError):
        write_json(target, {})


def test_write_text_utf8_and_returns_path(tmp_path):
    target = tmp_path / "a.txt"
    assert write_text(str(target), "Å µm ✓") == target
    assert target.read_bytes() == "Å µm ✓".encode("utf-8")
    assert write_bytes(target, b"\x00\xff", overwrite=True) == target and target.read_bytes() == b"\x00\xff"


def test_write_bytes_reports_needed_bytes_on_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(safe_write, "_free_bytes", lambda folder: 0)
    target = tmp_path / "a.bin"

    def full(path, mode="r", *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safe_write, "open", full, raising=False)
    with pytest.raises(OutputWriteError) as info:
        write_bytes(target, b"x" * 3_000_000)
    assert "(0.0 MB free, about 3.0 MB needed)" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_torch_save_passes_options(tmp_path):
    import torch

    movie = tmp_path / "movie.pt"
    movie.write_bytes(b"m")
    with pytest.raises(OutputExistsError, match="input"):
        safe_write.torch_save({"a": 1}, movie, overwrite=True, protected=[movie])
    assert safe_write.torch_save({"a": torch.tensor([2.0])}, movie, overwrite=True) == movie
    assert torch.load(movie)["a"].item() == 2.0


def test_disk_error_megabytes_are_decimal(tmp_path, monkeypatch):
    # a quota (EDQUOT) can be hit with a lot of disk free: big numbers show the exact MB divisor (1e6)
    monkeypatch.setattr(safe_write, "_free_bytes", lambda folder: 100_000_000_000)
    err = safe_write.disk_error(tmp_path / "a.cxi", OSError(errno.EDQUOT, "x"), needed_bytes=250_000_000_000)
    assert "the disk is full (100000.0 MB free, about 250000.0 MB needed)" in str(err)


def test_age_boundary_unremovable_folders_and_fsync_of_a_missing_folder(tmp_path, monkeypatch):
    from types import SimpleNamespace

    # exactly older_than_s old is not yet stale (fixed clock; whole-second times are exact)
    t = tmp_path / f".x{TMP_SUFFIX}"
    t.write_bytes(b"1")
    os.utime(t, (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    monkeypatch.setattr(safe_write, "time", SimpleNamespace(time=lambda: 1_000_000_100.0))
    assert remove_stale_temporaries(tmp_path, older_than_s=100.0) == [] and t.exists()
    assert remove_stale_temporaries(tmp_path, older_than_s=99.0) == [t] and not t.exists()
    # a stale temporary folder that cannot be emptied completely is removed as far as possible, no error
    d = tmp_path / f".y{TMP_SUFFIX}"
    d.mkdir()
    os.utime(d, (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    calls = []

    def rmtree(path, ignore_errors=False):  # as shutil.rmtree on a folder with an undeletable file
        calls.append(ignore_errors)
        if not ignore_errors:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(safe_write.shutil, "rmtree", rmtree)
    assert remove_stale_temporaries(tmp_path, older_than_s=10.0) == [d] and calls == [True]
    safe_write._fsync_dir(tmp_path / "missing")  # nothing to sync: no error


def test_guarded_file_writes_through_at_once_and_closes_its_handle(tmp_path):
    p = tmp_path / "g.bin"
    g = safe_write._GuardedFile(p)
    assert g.write(b"abc") == 3
    assert p.stat().st_size == 3  # unbuffered: a failing write fails here, where it is recorded
    assert g.write(np.arange(3, dtype=np.int16)) == 6 and p.read_bytes() == b"abc" + np.arange(3, dtype=np.int16).tobytes()
    fh = g._fh
    g.close()
    assert fh.closed and g.closed
    g.close()  # twice is fine
