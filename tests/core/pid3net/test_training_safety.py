"""Training never loses the user's work: checked outputs, periodic checkpoints, NaN stops, clean scratch,
and every configuration number checked at the boundary."""

from __future__ import annotations

import math
import os
import tempfile
import time

import numpy as np
import pytest
import torch

from napari_cxdi import api
from napari_cxdi.errors import ConfigError, OutputExistsError, TrainingDivergedError
from napari_cxdi.physics.geometry import Geometry
from napari_cxdi.pid3net import PID3Net, PID3NetConfig, PID3NetTrainer, load_checkpoint
from napari_cxdi.pid3net import inference
from napari_cxdi.recon import IterativeConfig

TINY = dict(width=4, frames=3, refine_steps=1, refine_width=4, batch_size=2, device="cpu", preview_every=0, amp=False)


@pytest.fixture(scope="module")
def movie():
    rng = np.random.default_rng(0)
    return rng.poisson(5.0, (8, 16, 16)).astype(np.float32) + 1, np.ones((1, 16, 16), np.complex64)


@pytest.mark.parametrize("field, value", [
    ("lr", math.inf), ("lr", 0.0), ("lr", -1e-3), ("lr", math.nan), ("tv_weight", -0.1), ("frames", 0),
    ("refine_steps", -1), ("width", 0), ("batch_size", 0), ("epochs", 0), ("epochs", 1.5), ("alpha0", math.nan),
    ("lr_final_factor", 0.0), ("checkpoint_every", -1), ("support_threshold", 2.0),
])
def test_pid3net_config_numbers_checked_with_the_field_named(field, value):
    with pytest.raises(ConfigError, match=field):
        PID3NetConfig(**{field: value})
    with pytest.raises(ConfigError, match=field):
        PID3NetConfig().with_(**{field: value})


@pytest.mark.parametrize("field, value", [("max_iter", 0), ("alpha", math.inf), ("tol", math.nan), ("batch_size", -2)])
def test_iterative_config_numbers_checked(field, value):
    with pytest.raises(ConfigError, match=field):
        IterativeConfig(**{field: value})


@pytest.mark.parametrize("field, value", [("energy_kev", math.nan), ("distance_m", -3.0), ("detector_pixel_um", 0.0),
                                          ("detector_pixel_um", math.inf)])
def test_geometry_refuses_nan_negative_zero(field, value):
    with pytest.raises(ConfigError, match=field):
        Geometry(**{field: value})


def test_inference_stride_must_be_at_least_one(movie):
    counts, probe = movie
    model = PID3Net(PID3NetConfig(**TINY), probe)
    for stride in (0, -1, 1.5):
        with pytest.raises(ConfigError, match="stride"):
            inference.reconstruct_movie(model, counts, stride=stride)


@pytest.mark.parametrize("every", [0, 1, 3])
def test_checkpoint_every_n_steps(movie, every):
    counts, probe = movie
    saved = []
    trainer = PID3NetTrainer(counts, probe, PID3NetConfig(**TINY, epochs=2, checkpoint_every=every),
                             on_checkpoint=lambda tr: saved.append(tr.step))
    trainer.train()
    assert trainer.total_steps == 6
    # every=0: end of each epoch; every=N: steps N, 2N, ... (+ nothing else)
    want = [3, 6] if every == 0 else list(range(every, 7, every))
    assert saved == want


def test_api_train_writes_periodic_checkpoints_and_nan_keeps_the_last_good_one(movie, tmp_path, monkeypatch):
    counts, probe = movie
    ckpt = tmp_path / "model.pt"
    real = PID3NetTrainer._optimise
    calls = {"n": 0}

    def optimise(self, batch, *heldout):
        calls["n"] += 1
        values = real(self, batch, *heldout)
        if calls["n"] == 5:  # the 5th step diverges
            values["loss"] = math.nan
        return values

    monkeypatch.setattr(PID3NetTrainer, "_optimise", optimise)
    with pytest.raises(TrainingDivergedError, match="step 5"):
        api.train(counts, probe, checkpoint=ckpt, epochs=3, checkpoint_every=2, **{k: v for k, v in TINY.items()})
    model, payload = load_checkpoint(ckpt, device="cpu")  # the last good checkpoint (step 4)
    assert payload["provenance"]["step"] == 4
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())


