"""Radial speckle features, calibration, the radial classifier (tiny trained model), shipped models by name,
the out-of-domain warning, explanations and the CLI by name."""

import json
import warnings

import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError, DataValidationError, InputFileError
from napari_cxdi.speckle.calibration import fit_temperature, nll, reliability
from napari_cxdi.speckle.dataset import SpeckleDatasetConfig, simulate_pattern
from napari_cxdi.speckle.disks import DiskSystem, random_disk_system
from napari_cxdi.speckle.features import (
    GLOBAL_NAMES, NOISE_FREE_LOG_PHOTONS, FeatureConfig, add_counts_noise, disk_first_minimum_px, radial_features,
    to_feature_grid,
)
from napari_cxdi.speckle.patterns import airy_pattern, bin_pattern, block_center, speckle_analytic

FC = FeatureConfig()
R = FC.n_rings
FIT_R, FIT_RES = FC.n_features - 2, FC.n_features - 1


def _mono(n, j=0, seed=11, poly=False):
    cfg = SpeckleDatasetConfig(n_values=(n,), method="analytic", bin=3, seed=seed, polydisperse=poly)
    return simulate_pattern(n, j, cfg)[0]


# --------------------------------------------------------------------------- features
@pytest.mark.parametrize("radius", [40.0, 60.0, 90.0])
def test_single_disk_first_minimum_and_fit_radius(radius):
    """One disk: the ring profile's first minimum sits at q r = 3.8317 and the one-disk fit returns r."""
    pattern = block_center(airy_pattern(radius), 11)
    f = radial_features(pattern)[0]
    q = FC.ring_radii_px()
    q0 = disk_first_minimum_px(radius)
    assert q0 == pytest.approx(3.8317 * 18001 / (2 * np.pi * radius), rel=1e-4)
    near = np.abs(q - q0) < 25
    assert abs(q[near][np.argmin(f[:R][near])] - q0) <= FC.bin  # within one ring
    assert np.exp(f[FIT_R]) == pytest.approx(radius, rel=0.01)
    assert f[FIT_RES] < 0.15  # grid step of the template radii (1 %) at the deep minima


def test_features_scale_invariant_and_counts_contrast():
    """Noise-free features do not depend on the intensity scale; for photon counts the factorial moment
    removes the Poisson term, so the ring contrast matches the noise-free one."""
    pattern = _mono(6)
    f1, f2 = radial_features(pattern, input_bin=3), radial_features(7.5 * pattern, input_bin=3)
    np.testing.assert_allclose(f1, f2, rtol=1e-4, atol=1e-5)
    assert f1[0, FC.n_features - 3] == NOISE_FREE_LOG_PHOTONS
    grid = to_feature_grid(pattern, FC, 3)
    counts = add_counts_noise(grid, 1e7, np.random.default_rng(0))
    fc = radial_features(counts, input_bin=3)
    assert fc[0, FC.n_features - 3] == pytest.approx(7.0, abs=0.01)   # log10 photons
    inner = slice(R, R + 60)
    assert np.median(np.abs(fc[0, inner] - f1[0, inner])) < 0.05
    # without the factorial moment the shot noise would inflate the outer-ring contrast
    raw = radial_features(counts, input_bin=3, counts=False)
    assert np.median(raw[0, R + 60:2 * R] - f1[0, R + 60:2 * R]) > np.median(fc[0, R + 60:2 * R] - f1[0, R + 60:2 * R])


def test_fit_radius_tracks_the_disk_number():
    """Fixed total area: r = 90 sqrt(2/n); the one-disk fit recovers it to 2 % for monodisperse systems
    and leaves a larger residual for polydisperse ones (filled-in minima)."""
    mono = np.stack([_mono(n) for n in (3, 8, 15)])
    f = radial_features(mono, input_bin=3)
    np.testing.assert_allclose(np.exp(f[:, FIT_R]), 90 * np.sqrt(2 / np.array([3, 8, 15])), rtol=0.02)
    poly = np.stack([_mono(n, poly=True) for n in (3, 8, 15)])
    fp = radial_features(poly, input_bin=3)
    assert fp[:, FIT_RES].mean() > 2 * f[:, FIT_RES].mean()


