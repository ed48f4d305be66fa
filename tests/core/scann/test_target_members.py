"""Per-target ensemble members (issue 16): validation of the lists, the statistics over each target's
members, greedy forward selection against hand-made cases and as a property, ensemble outputs, files
(format /2, /1 still read) and ScannPredictor (each target its own members; unused members not run).
Tiny models (conftest's ``tiny_models``); seconds."""

import numpy as np
import pytest
import torch
from ase.build import molecule
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from napari_cxdi.errors import ConfigError, InputFileError
from napari_cxdi.scann import VoronoiConfig, featurize, structures_from_atoms
from napari_cxdi.scann.predict import ScannPredictor, _load_model_file
from napari_cxdi.scann.uncertainty import (ENSEMBLE_FORMAT, ENSEMBLE_FORMATS, check_target_members, ensemble_predict,
                                           load_ensemble_file, member_statistics, save_ensemble, select_members,
                                           used_members)

NAMES = ["homo", "lumo"]


@pytest.fixture(scope="module")
def envs():
    torch.set_num_threads(1)
    return featurize(structures_from_atoms([molecule(n) for n in ("H2O", "CH4", "NH3", "CH3OH")]),
                     VoronoiConfig(), n_jobs=1, cache=False)


# -- the lists ----------------------------------------------------------------------------------------

def test_check_target_members_forms_and_order():
    assert check_target_members(None, 3, NAMES) is None
    assert check_target_members({"lumo": [2, 0, 2], "homo": [1]}, 3, NAMES) == [[1], [0, 2]]
    assert check_target_members([[2, 1], (0,)], 3, NAMES) == [[1, 2], [0]]
    assert check_target_members([np.array([1, 0]), [np.int64(2), 2.0]], 3, NAMES) == [[0, 1], [2]]
    out = check_target_members({"homo": [0], "lumo": [0]}, 1, NAMES)
    assert out == [[0], [0]] and all(type(k) is int for idx in out for k in idx)


@pytest.mark.parametrize("tm, match", [
    ({"homo": [0]}, r"must name every target \['homo', 'lumo'\] once; unknown \[\], missing \['lumo'\]"),
    ({"homo": [0], "lumo": [1], "gap": [0]}, r"unknown \['gap'\], missing \[\]"),
    ([[0]], r"target_members has 1 lists for 2 targets \['homo', 'lumo'\]"),
    ([[0], [1], [2]], "has 3 lists for 2 targets"),
    ({"homo": [], "lumo": [0]}, r"target_members\['homo'\] must be a non-empty list of member indices in 0\.\.2, got \[\]"),
    ({"homo": [0], "lumo": [3]}, r"target_members\['lumo'\] .* got \[3\]"),
    ({"homo": [-1], "lumo": [0]}, r"target_members\['homo'\] .* got \[-1\]"),
    ({"homo": [0.5], "lumo": [0]}, r"got \[0\.5\]"),
    ({"homo": ["a"], "lumo": [0]}, r"got \['a'\]"),
    ({"homo": 1, "lumo": [0]}, "got 1$"),
    ({"homo": [None], "lumo": [0]}, r"got \[None\]"),
])
def test_check_target_members_errors(tm, match):
    with pytest.raises(ConfigError, match=match):
        check_target_members(tm, 3, NAMES)


def test_used_members_and_statistics():
    assert used_members(None, 3) == [0, 1, 2]
    assert used_members([[2], [0, 2]], 4) == [0, 2]
    assert used_members([[1]], 4) == [1]
    members = np.array([[[1.0, 10.0], [2.0, 20.0]],
                        [[3.0, 30.0], [4.0, 40.0]],
                        [[8.0, 80.0], [0.0, 60.0]]])  # (K=3, S=2, T=2)
    mean, std = member_statistics(members)
    np.testing.assert_allclose(mean, members.mean(0))
    np.testing.assert_allclose(std, members.std(0))
    mean, std = member_statistics(members, [[0, 1], [2]])
    np.testing.assert_allclose(mean, [[2.0, 80.0], [3.0, 60.0]])
    np.testing.assert_allclose(std, [[1.0, 0.0], [1.0, 0.0]])
    mean, std = member_statistics(members, [[2], [0, 1, 2]])
    np.testing.assert_allclose(mean, [[8.0, 40.0], [0.0, 40.0]])
    np.testing.assert_allclose(std[:, 1], [np.std([10, 30, 80]), np.std([20, 40, 60])])
    with pytest.raises(ConfigError, match="target_members has 1 lists for 2 targets"):
        member_statistics(members, [[0]])


