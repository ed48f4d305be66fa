"""uncertainty.py against hand-computed values: the sigma model, its likelihood fit, out-of-domain
sigma, coverage, scale, error-by-sigma bins, calibration report, ensemble statistics, file errors.
Tiny models (16 wide, 1 layer), small molecules from ase.build; seconds."""

import json

import numpy as np
import pytest
import torch
from ase.build import molecule

from napari_cxdi.errors import ConfigError, InputFileError
from napari_cxdi.scann import ScannConfig, VoronoiConfig, build_model, featurize, structures_from_atoms
from napari_cxdi.scann.uncertainty import (ENSEMBLE_FORMAT, NORMAL_COVERAGE, SIGMA_MODEL_KIND, SigmaModel,
                                           _gaussian_nll, calibration_report, coverage, ensemble_predict,
                                           error_by_sigma, fit_scale, fit_sigma_model, load_ensemble_file,
                                           out_of_domain_sigma, save_ensemble, structure_distances)


def sm(**kw):
    base = dict(target_names=("homo", "lumo"), a=(1.0, 4.0), b=(0.25, 0.0), c=(0.01, 1.0))
    base.update(kw)
    return SigmaModel(**base)


def test_sigma_formula():
    m = sm()
    std = np.array([[0.3, 0.5], [0.0, 0.0]])
    d = np.array([2.0, 0.0])
    expected = np.sqrt(np.array([[0.09 + 0.25 * 4 + 0.01, 4 * 0.25 + 0 + 1.0], [0.01, 1.0]]))
    np.testing.assert_allclose(m.sigma(std, d), expected, rtol=1e-12)
    np.testing.assert_allclose(m.sigma(std[0], 2.0), expected[0], rtol=1e-12)  # a scalar distance


def test_sigma_model_validation_and_dicts():
    m = sm(fitted_on="val", metrics={"homo": {"nll": np.float32(0.5), "n": 3}})
    assert isinstance(m.a, tuple) and isinstance(m.target_names, tuple)
    assert SigmaModel(["y"], [1], [2], [3]).target_names == ("y",)
    d = m.to_dict()
    assert d["kind"] == SIGMA_MODEL_KIND and d["a"] == [1.0, 4.0] and d["b"] == [0.25, 0.0] and d["c"] == [0.01, 1.0]
    assert d["target_names"] == ["homo", "lumo"] and d["fitted_on"] == "val"
    assert d["formula"] == "sigma^2 = a * ensemble_std^2 + b * distance^2 + c"
    assert d["metrics"] == {"homo": {"nll": 0.5, "n": 3}} and type(d["metrics"]["homo"]["nll"]) is float
    assert "latent" not in d["distance"] and "embedding" in d["distance"]
    json.dumps(d)
    back = SigmaModel.from_dict({**d, "unknown": 1})
    assert back == m and back.fitted_on == "val"
    assert m.validate() is m
    with pytest.raises(ConfigError, match=r"need one a, b, c per target \['homo', 'lumo'\], got 1, 2, 2"):
        sm(a=(1.0,))
    with pytest.raises(ConfigError, match="got 2, 1, 2"):
        sm(b=(1.0,))
    with pytest.raises(ConfigError, match="got 2, 2, 3"):
        sm(c=(1.0, 1.0, 1.0))
    with pytest.raises(ConfigError, match="per target"):
        SigmaModel((), (), (), ())
    for bad in (dict(a=(-1e-9, 1.0)), dict(b=(np.nan, 0.0)), dict(c=(np.inf, 0.0))):
        with pytest.raises(ConfigError, match="finite and >= 0"):
            sm(**bad)
    sm(a=(0.0, 0.0), b=(0.0, 0.0), c=(0.0, 0.0))
    with pytest.raises(ConfigError, match=r"unknown sigma model kind 'other/2' \(this version reads"):
        sm(kind="other/2")
    assert m.with_(fitted_on="x").fitted_on == "x"


def test_select():
    m = sm()
    s = m.select(["lumo"])
    assert s.target_names == ("lumo",) and s.a == (4.0,) and s.b == (0.0,) and s.c == (1.0,)
    r = m.select(["lumo", "homo"])
    assert r.a == (4.0, 1.0) and r.b == (0.0, 0.25) and r.c == (1.0, 0.01)
    with pytest.raises(ConfigError, match=r"the sigma model covers \['homo', 'lumo'\], not \['gap'\]"):
        m.select(["homo", "gap"])


