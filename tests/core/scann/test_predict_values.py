"""ScannPredictor with tiny in-memory ensembles: target selection, every sigma branch against the
formula, domain reports, GA statistics, warnings, annotation/export values and typed errors."""

import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule

from napari_cxdi.errors import ConfigError, InputFileError
from napari_cxdi.scann import ScannConfig, VoronoiConfig, build_model, featurize, structures_from_atoms
from napari_cxdi.scann.domain import DomainModel, DomainReport, OutOfDomainWarning, fit_domain
from napari_cxdi.scann.predict import (PRETRAINED, ScannPrediction, ScannPredictor, annotate, as_frames,
                                       export_extxyz, predict, warn_out_of_domain)
from napari_cxdi.scann.uncertainty import SigmaModel, ensemble_predict, save_ensemble

NAMES = ["homo", "lumo", "gap"]


def tiny(seed):
    torch.manual_seed(seed)
    m = build_model(ScannConfig(width=8, n_layers=1, n_heads=2, z_embedding=4, n_gaussians=5, readout=6,
                                dropout=0.0, n_targets=3, target_names=NAMES))
    with torch.no_grad():
        m.target_mean.copy_(torch.tensor([-6.0, 1.0, 7.0]))
    return m.eval()


MOLS = ["H2O", "CH4", "NH3", "CH3OH", "C2H6"]


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    models = [tiny(s) for s in range(3)]
    frames = [molecule(n) for n in MOLS]
    envs = featurize(structures_from_atoms(frames), VoronoiConfig(), n_jobs=1, cache=False)
    out = ensemble_predict(models, envs, atom_features=True)
    numbers = [f.numbers for f in frames]
    dom = fit_domain(numbers, numbers, out.atom_features, numbers, out.atom_features, quantile=1.0)
    return models, frames, envs, out, dom


def meta(dom=None, sigma_model=None, scale=(2.0, 3.0, 4.0)):
    return {"voronoi_config": VoronoiConfig().to_dict(), "target_names": NAMES, "target_units": ["eV", "eV", "meV"],
            "sigma_scale": list(scale), "domain": dom, "sigma_model": sigma_model}


def test_scaled_spread_and_target_selection(setup):
    models, frames, envs, out, _ = setup
    p = ScannPredictor(models, meta())
    assert p.n_members == 3 and p.target_names == NAMES and p.target_units == ["eV", "eV", "meV"]
    assert p.domain is None and p.sigma_model is None and p.voronoi == VoronoiConfig()
    res = p.predict_environments(envs, batch_size=2)
    for s, r in enumerate(res):
        np.testing.assert_allclose([r.properties[t] for t in NAMES], out.mean[s], atol=1e-6)
        np.testing.assert_allclose([r.sigma[t] for t in NAMES], out.std[s] * [2, 3, 4], atol=1e-6)
        np.testing.assert_allclose(r.ga_scores, out.ga_mean[s], atol=1e-7)
        np.testing.assert_allclose(r.ga_sigma, out.ga_std[s], atol=1e-7)
        assert r.units == {"homo": "eV", "lumo": "eV", "gap": "meV"}
        assert r.domain is None and r.reliable and np.isnan(r.latent_distance)
        assert r.local_attention is None and r.neighbors is None
    sub = ScannPredictor(models, meta(), targets=["gap", "homo"])
    assert sub.target_names == ["gap", "homo"] and sub.target_units == ["meV", "eV"]
    r = sub.predict_environments(envs)[1]
    assert list(r.properties) == ["gap", "homo"]
    np.testing.assert_allclose([r.properties["gap"], r.properties["homo"]], out.mean[1, [2, 0]], atol=1e-6)
    np.testing.assert_allclose([r.sigma["gap"], r.sigma["homo"]], out.std[1, [2, 0]] * [4, 2], atol=1e-6)
    with pytest.raises(ConfigError, match=r"the model predicts \['homo', 'lumo', 'gap'\], not \['lumo2'\]"):
        ScannPredictor(models, meta(), targets=["homo", "lumo2"])


