"""SCANN / SCANN+ model: GA scores, masking, invariances, parameter budget."""

import numpy as np
import pytest
import torch
from ase.build import molecule

from napari_cxdi.errors import ConfigError
from napari_cxdi.scann import EnvironmentSet, ScannConfig, build_model, collate, local_environment

SMALL = dict(width=32, n_layers=2, n_heads=4, readout=32, dropout=0.0)

NAMES = ["CH4", "C6H6", "CH3CH2OH", "H2O", "CH3COOH"]


def _envs(atoms_list):
    return EnvironmentSet.from_environments([local_environment(a) for a in atoms_list],
                                            np.zeros((len(atoms_list), 1)), ["y"], ["eV"])


@pytest.fixture(scope="module")
def mols():
    return [molecule(n) for n in NAMES]


@pytest.mark.parametrize("variant", ["scann", "scann+"])
def test_ga_scores_sum_to_one_and_ignore_padding(mols, variant):
    torch.manual_seed(0)
    model = build_model(ScannConfig(variant=variant, **SMALL)).eval()
    envs = _envs(mols)
    batch = collate(envs, np.arange(len(mols)))
    out = model(batch, return_local_attention=True)
    ga = out.ga_scores
    assert ga.shape == batch["atom_mask"].shape
    torch.testing.assert_close(ga.sum(1), torch.ones(len(mols)))
    assert torch.all(ga[~batch["atom_mask"]] == 0)
    assert torch.all(ga[batch["atom_mask"]] > 0)
    # local attention: a softmax over each atom's real neighbours, zero on padded neighbours
    for a in out.local_attention:
        assert a.shape[:3] == batch["neighbor_mask"].shape
        assert torch.all(a[~batch["neighbor_mask"]] == 0)
        torch.testing.assert_close(a.sum(2)[batch["atom_mask"]], torch.ones_like(a.sum(2)[batch["atom_mask"]]))
    # padding does not leak: each molecule alone gives the same prediction and scores
    for s in range(len(mols)):
        alone = model(collate(envs, [s]))
        torch.testing.assert_close(alone.prediction[0], out.prediction[s], atol=1e-5, rtol=1e-5)
        n = len(mols[s])
        torch.testing.assert_close(alone.ga_scores[0, :n], ga[s, :n], atol=1e-6, rtol=1e-5)


def test_invariant_to_atom_order_rotation_and_translation():
    torch.manual_seed(1)
    model = build_model(ScannConfig(variant="scann+", **SMALL)).eval()
    m = molecule("CH3CH2OH")
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    perm = rng.permutation(len(m))
    moved = m.copy()
    moved.positions = m.positions @ q.T + [10.0, -4.0, 2.5]
    moved = moved[perm]
    out = model(collate(_envs([m, moved]), [0, 1]))
    torch.testing.assert_close(out.prediction[0], out.prediction[1], atol=1e-5, rtol=1e-5)
    ga0 = out.ga_scores[0, :len(m)]
    ga1 = out.ga_scores[1, :len(m)]
    torch.testing.assert_close(ga1, ga0[torch.as_tensor(perm)], atol=1e-6, rtol=1e-5)


def test_paper_sized_models_stay_below_one_million_parameters():
    for variant in ("scann", "scann+"):
        n = build_model(ScannConfig(variant=variant, width=128, n_layers=8, n_heads=8)).n_parameters()
        assert 100_000 < n < 1_000_000


def test_gradients_flow_and_are_finite(mols):
    model = build_model(ScannConfig(variant="scann+", **SMALL))
    batch = collate(_envs(mols), np.arange(len(mols)))
    out = model(batch)
    out.prediction.sum().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_bad_config_raises():
    with pytest.raises(ConfigError):
        ScannConfig(variant="scann++")
    with pytest.raises(ConfigError):
        ScannConfig(width=30, n_heads=4)
