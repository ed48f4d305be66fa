"""PID3Net checkpoints: payload contents, probe hash, refusals and typed errors on load (issue 20)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from napari_cxdi.errors import CXDIError, InputFileError
from napari_cxdi.pid3net import checkpoint
from napari_cxdi.pid3net.config import PID3NetConfig
from napari_cxdi.pid3net.model import PID3Net

torch.set_num_threads(1)


def _probe(n=16):
    yy, xx = np.mgrid[:n, :n] - n / 2
    return (np.exp(-(yy**2 + xx**2) / 18.0) * np.exp(0.3j * xx)).astype(np.complex64)[None]


def _model(**kw):
    cfg = PID3NetConfig(**{"width": 2, "refine_width": 2, "refine_steps": 1, "frames": 1, "device": "cpu", **kw})
    torch.manual_seed(0)
    return PID3Net(cfg, _probe())


def test_probe_hash():
    p = _probe()
    expected = hashlib.sha256(np.ascontiguousarray(p.astype(np.complex64)).tobytes()).hexdigest()[:16]
    assert checkpoint.probe_hash(p) == expected and len(expected) == 16
    assert checkpoint.probe_hash(p.astype(np.complex128)) == expected  # hashed as complex64
    assert checkpoint.probe_hash(np.asfortranarray(p[0])) == checkpoint.probe_hash(p[0])  # contiguous bytes
    assert checkpoint.probe_hash(p * 1.001) != expected
    assert checkpoint.FORMAT == "napari-cxdi/pid3net/1"


def test_payload_contents_and_round_trip(tmp_path):
    model = _model(alpha0=0.3)
    with torch.no_grad():
        model.alpha.fill_(0.45)
    history = [{"epoch": 1, "loss": 2.5}]
    path = checkpoint.save_checkpoint(tmp_path / "m.pt", model, history=history, optimizer_state={"lr": 0.1},
                                      scheduler_state={"step": 3}, metrics={"rf": 0.2}, extra={"note": "x"})
    assert path == tmp_path / "m.pt" and path.exists()
    payload = torch.load(path, weights_only=False)
    assert payload["format"] == "napari-cxdi/pid3net/1"
    assert payload["config"] == model.config.to_dict()
    assert payload["history"] == history and payload["optimizer"] == {"lr": 0.1} and payload["scheduler"] == {"step": 3}
    assert payload["frame_size"] == 16
    np.testing.assert_array_equal(payload["probe"], _probe())
    assert payload["probe_hash"] == checkpoint.probe_hash(_probe())
    assert set(payload["state_dict"]) == set(model.state_dict())
    assert all(v.device.type == "cpu" and not v.requires_grad for v in payload["state_dict"].values())
    prov = payload["provenance"]
    assert prov["metrics"]["rf"] == 0.2 and prov["n_parameters"] == model.n_parameters() and prov["note"] == "x"
    loaded, back = checkpoint.load_checkpoint(path, device="cpu")
    assert not loaded.training and loaded.config == model.config and loaded.frame_size == 16
    assert float(loaded.alpha.detach()[0]) == pytest.approx(0.45)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    assert back["history"] == history
    counts = torch.rand(1, 1, 16, 16) * 50
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(counts), model(counts))
    # defaults: empty history, no optimizer state
    bare = checkpoint.save_checkpoint(tmp_path / "bare.pt", model)
    p = torch.load(bare, weights_only=False)
    assert p["history"] == [] and p["optimizer"] is None and p["scheduler"] is None
    assert "note" not in p["provenance"]


def test_refusals_and_overwrite(tmp_path):
    model = _model()
    path = checkpoint.save_checkpoint(tmp_path / "m.pt", model)
    with pytest.raises(CXDIError, match="exists"):
        checkpoint.save_checkpoint(path, model)
    checkpoint.save_checkpoint(path, model, history=[{"epoch": 2}], overwrite=True)
    assert torch.load(path, weights_only=False)["history"] == [{"epoch": 2}]
    data = tmp_path / "movie.h5"
    data.write_bytes(b"input")
    with pytest.raises(CXDIError):
        checkpoint.save_checkpoint(data, model, overwrite=True, protected=[data])
    assert data.read_bytes() == b"input"
    checkpoint.save_checkpoint(tmp_path / "other.pt", model, protected=[data, None])


def test_load_errors(tmp_path):
    with pytest.raises(InputFileError, match=r"missing\.pt: checkpoint not found$"):
        checkpoint.load_checkpoint(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(InputFileError, match=r"junk\.pt: not a readable PID3Net checkpoint: "):
        checkpoint.load_checkpoint(junk)
    other = tmp_path / "other.pt"
    torch.save({"format": "something/else"}, other)
    with pytest.raises(InputFileError, match=r"other\.pt: not a napari-cxdi PID3Net checkpoint$"):
        checkpoint.load_checkpoint(other)
    listing = tmp_path / "list.pt"
    torch.save([1, 2], listing)
    with pytest.raises(InputFileError, match=r"list\.pt: not a napari-cxdi PID3Net checkpoint$"):
        checkpoint.load_checkpoint(listing)
    nofmt = tmp_path / "nofmt.pt"
    torch.save({"config": {}}, nofmt)
    with pytest.raises(InputFileError, match="not a napari-cxdi PID3Net checkpoint"):
        checkpoint.load_checkpoint(str(nofmt))


def test_provenance_carries_the_config_and_default_device_loads(tmp_path):
    model = _model(width=4)
    path = checkpoint.save_checkpoint(tmp_path / "m.pt", model)
    payload = torch.load(path, weights_only=False)
    assert payload["provenance"]["config"]["width"] == 4
    loaded, _ = checkpoint.load_checkpoint(path)  # default device "auto": this machine's best device
    assert loaded.config.width == 4 and not loaded.training
