"""Voronoi local structures for SCANN: neighbours, solid angles, boxes, bad input."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from napari_cxdi.errors import DataValidationError, InputFileError
from napari_cxdi.scann import VoronoiConfig, all_faces, local_environment, read_atoms


def _neighbor_sets(env):
    return [set(env.neighbor[env.center == i].tolist()) for i in range(env.n_atoms)]


def test_cube_corners_have_three_edge_neighbours():
    a = 1.5
    corners = np.array([[x, y, z] for x in (0, a) for y in (0, a) for z in (0, a)], dtype=float)
    env = local_environment(Atoms("C8", positions=corners))
    for i, nbrs in enumerate(_neighbor_sets(env)):
        expected = {j for j in range(8) if abs(np.linalg.norm(corners[j] - corners[i]) - a) < 1e-9}
        assert nbrs == expected
    np.testing.assert_allclose(env.distance, a)
    np.testing.assert_allclose(env.solid_angle, env.solid_angle[0], rtol=1e-6)  # all equivalent faces


def test_methane_carbon_sees_four_hydrogens_and_cells_close():
    m = molecule("CH4")
    env = local_environment(m)
    nb = _neighbor_sets(env)
    assert nb[0] == {1, 2, 3, 4}
    assert all(0 in nb[i] for i in range(1, 5))
    # C's cell is enclosed by the four H faces: a quarter of the sphere each
    np.testing.assert_allclose(env.solid_angle[env.center == 0], np.pi, rtol=1e-6)
    full = all_faces(m)
    assert full.open_solid_angle[0] == pytest.approx(0.0, abs=1e-12)  # the carbon's cell is closed
    faces = np.bincount(full.center, weights=full.solid_angle)
    np.testing.assert_allclose(faces + full.open_solid_angle, 4 * np.pi, rtol=1e-12)


@pytest.mark.parametrize("name", ["C6H6", "CH3CH2OH", "H2O", "CO2", "HCN", "CH4"])
def test_faces_plus_open_part_of_every_cell_sum_to_4pi(name):
    """Isolated molecules: the outer atoms' cells are unbounded; faces + open solid angle = 4 pi
    (planar C6H6/H2O and linear CO2/HCN take the flat/collinear dual branches)."""
    m = molecule(name)
    full = all_faces(m)
    faces = np.bincount(full.center, weights=full.solid_angle, minlength=len(m))
    np.testing.assert_allclose(faces + full.open_solid_angle, 4 * np.pi, rtol=1e-12)
    assert np.all(full.offset == 0)


def test_simple_closed_forms():
    # two atoms: the bisector plane is a whole half-space for each -> 2 pi
    env = all_faces(Atoms("CO", positions=[[0, 0, 0], [1.13, 0, 0]]))
    np.testing.assert_allclose(env.solid_angle, 2 * np.pi, rtol=1e-12)
    # three collinear atoms: the middle one has two half-space faces, nothing open
    env = all_faces(Atoms("OCO", positions=[[-1.16, 0, 0], [0, 0, 0], [1.16, 0, 0]]))
    np.testing.assert_allclose(env.solid_angle[env.center == 1], 2 * np.pi, rtol=1e-12)
    assert env.open_solid_angle[1] == pytest.approx(0.0, abs=1e-12)
    # square of 4 atoms (planar): in the plane, a corner's cell is a quadrant; each edge neighbour's
    # face spans 135 degrees of in-plane directions (a lune of 2 x 3 pi / 4 sr), the open part 90
    # degrees (pi sr); the diagonal atom is no face
    sq = np.array([[0, 0, 0], [1.5, 0, 0], [1.5, 1.5, 0], [0, 1.5, 0]], float)
    env = all_faces(Atoms("C4", positions=sq))
    assert {tuple(x) for x in zip(env.center, env.neighbor)} == {
        (0, 1), (0, 3), (1, 0), (1, 2), (2, 1), (2, 3), (3, 0), (3, 2)}
    np.testing.assert_allclose(env.solid_angle, 1.5 * np.pi, rtol=1e-12)
    np.testing.assert_allclose(env.open_solid_angle, np.pi, rtol=1e-12)


def test_cutoffs_are_applied():
    env = local_environment(molecule("CH3CH2OH"))
    ratio = env.solid_angle_ratio()
    assert env.distance.max() <= 4.0
    assert env.solid_angle.min() >= 0.4
    assert ratio.min() >= 0.2


@pytest.mark.parametrize("crystal,n_expected", [
    (bulk("Cu", "fcc", a=3.6), 12), (bulk("NaCl", "rocksalt", a=5.64), 6), (bulk("Si", "diamond", a=5.43), 4),
])
def test_crystals_use_their_lattice(crystal, n_expected):
    crystal.positions += [7.3, -3.1, 12.0]  # atoms outside the cell are wrapped, offsets stay right
    env = local_environment(crystal)
    assert np.all(np.bincount(env.center) == n_expected)
    full = all_faces(crystal)
    np.testing.assert_allclose(np.bincount(full.center, weights=full.solid_angle), 4 * np.pi, rtol=1e-9)
    pos, cell = crystal.get_positions(), crystal.cell[:]
    d = np.linalg.norm(pos[env.neighbor] + env.offset @ cell - pos[env.center], axis=1)
    np.testing.assert_allclose(d, env.distance, atol=1e-9)


def _chain(n=12, spacing=1.3):
    """A long zig-zag carbon chain (about 14 Å long)."""
    pos = np.array([[i * spacing, 0.4 * (i % 2), 0.0] for i in range(n)])
    return Atoms(f"C{n}", positions=pos)


def test_long_molecule_has_no_false_neighbours():
    chain = _chain()
    env = local_environment(chain)
    assert np.all(env.offset == 0)
    pos = chain.get_positions()
    d = np.linalg.norm(pos[env.neighbor] - pos[env.center], axis=1)
    np.testing.assert_allclose(d, env.distance, atol=1e-9)  # every neighbour is a real atom


def test_legacy_box_creates_false_neighbours_default_box_does_not():
    # 8 Å long molecule: in the official 10 Å box its ends are 2 Å apart through the boundary
    chain = _chain(n=7, spacing=1.33)
    legacy = local_environment(chain, VoronoiConfig(legacy_box=True))
    default = local_environment(chain)
    end_to_end_legacy = {frozenset((i, j)) for i, j in zip(legacy.center, legacy.neighbor)}
    end_to_end_default = {frozenset((i, j)) for i, j in zip(default.center, default.neighbor)}
    assert frozenset((0, 6)) in end_to_end_legacy
    assert np.any(legacy.offset != 0)  # the false neighbour is a periodic image
    assert frozenset((0, 6)) not in end_to_end_default
    assert np.all(default.offset == 0)


def test_rotation_translation_and_order_invariance_of_features():
    m = molecule("CH3CH2OH")
    env = local_environment(m)
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    moved = m.copy()
    moved.positions = m.positions @ q.T + [3.0, -2.0, 7.0]
    perm = rng.permutation(len(m))
    moved = moved[perm]
    env2 = local_environment(moved)
    inv = np.argsort(perm)  # original atom i is moved atom inv[i]
    for i in range(len(m)):
        a = sorted(zip(env.neighbor[env.center == i], np.round(env.solid_angle[env.center == i], 6)))
        b = sorted(zip(perm[env2.neighbor[env2.center == inv[i]]],
                       np.round(env2.solid_angle[env2.center == inv[i]], 6)))
        assert [x for x, _ in a] == [x for x, _ in b]
        np.testing.assert_allclose([y for _, y in a], [y for _, y in b], atol=1e-5)


def test_bad_structures_raise_typed_errors(tmp_path):
    with pytest.raises(DataValidationError, match="at least 2 atoms"):
        local_environment(Atoms("C", positions=[[0, 0, 0]]))
    with pytest.raises(DataValidationError, match="overlap"):
        local_environment(Atoms("CH2", positions=[[0, 0, 0], [1, 0, 0], [1, 0, 0.01]]))
    with pytest.raises(DataValidationError, match="unknown element"):
        local_environment(Atoms(numbers=[6, 0], positions=[[0, 0, 0], [1.2, 0, 0]]))
    bad = tmp_path / "bad.xyz"
    bad.write_text("2\n\nC 0 0 0\nQq 1 0 0\n")
    with pytest.raises(InputFileError):
        read_atoms(bad)
    with pytest.raises(InputFileError, match="does not exist"):
        read_atoms(tmp_path / "missing.xyz")


def test_ase_database_and_trajectory_with_properties(tmp_path):
    import ase.db
    import ase.io

    from napari_cxdi.errors import DataValidationError as DVE
    from napari_cxdi.scann import load_structures

    mols = [molecule(n) for n in ("CH4", "H2O", "C6H6")]
    with ase.db.connect(str(tmp_path / "set.db")) as db:
        for k, m in enumerate(mols):
            db.write(m, gap=1.5 + k)
    s = load_structures(tmp_path / "set.db", ["gap"])
    np.testing.assert_allclose(s.targets[:, 0], [1.5, 2.5, 3.5])
    assert [len(z) for z in s.numbers] == [5, 3, 12]

    for k, m in enumerate(mols):
        m.info["energy_gap"] = float(k)
    for ext in ("traj", "extxyz"):  # multi-frame files are trajectories
        ase.io.write(tmp_path / f"t.{ext}", mols)
        s = load_structures(tmp_path / f"t.{ext}", ["energy_gap"])
        np.testing.assert_allclose(s.targets[:, 0], [0, 1, 2])
        with pytest.raises(DVE, match="found in none"):
            load_structures(tmp_path / f"t.{ext}", ["no_such_property"])
