"""Voronoi neighbours and solid angles against hand-computed geometry (issue 20: values, not shapes).

Every expected number below is worked out on paper from the cell's bisector planes:
- a right triangle (planar dual: lunes = 2 x in-plane angles),
- the corners of a rectangular box (each cell is an octant-like region {x <= a/2, y <= b/2, z <= c/2}),
- an octahedron with a centre atom (the centre's cell is a cube, the outer cells square pyramids),
- a simple cubic and a CsCl crystal (cube and truncated-octahedron cells),
- two atoms in the legacy 10 Å box (square faces of a slab cell).
"""

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_cxdi.errors import ConfigError, DataValidationError
from napari_cxdi.scann import VoronoiConfig, all_faces, local_environment
from napari_cxdi.scann.voronoi import MAX_Z, LocalEnvironment, _triangle_solid_angles, validate_structure

PI = np.pi


def pairs(env):
    return {(int(i), int(j)): float(o) for i, j, o in zip(env.center, env.neighbor, env.solid_angle)}


def square_solid_angle(half_side, h):
    """Solid angle of a square of half side ``half_side`` seen from distance ``h`` on its axis."""
    return 4 * np.arctan(half_side ** 2 / (h * np.sqrt(2 * half_side ** 2 + h ** 2)))


# -- molecules --------------------------------------------------------------------------------------

def right_triangle(a=1.0, b=2.0):
    return Atoms("CNO", positions=[[0, 0, 0], [a, 0, 0], [0, b, 0]])


