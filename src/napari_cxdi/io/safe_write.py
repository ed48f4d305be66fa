"""The one write path for every file napari-cxdi writes.

Every writer (CXI, HDF5 tables, CSV, checkpoints, extxyz, JSON, models) goes through
:func:`atomic_output`:

* the output is checked **before** work starts (:func:`check_output`): never an input of the run
  (symbolic and hard links resolved: device + inode are compared), ``overwrite`` never overrides that,
  an existing file only with ``overwrite=True``, the folder must exist and be writable;
* the data are written to a temporary file in the same folder (``.<name>.<random>.cxdi-tmp``), flushed
  and fsync'ed, then renamed onto the final name (``os.replace``): a kill or a full disk leaves the
  previous file intact;
* ENOSPC / EDQUOT / EIO / EROFS while writing become :class:`~napari_cxdi.errors.OutputWriteError`
  naming the path (and the space that was free), the temporary removed, no partial file under the
  final name, the process alive;
* files get the user's umask (typically 0644), not ``mkstemp``'s 0600;
* temporaries of ours left by a killed process (its pid, on this host, is gone) or older than a day
  are removed on the next write into that folder.

Usage::

    check_output(path, overwrite=args.overwrite, protected=[movie_path])   # before long work
    ...
    with atomic_output(path, overwrite=True, protected=[movie_path]) as tmp:
        torch.save(payload, tmp)                                           # any writer of a path
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import OutputExistsError, OutputWriteError

TMP_SUFFIX = ".cxdi-tmp"
STALE_AFTER_S = 24 * 3600.0
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG}


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file (links followed), else None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def is_same_file(a: str | Path, b: str | Path) -> bool:
    """True if ``a`` and ``b`` name the same file (symlinks resolved, hard links compared by inode)."""
    ia, ib = _identity(Path(a)), _identity(Path(b))
    if ia is not None and ib is not None:
        return ia == ib
    return Path(a).resolve() == Path(b).resolve()


def check_output(path: str | Path, *, overwrite: bool = False, protected: Iterable[str | Path | None] = ()) -> Path:
    """Refuse an output that is an input (always), exists (unless ``overwrite``) or cannot be created.

    Call it before long work starts; :func:`atomic_output` calls it again at write time.
    """
    path = Path(path).expanduser()
    for p in protected:
        if p is None:
            continue
        if is_same_file(path, p):
            raise OutputExistsError(
                f"{path}: this is an input of the run ({p}); napari-cxdi never writes onto its inputs, "
                "even with overwrite - choose another output name")
    if path.is_dir():
        raise OutputExistsError(f"{path}: is a folder; give a file name")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{path}: file exists; pass overwrite=True (CLI: --overwrite) to replace it")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputExistsError(f"{path}: the folder {parent} does not exist; create it or choose another folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputWriteError(path, f"the folder {parent} is not writable; choose another folder")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_OWNER = re.compile(r"\.([0-9a-f]{6})-(\d+)-[0-9a-f]+" + re.escape(TMP_SUFFIX) + "$")


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows: never probe there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _orphaned(p: Path) -> bool:
    """A temporary written on this host by a process that no longer runs (killed mid-save)."""
    m = _OWNER.search(p.name)
    if not m or m.group(1) != _HOST:
        return False  # another machine's (shared folder): only the age rule applies
    pid = int(m.group(2))
    return pid != os.getpid() and not _pid_alive(pid)


def _mtime(p: Path) -> float:
    try:
        return p.lstat().st_mtime
    except OSError:
        return float("inf")


def _legacy_temporaries(folder: Path) -> list[Path]:
    """Temporaries of napari-cxdi < 0.2 (``.NAME.XXXXXXXX.tmp`` / ``.NAME.PID.tmp``) beside their finished
    file ``NAME``: only those whose final file exists, so nothing of another program is touched."""
    found = []
    try:
        entries = list(folder.glob(".*.tmp"))
    except OSError:
        return found
    for p in entries:
        stem = p.name[1:-len(".tmp")]
        base, _, token = stem.rpartition(".")
        if base and token and re.fullmatch(r"[A-Za-z0-9_]{8}|\d+", token) and (folder / base).is_file():
            found.append(p)
    return found


def remove_stale_temporaries(folder: str | Path, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove our temporaries (``.*.cxdi-tmp``) in ``folder`` left by dead processes of this host
    or older than ``older_than_s``."""
    removed = []
    now = time.time()
    try:
        entries = list(Path(folder).glob(f".*{TMP_SUFFIX}"))
    except OSError:
        return removed
    entries += [p for p in _legacy_temporaries(Path(folder)) if now - _mtime(p) > older_than_s]
    for p in entries:
        try:
            if now - p.lstat().st_mtime > older_than_s or _orphaned(p):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed


