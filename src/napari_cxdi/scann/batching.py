"""Padded batches of Voronoi environments for the SCANN models."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .environments import EnvironmentSet, _ranges


# ----------------------------------------------------------------------------------------------
# batching
# ----------------------------------------------------------------------------------------------
def collate(envs: EnvironmentSet, idx: Sequence[int], device: torch.device | str = "cpu") -> dict:
    """Batch of structures ``idx``: atoms padded to (B, M), neighbour pairs as a flat edge list.

    Atom tensors: ``z`` (B, M) atomic numbers (0 = padding), ``atom_mask`` (B, M), ``n_atoms`` (B,),
    ``y`` (B, T) targets. Edge tensors (E,): ``edge_center``/``edge_neighbor`` flat atom slots
    ``b * M + i``, ``edge_slot`` flat index into (B, M, K) (K = most neighbours of any atom),
    ``distance`` Å, ``solid_angle`` sr, ``solid_angle_ratio`` Omega_ij / max_k Omega_ik.
    Padded views: ``neighbors`` (B, M, K) atom index within the structure, ``neighbor_mask`` (B, M, K).
    """
    idx = np.asarray(idx, dtype=int)
    B = len(idx)
    na = np.diff(envs.atom_ptr)[idx]
    ne = np.diff(envs.edge_ptr)[idx]
    M = int(na.max())
    aidx = _ranges(envs.atom_ptr[idx], na)
    arow = np.repeat(np.arange(B), na)
    acol = aidx - np.repeat(envs.atom_ptr[idx], na)
    z = np.zeros((B, M), dtype=np.int64)
    z[arow, acol] = envs.numbers[aidx]

    eidx = _ranges(envs.edge_ptr[idx], ne)
    eb = np.repeat(np.arange(B), ne)
    c = envs.center[eidx]
    j = envs.neighbor[eidx]
    center = eb * M + c  # flat atom slot of each edge's centre (non-decreasing)
    if len(center):
        first = np.concatenate([[True], center[1:] != center[:-1]])
        starts = np.flatnonzero(first)
        rank = np.arange(len(center)) - np.repeat(starts, np.diff(np.concatenate([starts, [len(center)]])))
        K = int(rank.max()) + 1
    else:
        rank, K = np.zeros(0, dtype=np.int64), 1
    slot = center * K + rank
    omega = envs.solid_angle[eidx].astype(np.float32)
    mx = np.zeros(B * M, dtype=np.float32)
    np.maximum.at(mx, center, omega)
    nbr = np.zeros(B * M * K, dtype=np.int64)
    nbr[slot] = j
    mask = np.zeros(B * M * K, dtype=bool)
    mask[slot] = True
    out = {
        "z": z, "atom_mask": z > 0, "n_atoms": na, "y": envs.targets[idx].astype(np.float32),
        "edge_center": center, "edge_neighbor": eb * M + j, "edge_slot": slot,
        "distance": envs.distance[eidx].astype(np.float32), "solid_angle": omega,
        "solid_angle_ratio": omega / np.maximum(mx[center], 1e-12),
        "neighbors": nbr.reshape(B, M, K), "neighbor_mask": mask.reshape(B, M, K),
    }
    return {k: torch.as_tensor(v).to(device) for k, v in out.items()}


def batches(envs: EnvironmentSet, batch_size: int, shuffle: bool = False, seed: int | None = None,
            device: torch.device | str = "cpu", indices: np.ndarray | None = None):
    """Iterate over padded batches (optionally shuffled, seeded); yields ``(indices, batch)``."""
    order = np.arange(len(envs)) if indices is None else np.asarray(indices)
    if shuffle:
        order = np.random.default_rng(seed).permutation(order)
    for i in range(0, len(order), batch_size):
        sel = order[i:i + batch_size]
        yield sel, collate(envs, sel, device)
