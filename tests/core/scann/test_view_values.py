"""The Qt-free molecule view model (scann/view.py) against hand-computed values: ball radii and colours,
bond thresholds, the half-bond cylinder mesh vertex by vertex, every GA colour scaling, colormap sampling,
screen and ray picking at their boundaries, atom/property/domain texts character by character, the
bundled examples and the chunked prediction generator (tiny in-memory ensemble, no shipped model)."""

import math
import warnings

import matplotlib
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from napari_cxdi.errors import ConfigError
from napari_cxdi.scann import DomainReport, ScannConfig, ScannPrediction, VoronoiConfig, build_model
from napari_cxdi.scann import view as mol
from napari_cxdi.progress import drain

# -- styles -------------------------------------------------------------------------------------


def test_ball_radii_colours_symbols_and_constants():
    # covalent radii H 0.31, C 0.76, O 0.66, X (Z=0) 0.2 Angstrom; balls 0.45 of them, at least 0.15
    np.testing.assert_allclose(mol.atom_radii([1, 6, 8, 0]), [0.15, 0.342, 0.297, 0.15], rtol=1e-12)
    np.testing.assert_allclose(mol.atom_radii([6, 1], scale=1.0), [0.76, 0.31], rtol=1e-12)
    assert mol.BALL_SCALE == 0.45 and mol.BOND_TOLERANCE == 1.2 and mol.BOND_RADIUS == 0.12
    c = mol.element_colors(np.array([1, 8, 6]))
    assert c.dtype == np.float32 and c.shape == (3, 4)
    np.testing.assert_allclose(c, [[1, 1, 1, 1], [1, 0.051, 0.051, 1], [0.565, 0.565, 0.565, 1]], rtol=1e-6)
    assert mol.element_symbols(np.array([1, 8, 6, 26])) == ["H", "O", "C", "Fe"]
    assert mol.SCALINGS == ("per molecule (N·α)", "min–max", "fixed range")
    assert mol.COLORMAPS == ("viridis", "plasma", "inferno", "magma", "coolwarm", "turbo", "cividis")
    assert all(name in matplotlib.colormaps for name in mol.COLORMAPS)


# -- bonds --------------------------------------------------------------------------------------


def test_bond_thresholds():
    # C-C bonded below 1.2 * (0.76 + 0.76) = 1.824 Angstrom
    assert mol.detect_bonds([6, 6], [[0, 0, 0], [0, 0, 1.82]]).tolist() == [[0, 1]]
    assert mol.detect_bonds([6, 6], [[0, 0, 0], [0, 0, 1.83]]).shape == (0, 2)
    assert mol.detect_bonds([6, 6], [[0, 0, 0], [0, 0, 1.83]], tolerance=1.3).tolist() == [[0, 1]]
    # H-H: 1.2 * 0.62 = 0.744; closer than 0.1 Angstrom (a duplicated atom) is no bond, 0.1 itself neither
    assert mol.detect_bonds([1, 1], [[0, 0, 0], [0, 0, 0.74]]).tolist() == [[0, 1]]
    assert mol.detect_bonds([1, 1], [[0, 0, 0], [0, 0, 0.1]]).shape == (0, 2)
    assert mol.detect_bonds([1, 1], [[0, 0, 0], [0, 0, 0.11]]).tolist() == [[0, 1]]
    # large atoms: Cs-Cs (2.44 Angstrom each) bonded up to 1.2 * 4.88 = 5.856
    assert mol.detect_bonds([55, 55], [[0, 0, 0], [5.8, 0, 0]]).tolist() == [[0, 1]]
    assert mol.detect_bonds([55, 55], [[0, 0, 0], [5.9, 0, 0]]).shape == (0, 2)
    # mixed radii: C-H bonded below 1.2 * 1.07 = 1.284
    assert mol.detect_bonds([6, 1], [[0, 0, 0], [1.28, 0, 0]]).tolist() == [[0, 1]]
    assert mol.detect_bonds([6, 1], [[0, 0, 0], [1.29, 0, 0]]).shape == (0, 2)
    one = mol.detect_bonds([6], [[0, 0, 0]])
    assert one.shape == (0, 2) and one.dtype.kind == "i"
    none = mol.detect_bonds([6, 6], [[0, 0, 0], [9, 0, 0]])
    assert none.shape == (0, 2) and none.dtype.kind == "i"


