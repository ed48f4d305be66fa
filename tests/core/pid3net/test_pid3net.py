"""PID3Net: blocks, physics of the refinement step, losses, training, checkpoints, inference, errors."""

import math

import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError, ProbeMismatchError
from napari_cxdi.metrics import r_factor
from napari_cxdi.physics.mixed_state import mixed_state_step
from napari_cxdi.pid3net import (
    PID3Net, PID3NetConfig, PID3NetTrainer, load_checkpoint, reconstruct_movie, save_checkpoint,
)
from napari_cxdi.pid3net.blocks import Decoder, Encoder, TemporalBlock, UpdateNet
from napari_cxdi.pid3net.data import inference_starts
from napari_cxdi.pid3net.losses import mae, poisson_deviance, total_variation_3d
from napari_cxdi.simulate import simulate_test_chart

TINY = dict(width=4, refine_width=4, refine_steps=1, frames=3, batch_size=4, device="cpu", preview_every=3, lr=3e-3)


class Lambda(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@pytest.fixture(scope="module")
def chart():
    return simulate_test_chart(n_frames=8, size=32, seed=0)


def test_block_shapes_and_gradients():
    x = torch.randn(2, 1, 5, 32, 32, requires_grad=True)
    tb = TemporalBlock(1, 8)
    assert tb(x).shape == (2, 8, 5, 32, 32)
    z = Encoder(4)(x)
    assert z.shape == (2, 32, 5, 2, 2)  # latent m / 16, time kept
    out = Decoder(4)(z)
    assert out.shape == (2, 1, 5, 32, 32)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert UpdateNet(4)(torch.randn(2, 5, 16, 16)).shape == (2, 5, 16, 16)


def test_model_shapes_gradients_and_parameter_count(chart):
    model = PID3Net(PID3NetConfig(**TINY), chart.probe)
    counts = torch.as_tensor(chart.counts[None, :3])
    obj = model(counts)
    assert obj.shape == (1, 3, 32, 32) and obj.dtype == torch.complex64
    model.predicted_intensity(obj).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.alpha.grad is not None
    # the seed's architecture: ~1.2 M parameters at F = 8, refinement width 32
    full = PID3Net(PID3NetConfig(), chart.probe)
    assert 1.0e6 < full.n_parameters() < 1.3e6


def test_padding_to_a_multiple_of_16_and_cropping_back():
    movie = simulate_test_chart(n_frames=3, size=40, seed=0)  # 40 -> m = 48
    model = PID3Net(PID3NetConfig(**TINY), movie.probe)
    assert model.m == 48
    assert model(torch.as_tensor(movie.counts[None])).shape == (1, 3, 40, 40)


def test_refinement_with_identity_corrections_is_the_classical_update(chart):
    cfg = PID3NetConfig(**{**TINY, "alpha0": 1.0, "amp": False}, refine_mode="additive", refine_relaxation="none")
    model = PID3Net(cfg, chart.probe)
    model.f_amplitude = Lambda(lambda m: torch.logit(m.clamp(1e-7, 1 - 1e-7)))  # sigmoid(.) -> |U|
    model.f_phase = Lambda(lambda a: torch.atanh((a / math.pi).clamp(-1 + 1e-7, 1 - 1e-7)))  # pi tanh(.) -> arg U
    counts = torch.as_tensor(chart.counts[None, :3])
    obj = model.apply_support(torch.ones(1, 3, 32, 32, dtype=torch.complex64) * np.exp(0.3j))
    refined = model.refine(obj, counts)
    classical = model.apply_support(mixed_state_step(obj, model.probe, counts, alpha=1.0, normalisation="sum_max"))
    assert torch.allclose(refined, classical, atol=1e-4)


def test_poisson_loss_is_minimised_at_the_measurement():
    measured = torch.tensor([0.0, 2.0, 5.0, 40.0])
    predicted = measured.clone().clamp_min(1e-6).requires_grad_(True)
    loss = poisson_deviance(predicted, measured, threshold=1.0)
    loss.backward()
    assert float(loss) == pytest.approx(0.0, abs=1e-5)
    assert torch.allclose(predicted.grad[1:], torch.zeros(3), atol=1e-6)
    for factor in (0.8, 1.25):
        assert float(poisson_deviance(measured * factor + 1e-6, measured)) > float(loss)
    assert float(mae(measured, measured)) == 0.0


def test_total_variation_3d():
    flat = torch.ones(1, 3, 8, 8, dtype=torch.complex64)
    assert float(total_variation_3d(flat)) == 0.0
    ramp = flat * torch.arange(3).view(1, 3, 1, 1)  # changes by 1 per frame only
    assert float(total_variation_3d(ramp)) == pytest.approx(1 / 3)


def test_training_lowers_loss_and_r_factor_and_beats_an_untrained_network(chart):
    cfg = PID3NetConfig(**TINY, epochs=12)
    torch.manual_seed(0)
    untrained = PID3Net(cfg, chart.probe).eval()
    untrained_rf = r_factor(
        untrained.predicted_intensity(torch.as_tensor(reconstruct_movie(untrained, chart.counts))).detach().numpy(),
        chart.counts,
    )
    trainer = PID3NetTrainer(chart.counts, chart.probe, cfg)
    events = list(trainer.run())
    kinds = {e["event"] for e in events}
    assert {"start", "step", "preview", "epoch", "done"} <= kinds
    preview = next(e for e in events if e["event"] == "preview")
    assert preview["phase"].shape == (32, 32)
    losses = [h["loss"] for h in trainer.history]
    assert losses[-1] < 0.5 * losses[0]
    assert trainer.history[-1]["rf"] < trainer.history[0]["rf"]
    objects = reconstruct_movie(trainer.model, chart.counts)
    trained_rf = r_factor(trainer.model.predicted_intensity(torch.as_tensor(objects)).detach().numpy(), chart.counts)
    assert trained_rf < 0.7 * untrained_rf
    steps = [e for e in events if e["event"] == "step"]
    assert steps[-1]["lr"] == pytest.approx(cfg.lr * cfg.lr_final_factor, rel=1e-3)  # cosine decay to 0.2 x


def test_cancel_keeps_the_best_model_usable(chart):
    trainer = PID3NetTrainer(chart.counts, chart.probe, PID3NetConfig(**TINY, epochs=5))
    gen = trainer.run()
    for event in gen:
        if event["event"] == "epoch" and event["epoch"] == 1:
            break
    gen.close()  # what a GUI's cancel does between steps
    assert trainer.stopped_reason == "cancelled" and not trainer.model.training
    assert len(trainer.history) == 2 and trainer.best_state is not None
    assert reconstruct_movie(trainer.model, chart.counts).shape == (8, 32, 32)


def test_seeded_training_is_reproducible(chart):
    cfg = PID3NetConfig(**TINY, epochs=1)
    a = PID3NetTrainer(chart.counts, chart.probe, cfg).train()
    b = PID3NetTrainer(chart.counts, chart.probe, cfg).train()
    x = torch.as_tensor(chart.counts[None, :3])
    assert torch.allclose(a(x), b(x))


def test_out_of_memory_halves_the_batch(chart, monkeypatch):
    trainer = PID3NetTrainer(chart.counts, chart.probe, PID3NetConfig(**TINY, epochs=1))
    trainer.device = torch.device("cuda")  # only the OOM policy looks at this
    real = trainer._optimise
    calls = {"n": 0}

    def flaky(*args):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args)

    monkeypatch.setattr(trainer, "_optimise", flaky)
    events = list(trainer.run())
    warnings = [e for e in events if e["event"] == "warning"]
    assert warnings and "halved to 2" in warnings[0]["message"]
    assert trainer.batch_size == 2 and events[-1]["stopped"] == "completed"


