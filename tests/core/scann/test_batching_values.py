"""Padded SCANN batches built by hand: every tensor of a two-structure batch, edge-less structures,
batch order and seeded shuffling."""

import numpy as np
import pytest
import torch

from napari_cxdi.scann.batching import batches, collate
from napari_cxdi.scann.environments import EnvironmentSet

A = np.array


def envset():
    # S0: O-H-H (O bonded to both H), S1: C-H, S2: two atoms without any neighbour pair
    return EnvironmentSet(
        numbers=A([8, 1, 1, 6, 1, 9, 9]), atom_ptr=A([0, 3, 5, 7]),
        center=A([0, 0, 1, 2, 0, 1]), neighbor=A([1, 2, 0, 0, 1, 0]),
        distance=A([1.0, 1.5, 1.0, 1.5, 1.1, 1.1]), solid_angle=A([2.0, 1.0, 2.0, 1.0, 3.0, 3.0]),
        edge_ptr=A([0, 4, 6, 6]), targets=A([[1.0, -1.0], [2.0, -2.0], [3.0, -3.0]]),
        target_names=["a", "b"], target_units=["eV", "eV"])


def test_collate_two_structures():
    b = collate(envset(), [1, 0])
    assert all(isinstance(v, torch.Tensor) for v in b.values())
    np.testing.assert_array_equal(b["z"], [[6, 1, 0], [8, 1, 1]])
    assert b["z"].dtype == torch.int64
    np.testing.assert_array_equal(b["atom_mask"], [[True, True, False], [True, True, True]])
    np.testing.assert_array_equal(b["n_atoms"], [2, 3])
    np.testing.assert_array_equal(b["y"], [[2, -2], [1, -1]])
    assert b["y"].dtype == torch.float32
    np.testing.assert_array_equal(b["edge_center"], [0, 1, 3, 3, 4, 5])
    np.testing.assert_array_equal(b["edge_neighbor"], [1, 0, 4, 5, 3, 3])
    np.testing.assert_array_equal(b["edge_slot"], [0, 2, 6, 7, 8, 10])  # K = 2 (atom 0 of S0)
    np.testing.assert_allclose(b["distance"], [1.1, 1.1, 1.0, 1.5, 1.0, 1.5])
    np.testing.assert_allclose(b["solid_angle"], [3, 3, 2, 1, 2, 1])
    np.testing.assert_allclose(b["solid_angle_ratio"], [1, 1, 1, 0.5, 1, 1])
    for k in ("distance", "solid_angle", "solid_angle_ratio"):
        assert b[k].dtype == torch.float32
    assert b["neighbors"].shape == (2, 3, 2)
    np.testing.assert_array_equal(b["neighbors"], [[[1, 0], [0, 0], [0, 0]], [[1, 2], [0, 0], [0, 0]]])
    np.testing.assert_array_equal(b["neighbor_mask"], [[[1, 0], [1, 0], [0, 0]], [[1, 1], [1, 0], [1, 0]]])
    assert b["neighbor_mask"].dtype == torch.bool and b["atom_mask"].dtype == torch.bool


def test_collate_without_edges_and_single():
    b = collate(envset(), [2])
    np.testing.assert_array_equal(b["z"], [[9, 9]])
    assert b["edge_center"].numel() == 0 and b["neighbors"].shape == (1, 2, 1)
    assert not b["neighbor_mask"].any() and b["edge_slot"].dtype == torch.int64
    b = collate(envset(), [2, 1])
    np.testing.assert_array_equal(b["edge_center"], [2, 3])  # S1 is second: slots b * M + i
    np.testing.assert_array_equal(b["edge_neighbor"], [3, 2])
    np.testing.assert_array_equal(b["edge_slot"], [2, 3])
    np.testing.assert_array_equal(b["neighbors"], [[[0], [0]], [[1], [0]]])
    b = collate(envset(), [0])
    np.testing.assert_array_equal(b["edge_slot"], [0, 1, 2, 4])
    np.testing.assert_allclose(b["solid_angle_ratio"], [1, 0.5, 1, 1])


def test_zero_solid_angles_give_zero_ratio():
    e = envset()
    e.solid_angle = np.zeros(6)
    b = collate(e, [0])
    assert torch.all(b["solid_angle_ratio"] == 0)


def test_batches_order_and_shuffle():
    e = envset()
    got = [(sel.tolist(), b["n_atoms"].tolist()) for sel, b in batches(e, 2)]
    assert got == [([0, 1], [3, 2]), ([2], [2])]
    got = [sel.tolist() for sel, _ in batches(e, 5, indices=A([2, 0]))]
    assert got == [[2, 0]]
    shuffled = [sel.tolist() for sel, _ in batches(e, 1, shuffle=True, seed=3)]
    assert shuffled == [[int(i)] for i in np.random.default_rng(3).permutation(3)]
    assert sorted(sum(shuffled, [])) == [0, 1, 2]
    again = [sel.tolist() for sel, _ in batches(e, 1, shuffle=True, seed=3)]
    assert again == shuffled
    sub = [sel.tolist() for sel, _ in batches(e, 1, shuffle=True, seed=3, indices=A([1, 2]))]
    assert sub == [[int(i)] for i in np.random.default_rng(3).permutation(A([1, 2]))]
    many = {tuple(sum((s.tolist() for s, _ in batches(e, 3, shuffle=True, seed=k)), [])) for k in range(20)}
    assert len(many) > 1  # the seed matters
    sel, b = next(iter(batches(e, 3, device="cpu")))
    assert b["z"].device.type == "cpu"
    assert list(batches(e, 2, indices=A([], int))) == []
    with pytest.raises(ValueError):
        list(batches(e, 0))


# -- reviewed survivors of the first mutation run ------------------------------------------------------

def test_dtypes_small_angles_device_and_default_order():
    b = collate(envset(), [0, 1])
    assert b["neighbors"].dtype == torch.int64 and b["edge_neighbor"].dtype == torch.int64
    e = envset()
    e.solid_angle = np.array([0.5, 0.25, 0.5, 0.25, 0.3, 0.3])  # every solid angle below 1 sr
    np.testing.assert_allclose(collate(e, [0])["solid_angle_ratio"], [1.0, 0.5, 1.0, 1.0])
    meta = collate(envset(), [0], device="meta")  # tensors go to the device asked for
    assert all(v.device.type == "meta" for v in meta.values())
    assert all(b["z"].device.type == "meta" for _, b in batches(envset(), 2, device="meta"))
    many = envset().subset([0, 1, 2] * 7)
    assert np.concatenate([s for s, _ in batches(many, 1)]).tolist() == list(range(21))  # no shuffle by default