def test_bonds_are_sorted_pairs_in_lexicographic_order():
    # a zig-zag chain given in scrambled order: atoms 3-0-4-1-2 are bonded neighbours along x
    x = {3: 0.0, 0: 1.5, 4: 3.0, 1: 4.5, 2: 6.0}
    pos = [[x[i], 0.3 * (i % 2), 0.0] for i in range(5)]
    bonds = mol.detect_bonds([6] * 5, pos)
    assert bonds.tolist() == [[0, 3], [0, 4], [1, 2], [1, 4]]
    ethanol = molecule("CH3CH2OH")
    assert len(mol.detect_bonds(ethanol.numbers, ethanol.positions)) == 8


def _expected_mesh(positions, bonds, colors, radius, sides, frames):
    """Vertices, faces and colours written out from the definition; ``frames`` the (u, v) ring basis of
    each bond, worked out by hand."""
    positions = np.asarray(positions, float)
    verts, faces, cols = [], [], []
    for half in range(2):
        for b, (i, j) in enumerate(bonds):
            a, e = positions[i], positions[j]
            mid = (a + e) / 2
            start, end = (a, mid) if half == 0 else (mid, e)
            u, v = frames[b]
            for centre in (start, end):
                for k in range(sides):
                    t = 2 * math.pi * k / sides
                    verts.append(centre + radius * (math.cos(t) * np.asarray(u) + math.sin(t) * np.asarray(v)))
            base = 2 * sides * (half * len(bonds) + b)
            tri = [[k, (k + 1) % sides, sides + k] for k in range(sides)]
            tri += [[(k + 1) % sides, sides + (k + 1) % sides, sides + k] for k in range(sides)]
            faces += [[base + p for p in t] for t in tri]
            cols += [colors[i if half == 0 else j]] * (2 * sides)
    return np.array(verts), np.array(faces), np.array(cols)


def test_bond_cylinder_mesh_vertex_by_vertex():
    s = math.sqrt(0.19)
    pos = [[0, 0, 0], [0, 0, 2.0], [3.0, 0, 0], [0, 3.0, 4.0], [0.9, s, 0]]
    bonds = np.array([[0, 1], [0, 2], [0, 3], [0, 4]])
    colors = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 1]], float)
    # ring basis u = axis x ref / |.|, v = axis x u with ref = x unless |axis_x| >= 0.9 (then y)
    frames = [((0, 1, 0), (-1, 0, 0)),          # along z
              ((0, 0, 1), (0, -1, 0)),          # along x: ref = y
              ((0, 0.8, -0.6), (-1, 0, 0)),     # along (0, 0.6, 0.8)
              ((0, 0, 1), (s, -0.9, 0))]        # |axis_x| = 0.9 exactly: ref = y
    v, f, c = mol.bond_cylinders(pos, bonds, colors, radius=0.2, sides=5)
    ev, ef, ec = _expected_mesh(pos, bonds, colors, 0.2, 5, frames)
    assert v.dtype == np.float32 and f.dtype == np.uint32 and c.dtype == np.float32
    np.testing.assert_allclose(v, ev, atol=2e-6)
    np.testing.assert_array_equal(f, ef)
    np.testing.assert_array_equal(c, ec)
    # defaults: radius 0.12 Angstrom, 8 sides; every vertex 0.12 from the bond axis, the halves meet at the middle
    v, f, c = mol.bond_cylinders(pos[:2], bonds[:1], colors)
    assert v.shape == (32, 3) and f.shape == (32, 3) and c.shape == (32, 4)
    np.testing.assert_allclose(np.hypot(v[:, 0], v[:, 1]), 0.12, rtol=1e-6)
    np.testing.assert_allclose(v[:, 2], [0.0] * 8 + [1.0] * 16 + [2.0] * 8, atol=1e-7)
    empty = mol.bond_cylinders(pos, np.zeros((0, 2), int), colors)
    assert [e.shape for e in empty] == [(0, 3), (0, 3), (0, 4)]
    assert [e.dtype for e in empty] == [np.float32, np.uint32, np.float32]