def test_single_model_and_no_scale(setup):
    models, frames, envs, out, _ = setup
    single = ScannPredictor(models[0], {"target_names": NAMES, "sigma_scale": [2, 3, 4]})
    assert single.n_members == 1 and single.sigma_scale is None
    assert single.target_units == ["", "", ""]
    assert single.voronoi.molecule_cells == "box"  # no stored config: the old padded-box default
    r = single.predict_environments(envs)[0]
    assert all(np.isnan(v) for v in r.sigma.values()) and r.ga_sigma is None
    noscale = ScannPredictor(models, {"target_names": NAMES})
    assert all(np.isnan(v) for v in noscale.predict_environments(envs)[0].sigma.values())
    bare = ScannPredictor(models[:1], {})
    assert bare.target_names == NAMES  # from the model config


def test_sigma_model_and_domain(setup):
    models, frames, envs, out, dom = setup
    sm = SigmaModel(NAMES, (1.0, 0.5, 0.0), (0.2, 0.0, 0.1), (0.01, 0.02, 0.03))
    p = ScannPredictor(models, meta(dom, sm.to_dict()))
    assert p.sigma_model == sm and isinstance(p.domain, DomainModel)
    res = p.predict_environments(envs, periodic=[False, True, False, False, False])
    dm = DomainModel(dom)
    for s, r in enumerate(res):
        d = dm.structure_distance(frames[s].numbers, out.atom_features[s])
        assert r.latent_distance == pytest.approx(d, rel=1e-5, abs=1e-9)
        expect = sm.sigma(out.std[s], d)
        if not r.domain.in_domain:  # outside: at least the scaled spread
            expect = np.maximum(expect, out.std[s] * [2, 3, 4])
        np.testing.assert_allclose([r.sigma[t] for t in NAMES], expect, rtol=1e-5)
    assert res[1].domain.codes == ["periodic"] and not res[1].reliable
    assert res[0].reliable and res[0].domain.in_domain
    np.testing.assert_allclose([res[1].sigma[t] for t in NAMES],
                               np.maximum(sm.sigma(out.std[1], res[1].latent_distance), out.std[1] * [2, 3, 4]),
                               rtol=1e-5)
    # without the domain the sigma model cannot be used (no latent distance): the scaled spread
    nodom = ScannPredictor(models, meta(None, sm.to_dict()))
    assert nodom.sigma_model is None
    np.testing.assert_allclose(list(nodom.predict_environments(envs)[0].sigma.values()), out.std[0] * [2, 3, 4],
                               atol=1e-6)
    sel = ScannPredictor(models, meta(dom, sm.to_dict()), targets=["lumo"])
    assert sel.sigma_model.a == (0.5,)
    # a sigma model without a stored scale: no out-of-domain floor
    p2 = ScannPredictor(models, {**meta(dom, sm.to_dict()), "sigma_scale": None})
    r = p2.predict_environments(envs, periodic=[True] * 5)[0]
    np.testing.assert_allclose([r.sigma[t] for t in NAMES], sm.sigma(out.std[0], r.latent_distance), rtol=1e-5)