def test_right_triangle_lunes():
    a, b = 1.0, 2.0
    env = all_faces(right_triangle(a, b))
    f01 = PI + 2 * np.arctan(b / a)   # in-plane: 90 deg + atan(b/a), doubled
    f02 = PI + 2 * np.arctan(a / b)
    f12 = PI                          # the hypotenuse's bisector is seen over 90 deg from both ends
    expected = {(0, 1): f01, (1, 0): f01, (0, 2): f02, (2, 0): f02, (1, 2): f12, (2, 1): f12}
    got = pairs(env)
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-12), k
    np.testing.assert_allclose(env.open_solid_angle,
                               [PI, 2 * (PI - np.arctan(b / a)), 2 * (PI - np.arctan(a / b))], rtol=1e-12)
    np.testing.assert_allclose(env.distance, [1, 2, 1, np.sqrt(5), 2, np.sqrt(5)], rtol=1e-12)
    # sorted by centre, then neighbour; integer indices and zero offsets
    np.testing.assert_array_equal(env.center, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(env.neighbor, [1, 2, 0, 2, 0, 1])
    assert env.center.dtype == env.neighbor.dtype == env.offset.dtype == np.int64
    assert env.offset.shape == (6, 3) and not env.offset.any()
    assert env.n_atoms == 3
    np.testing.assert_array_equal(env.neighbors_of(1), [0, 2])
    np.testing.assert_array_equal(env.numbers, [6, 7, 8])
    np.testing.assert_allclose(env.solid_angle_ratio(), [1, f02 / f01, 1, f12 / f01, 1, f12 / f02], rtol=1e-12)


def test_solid_angle_ratio_of_a_hand_built_environment():
    env = LocalEnvironment(numbers=np.array([1, 1, 1]), positions=np.zeros((3, 3)),
                           center=np.array([0, 0, 2]), neighbor=np.array([1, 2, 0]),
                           distance=np.ones(3), solid_angle=np.array([2.0, 0.5, 3.0]),
                           offset=np.zeros((3, 3), int))
    np.testing.assert_allclose(env.solid_angle_ratio(), [1.0, 0.25, 1.0])
    np.testing.assert_array_equal(env.neighbors_of(0), [1, 2])
    assert env.neighbors_of(1).size == 0
    # an atom whose only face has zero solid angle: ratio 0, not NaN
    env.solid_angle = np.array([0.0, 0.0, 3.0])
    np.testing.assert_allclose(env.solid_angle_ratio(), [0.0, 0.0, 1.0])


@pytest.mark.parametrize("a,b,c", [(1.5, 1.5, 1.5), (1.2, 1.6, 2.0)])
def test_box_corners(a, b, c):
    corners = np.array([[x, y, z] for x in (0, a) for y in (0, b) for z in (0, c)], dtype=float)
    env = all_faces(Atoms("C8", positions=corners))
    dd = np.sqrt(a * a + b * b + c * c)

    def face(h, u, v):  # plane at h/2, region {y <= u/2, z <= v/2} seen from the corner
        return PI / 2 + np.arctan(u / h) + np.arctan(v / h) + np.arctan(u * v / (h * dd))

    side = {0: (a, face(a, b, c)), 1: (b, face(b, a, c)), 2: (c, face(c, a, b))}
    got = pairs(env)
    assert len(got) == 8 * 3  # diagonal atoms touch only along an edge or a vertex: no face
    for (i, j), omega in got.items():
        diff = corners[j] - corners[i]
        axis = int(np.flatnonzero(np.abs(diff) > 1e-9)[0])
        assert np.count_nonzero(np.abs(diff) > 1e-9) == 1
        assert omega == pytest.approx(side[axis][1], rel=1e-9)
    np.testing.assert_allclose(env.open_solid_angle, PI / 2, rtol=1e-9)  # an octant is open
    if a == b == c:
        assert side[0][1] == pytest.approx(7 * PI / 6)


def test_octahedron_with_centre():
    a = 1.4
    pos = np.array([[0, 0, 0], [a, 0, 0], [-a, 0, 0], [0, a, 0], [0, -a, 0], [0, 0, a], [0, 0, -a]])
    env = all_faces(Atoms("SF6", positions=pos))
    nb = {i: set(env.neighbors_of(i).tolist()) for i in range(7)}
    assert nb[0] == set(range(1, 7))
    opposite = {1: 2, 2: 1, 3: 4, 4: 3, 5: 6, 6: 5}
    for i in range(1, 7):
        assert nb[i] == set(range(7)) - {i, opposite[i]}
    # centre: a cube cell, 6 faces of 4 pi / 6; outer atoms: 5 faces and the open part, each 2 pi / 3
    np.testing.assert_allclose(env.solid_angle, 2 * PI / 3, rtol=1e-9)
    np.testing.assert_allclose(env.open_solid_angle, [0] + [2 * PI / 3] * 6, atol=1e-9)
    assert square_solid_angle(a / 2, a / 2) == pytest.approx(2 * PI / 3)
    d = dict(zip(zip(env.center.tolist(), env.neighbor.tolist()), env.distance))
    assert d[(0, 3)] == pytest.approx(a) and d[(1, 3)] == pytest.approx(a * np.sqrt(2))


def test_two_atoms_and_collinear_chain():
    env = all_faces(Atoms("CO", positions=[[0, 0, 0], [0.3, 0.4, 1.2]]))
    assert pairs(env) == {(0, 1): pytest.approx(2 * PI), (1, 0): pytest.approx(2 * PI)}
    np.testing.assert_allclose(env.distance, 1.3)
    np.testing.assert_allclose(env.open_solid_angle, 2 * PI)
    # four atoms on a line with unequal spacing: only consecutive atoms share a face (half-spaces)
    env = all_faces(Atoms("C4", positions=[[0, 0, 0], [1.0, 0, 0], [2.5, 0, 0], [3.1, 0, 0]]))
    assert set(pairs(env)) == {(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2)}
    np.testing.assert_allclose(env.solid_angle, 2 * PI)
    np.testing.assert_allclose(env.open_solid_angle, [2 * PI, 0, 0, 2 * PI], atol=1e-12)


def test_nearly_flat_molecule_is_continuous():
    """A square puckered by 1e-7 Å (3-D hull) gives the planar lunes of the flat one."""
    sq = np.array([[0, 0, 0], [1.5, 0, 0], [1.5, 1.5, 1e-7], [0, 1.5, 0]], float)
    flat = all_faces(Atoms("C4", positions=sq * [1, 1, 0]))
    bent = all_faces(Atoms("C4", positions=sq))
    np.testing.assert_allclose(flat.solid_angle, 1.5 * PI, rtol=1e-12)
    got = pairs(bent)
    for k, v in pairs(flat).items():
        assert got[k] == pytest.approx(v, abs=1e-5)


# -- cut-offs ---------------------------------------------------------------------------------------

def test_distance_cutoff_is_inclusive():
    two = lambda d: Atoms("CO", positions=[[0, 0, 0], [d, 0, 0]])  # noqa: E731
    assert len(local_environment(two(4.0)).center) == 2
    assert len(local_environment(two(4.0 + 1e-6)).center) == 0
    assert len(local_environment(two(3.0), VoronoiConfig(cutoff=2.9)).center) == 0
    assert len(local_environment(two(3.0), VoronoiConfig(cutoff=0.5 + 2.5)).center) == 2
    assert len(all_faces(two(40.0)).center) == 2  # no cut-offs at all


def test_solid_angle_cutoffs_are_inclusive():
    tri = right_triangle()
    f01, f02 = PI + 2 * np.arctan(2.0), PI + 2 * np.arctan(0.5)
    env = local_environment(tri, VoronoiConfig(min_solid_angle=f02))
    assert set(pairs(env)) == {(0, 1), (1, 0), (0, 2), (2, 0)}
    env = local_environment(tri, VoronoiConfig(min_solid_angle=f02 + 1e-6))
    assert set(pairs(env)) == {(0, 1), (1, 0)}
    env = local_environment(tri, VoronoiConfig(min_solid_angle=0.0))
    assert len(env.center) == 6
    r = f02 / f01  # atom 0's smaller face; atoms 1 and 2 have ratios pi/f01 and pi/f02, both lower
    env = local_environment(tri, VoronoiConfig(min_solid_angle_ratio=r))
    assert set(pairs(env)) == {(0, 1), (0, 2), (1, 0), (2, 0), (2, 1)}
    env = local_environment(tri, VoronoiConfig(min_solid_angle_ratio=r + 1e-6))
    assert (0, 2) not in pairs(env)
    assert set(pairs(local_environment(tri, VoronoiConfig(min_solid_angle_ratio=1.0)))) == {(0, 1), (1, 0), (2, 0)}


def test_default_cutoffs_drop_small_faces_only():
    """Default config on the right triangle keeps all six faces (all >= 0.4 sr, ratio >= 0.2)."""
    env = local_environment(right_triangle())
    assert len(env.center) == 6
    np.testing.assert_allclose(env.solid_angle, all_faces(right_triangle()).solid_angle)


# -- crystals and boxes -----------------------------------------------------------------------------

def test_simple_cubic_crystal_cube_cell():
    a = 2.0  # small cell: the lattice reach needs more than one shell of images (pruned grid)
    xtal = Atoms("Po", positions=[[5.3, -1.1, 0.7]], cell=np.eye(3) * a, pbc=True)
    env = local_environment(xtal)
    assert env.open_solid_angle is None
    assert len(env.center) == 6 and np.all(env.neighbor == 0)
    assert {tuple(o) for o in env.offset.tolist()} == {(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)}
    np.testing.assert_allclose(env.distance, a, rtol=1e-12)
    np.testing.assert_allclose(env.solid_angle, 4 * PI / 6, rtol=1e-9)
    # tuple input (numbers, positions, cell, pbc) is the same structure
    env2 = local_environment(([84], [[5.3, -1.1, 0.7]], np.eye(3) * a, [True] * 3))
    np.testing.assert_allclose(env2.solid_angle, env.solid_angle)
    np.testing.assert_array_equal(env2.offset, env.offset)


def cscl(a):
    return Atoms("CsCl", positions=[[0, 0, 0], [a / 2, a / 2, a / 2]], cell=np.eye(3) * a, pbc=True)


def test_cscl_truncated_octahedron():
    a = 3.9
    sq = square_solid_angle(a / (4 * np.sqrt(2)), a / 2)  # squares: half-diagonal a/4 at a/2
    assert sq == pytest.approx(4 * np.arctan(1 / (4 * np.sqrt(5))))
    hexa = (4 * PI - 6 * sq) / 8
    full = all_faces(cscl(a))
    for i in (0, 1):
        mine = full.center == i
        other = full.neighbor[mine] != i
        assert other.sum() == 8 and (~other).sum() == 6
        np.testing.assert_allclose(full.solid_angle[mine][other], hexa, rtol=1e-9)
        np.testing.assert_allclose(full.solid_angle[mine][~other], sq, rtol=1e-9)
        np.testing.assert_allclose(full.distance[mine][other], a * np.sqrt(3) / 2, rtol=1e-12)
        np.testing.assert_allclose(full.distance[mine][~other], a, rtol=1e-12)
    pos, cell = full.positions, np.eye(3) * a
    d = np.linalg.norm(pos[full.neighbor] + full.offset @ cell - pos[full.center], axis=1)
    np.testing.assert_allclose(d, full.distance, atol=1e-9)
    assert len(local_environment(cscl(a)).center) == 28                    # squares at 3.9 Å <= 4 Å kept
    assert len(local_environment(cscl(4.1)).center) == 16                  # squares beyond the cutoff
    assert len(local_environment(cscl(a), VoronoiConfig(min_solid_angle=0.45)).center) == 16
    assert len(local_environment(cscl(a), VoronoiConfig(min_solid_angle_ratio=0.37)).center) == 16
    assert sq / hexa == pytest.approx(0.3601, abs=1e-3)


def test_two_atoms_in_the_legacy_box():
    pos = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    cfg = VoronoiConfig(legacy_box=True)
    env = local_environment(Atoms("CO", positions=pos), cfg)
    assert set(pairs(env)) == {(0, 1), (1, 0)}
    near = square_solid_angle(5.0, 0.5)  # a 10 x 10 Å face 0.5 Å away
    np.testing.assert_allclose(env.solid_angle, near, rtol=1e-9)
    assert env.open_solid_angle is None and not env.offset.any()
    full = all_faces(Atoms("CO", positions=pos), cfg)
    far = square_solid_angle(5.0, 4.5)  # the other atom's image, 9 Å away through the boundary
    for i, j in ((0, 1), (1, 0)):
        sel = (full.center == i) & (full.neighbor == j)
        np.testing.assert_allclose(np.sort(full.solid_angle[sel]), [far, near], rtol=1e-9)
        np.testing.assert_allclose(np.sort(full.distance[sel]), [1.0, 9.0], rtol=1e-12)
    d = np.linalg.norm(pos[full.neighbor] + 10.0 * full.offset - pos[full.center], axis=1)
    np.testing.assert_allclose(d, full.distance, atol=1e-9)
    np.testing.assert_allclose(np.bincount(full.center, weights=full.solid_angle), 4 * PI, rtol=1e-9)
    big = all_faces(Atoms("CO", positions=pos), cfg.with_(legacy_box_size=20.0))
    sel = (big.center == 0) & (big.neighbor == 1) & (big.distance < 2)
    np.testing.assert_allclose(big.solid_angle[sel], square_solid_angle(10.0, 0.5), rtol=1e-9)


def test_padded_box_closed_cells_match_isolated():
    a = 1.4
    pos = np.array([[0, 0, 0], [a, 0, 0], [-a, 0, 0], [0, a, 0], [0, -a, 0], [0, 0, a], [0, 0, -a]])
    m = Atoms("SF6", positions=pos + 3.0)
    box = local_environment(m, VoronoiConfig(molecule_cells="box"))
    iso = local_environment(m)
    assert box.open_solid_angle is None
    assert set(pairs(box)) == set(pairs(iso))
    np.testing.assert_allclose(box.solid_angle[box.center == 0], 2 * PI / 3, rtol=1e-9)
    assert not box.offset.any()
    # box edge = extent (2a) + padding: with a 5 Å padding the image 2a + 5 - 2a = 5 Å away is no neighbour,
    # with the cut-off raised to 6 Å (and padding 6.5) the outer atom sees its opposite atom's image
    wide = local_environment(m, VoronoiConfig(molecule_cells="box", cutoff=6.0, box_padding=6.5))
    assert not wide.offset.any()
    far = all_faces(m, VoronoiConfig(molecule_cells="box", box_padding=5.0))
    sel = (far.center == 1) & (far.neighbor == 2)
    assert np.any(far.offset[sel] != 0)
    np.testing.assert_allclose(far.distance[sel & np.any(far.offset != 0, axis=1)], 5.0, rtol=1e-9)


# -- config and bad input ---------------------------------------------------------------------------

def test_config_validation_messages():
    assert VoronoiConfig(cutoff=0.5).cutoff == 0.5
    with pytest.raises(ConfigError, match="cutoff"):
        VoronoiConfig(cutoff=0.0)
    with pytest.raises(ConfigError, match="min_solid_angle_ratio"):
        VoronoiConfig(min_solid_angle_ratio=1.5)
    with pytest.raises(ConfigError, match="min_solid_angle"):
        VoronoiConfig(min_solid_angle=-0.1)
    with pytest.raises(ConfigError, match="legacy_box_size"):
        VoronoiConfig(legacy_box_size=0.0)
    with pytest.raises(ConfigError, match=r"molecule_cells must be one of \('isolated', 'box'\), got 'cube'"):
        VoronoiConfig(molecule_cells="cube")
    with pytest.raises(ConfigError, match=r"box_padding \(4.0 Å\) must exceed the cutoff \(4.0 Å\)"):
        VoronoiConfig(molecule_cells="box", box_padding=4.0)
    VoronoiConfig(molecule_cells="box", box_padding=4.0 + 1e-9)
    VoronoiConfig(molecule_cells="box", box_padding=1.0, legacy_box=True)  # the legacy box ignores padding
    VoronoiConfig(box_padding=1.0)  # isolated cells ignore padding
    VoronoiConfig(min_solid_angle=0.0, min_solid_angle_ratio=0.0, box_padding=0.0)


def test_config_round_trip():
    cfg = VoronoiConfig(cutoff=5.0, min_solid_angle=0.3, molecule_cells="box", box_padding=6.0)
    assert cfg.validate() is cfg
    d = cfg.to_dict()
    assert d == {"cutoff": 5.0, "min_solid_angle": 0.3, "min_solid_angle_ratio": 0.2, "box_padding": 6.0,
                 "legacy_box": False, "legacy_box_size": 10.0, "molecule_cells": "box"}
    assert VoronoiConfig.from_dict({**d, "unknown": 1}) == cfg
    old = {k: v for k, v in VoronoiConfig().to_dict().items() if k != "molecule_cells"}
    assert VoronoiConfig.from_dict(old).molecule_cells == "box"  # stored before the isolated cells existed
    assert VoronoiConfig.from_dict(VoronoiConfig().to_dict()).molecule_cells == "isolated"
    assert cfg.with_(cutoff=4.5) == VoronoiConfig(cutoff=4.5, min_solid_angle=0.3, molecule_cells="box", box_padding=6.0)
    with pytest.raises(ConfigError):
        cfg.with_(box_padding=3.0)


def test_structure_validation_messages():
    with pytest.raises(DataValidationError, match="a molecule needs at least 2 atoms for Voronoi neighbours, got 1"):
        validate_structure([6], [[0, 0, 0]])
    validate_structure([6], [[0, 0, 0]], periodic=True)
    with pytest.raises(DataValidationError, match="a crystal needs at least 1 atom"):
        validate_structure(np.zeros(0, int), np.zeros((0, 3)), periodic=True)
    with pytest.raises(DataValidationError, match=r"finite \(N, 3\)"):
        validate_structure([6, 6], [[0, 0], [1, 0]])
    with pytest.raises(DataValidationError, match=r"finite \(N, 3\)"):
        validate_structure([6, 6], [[0, 0, 0], [1, np.nan, 0]])
    with pytest.raises(DataValidationError, match=r"finite \(N, 3\)"):
        validate_structure([6, 6, 6], [[0, 0, 0], [1, 0, 0]])
    validate_structure([1, MAX_Z], [[0, 0, 0], [1, 0, 0]])
    with pytest.raises(DataValidationError, match=r"atomic number 101\) at atom 2; supported atomic numbers are 1\.\.100"):
        validate_structure([6, 7, 101], np.eye(3))
    with pytest.raises(DataValidationError, match=r"atomic number 0\) at atom 1"):
        validate_structure([6, 0, 8, -1], np.eye(4)[:, :3])
    with pytest.raises(DataValidationError, match="at least 2 atoms"):
        local_environment(([6], [[0, 0, 0]]))
    with pytest.raises(DataValidationError, match="unknown element"):
        local_environment(([6, 101], [[0, 0, 0], [1, 0, 0]]))


def test_overlap_messages():
    with pytest.raises(DataValidationError, match=r"atoms 1 and 2 overlap \(closer than 0.1 Å\)"):
        local_environment(Atoms("CHH", positions=[[0, 0, 0], [1, 0, 0], [1, 0.099, 0]]))
    local_environment(Atoms("CHH", positions=[[0, 0, 0], [1, 0, 0], [1, 0.11, 0]]))
    # in a crystal, an atom overlapping another's periodic image
    xtal = Atoms("CO", positions=[[0, 0, 0], [2.95, 0, 0]], cell=np.eye(3) * 3.0, pbc=True)
    with pytest.raises(DataValidationError, match="atoms 0 and 1 overlap"):
        local_environment(xtal)
    with pytest.raises(DataValidationError, match="atoms (0 and 1|1 and 0) overlap"):
        local_environment(Atoms("CO", positions=[[0, 0, 0], [0.05, 0, 0]]), VoronoiConfig(legacy_box=True))


def test_no_pbc_or_flat_cell_is_a_molecule():
    pos = [[0, 0, 0], [1.0, 0, 0]]
    for cell, pbc in ((np.eye(3) * 5, [True, True, False]), (np.diag([5.0, 5.0, 0.0]), [True] * 3),
                      (np.eye(3) * 5, [False] * 3)):
        env = local_environment(Atoms("CO", positions=pos, cell=cell, pbc=pbc))
        assert env.open_solid_angle is not None
        np.testing.assert_allclose(env.solid_angle, 2 * PI)


def test_triangle_solid_angles():
    e = np.eye(3)
    octant = _triangle_solid_angles(e[[0]], e[[1]], e[[2]])
    np.testing.assert_allclose(octant, [PI / 2], rtol=1e-12)
    # scaling a vertex and the orientation do not matter; an edge-on triangle has none
    tri = _triangle_solid_angles(np.array([[3.0, 0, 0], [0, 0, 1]]), np.array([[0, 2.0, 0], [1, 0, 1]]),
                                 np.array([[0, 0, 0.5], [1, 1, 1]]))
    np.testing.assert_allclose(tri[0], PI / 2, rtol=1e-12)
    # second: vertices on the plane z = 1 around the foot (0,0,1): triangle (0,0)-(1,0)-(1,1),
    # half of a quarter of the square [-1, 1]^2 seen from distance 1 -> (square solid angle of half side 1) / 8
    np.testing.assert_allclose(tri[1], square_solid_angle(1.0, 1.0) / 8, rtol=1e-12)
    flat = _triangle_solid_angles(np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]), np.array([[1.0, 1.0, 0]]))
    np.testing.assert_allclose(flat, 0.0, atol=1e-15)
    swapped = _triangle_solid_angles(e[[1]], e[[0]], e[[2]])
    np.testing.assert_allclose(swapped, PI / 2, rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(0.5, 3.0), b=st.floats(0.6, 3.0))
