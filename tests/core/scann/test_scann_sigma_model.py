"""The SCANN sigma model: sigma^2 = a * ensemble variance + b * latent distance^2 + c (issue 16)."""

import json

import numpy as np
import pytest
import torch
from ase.build import molecule

from napari_cxdi.errors import ConfigError
from napari_cxdi.scann import (DomainModel, ScannPredictor, SigmaModel, VoronoiConfig,
                               calibration_report, error_by_sigma, featurize, fit_sigma_model,
                               structures_from_atoms)
from napari_cxdi.scann.domain import UNKNOWN_ELEMENT_DISTANCE, fit_domain, structure_distance
from napari_cxdi.scann.uncertainty import ensemble_predict, save_ensemble, structure_distances

TRAIN_NAMES = ["CH3CH2OH", "C6H6", "CH3COOH", "C2H4", "CH3OH", "HCOOH", "CH3CN", "C2H6", "CH3CONH2", "H2CO"]


def _synthetic(rng, n, a, b, c):
    std = rng.uniform(0.01, 0.1, size=(n, len(a)))
    d = rng.uniform(0.0, 1.0, size=n)
    sigma = np.sqrt(np.asarray(a) * std ** 2 + np.asarray(b) * d[:, None] ** 2 + np.asarray(c))
    return std, d, sigma, rng.normal(size=sigma.shape) * sigma


def test_fit_recovers_known_noise_coefficients_and_calibrates():
    rng = np.random.default_rng(1)
    a, b, c = [3.0, 2.0], [0.04, 0.0], [4e-4, 1e-3]  # the second target's errors do not grow with distance
    std, d, _, err = _synthetic(rng, 40000, a, b, c)
    sm = fit_sigma_model(std, d, err, ["homo", "lumo"], fitted_on="synthetic")
    np.testing.assert_allclose(sm.a, a, rtol=0.1)
    assert sm.b[0] == pytest.approx(b[0], rel=0.1)
    assert sm.b[1] < 2e-3  # no distance dependence: b fitted to ~0
    np.testing.assert_allclose(sm.c, c, rtol=0.25)
    # on fresh data from the same process: normal coverage, and sigma ranks the errors
    std2, d2, true_sigma, err2 = _synthetic(rng, 20000, a, b, c)
    sig = sm.sigma(std2, d2)
    np.testing.assert_allclose(sig, true_sigma, rtol=0.08)
    rep = calibration_report(err2, sig, np.zeros_like(err2), ["homo", "lumo"])
    for t in ("homo", "lumo"):
        assert rep[t]["within_1_sigma"] == pytest.approx(0.6827, abs=0.02)
        assert rep[t]["within_2_sigma"] == pytest.approx(0.9545, abs=0.01)
    assert rep["homo"]["spearman_error_sigma"] > 0.3
    assert rep["homo"]["mae_least_confident_10pct"] > 3 * rep["homo"]["mae_most_confident_10pct"]
    bins = rep["homo"]["error_by_sigma"]
    assert len(bins) == 10 and sum(r["n"] for r in bins) == 20000
    assert bins[-1]["mae"] > bins[4]["mae"] > bins[0]["mae"]
    assert all(r["sigma_min"] <= r["mean_sigma"] <= r["sigma_max"] for r in bins)


def test_error_by_sigma_sorts_by_sigma_not_by_error():
    err = np.array([5.0, 1.0, 4.0, 2.0])
    sig = np.array([0.1, 0.4, 0.2, 0.3])  # ranks the errors backwards
    rows = error_by_sigma(err, sig, bins=2)
    assert [r["mae"] for r in rows] == [4.5, 1.5]
    assert rows[0]["sigma_max"] == 0.2 and rows[1]["sigma_min"] == 0.3


def test_sigma_model_dict_round_trip_select_and_bad_values():
    sm = SigmaModel(("homo", "lumo"), (1.0, 2.0), (0.1, 0.2), (0.01, 0.02), fitted_on="x")
    back = SigmaModel.from_dict(json.loads(json.dumps(sm.to_dict())))
    assert back == sm
    lumo = sm.select(["lumo"])
    assert lumo.a == (2.0,) and lumo.b == (0.2,) and lumo.c == (0.02,)
    np.testing.assert_allclose(lumo.sigma(np.array([[0.1]]), 2.0), [[np.sqrt(2 * 0.01 + 0.2 * 4 + 0.02)]])
    with pytest.raises(ConfigError, match=">= 0"):
        SigmaModel(("homo",), (-1.0,), (0.1,), (0.0,))
    with pytest.raises(ConfigError, match="one a, b, c per target"):
        SigmaModel(("homo", "lumo"), (1.0,), (0.1,), (0.0,))
    with pytest.raises(ConfigError, match="not \\['gap'\\]"):
        sm.select(["gap"])
    with pytest.raises(ConfigError, match="kind"):
        SigmaModel.from_dict({**sm.to_dict(), "kind": "other/9"})
    rng = np.random.default_rng(3)  # a single model: no spread, so a = 0; sigma from distance and c
    d = rng.uniform(0, 1, 5000)
    one = fit_sigma_model(np.zeros((5000, 1)), d, rng.normal(size=(5000, 1)) * np.sqrt(0.09 * d[:, None] ** 2 + 0.01),
                          ["homo"])
    assert one.a == (0.0,) and one.b[0] == pytest.approx(0.09, rel=0.2) and one.c[0] == pytest.approx(0.01, rel=0.3)
    with pytest.raises(ConfigError, match="usable errors"):
        fit_sigma_model(np.ones((5, 1)), np.ones(5), np.ones((5, 1)), ["homo"])