# -- greedy forward selection -------------------------------------------------------------------------

def test_select_members_hand_made():
    y = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    e = np.array([1.0, -1.0, 1.0, -1.0])
    homo = np.stack([0.9 * e, 3 * e, -e, 5 + 0 * e])  # 0 best alone; 0 + 2 nearly cancel; 3 hurts
    lumo = np.stack([4 * e, 0.5 + 0 * e, 2 * e, -2 * e])  # 1 best alone; 2 + 3 cancel exactly
    members = np.stack([homo, lumo], axis=-1)  # (4, 4, 2)
    # homo: {0} 0.9 -> {0, 2} 0.05 -> adding 1 (0.967) or 3 (1.68) is worse: stop
    # lumo: {1} 0.5 -> {1, 2} (0.5 + 2e)/2 -> MAE 1.0 vs {1, 3} 1.0 (tie: lower index 2) vs {1, 0} 2.0 -> min 2
    #       forces the second; then {1, 2, 3} = 0.5/3 -> 0.1667, then {0,1,2,3} (4e + 0.5)/4: 1.0 -> stop
    assert select_members(members, y) == [[0, 2], [1, 2, 3]]
    assert select_members(members, y, min_members=1) == [[0, 2], [1]]
    assert select_members(members, y, min_members=4) == [[0, 1, 2, 3]] * 2
    assert select_members(members, y, min_members=9) == [[0, 1, 2, 3]] * 2  # at most K
    assert select_members(members[:1], y, min_members=2) == [[0], [0]]
    # a member that leaves the MAE unchanged is not added (a tie is no gain)
    twins = np.zeros((3, 2, 1))
    twins[2] += 1.0
    assert select_members(twins, np.zeros((2, 1)), min_members=1) == [[0]]
    # the mean is over every chosen member: {0, 1} (MAE 0.25) beats {0, 1, 3} ((1 - 1.5 + 1.5) / 3)
    one = np.array([1.0, -1.5, 10.0, 1.5]).reshape(4, 1, 1)
    assert select_members(one, np.zeros((1, 1)), min_members=1) == [[0, 1]]
    assert select_members(one.astype(np.float32), np.zeros((1, 1), np.float32), min_members=1) == [[0, 1]]


def test_select_members_ignores_missing_targets_and_checks_input():
    y = np.array([[0.0], [np.nan], [0.0]])
    members = np.array([[[1.0], [0.0], [1.0]], [[0.5], [100.0], [0.5]]])  # member 1 wins where y is known
    assert select_members(members, y, min_members=1) == [[1]]
    with pytest.raises(ConfigError, match=r"need members \(K, S, T\) and target \(S, T\), got \(2, 3\), \(3, 1\)"):
        select_members(members[..., 0], y)
    with pytest.raises(ConfigError, match=r"got \(2, 3, 1\), \(2, 1\)"):
        select_members(members, y[:2])
    with pytest.raises(ConfigError, match="min_members must be >= 1, got 0"):
        select_members(members, y, min_members=0)
    with pytest.raises(ConfigError, match="target column 0 has no finite value"):
        select_members(members, np.full((3, 1), np.nan))


def _mae(p, y):
    return float(np.mean(np.abs(p - y)))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 12), st.integers(1, 2)),
              elements=st.floats(-5, 5, allow_nan=False)),
       st.integers(1, 3), st.randoms(use_true_random=False))
def test_select_members_stops_where_no_member_helps(members, min_members, rnd):
    K, S, T = members.shape
    y = np.array([[rnd.uniform(-5, 5) for _ in range(T)] for _ in range(S)])
    tm = select_members(members, y, min_members=min_members)
    assert len(tm) == T
    for t, idx in enumerate(tm):
        assert idx == sorted(set(idx)) and min(min_members, K) <= len(idx) <= K
        chosen = _mae(members[idx, :, t].mean(0), y[:, t])
        # never worse than the best single member once selection is free to stop (min 1)
        if min_members == 1:
            assert chosen <= min(_mae(members[k, :, t], y[:, t]) for k in range(K)) + 1e-12
        # where it stopped early, no further member lowers the MAE
        if len(idx) > min(min_members, K):
            for k in set(range(K)) - set(idx):
                assert _mae(members[idx + [k], :, t].mean(0), y[:, t]) >= chosen - 1e-12
    assert select_members(members, y, min_members=min_members) == tm  # deterministic


