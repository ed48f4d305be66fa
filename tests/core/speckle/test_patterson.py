"""The Patterson map (autocorrelation) of speckle patterns, its peak features, the polydispersity laws, the
Patterson classifier (tiny training, checkpoint round trip, explanations) and the shipped ``speckle-poly``."""

import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError, DataValidationError, InputFileError
from napari_cxdi.speckle.dataset import SpeckleDatasetConfig, simulate_pattern
from napari_cxdi.speckle.disks import TOTAL_AREA, DiskSystem, disk_radii
from napari_cxdi.speckle.patterns import PAD, WINDOW, bin_pattern, block_center, speckle_analytic
from napari_cxdi.speckle.patterson import (
    HALF, N_PEAK_FEATURES, PEAK_ANNULI, PEAK_THRESHOLDS, VALUE_QUANTILES, full_map, patterson_features,
    patterson_maps, patterson_torch,
)

PIXEL_UNITS = PAD / WINDOW   # 35.09 box units per Patterson pixel (513 window binned 3 x 3)
COUNTS = slice((len(PEAK_ANNULI) - 1) * (len(VALUE_QUANTILES) + len(PEAK_THRESHOLDS)),
               (len(PEAK_ANNULI) - 1) * (len(VALUE_QUANTILES) + len(PEAK_THRESHOLDS)) + len(PEAK_THRESHOLDS))


def _grid(centers, radii):
    s = DiskSystem(np.asarray(centers, float), np.asarray(radii, float))
    return bin_pattern(block_center(speckle_analytic(s), 11).astype(np.float64), 3)


def _poly(n, j, seed, law="radius"):
    cfg = SpeckleDatasetConfig(n_values=(n,), method="analytic", bin=3, seed=seed, polydisperse=True, poly_law=law)
    return simulate_pattern(n, j, cfg)[0]


# --------------------------------------------------------------------------- the map
def test_two_disks_cross_peak_sits_at_the_pair_vector():
    """Two equal disks: origin 1, one cross peak at -(c2 - c1) / 35.09 px of height ~ a1 a2 / (a1^2 + a2^2) = 0.5
    (a little less: the blocked centre and the 3 x 3 binning), and the map is centro-symmetric."""
    p = patterson_maps(_grid([[500, 600], [1200, 1500]], [90, 90]))[0]
    assert p.shape == (HALF + 1, 2 * HALF + 1)
    assert p[HALF, HALF] == pytest.approx(1.0, abs=1e-6)
    q = p.copy()
    q[HALF - 6:, HALF - 6:HALF + 7] = 0          # the origin peak (disk self-correlation, ~5 px wide)
    iy, ix = np.unravel_index(np.argmax(q), q.shape)
    expect = -np.array([700.0, 900.0]) / PIXEL_UNITS   # (-19.9, -25.6) px
    assert abs(iy - HALF - expect[0]) <= 1 and abs(ix - HALF - expect[1]) <= 1
    assert 0.40 < q[iy, ix] < 0.5
    full = full_map(p)
    np.testing.assert_allclose(full, full[::-1, ::-1], atol=1e-5)   # P(-x) = P(x)


def test_map_is_scale_free_and_rejects_bad_input():
    g = _grid([[400, 400], [1500, 1300]], [80, 60])
    np.testing.assert_allclose(patterson_maps(g), patterson_maps(7.5e3 * g), rtol=1e-5, atol=1e-7)
    with pytest.raises(DataValidationError):
        patterson_maps(np.zeros((171, 171)))
    with pytest.raises(DataValidationError):
        patterson_torch(torch.zeros(1, 170, 170))


