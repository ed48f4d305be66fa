"""Deep-ensemble sigma, calibration and the applicability domain of SCANN predictions."""

import json
import warnings

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from napari_cxdi.scann import (DomainModel, OutOfDomainWarning, ScannPredictor, VoronoiConfig,
                               coverage, export_extxyz, featurize, fit_scale,
                               structures_from_atoms)
from napari_cxdi.scann.domain import fit_domain
from napari_cxdi.scann.uncertainty import ensemble_predict, save_ensemble

TRAIN_NAMES = ["CH3CH2OH", "C6H6", "CH3COOH", "C2H4", "CH3OH", "HCOOH", "CH3CN", "C2H6", "CH3CONH2", "H2CO"]


def test_fit_scale_recovers_the_missing_factor_and_coverage():
    rng = np.random.default_rng(0)
    std = rng.uniform(0.05, 0.3, size=(20000, 2))
    y = np.zeros_like(std)
    mean = rng.normal(size=std.shape) * std * np.array([3.0, 0.5])  # ensembles off by x3 and x0.5
    s = fit_scale(mean, std, y)
    np.testing.assert_allclose(s, [3.0, 0.5], rtol=0.05)
    np.testing.assert_allclose(coverage(mean, std * s, y, 1), 0.6827, atol=0.02)
    assert np.all(coverage(mean, std * s, y, 2) >= 0.95)


@pytest.fixture(scope="module")
def ensemble_file(tmp_path_factory, tiny_models):
    torch.set_num_threads(1)
    models = tiny_models()
    frames = [molecule(n) for n in TRAIN_NAMES]
    envs = featurize(structures_from_atoms(frames), VoronoiConfig(), n_jobs=1, cache=False)
    feats = ensemble_predict(models, envs, atom_features=True).atom_features
    numbers = [f.numbers for f in frames]
    domain = fit_domain(numbers, numbers[:6], feats[:6], numbers[6:], feats[6:], quantile=1.0)
    path = tmp_path_factory.mktemp("ens") / "ens.pt"
    save_ensemble(path, models, voronoi=VoronoiConfig().to_dict(), scale=[2.0, 0.5], target_units=["eV", "eV"],
                  domain=domain, provenance={"test": True})
    return path, models


def test_ensemble_mean_and_sigma_are_the_members_statistics(ensemble_file):
    path, models = ensemble_file
    predictor = ScannPredictor.load(path, device="cpu")
    assert predictor.n_members == 3 and predictor.target_names == ["homo", "lumo"]
    mols = [molecule("CH3CH2OH"), molecule("C6H6")]
    res = predictor.predict(mols, n_jobs=1)
    envs = featurize(structures_from_atoms(mols), VoronoiConfig(), n_jobs=1, cache=False)
    out = ensemble_predict(models, envs)
    for k, r in enumerate(res):
        np.testing.assert_allclose([r.properties["homo"], r.properties["lumo"]], out.mean[k], atol=1e-6)
        np.testing.assert_allclose([r.sigma["homo"], r.sigma["lumo"]], out.std[k] * [2.0, 0.5], atol=1e-6)
        assert r.sigma["homo"] > 0  # independently seeded members disagree
        np.testing.assert_allclose(r.ga_sigma, out.ga_std[k], atol=1e-9)
        assert r.ga_scores.sum() == pytest.approx(1.0, abs=1e-6)
    only = ScannPredictor.load(path, device="cpu", targets=["lumo"]).predict(mols[0], n_jobs=1)[0]
    assert list(only.properties) == ["lumo"] and only.properties["lumo"] == pytest.approx(res[0].properties["lumo"])


def test_extxyz_and_json_carry_sigma_and_domain(ensemble_file, tmp_path):
    import ase.io

    path, _ = ensemble_file
    predictor = ScannPredictor.load(path, device="cpu")
    frames = [molecule("CH3CH2OH"), molecule("SO2")]
    with pytest.warns(OutOfDomainWarning, match="elements outside the training set: S"):
        res = predictor.predict(frames, n_jobs=1)
    assert res[0].reliable and not res[1].reliable
    out = export_extxyz(frames, res, tmp_path / "o.extxyz")
    back = ase.io.read(out, ":")
    assert back[0].info["homo_sigma"] == pytest.approx(res[0].sigma["homo"])
    assert back[0].info["in_domain"] and not back[1].info["in_domain"]
    assert "elements outside" in back[1].info["domain_reasons"]
    np.testing.assert_allclose(back[0].arrays["ga_score_sigma"], res[0].ga_sigma, atol=1e-7)  # extxyz text
    d = json.loads(json.dumps(res[1].to_dict()))
    assert d["domain"]["codes"] == ["elements", "environment"] or d["domain"]["codes"][0] == "elements"
    assert d["sigma"]["lumo"] == pytest.approx(res[1].sigma["lumo"])