# -- GA colour scaling --------------------------------------------------------------------------


def test_relative_scaling_shares_limits_over_frames():
    ga = np.array([0.1, 0.2, 0.3, 0.4])
    one = mol.scale_scores(ga)  # default mode: relative N·alpha of this frame alone
    np.testing.assert_allclose(one.values, [0.4, 0.8, 1.2, 1.6])
    assert one.limits == pytest.approx((0.4, 1.6)) and one.label == "relative GA score N·α"
    assert mol.scale_scores(ga, "per molecule (N·α)", []).limits == pytest.approx((0.4, 1.6))
    shared = mol.scale_scores(ga, "per molecule (N·α)", [ga, np.array([0.5, 0.5]), np.array([0.7, 0.2, 0.1])])
    np.testing.assert_allclose(shared.values, [0.4, 0.8, 1.2, 1.6])
    assert shared.limits == pytest.approx((0.3, 2.1))  # 3 * 0.1 .. 3 * 0.7
    assert mol.scale_scores(ga, "per molecule (N·α)", [np.array([0.5, 0.5])]).limits == pytest.approx((0.5, 1.5))  # flat


def test_min_max_and_fixed_scaling():
    ga = np.array([0.1, 0.2, 0.3, 0.4])
    mm = mol.scale_scores(ga, "min–max")
    np.testing.assert_allclose(mm.values, ga)
    assert mm.limits == pytest.approx((0.1, 0.4)) and mm.label == "GA score α"
    flat = mol.scale_scores(np.full(4, 0.25), "min–max")
    assert flat.limits == pytest.approx((0.125, 0.375))
    fixed = mol.scale_scores(ga, "fixed range")  # default limits 0.5 .. 1.5
    np.testing.assert_allclose(fixed.values, [0.4, 0.8, 1.2, 1.6])
    assert fixed.limits == (0.5, 1.5) and fixed.label == "relative GA score N·α"
    assert mol.scale_scores(ga, "fixed range", fixed=(0, 2)).limits == (0.0, 2.0)
    assert mol.scale_scores(ga, "fixed range", fixed=(1.0, 1.0000001)).limits == (1.0, 1.0000001)
    with pytest.raises(ConfigError, match=r"^fixed colour range needs min < max, got 1.0 .. 1.0$"):
        mol.scale_scores(ga, "fixed range", fixed=(1.0, 1.0))
    with pytest.raises(ConfigError, match=r"got 2 .. 1$"):
        mol.scale_scores(ga, "fixed range", fixed=(2, 1))
    with pytest.raises(ConfigError, match=r"^unknown GA scaling 'log'; choose one of per molecule \(N·α\), "
                                          r"min–max, fixed range$"):
        mol.scale_scores(ga, "log")


def test_limits_of_flat_values():
    assert mol._limits(0.2, 0.2) == pytest.approx((0.1, 0.3))
    assert mol._limits(-0.2, -0.2) == pytest.approx((-0.3, -0.1))
    assert mol._limits(0.0, 0.0) == (-5e-7, 5e-7)
    assert mol._limits(0.0, 1e-12) == (0.0, 1e-12)  # a spread of exactly 1e-12 is kept
    assert mol._limits(1.0, 1.0 + 1e-13) == pytest.approx((0.5, 1.5))
    assert mol._limits(0.1, 0.4) == (0.1, 0.4)