def test_local_attention_and_predict(setup):
    models, frames, envs, out, dom = setup
    p = ScannPredictor(models, meta(dom))
    r = p.predict_environments(envs, local_attention=True)[2]  # NH3
    assert len(r.local_attention) == 1 and r.local_attention[0].shape[0] == 4
    env = envs.environment(2)
    for i in range(4):
        real = r.neighbors[i] >= 0
        assert sorted(r.neighbors[i][real].tolist()) == sorted(env.neighbor[env.center == i].tolist())
        np.testing.assert_allclose(r.local_attention[0][i][real].sum(0), 1.0, rtol=1e-5)
        assert np.all(r.local_attention[0][i][~real] == 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = p.predict(frames[:2], n_jobs=1)
    np.testing.assert_allclose(res[1].properties["homo"], out.mean[1, 0], atol=1e-6)
    one = p.predict(frames[0], n_jobs=1)
    assert len(one) == 1 and one[0].properties == pytest.approx(res[0].properties)
    with pytest.warns(OutOfDomainWarning, match=r"1 of 2 structures are outside the model's applicability domain"):
        p.predict([frames[0], molecule("SO2")], n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p.predict([molecule("SO2")], n_jobs=1, warn=False)
    assert predict(p, frames[0], n_jobs=1)[0].properties == pytest.approx(res[0].properties)


def test_load_files_and_names(setup, tmp_path):
    models, frames, envs, out, dom = setup
    path = save_ensemble(tmp_path / "e.pt", models, voronoi=VoronoiConfig().to_dict(), scale=[2, 3, 4],
                         target_units=["eV", "eV", "meV"], domain=dom, provenance={})
    p = ScannPredictor.load(path, device="cpu", targets=["lumo"])
    assert p.n_members == 3 and p.target_names == ["lumo"]
    r = p.predict_environments(envs)[0]
    assert r.properties["lumo"] == pytest.approx(out.mean[0, 1], abs=1e-6)
    assert predict(path, frames[0], n_jobs=1)[0].properties["gap"] == pytest.approx(out.mean[0, 2], abs=1e-6)
    with pytest.raises(InputFileError, match="model file does not exist .shipped models: qm9-homo, qm9-lumo, qm9"):
        ScannPredictor.load(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    bad.write_text("not torch")
    with pytest.raises(InputFileError, match="not a readable PyTorch checkpoint"):
        ScannPredictor.load(bad)
    assert set(PRETRAINED) == {"qm9-homo", "qm9-lumo", "qm9"}
    assert PRETRAINED["qm9-homo"][1] == "homo" and PRETRAINED["qm9-lumo"][1] == "lumo" and PRETRAINED["qm9"][1] is None


def test_prediction_dict_and_warning_text():
    dom = DomainReport(False, ["elements outside the training set: S"], ["elements"], np.array([0.5, np.nan]), [1])
    r = ScannPrediction({"homo": -6.0}, {"homo": "eV"}, np.array([0.25, 0.75]), sigma={"homo": float("nan")},
                        ga_sigma=np.array([0.1, 0.2]), domain=dom, latent_distance=0.5)
    np.testing.assert_allclose(r.relative_ga_scores, [0.5, 1.5])
    assert not r.reliable
    d = r.to_dict()
    assert d == {"properties": {"homo": -6.0}, "sigma": {"homo": None}, "units": {"homo": "eV"},
                 "ga_scores": [0.25, 0.75], "ga_sigma": [0.1, 0.2], "reliable": False, "latent_distance": 0.5,
                 "domain": dom.to_dict()}
    ok = ScannPrediction({"homo": -6.0}, {"homo": "eV"}, np.array([1.0]), sigma={"homo": 0.2})
    assert ok.reliable and ok.to_dict()["ga_sigma"] is None and ok.to_dict()["domain"] is None
    assert ok.to_dict()["sigma"] == {"homo": 0.2} and ok.to_dict()["latent_distance"] is None
    frames = [molecule("H2O")] * 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_out_of_domain(frames, [ok] * 5)
    with pytest.warns(OutOfDomainWarning) as rec:
        warn_out_of_domain(frames, [r, ok, r, r, r])
    msg = str(rec[0].message)
    assert msg.startswith("4 of 5 structures are outside the model's applicability domain; their predictions "
                          "are unreliable. structure 0 (H2O): elements outside the training set: S | structure 2 (H2O)")
    assert msg.endswith(" (and 1 more)") and "structure 4" not in msg
    with pytest.warns(OutOfDomainWarning) as rec:
        warn_out_of_domain(frames, [r, r, r])
    assert "more" not in str(rec[0].message)


def test_as_frames_annotate_export(tmp_path):
    import ase.io

    m = molecule("H2O")
    assert as_frames(m) == [m] and as_frames([m, m]) == [m, m] and as_frames(iter([m])) == [m]
    with pytest.raises(ConfigError, match="no structures to predict"):
        as_frames([])
    ase.io.write(tmp_path / "in.xyz", [m, molecule("CH4")])
    assert [len(a) for a in as_frames(tmp_path / "in.xyz")] == [3, 5]
    assert [len(a) for a in as_frames(str(tmp_path / "in.xyz"))] == [3, 5]
    dom = DomainReport(False, ["r1", "r2"], ["size"], None, [])
    res = [ScannPrediction({"homo": -6.0, "y": 1.0}, {"homo": "eV", "y": ""}, np.array([0.2, 0.3, 0.5]),
                           sigma={"homo": 0.1, "y": float("nan")}, ga_sigma=np.array([0.01, 0.02, 0.03]),
                           domain=dom, latent_distance=0.7),
           ScannPrediction({"homo": -5.0}, {"homo": "eV"}, np.array([0.5, 0.5, 0.0]))]
    m.info["energy"] = 1.0
    ann = annotate([m, m], res, model="qm9")
    a = ann[0]
    np.testing.assert_allclose(a.arrays["ga_score"], [0.2, 0.3, 0.5])
    np.testing.assert_allclose(a.arrays["ga_score_relative"], [0.6, 0.9, 1.5])
    np.testing.assert_allclose(a.arrays["ga_score_sigma"], [0.01, 0.02, 0.03])
    assert a.info["homo_pred"] == -6.0 and a.info["homo_sigma"] == 0.1 and a.info["homo_unit"] == "eV"
    assert "y_sigma" not in a.info and "y_unit" not in a.info and a.info["y_pred"] == 1.0
    assert a.info["latent_distance"] == 0.7 and a.info["in_domain"] is False
    assert a.info["domain_reasons"] == "r1 | r2" and a.info["scann_model"] == "qm9"
    assert a.info["scann_software"].startswith("napari-cxdi ")
    b = ann[1]
    assert "ga_score_sigma" not in b.arrays and "latent_distance" not in b.info and "in_domain" not in b.info
    assert "homo_sigma" not in b.info
    assert "scann_model" not in annotate([m], res[1:])[0].info
    assert a is not m and "ga_score" not in m.arrays
    ok = DomainReport(True)
    assert "domain_reasons" not in annotate([m], [ScannPrediction({}, {}, np.ones(3) / 3, domain=ok)])[0].info
    out = export_extxyz([m, m], res, tmp_path / "o.extxyz", model="qm9")
    back = ase.io.read(out, ":")
    np.testing.assert_allclose(back[0].arrays["ga_score"], [0.2, 0.3, 0.5])
    assert back[1].info["homo_pred"] == -5.0
    with pytest.raises(Exception, match="exists"):
        export_extxyz([m, m], res, out)
    export_extxyz([m, m], res, out, overwrite=True)
    with pytest.raises(ConfigError, match="2 frames but 1 predictions"):
        export_extxyz([m, m], res[:1], tmp_path / "p.extxyz")
    with pytest.raises(Exception):
        export_extxyz([m, m], res, tmp_path / "in.xyz", overwrite=True, source=tmp_path / "in.xyz")
    assert len(ase.io.read(tmp_path / "in.xyz", ":")) == 2  # the input is untouched


# -- loading: files, shipped names, devices, typed errors ------------------------------------------


def _on(predictor):
    return {next(m.parameters()).device.type for m in predictor.models}


def test_load_single_checkpoint_and_device(setup, tmp_path):
    from napari_cxdi.scann.train import save_checkpoint

    models, frames, envs, out, dom = setup
    path = save_checkpoint(tmp_path / "one.pt", models[1], voronoi=VoronoiConfig(), target_units=["eV", "eV", "meV"])
    p = ScannPredictor.load(path, device="cpu")
    assert p.n_members == 1 and p.target_names == NAMES and p.target_units == ["eV", "eV", "meV"]
    assert p.meta["target_units"] == ["eV", "eV", "meV"] and "state_dict" not in p.meta
    r = p.predict_environments(envs)[3]
    single = ensemble_predict(models[1:2], envs)
    np.testing.assert_allclose([r.properties[t] for t in NAMES], single.mean[3], atol=1e-6)
    assert all(np.isnan(v) for v in r.sigma.values()) and r.ga_sigma is None
    assert _on(p) == {"cpu"} and _on(ScannPredictor.load(path)) == {"cpu"}  # default: auto (no accelerator here)
    # the device asked for is where the weights go (the shape-only "meta" device stands in for an accelerator)
    assert _on(ScannPredictor.load(path, device=torch.device("meta"))) == {"meta"}
    ens = save_ensemble(tmp_path / "e.pt", models, voronoi=VoronoiConfig().to_dict(), scale=[1, 1, 1],
                        target_units=["eV"] * 3, domain=None, provenance={})
    assert _on(ScannPredictor.load(ens, device=torch.device("meta"))) == {"meta"}


def test_meta_names_voronoi_and_scale(setup):
    models, frames, envs, out, dom = setup
    m = {**meta(), "target_names": ["x", "y", "z"]}  # the file's names win over the model config's
    p = ScannPredictor(models, m, targets=["z"])
    assert p.meta is m and p.target_names == ["z"] and p.target_units == ["meV"]
    two = ScannPredictor(models[:2], meta())  # two members: a spread, scaled
    r = two.predict_environments(envs)[0]
    spread = ensemble_predict(models[:2], envs).std[0]
    np.testing.assert_allclose([r.sigma[t] for t in NAMES], spread * [2, 3, 4], rtol=1e-6)
    assert np.all(spread > 0)
    # predictions featurise with the model's own Voronoi settings (here a 2 Å cutoff: fewer neighbours)
    short = VoronoiConfig(cutoff=2.0)
    p = ScannPredictor(models, {**meta(), "voronoi_config": short.to_dict()})
    got = p.predict(frames[3], n_jobs=1, local_attention=True)[0]
    envs2 = featurize(structures_from_atoms(frames[3:4]), short, n_jobs=1, cache=False)
    np.testing.assert_allclose(got.properties["homo"], ensemble_predict(models, envs2).mean[0, 0], atol=1e-6)
    assert abs(got.properties["homo"] - out.mean[3, 0]) > 1e-4
    assert (got.neighbors >= 0).sum() == len(envs2.center)


def test_predict_caches_nothing(setup, tmp_path, monkeypatch):
    models, frames, envs, out, dom = setup
    monkeypatch.setenv("NAPARI_CXDI_CACHE", str(tmp_path / "cache"))
    ScannPredictor(models, meta()).predict(frames[:2], n_jobs=1)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npz"))


def test_predict_passes_options_and_flags_crystals(setup):
    from ase.build import bulk

    models, frames, envs, out, dom = setup
    p = ScannPredictor(models, meta(dom))
    r = predict(p, frames[2], n_jobs=1, local_attention=True)[0]
    assert r.local_attention is not None and r.neighbors.shape[0] == 4
    assert p.predict(frames[2], n_jobs=1)[0].local_attention is None
    crystal = bulk("C", "diamond", a=3.57)
    with pytest.warns(OutOfDomainWarning):
        res = p.predict([frames[0], crystal], n_jobs=1)
    assert "periodic" in res[1].domain.codes and "periodic" not in res[0].domain.codes


def test_warning_points_at_the_caller(setup, monkeypatch):
    """stacklevel 3: warn_out_of_domain <- ScannPredictor.predict <- the user's line."""
    import warnings as w

    models, frames, envs, out, dom = setup
    seen = []
    monkeypatch.setattr(w, "warn", lambda *a, **k: seen.append(k))
    ScannPredictor(models, meta(dom)).predict([molecule("SO2")], n_jobs=1)
    assert seen == [{"stacklevel": 3}]


def test_shipped_model_names(setup, tmp_path, monkeypatch):
    """Names resolve to the shipped ensemble file (a stand-in here) and select their target."""
    import sys

    pm = sys.modules[ScannPredictor.__module__]  # the module (the package re-exports a function of its name)
    models, frames, envs, out, dom = setup
    two = []
    for seed in range(2):
        torch.manual_seed(seed)
        two.append(build_model(ScannConfig(width=8, n_layers=1, n_heads=2, z_embedding=4, n_gaussians=5, readout=6,
                                           dropout=0.0, n_targets=2, target_names=["homo", "lumo"])).eval())
    path = save_ensemble(tmp_path / "stand_in.pt", two, voronoi=VoronoiConfig().to_dict(), scale=[1.0, 1.0],
                         target_units=["eV", "eV"], domain=None, provenance={})
    asked = []
    monkeypatch.setattr(pm, "sample_file", lambda *a: asked.append(a) or path)
    homo = ScannPredictor.load("qm9-homo", device="cpu")
    assert asked == [("models", "scann_qm9_ensemble.pt")]
    assert homo.target_names == ["homo"] and homo.target_units == ["eV"] and homo.n_members == 2
    assert ScannPredictor.load("qm9-lumo").target_names == ["lumo"]
    assert ScannPredictor.load("qm9").target_names == ["homo", "lumo"]
    assert ScannPredictor.load("qm9-lumo", targets=["homo"]).target_names == ["homo"]  # explicit targets win
    r = ScannPredictor.load("qm9-lumo").predict_environments(envs)[0]
    assert r.properties["lumo"] == pytest.approx(ensemble_predict(two, envs).mean[0, 1], abs=1e-6)


def test_model_file_errors(tmp_path):
    import datetime

    from napari_cxdi.scann.predict import _load_model_file
    from napari_cxdi.scann.uncertainty import ENSEMBLE_FORMAT

    missing = tmp_path / "none.pt"
    with pytest.raises(InputFileError, match=r"^.*none\.pt: model file does not exist$") as err:
        _load_model_file(missing, torch.device("cpu"))
    assert err.value.path == str(missing)
    with pytest.raises(InputFileError) as err:
        ScannPredictor.load(missing)
    assert err.value.path == str(missing)
    bad = tmp_path / "bad.pt"
    bad.write_text("not torch")
    with pytest.raises(InputFileError, match=r"bad\.pt: not a readable PyTorch checkpoint \(UnpicklingError: ") as err:
        ScannPredictor.load(bad)
    assert err.value.path == str(bad)
    # arbitrary pickled objects are never loaded (weights only), even inside a well-formed ensemble dict
    evil = tmp_path / "evil.pt"
    torch.save({"format": ENSEMBLE_FORMAT, "members": [], "model_config": {}, "when": datetime.date(2020, 1, 1)}, evil)
    with pytest.raises(InputFileError, match=r"evil\.pt: not a readable PyTorch checkpoint \(UnpicklingError: "):
        ScannPredictor.load(evil)

    # ... also where the environment turns PyTorch's default (weights only) off: weights_only=True is explicit
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
        with pytest.raises(InputFileError, match=r"evil\.pt: not a readable PyTorch checkpoint \(UnpicklingError: "):
            ScannPredictor.load(evil)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    for path in (tensor, other):
        with pytest.raises(InputFileError, match=r"not a SCANN checkpoint \(expected format 'napari-cxdi-scann/1'\)"):
            ScannPredictor.load(path)
    with pytest.raises(ConfigError, match=r"^no structures to predict$"):
        as_frames([])


def test_warning_text_for_three_and_annotation_flags(tmp_path):
    import ase.io

    bad = DomainReport(False, ["size"], ["size"], None, [])
    r = ScannPrediction({"homo": -6.0}, {"homo": "eV"}, np.array([0.5, 0.5]), domain=bad)
    frames = [Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])] * 3
    with pytest.warns(OutOfDomainWarning) as rec:
        warn_out_of_domain(frames, [r, r, r])
    assert str(rec[0].message) == ("3 of 3 structures are outside the model's applicability domain; their predictions "
                                   "are unreliable. structure 0 (H2): size | structure 1 (H2): size | structure 2 (H2): "
                                   "size")
    ok = ScannPrediction({"homo": -6.0}, {"homo": "eV"}, np.array([0.25, 0.75], dtype=np.float32),
                         ga_sigma=np.array([0.1, 0.2], dtype=np.float32), domain=DomainReport(True))
    a = annotate(frames[:1], [ok])[0]
    assert a.info["in_domain"] is True and "domain_reasons" not in a.info
    for key in ("ga_score", "ga_score_relative", "ga_score_sigma"):
        assert a.arrays[key].dtype == np.float64
    np.testing.assert_array_equal(a.arrays["ga_score_relative"], [0.5, 1.5])

    class Old:  # a result object from before latent distances existed
        properties, units, sigma, domain, ga_sigma = {"homo": -6.0}, {"homo": "eV"}, {}, None, None
        ga_scores = relative_ga_scores = np.array([1.0, 1.0])

    assert "latent_distance" not in annotate(frames[:1], [Old()])[0].info
    out = export_extxyz(frames[:1], [ok], tmp_path / "o.extxyz", model="my-model.pt")
    back = ase.io.read(out)
    assert back.info["scann_model"] == "my-model.pt" and back.info["in_domain"] is True
