"""scripts/train_scann_qm9.py end to end on a 300-molecule QM9 subset with tiny members: members
trained, the ensemble built with per-target members chosen on validation (``--select-members``),
unused members left out of the file, and the file predicting each target from exactly its members.
About a minute on one core."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule

from napari_cxdi.scann import VoronoiConfig, featurize, load_checkpoint, structures_from_atoms
from napari_cxdi.scann.predict import ScannPredictor
from napari_cxdi.scann.uncertainty import ensemble_predict

REPO = Path(__file__).resolve().parents[3]


def _script():
    spec = importlib.util.spec_from_file_location("train_scann_qm9_under_test", REPO / "scripts" / "train_scann_qm9.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train_script")
    mp = pytest.MonkeyPatch()
    mp.setenv("NAPARI_CXDI_CACHE", str(tmp / "cache"))
    try:
        torch.set_num_threads(1)
        T = _script()
        work, out = tmp / "work", tmp / "ens.pt"
        common = ["--n-total", "300", "--jobs", "1", "--width", "8", "--layers", "1", "--heads", "2",
                  "--work-dir", str(work), "--time-limit-min", "0", "--domain-structures", "100",
                  "--domain-atoms-per-element", "50", "--threads", "1"]
        # members 0, 1 weigh HOMO, members 2, 3 LUMO (as pooled runs with different --target-weights)
        for n, w in ((2, ["1", "0.01"]), (4, ["0.01", "1"])):
            assert T.main(["--stage", "members", "--members", str(n), "--epochs", "3", "--batch-size", "32",
                           "--lr", "3e-3", "--target-weights", *w, *common]) == 0
        assert T.main(["--stage", "ensemble", "--select-members", "--min-members", "2", "--out", str(out),
                       *common]) == 0
        assert T.main(["--stage", "calibrate", "--from", str(out), "--out", str(tmp / "recal.pt"), *common]) == 0
    finally:
        mp.undo()
    return work, out, tmp / "cache"


def test_select_members_writes_each_targets_members(built):
    work, out, _ = built
    info = json.loads(out.with_suffix(".json").read_text())
    m = info["metrics"]
    assert m["candidate_members"] == ["member_0.pt", "member_1.pt", "member_2.pt", "member_3.pt"]
    chosen = m["target_members"]
    assert set(chosen) == {"homo", "lumo"} and all(chosen.values())
    used = sorted({f for names in chosen.values() for f in names})
    assert info["members"] == used and m["n_members"] == len(used)  # only members some target uses
    assert set(m["val_mae_all_members_meV"]) == {"homo", "lumo"} and set(m["test_mae_all_members_meV"]) == {"homo", "lumo"}
    obj = torch.load(out, map_location="cpu", weights_only=True)
    assert len(obj["members"]) == len(used)
    assert {t: [used[k] for k in idx] for t, idx in obj["target_members"].items()} == chosen

    envs = featurize(structures_from_atoms([molecule(n) for n in ("H2O", "CH4", "CH3OH")]), VoronoiConfig(),
                     n_jobs=1, cache=False)
    singles = {f: ensemble_predict([load_checkpoint(work / f)[0]], envs).members[0] for f in used}  # (S, T)
    for target in ("homo", "lumo"):
        p = ScannPredictor.load(out, device="cpu", targets=[target])
        assert p.n_members == len(chosen[target])
        t = ["homo", "lumo"].index(target)
        expected = np.mean([singles[f][:, t] for f in chosen[target]], axis=0)
        got = [r.properties[target] for r in p.predict_environments(envs)]
        np.testing.assert_allclose(got, expected, atol=1e-5)
    both = ScannPredictor.load(out, device="cpu")
    assert both.n_members == len(used)
    # recalibration refits sigma and keeps the members and each target's share of them
    recal = torch.load(out.parent / "recal.pt", map_location="cpu", weights_only=True)
    assert recal["target_members"] == obj["target_members"] and len(recal["members"]) == len(used)
    m2 = recal["provenance"]["metrics"]
    for t in ("homo", "lumo"):
        assert m2["calibration_val"][t]["mae"] == pytest.approx(m["calibration_val"][t]["mae"], rel=1e-6)


def test_the_ensemble_is_never_written_onto_a_member(built, monkeypatch):
    from napari_cxdi.errors import OutputExistsError

    work, _, cache = built
    monkeypatch.setenv("NAPARI_CXDI_CACHE", str(cache))
    member = work / "member_1.pt"
    before = member.read_bytes()
    T = _script()
    with pytest.raises(OutputExistsError, match="this is an input of the run"):
        T.main(["--stage", "ensemble", "--n-total", "300", "--jobs", "1", "--work-dir", str(work), "--out", str(member)])
    assert member.read_bytes() == before


def test_the_selection_is_greedy_on_validation(built, monkeypatch):
    """The recorded members are greedy forward selection's on the validation split, and the recorded
    validation MAE is theirs."""
    from napari_cxdi.scann.uncertainty import member_statistics, select_members

    work, out, cache = built
    monkeypatch.setenv("NAPARI_CXDI_CACHE", str(cache))
    m = json.loads(out.with_suffix(".json").read_text())["metrics"]
    T = _script()
    _, envs, parts, _ = T.load_data(T.argparse.Namespace(n_total=300, n_val=30, n_test=30, jobs=1))
    val = envs.subset(parts[1])
    files = sorted(work.glob("member_*.pt"))
    preds = ensemble_predict([load_checkpoint(p)[0] for p in files], val).members
    tm = select_members(preds, val.targets, min_members=2)
    assert m["target_members"] == {t: [files[k].name for k in idx] for t, idx in zip(("homo", "lumo"), tm)}
    mean, _ = member_statistics(preds, tm)
    for t, name in enumerate(("homo", "lumo")):
        assert 1000 * m["calibration_val"][name]["mae"] == pytest.approx(
            1000 * np.nanmean(np.abs(mean[:, t] - val.targets[:, t])), abs=1e-3)
        assert m["val_mae_all_members_meV"][name] == pytest.approx(
            1000 * np.nanmean(np.abs(preds.mean(0)[:, t] - val.targets[:, t])), abs=0.01)
