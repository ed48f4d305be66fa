"""Every writer on a full disk: a typed OutputWriteError, the previous file intact, no temporary left,
the process alive (HDF5 used to segfault here). A real small tmpfs where the machine lets us mount one
(root in a container), and everywhere a patched write that fails with ENOSPC at a random byte.
Also a kill test: SIGKILL a saving subprocess at random moments; the previous output survives and the
next run leaves no temporary behind.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_cxdi.errors import OutputWriteError
from napari_cxdi.io import safe_write
from napari_cxdi.io.safe_write import TMP_SUFFIX

PREVIOUS = b"previous output"


# -- the writers, each writing well over 16 kB ---------------------------------------------------------
def w_cxi(path, overwrite):
    from napari_cxdi.io import write_cxi

    counts = np.random.default_rng(0).random((4, 64, 64)).astype(np.float32)
    write_cxi(path, counts=counts, metadata={"energy_kev": 5.0}, overwrite=overwrite)


def w_pid3net(path, overwrite):
    from napari_cxdi.pid3net import PID3Net, PID3NetConfig, save_checkpoint

    probe = np.ones((1, 32, 32), np.complex64)
    save_checkpoint(path, PID3Net(PID3NetConfig(width=4, refine_steps=1, refine_width=4), probe), overwrite=overwrite)


def w_tables_csv(path, overwrite):
    from napari_cxdi.tracking import write_tables

    table = pd.DataFrame({"x": np.arange(3000.0), "y": np.arange(3000.0) * 0.5})
    write_tables(path.with_suffix(".csv"), {"tracks": table}, overwrite=overwrite)


def w_tables_h5(path, overwrite):
    from napari_cxdi.tracking import write_tables

    table = pd.DataFrame({"x": np.random.default_rng(1).random(4000)})
    write_tables(path.with_suffix(".h5"), {"tracks": table}, overwrite=overwrite)


def w_scann_cache(path, overwrite):
    from napari_cxdi.scann.data import _atomic_savez

    _atomic_savez(path, a=np.random.default_rng(2).random(5000))


def w_extxyz(path, overwrite):
    from ase.build import molecule

    from napari_cxdi.scann import export_extxyz
    from napari_cxdi.scann.predict import ScannPrediction

    frames = [molecule("C6H6") for _ in range(40)]
    results = [ScannPrediction({"homo": -1.0}, {"homo": "eV"}, np.full(12, 0.5), np.full(12, 1.0)) for _ in frames]
    export_extxyz(frames, results, path.with_suffix(".extxyz"), overwrite=overwrite)


def w_json(path, overwrite):
    from napari_cxdi.io.safe_write import write_json

    write_json(path.with_suffix(".json"), {"values": list(range(6000))}, overwrite=overwrite)


def w_speckle_model(path, overwrite):
    from napari_cxdi.speckle.classifier import SpeckleClassifier, save_checkpoint
    from napari_cxdi.speckle.patterns import PreprocessConfig
    from napari_cxdi.speckle.resnet import build_resnet

    clf = SpeckleClassifier(build_resnet(18, num_classes=3, width=4), np.array([2, 8, 20]), PreprocessConfig(window=513, bin=9))
    save_checkpoint(clf, path, overwrite=overwrite)


WRITERS = {"cxi": w_cxi, "pid3net_checkpoint": w_pid3net, "tables_csv": w_tables_csv, "tables_h5": w_tables_h5,
           "scann_cache": w_scann_cache, "extxyz": w_extxyz, "json": w_json, "speckle_model": w_speckle_model}
SUFFIX = {"tables_csv": ".csv", "tables_h5": ".h5", "extxyz": ".extxyz", "json": ".json", "scann_cache": ".npz"}


def _target(folder: Path, name: str) -> Path:
    return folder / f"out_{name}{SUFFIX.get(name, '.bin')}"


def _temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if TMP_SUFFIX in p.name or p.name.endswith(".tmp")]


def _needs_scann(name):
    if name == "extxyz":
        pytest.importorskip("ase")


# -- patched: ENOSPC at a random byte ------------------------------------------------------------------
@pytest.mark.parametrize("name", list(WRITERS))
def test_patched_disk_full_at_random_byte(tmp_path, monkeypatch, name):
    """The writer completes its temporary, then the disk 'fills' at a random byte of it."""
    _needs_scann(name)
    target = _target(tmp_path, name)
    target.write_bytes(PREVIOUS)
    rng = np.random.default_rng(abs(hash(name)) % 2**32)

    def full_fsync(path):
        size = os.path.getsize(path)
        with open(path, "r+b") as fh:
            fh.truncate(int(rng.integers(0, max(size, 1))))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safe_write, "_fsync_path", full_fsync)
    with pytest.raises(OutputWriteError, match="disk is full"):
        WRITERS[name](target, True)
    assert target.read_bytes() == PREVIOUS
    assert _temporaries(tmp_path) == []


# -- a real small file system ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_disk(tmp_path_factory):
    """A 1 MB tmpfs filled up to ~12 kB free, or skip where mounting is not allowed."""
    folder = tmp_path_factory.mktemp("tinydisk")
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _fill(folder: Path, leave_bytes: int) -> Path:
    filler = folder / "filler"
    filler.unlink(missing_ok=True)
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(free - leave_bytes, 0))
    return filler


def _in_child(func) -> tuple[int, str]:
    """Run ``func()`` in a forked child (no re-import): (exit status or -signal, what it printed).

    A segfault - HDF5's old failure mode on a full disk - shows as a negative status instead of
    killing the test session."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        code, text = 0, "ok"
        try:
            func()
        except BaseException as exc:  # noqa: BLE001
            code, text = 3, f"{type(exc).__name__} {exc}"
        os.write(write, text.encode()[:4000])
        os._exit(code)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 4096):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code, b"".join(chunks).decode()


