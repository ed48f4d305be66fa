"""Qt-free molecule-view helpers: bonds, GA colour scaling, picking geometry, examples, prediction."""

import numpy as np
import pytest

from napari_cxdi import molecules as mol
from napari_cxdi.errors import ConfigError


def test_bonds_from_covalent_radii():
    c60 = mol.example("C60 (fullerene)")[0]
    bonds = mol.detect_bonds(c60.numbers, c60.positions)
    assert bonds.shape == (90, 2) and np.all(bonds[:, 0] < bonds[:, 1])
    assert np.all(np.bincount(bonds.ravel(), minlength=60) == 3)  # sp2 carbon: three bonds each
    ethanol = mol.example("ethanol")[0]
    assert len(mol.detect_bonds(ethanol.numbers, ethanol.positions)) == 8
    # pulled apart beyond the covalent cut-off -> no bond
    assert len(mol.detect_bonds([6, 6], [[0, 0, 0], [0, 0, 2.5]])) == 0
    assert len(mol.detect_bonds([6, 6], [[0, 0, 0], [0, 0, 1.5]])) == 1


def test_cylinders_and_element_styles():
    eth = mol.example("ethanol")[0]
    bonds = mol.detect_bonds(eth.numbers, eth.positions)
    colors = mol.element_colors(eth.numbers)
    v, f, c = mol.bond_cylinders(eth.positions, bonds, colors, sides=6)
    assert v.shape == (2 * len(bonds) * 12, 3) and f.shape == (2 * len(bonds) * 12, 3) and f.max() == len(v) - 1
    assert len(c) == len(v)
    radii = mol.atom_radii(eth.numbers)
    assert radii[eth.numbers == 8][0] > radii[eth.numbers == 1][0]
    assert not np.allclose(colors[eth.numbers == 8][0], colors[eth.numbers == 6][0])


def test_ga_scaling_modes():
    ga = np.array([0.1, 0.2, 0.3, 0.4])
    rel = mol.scale_scores(ga, mol.SCALINGS[0], [ga, np.array([0.25, 0.25, 0.25, 0.25])])
    np.testing.assert_allclose(rel.values, ga * 4)
    assert rel.limits == pytest.approx((0.4, 1.6))  # shared over frames
    mm = mol.scale_scores(ga, mol.SCALINGS[1])
    assert mm.limits == pytest.approx((0.1, 0.4))
    fixed = mol.scale_scores(ga, mol.SCALINGS[2], fixed=(0.0, 2.0))
    assert fixed.limits == (0.0, 2.0)
    with pytest.raises(ConfigError, match="min < max"):
        mol.scale_scores(ga, mol.SCALINGS[2], fixed=(1.0, 1.0))
    with pytest.raises(ConfigError, match="unknown GA scaling"):
        mol.scale_scores(ga, "log")
    flat = mol.scale_scores(np.full(5, 0.2), mol.SCALINGS[1])
    assert flat.limits[1] > flat.limits[0]
    colors = mol.map_colors(mm.values, mm.limits, "viridis")
    assert colors.shape == (4, 4) and len({tuple(c) for c in colors.round(4)}) == 4
    np.testing.assert_allclose(mol.map_colors([-5.0, 9.0], (0, 1))[[0, 1]], mol.map_colors([0.0, 1.0], (0, 1)))
    with pytest.raises(ConfigError):
        mol.map_colors([0.0], (0, 1), "no-such-map")


def test_picking_geometry():
    xy = np.array([[10.0, 10.0], [12.0, 10.0], [50.0, 50.0]])
    depth = np.array([0.5, 0.2, 0.1])
    assert mol.pick_atom(xy, depth, np.full(3, 4.0), (11, 10)) == 1  # both hit: the nearer one
    assert mol.pick_atom(xy, depth, np.full(3, 4.0), (30, 30)) is None
    assert mol.pick_atom(xy, depth, np.full(3, 4.0), (3, 10)) == 0
    pos = np.array([[0, 0, 5.0], [0, 0, 10.0], [3, 0, 2.0]])
    r = np.full(3, 0.5)
    assert mol.ray_pick([0, 0, 0], [0, 0, 1], pos, r) == 0
    assert mol.ray_pick([0, 0, 20], [0, 0, -1], pos, r) == 1
    assert mol.ray_pick([0, 0, 0], [0, 1, 0], pos, r) is None


def test_examples_are_generated_deterministically():
    a, b = mol.deformed_fullerene(seed=3), mol.deformed_fullerene(seed=3)
    assert len(a) == 12 and all(len(f) == 60 for f in a)
    np.testing.assert_array_equal(a[4].positions, b[4].positions)
    assert not np.allclose(a[0].positions, a[3].positions)
    for name in mol.EXAMPLES:
        frames = mol.example(name)
        assert frames and set(frames[0].numbers) <= {1, 6, 7, 8, 9}
    with pytest.raises(ConfigError, match="unknown example"):
        mol.example("nope")
    assert len(mol.load_frames("benzene")[0]) == 12
    with pytest.raises(ConfigError):
        mol.load_frames([1, 2])


def test_iter_predict_yields_progress_and_neighbours():
    frames = mol.example("ethanol") + mol.example("acetic acid") + mol.example("pyridine")
    gen = mol.iter_predict("qm9-homo", frames, chunk=2)
    events = []
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        predictor, results = stop.value
    assert [e["done"] for e in events] == [0, 2, 3]
    assert predictor.target_names == ["homo"] and len(results) == 3
    assert np.isclose(results[0].ga_scores.sum(), 1.0, atol=1e-4)
    nb = mol.neighbours_of(results[0], 0)
    assert nb.size > 0 and 0 not in nb
    text = mol.atom_info(frames[0], 0, results[0])
    assert "atom 0" in text and "GA" in text and "Voronoi neighbours" in text