def test_out_of_domain_sigma():
    sigma = np.array([[1.0, 2.0], [1.0, 2.0], [5.0, 0.1]])
    ens = np.array([[3.0, 1.0], [3.0, 1.0], [3.0, 1.0]])
    got = out_of_domain_sigma(sigma, ens, [True, False, False])
    np.testing.assert_array_equal(got, [[1.0, 2.0], [3.0, 2.0], [5.0, 1.0]])
    np.testing.assert_array_equal(out_of_domain_sigma(sigma, None, [False] * 3), sigma)
    assert out_of_domain_sigma([[1, 2]], None, [True]).dtype == np.float64


def test_gaussian_nll_value_and_gradient():
    feats = np.array([[1.0, 0.5, 1.0], [4.0, 0.0, 1.0], [0.25, 2.0, 1.0]])
    e2 = np.array([0.3, 1.5, 0.2])
    p = np.log(np.array([0.5, 0.2, 0.1]))
    val, grad = _gaussian_nll(p, feats, e2)
    s2 = feats @ np.exp(p)
    assert val == pytest.approx(0.5 * np.mean(np.log(s2) + e2 / s2), rel=1e-12)
    num = np.array([(_gaussian_nll(p + h, feats, e2)[0] - _gaussian_nll(p - h, feats, e2)[0]) / 2e-6
                    for h in np.eye(3) * 1e-6])
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-9)
    assert isinstance(val, float)


def test_fit_recovers_coefficients():
    rng = np.random.default_rng(3)
    n = 4000
    std = rng.uniform(0.0, 1.0, (n, 2))
    dist = rng.uniform(0.0, 2.0, n)
    a, b, c = np.array([2.0, 0.0]), np.array([0.0, 0.5]), np.array([0.1, 0.2])
    sig = np.sqrt(a * std ** 2 + b * dist[:, None] ** 2 + c)
    err = rng.normal(size=(n, 2)) * sig
    err[:5, 1] = np.nan  # ignored
    m = fit_sigma_model(std, dist, err, ["homo", "lumo"], fitted_on="val split")
    assert m.fitted_on == "val split" and m.target_names == ("homo", "lumo")
    np.testing.assert_allclose(m.a[0], 2.0, rtol=0.15)
    np.testing.assert_allclose(m.c, [0.1, 0.2], rtol=0.3)
    np.testing.assert_allclose(m.b[1], 0.5, rtol=0.15)
    assert m.b[0] < 0.02 and m.a[1] < 0.05
    assert m.metrics["homo"]["n"] == n and m.metrics["lumo"]["n"] == n - 5
    # the stored nll is the minimum: no nearby coefficients do better
    feats = np.stack([std[:, 0] ** 2, dist ** 2, np.ones(n)], axis=1)
    best = _gaussian_nll(np.log(np.maximum([m.a[0], m.b[0], m.c[0]], 1e-30)), feats, err[:, 0] ** 2)[0]
    assert m.metrics["homo"]["nll"] == pytest.approx(best, abs=1e-6)
    for w in ([1.1, 1, 1], [1, 1, 0.9], [0.9, 1, 1.1]):
        other = np.log(np.maximum(np.array([m.a[0], m.b[0], m.c[0]]) * w, 1e-30))
        assert _gaussian_nll(other, feats, err[:, 0] ** 2)[0] >= best - 1e-9


def test_fit_single_model_and_errors():
    rng = np.random.default_rng(0)
    n = 50
    std = np.zeros((n, 1))  # one model: no spread
    err = rng.normal(size=(n, 1)) * 0.5
    m = fit_sigma_model(std, np.ones(n), err, ["y"])
    assert m.a == (0.0,)
    np.testing.assert_allclose(m.b[0] + m.c[0], np.mean(err ** 2), rtol=1e-3)  # d = 1: b and c are one term
    with pytest.raises(ConfigError, match=r"need std and error \(S, T\) and distance \(S,\), got \(50, 1\), \(50, 2\), \(50,\)"):
        fit_sigma_model(std, np.ones(n), np.zeros((n, 2)), ["y"])
    with pytest.raises(ConfigError, match="need std and error"):
        fit_sigma_model(std, np.ones(n + 1), err, ["y"])
    with pytest.raises(ConfigError, match="need std and error"):
        fit_sigma_model(std[:, 0], np.ones(n), err[:, 0], ["y"])
    few = err.copy()
    few[9:] = np.nan
    with pytest.raises(ConfigError, match=r"9 usable errors for 'y'; need >= 10"):
        fit_sigma_model(std, np.ones(n), few, ["y"])
    ten = err.copy()
    ten[10:] = np.nan
    fit_sigma_model(std, np.ones(n), ten, ["y"])
    d = np.ones(n)
    d[:41] = np.inf
    with pytest.raises(ConfigError, match="9 usable"):
        fit_sigma_model(std, d, err, ["y"])
    s = std.copy()
    s[:41] = np.nan
    with pytest.raises(ConfigError, match="9 usable"):
        fit_sigma_model(s, np.ones(n), err, ["y"])