# -- ensemble outputs ---------------------------------------------------------------------------------

def test_ensemble_predict_per_target_members(envs, tiny_models):
    models = tiny_models(3)
    full = ensemble_predict(models, envs, atom_features=True)
    assert full.target_members is None and len(full.ga_members) == len(envs)
    tm = {"homo": [2, 0], "lumo": [1]}
    out = ensemble_predict(models, envs, atom_features=True, target_members=tm)
    assert out.target_members == [[0, 2], [1]]
    np.testing.assert_allclose(out.members, full.members)
    np.testing.assert_allclose(out.mean[:, 0], full.members[[0, 2], :, 0].mean(0))
    np.testing.assert_allclose(out.std[:, 0], full.members[[0, 2], :, 0].std(0))
    np.testing.assert_allclose(out.mean[:, 1], full.members[1, :, 1])
    assert not out.std[:, 1].any()
    for s, n in enumerate(envs.n_atoms):
        assert full.ga_members[s].shape == (3, n)
        np.testing.assert_allclose(out.ga_mean[s], full.ga_members[s].mean(0))  # members 0, 1, 2 all serve
        np.testing.assert_allclose(out.atom_features[s], full.atom_features[s])
    two = ensemble_predict(models, envs, target_members=[[0], [0, 2]])
    sel = full.with_members([[0], [0, 2]])
    assert sel.target_members == [[0], [0, 2]] and full.target_members is None  # a copy
    for o in (two, sel):
        np.testing.assert_allclose(o.mean[:, 0], full.members[0, :, 0])
        np.testing.assert_allclose(o.mean[:, 1], full.members[[0, 2], :, 1].mean(0))
        np.testing.assert_allclose(o.std[:, 0], 0.0)
        np.testing.assert_allclose(o.std[:, 1], full.members[[0, 2], :, 1].std(0))
        assert o.std[:, 1].min() > 0
        for s in range(len(envs)):
            np.testing.assert_allclose(o.ga_mean[s], full.ga_members[s][[0, 2]].mean(0))
            np.testing.assert_allclose(o.ga_std[s], full.ga_members[s][[0, 2]].std(0))
    back = sel.with_members(None)
    np.testing.assert_allclose(back.mean, full.mean)
    np.testing.assert_allclose(back.ga_std[1], full.ga_std[1])
    with pytest.raises(ConfigError, match=r"target_members\['column 1'\] must be a non-empty list .* got \[5\]"):
        full.with_members([[0], [5]])
    with pytest.raises(ConfigError, match=r"target_members\['lumo'\] .* got \[3\]"):
        ensemble_predict(models, envs, target_members={"homo": [0], "lumo": [3]})
    from dataclasses import replace

    with pytest.raises(ConfigError, match="^these ensemble outputs keep no per-member GA scores to select from$"):
        replace(full, ga_members=None).with_members([[0], [1]])


# -- files --------------------------------------------------------------------------------------------

def _save(path, models, **kw):
    return save_ensemble(path, models, voronoi=VoronoiConfig().to_dict(), scale=[2.0, 3.0],
                         target_units=["eV", "eV"], domain=None, provenance={}, **kw)