def test_full_resolution_and_binned_inputs_agree():
    system = random_disk_system(5, 3)
    full = block_center(speckle_analytic(system), 11)
    a = radial_features(full, input_bin=1)
    b = radial_features(bin_pattern(full, 3), input_bin=3)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_feature_input_errors():
    with pytest.raises(DataValidationError, match="smaller than the 513"):
        radial_features(np.ones((257, 257)))
    with pytest.raises(ConfigError):
        radial_features(np.ones((171, 171)), input_bin=2)
    bad = np.ones((171, 171))
    bad[100, 100] = np.nan
    with pytest.raises(DataValidationError, match="NaN"):
        radial_features(bad, input_bin=3)
    with pytest.raises(DataValidationError, match="negative"):
        radial_features(-np.ones((171, 171)), input_bin=3)
    with pytest.raises(ConfigError):
        FeatureConfig(r_min=1)
    assert len(FC.feature_names()) == FC.n_features == 2 * R + len(GLOBAL_NAMES)


# --------------------------------------------------------------------------- calibration
def test_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1.5, (4000, 5))
    p = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(5, p=row) for row in p])
    t = fit_temperature(3.0 * true_logits, labels)
    assert t == pytest.approx(3.0, rel=0.12)
    assert nll(3.0 * true_logits, labels, t) < nll(3.0 * true_logits, labels, 1.0)
    calibrated = reliability(p, labels)
    over = reliability(np.exp(3 * true_logits) / np.exp(3 * true_logits).sum(1, keepdims=True), labels)
    assert calibrated["ece"] < 0.03 < over["ece"]
    assert sum(calibrated["count"]) == 4000
    with pytest.raises(DataValidationError):
        fit_temperature(np.zeros((3, 2)), np.zeros(4, int))


# --------------------------------------------------------------------------- a tiny trained model
@pytest.fixture(scope="module")
def tiny_model():
    """Classes 2, 8 and 20, trained in-process on 10 patterns per class (clean + one noisy copy)."""
    from napari_cxdi.speckle.radial import RadialClassifier, RadialNet, domain_statistics
    from napari_cxdi.speckle.radial_train import simulate_features

    classes = np.array([2, 8, 20])
    tr = simulate_features("mono", classes, 21, 0, 10, noisy_copies=1)
    va = simulate_features("mono", classes, 22, 0, 8, noisy_copies=1)
    torch.manual_seed(0)
    net = RadialNet("mlp", FC.n_features, R, 3, hidden=32)
    mean, std = tr["x"].mean(0), tr["x"].std(0) + 1e-3
    clf = RadialClassifier(net, classes, FC, mean, std, name="tiny")
    x = torch.from_numpy(clf.standardize(tr["x"]))
    y = torch.from_numpy(np.searchsorted(classes, tr["y"]))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    clf.temperature = fit_temperature(clf.logits(va["x"]), np.searchsorted(classes, va["y"]))
    domain_statistics(clf, va["x"], va["y"])
    return clf


def test_tiny_model_predicts_fresh_patterns(tiny_model, tmp_path):
    from napari_cxdi.speckle.models import classify_patterns
    from napari_cxdi.speckle.radial import load_radial, save_radial

    fresh = np.stack([_mono(n, j, seed=23) for n in (2, 8, 20) for j in range(2)])
    out = classify_patterns(fresh, tiny_model, input_bin=3, warn=False)
    np.testing.assert_array_equal(out["pred"], [2, 2, 8, 8, 20, 20])
    np.testing.assert_allclose(out["probs"].sum(1), 1, rtol=1e-5)
    assert out["ood"].mean() <= 1 / 6 and len(out["warnings"]) == out["ood"].sum()
    path = save_radial(tiny_model, tmp_path / "tiny.pt")
    again = load_radial(path)
    np.testing.assert_allclose(again.predict(fresh, 3)["probs"], out["probs"], rtol=1e-5, atol=1e-6)
    assert again.temperature == pytest.approx(tiny_model.temperature)
    with pytest.raises(InputFileError):
        load_radial(tmp_path / "missing.pt")