def test_right_triangle_scales(scale, b):
    """Solid angles are scale-free; distances scale."""
    env = all_faces(right_triangle(scale, scale * b))
    assert pairs(env)[(0, 1)] == pytest.approx(PI + 2 * np.arctan(b), rel=1e-9)
    assert pairs(env)[(0, 2)] == pytest.approx(PI + 2 * np.arctan(1 / b), rel=1e-9)
    assert pairs(env)[(1, 2)] == pytest.approx(PI, rel=1e-9)
    np.testing.assert_allclose(env.distance[:2], [scale, scale * b], rtol=1e-12)


# -- reviewed survivors of the first mutation run ------------------------------------------------------

def rectangle_solid_angle(a, b, d):
    """Solid angle of a rectangle of half sides a, b seen from distance d on its axis."""
    return 4 * np.arctan(a * b / (d * np.sqrt(a * a + b * b + d * d)))


@pytest.mark.parametrize("c", [9.0, 25.0])
def test_long_lattice_vector_closes_the_cell(c):
    """A lattice vector longer than the 8 Å reach (slab with vacuum, molecular crystal): its image is a
    face neighbour; before the fix the cell was left open or flat (DataValidationError)."""
    x = Atoms("H", positions=[[0.3, 0.2, 1.0]], cell=[3.0, 3.0, c], pbc=True)
    full = all_faces(x)
    assert len(full.center) == 6
    np.testing.assert_allclose(np.sort(full.distance), [3, 3, 3, 3, c, c], rtol=1e-12)
    side = rectangle_solid_angle(1.5, c / 2, 1.5)
    top = rectangle_solid_angle(1.5, 1.5, c / 2)
    np.testing.assert_allclose(np.sort(full.solid_angle), np.sort([side] * 4 + [top] * 2), rtol=1e-9)
    assert {tuple(o) for o in full.offset[full.distance > 5].tolist()} == {(0, 0, 1), (0, 0, -1)}
    env = local_environment(x)  # the far faces are beyond the 4 Å cutoff
    assert len(env.center) == 4


