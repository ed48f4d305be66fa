"""``napari-cxdi scann train|predict`` through the sub-command's own parser."""

import argparse
import json

import numpy as np
import pytest
from ase.build import molecule

from napari_cxdi.cli import scann as scann_cli
from napari_cxdi.errors import CXDIError, ConfigError, OutputExistsError



def run(argv):
    parser = argparse.ArgumentParser(prog="napari-cxdi")
    sub = parser.add_subparsers(dest="command")
    scann_cli.register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def labelled_traj(tmp_path_factory):
    """A small 'MD' trajectory (extxyz) with a per-frame property in atoms.info."""
    import ase.io

    rng = np.random.default_rng(0)
    frames = []
    for name in ["CH3CH2OH", "C6H6", "CH4", "H2O", "CH3COOH", "C2H4"] * 4:
        a = molecule(name)
        a.positions += 0.03 * rng.normal(size=a.positions.shape)
        a.info["score"] = float(len(a)) + 0.1 * rng.normal()
        frames.append(a)
    path = tmp_path_factory.mktemp("cli") / "traj.extxyz"
    ase.io.write(path, frames)
    return path


def test_train_then_predict_writes_checkpoint_and_extxyz(labelled_traj, tmp_path, capsys):
    import ase.io

    ckpt = tmp_path / "m.pt"
    rc = run(["scann", "train", "--data", str(labelled_traj), "--property", "score", "--width", "16",
              "--layers", "1", "--heads", "2", "--epochs", "2", "--batch-size", "8", "--device", "cpu",
              "--jobs", "1", "-o", str(ckpt)])
    assert rc == 0 and ckpt.exists()
    report = json.loads(capsys.readouterr().out)
    assert report["n_train"] + report["n_val"] + report["n_test"] == 24

    out = tmp_path / "scored.extxyz"
    rc = run(["scann", "predict", str(labelled_traj), "-m", str(ckpt), "-o", str(out), "--json",
              str(tmp_path / "p.json"), "--device", "cpu"])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.count("frame ") == 24 and "score =" in text
    frames = ase.io.read(out, ":")
    assert len(frames) == 24
    for f in frames:
        assert f.arrays["ga_score"].sum() == pytest.approx(1.0, abs=1e-5)
    payload = json.loads((tmp_path / "p.json").read_text())
    assert len(payload["frames"]) == 24 and "version" in payload
    assert payload["config"]["ensemble_members"] == 1 and payload["config"]["members_per_target"] == {"score": 1}

    with pytest.raises(OutputExistsError):  # no silent overwrite
        run(["scann", "predict", str(labelled_traj), "-m", str(ckpt), "-o", str(out), "--device", "cpu"])
    with pytest.raises(OutputExistsError):  # never the input, even with --overwrite
        run(["scann", "predict", str(labelled_traj), "-m", str(ckpt), "-o", str(labelled_traj), "--overwrite",
             "--device", "cpu"])


def test_cli_errors_are_typed(labelled_traj, tmp_path):
    with pytest.raises(ConfigError):
        run(["scann", "train", "--data", str(labelled_traj), "-o", str(tmp_path / "x.pt")])
    with pytest.raises(CXDIError):
        run(["scann", "predict", str(tmp_path / "missing.xyz"), "-m", str(tmp_path / "none.pt")])
    with pytest.raises(CXDIError):
        run(["scann", "predict", str(labelled_traj), "-m", str(tmp_path / "none.pt")])