def test_coverage_and_fit_scale_hand_values():
    mean = np.array([[0.0, 1.0], [1.0, 1.0], [3.0, 1.0], [0.5, np.nan]])
    target = np.zeros((4, 2))
    sigma = np.ones((4, 2))
    # |err| col 0: 0, 1, 3, 0.5 -> <= 1 sigma: 3/4 (1 counts), <= 2 sigma: 3/4; col 1: 1, 1, 1 (NaN dropped)
    np.testing.assert_allclose(coverage(mean, sigma, target, 1), [0.75, 1.0])
    np.testing.assert_allclose(coverage(mean, sigma, target, 0.9), [0.5, 0.0])
    np.testing.assert_allclose(coverage(mean, sigma * 2, target, 1.5), [1.0, 1.0])
    z = np.arange(1, 101, dtype=float)  # |e| / std = 1..100
    s = fit_scale(z[:, None], np.ones((100, 1)), np.zeros((100, 1)))
    q1, q2 = np.quantile(z, NORMAL_COVERAGE[1]), np.quantile(z, NORMAL_COVERAGE[2])
    np.testing.assert_allclose(s, [max(q1, q2 / 2)])
    assert s[0] == pytest.approx(q1)  # 68.6 > 95.5 / 2
    heavy = np.r_[np.full(90, 1.0), np.full(10, 50.0)]  # a heavy tail: the 2-sigma quantile decides
    s = fit_scale(heavy[:, None], np.full((100, 1), 2.0), np.zeros((100, 1)))
    np.testing.assert_allclose(s, [np.quantile(heavy / 2, NORMAL_COVERAGE[2]) / 2])
    assert s[0] > np.quantile(heavy / 2, NORMAL_COVERAGE[1])
    np.testing.assert_allclose(fit_scale(np.full((3, 1), np.nan), np.ones((3, 1)), np.zeros((3, 1))), [1.0])
    np.testing.assert_allclose(fit_scale(np.ones((2, 1)), np.zeros((2, 1)), np.zeros((2, 1))), [1e12])


def test_error_by_sigma_bins():
    err = np.array([5.0, -1.0, 2.0, np.nan, 4.0, -3.0])
    sig = np.array([0.5, 0.1, 0.2, 0.3, 0.4, np.inf])
    rows = error_by_sigma(err, sig, bins=2)  # usable: (0.1, 1), (0.2, 2), (0.4, 4), (0.5, 5)
    assert rows == [
        {"bin": 0, "n": 2, "sigma_min": 0.1, "sigma_max": 0.2, "mean_sigma": pytest.approx(0.15), "mae": 1.5,
         "rmse": pytest.approx(np.sqrt(2.5))},
        {"bin": 1, "n": 2, "sigma_min": 0.4, "sigma_max": 0.5, "mean_sigma": pytest.approx(0.45), "mae": 4.5,
         "rmse": pytest.approx(np.sqrt(20.5))}]
    rows = error_by_sigma(err, sig, bins=6)  # more bins than values: empty groups are skipped
    assert [r["bin"] for r in rows] == [0, 1, 2, 3] and [r["n"] for r in rows] == [1, 1, 1, 1]
    assert [r["mae"] for r in rows] == [1.0, 2.0, 4.0, 5.0]
    ties = error_by_sigma([3.0, 1.0, 2.0], [1.0, 1.0, 1.0], bins=3)  # stable order on equal sigma
    assert [r["mae"] for r in ties] == [3.0, 1.0, 2.0]
    assert len(error_by_sigma(np.arange(20.0), np.arange(20.0))) == 10


