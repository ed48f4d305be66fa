"""ResNet, training, checkpoints, saliency / Grad-CAM, the CLI and the shipped model."""

import argparse
import json

import numpy as np
import pytest
import torch

from napari_cxdi.cli import speckle as speckle_cli
from napari_cxdi.errors import ConfigError, InputFileError, OutputExistsError
from napari_cxdi.speckle.classifier import load_checkpoint, save_checkpoint
from napari_cxdi.speckle.dataset import SpeckleDatasetConfig, make_dataset, split_indices
from napari_cxdi.speckle.patterns import PreprocessConfig, prepare
from napari_cxdi.speckle.resnet import build_resnet
from napari_cxdi.speckle.saliency import grad_cam, saliency_map, to_pattern_frame
from napari_cxdi.speckle.train import TrainConfig, run_training, train

PRE = PreprocessConfig(window=513, bin=19, transform="log")



@pytest.fixture(scope="module")
def three_classes():
    """3 well-separated classes (2, 8, 20 disks), 513 window binned 19 -> 27 x 27 inputs."""
    cfg = SpeckleDatasetConfig(n_values=(2, 8, 20), per_class=30, window=513, bin=19, method="analytic", seed=11)
    data = make_dataset(cfg)
    return data, prepare(data.patterns, PRE, input_bin=19)


@pytest.fixture(scope="module")
def tiny_model(three_classes):
    torch.manual_seed(0)
    data, x = three_classes
    tr, va, te = split_indices(data.labels, test_per_class=8, val_fraction=0.15, seed=0)
    cfg = TrainConfig(depth=18, width=8, epochs=10, batch_size=16, lr=3e-3, patience=None, seed=0, device="cpu")
    epochs = []
    clf = run_training(train(x[tr], data.labels[tr], x[va], data.labels[va], PRE, cfg),
                       lambda p: p["stage"] == "epoch" and epochs.append(p))
    return clf, x[te], data.labels[te], epochs


@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_shapes_any_input_size(depth):
    model = build_resnet(depth, num_classes=5, width=8).eval()
    for size in (33, 45):
        assert model(torch.randn(2, 1, size, size)).shape == (2, 5)
    reg = build_resnet(depth, num_classes=5, width=8, task="regression", coord=True).eval()
    assert reg(torch.randn(3, 1, 40, 40)).shape == (3,) and reg.stem[0].in_channels == 2
    with pytest.raises(ConfigError):
        build_resnet(20)


def test_tiny_classifier_beats_chance(tiny_model):
    clf, x_test, y_test, epochs = tiny_model
    assert len(epochs) == 10 and epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    acc = np.mean(clf.predict_prepared(x_test)["pred"] == y_test)
    assert acc >= 0.8  # chance is 1/3
    assert clf.provenance["metrics"]["best_epoch"] >= 1 and clf.provenance["config"]["classes"] == [2, 8, 20]


def test_regression_head_trains(three_classes):
    data, x = three_classes
    cfg = TrainConfig(width=8, epochs=1, batch_size=16, task="regression", patience=None, device="cpu")
    clf = run_training(train(x[::2], data.labels[::2], x[1::2], data.labels[1::2], PRE, cfg))
    assert clf.target_norm == (10.0, pytest.approx(np.std([2, 8, 20])))
    out = clf.predict_prepared(x[1::2])
    assert out["probs"] is None and out["value"].shape == (45,)
    assert set(out["pred"].tolist()) <= {2, 8, 20}


def test_checkpoint_roundtrip(tiny_model, tmp_path):
    clf, x_test, _, _ = tiny_model
    path = save_checkpoint(clf, tmp_path / "m.pt")
    back = load_checkpoint(path, "cpu")
    assert np.allclose(back.predict_prepared(x_test)["probs"], clf.predict_prepared(x_test)["probs"], atol=1e-5)
    assert back.preprocess == PRE and back.classes.tolist() == [2, 8, 20]
    half = load_checkpoint(save_checkpoint(clf, tmp_path / "h.pt", half=True), "cpu")
    assert np.array_equal(half.predict_prepared(x_test)["pred"], clf.predict_prepared(x_test)["pred"])
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputFileError):
        load_checkpoint(tmp_path / "bad.pt")


def test_saliency_and_gradcam_have_input_shape(tiny_model):
    clf, x_test, _, _ = tiny_model
    for fn in (grad_cam, saliency_map):
        m = fn(clf.model, x_test[0])
        assert m.shape == x_test[0].shape and np.all(np.isfinite(m))
        assert m.min() >= 0 and m.max() <= 1 and m.max() > 0
    cam1 = grad_cam(clf.model, x_test[0], target=1)
    assert cam1.shape == x_test[0].shape
    frame = to_pattern_frame(m, PRE, (513, 513))
    assert frame.shape == (513, 513) and frame[256, 256] == m[13, 13]


def _parser():
    parser = argparse.ArgumentParser(prog="napari-cxdi")
    speckle_cli.register(parser.add_subparsers(dest="command"))
    return parser


def _run(argv):
    args = _parser().parse_args(argv)
    return args.func(args)


def test_cli_simulate_train_evaluate_classify(tmp_path, capsys):
    data = tmp_path / "d.h5"
    assert _run(["speckle", "simulate", str(data), "--n-min", "2", "--n-max", "4", "--per-class", "8",
                 "--bin", "19", "--method", "analytic", "--seed", "1"]) == 0
    with pytest.raises(OutputExistsError):
        _run(["speckle", "simulate", str(data), "--per-class", "1"])
    model = tmp_path / "m.pt"
    assert _run(["speckle", "train", str(data), "--out", str(model), "--width", "8", "--epochs", "1",
                 "--model-bin", "19", "--transform", "log", "--test-per-class", "2", "--val-fraction", "0.2", "--device", "cpu"]) == 0
    report = json.loads(model.with_suffix(".json").read_text())
    assert report["metrics"]["test"]["n"] == 6 and "baseline" in report["test_report"]
    assert report["version"] and report["config"]["train"]["width"] == 8
    with pytest.raises(OutputExistsError):
        _run(["speckle", "train", str(data), "--out", str(data)])
    out_json = tmp_path / "eval.json"
    assert _run(["speckle", "evaluate", str(model), str(data), "--json", str(out_json), "--device", "cpu"]) == 0
    assert json.loads(out_json.read_text())["metrics"]["network"]["n"] == 24
    patterns = make_dataset(SpeckleDatasetConfig(n_values=(3,), per_class=2, method="analytic")).patterns
    np.save(tmp_path / "p.npy", patterns)
    capsys.readouterr()
    assert _run(["speckle", "classify", str(model), str(tmp_path / "p.npy"), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("frame 0: n = ")
    with pytest.raises(InputFileError):
        _run(["speckle", "classify", str(model), str(tmp_path / "missing.npy")])


def test_shipped_model():
    from napari_cxdi.resources import sample_file
    from napari_cxdi.speckle.classifier import default_model_path

    path = default_model_path()
    assert path.stat().st_size < 3e6
    meta = json.loads(sample_file("models", "speckle_resnet18_mono.json").read_text())
    assert 0 < meta["metrics"]["test"]["accuracy"] <= 1 and meta["config"]["command"]
    clf = load_checkpoint(path, "cpu")
    cfg = SpeckleDatasetConfig(n_values=(3, 10, 16), per_class=2, method="dft", seed=987654)
    data = make_dataset(cfg)
    pred = clf.predict(data.patterns)["pred"]
    assert np.mean(np.abs(pred - data.labels) <= 1) >= 5 / 6
