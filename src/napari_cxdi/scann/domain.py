"""Applicability domain of a trained SCANN model: is a structure like the ones it learnt from?

A structure is out of domain, with a reason each, when it

- has elements that never occur in the training set,
- is periodic (a crystal) while the model was trained on isolated molecules,
- has more or fewer atoms, or heavy (non-H) atoms, than any training structure,
- has atomic environments far from all training environments, by two measures:
  (a) in embedding space: the distance of each atom's vector after the last local-attention layer
  (member 0) to its nearest training atom of the same element, divided by a per-element threshold,
  the ``quantile`` (default 99.9 %) of the same distance for held-out validation atoms; a ratio
  above 1 flags the atom; (b) in the discrete feature space of Voronoi neighbour compositions: the
  atom's signature (its element and how many Voronoi neighbours of each training element it has)
  seen fewer than ``min_signature_count`` times among all training atoms. (b) catches the unique
  molecules of QM9 (CH4, NH3, H2O: a C with exactly four H neighbours occurs once in QM9), whose
  predictions are far off although they are "inside" QM9.

The domain is stored as a plain dict in the model file (tensors for the reference vectors) and
used by :class:`DomainModel`. Out-of-domain predictions raise no error: they carry a
:class:`DomainReport` and emit an :class:`OutOfDomainWarning` naming the reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch


class OutOfDomainWarning(UserWarning):
    """A prediction was made for a structure outside the model's applicability domain."""


@dataclass
class DomainReport:
    """``in_domain``; ``reasons`` (human-readable, one per failed check); ``codes`` (machine-readable:
    ``elements``, ``periodic``, ``size``, ``environment``); ``atom_distance`` (N,) distance of each
    atom's environment to the training set divided by its threshold (NaN for unknown elements);
    ``flagged_atoms`` indices with a ratio above 1 or an unknown element."""

    in_domain: bool
    reasons: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)
    atom_distance: np.ndarray | None = None
    flagged_atoms: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"in_domain": self.in_domain, "reasons": list(self.reasons), "codes": list(self.codes),
                "flagged_atoms": [int(i) for i in self.flagged_atoms],
                "atom_distance": None if self.atom_distance is None else
                [None if not np.isfinite(v) else round(float(v), 4) for v in self.atom_distance]}

    def message(self) -> str:
        return "in the training domain" if self.in_domain else "; ".join(self.reasons)


#: Distance ratio counted for an atom whose element the model never saw (it has no reference vectors):
#: the domain threshold itself, a lower bound (such structures are flagged out of domain anyway).
UNKNOWN_ELEMENT_DISTANCE = 1.0


def structure_distance(atom_distance: np.ndarray | None) -> float:
    """One latent-space distance per structure: the mean over its atoms of the per-atom distance ratio
    (:meth:`DomainModel.atom_distance`: nearest training atom of the same element in the embedding
    space, divided by the element's threshold), unknown elements counted as
    :data:`UNKNOWN_ELEMENT_DISTANCE`. NaN without atom distances. Used by the sigma model
    (:class:`napari_cxdi.scann.uncertainty.SigmaModel`) as the distance to the training data."""
    if atom_distance is None or len(atom_distance) == 0:
        return float("nan")
    d = np.asarray(atom_distance, dtype=float)
    return float(np.mean(np.where(np.isfinite(d), d, UNKNOWN_ELEMENT_DISTANCE)))


def _symbols(zs) -> str:
    from ase.data import chemical_symbols

    return ", ".join(chemical_symbols[int(z)] for z in zs)


def _heavy(numbers: np.ndarray) -> int:
    return int(np.sum(np.asarray(numbers) > 1))


def environment_signatures(numbers: np.ndarray, center: np.ndarray, neighbor: np.ndarray,
                           elements: Sequence[int]) -> np.ndarray:
    """Per atom ``[Z, n_1, ..., n_E, n_other]``: its element and the number of Voronoi neighbours of
    each of ``elements`` (and of any other element). ``center``/``neighbor`` index ``numbers``."""
    elements = list(elements)
    lut = np.full(max(int(np.max(numbers, initial=0)), max(elements)) + 1, len(elements))
    lut[elements] = np.arange(len(elements))
    counts = np.zeros((len(numbers), len(elements) + 1), dtype=np.int64)
    np.add.at(counts, (np.asarray(center), lut[np.asarray(numbers)[np.asarray(neighbor)]]), 1)
    return np.concatenate([np.asarray(numbers, dtype=np.int64)[:, None], counts], axis=1)