def test_train_output_checked_before_training(movie, tmp_path, monkeypatch):
    counts, probe = movie
    existing = tmp_path / "model.pt"
    existing.write_bytes(b"keep me")

    def boom(*a, **k):
        raise AssertionError("training started before the output was checked")

    monkeypatch.setattr(api, "PID3NetTrainer", boom)
    t0 = time.perf_counter()
    with pytest.raises(OutputExistsError, match="exists"):
        api.train(counts, probe, checkpoint=existing, epochs=1, device="cpu")
    np.save(tmp_path / "movie.npy", counts)
    with pytest.raises(OutputExistsError, match="input"):
        api.train(str(tmp_path / "movie.npy"), probe, checkpoint=tmp_path / "movie.npy", overwrite=True, device="cpu")
    assert time.perf_counter() - t0 < 5
    assert existing.read_bytes() == b"keep me"
    assert np.array_equal(np.load(tmp_path / "movie.npy"), counts)


def test_cli_train_onto_its_movie_refused(tmp_path, capsys):
    from napari_cxdi.cli import main

    counts = np.ones((4, 16, 16), np.float32)
    np.save(tmp_path / "m.npy", counts)
    np.save(tmp_path / "p.npy", np.ones((1, 16, 16), np.complex64))
    assert main(["train", str(tmp_path / "m.npy"), "--probe", str(tmp_path / "p.npy"), "-o", str(tmp_path / "m.npy"),
                 "--overwrite"]) == 2
    assert "input of the run" in capsys.readouterr().err
    assert main(["reconstruct", str(tmp_path / "m.npy"), "--probe", str(tmp_path / "p.npy"),
                 "-o", str(tmp_path / "o.cxi"), "--save-model", str(tmp_path / "p.npy"), "--overwrite"]) == 2
    assert np.array_equal(np.load(tmp_path / "m.npy"), counts)


def test_inference_memmap_scratch_never_left_behind(movie, tmp_path, monkeypatch):
    counts, probe = movie
    model = PID3Net(PID3NetConfig(**TINY), probe)
    expected = inference.reconstruct_movie(model, counts)
    monkeypatch.setattr(inference, "MEMMAP_ABOVE_BYTES", 0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    out = inference.reconstruct_movie(model, counts)
    assert isinstance(out, np.memmap) and np.allclose(out, expected, atol=1e-5)
    assert os.listdir(tmp_path) == []  # already removed while the result is alive
    gen = inference.iter_reconstruct(model, counts, batch_size=1)
    next(gen)
    gen.close()  # cancel
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("make", [
    lambda: __import__("napari_cxdi.speckle.train", fromlist=["TrainConfig"]).TrainConfig(lr=math.nan),
    lambda: __import__("napari_cxdi.scann.train", fromlist=["TrainConfig"]).TrainConfig(lr=math.inf),
    lambda: __import__("napari_cxdi.scann.voronoi", fromlist=["VoronoiConfig"]).VoronoiConfig(cutoff=-1.0),
    lambda: __import__("napari_cxdi.speckle.dataset", fromlist=["SpeckleDatasetConfig"]).SpeckleDatasetConfig(photons=-1.0),
    lambda: __import__("napari_cxdi.tracking", fromlist=["TrackingConfig"]).TrackingConfig(max_displacement_nm=math.nan).validate(),
    lambda: __import__("napari_cxdi.tracking", fromlist=["DetectionConfig"]).DetectionConfig(block_nm=math.inf).validate(),
])
def test_other_configs_refuse_non_finite_and_out_of_range(make):
    with pytest.raises(ConfigError):
        make()