def test_structure_distance_counts_unknown_elements_at_the_threshold():
    assert structure_distance(np.array([0.2, 0.4])) == pytest.approx(0.3)
    assert structure_distance(np.array([0.2, np.nan])) == pytest.approx((0.2 + UNKNOWN_ELEMENT_DISTANCE) / 2)
    assert np.isnan(structure_distance(None))


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, tiny_models):
    torch.set_num_threads(1)
    models = tiny_models()
    frames = [molecule(n) for n in TRAIN_NAMES]
    envs = featurize(structures_from_atoms(frames), VoronoiConfig(), n_jobs=1, cache=False)
    feats = ensemble_predict(models, envs, atom_features=True).atom_features
    numbers = [f.numbers for f in frames]
    # every training atom is a reference vector: a training molecule sits at distance ~0
    domain = fit_domain(numbers, numbers, feats, numbers, feats, quantile=1.0)
    domain["threshold"] = {z: 1.0 for z in domain["threshold"]}  # distances in embedding units
    sm = SigmaModel(("homo", "lumo"), (4.0, 1.0), (0.5, 2.0), (1e-4, 4e-4), fitted_on="test")
    path = tmp_path_factory.mktemp("cal") / "ens.pt"
    save_ensemble(path, models, voronoi=VoronoiConfig().to_dict(), scale=[2.0, 0.5], target_units=["eV", "eV"],
                  domain=domain, provenance={"test": True}, sigma_model=sm)
    return path, models, sm


def _stretched(name: str, factor: float):
    m = molecule(name)
    m.positions = (m.positions - m.positions.mean(axis=0)) * factor
    return m


def test_predictor_sigma_is_the_stored_model_and_grows_away_from_training_data(calibrated):
    path, models, sm = calibrated
    predictor = ScannPredictor.load(path, device="cpu")
    assert predictor.sigma_model == sm
    mols = [molecule("CH3CH2OH"), _stretched("CH3CH2OH", 1.15), _stretched("CH3CH2OH", 1.4)]
    res = predictor.predict(mols, n_jobs=1, warn=False)
    # independent computation: members' spread and the domain's per-atom distances
    envs = featurize(structures_from_atoms(mols), VoronoiConfig(), n_jobs=1, cache=False)
    out = ensemble_predict(models, envs, atom_features=True)
    d = structure_distances(DomainModel(predictor.meta["domain"]), [m.numbers for m in mols], out.atom_features)
    want = np.sqrt(np.array(sm.a) * out.std ** 2 + np.array(sm.b) * d[:, None] ** 2 + np.array(sm.c))
    got = np.array([[r.sigma["homo"], r.sigma["lumo"]] for r in res])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose([r.latent_distance for r in res], d, rtol=1e-6)
    assert res[0].latent_distance < 0.01  # a training molecule
    assert res[0].latent_distance < res[1].latent_distance < res[2].latent_distance
    assert got[0, 0] < got[1, 0] < got[2, 0] and got[0, 1] < got[1, 1] < got[2, 1]
    assert res[2].to_dict()["latent_distance"] == pytest.approx(d[2])
    only = ScannPredictor.load(path, device="cpu", targets=["lumo"]).predict(mols[2], n_jobs=1, warn=False)[0]
    assert only.sigma["lumo"] == pytest.approx(got[2, 1], rel=1e-6)


def test_sigma_model_needs_a_domain_and_old_files_keep_the_scaled_spread(calibrated, tmp_path):
    path, models, sm = calibrated
    with pytest.raises(ConfigError, match="needs the applicability domain"):
        save_ensemble(tmp_path / "x.pt", models, voronoi=VoronoiConfig().to_dict(), scale=[1.0, 1.0],
                      target_units=["eV", "eV"], domain=None, provenance={}, sigma_model=sm)
    with pytest.raises(ConfigError, match="no coefficients for"):
        save_ensemble(tmp_path / "y.pt", models, voronoi=VoronoiConfig().to_dict(), scale=[1.0, 1.0],
                      target_units=["eV", "eV"], domain=ScannPredictor.load(path).meta["domain"], provenance={},
                      sigma_model=sm.select(["homo"]))
    old = tmp_path / "old.pt"  # a file written before the sigma model existed
    save_ensemble(old, models, voronoi=VoronoiConfig().to_dict(), scale=[2.0, 0.5], target_units=["eV", "eV"],
                  domain=ScannPredictor.load(path).meta["domain"], provenance={})
    obj = torch.load(old, weights_only=True)
    del obj["sigma_model"]
    torch.save(obj, old)
    predictor = ScannPredictor.load(old, device="cpu")
    assert predictor.sigma_model is None
    mol = molecule("CH3CH2OH")
    r = predictor.predict(mol, n_jobs=1, warn=False)[0]
    std = ensemble_predict(models, featurize(structures_from_atoms([mol]), VoronoiConfig(), n_jobs=1,
                                             cache=False)).std[0]
    np.testing.assert_allclose([r.sigma["homo"], r.sigma["lumo"]], std * [2.0, 0.5], rtol=1e-6)