def test_calibration_report_hand_values():
    target = np.zeros((20, 1))
    e = np.arange(1, 21, dtype=float)
    mean = e[:, None].copy()
    sigma = (e * 1.5)[:, None]
    sigma[0, 0] = 0.5  # most confident: |e| = 1 > 1 sigma, <= 2 sigma
    rep = calibration_report(mean, sigma, target, ["y"], bins=4)["y"]
    assert rep["n"] == 20 and rep["mae"] == pytest.approx(10.5)
    assert rep["mean_sigma"] == pytest.approx((sigma.sum()) / 20)
    assert rep["within_1_sigma"] == pytest.approx(19 / 20) and rep["within_2_sigma"] == 1.0
    assert rep["spearman_error_sigma"] == pytest.approx(1.0)
    assert rep["mae_most_confident_10pct"] == pytest.approx(1.5)   # errors 1, 2
    assert rep["mae_least_confident_10pct"] == pytest.approx(19.5)  # errors 19, 20
    s = sigma[:, 0]
    nll = np.mean(0.5 * np.log(2 * np.pi * s ** 2) + e ** 2 / (2 * s ** 2))
    assert rep["gaussian_nll"] == pytest.approx(nll, rel=1e-12)
    assert [r["n"] for r in rep["error_by_sigma"]] == [5, 5, 5, 5]
    # NaN targets are left out; with <= 2 values the rank correlation is undefined
    target2 = np.full((20, 1), np.nan)
    target2[:2] = 0
    rep2 = calibration_report(mean, sigma, target2, ["y"])["y"]
    assert rep2["n"] == 2 and np.isnan(rep2["spearman_error_sigma"])
    assert rep2["mae_most_confident_10pct"] == 1.0 and rep2["mae_least_confident_10pct"] == 2.0
    target3 = np.full((20, 1), np.nan)
    target3[:3] = 0
    assert calibration_report(mean, sigma, target3, ["y"])["y"]["spearman_error_sigma"] == pytest.approx(1.0)
    assert len(calibration_report(mean, sigma, target, ["y"])["y"]["error_by_sigma"]) == 10


def tiny(seed, targets=("homo", "lumo")):
    torch.manual_seed(seed)
    m = build_model(ScannConfig(width=8, n_layers=1, n_heads=2, z_embedding=4, n_gaussians=6, readout=8,
                                dropout=0.0, n_targets=len(targets), target_names=list(targets)))
    return m.eval()


@pytest.fixture(scope="module")
def envs():
    torch.set_num_threads(1)
    return featurize(structures_from_atoms([molecule(n) for n in ("H2O", "CH4", "C6H6", "NH3")]),
                     VoronoiConfig(), n_jobs=1, cache=False)


def test_ensemble_predict_is_the_members_statistics(envs):
    models = [tiny(s) for s in range(3)]
    out = ensemble_predict(models, envs, batch_size=3, atom_features=True)
    from napari_cxdi.scann.batching import batches

    singles = []
    for m in models:
        sel, batch = next(iter(batches(envs, 8)))
        with torch.no_grad():
            o = m(batch)
        singles.append(o)
        np.testing.assert_array_equal(sel, np.arange(4))
    members = np.stack([o.prediction.double().numpy() for o in singles])
    np.testing.assert_allclose(out.members, members, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.mean, members.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.std, members.std(0), rtol=1e-4, atol=1e-6)
    assert out.std.min() > 0  # differently seeded members disagree
    for s, n in enumerate(envs.n_atoms):
        ga = np.stack([o.ga_scores[s, :n].double().numpy() for o in singles])
        np.testing.assert_allclose(out.ga_mean[s], ga.mean(0), atol=1e-6)
        np.testing.assert_allclose(out.ga_std[s], ga.std(0), atol=1e-6)
        assert out.ga_mean[s].shape == (n,) and out.ga_mean[s].sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(out.atom_features[s], singles[0].atom_features[s, :n].numpy(), atol=1e-5)
        assert not np.allclose(out.atom_features[s], singles[1].atom_features[s, :n].numpy(), atol=1e-3)
    assert ensemble_predict(models, envs).atom_features is None
    one = ensemble_predict(models[:1], envs)
    assert not one.std.any() and not any(g.any() for g in one.ga_std)
    with pytest.raises(ConfigError, match="at least one model"):
        ensemble_predict([], envs)


