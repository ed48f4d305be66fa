"""Shared fixtures. torch is imported before Qt (napari) on purpose."""

from __future__ import annotations

import os

import torch  # noqa: F401  (import before Qt)
import numpy as np
import pytest

os.environ.setdefault("NAPARI_CXDI_TESTING", "1")

from hypothesis import settings  # noqa: E402

# CI runs the property tests on a fixed sequence of examples (reproducible); locally they explore anew
# each run. benchmarks/bench_robustness.py covers >= 1000 generated inputs beyond the tests.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
# Test models are tiny: one thread is fastest and avoids OpenMP contention between processes.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def small_aunp():
    """A small noisy AuNP movie: 8 frames of 64 x 64 (shared, read-only)."""
    from napari_cxdi.simulate import simulate_aunp

    return simulate_aunp(n_frames=8, size=64, seed=1)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
