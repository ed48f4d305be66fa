"""Shared fixtures of the SCANN tests."""

import pytest
import torch

from napari_cxdi.scann import ScannConfig, build_model


@pytest.fixture(scope="session")
def tiny_models():
    """Untrained 2-target (HOMO, LUMO) SCANN members, seeded 0..k-1, with a fixed target scaling."""

    def make(k: int = 3):
        models = []
        for seed in range(k):
            torch.manual_seed(seed)
            m = build_model(ScannConfig(width=16, n_layers=2, n_heads=2, z_embedding=8, readout=16, dropout=0.0,
                                        n_targets=2, target_names=["homo", "lumo"]))
            with torch.no_grad():
                m.target_mean.copy_(torch.tensor([-6.5, 0.5]))
                m.target_std.copy_(torch.tensor([0.6, 1.2]))
            models.append(m.eval())
        return models

    return make