@pytest.mark.parametrize("name", list(WRITERS))
def test_real_full_tmpfs(tiny_disk, name):
    _needs_scann(name)
    target = _target(tiny_disk, name)
    target.write_bytes(PREVIOUS)
    filler = _fill(tiny_disk, 12 * 1024)
    try:
        code, text = _in_child(lambda: WRITERS[name](target, True))
        assert code == 3, (code, text)
        assert text.startswith("OutputWriteError") and "disk is full" in text, text
        assert target.read_bytes() == PREVIOUS
        assert _temporaries(tiny_disk) == []
    finally:
        filler.unlink(missing_ok=True)


# -- kill test --------------------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_during_save_keeps_previous_output(tmp_path):
    """SIGKILL at random points of a save, 20 times: the previous file stays readable and intact,
    and the next run leaves no temporary behind."""
    import h5py

    from napari_cxdi.io import open_movie, write_cxi

    target = tmp_path / "movie.cxi"
    previous = np.arange(2 * 16 * 16, dtype=np.float32).reshape(2, 16, 16)
    big = np.random.default_rng(0).random((32, 96, 96)).astype(np.float32)
    t0 = time.perf_counter()
    write_cxi(tmp_path / "timing.cxi", counts=big)
    save_s = time.perf_counter() - t0
    write_cxi(target, counts=previous)
    rng = np.random.default_rng(7)
    killed_mid_save = 0
    for _ in range(20):
        pid = os.fork()
        if pid == 0:  # child: save over the previous output
            try:
                write_cxi(target, counts=big, overwrite=True)
            finally:
                os._exit(0)
        time.sleep(float(rng.uniform(0.0, 1.1 * save_s)))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        killed_mid_save += os.WIFSIGNALED(status)
        with h5py.File(target, "r") as f:  # always a complete file: the old one or the new one
            shape = f["entry_1/data_1/data"].shape
        if shape == previous.shape:
            assert np.array_equal(open_movie(target).frames(0, 2), previous)
        else:
            assert shape == big.shape
            write_cxi(target, counts=previous, overwrite=True)
    assert killed_mid_save >= 10  # most kills did land during the save
    write_cxi(target, counts=previous, overwrite=True)  # the next run removes the dead processes' temporaries
    assert _temporaries(tmp_path) == []
    assert np.array_equal(open_movie(target).frames(0, 2), previous)