def test_checkpoint_round_trip_resume_and_reuse_on_a_reversed_movie(chart, tmp_path):
    trainer = PID3NetTrainer(chart.counts, chart.probe, PID3NetConfig(**TINY, epochs=2))
    model = trainer.train()
    path = save_checkpoint(tmp_path / "m.pt", model, trainer.history, optimizer_state=trainer.optimizer.state_dict())
    loaded, payload = load_checkpoint(path, device="cpu")
    x = torch.as_tensor(chart.counts[None, :3])
    assert torch.equal(model(x), loaded(x))
    assert payload["history"] == trainer.history and payload["provenance"]["version"]
    # resume: continue training the loaded model
    resumed = PID3NetTrainer(chart.counts, None, loaded.config.with_(epochs=1), model=loaded,
                             optimizer_state=payload["optimizer"])
    resumed.train()
    assert resumed.step == trainer.steps_per_epoch
    # reuse without retraining on the reversed movie (same probe): every frame reconstructed
    reversed_objects = reconstruct_movie(loaded, chart.counts[::-1].copy())
    assert reversed_objects.shape == (8, 32, 32)
    with pytest.raises(Exception, match="exists"):
        save_checkpoint(path, model)


def test_inference_covers_every_frame_including_leftovers(chart):
    assert inference_starts(8, 3, 3) == [0, 3, 5]
    assert inference_starts(7, 7, 7) == [0]
    model = PID3Net(PID3NetConfig(**TINY), chart.probe).eval()
    no_overlap = reconstruct_movie(model, chart.counts, stride=3)
    averaged = reconstruct_movie(model, chart.counts, stride=1)
    assert no_overlap.shape == averaged.shape == (8, 32, 32)
    assert np.all(np.abs(no_overlap).sum(axis=(1, 2)) > 0)
    with torch.no_grad():
        direct = model(torch.as_tensor(chart.counts[None, 5:8]))[0].numpy()
    assert np.allclose(no_overlap[6:8], direct[1:3], atol=1e-5)  # the last window fills the leftover frames


def test_bad_configs_give_clear_errors(chart):
    with pytest.raises(ConfigError, match="multiple of 16"):
        PID3Net(PID3NetConfig(**{**TINY, "image_size": 40}), chart.probe)
    with pytest.raises(ConfigError, match="T = 9"):
        PID3NetTrainer(chart.counts, chart.probe, PID3NetConfig(**{**TINY, "frames": 9}))
    with pytest.raises(ProbeMismatchError):
        PID3NetTrainer(chart.counts, chart.probe[:, :16, :16], PID3NetConfig(**TINY))
    with pytest.raises(ConfigError, match="smaller"):
        PID3Net(PID3NetConfig(**{**TINY, "image_size": 16}), chart.probe)
    with pytest.raises(ConfigError, match="variant"):
        PID3NetConfig.variant("PID3Net-XX")
    assert PID3NetConfig.variant("PID3Net-NR").refine_steps == 0
    assert PID3NetConfig.variant("PID3Net-MAE").name == "PID3Net-MAE"


def test_early_stop_on_an_r_factor_plateau(chart):
    # a tolerance no epoch can beat: R_f "plateaus" at once and training stops after `patience` epochs
    cfg = PID3NetConfig(**TINY, epochs=10, early_stop_patience=2, early_stop_tol=0.99)
    trainer = PID3NetTrainer(chart.counts, chart.probe, cfg)
    events = list(trainer.run())
    assert events[-1]["stopped"] == "early_stop"
    assert len(trainer.history) == 3  # the first epoch sets the reference, two more without improvement
