"""Labelled speckle datasets: simulation (in parallel, seedable), HDF5 storage and seed-style splits.

Sample ``j`` of class ``n`` is generated from ``np.random.SeedSequence([seed, n, j])`` so every
pattern can be regenerated on its own, independent of the worker count.

HDF5 layout: ``/patterns (N, S, S) float32`` raw intensities (central block zeroed, binned by
``attrs["bin"]``), ``/labels (N,)`` disk numbers, ``/sample_index (N,)`` ``j``, ``/radii (N, n_max)`` and
``/centers (N, n_max, 2)`` (zero padded, box units), ``attrs["config"]`` and ``attrs["provenance"]`` (JSON).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, CXDIError, DataValidationError, InputFileError
from ..io.validate import check_counts
from ..provenance import provenance
from .disks import CONTRASTS, N_MAX, N_MIN, POLY_LAWS, PROFILES, DiskSystem, object_function, random_disk_system
from .patterns import BLOCK, PAD, WINDOW, add_poisson_noise, bin_pattern, block_center, speckle_analytic, speckle_dft

METHODS = ("dft", "analytic")


@dataclass(frozen=True)
class SpeckleDatasetConfig:
    """What to simulate. ``window``: pattern side (513 or 257, full-res pixels); ``bin``: stored binning
    (a divisor of ``window``); ``photons``: expected counts per pattern (None = noise-free);
    ``method``: ``dft`` (rasterised disks, W D W^T) or ``analytic`` (ideal flat amplitude disks, faster)."""

    n_values: tuple[int, ...] = tuple(range(N_MIN, N_MAX + 1))
    per_class: int = 100
    window: int = WINDOW
    bin: int = 1
    polydisperse: bool = False
    poly_law: str = "radius"
    contrast: str = "amplitude"
    profile: str = "flat"
    phase: float = 0.5
    absorption: float = 0.0
    photons: float | None = None
    block: int = BLOCK
    method: str = "dft"
    seed: int = 0
    pad: int = PAD

    def __post_init__(self):
        from ..checks import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, check_fields

        check_fields(self, {"n_values": AT_LEAST_ONE, "per_class": AT_LEAST_ONE, "window": AT_LEAST_ONE,
                            "bin": AT_LEAST_ONE, "absorption": NON_NEGATIVE, "photons": POSITIVE,
                            "block": AT_LEAST_ONE, "seed": NON_NEGATIVE, "pad": NON_NEGATIVE},
                     where="speckle dataset config")
        object.__setattr__(self, "n_values", tuple(int(n) for n in self.n_values))
        if not self.n_values or min(self.n_values) < 1:
            raise ConfigError(f"disk numbers must be >= 1, got {self.n_values}")
        if len(set(self.n_values)) != len(self.n_values):
            raise ConfigError(f"disk numbers must be distinct, got {self.n_values}")
        if self.per_class < 1:
            raise ConfigError(f"patterns per class must be >= 1, got {self.per_class}")
        if self.window % 2 == 0 or self.window < 3:
            raise ConfigError(f"window must be odd and >= 3, got {self.window}")
        if self.bin < 1 or self.window % self.bin:
            raise ConfigError(f"bin {self.bin} must divide the window {self.window}")
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.poly_law not in POLY_LAWS:
            raise ConfigError(f"unknown polydispersity law {self.poly_law!r}; choose one of {', '.join(POLY_LAWS)}")
        if self.contrast not in CONTRASTS or self.profile not in PROFILES:
            raise ConfigError(f"unknown contrast/profile {self.contrast!r}/{self.profile!r}")
        if self.method == "analytic" and (self.contrast != "amplitude" or self.profile != "flat"):
            raise ConfigError("the analytic method covers flat amplitude disks only; use method='dft'")
        if self.photons is not None and self.photons <= 0:
            raise ConfigError(f"photons must be > 0, got {self.photons}")

    @property
    def size(self) -> int:
        """Stored pattern side in pixels."""
        return self.window // self.bin

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def sample_rng(seed: int, n: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of class ``n``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(n), int(index)]))


def simulate_pattern(n: int, index: int, config: SpeckleDatasetConfig) -> tuple[np.ndarray, DiskSystem]:
    """One raw pattern ``(size, size)`` float32 (blocked, optionally noisy and binned) and its disks."""
    rng = sample_rng(config.seed, n, index)
    system = random_disk_system(n, rng, polydisperse=config.polydisperse, poly_law=config.poly_law)
    if config.method == "analytic":
        intensity = speckle_analytic(system, config.window, config.pad)
    else:
        obj = object_function(system, config.contrast, config.profile, config.phase, config.absorption)
        intensity = speckle_dft(obj, config.window, config.pad)
    intensity = block_center(intensity, config.block)
    if config.photons is not None:
        intensity = add_poisson_noise(intensity, config.photons, rng, config.block)
    return bin_pattern(intensity, config.bin).astype(np.float32), system


def _simulate_chunk(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    config, jobs = args
    n_max = max(config.n_values)
    pats = np.empty((len(jobs), config.size, config.size), dtype=np.float32)
    radii = np.zeros((len(jobs), n_max), dtype=np.float32)
    centers = np.zeros((len(jobs), n_max, 2), dtype=np.float32)
    for i, (n, j) in enumerate(jobs):
        pats[i], system = simulate_pattern(n, j, config)
        radii[i, :n] = system.radii
        centers[i, :n] = system.centers
    return pats, radii, centers


@contextlib.contextmanager
def _single_threaded_children():
    """Child processes inherit one BLAS/OpenMP thread each (avoids oversubscribing the cores)."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def simulate(config: SpeckleDatasetConfig, workers: int = 1, chunk: int = 8) -> Iterator[dict]:
    """Simulate all patterns (class-major order). Yields progress dicts
    ``{"done", "total", "start", "patterns" (k, S, S), "labels", "sample_index", "radii", "centers"}``,
    one per chunk, in order. ``workers > 1`` uses that many processes."""
    jobs = [(n, j) for n in config.n_values for j in range(config.per_class)]
    chunks = [jobs[i:i + chunk] for i in range(0, len(jobs), chunk)]
    done = 0

    def emit(start, part, result):
        pats, radii, centers = result
        return {"done": start + len(part), "total": len(jobs), "start": start, "patterns": pats,
                "labels": np.array([n for n, _ in part]), "sample_index": np.array([j for _, j in part]),
                "radii": radii, "centers": centers}

    if workers <= 1:
        for part in chunks:
            yield emit(done, part, _simulate_chunk((config, part)))
            done += len(part)
        return
    with _single_threaded_children(), ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        for part, result in zip(chunks, pool.map(_simulate_chunk, [(config, p) for p in chunks])):
            yield emit(done, part, result)
            done += len(part)