def test_colormap_values():
    cm = matplotlib.colormaps["plasma"]
    got = mol.map_colors([1.0, 2.0, 3.0, 0.0, 9.0, 1.5], (1.0, 3.0), "plasma")
    assert got.dtype == np.float32 and got.shape == (6, 4)
    np.testing.assert_allclose(got, cm(np.array([0.0, 0.5, 1.0, 0.0, 1.0, 0.25])), atol=1e-7)
    np.testing.assert_allclose(mol.map_colors([0.25], (0.0, 1.0)), matplotlib.colormaps["viridis"]([0.25]),
                               atol=1e-7)
    with pytest.raises(ConfigError, match=r"^unknown colormap 'no-such-map'$"):
        mol.map_colors([0.0], (0, 1), "no-such-map")
    samples = mol.colormap_samples("magma")
    assert samples.shape == (256, 4) and samples.dtype == np.float32
    np.testing.assert_allclose(samples, matplotlib.colormaps["magma"](np.linspace(0, 1, 256)), atol=1e-7)
    np.testing.assert_allclose(mol.colormap_samples("cividis", 3), matplotlib.colormaps["cividis"]([0, 0.5, 1.0]),
                               atol=1e-7)


# -- picking ------------------------------------------------------------------------------------


def test_screen_picking_boundaries():
    xy = np.array([[10.0, 10.0], [12.0, 10.0], [50.0, 50.0]])
    depth = np.array([0.5, 0.2, 0.1])
    r = np.array([4.0, 4.0, 4.0])
    assert mol.pick_atom(xy, depth, r, (11, 10)) == 1  # both discs hit: the nearer atom
    assert mol.pick_atom(xy, -depth, r, (11, 10)) == 0
    assert mol.pick_atom(xy, depth, r, (3, 10)) == 0  # 7 px = radius 4 + default slack 3
    assert mol.pick_atom(xy, depth, r, (2.9, 10)) is None
    assert mol.pick_atom(xy, depth, r, (2.9, 10), slack_px=3.2) == 0
    assert mol.pick_atom(xy, depth, r, (50, 57, 99.0)) == 2  # a third (depth) click coordinate is ignored
    assert mol.pick_atom(xy, depth, r, (30, 30)) is None
    assert mol.pick_atom(np.zeros((0, 2)), np.zeros(0), np.zeros(0), (0, 0)) is None


def test_ray_picking_boundaries():
    r = np.array([0.5])
    assert mol.ray_pick([0, 0, 0], [0, 0, 5], [[0, 0.5, 5.0]], r) == 0  # grazing: miss distance = radius
    assert mol.ray_pick([0, 0, 0], [0, 0, 5], [[0, 0.6, 5.0]], r) is None
    assert mol.ray_pick([0, 0, 0], [0, 0, 1], [[0, 0, -5.0]], r) is None  # behind the origin
    assert mol.ray_pick([0, 0, 0], [0, 0, 1], [[0, 0, 0.0]], np.array([1.0])) is None  # t = 0 is not in front
    pos = np.array([[0, 0, 5.0], [0, 0, 10.0], [3, 0, 2.0]])
    rr = np.full(3, 0.5)
    assert mol.ray_pick([0, 0, 0], [0, 0, 2], pos, rr) == 0
    assert mol.ray_pick([0, 0, 20], [0, 0, -1], pos, rr) == 1
    assert mol.ray_pick([3, 0, -1], [0, 0, 1], pos, rr) == 2
    assert mol.ray_pick([0, 0, 0], [0, 1, 0], pos, rr) is None


# -- texts --------------------------------------------------------------------------------------


class _Bare:
    """A prediction-like object without sigma, domain, reliability or neighbours."""

    def __init__(self):
        self.properties = {"homo": -6.0}
        self.units = {}
        self.ga_scores = np.array([0.25, 0.75])