def test_slab_with_vacuum_has_surface_coordination():
    from ase.build import fcc111

    slab = fcc111("Cu", size=(2, 2, 3), vacuum=8.0)
    slab.pbc = True
    env = local_environment(slab)
    layer = np.round(slab.positions[:, 2], 3)
    counts = np.bincount(env.center, minlength=len(slab))
    middle = layer == np.unique(layer)[1]
    assert np.all(counts[middle] == 12) and np.all(counts[~middle] == 9)  # fcc(111) surface atoms: 9
    full = all_faces(slab)
    np.testing.assert_allclose(np.bincount(full.center, weights=full.solid_angle), 4 * PI, rtol=1e-9)


def test_skewed_basis_needs_many_images():
    """Simple cubic (a = 2 Å) written with a skewed third vector (6, 0, 2) = 3 a1 + 2 z: its +-z face
    neighbours are the images at offset (-3, 0, 1) / (3, 0, -1); the lattice reach must count widths."""
    cell = np.array([[2.0, 0, 0], [0, 2.0, 0], [6.0, 0, 2.0]])
    x = Atoms("Po", positions=[[0.1, 0.2, 0.3]], cell=cell, pbc=True)
    env = all_faces(x)
    assert len(env.center) == 6
    np.testing.assert_allclose(env.distance, 2.0, rtol=1e-12)
    np.testing.assert_allclose(env.solid_angle, 4 * PI / 6, rtol=1e-9)
    vec = env.offset @ cell
    assert {tuple(np.round(v, 9)) for v in vec.tolist()} == {(2, 0, 0), (-2, 0, 0), (0, 2, 0), (0, -2, 0),
                                                             (0, 0, 2), (0, 0, -2)}
    assert {(-3, 0, 1), (3, 0, -1)} <= {tuple(o) for o in env.offset.tolist()}