@dataclass
class SpeckleData:
    """An in-memory dataset: ``patterns (N, S, S)`` raw float32, ``labels (N,)`` disk numbers."""

    patterns: np.ndarray
    labels: np.ndarray
    sample_index: np.ndarray
    config: dict
    radii: np.ndarray | None = None
    centers: np.ndarray | None = None

    @property
    def bin(self) -> int:
        return int(self.config.get("bin", 1))


def make_dataset(config: SpeckleDatasetConfig, workers: int = 1) -> SpeckleData:
    """Simulate a whole dataset in memory."""
    parts = list(simulate(config, workers))
    cat = lambda key: np.concatenate([p[key] for p in parts])  # noqa: E731
    return SpeckleData(cat("patterns"), cat("labels"), cat("sample_index"), config.to_dict(),
                       cat("radii"), cat("centers"))


def write_dataset(path: str | Path, config: SpeckleDatasetConfig, workers: int = 1,
                  overwrite: bool = False) -> Iterator[dict]:
    """Simulate into an HDF5 file, written to a temporary file and moved into place at the end.

    Yields ``{"done", "total"}`` per chunk. Raises :class:`OutputExistsError` if ``path`` exists and
    ``overwrite`` is False.
    """
    from ..io.safe_write import atomic_output, check_output, hdf5_file

    path = check_output(path, overwrite=overwrite)
    total = len(config.n_values) * config.per_class
    n_max = max(config.n_values)
    with atomic_output(path, overwrite=overwrite, needed_bytes=total * config.size**2 * 4) as tmp:
        with hdf5_file(tmp) as f:
            s = config.size
            d_pat = f.create_dataset("patterns", (total, s, s), dtype="f4", chunks=(1, s, s), compression="lzf")
            d_lab = f.create_dataset("labels", (total,), dtype="i4")
            d_idx = f.create_dataset("sample_index", (total,), dtype="i4")
            d_rad = f.create_dataset("radii", (total, n_max), dtype="f4")
            d_cen = f.create_dataset("centers", (total, n_max, 2), dtype="f4")
            f.attrs["config"] = json.dumps(config.to_dict())
            f.attrs["bin"] = config.bin
            f.attrs["window"] = config.window
            for part in simulate(config, workers):
                sl = slice(part["start"], part["done"])
                d_pat[sl], d_lab[sl], d_idx[sl] = part["patterns"], part["labels"], part["sample_index"]
                d_rad[sl], d_cen[sl] = part["radii"], part["centers"]
                yield {"done": part["done"], "total": total}
            f.attrs["provenance"] = json.dumps(provenance(config.to_dict(), {"patterns": total}))