def test_fit_readout_combines_the_fit_radius(tiny_model, tmp_path):
    """The one-disk-fit read-out: per-class Gaussians of log r, weight chosen on validation NLL; the
    combined model round-trips through a checkpoint."""
    import dataclasses

    from napari_cxdi.speckle.radial import fit_readout, load_radial, save_radial
    from napari_cxdi.speckle.radial_train import simulate_features

    clf = dataclasses.replace(tiny_model, readout={})
    tr = simulate_features("mono", clf.classes, 21, 0, 4, noisy_copies=0)
    va = simulate_features("mono", clf.classes, 22, 0, 4, noisy_copies=0)
    chosen = fit_readout(clf, tr["x"], tr["y"], va["x"], va["y"], weights=(1.0,))
    assert chosen["weight"] == 1.0 and chosen["val_accuracy"] == 1.0
    # class means of the fitted radius follow r = 90 sqrt(2 / n)
    np.testing.assert_allclose(np.exp(clf.readout["mean"]), 90 * np.sqrt(2 / clf.classes), rtol=0.02)
    again = load_radial(save_radial(clf, tmp_path / "r.pt"))
    np.testing.assert_allclose(again.logits(va["x"]), clf.logits(va["x"]), rtol=1e-5, atol=1e-4)
    assert again.readout["weight"] == 1.0


def test_tiny_model_flags_polydisperse_patterns(tiny_model):
    from napari_cxdi.speckle.models import OutOfDomainWarning, classify_patterns

    poly = np.stack([_mono(n, j, seed=24, poly=True) for n in (2, 8) for j in range(3)])
    with pytest.warns(OutOfDomainWarning, match="training domain of tiny"):
        out = classify_patterns(poly, tiny_model, input_bin=3)
    assert out["ood"].mean() >= 0.5


def test_ring_explanation(tiny_model):
    from napari_cxdi.speckle.models import explain_pattern, ring_shapes

    pattern = _mono(2, 5, seed=25)
    ex = explain_pattern(pattern, tiny_model, input_bin=3)
    assert ex["kind"] == "rings" and ex["class"] == 2
    assert len(ex["importance"]) == int(np.ceil(R / 3))
    assert np.all(np.diff(ex["q_inner_px"]) > 0) and ex["q_outer_px"][-1] <= FC.r_max * 3 + 1.5
    assert ex["importance"].max() > 0
    shapes = ring_shapes(ex, (85, 85), top=4)
    assert 1 <= len(shapes) <= 4 and all(s["radius"] > 0 and s["width"] == pytest.approx(3.0) for s in shapes)
    assert shapes[0]["importance"] == pytest.approx(ex["importance"].max())


def test_streaming_training_end_to_end():
    from napari_cxdi.progress import drain
    from napari_cxdi.speckle.radial_train import RadialTrainConfig, train_radial

    cfg = RadialTrainConfig(n_values=(2, 20), chunk_per_class=2, max_per_class=4, val_per_class=3, noisy_copies=1,
                            max_minutes=1.0, max_epochs=40, hidden=16, workers=1)
    events = []
    clf = drain(train_radial(cfg, name="t"), events.append)
    stages = {e["stage"] for e in events}
    assert {"validation", "epoch", "calibrate"} <= stages
    m = clf.provenance["metrics"]
    assert m["patterns_per_class"] == 4 and m["epochs"] == 40 and m["temperature"] > 0
    assert m["validation"]["accuracy"] >= 0.8     # 2 vs 20 disks differ in size by a factor 3
    with pytest.raises(ConfigError):
        RadialTrainConfig(kind="crystal")
    with pytest.raises(ConfigError):
        RadialTrainConfig(seed=3, val_seed=3)
    assert RadialTrainConfig.from_dict(cfg.to_dict()) == cfg