def test_tiny_cell_is_still_a_crystal():
    x = Atoms("H", positions=[[0, 0, 0]], cell=np.eye(3) * 0.9, pbc=True)  # volume 0.729 Å^3
    env = local_environment(x)
    assert len(env.center) == 6 and env.open_solid_angle is None


def test_cage_with_a_centre_small_faces_keep_their_ratio():
    """An atom inside C60: 60 nearly equal faces of about 4 pi / 60 sr (< 1 sr); ratios near 1."""
    cage = molecule("C60")
    cage.positions -= cage.positions.mean(axis=0)
    m = cage + Atoms("He", positions=[[0, 0, 0]])
    env = local_environment(m, VoronoiConfig(min_solid_angle=0.1, min_solid_angle_ratio=0.9))
    mine = env.center == 60
    assert mine.sum() == 60
    assert env.solid_angle[mine].sum() == pytest.approx(4 * PI, rel=1e-9)  # a closed cell of 60 faces
    np.testing.assert_allclose(env.solid_angle[mine], 4 * PI / 60, rtol=0.03)  # ase's C60 is nearly regular
    ratio = env.solid_angle_ratio()[mine]
    np.testing.assert_allclose(ratio, env.solid_angle[mine] / env.solid_angle[mine].max(), rtol=1e-12)
    assert ratio.min() > 0.9
    hand = LocalEnvironment(numbers=np.array([1, 1, 1]), positions=np.zeros((3, 3)), center=np.array([0, 0, 1]),
                            neighbor=np.array([1, 2, 0]), distance=np.ones(3), solid_angle=np.array([0.5, 0.25, 0.4]),
                            offset=np.zeros((3, 3), int))
    np.testing.assert_allclose(hand.solid_angle_ratio(), [1.0, 0.5, 1.0])