def test_structure_distances_match_the_domain(envs):
    from napari_cxdi.scann.domain import DomainModel, fit_domain

    models = [tiny(0)]
    feats = ensemble_predict(models, envs, atom_features=True).atom_features
    numbers = [envs.numbers[envs.atom_ptr[s]:envs.atom_ptr[s + 1]] for s in range(len(envs))]
    dom = fit_domain(numbers, numbers[:2], feats[:2], numbers[2:], feats[2:], quantile=1.0)
    d = structure_distances(dom, numbers, feats)
    dm = DomainModel(dom)
    np.testing.assert_allclose(d, [dm.structure_distance(z, f) for z, f in zip(numbers, feats)])
    np.testing.assert_allclose(structure_distances(dm, numbers, feats), d)
    assert d.shape == (4,) and np.all(d >= 0)


def test_save_and_load_ensemble(tmp_path, envs):
    models = [tiny(0), tiny(1)]
    path = save_ensemble(tmp_path / "e.pt", models, voronoi=VoronoiConfig().to_dict(), scale=[2, 0.5],
                         target_units=["eV", "eV"], domain={"x": 1}, provenance={"when": np.float32(1)},
                         sigma_model=sm())
    obj = torch.load(path, weights_only=True)
    assert obj["format"] == ENSEMBLE_FORMAT and obj["sigma_scale"] == [2.0, 0.5]
    assert obj["target_names"] == ["homo", "lumo"] and obj["target_units"] == ["eV", "eV"]
    assert obj["sigma_model"] == sm().to_dict() and obj["domain"] == {"x": 1}
    assert obj["provenance"] == {"when": "1.0"} and len(obj["members"]) == 2
    assert obj["voronoi_config"] == VoronoiConfig().to_dict()
    back, meta = load_ensemble_file(obj, path, "cpu")
    assert "members" not in meta and meta["format"] == ENSEMBLE_FORMAT
    assert all(not m.training for m in back)
    np.testing.assert_allclose(ensemble_predict(back, envs).mean, ensemble_predict(models, envs).mean, atol=1e-6)
    none = save_ensemble(tmp_path / "n.pt", models, voronoi={}, scale=[1, 1], target_units=["", ""],
                         domain=None, provenance={})
    assert torch.load(none, weights_only=True)["sigma_model"] is None
    with pytest.raises(ConfigError, match="needs the applicability domain"):
        save_ensemble(tmp_path / "x.pt", models, voronoi={}, scale=[1, 1], target_units=["", ""], domain=None,
                      provenance={}, sigma_model=sm())
    with pytest.raises(ConfigError, match=r"no coefficients for \['lumo'\]"):
        save_ensemble(tmp_path / "x.pt", models, voronoi={}, scale=[1, 1], target_units=["", ""], domain={},
                      provenance={}, sigma_model=sm().select(["homo"]))
    assert not (tmp_path / "x.pt").exists()
    other = build_model(ScannConfig(width=16, n_layers=1, n_heads=2, z_embedding=4, n_gaussians=6, readout=8,
                                    n_targets=2, target_names=["homo", "lumo"]))
    with pytest.raises(ConfigError, match="share one architecture"):
        save_ensemble(tmp_path / "x.pt", [models[0], other], voronoi={}, scale=[1, 1], target_units=["", ""],
                      domain=None, provenance={})
    with pytest.raises(InputFileError, match="not a SCANN ensemble"):
        load_ensemble_file({"format": "napari-cxdi-scann-ensemble/0"}, path, "cpu")


# -- reviewed survivors of the first mutation run ------------------------------------------------------

def test_sigma_distance_is_squared():
    m = sm()
    np.testing.assert_allclose(m.sigma(np.zeros(2), 3.0), np.sqrt([0.25 * 9 + 0.01, 1.0]), rtol=1e-12)


def test_errors_are_measured_from_nonzero_targets():
    target = np.array([[10.0], [10.0], [10.0], [10.0]])
    mean = target + np.array([[0.5], [1.5], [-0.5], [3.0]])
    np.testing.assert_allclose(coverage(mean, np.ones((4, 1)), target, 1), [0.5])
    s = fit_scale(mean, np.ones((4, 1)), target)
    z = np.array([0.5, 1.5, 0.5, 3.0])
    np.testing.assert_allclose(s, [max(np.quantile(z, NORMAL_COVERAGE[1]), np.quantile(z, NORMAL_COVERAGE[2]) / 2)])
    rep = calibration_report(mean, np.ones((4, 1)), target, ["y"], bins=2)["y"]
    assert rep["mae"] == pytest.approx(1.375) and rep["within_1_sigma"] == 0.5 and rep["within_2_sigma"] == 0.75
    # a column without any target is skipped (factor 1), the next one still fitted
    both = fit_scale(np.c_[np.full(4, np.nan), mean[:, 0]], np.ones((4, 2)), np.c_[target, target])
    np.testing.assert_allclose(both, [1.0, s[0]])