def load_dataset(path: str | Path) -> SpeckleData:
    """Read a dataset written by :func:`write_dataset` into memory."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    try:
        with h5py.File(path, "r") as f:
            if "patterns" not in f or "labels" not in f:
                raise InputFileError(path, "not a speckle dataset (needs /patterns and /labels)")
            config = json.loads(f.attrs.get("config", "{}"))
            config.setdefault("bin", int(f.attrs.get("bin", 1)))
            get = lambda k: f[k][()] if k in f else None  # noqa: E731
            labels = f["labels"][()]
            index = get("sample_index")
            return SpeckleData(f["patterns"][()], labels, index if index is not None else np.arange(labels.size),
                               config, get("radii"), get("centers"))
    except OSError as exc:
        raise InputFileError(path, f"cannot read HDF5: {exc}") from exc


def split_indices(labels: np.ndarray, test_per_class: int | None = None, test_fraction: float = 0.1,
                  val_fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train / validation / test indices as in seed 001.

    ``test_per_class`` given: the test set holds exactly that many random samples of every class
    (balanced, the seed's monodisperse protocol); otherwise a random ``test_fraction`` of all samples
    (the seed's polydisperse protocol). Validation: a random ``val_fraction`` of all samples, drawn from
    the rest. Sorted index arrays.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if test_per_class is not None:
        test = []
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            if members.size <= test_per_class:
                raise ConfigError(f"class {c} has {members.size} samples, not more than test_per_class={test_per_class}")
            test.append(rng.choice(members, test_per_class, replace=False))
        test = np.concatenate(test)
    else:
        test = rng.choice(labels.size, int(round(test_fraction * labels.size)), replace=False)
    rest = np.setdiff1d(np.arange(labels.size), test)
    n_val = int(round(val_fraction * labels.size))
    if n_val >= rest.size:
        raise ConfigError("validation fraction leaves no training data")
    val = rng.choice(rest, n_val, replace=False)
    train = np.setdiff1d(rest, val)
    return train, np.sort(val), np.sort(test)


def load_patterns(path: str | Path, key: str | None = None) -> tuple[np.ndarray, int]:
    """Raw patterns ``(H, W)`` or ``(N, H, W)`` and their binning from ``.npy``, ``.npz`` (``key`` or the
    first array), ``.h5/.hdf5/.cxi`` (``key``, default ``patterns``; ``attrs["bin"]`` honoured) or TIFF."""
    from ..io.validate import check_readable

    path = Path(path)
    check_readable(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            arr, b = np.load(path, allow_pickle=False), 1
        elif suffix == ".npz":
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:  # numpy leaks the file on a bad zip
                name = key or (z.files[0] if z.files else None)
                if name not in z.files:
                    raise InputFileError(path, f"no array {name!r} (has {', '.join(z.files)})")
                arr, b = z[name], 1
        elif suffix in (".h5", ".hdf5", ".cxi", ".nxs"):
            import h5py

            with h5py.File(path, "r") as f:
                name = key or "patterns"
                if name not in f:
                    raise InputFileError(path, f"no dataset {name!r}; pass its HDF5 path")
                arr, b = f[name][()], int(f.attrs.get("bin", 1)) if name == "patterns" else 1
        elif suffix in (".tif", ".tiff"):
            from ..io.arrays import read_tiff_movie

            movie = read_tiff_movie(path)
            arr, b = movie.frames(0, movie.n_frames), 1
            if movie.n_frames == 1:
                arr = arr[0]
        else:
            raise InputFileError(path, "unsupported pattern file type (use .npy, .npz, .h5 or .tif)")
    except CXDIError:
        raise
    except MemoryError as exc:
        raise InputFileError(path, "declares more data than fits in memory; the file is probably corrupt") from exc
    except Exception as exc:  # noqa: BLE001 - numpy/h5py/zip raise many types for corrupt files
        raise InputFileError(path, f"cannot read: {type(exc).__name__}: {exc}") from exc
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3) or not np.issubdtype(arr.dtype, np.number) or min(arr.shape[-2:]) < 2:
        raise InputFileError(path, f"expected numeric patterns (H, W) or (N, H, W), got {arr.dtype} {arr.shape}")
    if np.iscomplexobj(arr):
        raise DataValidationError(f"{path}: speckle patterns must be real intensities, got complex data ({arr.dtype})")
    check_counts(arr, str(path))
    if not np.any(arr):
        raise DataValidationError(f"{path}: the patterns are zero everywhere")
    return arr.astype(np.float32), b