def test_three_tuple_input_is_a_molecule():
    env = local_environment(([6, 8], [[0, 0, 0], [1.2, 0, 0]], np.eye(3) * 5))
    assert env.open_solid_angle is not None
    np.testing.assert_allclose(env.solid_angle, 2 * PI)


def test_full_messages():
    with pytest.raises(ConfigError, match=r"^Voronoi config: cutoff must be in \(0, inf\), got -1.0$"):
        VoronoiConfig(cutoff=-1.0)
    with pytest.raises(ConfigError, match=r"^Voronoi config: box_padding must be in \[0, inf\), got -1.0$"):
        VoronoiConfig(box_padding=-1.0)
    with pytest.raises(ConfigError, match=r"^box_padding \(4.0 Å\) must exceed the cutoff \(4.0 Å\), otherwise "
                                          r"periodic images of a molecule can become false neighbours$"):
        VoronoiConfig(molecule_cells="box", box_padding=4.0)
    with pytest.raises(DataValidationError, match=r"^a crystal needs at least 1 atom$"):
        validate_structure(np.zeros(0, int), np.zeros((0, 3)), periodic=True)
    with pytest.raises(DataValidationError, match=r"^atomic positions must be a finite \(N, 3\) array$"):
        validate_structure([6, 6], [[0, 0], [1, 0]])
    with pytest.raises(DataValidationError, match=r"^atoms 1 and 2 overlap \(closer than 0.1 Å\); Voronoi neighbours "
                                                  r"are undefined for overlapping atoms$"):
        local_environment(Atoms("CHH", positions=[[0, 0, 0], [1, 0, 0], [1, 0.099, 0]]))