def temporary_name(path: str | Path) -> Path:
    """A hidden temporary name beside ``path`` that :func:`remove_stale_temporaries` recognises."""
    path = Path(path)
    return path.with_name(f".{path.name}.{_HOST}-{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _errno_of(exc: BaseException) -> int | None:
    """The errno of an OSError, also when a library only writes it into the message (h5py: ``errno = 28``)."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in _DISK_ERRNOS:
        return code
    text = str(exc)
    m = re.search(r"errno\s*=\s*(\d+)", text)
    if m:
        return int(m.group(1))
    if "No space left" in text:
        return errno.ENOSPC
    if "Disk quota exceeded" in text:
        return errno.EDQUOT
    return code if isinstance(code, int) else None


def disk_error(path: Path, exc: BaseException, needed_bytes: int | None = None) -> OutputWriteError:
    """The typed error for an OSError raised while writing ``path``."""
    free = _free_bytes(path.parent)
    code = _errno_of(exc)
    parts = [f"could not be written: {os.strerror(code) if code else exc}"]
    if code in (errno.ENOSPC, errno.EDQUOT):
        parts.append(f"the disk is full ({free / 1e6:.1f} MB free" if free is not None else "the disk is full (")
        if needed_bytes:
            parts[-1] += f", about {needed_bytes / 1e6:.1f} MB needed"
        parts[-1] += ")"
        parts.append("free some space or save to another disk; the previous file, if any, is unchanged")
    else:
        parts.append("check the disk and the folder's permissions, or save elsewhere; the previous file, if any, is unchanged")
    return OutputWriteError(path, "; ".join(parts))


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(
    path: str | Path,
    *,
    overwrite: bool = False,
    protected: Iterable[str | Path | None] = (),
    needed_bytes: int | None = None,
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, publish it atomically.

    The block writes the complete file to the yielded path (any library that writes to a path).
    On any exception the temporary is removed and the final name is untouched; OSErrors of a full or
    failing disk are raised as :class:`OutputWriteError`.
    """
    protected = list(protected)
    path = check_output(path, overwrite=overwrite, protected=protected)
    remove_stale_temporaries(path.parent)
    tmp = temporary_name(path)
    try:
        try:
            yield tmp
            if not tmp.exists():
                raise OutputWriteError(path, "the writer produced no file (internal error)")
            _fsync_path(tmp)
            os.chmod(tmp, 0o666 & ~_umask())
            # The output may have become an input meanwhile (e.g. a link created during the run).
            check_output(path, overwrite=True, protected=protected)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            if _errno_of(exc) in _DISK_ERRNOS or isinstance(exc, (PermissionError,)):
                raise disk_error(path, exc, needed_bytes) from exc
            raise OutputWriteError(path, f"could not be written: {exc}") from exc
        except RuntimeError as exc:
            # torch.save and other C++ writers report a failed write as RuntimeError
            if _looks_like_write_failure(exc, path):
                raise disk_error(path, exc, needed_bytes) from exc
            raise
    finally:
        if tmp.exists() or tmp.is_symlink():
            with contextlib.suppress(OSError):
                if tmp.is_dir() and not tmp.is_symlink():
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    tmp.unlink()


def _looks_like_write_failure(exc: BaseException, path: Path) -> bool:
    text = str(exc).lower()
    if any(k in text for k in ("write", "no space", "inline_container", "unexpected pos", "errno")):
        return True
    free = _free_bytes(path.parent)
    return free is not None and free < 1 << 20


class _GuardedFile(io.RawIOBase):
    """A file for h5py's file-object driver that never lets HDF5 see a failed write.

    HDF5 (2.0 at least) crashes the interpreter (segfault) when it closes a file or dataset whose
    flush failed (ENOSPC). Here a failed write is recorded, later writes are skipped and HDF5 is told
    they succeeded; :func:`hdf5_output` raises the recorded error once HDF5 has closed cleanly.
    """

    def __init__(self, path: Path):
        super().__init__()
        self._fh = open(path, "w+b", buffering=0)  # noqa: SIM115 - closed in close()
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._fh.seek(pos, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def readinto(self, b) -> int:
        return self._fh.readinto(b)

    def write(self, b) -> int:
        view = memoryview(b).cast("B")
        n = len(view)
        if self.error is None:
            try:
                done = 0
                while done < n:
                    done += self._fh.write(view[done:])
                return n
            except OSError as exc:
                self.error = exc
        self._fh.seek(n, 1)
        return n

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self._fh.truncate(size)
            except OSError as exc:
                self.error = exc
        return self.tell() if size is None else size

    def flush(self) -> None:
        return None

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(OSError):
                self._fh.close()
        super().close()


@contextlib.contextmanager
def hdf5_file(tmp: str | Path):
    """An ``h5py.File`` opened for writing on ``tmp`` that cannot crash the interpreter on a full disk.

    Use inside :func:`atomic_output`::

        with atomic_output(path, overwrite=True) as tmp, hdf5_file(tmp) as f:
            f.create_dataset(...)

    A write that failed (ENOSPC, EIO ...) is raised as its OSError after HDF5 has closed the file.
    """
    import h5py

    guard = _GuardedFile(Path(tmp))
    try:
        f = h5py.File(guard, "w")
    except BaseException:
        guard.close()
        raise

    def _close() -> OSError | None:
        try:
            f.close()
        except Exception as exc:  # noqa: BLE001 - reported below unless a write failed first
            if guard.error is None:
                guard.error = exc if isinstance(exc, OSError) else OSError(errno.EIO, str(exc))
        finally:
            guard.close()
        return guard.error

    try:
        yield f
    except BaseException as exc:
        error = _close()
        if error is not None and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise error from exc
        raise
    error = _close()
    if error is not None:
        raise error


def hdf5_output(path: str | Path, **kwargs):
    """``atomic_output`` + :func:`hdf5_file` in one: yields the open ``h5py.File``."""

    @contextlib.contextmanager
    def _cm():
        with atomic_output(path, **kwargs) as tmp, hdf5_file(tmp) as f:
            yield f

    return _cm()


def torch_save(obj, path: str | Path, **kwargs) -> Path:
    """``torch.save`` through :func:`atomic_output` (serialised in memory, then written atomically)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes(path, buffer.getvalue(), **kwargs)


def write_bytes(path: str | Path, data: bytes, **kwargs) -> Path:
    """Write ``data`` atomically (see :func:`atomic_output` for ``overwrite`` / ``protected``)."""
    with atomic_output(path, needed_bytes=len(data), **kwargs) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def write_text(path: str | Path, text: str, **kwargs) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return write_bytes(path, text.encode("utf-8"), **kwargs)


def write_json(path: str | Path, obj, *, indent: int = 1, **kwargs) -> Path:
    """Write ``obj`` as JSON atomically (NumPy values converted)."""
    import json

    from ..provenance import to_jsonable

    return write_text(path, json.dumps(to_jsonable(obj), indent=indent, sort_keys=False) + "\n", **kwargs)