def test_files_keep_per_target_members(tmp_path, envs, tiny_models):
    models = tiny_models(3)
    assert ENSEMBLE_FORMAT == "napari-cxdi-scann-ensemble/2" and ENSEMBLE_FORMATS[0] == "napari-cxdi-scann-ensemble/1"
    path = _save(tmp_path / "e.pt", models, target_members=[[2, 1], [0]])
    obj = torch.load(path, weights_only=True)
    assert obj["format"] == ENSEMBLE_FORMAT and obj["target_members"] == {"homo": [1, 2], "lumo": [0]}
    back, meta = load_ensemble_file(obj, path, "cpu")
    assert len(back) == 3 and meta["target_members"] == {"homo": [1, 2], "lumo": [0]}
    assert torch.load(_save(tmp_path / "all.pt", models), weights_only=True)["target_members"] is None
    with pytest.raises(ConfigError, match=r"target_members\['lumo'\] .* 0\.\.2, got \[3\]"):
        _save(tmp_path / "bad.pt", models, target_members={"homo": [0], "lumo": [3]})
    assert not (tmp_path / "bad.pt").exists()
    # format /1 (before per-target members) still loads, every member for every target
    old = {**obj, "format": "napari-cxdi-scann-ensemble/1"}
    del old["target_members"]
    torch.save(old, tmp_path / "old.pt")
    models1, meta1 = _load_model_file(tmp_path / "old.pt", "cpu")
    assert len(models1) == 3 and meta1.get("target_members") is None
    p1 = ScannPredictor(models1, meta1)
    np.testing.assert_allclose([list(r.properties.values()) for r in p1.predict_environments(envs)],
                               ensemble_predict(models, envs).mean, atol=1e-6)
    # a damaged list is a typed error naming the file
    torch.save({**obj, "target_members": {"homo": [0], "lumo": [7]}}, tmp_path / "damaged.pt")
    with pytest.raises(InputFileError, match=r"damaged\.pt.*damaged SCANN ensemble: target_members\['lumo'\]"):
        _load_model_file(tmp_path / "damaged.pt", "cpu")
    with pytest.raises(InputFileError, match=r"expected format 'napari-cxdi-scann-ensemble/1' or "
                                             r"'napari-cxdi-scann-ensemble/2'"):
        load_ensemble_file({"format": "napari-cxdi-scann-ensemble/3"}, path, "cpu")


# -- the predictor ------------------------------------------------------------------------------------

def test_predictor_averages_each_target_over_its_members(tmp_path, envs, tiny_models):
    models = tiny_models(4)
    full = ensemble_predict(models, envs)
    models_, meta = _load_model_file(_save(tmp_path / "e.pt", models, target_members={"homo": [1, 2], "lumo": [3]}),
                                     "cpu")
    p = ScannPredictor(models_, meta)
    assert p.n_members == 3 and p.target_members == {"homo": [1, 2], "lumo": [3]}
    assert ScannPredictor(models_, meta, targets=["lumo", "homo"]).target_members == {"lumo": [3], "homo": [1, 2]}
    assert ScannPredictor(models_[:2], {"target_names": NAMES}).target_members == {"homo": [0, 1], "lumo": [0, 1]}
    assert p.sigma_scale[0] == 2.0 and np.isnan(p.sigma_scale[1])
    res = p.predict_environments(envs)
    for s, r in enumerate(res):
        assert r.properties["homo"] == pytest.approx(full.members[[1, 2], s, 0].mean(), abs=1e-6)
        assert r.properties["lumo"] == pytest.approx(full.members[3, s, 1], abs=1e-6)
        assert r.sigma["homo"] == pytest.approx(2.0 * full.members[[1, 2], s, 0].std(), abs=1e-6)
        assert np.isnan(r.sigma["lumo"])  # one member: no spread, no scaled sigma
        ga = np.stack([ensemble_predict([models[k]], envs).ga_mean[s] for k in (1, 2, 3)])
        np.testing.assert_allclose(r.ga_scores, ga.mean(0), atol=1e-6)
        np.testing.assert_allclose(r.ga_sigma, ga.std(0), atol=1e-6)

    # one target asked: only its members (and member 0, for the domain) run
    homo = ScannPredictor(models_, meta, targets=["homo"])
    assert homo.n_members == 2 and homo._run == [0, 1, 2]
    lumo = ScannPredictor(models_, meta, targets=["lumo"])
    assert lumo.n_members == 1 and lumo.sigma_scale is None and lumo._run == [0, 3]
    r = lumo.predict_environments(envs)[1]
    assert r.ga_sigma is None and np.isnan(r.sigma["lumo"])
    np.testing.assert_allclose(r.ga_scores, ensemble_predict([models[3]], envs).ga_mean[1], atol=1e-6)

    def boom(*a, **k):
        raise AssertionError("a member that serves no asked target was run")

    models_[3].forward = boom
    r = homo.predict_environments(envs)[2]
    assert list(r.properties) == ["homo"]
    assert r.properties["homo"] == pytest.approx(full.members[[1, 2], 2, 0].mean(), abs=1e-6)
    ga = np.stack([ensemble_predict([models[k]], envs).ga_mean[2] for k in (1, 2)])
    np.testing.assert_allclose(r.ga_scores, ga.mean(0), atol=1e-6)
    with pytest.raises(AssertionError, match="serves no asked target"):
        lumo.predict_environments(envs)  # member 3 alone serves lumo: it is run