def test_large_molecule_is_processed_in_blocks():
    """More than 816 atoms: the dual points are built in blocks of atoms; every cell still closes."""
    g = np.arange(10) * 1.1
    pos = np.array(np.meshgrid(g, g, g[:9], indexing="ij")).reshape(3, -1).T  # 900 atoms on a cubic grid
    pos = pos + np.random.default_rng(0).normal(scale=0.05, size=pos.shape)
    full = all_faces(Atoms(numbers=np.ones(len(pos), int), positions=pos))
    faces = np.bincount(full.center, weights=full.solid_angle, minlength=len(pos))
    np.testing.assert_allclose(faces + full.open_solid_angle, 4 * PI, rtol=1e-9)
    pairs_ = set(zip(full.center.tolist(), full.neighbor.tolist()))
    assert all((j, i) in pairs_ for i, j in pairs_)  # a shared face is seen from both sides


@pytest.mark.parametrize("cell, needed", [
    ([[6.0, 0, 2], [0, 10.0, 0], [2.0, 0, 0]], {(1, 0, -3), (-1, 0, 3)}),   # many images along the 3rd vector
    ([[0, 10.0, 0], [2.0, 0, 0], [6.0, 0, 2]], {(0, 3, -1), (0, -3, 1)}),   # ... along the 2nd vector
])
def test_each_lattice_vector_gets_its_own_width(cell, needed):
    """A 2 x 10 x 2 Å orthorhombic lattice written with a skewed vector (6, 0, 2) = 3 (2, 0, 0) + (0, 0, 2) and a
    long one (0, 10, 0): the +-z face neighbours sit 3 images away along the short vector, whose width
    (volume / |cross product of the other two|) is 0.63 Å while the long vector's is 10 Å."""
    cell = np.array(cell)
    x = Atoms("Po", positions=[[0.1, 0.2, 0.3]], cell=cell, pbc=True)
    env = all_faces(x)
    assert len(env.center) == 6
    vec = env.offset @ cell
    assert {tuple(np.round(v, 9)) for v in vec.tolist()} == {(2, 0, 0), (-2, 0, 0), (0, 10, 0), (0, -10, 0),
                                                             (0, 0, 2), (0, 0, -2)}
    assert needed <= {tuple(o) for o in env.offset.tolist()}
    np.testing.assert_allclose(np.sort(env.distance), [2, 2, 2, 2, 10, 10], rtol=1e-12)
    side = rectangle_solid_angle(1.0, 5.0, 1.0)  # the 2 x 10 faces 1 Å away
    top = rectangle_solid_angle(1.0, 1.0, 5.0)   # the 2 x 2 faces 5 Å away
    np.testing.assert_allclose(np.sort(env.solid_angle), [top, top, side, side, side, side], rtol=1e-9)