def _pred(flagged=(0,), reliable=False, neighbors=None, ga_sigma=(0.01, 0.02, 0.0), sigma=0.085, unit="eV"):
    dom = DomainReport(reliable, [] if reliable else ["elements outside the training set: S"],
                       [] if reliable else ["elements"], None, list(flagged))
    return ScannPrediction({"homo": -6.1234}, {"homo": unit} if unit else {}, np.array([0.5, 0.25, 0.25]),
                           neighbors=neighbors, sigma={"homo": sigma},
                           ga_sigma=None if ga_sigma is None else np.array(ga_sigma), domain=dom)


def test_neighbours_and_atom_text():
    water = molecule("H2O")  # O, H, H
    nb = np.array([[1, 2, -1], [0, -1, -1], [-1, 0, 1]])
    p = _pred(neighbors=nb)
    np.testing.assert_array_equal(mol.neighbours_of(p, 0), [1, 2])
    np.testing.assert_array_equal(mol.neighbours_of(p, 1), [0])
    np.testing.assert_array_equal(mol.neighbours_of(p, 2), [0, 1])
    assert mol.neighbours_of(_pred(), 0).tolist() == [] and mol.neighbours_of(_Bare(), 1).tolist() == []
    assert mol.neighbours_of(p, 1).dtype.kind == "i"
    assert mol.atom_info(water, 1) == "atom 1: H"
    assert mol.atom_info(water, 0, p) == ("atom 0: O | GA α = 0.5000 (N·α = 1.50 ± 0.03) | outside the training "
                                         "domain | Voronoi neighbours: H1, H2")
    assert mol.atom_info(water, 2, p) == "atom 2: H | GA α = 0.2500 (N·α = 0.75 ± 0.00) | Voronoi neighbours: O0, H1"
    assert mol.atom_info(water, 1, _pred(ga_sigma=None, reliable=True, flagged=())) == \
        "atom 1: H | GA α = 0.2500 (N·α = 0.75)"
    assert mol.atom_info(water, 1, _Bare()) == "atom 1: H | GA α = 0.7500 (N·α = 1.50)"


def test_property_and_domain_texts():
    assert mol.format_property(_pred(reliable=True, flagged=()), "homo") == "-6.123 ± 0.085 eV"
    assert mol.format_property(_pred(), "homo") == "-6.123 ± 0.085 eV (unreliable)"
    assert mol.format_property(_pred(sigma=float("nan"), unit=""), "homo") == "-6.123 (unreliable)"
    assert mol.format_property(_pred(reliable=True, sigma=float("inf")), "homo") == "-6.123 eV"
    assert mol.format_property(_Bare(), "homo") == "-6.000"
    good, bad = _pred(reliable=True, flagged=()), _pred()
    assert mol.domain_summary([good, good]) is None and mol.domain_summary([_Bare()]) is None
    assert mol.domain_summary([good, bad]) == (
        "SCANN: 1 of 2 frame outside the model's applicability domain (predictions unreliable, shown greyed). "
        "Frame 1: elements outside the training set: S")
    other = DomainReport(False, ["size 40 atoms", "periodic"], ["size", "periodic"], None, [])
    assert mol.domain_summary([good, ScannPrediction({}, {}, np.ones(1), domain=other), bad, good]) == (
        "SCANN: 2 of 4 frames outside the model's applicability domain (predictions unreliable, shown greyed). "
        "Frame 1: size 40 atoms; periodic")


# -- examples and frames ------------------------------------------------------------------------


