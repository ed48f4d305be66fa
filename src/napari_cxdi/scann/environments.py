"""Featurisation: Voronoi environments of many structures in flat arrays, computed in parallel
and cached on disk (see :mod:`.voronoi` for the environment of one structure)."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataValidationError
from .datasets import Structures, _atomic_savez, cache_dir
from .voronoi import LocalEnvironment, VoronoiConfig, local_environment


# ----------------------------------------------------------------------------------------------
# featurisation
# ----------------------------------------------------------------------------------------------
@dataclass
class EnvironmentSet:
    """Voronoi environments of many structures in flat arrays (fast to slice and batch).

    Atoms of structure ``s`` are ``atom_ptr[s]:atom_ptr[s+1]``, its neighbour pairs
    ``edge_ptr[s]:edge_ptr[s+1]`` with ``center``/``neighbor`` local to the structure.
    """

    numbers: np.ndarray
    atom_ptr: np.ndarray
    center: np.ndarray
    neighbor: np.ndarray
    distance: np.ndarray
    solid_angle: np.ndarray
    edge_ptr: np.ndarray
    targets: np.ndarray
    target_names: list[str]
    target_units: list[str]

    def __len__(self) -> int:
        return len(self.atom_ptr) - 1

    @property
    def n_atoms(self) -> np.ndarray:
        return np.diff(self.atom_ptr)

    def environment(self, s: int) -> LocalEnvironment:
        a0, a1, e0, e1 = self.atom_ptr[s], self.atom_ptr[s + 1], self.edge_ptr[s], self.edge_ptr[s + 1]
        return LocalEnvironment(self.numbers[a0:a1], np.zeros((a1 - a0, 3)), self.center[e0:e1],
                                self.neighbor[e0:e1], self.distance[e0:e1], self.solid_angle[e0:e1],
                                np.zeros((e1 - e0, 3), dtype=np.int64))

    def subset(self, idx: Sequence[int]) -> "EnvironmentSet":
        idx = np.asarray(idx, dtype=int)
        na, ne = np.diff(self.atom_ptr)[idx], np.diff(self.edge_ptr)[idx]
        aidx = _ranges(self.atom_ptr[idx], na)
        eidx = _ranges(self.edge_ptr[idx], ne)
        return EnvironmentSet(
            self.numbers[aidx], np.concatenate([[0], np.cumsum(na)]), self.center[eidx], self.neighbor[eidx],
            self.distance[eidx], self.solid_angle[eidx], np.concatenate([[0], np.cumsum(ne)]),
            self.targets[idx], list(self.target_names), list(self.target_units))

    def arrays(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if isinstance(v, np.ndarray)}
        d["target_names"] = np.array(self.target_names, dtype=str)
        d["target_units"] = np.array(self.target_units, dtype=str)
        return d

    @classmethod
    def from_arrays(cls, d) -> "EnvironmentSet":
        return cls(d["numbers"], d["atom_ptr"], d["center"], d["neighbor"], d["distance"], d["solid_angle"],
                   d["edge_ptr"], d["targets"], [str(s) for s in d["target_names"]],
                   [str(s) for s in d["target_units"]])

    @classmethod
    def from_environments(cls, envs: Sequence[LocalEnvironment], targets: np.ndarray | None = None,
                          target_names: Sequence[str] = (), target_units: Sequence[str] = ()) -> "EnvironmentSet":
        na = np.array([e.n_atoms for e in envs], dtype=np.int64)
        ne = np.array([len(e.center) for e in envs], dtype=np.int64)
        cat = lambda name, dt: (np.concatenate([getattr(e, name) for e in envs]).astype(dt)  # noqa: E731
                                if envs else np.zeros(0, dt))
        if targets is None:
            targets = np.zeros((len(envs), 0))
        return cls(cat("numbers", np.int64), np.concatenate([[0], np.cumsum(na)]), cat("center", np.int64),
                   cat("neighbor", np.int64), cat("distance", np.float32), cat("solid_angle", np.float32),
                   np.concatenate([[0], np.cumsum(ne)]), np.asarray(targets, dtype=np.float64),
                   list(target_names), list(target_units))


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each pair (vectorised)."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offs = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return offs + np.arange(total)


def _featurize_one(args) -> LocalEnvironment:
    numbers, positions, cell, cfg = args
    if cell is None:
        return local_environment((numbers, positions), cfg)
    return local_environment((numbers, positions, cell, (True, True, True)), cfg)


def _featurize_chunk(args):
    items, cfg = args
    out = []
    for k, (numbers, positions, cell) in items:
        try:
            out.append((k, _featurize_one((numbers, positions, cell, cfg)), None))
        except DataValidationError as exc:
            out.append((k, None, str(exc)))
    return out


def _hash_structures(structures: Structures, cfg: VoronoiConfig) -> str:
    h = hashlib.sha1(repr(sorted(asdict(cfg).items())).encode())
    h.update(b"v2-isolated")
    for z, x, c in zip(structures.numbers, structures.positions, structures.cells):
        h.update(np.ascontiguousarray(z, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(x, dtype=np.float64).tobytes())
        h.update(b"c" if c is None else np.ascontiguousarray(c, dtype=np.float64).tobytes())
    return h.hexdigest()[:20]


def featurize(structures: Structures, config: VoronoiConfig | None = None, n_jobs: int | None = None,
              cache: bool | str | os.PathLike = True, progress=None) -> EnvironmentSet:
    """Voronoi environments of all structures, computed in parallel and cached on disk.

    ``n_jobs``: worker processes (default: all cores, 1 for small sets); ``cache``: True for the
    default cache folder, a folder, or False. ``progress(done, total)`` is called per chunk.
    Raises :class:`DataValidationError` naming the first invalid structure.
    """
    cfg = config or VoronoiConfig()
    path = None
    if cache:
        folder = cache_dir() if cache is True else Path(cache)
        path = folder / f"env_{_hash_structures(structures, cfg)}.npz"
        if path.exists():
            with np.load(path) as f:
                env = EnvironmentSet.from_arrays({k: f[k] for k in f.files})
            env.targets = np.asarray(structures.targets, dtype=np.float64)
            env.target_names, env.target_units = list(structures.target_names), list(structures.target_units)
            return env
    n = len(structures)
    items = list(enumerate(zip(structures.numbers, structures.positions, structures.cells)))
    n_jobs = n_jobs or (os.cpu_count() or 1)
    n_jobs = 1 if n < 64 else max(1, min(n_jobs, n // 32))
    chunk = max(1, min(256, n // (4 * n_jobs) or 1))
    chunks = [(items[i:i + chunk], cfg) for i in range(0, n, chunk)]
    results: list = [None] * n
    done = 0
    if n_jobs == 1:
        iterator = map(_featurize_chunk, chunks)
        pool = None
    else:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        pool = ctx.Pool(n_jobs)
        iterator = pool.imap_unordered(_featurize_chunk, chunks)
    try:
        for out in iterator:
            for k, env, err in out:
                if err is not None:
                    sid = structures.ids[k] if structures.ids else k
                    raise DataValidationError(f"structure {sid}: {err}")
                results[k] = env
            done += len(out)
            if progress is not None:
                progress(done, n)
    finally:
        if pool is not None:
            pool.terminate()
    env = EnvironmentSet.from_environments(results, structures.targets, structures.target_names,
                                           structures.target_units)
    if path is not None:
        _atomic_savez(path, **env.arrays())
    return env