def test_padded_box_edge_is_the_largest_extent_plus_padding():
    """Box edge = the largest per-axis extent of the centred molecule + box_padding: 3 + 4.5 Å here (the global
    max minus the global min would be 4 Å): the same faces as the legacy box of that edge, and each atom's
    own image along z (the molecule is flat) 7.5 Å away."""
    m = Atoms("CNO", positions=[[0, 0, 0], [3.0, 0, 0], [0, -3.0, 0]])
    box = all_faces(m, VoronoiConfig(molecule_cells="box"))
    legacy = all_faces(m, VoronoiConfig(molecule_cells="box", legacy_box=True, legacy_box_size=7.5))
    np.testing.assert_array_equal(box.center, legacy.center)
    np.testing.assert_array_equal(box.neighbor, legacy.neighbor)
    np.testing.assert_array_equal(box.offset, legacy.offset)
    np.testing.assert_allclose(box.solid_angle, legacy.solid_angle, rtol=1e-12)
    for i in range(3):
        sel = (box.center == i) & (box.neighbor == i) & (box.offset[:, 2] == 1) & ~box.offset[:, :2].any(axis=1)
        np.testing.assert_allclose(box.distance[sel], [7.5], rtol=1e-12)


def test_faces_do_not_depend_on_the_choice_of_cell_vectors():
    """One lattice written with a skewed basis, whose a + b + c (9.57 Å) is much shorter than its longest body
    diagonal (14.85 Å), and with a reduced basis: the same 14 faces (four of them 9.72 and 9.82 Å away,
    found only when the reach covers every body diagonal, not a + b + c alone)."""
    skewed = Atoms("C", positions=[[0.0, 0, 0]], cell=[[2.0, 0, 0], [2.5, 2.5, 0], [-5.5, -3.0, 9.5]], pbc=True)
    # the same lattice: b' = b - a, c' = c + 2 a + b
    reduced = Atoms("C", positions=[[0.0, 0, 0]], cell=[[2.0, 0, 0], [0.5, 2.5, 0], [-1.0, -0.5, 9.5]], pbc=True)
    a, b = all_faces(skewed), all_faces(reduced)
    assert len(a.center) == len(b.center) == 14
    np.testing.assert_allclose(np.sort(a.distance), np.sort(b.distance), rtol=1e-9)
    np.testing.assert_allclose(np.sort(a.distance)[-4:], [np.sqrt(94.5), np.sqrt(94.5), np.sqrt(96.5), np.sqrt(96.5)],
                               rtol=1e-9)
    np.testing.assert_allclose(np.sort(a.solid_angle), np.sort(b.solid_angle), rtol=1e-7)
    vec_a = {tuple(np.round(v, 6)) for v in (a.offset @ skewed.cell[:]).tolist()}
    vec_b = {tuple(np.round(v, 6)) for v in (b.offset @ reduced.cell[:]).tolist()}
    assert vec_a == vec_b