def test_out_of_domain_structures_get_at_least_the_scaled_spread(calibrated, tmp_path):
    from napari_cxdi.scann.uncertainty import out_of_domain_sigma

    np.testing.assert_allclose(out_of_domain_sigma(np.array([[1.0, 1.0], [1.0, 1.0]]), np.array([[3.0, 0.5]] * 2),
                                                   [True, False]), [[1.0, 1.0], [3.0, 1.0]])
    path, models, sm = calibrated
    big = tmp_path / "big_scale.pt"  # a large spread scale: outside the domain it must win
    save_ensemble(big, models, voronoi=VoronoiConfig().to_dict(), scale=[50.0, 50.0], target_units=["eV", "eV"],
                  domain=ScannPredictor.load(path).meta["domain"], provenance={}, sigma_model=sm)
    predictor = ScannPredictor.load(big, device="cpu")
    mols = [molecule("CH3CH2OH"), molecule("SO2")]
    res = predictor.predict(mols, n_jobs=1, warn=False)
    assert res[0].reliable and not res[1].reliable
    envs = featurize(structures_from_atoms(mols), VoronoiConfig(), n_jobs=1, cache=False)
    out = ensemble_predict(models, envs, atom_features=True)
    d = structure_distances(DomainModel(predictor.meta["domain"]), [m.numbers for m in mols], out.atom_features)
    model_sigma, spread = sm.sigma(out.std, d), out.std * 50.0
    got = np.array([[r.sigma["homo"], r.sigma["lumo"]] for r in res])
    assert np.all(spread > model_sigma)  # so the rule decides which one each structure gets
    np.testing.assert_allclose(got[0], model_sigma[0], rtol=1e-5)  # in domain: the sigma model
    np.testing.assert_allclose(got[1], spread[1], rtol=1e-5)


def test_shipped_model_sigma_ranks_held_out_errors():
    """The shipped ensemble carries a sigma model whose recorded test calibration meets the goals
    (>= 60 % / >= 90 % within 1 / 2 sigma) and ranks errors clearly better than the members' spread;
    live: on 2,000 held-out QM9 molecules the least confident quarter has larger errors than the most
    confident quarter (400 were too few for a stable quarter ratio: 1.25 for LUMO with the current ensemble,
    whose full test split gives ~1.6)."""
    from napari_cxdi.resources import sample_data_dir
    from napari_cxdi.scann import load_qm9, split_indices
    from napari_cxdi.scann.datasets import QM9_SIZE

    path = sample_data_dir() / "models" / "scann_qm9_ensemble.pt"
    m = json.loads(path.with_suffix(".json").read_text())["metrics"]
    for t in ("homo", "lumo"):
        new, old = m["calibration_test"][t], m["calibration_test_ensemble_only"][t]
        assert new["n"] == 10831 and new["within_1_sigma"] >= 0.6 and new["within_2_sigma"] >= 0.9
        # sigma ranks errors (Spearman >= 0.15) and better than the members' spread alone, by a clear margin
        # (the spread of one run's snapshots ranks them poorly: 0.04-0.13 for those ensembles; two pooled runs
        # 0.16 / 0.17; the per-target ensemble's HOMO members come from two runs, its LUMO members from one:
        # 0.17 / 0.06, the sigma model 0.25 / 0.16)
        assert new["spearman_error_sigma"] >= 0.15
        assert new["spearman_error_sigma"] > old["spearman_error_sigma"] + 0.03
        ratio = new["mae_least_confident_10pct"] / new["mae_most_confident_10pct"]
        assert ratio > 1.6 and ratio > old["mae_least_confident_10pct"] / old["mae_most_confident_10pct"] + 0.3
    predictor = ScannPredictor.load("qm9", device="cpu")
    assert predictor.sigma_model is not None and predictor.sigma_model.target_names == ("homo", "lumo")
    assert predictor.sigma_model.to_dict()["a"] == m["sigma_model"]["a"]
    rows = split_indices(QM9_SIZE, [m["n_train"], m["n_val"], m["n_test"]], seed=0)[2][:2000]
    s = load_qm9(("homo", "lumo"), indices=rows)
    res = predictor.predict([s.atoms(i) for i in range(len(s))], n_jobs=1, warn=False)
    for t, name in enumerate(("homo", "lumo")):
        err = np.abs(np.array([r.properties[name] for r in res]) - s.targets[:, t])
        order = np.argsort([r.sigma[name] for r in res])
        assert err[order[-500:]].mean() > 1.3 * err[order[:500]].mean(), name