def test_deformed_fullerene_follows_its_formula():
    frames = mol.deformed_fullerene()
    base = molecule("C60")
    base.center()
    c = base.get_center_of_mass()
    rng = np.random.default_rng(0)
    assert len(frames) == 12
    for k, f in enumerate(frames):
        s = 1 + 0.12 * math.sin(2 * math.pi * k / 12)
        expect = c + (base.positions - c) * [s ** -0.5, s ** -0.5, s] + rng.normal(0, 0.03, (60, 3))
        np.testing.assert_allclose(f.positions, expect, atol=1e-12)
        assert f.info["frame"] == k and f.get_chemical_formula() == "C60"
    short = mol.deformed_fullerene(n_frames=4, amplitude=0.5, rattle=0.0, seed=7)
    assert len(short) == 4
    np.testing.assert_allclose(short[0].positions, base.positions, atol=1e-12)  # s = 1, no rattle
    ext = np.ptp(short[1].positions - c, axis=0) / np.ptp(base.positions - c, axis=0)
    np.testing.assert_allclose(ext, [1.5 ** -0.5, 1.5 ** -0.5, 1.5], rtol=1e-12)  # volume preserved
    a, b = mol.deformed_fullerene(n_frames=2, seed=3), mol.deformed_fullerene(n_frames=2, seed=3)
    np.testing.assert_array_equal(a[1].positions, b[1].positions)
    assert not np.allclose(a[1].positions, mol.deformed_fullerene(n_frames=2, seed=4)[1].positions)


def test_examples_and_frame_sources(tmp_path):
    import ase.io

    formulas = {"C60 (fullerene)": "C60", "benzene": "C6H6", "ethanol": "C2H6O", "acetic acid": "C2H4O2",
                "pyridine": "C5H5N", "acetamide": "C2H5NO", "trifluoroacetonitrile": "C2F3N"}
    assert list(mol.EXAMPLES) == ["C60 (fullerene)", "deformed C60 trajectory (12 frames)", "benzene", "ethanol",
                                  "acetic acid", "pyridine", "acetamide", "trifluoroacetonitrile"]
    for name, formula in formulas.items():
        frames = mol.example(name)
        assert len(frames) == 1 and frames[0].get_chemical_formula() == formula
    assert len(mol.example("deformed C60 trajectory (12 frames)")) == 12
    with pytest.raises(ConfigError, match=r"^unknown example 'nope'; choose one of C60 \(fullerene\), deformed C60 "
                                          r"trajectory \(12 frames\), benzene, .*, trifluoroacetonitrile$"):
        mol.example("nope")
    mol.warm_imports()
    assert mol.load_frames("pyridine")[0].get_chemical_formula() == "C5H5N"
    ase.io.write(tmp_path / "two.xyz", [molecule("H2O"), molecule("CH4")])
    for src in (tmp_path / "two.xyz", str(tmp_path / "two.xyz")):
        assert [f.get_chemical_formula() for f in mol.load_frames(src)] == ["H2O", "CH4"]
    w = molecule("H2O")
    assert mol.load_frames(w) == [w] and mol.load_frames((w, w)) == [w, w] and mol.load_frames(iter([w])) == [w]
    for bad in ([], [w, 3], [1, 2]):
        with pytest.raises(ConfigError, match=r"^expected ase Atoms, a list of them, a file path or an example "
                                              r"name$"):
            mol.load_frames(bad)


# -- prediction generator -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor():
    from napari_cxdi.scann import featurize, structures_from_atoms
    from napari_cxdi.scann.domain import fit_domain
    from napari_cxdi.scann.predict import ScannPredictor
    from napari_cxdi.scann.uncertainty import ensemble_predict

    torch.set_num_threads(1)
    models = []
    for seed in range(2):
        torch.manual_seed(seed)
        models.append(build_model(ScannConfig(width=8, n_layers=1, n_heads=2, z_embedding=4, n_gaussians=5,
                                              readout=6, dropout=0.0, n_targets=1, target_names=["homo"])).eval())
    train = [molecule(n) for n in ("H2O", "CH4", "CH3OH", "C2H6")]
    envs = featurize(structures_from_atoms(train), VoronoiConfig(), n_jobs=1, cache=False)
    feats = ensemble_predict(models, envs, atom_features=True).atom_features
    numbers = [f.numbers for f in train]
    dom = fit_domain(numbers, numbers, feats, numbers, feats, quantile=1.0)
    meta = {"voronoi_config": VoronoiConfig().to_dict(), "target_names": ["homo"], "target_units": ["eV"],
            "sigma_scale": [2.0], "domain": dom}
    return ScannPredictor(models, meta)


