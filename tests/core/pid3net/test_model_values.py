"""PID3Net model pieces by value: input scaling, padding and crop, support, safe polar, step sizes,
the physics update and both refinement forms with known correction networks (issue 20)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError, ProbeMismatchError
from napari_cxdi.physics.forward import diffraction_intensity
from napari_cxdi.physics.mixed_state import mixed_state_update
from napari_cxdi.physics.probe import support_mask
from napari_cxdi.physics.relaxed import relaxed_mixed_state_update
from napari_cxdi.pid3net.config import PID3NetConfig
from napari_cxdi.pid3net.model import PID3Net, safe_polar

torch.set_num_threads(1)


def _probe(n=20):
    yy, xx = np.mgrid[:n, :n] - n / 2
    return (np.exp(-(yy**2 + xx**2) / 12.0) * 30).astype(np.complex64)


def _cfg(**kw):
    return PID3NetConfig(**{"width": 2, "refine_width": 2, "refine_steps": 2, "frames": 2, "device": "cpu", **kw})


class Const(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return torch.full_like(x, self.value)


def test_construction():
    model = PID3Net(_cfg(alpha0=0.3), _probe())  # a 2D probe becomes one mode
    assert model.probe.shape == (1, 20, 20) and model.probe.dtype == torch.complex64
    assert (model.frame_size, model.m) == (20, 32)
    np.testing.assert_array_equal(model.support.numpy(), support_mask(_probe()[None], 0.02, 2).astype(np.float32))
    assert model.alpha.tolist() == pytest.approx([0.3, 0.3]) and not hasattr(model, "alpha_raw")
    assert not hasattr(model, "f_phase") and hasattr(model, "f_amplitude")  # gated: no phase network
    additive = PID3Net(_cfg(refine_mode="additive", support_threshold=0.5), _probe())
    assert hasattr(additive, "f_phase")
    assert additive.support.sum() < model.support.sum()  # the support threshold is the config's
    bounded = PID3Net(_cfg(alpha0=0.2, alpha_max=0.5), _probe())
    assert bounded.alpha_raw.tolist() == pytest.approx([math.log(0.2 / 0.3)] * 2)
    assert bounded.step_sizes().tolist() == pytest.approx([0.2, 0.2], rel=1e-6)
    with torch.no_grad():
        bounded.alpha_raw.fill_(0.0)
    assert bounded.step_sizes().tolist() == pytest.approx([0.25, 0.25])  # alpha_max sigmoid(0)
    nr = PID3Net(_cfg(refine_steps=0), _probe())
    assert not hasattr(nr, "f_amplitude") and not hasattr(nr, "alpha")
    assert PID3Net(_cfg(image_size=48), _probe()).m == 48
    assert PID3Net(_cfg(temporal_padding="zeros"), _probe()).encoder.latent.temporal_padding == "zeros"
    assert PID3Net(_cfg(), _probe()).phase_decoder.head.out_channels == 1
    with pytest.raises(ConfigError, match="square"):
        PID3Net(_cfg(), np.ones((20, 16), np.complex64))
    with pytest.raises(ConfigError, match="smaller"):
        PID3Net(_cfg(image_size=16), _probe())
    n = sum(p.numel() for p in model.parameters())
    assert model.n_parameters() == n
    model.alpha.requires_grad_(False)
    assert model.n_parameters() == n - 2


def test_network_input_crop_and_support():
    model = PID3Net(_cfg(), _probe())
    counts = torch.zeros(1, 2, 20, 20)
    counts[0, 0, 3, 4] = 9.0  # log(1 + 3)
    counts[0, 0, 5, 5] = 1.0  # log 2
    counts[0, 1, 0, 0] = -4.0  # negative counts clamp to 0
    x = model.network_input(counts)
    assert x.shape == (1, 1, 2, 32, 32)
    # zero padding of 12: 6 before, 6 after; scaled to max 1 per window (over both frames)
    assert float(x[0, 0, 0, 9, 10]) == pytest.approx(1.0)
    assert float(x[0, 0, 0, 11, 11]) == pytest.approx(math.log(2) / math.log(4), rel=1e-6)
    assert float(x.sum()) == pytest.approx(1 + math.log(2) / math.log(4), rel=1e-6)
    assert float(model.network_input(torch.zeros(1, 2, 20, 20)).abs().max()) == 0.0  # no division by zero
    two = torch.stack([counts[0], 4 * counts[0]])
    xs = model.network_input(two)
    assert float(xs[1].max()) == pytest.approx(1.0) and float(xs[0].max()) == pytest.approx(1.0)  # per window
    big = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 1, 32, 32).repeat(1, 1, 2, 1, 1)
    cropped = model.crop(big)
    assert cropped.shape == (1, 2, 20, 20) and float(cropped[0, 0, 0, 0]) == 6 * 32 + 6
    same = PID3Net(_cfg(), _probe(32))
    assert same.m == 32 and torch.equal(same.crop(big), big[:, 0])
    assert same.network_input(torch.ones(1, 2, 32, 32)).shape == (1, 1, 2, 32, 32)
    obj = torch.full((1, 2, 20, 20), 2 + 1j, dtype=torch.complex64)
    out = model.apply_support(obj)
    s = model.support.bool()
    assert torch.all(out[..., s] == 2 + 1j) and torch.all(out[..., ~s] == 1)


def test_safe_polar():
    z = torch.tensor([3 + 4j, 0j, -2 + 0j, 1e-11 + 0j], dtype=torch.complex64)
    mag, ang = safe_polar(z)
    assert mag.tolist() == pytest.approx([5.0, 0.0, 2.0, 0.0]) and ang.tolist() == pytest.approx([math.atan2(4, 3), 0, math.pi, 0])
    assert safe_polar(z, tiny=1e-30)[0][3] == pytest.approx(1e-11)
    w = torch.zeros(2, dtype=torch.complex64, requires_grad=True)
    m, a = safe_polar(w)
    (m.sum() + a.sum()).backward()
    assert torch.isfinite(w.grad).all()


@pytest.mark.parametrize("relaxation", ["none", "poisson"])
def test_physics_update_and_gated_refinement(relaxation):
    model = PID3Net(_cfg(refine_relaxation=relaxation, relaxation_sigma=0.5, alpha0=0.3), _probe())
    rng = np.random.default_rng(0)
    obj = torch.as_tensor(np.exp(0.2j * rng.standard_normal((1, 2, 20, 20))).astype(np.complex64))
    counts = torch.as_tensor(rng.poisson(50, (1, 2, 20, 20)).astype(np.float32))
    valid = torch.ones_like(counts, dtype=torch.bool)
    valid[..., :2, :] = False
    if relaxation == "poisson":
        ref = lambda o: relaxed_mixed_state_update(o, model.probe, counts, 0.5, normalisation="sum_max", valid=valid)  # noqa: E731
    else:
        ref = lambda o: mixed_state_update(o, model.probe, counts, normalisation="sum_max", valid=valid)  # noqa: E731
    torch.testing.assert_close(model.physics_update(obj, counts, valid), ref(obj))
    # gated: O <- S(O + alpha_k 2 sigmoid(F_A(|U|)) U), K = 2 steps with their own alphas
    model.f_amplitude = Const(math.log(3.0))  # 2 sigmoid(log 3) = 1.5
    with torch.no_grad():
        model.alpha.copy_(torch.tensor([0.3, 0.1]))
    expected = obj
    for a in (0.3, 0.1):
        expected = model.apply_support(expected + a * 1.5 * ref(expected))
    torch.testing.assert_close(model.refine(obj, counts, valid), expected, rtol=1e-4, atol=1e-5)


def test_additive_refinement_and_forward():
    model = PID3Net(_cfg(refine_mode="additive", refine_relaxation="none", refine_steps=1, alpha0=0.5), _probe())
    model.f_amplitude = Const(0.0)  # sigmoid -> 0.5
    model.f_phase = Const(math.atanh(0.5))  # pi tanh -> pi / 2
    obj = torch.ones(1, 2, 20, 20, dtype=torch.complex64)
    counts = torch.full((1, 2, 20, 20), 10.0)
    out = model.refine(obj, counts)
    expected = model.apply_support(obj + 0.5 * 0.5 * 1j)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    # forward: initial object from the decoders, then the refinement; NaN counts are unmeasured
    holed = counts.clone()
    holed[..., 0, 0] = float("nan")
    model.eval()
    with torch.no_grad():
        o0 = model.initial_object(torch.nan_to_num(holed))
        torch.testing.assert_close(model(holed), model.refine(o0, torch.nan_to_num(holed)))
        amp = o0.abs()[..., model.support.bool()]
        assert float(amp.max()) < 1 and float(amp.min()) > 0  # sigmoid amplitudes inside the support
        assert torch.all(o0[..., ~model.support.bool()] == 1)
    with pytest.raises(ProbeMismatchError, match=r"^the model was built for 20x20 frames, got \(16, 16\)$"):
        model(torch.ones(1, 2, 16, 16))
    nr = PID3Net(_cfg(refine_steps=0), _probe()).eval()
    with torch.no_grad():
        torch.testing.assert_close(nr(counts), nr.initial_object(counts))
    obj = torch.full((1, 2, 20, 20), 1 + 1j, dtype=torch.complex64)
    torch.testing.assert_close(model.predicted_intensity(obj), diffraction_intensity(model.probe, obj))


def test_more_model_values():
    # safe_polar: small but non-zero updates keep their modulus and angle
    z = torch.tensor([0.5 + 0j, -1e-3j], dtype=torch.complex64)
    mag, ang = safe_polar(z)
    assert mag.tolist() == pytest.approx([0.5, 1e-3], rel=1e-5) and ang.tolist() == pytest.approx([0.0, -math.pi / 2])
    # the probe is stored as complex64 whatever its input type
    assert PID3Net(_cfg(), _probe().astype(np.complex128)).probe.dtype == torch.complex64
    assert PID3Net(_cfg(), np.abs(_probe())).probe.dtype == torch.complex64
    # every block pads time as configured
    for pad in ("replicate", "zeros"):
        m = PID3Net(_cfg(temporal_padding=pad, refine_mode="additive"), _probe())
        for block in (m.encoder.latent, m.amplitude_decoder.body[0], m.phase_decoder.body[0], m.f_amplitude.tb, m.f_phase.tb):
            assert block.temporal_padding == pad
        assert m.f_amplitude.tb.squeeze.out_channels == 2 and m.f_phase.head.out_channels == 1
    # weak counts (log(1 + sqrt I) < 1) are still scaled to a maximum of 1
    model = PID3Net(_cfg(), _probe())
    x = model.network_input(torch.full((1, 2, 20, 20), 1.0))
    assert float(x.max()) == pytest.approx(1.0)


def test_initial_phase_is_pi_tanh_of_the_phase_decoder():
    model = PID3Net(_cfg(), _probe()).eval()
    counts = torch.rand(1, 2, 20, 20, generator=torch.Generator().manual_seed(0)) * 40
    with torch.no_grad():
        torch.nn.init.normal_(model.phase_decoder.head.weight, std=2.0)
        o0 = model.initial_object(counts)
        z = model.encoder(model.network_input(counts))
        phase = math.pi * torch.tanh(model.crop(model.phase_decoder(z)))
        amp = torch.sigmoid(model.crop(model.amplitude_decoder(z)))
    s = model.support.bool()
    torch.testing.assert_close(torch.angle(o0)[..., s], phase[..., s], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(o0.abs()[..., s], amp[..., s], rtol=1e-4, atol=1e-5)
    assert float(phase.abs().max()) > 0.3  # the phases are not all near 0


def test_two_mode_probe_normalisation_and_explicit_valid_masks():
    p = _probe()
    two = np.stack([p, 0.5 * np.roll(p, 2, axis=1)]).astype(np.complex64)
    for relaxation in ("none", "poisson"):
        model = PID3Net(_cfg(refine_relaxation=relaxation), two)
        obj = torch.ones(1, 2, 20, 20, dtype=torch.complex64) * np.exp(0.2j)
        counts = torch.full((1, 2, 20, 20), 30.0)
        if relaxation == "none":
            ref = mixed_state_update(obj, model.probe, counts, normalisation="sum_max")
        else:
            ref = relaxed_mixed_state_update(obj, model.probe, counts, model.config.relaxation_sigma, normalisation="sum_max")
        torch.testing.assert_close(model.physics_update(obj, counts), ref)
    # forward: an explicit valid mask is the same as NaN counts at those pixels
    model = PID3Net(_cfg(), _probe()).eval()
    counts = torch.rand(1, 2, 20, 20, generator=torch.Generator().manual_seed(1)) * 40
    valid = torch.ones_like(counts, dtype=torch.bool)
    valid[..., 8:12, 8:12] = False
    holed = torch.where(valid, counts, torch.full_like(counts, float("nan")))
    with torch.no_grad():
        a, b, full = model(counts, valid=valid), model(holed), model(counts)
        o0 = model.initial_object(torch.where(valid, counts, torch.zeros_like(counts)))
        ref = model.refine(o0, torch.where(valid, counts, torch.zeros_like(counts)), valid)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(b, ref)
    assert (a - full).abs().max() > 1e-6
