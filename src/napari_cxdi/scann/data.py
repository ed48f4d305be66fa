"""Compatibility module: SCANN data code now lives in :mod:`.datasets` (structures, QM9, files,
splits, cache), :mod:`.environments` (featurisation) and :mod:`.batching` (padded batches)."""

from .batching import batches, collate  # noqa: F401
from .datasets import (  # noqa: F401
    HARTREE_TO_EV,
    QM9_PROPERTIES,
    QM9_SIZE,
    Structures,
    _atomic_savez,
    _qm9_arrays,
    _qm9_dir,
    cache_dir,
    load_qm9,
    load_structures,
    qm9_subset_indices,
    read_atoms,
    split_indices,
    structures_from_atoms,
)
from .environments import EnvironmentSet, _hash_structures, _ranges, featurize  # noqa: F401