def test_domain_reasons():
    d = fit_domain([molecule(n).numbers for n in TRAIN_NAMES], [molecule("C6H6").numbers],
                   [np.zeros((12, 4))], [molecule("C6H6").numbers], [np.full((12, 4), 0.1)], quantile=1.0)
    dm = DomainModel(d)
    assert d["elements"] == [1, 6, 7, 8]
    assert dm.check(molecule("CH3CH2OH").numbers, False).in_domain  # no features: structural checks only
    rep = dm.check(molecule("SO2").numbers, False)
    assert rep.codes == ["elements", "size"]  # S unknown; 3 atoms < the 4 of the smallest training molecule
    assert "S" in rep.reasons[0] and rep.flagged_atoms == [0]
    cu = bulk("Cu", "fcc", a=3.6)
    rep = dm.check(cu.numbers, True)
    assert {"elements", "periodic"} <= set(rep.codes)
    big = molecule("C60")
    assert "size" in dm.check(big.numbers, False).codes
    benzene = molecule("C6H6").numbers
    near = dm.check(benzene, False, np.full((12, 4), 0.05))
    moved_atom = np.full((12, 4), 0.05)
    moved_atom[0, 0] += 5.0  # atom 0's environment vector far from every reference vector
    far = dm.check(benzene, False, moved_atom)
    assert near.in_domain and far.codes == ["environment"] and far.flagged_atoms == [0]
    assert far.atom_distance[0] > 1 > far.atom_distance[1]


def test_cli_prints_sigma_and_warns(ensemble_file, tmp_path, capsys):
    import argparse

    import ase.io

    from napari_cxdi.cli import scann as scann_cli

    path, _ = ensemble_file
    src = tmp_path / "in.xyz"
    ase.io.write(src, [molecule("CH3CH2OH"), bulk("Cu", "fcc", a=3.6)])
    parser = argparse.ArgumentParser()
    scann_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["scann", "predict", str(src), "-m", str(path), "--json", str(tmp_path / "p.json"),
                              "--device", "cpu"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)  # the CLI reports per frame, not as a warning
        assert args.func(args) == 0
    cap = capsys.readouterr()
    assert "±" in cap.out and "periodic structure" in cap.err and "1 of 2 structures" in cap.err
    payload = json.loads((tmp_path / "p.json").read_text())
    assert payload["frames"][0]["sigma"]["homo"] > 0 and payload["frames"][1]["reliable"] is False


def test_rare_voronoi_neighbour_compositions_are_flagged():
    from napari_cxdi.scann import local_environment
    from napari_cxdi.scann.domain import environment_signatures

    train = [molecule(n) for n in TRAIN_NAMES] * 3  # every signature seen >= 3 times
    sigs = []
    for m in train:
        e = local_environment(m)
        sigs.append(environment_signatures(m.numbers, e.center, e.neighbor, [1, 6, 7, 8]))
    d = fit_domain([m.numbers for m in train], [train[0].numbers], [np.zeros((9, 4))], [train[0].numbers],
                   [np.zeros((9, 4))], quantile=1.0, train_signatures=np.concatenate(sigs))
    dm = DomainModel(d)
    ethanol = molecule("CH3CH2OH")
    e = local_environment(ethanol)
    assert dm.check(ethanol.numbers, False, edges=(e.center, e.neighbor)).in_domain
    ch4 = molecule("CH4")  # no training carbon has exactly four H neighbours
    e = local_environment(ch4)
    rep = dm.check(ch4.numbers, False, edges=(e.center, e.neighbor))
    assert "environment" in rep.codes and 0 in rep.flagged_atoms  # (and "size": 1 heavy atom < 2)
    assert "C with 4 H neighbours, seen 0x" in rep.reasons[-1]


def test_shipped_ensemble_flags_tiny_and_foreign_structures():
    """QM9's own CH4/NH3/H2O (unique environments, badly predicted) and non-QM9 structures are out
    of the shipped model's domain with a reason; ethanol is in."""
    from napari_cxdi.scann import load_qm9

    predictor = ScannPredictor.load("qm9", device="cpu")
    tiny = load_qm9(("homo", "lumo"), indices=[0, 1, 2])
    frames = [tiny.atoms(k) for k in range(3)] + [molecule("SO2"), bulk("Cu", "fcc", a=3.61), molecule("CH3CH2OH")]
    with pytest.warns(OutOfDomainWarning, match="5 of 6 structures"):
        res = predictor.predict(frames, n_jobs=1)
    assert [r.reliable for r in res] == [False] * 5 + [True]
    assert all("environment" in r.domain.codes for r in res[:3])
    assert "elements" in res[3].domain.codes and {"elements", "periodic"} <= set(res[4].domain.codes)
    assert all(np.isfinite(r.sigma["homo"]) and r.sigma["homo"] > 0 for r in res)