def test_report_two_sigma_is_two():
    e = np.arange(1, 21, dtype=float)
    sigma = (e * 1.5)[:, None]
    sigma[0, 0] = 0.4  # |e| = 1 is 2.5 sigma: outside 2 sigma, inside 3
    rep = calibration_report(e[:, None], sigma, np.zeros((20, 1)), ["y"])["y"]
    assert rep["within_2_sigma"] == pytest.approx(19 / 20)


def test_fit_default_label_and_single_member_files(tmp_path, envs):
    rng = np.random.default_rng(1)
    m = fit_sigma_model(rng.uniform(size=(20, 1)), rng.uniform(size=20), rng.normal(size=(20, 1)), ["y"])
    assert m.fitted_on == ""
    one = [tiny(0)]
    path = save_ensemble(tmp_path / "one.pt", one, voronoi={}, scale=[1, 1], target_units=["eV", "eV"], domain=None,
                         provenance={})
    obj = torch.load(path, weights_only=True)
    assert len(obj["members"]) == 1 and obj["model_config"]["width"] == 8 and obj["target_names"] == ["homo", "lumo"]
    with pytest.raises(ConfigError, match=r"^a sigma model needs the applicability domain \(its latent distance\) in the same file$"):
        save_ensemble(tmp_path / "x.pt", one, voronoi={}, scale=[1, 1], target_units=["", ""], domain=None,
                      provenance={}, sigma_model=sm())
    other = build_model(ScannConfig(width=16, n_layers=1, n_heads=2, z_embedding=4, n_gaussians=6, readout=8,
                                    n_targets=2, target_names=["homo", "lumo"]))
    with pytest.raises(ConfigError, match=r"^ensemble members must share one architecture$"):
        save_ensemble(tmp_path / "x.pt", [one[0], other], voronoi={}, scale=[1, 1], target_units=["", ""],
                      domain=None, provenance={})
    with pytest.raises(Exception):  # never written onto a protected file (e.g. the model it started from)
        save_ensemble(path, one, voronoi={}, scale=[1, 1], target_units=["", ""], domain=None, provenance={},
                      protected=[path])
    with pytest.raises(InputFileError, match="one.pt"):
        load_ensemble_file({"format": "other"}, path, "cpu")


def test_tied_sigmas_keep_the_input_order():
    """Equal sigmas (a sigma model of few distinct values) are ranked in input order, so the error-by-sigma
    bins and the 10 % most / least confident MAEs are reproducible: the oracle is Python's stable sort."""
    n = 200
    rng = np.random.default_rng(4)
    sigma = rng.choice([0.5, 1.0, 2.0], size=n)
    error = rng.permutation(n).astype(float)
    order = sorted(range(n), key=lambda i: sigma[i])  # stable
    e = error[order]
    table = error_by_sigma(error, sigma, bins=10)
    assert [row["mae"] for row in table] == pytest.approx([e[k * 20:(k + 1) * 20].mean() for k in range(10)], rel=1e-12)
    rep = calibration_report(np.zeros((n, 1)), sigma[:, None], error[:, None], ["y"], bins=10)["y"]
    assert rep["mae_most_confident_10pct"] == pytest.approx(e[:20].mean(), rel=1e-12)
    assert rep["mae_least_confident_10pct"] == pytest.approx(e[-20:].mean(), rel=1e-12)
    assert [row["mae"] for row in rep["error_by_sigma"]] == [row["mae"] for row in table]


def test_a_constant_sigma_has_no_rank_correlation_and_no_warning():
    import warnings

    target = np.zeros((5, 1))
    mean = np.array([[0.1], [0.4], [0.2], [0.3], [0.5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rep = calibration_report(mean, np.ones((5, 1)), target, ["y"], bins=2)["y"]
        # a sigma that varies by less than 1 (eV) still ranks the errors
        varied = calibration_report(mean, np.array([[0.1], [0.4], [0.2], [0.3], [0.5]]), target, ["y"], bins=2)["y"]
        same_error = calibration_report(np.full((5, 1), 0.3), np.array([[1.0], [4.0], [2.0], [3.0], [5.0]]), target,
                                        ["y"], bins=2)["y"]
    assert np.isnan(rep["spearman_error_sigma"]) and np.isnan(same_error["spearman_error_sigma"])
    assert varied["spearman_error_sigma"] == pytest.approx(1.0)
