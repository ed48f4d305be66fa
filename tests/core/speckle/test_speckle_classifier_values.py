"""The ResNet speckle classifier wrapper (speckle/classifier.py): predictions from known logits, the
regression read-out, checkpoints (half precision, defaults, typed errors) and the class check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_cxdi.errors import CXDIError, DataValidationError, InputFileError
from napari_cxdi.speckle.classifier import (
    FORMAT,
    SpeckleClassifier,
    check_classes,
    default_model_path,
    load_checkpoint,
    read_checkpoint_file,
    save_checkpoint,
)
from napari_cxdi.speckle.patterns import PreprocessConfig, prepare
from napari_cxdi.speckle.resnet import SpeckleResNet

PRE = PreprocessConfig(window=33, bin=3, block=3)
CLASSES = np.array([2, 5, 9])


class _Known(nn.Module):
    """Logits (classification) = mean of the input times (1, -1, 0.5) + (0, 1, 0); regression: the mean."""

    def __init__(self, task="classification"):
        super().__init__()
        self.task = task
        self.a = nn.Parameter(torch.tensor([1.0, -1.0, 0.5]))
        self.b = nn.Parameter(torch.tensor([0.0, 1.0, 0.0]))
        self.calls = []

    def forward(self, x):
        self.calls.append((len(x), self.training, tuple(x.shape)))
        m = x.mean(dim=(1, 2, 3))
        return m if self.task == "regression" else m[:, None] * self.a + self.b


def test_predictions_from_known_logits():
    net = _Known()
    net.train()
    clf = SpeckleClassifier(net, CLASSES, PRE)
    assert clf.task == "classification" and clf.device == torch.device("cpu")
    x = np.stack([np.full((11, 11), v, np.float32) for v in (3.0, -2.0, 0.4, 0.0, 10.0)])
    out = clf.predict_prepared(x, batch_size=2)
    lg = np.array([[v, 1 - v, 0.5 * v] for v in (3.0, -2.0, 0.4, 0.0, 10.0)])
    probs = np.exp(lg) / np.exp(lg).sum(1, keepdims=True)
    np.testing.assert_allclose(out["probs"], probs, rtol=1e-5)
    np.testing.assert_array_equal(out["pred"], CLASSES[probs.argmax(1)])
    np.testing.assert_allclose(out["value"], probs @ CLASSES, rtol=1e-5)
    assert [c[0] for c in net.calls] == [2, 2, 1] and not any(c[1] for c in net.calls)
    assert net.calls[0][2] == (2, 1, 11, 11)
    one = clf.predict_prepared(x[0])
    np.testing.assert_allclose(one["probs"], probs[:1], rtol=1e-5)
    # raw patterns are prepared first
    raw = np.random.default_rng(0).uniform(1, 2, (2, 33, 33))
    np.testing.assert_allclose(clf.predict(raw)["probs"], clf.predict_prepared(prepare(raw, PRE))["probs"])
    binned = raw.reshape(2, 11, 3, 11, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(clf.predict(binned, input_bin=3)["probs"], clf.predict(raw)["probs"], rtol=1e-4)


def test_regression_readout():
    clf = SpeckleClassifier(_Known("regression"), CLASSES, PRE, target_norm=(5.0, 2.0))
    x = np.stack([np.full((11, 11), v, np.float32) for v in (0.0, -1.6, 1.1, 3.0, -0.76)])
    out = clf.predict_prepared(x)
    value = np.array([0.0, -1.6, 1.1, 3.0, -0.76]) * 2.0 + 5.0      # 5, 1.8, 7.2, 11, 3.48
    np.testing.assert_allclose(out["value"], value, rtol=1e-5)
    np.testing.assert_array_equal(out["pred"], [5, 2, 9, 9, 2])
    assert out["probs"] is None and clf.task == "regression"


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = SpeckleResNet(18, 3, width=4, coord=True)
    with torch.no_grad():
        model.stem[1].running_mean.fill_(0.1)
    model.eval()

    class _P:
        def __str__(self):
            return "P!"

    clf = SpeckleClassifier(model, CLASSES, PRE, (1.5, 2.5), {"a": 1, "obj": _P()})
    ck = clf.checkpoint()
    assert ck["format"] == FORMAT == "napari-cxdi-speckle-v1"
    assert ck["model"] == model.config() and ck["classes"] == [2, 5, 9]
    assert ck["preprocess"] == {"window": 33, "bin": 3, "block": 3, "transform": "linear"}
    assert ck["target_norm"] == [1.5, 2.5] and ck["provenance"] == {"a": 1, "obj": "P!"}
    half = clf.checkpoint(half=True)
    assert half["state_dict"]["fc.weight"].dtype == torch.float16
    assert half["state_dict"]["stem.1.num_batches_tracked"].dtype == torch.int64
    assert ck["state_dict"]["fc.weight"].dtype == torch.float32
    x = np.random.default_rng(1).normal(size=(3, 11, 11)).astype(np.float32)
    ref = clf.predict_prepared(x)["probs"]
    path = save_checkpoint(clf, tmp_path / "sub" / "dir" / "m.pt")        # parent folders are made
    back = load_checkpoint(path, device="cpu")
    assert not back.model.training and back.model.coord
    np.testing.assert_allclose(back.predict_prepared(x)["probs"], ref, rtol=1e-5, atol=1e-6)
    assert back.target_norm == (1.5, 2.5) and back.provenance == {"a": 1, "obj": "P!"}
    assert back.preprocess == PRE
    np.testing.assert_array_equal(back.classes, CLASSES)
    hp = save_checkpoint(clf, tmp_path / "h.pt", half=True)
    hb = load_checkpoint(hp, device="cpu")
    assert hb.model.fc.weight.dtype == torch.float32
    np.testing.assert_allclose(hb.predict_prepared(x)["probs"], ref, rtol=2e-2, atol=2e-3)
    assert hp.stat().st_size < 0.7 * path.stat().st_size
    # defaults of an older checkpoint without target_norm and provenance
    ck.pop("target_norm")
    ck.pop("provenance")
    torch.save(ck, tmp_path / "old.pt")
    old = load_checkpoint(tmp_path / "old.pt", device="cpu")
    assert old.target_norm == (0.0, 1.0) and old.provenance == {}
    # the write path: no overwrite when asked, never onto a protected input
    with pytest.raises(CXDIError):
        save_checkpoint(clf, path, overwrite=False)
    with pytest.raises(CXDIError):
        save_checkpoint(clf, tmp_path / "in.pt", protected=[tmp_path / "in.pt"])
    assert clf.to("cpu") is clf
    from napari_cxdi.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        clf.to("tpu")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        load_checkpoint(path, device="tpu")
    # the default device: auto (the CPU here)
    assert load_checkpoint(path).device == torch.device("cpu")
    save_checkpoint(clf, path)     # replaces by default


def test_default_model_is_the_shipped_resnet(monkeypatch):
    import napari_cxdi.resources as res

    monkeypatch.setattr(res, "sample_file", lambda *parts: parts)   # the scratch copies of mutation runs ship no models
    assert default_model_path() == ("models", "speckle_resnet18_mono.pt")


class _NotWeights:
    format = "napari-cxdi-speckle-v1"


def test_checkpoint_file_errors(tmp_path):
    with pytest.raises(InputFileError, match=": checkpoint not found$") as err:
        read_checkpoint_file(tmp_path / "none.pt")
    assert err.value.path == str(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(InputFileError, match="cannot read checkpoint") as err:
        read_checkpoint_file(tmp_path / "junk.pt")
    assert err.value.path == str(tmp_path / "junk.pt")
    torch.save(_NotWeights(), tmp_path / "obj.pt")          # weights only: a pickled object is refused
    with pytest.raises(InputFileError, match="cannot read checkpoint"):
        read_checkpoint_file(tmp_path / "obj.pt")
    torch.save({"format": "other"}, tmp_path / "o.pt")
    with pytest.raises(InputFileError, match=r"not a napari-cxdi speckle checkpoint \(format napari-cxdi-speckle-v1\)") as err:
        load_checkpoint(tmp_path / "o.pt")
    assert err.value.path == str(tmp_path / "o.pt")
    torch.save([1, 2], tmp_path / "l.pt")
    with pytest.raises(InputFileError, match="not a napari-cxdi speckle checkpoint"):
        load_checkpoint(tmp_path / "l.pt")
    assert read_checkpoint_file(tmp_path / "l.pt") == [1, 2]


def test_check_classes():
    np.testing.assert_array_equal(check_classes(np.array([9, 2, 5, 5]), CLASSES), [2, 0, 1, 1])
    np.testing.assert_array_equal(check_classes([2], [2, 5]), [0])
    with pytest.raises(DataValidationError, match=r"^labels \[3, 12\] are not among the model's classes \[2, 5, 9\]$"):
        check_classes(np.array([12, 3, 5, 12]), CLASSES)
    with pytest.raises(DataValidationError, match=r"labels \[1\]"):
        check_classes(np.array([1]), CLASSES)