def _sig_key(row) -> str:
    return f"{int(row[0])}:" + ",".join(str(int(v)) for v in row[1:])


def fit_domain(train_numbers: Sequence[np.ndarray], ref_numbers: Sequence[np.ndarray],
               ref_features: Sequence[np.ndarray], val_numbers: Sequence[np.ndarray],
               val_features: Sequence[np.ndarray], per_element: int = 2000, quantile: float = 0.999,
               seed: int = 0, periodic: bool = False, train_signatures: np.ndarray | None = None,
               min_signature_count: int = 3) -> dict:
    """Domain dict from the training structures (elements, sizes), reference atom vectors (a subset
    of training atoms, ``per_element`` kept per element), held-out atoms (thresholds) and, if given,
    the neighbour-composition signatures of all training atoms (:func:`environment_signatures`)."""
    from scipy.spatial import cKDTree

    elements = sorted({int(z) for zs in train_numbers for z in np.unique(zs)})
    sizes = np.array([len(z) for z in train_numbers])
    heavy = np.array([_heavy(z) for z in train_numbers])
    rz = np.concatenate([np.asarray(z) for z in ref_numbers])
    rf = np.concatenate(ref_features).astype(np.float32)
    vz = np.concatenate([np.asarray(z) for z in val_numbers])
    vf = np.concatenate(val_features).astype(np.float32)
    rng = np.random.default_rng(seed)
    reference, threshold, counts = {}, {}, {}
    for z in elements:
        pool = np.flatnonzero(rz == z)
        if pool.size == 0:
            continue
        keep = np.sort(rng.choice(pool, size=min(per_element, pool.size), replace=False))
        ref = rf[keep].astype(np.float16).astype(np.float32)  # stored as float16
        d, _ = cKDTree(ref).query(vf[vz == z], k=1)
        threshold[str(z)] = float(np.quantile(d, quantile)) if d.size else float("inf")
        reference[str(z)] = torch.from_numpy(ref.astype(np.float16))
        counts[str(z)] = int(d.size)
    signatures = None
    if train_signatures is not None:
        keys, cnt = np.unique(np.asarray(train_signatures), axis=0, return_counts=True)
        signatures = {"keys": [_sig_key(k) for k in keys], "counts": cnt.astype(int).tolist(),
                      "min_count": int(min_signature_count)}
    return {"elements": elements, "periodic": bool(periodic), "signatures": signatures,
            "n_atoms": [int(sizes.min()), int(sizes.max())], "n_heavy_atoms": [int(heavy.min()), int(heavy.max())],
            "reference": reference, "threshold": threshold, "quantile": float(quantile),
            "n_validation_atoms": counts, "embedding": "member 0, atom vector after the last local attention layer"}