# --------------------------------------------------------------------------- shipped models, names, CLI
def test_model_names_and_errors():
    from napari_cxdi.speckle.models import DEFAULT_MODEL, model_names, model_path

    assert DEFAULT_MODEL == "speckle-mono" and {"speckle-mono", "speckle-poly", "speckle-poly-radial",
                                                "speckle-resnet18-mono"} <= set(model_names())
    with pytest.raises(ConfigError, match="unknown speckle model"):
        model_path("speckle-crystal")
    with pytest.raises(InputFileError):
        model_path("nowhere/model.pt")


@pytest.mark.parametrize("name", ["speckle-mono", "speckle-poly-radial"])
def test_shipped_radial_models(name):
    from napari_cxdi.speckle.models import classify_patterns, load_model, model_path

    path = model_path(name)
    if not path.is_file():
        pytest.skip(f"{name} not trained yet")
    assert path.stat().st_size < 2e6
    clf = load_model(name)
    assert clf.temperature > 0 and np.isfinite(clf.domain["threshold"])
    poly = name.startswith("speckle-poly")
    pats = np.stack([_mono(n, j, seed=987, poly=poly) for n in (3, 9, 16) for j in range(2)])
    out = classify_patterns(pats, name, input_bin=3, warn=False)
    err = np.abs(out["pred"] - np.repeat([3, 9, 16], 2))
    if poly:   # polydisperse n is a statistical estimate (benchmark macro-F1 in docs/speckle.md)
        assert err.mean() <= 1.0 and err.max() <= 3
    else:
        assert err.max() == 0
    assert out["ood"].mean() <= 1 / 6


def test_mono_model_warns_on_polydisperse():
    from napari_cxdi.speckle.models import OutOfDomainWarning, classify_patterns, model_path

    if not model_path("speckle-mono").is_file():
        pytest.skip("speckle-mono not trained yet")
    poly = np.stack([_mono(n, j, seed=988, poly=True) for n in (3, 6, 10) for j in range(2)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = classify_patterns(poly, "speckle-mono", input_bin=3)
    assert out["ood"].mean() >= 0.5
    assert any(issubclass(w.category, OutOfDomainWarning) and "speckle-poly" in str(w.message) for w in caught)


def test_cli_classify_by_name(tmp_path, capsys):
    from napari_cxdi.cli import main
    from napari_cxdi.speckle.models import model_path

    if not model_path("speckle-mono").is_file():
        pytest.skip("speckle-mono not trained yet")
    pats = np.stack([_mono(4, j, seed=989) for j in range(2)] + [_mono(5, 0, seed=989, poly=True)])
    np.save(tmp_path / "p.npy", pats)
    out_json = tmp_path / "out.json"
    argv = ["speckle", "classify", "speckle-mono", str(tmp_path / "p.npy"), "--input-bin", "3", "--json", str(out_json)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert [ln.split("  ")[0] for ln in lines[:2]] == ["frame 0: n = 4", "frame 1: n = 4"]
    assert "outside the training domain" in lines[2] and "warning: frame 2" in captured.err
    record = json.loads(out_json.read_text())
    assert [r["out_of_domain"] for r in record["metrics"]["predictions"]] == [False, False, True]
    assert main(["speckle", "classify", str(tmp_path / "p.npy"), "--input-bin", "3"]) == 0  # default model
    capsys.readouterr()
    assert main(["speckle", "classify", "speckle-crystal", str(tmp_path / "p.npy")]) == 2
    assert "unknown speckle model 'speckle-crystal'" in capsys.readouterr().err


def test_disk_system_dataclass_unchanged():
    s = DiskSystem(np.array([[100.0, 100.0]]), np.array([10.0]))
    assert s.n == 1
