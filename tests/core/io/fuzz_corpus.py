"""A generator of damaged and unusual input files, and the entry points they are fed to.

Shared by ``tests/test_fuzz_inputs.py`` (a fast hypothesis-driven sample) and
``benchmarks/bench_robustness.py`` (>= 1000 cases in subprocess workers, crashes counted).

Each :class:`Case` is one file (or link) plus what each entry point must do with it:
``"reject"`` (a typed :class:`~napari_cxdi.errors.CXDIError`), ``"accept"`` (succeed; ``frames``
checks the frame count) or ``"any"`` (either, but never an untyped exception). A ``reject`` case
that succeeds is a *silent acceptance*; an untyped exception is a failure whatever the expectation.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

FRAME = 16  # small frames keep >= 1000 cases fast
TARGETS = ("open", "info", "probe", "validate", "napari", "reconstruct", "track", "speckle", "scann")
MOVIE_TARGETS = ("open", "info", "validate", "napari", "reconstruct")


@dataclass
class Case:
    name: str
    kind: str
    path: str
    expect: dict = field(default_factory=dict)  # target -> "reject" | "accept" | "any"; missing: not run
    frames: int | None = None  # expected frame count when accepted
    denied: bool = False  # simulate a permission-denied file

    def to_dict(self) -> dict:
        return asdict(self)


def _counts(rng, t=4, h=FRAME, w=FRAME) -> np.ndarray:
    return rng.poisson(5.0, (t, h, w)).astype(np.float32) + 1.0


def _cxi(path: Path, counts, **extra) -> None:
    from napari_cxdi.io import write_cxi

    write_cxi(path, counts=counts, overwrite=True, **extra)


def _movie_expect(reject: bool, *, content_bad: bool = False, probe: str = "any") -> dict:
    """Expectations for a movie file. content_bad: readable, but NaN/negative/zero content."""
    if reject:
        e = {t: "reject" for t in MOVIE_TARGETS}
    elif content_bad:
        e = {"open": "any", "info": "accept", "napari": "any", "validate": "reject", "reconstruct": "reject"}
    else:
        e = {t: "accept" for t in MOVIE_TARGETS}
    e["probe"] = probe
    return e


# --- generators: each writes one case into ``folder`` ------------------------------------------------
def g_empty(folder, rng, i):
    suffix = [".cxi", ".h5", ".tif", ".npy", ".npz", ".nxs"][i % 6]
    p = folder / f"empty_{i}{suffix}"
    p.write_bytes(b"")
    return Case(p.name, "empty", str(p), _movie_expect(True, probe="reject") | {"speckle": "reject", "track": "reject"})


def g_random(folder, rng, i):
    suffix = [".cxi", ".h5", ".tif", ".npy", ".npz", ".tiff"][i % 6]
    p = folder / f"random_{i}{suffix}"
    p.write_bytes(rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes())
    return Case(p.name, "random", str(p), _movie_expect(True, probe="reject") | {"speckle": "reject", "track": "reject"})


def _valid_file(folder, rng, i, fmt: str, stem: str) -> tuple[Path, np.ndarray]:
    counts = _counts(rng, t=int(rng.integers(3, 7)))
    if fmt == "cxi":
        p = folder / f"{stem}_{i}.cxi"
        _cxi(p, counts, metadata={"energy_kev": 5.0, "distance_m": 3.0, "detector_pixel_um": 75.0})
    elif fmt == "tif":
        import tifffile

        p = folder / f"{stem}_{i}.tif"
        tifffile.imwrite(p, counts.astype(np.uint16), photometric="minisblack", compression="zlib" if i % 2 else None)
    elif fmt == "npz":
        p = folder / f"{stem}_{i}.npz"
        np.savez_compressed(p, arr_0=counts)
    else:
        p = folder / f"{stem}_{i}.npy"
        np.save(p, counts)
    return p, counts


def g_valid(folder, rng, i):
    fmt = ["cxi", "tif", "npy", "npz"][i % 4]
    p, counts = _valid_file(folder, rng, i, fmt, "valid")
    return Case(p.name, "valid", str(p), _movie_expect(False) | {"speckle": "any"}, frames=len(counts))


def g_truncated(folder, rng, i):
    fmt = ["cxi", "tif", "npy", "npz"][i % 4]
    p, _ = _valid_file(folder, rng, i, fmt, "truncated")
    data = p.read_bytes()
    p.write_bytes(data[: int(rng.integers(1, max(len(data) - 1, 2)))])
    e = {t: "any" for t in MOVIE_TARGETS} | {"probe": "any", "speckle": "any"}
    return Case(p.name, "truncated", str(p), e)


def g_bitflip(folder, rng, i):
    fmt = ["cxi", "tif", "npy", "npz"][i % 4]
    p, _ = _valid_file(folder, rng, i, fmt, "bitflip")
    data = bytearray(p.read_bytes())
    for _ in range(int(rng.integers(1, 20))):
        k = int(rng.integers(0, len(data)))
        data[k] ^= 1 << int(rng.integers(0, 8))
    p.write_bytes(bytes(data))
    e = {t: "any" for t in MOVIE_TARGETS} | {"probe": "any", "speckle": "any"}
    return Case(p.name, "bitflip", str(p), e)


def g_wrong_dtype(folder, rng, i):
    import h5py

    choice = i % 4
    if choice == 0:
        p = folder / f"strings_{i}.h5"
        with h5py.File(p, "w") as f:
            f.create_dataset("data", data=np.array([[b"ab"] * FRAME] * FRAME))
    elif choice == 1:
        p = folder / f"complex_{i}.npy"
        np.save(p, (_counts(rng) + 1j).astype(np.complex64))
    elif choice == 2:
        p = folder / f"complex_{i}.cxi"
        with h5py.File(p, "w") as f:
            f.create_dataset("entry_1/data_1/data", data=(_counts(rng) * 1j).astype(np.complex64))
    else:
        p = folder / f"compound_{i}.h5"
        with h5py.File(p, "w") as f:
            f.create_dataset("data", data=np.zeros((4, FRAME, FRAME), dtype=[("a", "f4"), ("b", "i4")]))
    e = _movie_expect(True) | {"speckle": "reject", "track": "any" if choice == 1 else "reject"}
    e["probe"] = "any"  # a complex array is a fine probe
    return Case(p.name, "wrong-dtype", str(p), e)


def g_wrong_rank(folder, rng, i):
    shape = [(50,), (2, 3, FRAME, FRAME), (2, 2, 2, FRAME, FRAME), (), (0, FRAME, FRAME), (4, 1, FRAME)][i % 6]
    arr = rng.random(shape).astype(np.float32) + 1 if shape else np.float32(3)
    if i % 2:
        p = folder / f"rank{len(shape)}_{i}.npy"
        np.save(p, arr)
    else:
        import h5py

        p = folder / f"rank{len(shape)}_{i}.h5"
        with h5py.File(p, "w") as f:
            f.create_dataset("entry/data/data", data=arr)
    # [2, 3, H, W] is a wrong rank for a movie but pty-chi's [n_opr, modes, H, W] probe layout (io/probes.py)
    probe = "any" if len(shape) == 4 else "reject"
    return Case(p.name, "wrong-rank", str(p), _movie_expect(True, probe=probe) | {"speckle": "reject", "track": "reject"})


def g_giant(folder, rng, i):
    import h5py

    choice = i % 3
    if choice == 0:
        p = folder / f"giant_{i}.h5"
        with h5py.File(p, "w") as f:
            f.create_dataset("data", shape=(10**9, 10**6, 10**6), dtype="f4", chunks=(1, 64, 64))
    elif choice == 1:
        p = folder / f"giant_{i}.cxi"
        with h5py.File(p, "w") as f:
            f.create_dataset("entry_1/data_1/data", shape=(2**40, 2**20, 2**20), dtype="u2", chunks=(1, 16, 16))
            f.create_dataset("entry_1/instrument_1/source_1/probe", shape=(2**20, 2**20, 2**20), dtype="c8", chunks=(1, 16, 16))
    else:  # an .npy whose header declares far more than the file holds
        p = folder / f"giant_{i}.npy"
        header = {"descr": "<f4", "fortran_order": False, "shape": (10**7, 10**5, 10**5)}
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, header)
        p.write_bytes(buf.getvalue() + b"\0" * 64)
    return Case(p.name, "giant-declared", str(p), _movie_expect(True, probe="reject") | {"speckle": "reject", "track": "reject"})


def _bad_content(folder, rng, i, what: str):
    counts = _counts(rng, t=int(rng.integers(5, 9)))
    t = int(rng.integers(1, len(counts) - 1))  # never the first, middle-only or last frame alone
    y, x = (int(v) for v in rng.integers(0, FRAME, 2))
    if what == "nan":
        counts[t, y, x] = np.nan
    elif what == "inf":
        counts[t, y, x] = np.inf
    elif what == "negative":
        counts[t, y, x] = -float(rng.integers(1, 100))
    else:
        counts[:] = 0
    fmt = ["cxi", "npy"][i % 2]
    p = folder / f"{what}_{i}.{fmt}"
    if fmt == "cxi":
        _cxi(p, counts)
    else:
        np.save(p, counts)
    e = _movie_expect(False, content_bad=True) | {"speckle": "reject", "track": "any" if what in ("negative", "zero") else "reject"}
    if what != "zero":  # reconstruct treats NaN / inf / negative pixels as unmeasured, with a warning (issue 13)
        e["reconstruct"] = "any"
    return Case(p.name, what, str(p), e, frames=len(counts))


def g_nan(folder, rng, i):
    return _bad_content(folder, rng, i, ["nan", "inf"][i % 2])


def g_negative(folder, rng, i):
    return _bad_content(folder, rng, i, "negative")


def g_zero(folder, rng, i):
    return _bad_content(folder, rng, i, "zero")


def g_geometry(folder, rng, i):
    import h5py

    p = folder / f"geometry_{i}.cxi"
    _cxi(p, _counts(rng))
    name, value = [("entry_1/instrument_1/detector_1/x_pixel_size", np.nan),
                   ("entry_1/instrument_1/detector_1/distance", -3.0),
                   ("entry_1/instrument_1/detector_1/x_pixel_size", 0.0),
                   ("entry_1/instrument_1/source_1/energy", -1e-15),
                   ("entry_1/napari_cxdi/metadata_json", "{not json"),
                   ("entry_1/napari_cxdi/metadata_json", "[1, 2]"),
                   ("entry_1/napari_cxdi/metadata_json", json.dumps({"pixel_size_nm": -4}))][i % 7]
    with h5py.File(p, "a") as f:
        if name in f:
            del f[name]
        f.create_dataset(name, data=value)
    return Case(p.name, "geometry", str(p), _movie_expect(True) | {"track": "reject"})


def g_no_data(folder, rng, i):
    import h5py

    p = folder / f"nodata_{i}.{['h5', 'cxi', 'nxs'][i % 3]}"
    with h5py.File(p, "w") as f:
        f.create_group("entry/instrument")
        f.create_dataset("entry/title", data="just a title")
        f.create_dataset("small", data=np.arange(5))
    return Case(p.name, "no-data", str(p), _movie_expect(True, probe="reject") | {"speckle": "reject", "track": "reject"})


def g_linked(folder, rng, i):
    import h5py

    choice = i % 5
    if choice == 0:  # EIGER-style master whose data file is missing
        p = folder / f"master_missing_{i}.h5"
        with h5py.File(p, "w") as f:
            f["entry/data/data_000001"] = h5py.ExternalLink(f"missing_{i}_data_000001.h5", "/entry/data/data")
        return Case(p.name, "linked", str(p), _movie_expect(True, probe="reject") | {"track": "reject"})
    if choice == 1:  # CXI whose data is a dangling external link
        p = folder / f"cxi_dangling_{i}.cxi"
        with h5py.File(p, "w") as f:
            f.create_dataset("cxi_version", data=160)
            f["entry_1/data_1/data"] = h5py.ExternalLink(f"gone_{i}.h5", "/data")
        return Case(p.name, "linked", str(p), _movie_expect(True, probe="reject") | {"track": "reject"})
    if choice == 2:  # a working external link: accepted
        data_file = folder / f"linked_data_{i}.h5"
        counts = _counts(rng)
        with h5py.File(data_file, "w") as f:
            f.create_dataset("entry/data/data", data=counts)
        p = folder / f"master_ok_{i}.h5"
        with h5py.File(p, "w") as f:
            f["entry/data/data_000001"] = h5py.ExternalLink(data_file.name, "/entry/data/data")
        return Case(p.name, "linked", str(p), _movie_expect(False), frames=len(counts))
    if choice == 3:  # a symbolic link to a missing file
        p = folder / f"symlink_missing_{i}.cxi"
        p.symlink_to(folder / f"nowhere_{i}.cxi")
        return Case(p.name, "linked", str(p), _movie_expect(True, probe="reject") | {"speckle": "reject", "track": "reject"})
    target, counts = _valid_file(folder, rng, i, "npy", "symlinked")
    p = folder / f"symlink_ok_{i}.npy"
    p.symlink_to(target)
    return Case(p.name, "linked", str(p), _movie_expect(False), frames=len(counts))


def g_tiff_layouts(folder, rng, i):
    import tifffile

    counts = _counts(rng, t=int(rng.integers(3, 7))).astype(np.uint16)
    choice = i % 5
    p = folder / f"tiff{choice}_{i}.tif"
    if choice == 0:  # one page per frame, each its own series
        for k, frame in enumerate(counts):
            tifffile.imwrite(p, frame, append=k > 0)
        return Case(p.name, "tiff-pages", str(p), _movie_expect(False) | {"speckle": "any"}, frames=len(counts))
    if choice == 1:  # ImageJ hyperstack T x Z
        n = len(counts) // 2 * 2
        tifffile.imwrite(p, counts[:n].reshape(n // 2, 2, FRAME, FRAME), imagej=True, metadata={"axes": "TZYX"})
        return Case(p.name, "tiff-hyperstack", str(p), _movie_expect(False) | {"speckle": "any"}, frames=n)
    if choice == 2:  # OME
        tifffile.imwrite(p, counts, ome=True, metadata={"axes": "TYX"})
        return Case(p.name, "tiff-ome", str(p), _movie_expect(False) | {"speckle": "any"}, frames=len(counts))
    if choice == 3:  # RGB
        tifffile.imwrite(p, rng.integers(0, 255, (FRAME * 4, FRAME * 4, 3), dtype=np.uint8), photometric="rgb")
    else:  # 2 channels
        n = len(counts) // 2 * 2
        tifffile.imwrite(p, counts[:n].reshape(n // 2, 2, FRAME, FRAME), imagej=True, metadata={"axes": "TCYX"})
    return Case(p.name, "tiff-rgb", str(p), _movie_expect(True, probe="any") | {"speckle": "reject"})


def g_denied(folder, rng, i):
    fmt = ["cxi", "tif", "npy", "npz"][i % 4]
    p, _ = _valid_file(folder, rng, i, fmt, "denied")
    with contextlib.suppress(OSError):
        os.chmod(p, 0)
    return Case(p.name, "permission-denied", str(p), _movie_expect(True, probe="reject") | {"speckle": "reject", "track": "reject"}, denied=True)


def g_folder(folder, rng, i):
    p = folder / f"folder_{i}.{['cxi', 'tif', 'npy'][i % 3]}"
    p.mkdir()
    return Case(p.name, "folder", str(p), _movie_expect(True, probe="reject") | {"speckle": "reject", "track": "reject"})


def g_probe(folder, rng, i):
    choice = i % 5
    p = folder / f"probe{choice}_{i}.npy"
    good = (rng.random((1, FRAME, FRAME)) + 1j).astype(np.complex64)
    arr = [good, good * np.nan, np.zeros_like(good), np.array(["x"] * 4), rng.random((2, 2, 2, 2))][choice]
    np.save(p, arr)
    return Case(p.name, "probe", str(p), {"probe": "accept" if choice == 0 else "reject"})


def g_phase(folder, rng, i):
    """Phase movies for ``track``: valid, NaN, wrong rank, string."""
    choice = i % 4
    p = folder / f"phase{choice}_{i}.npy"
    phase = (rng.random((4, 48, 48)) * 0.1).astype(np.float32)
    if choice == 1:
        phase[2, 3, 3] = np.nan
    arr = [phase, phase, phase[0, 0], np.array(["a", "b"])][choice]
    np.save(p, arr)
    return Case(p.name, "phase", str(p), {"track": "accept" if choice == 0 else "reject"})


def g_structures(folder, rng, i):
    """Structure files for ``scann predict``: valid xyz, empty, random text, NaN positions, truncated."""
    choice = i % 5
    p = folder / f"mol{choice}_{i}.xyz"
    valid = "3\nwater\nO 0.0 0.0 0.0\nH 0.76 0.59 0.0\nH -0.76 0.59 0.0\n"
    text = [valid, "", "".join(chr(int(c)) for c in rng.integers(33, 126, 200)),
            valid.replace("0.76", "nan"), valid[: int(rng.integers(3, len(valid) - 8))]][choice]
    p.write_text(text)
    return Case(p.name, "structures", str(p), {"scann": "accept" if choice == 0 else ("any" if choice == 4 else "reject")})


def g_speckle(folder, rng, i):
    """Raw speckle patterns for ``speckle classify``: valid, NaN, negative, complex, all zero, RGB TIFF."""
    choice = i % 6
    pattern = rng.poisson(3.0, (513, 513)).astype(np.float32)
    if choice == 5:
        import tifffile

        p = folder / f"speckle_rgb_{i}.tif"
        tifffile.imwrite(p, rng.integers(0, 255, (128, 128, 3), dtype=np.uint8), photometric="rgb")
        return Case(p.name, "speckle", str(p), {"speckle": "reject"})
    if choice == 1:
        pattern[int(rng.integers(0, 513)), int(rng.integers(0, 513))] = np.nan
    elif choice == 2:
        pattern[int(rng.integers(0, 513)), int(rng.integers(0, 513))] = -5
    elif choice == 3:
        pattern = pattern.astype(np.complex64)
    elif choice == 4:
        pattern[:] = 0
    p = folder / f"speckle{choice}_{i}.npy"
    np.save(p, pattern)
    return Case(p.name, "speckle", str(p), {"speckle": "accept" if choice == 0 else "reject"})


GENERATORS: dict[str, Callable] = {
    "empty": g_empty, "random": g_random, "valid": g_valid, "truncated": g_truncated, "bitflip": g_bitflip,
    "wrong-dtype": g_wrong_dtype, "wrong-rank": g_wrong_rank, "giant-declared": g_giant, "nan": g_nan,
    "negative": g_negative, "zero": g_zero, "geometry": g_geometry, "no-data": g_no_data, "linked": g_linked,
    "tiff": g_tiff_layouts, "permission-denied": g_denied, "folder": g_folder, "probe": g_probe,
    "phase": g_phase, "structures": g_structures, "speckle": g_speckle,
}


def generate(folder: str | Path, n: int, seed: int = 0, kinds: list[str] | None = None,
             indices=None) -> list[Case]:
    """``n`` cases cycling over ``kinds`` (default all), reproducible from ``seed``; ``indices``: only those."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kinds = kinds or list(GENERATORS)
    cases = []
    for i in (range(n) if indices is None else indices):
        kind = kinds[i % len(kinds)]
        rng = np.random.default_rng([seed, i])
        sub = folder / f"case{i:05d}"
        sub.mkdir(exist_ok=True)
        cases.append(GENERATORS[kind](sub, rng, i // len(kinds)))
    return cases


def make_case(folder: str | Path, kind: str, seed: int, index: int = 0) -> Case:
    """One case of ``kind`` (for hypothesis)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return GENERATORS[kind](folder, np.random.default_rng(seed), index)


# --- the entry points ------------------------------------------------------------------------------------
def _support_files(folder: Path) -> dict:
    probe = folder / "_probe.npy"
    if not probe.exists():
        np.save(probe, np.ones((1, FRAME, FRAME), np.complex64))
    return {"probe": probe}


@contextlib.contextmanager
def permission_denied(path: str, active: bool):
    """As root every file is readable: simulate a permission-denied file by patching ``os.access``."""
    if not active:
        yield
        return
    real = os.access

    def access(p, mode, *a, **k):
        try:
            if os.path.realpath(p) == os.path.realpath(path) and mode & os.R_OK:
                return False
        except (TypeError, ValueError):
            pass
        return real(p, mode, *a, **k)

    os.access = access
    try:
        yield
    finally:
        os.access = real


def _cli(argv: list[str]) -> None:
    """Run the CLI; rc 2 (a typed error was reported) becomes a CXDIError, other failures propagate."""
    from napari_cxdi.cli import main
    from napari_cxdi.errors import CXDIError

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    if rc == 2:
        raise CXDIError(err.getvalue().strip()[-300:])
    if rc != 0:
        raise RuntimeError(f"exit status {rc}: {err.getvalue()[-300:]}")


def run_target(target: str, case: Case, scratch: Path):
    """Feed ``case`` to ``target``; returns the frame count where that means something, else None."""
    path = case.path
    if target == "open":
        from napari_cxdi.io import open_movie

        movie = open_movie(path)
        frames = movie.frames(0, movie.n_frames)
        assert frames.shape[0] == movie.n_frames
        return movie.n_frames
    if target == "info":
        _cli(["info", path, "--json"])
        from napari_cxdi.io import movie_info

        return movie_info(path).get("shape", [None])[0]
    if target == "probe":
        from napari_cxdi.io import read_probe

        read_probe(path)
        return None
    if target == "validate":
        from napari_cxdi.io import open_movie
        from napari_cxdi.io.validate import check_movie

        movie = open_movie(path, validate=False)
        return check_movie(movie)["frames"]
    if target == "napari":
        from napari_cxdi._napari.reader import get_reader

        reader = get_reader(path)
        if reader is None:
            from napari_cxdi.errors import CXDIError

            raise CXDIError("not claimed by the reader")
        layers = reader(path)
        n = None
        for data, _, _ in layers:
            arr = np.asarray(data if getattr(data, "ndim", 0) < 3 else data[: data.shape[0]])
            n = n or (arr.shape[0] if arr.ndim == 3 else None)
        return n
    if target == "reconstruct":
        support = _support_files(scratch)
        out = scratch / f"out_{abs(hash(path)) % 10**8}.cxi"
        _cli(["reconstruct", path, "--method", "mixed-state", "--max-iter", "1", "--probe", str(support["probe"]),
              "-o", str(out), "--overwrite", "--quiet", "--device", "cpu"])
        from napari_cxdi.io import read_hdf5_reconstruction

        return int(read_hdf5_reconstruction(out).shape[0])
    if target == "track":
        _cli(["track", path, "--pixel-size", "20", "--frame-interval", "0.1", "--block", "400",
              "--diameter", "60", "--min-diameter", "20", "--max-diameter", "400"])
        return None
    if target == "speckle":
        _cli(["speckle", "classify", path, "--device", "cpu"])
        return None
    if target == "scann":
        _cli(["scann", "predict", path, "--device", "cpu"])
        return None
    raise ValueError(target)


def file_hashes(case: Case) -> dict[str, str]:
    """Content hashes of the case's files (to prove that no input was changed)."""
    folder = Path(case.path).parent
    hashes = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            try:
                hashes[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
            except OSError:
                hashes[p.name] = "unreadable"
    return hashes


def run_case(case: Case, scratch: Path, targets=TARGETS) -> list[dict]:
    """Every target of ``case``: one record per target with ``outcome`` in ok / typed / untyped / silent /
    wrong / rejected-valid, plus ``changed`` if the case's files changed."""
    import warnings

    from napari_cxdi.errors import CXDIError

    records = []
    before = file_hashes(case)
    for target in targets:
        expect = case.expect.get(target)
        if expect is None:
            continue
        rec = {"case": case.name, "kind": case.kind, "target": target, "expect": expect}
        try:
            with permission_denied(case.path, case.denied), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                n = run_target(target, case, scratch)
        except CXDIError as exc:
            rec["outcome"] = "rejected-valid" if expect == "accept" else "typed"
            rec["message"] = str(exc)[:200]
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            rec["outcome"] = "untyped"
            rec["message"] = f"{type(exc).__module__}.{type(exc).__name__}: {str(exc)[:200]}"
        else:
            if expect == "reject":
                rec["outcome"] = "silent"
            elif expect == "accept" and case.frames is not None and n is not None and n != case.frames \
                    and target in ("open", "info", "validate", "napari", "reconstruct"):
                rec["outcome"] = "wrong"
                rec["message"] = f"{n} frames, expected {case.frames}"
            else:
                rec["outcome"] = "ok"
        records.append(rec)
    if file_hashes(case) != before:
        records.append({"case": case.name, "kind": case.kind, "target": "*", "expect": "-", "outcome": "changed"})
    return records


def main_worker(cases_json: str, scratch: str, log: str) -> None:
    """Worker loop for the benchmark: read cases, append ``start``/``done`` JSON lines to ``log``."""
    import torch

    torch.set_num_threads(1)
    cases = [Case(**c) for c in json.loads(Path(cases_json).read_text())]
    with open(log, "a", buffering=1) as fh:
        for i, case in enumerate(cases):
            fh.write(json.dumps({"start": i}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            cpu0 = time.process_time()
            records = run_case(case, Path(scratch))
            fh.write(json.dumps({"done": i, "records": records, "cpu_s": time.process_time() - cpu0}) + "\n")
            fh.flush()


if __name__ == "__main__":  # python tests/core/io/fuzz_corpus.py CASES.json SCRATCH LOG
    main_worker(*sys.argv[1:4])