class DomainModel:
    """Checks structures against a stored domain dict (see :func:`fit_domain`)."""

    def __init__(self, d: dict):
        self.d = d
        self.elements = set(int(z) for z in d["elements"])
        self.periodic = bool(d.get("periodic", False))
        self.n_atoms = tuple(d["n_atoms"])
        self.n_heavy = tuple(d["n_heavy_atoms"])
        self.threshold = {int(z): float(v) for z, v in d.get("threshold", {}).items()}
        self._ref = {int(z): np.asarray(v.float().numpy() if hasattr(v, "numpy") else v, dtype=np.float32)
                     for z, v in d.get("reference", {}).items()}
        self._trees: dict = {}
        sig = d.get("signatures")
        self._sig = dict(zip(sig["keys"], sig["counts"])) if sig else None
        self.min_signature_count = int(sig["min_count"]) if sig else 0

    def signature_counts(self, numbers: np.ndarray, center: np.ndarray, neighbor: np.ndarray) -> np.ndarray:
        """How often each atom's neighbour-composition signature occurs among the training atoms."""
        rows = environment_signatures(numbers, center, neighbor, sorted(self.elements))
        return np.array([self._sig.get(_sig_key(r), 0) for r in rows])

    @classmethod
    def from_dict(cls, d: dict) -> "DomainModel":
        return cls(d)

    def _tree(self, z: int):
        from scipy.spatial import cKDTree

        if z not in self._trees:
            self._trees[z] = cKDTree(self._ref[z])
        return self._trees[z]

    def atom_distance(self, numbers: np.ndarray, features: np.ndarray) -> np.ndarray:
        """Nearest-training-atom distance / threshold per atom (NaN where the element is unknown)."""
        out = np.full(len(numbers), np.nan)
        for z in np.unique(numbers):
            z = int(z)
            if z not in self._ref:
                continue
            sel = np.flatnonzero(numbers == z)
            d, _ = self._tree(z).query(np.asarray(features, np.float32)[sel], k=1)
            out[sel] = d / max(self.threshold[z], 1e-12)
        return out

    def structure_distance(self, numbers: np.ndarray, features: np.ndarray) -> float:
        """:func:`structure_distance` of one structure from its atom vectors (member 0)."""
        return structure_distance(self.atom_distance(np.asarray(numbers, dtype=int), features))

    def check(self, numbers, periodic: bool, features: np.ndarray | None = None,
              edges: tuple[np.ndarray, np.ndarray] | None = None) -> DomainReport:
        """Domain report of one structure; ``features`` (N, h) atom vectors of member 0 and ``edges``
        (center, neighbor) its Voronoi neighbour pairs enable the environment checks."""
        numbers = np.asarray(numbers, dtype=int)
        reasons, codes, flagged = [], [], set()
        unknown = sorted(set(np.unique(numbers).tolist()) - self.elements)
        if unknown:
            reasons.append(f"elements outside the training set: {_symbols(unknown)} "
                           f"(trained on {_symbols(sorted(self.elements))})")
            codes.append("elements")
            flagged.update(np.flatnonzero(np.isin(numbers, unknown)).tolist())
        if periodic and not self.periodic:
            reasons.append("periodic structure (crystal), but the model was trained on isolated molecules")
            codes.append("periodic")
        n, h = len(numbers), _heavy(numbers)
        size = []
        if not self.n_atoms[0] <= n <= self.n_atoms[1]:
            size.append(f"{n} atoms (training {self.n_atoms[0]}-{self.n_atoms[1]})")
        if not self.n_heavy[0] <= h <= self.n_heavy[1]:
            size.append(f"{h} heavy atoms (training {self.n_heavy[0]}-{self.n_heavy[1]})")
        if size:
            reasons.append("size outside the training range: " + ", ".join(size))
            codes.append("size")
        dist = None
        if features is not None and self._ref:
            dist = self.atom_distance(numbers, features)
            far = np.flatnonzero(dist > 1.0)
            if far.size:
                from ase.data import chemical_symbols

                worst = far[np.argsort(-dist[far])][:5]
                names = ", ".join(f"{int(i)} ({chemical_symbols[numbers[i]]}, {dist[i]:.1f}x)" for i in worst)
                more = f" and {far.size - worst.size} more" if far.size > worst.size else ""
                reasons.append(f"atomic environments far from all training environments: atoms {names}{more} "
                               f"(distance / threshold set on held-out data)")
                codes.append("environment")
                flagged.update(far.tolist())
        if edges is not None and self._sig is not None:
            counts = self.signature_counts(numbers, *edges)
            known = np.isin(numbers, sorted(self.elements))
            rare = np.flatnonzero(known & (counts < self.min_signature_count))
            if rare.size:
                from ase.data import chemical_symbols

                sig = environment_signatures(numbers, *edges, sorted(self.elements))
                els = sorted(self.elements)

                def describe(i):
                    parts = [f"{int(n)} {chemical_symbols[z]}" for z, n in zip(els, sig[i, 1:-1]) if n]
                    if sig[i, -1]:
                        parts.append(f"{int(sig[i, -1])} other")
                    return f"{int(i)} ({chemical_symbols[numbers[i]]} with {', '.join(parts) or 'no'} neighbours, " \
                           f"seen {int(counts[i])}x)"
                names = ", ".join(describe(i) for i in rare[:4])
                more = f" and {rare.size - 4} more" if rare.size > 4 else ""
                reasons.append(f"rare atomic environments (Voronoi neighbour composition seen fewer than "
                               f"{self.min_signature_count} times among the training atoms): atoms {names}{more}")
                if "environment" not in codes:
                    codes.append("environment")
                flagged.update(rare.tolist())
        return DomainReport(not reasons, reasons, codes, dist, sorted(flagged))