def _drain(gen):
    """(events, result) of a progress generator, through the project's own drain."""
    events = []
    return events, drain(gen, events.append)


def test_iter_predict_chunks_and_results(predictor, tmp_path):
    frames = [molecule(n) for n in ("H2O", "CH4", "CH3OH", "C2H6", "SO2")]
    events, (p, results) = _drain(mol.iter_predict(predictor, frames, chunk=2))
    assert events == [{"done": 0, "total": 5}, {"done": 2, "total": 5}, {"done": 4, "total": 5},
                      {"done": 5, "total": 5}]
    assert p is predictor and len(results) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = predictor.predict(frames, local_attention=True)
    for r, d in zip(results, direct):
        assert r.properties == pytest.approx(d.properties, abs=1e-6) and r.sigma == pytest.approx(d.sigma, abs=1e-6)
        np.testing.assert_allclose(r.ga_scores, d.ga_scores, atol=1e-7)
        for i in range(len(r.ga_scores)):  # local attention asked: neighbours known
            assert mol.neighbours_of(r, i).tolist() == mol.neighbours_of(d, i).tolist()
        assert len(r.local_attention) == 1
    assert mol.neighbours_of(results[0], 0).tolist() == [1, 2]  # water: O sees both H
    events, (_, again) = _drain(mol.iter_predict(predictor, frames[:3]))  # default chunk 8: one step
    assert events == [{"done": 0, "total": 3}, {"done": 3, "total": 3}]
    assert [r.properties for r in again] == [r.properties for r in results[:3]]
    events, (_, nothing) = _drain(mol.iter_predict(predictor, []))
    assert events == [{"done": 0, "total": 0}] and nothing == []