@pytest.mark.parametrize("n, centers, radius", [
    (2, [[500, 600], [1200, 1500]], 90),
    (3, [[300, 300], [900, 1400], [1600, 700]], 60),
    (4, [[300, 300], [900, 1400], [1600, 700], [1500, 1700]], 50),
])
def test_peak_count_is_the_number_of_disk_pairs(n, centers, radius):
    """n well-separated equal disks have n (n - 1) / 2 distinct cross peaks, each of height ~1/n of the
    origin: the peak count above 0.01 is exactly the number of pairs, and none reaches 1/n."""
    f = patterson_features(patterson_maps(_grid(centers, [radius] * n)))[0]
    assert f.shape == (N_PEAK_FEATURES,)
    counts = np.rint(np.expm1(f[COUNTS])).astype(int)
    thr = np.asarray(PEAK_THRESHOLDS)
    assert np.all(counts[thr < 0.1] == n * (n - 1) // 2)
    assert np.all(counts[thr > 1.0 / n] == 0)


# --------------------------------------------------------------------------- polydispersity laws
def test_polydispersity_laws_keep_the_area_and_their_spread():
    rng = np.random.default_rng(0)
    r_rad = [disk_radii(12, rng, polydisperse=True, law="radius") for _ in range(300)]
    r_area = [disk_radii(12, rng, polydisperse=True, law="area") for _ in range(300)]
    for r in r_rad + r_area:
        assert np.pi * np.sum(r**2) == pytest.approx(TOTAL_AREA, rel=1e-9)
    cv = lambda v: float(np.mean([x.std() / x.mean() for x in v]))  # noqa: E731
    assert 0.27 < cv(r_rad) < 0.36                                 # radius sd = mean / 3
    assert 0.27 < cv([np.pi * r**2 for r in r_area]) < 0.36         # area sd = mean / 3 (the seed's code)
    assert 0.13 < cv(r_area) < 0.19                                 # i.e. radius sd ~ mean / 6
    with pytest.raises(ConfigError):
        disk_radii(3, rng, polydisperse=True, law="volume")
    with pytest.raises(ConfigError):
        SpeckleDatasetConfig(poly_law="volume")
    # the default law leaves every seeded pattern as before
    a = simulate_pattern(5, 0, SpeckleDatasetConfig(n_values=(5,), method="analytic", bin=3, seed=3, polydisperse=True))[0]
    np.testing.assert_array_equal(a, _poly(5, 0, 3))


# --------------------------------------------------------------------------- classifier, training, storage
def test_tiny_training_round_trip_and_explanation(tmp_path):
    from napari_cxdi.progress import drain
    from napari_cxdi.speckle.models import classify_patterns, explain_pattern, load_model
    from napari_cxdi.speckle.patterson import PattersonClassifier, load_patterson, save_patterson
    from napari_cxdi.speckle.patterson_train import PattersonTrainConfig, train_patterson

    torch.set_num_threads(1)
    cfg = PattersonTrainConfig(n_values=(2, 20), max_minutes=0.15, chunk_per_class=2, max_per_class=6,
                               val_per_class=3, width=4, hidden=16, workers=1, poly_laws=("radius", "area"))
    assert PattersonTrainConfig.from_dict(cfg.to_dict()) == cfg
    clf = drain(train_patterson(cfg, name="tiny"))
    assert isinstance(clf, PattersonClassifier) and clf.temperature > 0
    m = clf.provenance["metrics"]
    assert m["learning_curve"] and m["train_seconds"] > 0 and m["cpu_seconds_main"] >= 0
    assert np.isfinite(clf.domain["threshold"])
    path = save_patterson(clf, tmp_path / "tiny.pt")
    back = load_model(path)
    pats = np.stack([_poly(2, 50, 77), _poly(20, 50, 77)])
    a = classify_patterns(pats, clf, input_bin=3, warn=False)
    b = classify_patterns(pats, back, input_bin=3, warn=False)
    np.testing.assert_allclose(a["probs"], b["probs"], rtol=1e-5, atol=1e-6)
    assert a["probs"].shape == (2, 2) and np.allclose(a["probs"].sum(1), 1.0)
    # full-resolution input (binned here by 3) gives the same answer as the binned one
    full = np.kron(pats[0], np.ones((3, 3), np.float32))
    np.testing.assert_allclose(classify_patterns(full, back, input_bin=1, warn=False)["probs"][0], a["probs"][0],
                               rtol=1e-4, atol=1e-5)
    ex = explain_pattern(pats[0], back, input_bin=3, method="Grad-CAM")
    assert ex["kind"] == "map" and ex["map"].shape == pats[0].shape
    assert ex["map"].max() == pytest.approx(1.0) and ex["map"].min() == 0.0
    cam = ex["patterson_cam"]
    assert cam.shape == (2 * HALF + 1, 2 * HALF + 1)
    np.testing.assert_allclose(cam, cam[::-1, ::-1], atol=1e-6)
    np.testing.assert_allclose(ex["patterson"][HALF, HALF], 1.0, atol=1e-6)
    with pytest.raises(TypeError):
        back.predict_features(np.zeros((1, 10)))
    radial = tmp_path / "not.pt"
    torch.save({"format": "something-else"}, radial)
    with pytest.raises(InputFileError):
        load_patterson(radial)
    with pytest.raises(ConfigError):
        PattersonTrainConfig(poly_laws=("volume",))
    with pytest.raises(ConfigError):
        PattersonTrainConfig(seed=5, val_seed=5)


# --------------------------------------------------------------------------- the shipped model
def test_shipped_speckle_poly_is_the_patterson_model_and_beats_the_radial_one():
    """``speckle-poly`` by name is the 2-D Patterson model trained on the seed's size law (< 5 MB). On a fixed
    seeded set of the seed code's polydisperse patterns (area law, seed 991, 2 per n = 2..20) it is right on
    >= 90 % with mean |error| <= 0.15 (measured 0.95 / 0.05), where the first radial model
    (``speckle-poly-radial``) scores 0.66 / 0.37; ``speckle-poly-mixed`` (both laws; measured 0.89 / 0.11)
    stays >= 80 %; on the radius law (1 per n) the mean |error| stays <= 0.6 (measured 0.42 for both)."""
    from napari_cxdi.speckle.models import MODELS, classify_patterns, load_model, model_path

    try:
        path = model_path("speckle-poly")
        mixed_path = model_path("speckle-poly-mixed")
    except InputFileError:
        pytest.skip("speckle-poly not trained yet")
    assert path.stat().st_size < 5e6 and MODELS["speckle-poly"].family == "patterson"
    assert mixed_path.stat().st_size < 5e6 and MODELS["speckle-poly-mixed"].family == "patterson"
    clf = load_model("speckle-poly")
    assert clf.family == "patterson" and clf.tta and clf.temperature > 0 and np.isfinite(clf.domain["threshold"])
    assert tuple(clf.provenance["config"]["train"]["poly_laws"]) == ("area",)
    labels = np.repeat(np.arange(2, 21), 2)
    pats = np.stack([_poly(n, j, 991, law="area") for n in range(2, 21) for j in range(2)])
    new = classify_patterns(pats, "speckle-poly", input_bin=3, warn=False)
    err = np.abs(new["pred"] - labels)
    assert (err == 0).mean() >= 0.9 and err.mean() <= 0.15 and err.max() <= 1
    assert new["ood"].mean() <= 0.1
    mixed = classify_patterns(pats, "speckle-poly-mixed", input_bin=3, warn=False)
    assert (mixed["pred"] == labels).mean() >= 0.8
    old = classify_patterns(pats, "speckle-poly-radial", input_bin=3, warn=False)
    assert np.abs(old["pred"] - labels).mean() >= err.mean() + 0.15
    radius = np.stack([_poly(n, 0, 991) for n in range(2, 21)])
    out = classify_patterns(radius, clf, input_bin=3, warn=False)
    assert np.abs(out["pred"] - np.arange(2, 21)).mean() <= 0.6


def test_dihedral_views_are_the_maps_of_the_mirrored_and_transposed_systems():
    """Mirroring / transposing the disk system mirrors / transposes its Patterson map: the 4 views of the
    map of a system equal the maps of its 4 symmetric copies."""
    from napari_cxdi.speckle.patterson import dihedral_views

    c = np.array([[300.0, 420.0], [900.0, 1400.0], [1600.0, 700.0]])
    r = [60.0, 45.0, 75.0]
    box = 2000.0
    systems = [c, c * [1, -1] + [0, box], c[:, ::-1], c[:, ::-1] * [1, -1] + [0, box]]
    want = [patterson_maps(_grid(cc, r))[0] for cc in systems]
    views = dihedral_views(torch.from_numpy(patterson_maps(_grid(c, r))))
    assert len(views) == 4
    for v, w in zip(views, want):
        np.testing.assert_allclose(v[0].numpy(), w, atol=2e-3)
    assert np.abs(want[0] - want[1]).max() > 0.05      # the views do differ