def test_iter_predict_never_warns_and_loads_paths(predictor, tmp_path):
    from napari_cxdi.scann.uncertainty import save_ensemble

    frames = [molecule("SO2"), molecule("H2O")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, (_, res) = _drain(mol.iter_predict(predictor, frames))
    assert not res[0].reliable and "elements" in res[0].domain.codes  # S never seen, yet no warning
    path = save_ensemble(tmp_path / "e.pt", predictor.models, voronoi=VoronoiConfig().to_dict(), scale=[2.0],
                         target_units=["eV"], domain=None, provenance={})
    _, (loaded, res) = _drain(mol.iter_predict(path, frames[1:]))  # default device: cpu
    assert loaded.target_names == ["homo"] and loaded.n_members == 2
    direct = predictor.predict(frames[1:], warn=False)
    assert res[0].properties == pytest.approx(direct[0].properties, abs=1e-6)
    assert next(mol.iter_predict(str(path), frames, device="cpu")) == {"done": 0, "total": 2}


# -- inputs of any numeric type, exact boundaries ------------------------------------------------------


def test_numbers_and_positions_of_any_numeric_type():
    # atomic numbers read from a float table, integer coordinates
    np.testing.assert_allclose(mol.atom_radii(np.array([6.0, 1.0])), [0.342, 0.15], rtol=1e-12)
    np.testing.assert_allclose(mol.element_colors(np.array([8.0]))[0], [1, 0.051, 0.051, 1], rtol=1e-6)
    assert mol.detect_bonds(np.array([6.0, 6.0]), [[0, 0, 0], [0, 0, 1.5]]).tolist() == [[0, 1]]
    v, f, c = mol.bond_cylinders([[0, 0, 0], [0, 0, 2]], np.array([[0, 1]]), np.ones((2, 4)), radius=0.5, sides=4)
    np.testing.assert_allclose(v[:4], [[0, 0.5, 0], [-0.5, 0, 0], [0, -0.5, 0], [0.5, 0, 0]], atol=1e-7)
    # C-C at exactly tolerance * (r_C + r_C) = 1.52 Angstrom: not bonded (strictly closer only)
    assert mol.detect_bonds([6, 6], [[0, 0, 0], [0, 0, 1.52]], tolerance=1.0).shape == (0, 2)
    assert mol.detect_bonds([6, 6], [[0, 0, 0], [0, 0, 1.5199]], tolerance=1.0).tolist() == [[0, 1]]


def test_cylinder_of_a_bond_away_from_the_origin():
    s = math.sqrt(0.19)
    start = np.array([1.0, 2.0, -1.0])
    pos = [start, start + [0.9, 0, s]]  # |axis_x| = 0.9 with a z part: ref = y, u = (-s, 0, 0.9), v = (0, -1, 0)
    colors = np.array([[1, 0, 0, 1], [0, 0, 1, 1]], float)
    v, f, c = mol.bond_cylinders(pos, np.array([[0, 1]]), colors, radius=0.3, sides=6)
    ev, ef, ec = _expected_mesh(pos, [[0, 1]], colors, 0.3, 6, [((-s, 0, 0.9), (0, -1, 0))])
    np.testing.assert_allclose(v, ev, atol=2e-6)
    np.testing.assert_array_equal(f, ef)


def test_scores_are_scaled_in_double_precision():
    ga32 = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    as64 = ga32.astype(np.float64)
    for mode in mol.SCALINGS:
        cs = mol.scale_scores(ga32, mode, [ga32])
        assert cs.values.dtype == np.float64
    three = np.array([0.1, 0.3, 0.6], np.float32)  # times 3: not exact in float32
    rel = mol.scale_scores(ga32, "per molecule (N·α)", [three, np.array([0.5, 0.5], np.float32)])
    t64 = three.astype(np.float64)
    assert rel.limits == (float(t64[0] * 3), float(t64[2] * 3))
    assert rel.limits != (float(three[0] * np.float32(3)), float(three[2] * np.float32(3)))
    np.testing.assert_array_equal(rel.values, as64 * 4)
    assert mol.scale_scores(np.array([0, 1]), "min–max").values.dtype == np.float64  # all attention on one atom


def test_single_atom_and_near_hits():
    assert mol.pick_atom(np.array([[5.0, 5.0]]), np.array([1.0]), np.array([2.0]), (6, 5)) == 0
    assert mol.pick_atom(np.array([[5.0, 5.0]]), np.array([1.0]), np.array([2.0]), (15, 5)) is None
    assert mol.ray_pick([0, 0, 0], [0, 0, 1], [[0, 0, 0.5]], np.array([0.2])) == 0  # 0.5 Angstrom in front
    assert mol.neighbours_of(_pred(), 0).dtype.kind == "i" and mol.neighbours_of(_Bare(), 0).dtype.kind == "i"
    assert mol._g2("C6H6")()[0].get_chemical_formula() == "C6H6"


def test_iter_predict_default_chunk_and_device(predictor, monkeypatch):
    from napari_cxdi.scann.predict import ScannPredictor

    frames = [molecule("H2O")] * 9
    events, (_, res) = _drain(mol.iter_predict(predictor, frames))
    assert [e["done"] for e in events] == [0, 8, 9] and len(res) == 9  # chunks of 8
    asked = []
    monkeypatch.setattr(ScannPredictor, "load", classmethod(lambda cls, model, **kw: asked.append(kw) or predictor))
    _drain(mol.iter_predict("model.pt", frames[:1]))
    _drain(mol.iter_predict("model.pt", frames[:1], device="meta"))
    assert asked == [{"device": "cpu"}, {"device": "meta"}]
