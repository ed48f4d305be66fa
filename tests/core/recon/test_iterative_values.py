"""Value tests of the classical baselines (napari_cxdi.recon.iterative, issue 20).

Tiny 16x16 movies, a handful of iterations: every expected number is either computed by hand or by the
physics core's own (separately tested) functions composed the way the module documents it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_cxdi.errors import ConfigError, DataValidationError, ProbeMismatchError
from napari_cxdi.physics.forward import diffraction_intensity
from napari_cxdi.physics.mixed_state import mixed_state_update
from napari_cxdi.physics.probe import support_mask
from napari_cxdi.physics.thinning import binomial_thinning, poisson_nll_per_frame
from napari_cxdi.recon import iterative as it
from napari_cxdi.recon import IterativeConfig, iter_iterative, run_iterative
from napari_cxdi.progress import drain

torch.set_num_threads(1)


def _toy(n=3, size=16, photons=30.0, seed=0, poisson=True):
    """Counts [n, size, size] of a Gaussian probe on weak phase bumps that move by 1 px per frame."""
    yy, xx = np.mgrid[:size, :size] - size / 2
    probe = np.exp(-(yy**2 + xx**2) / (2 * 2.5**2)).astype(np.complex64)[None]
    obj = np.exp(1j * 0.8 * np.stack([np.exp(-((yy - 1 - t) ** 2 + (xx + 1) ** 2) / 4.0) for t in range(n)]))
    inten = diffraction_intensity(torch.as_tensor(probe), torch.as_tensor(obj.astype(np.complex64))).numpy()
    scale = photons * size * size / 10 / inten[0].sum()
    inten, probe = inten * scale, (probe * np.sqrt(scale)).astype(np.complex64)  # the probe carries the photons
    counts = np.random.default_rng(seed).poisson(inten) if poisson else inten
    return counts.astype(np.float32), probe


def _drain(gen):
    """(events, result) of a progress generator, through the project's own drain."""
    events = []
    return events, drain(gen, events.append)


PLAIN = dict(device="cpu", holdout_fraction=0.0, noise_floor_margin=None, patience=1000, tol=0.0)


# ------------------------------------------------------------------------------------------------ config


def test_config_defaults_and_dict():
    cfg = IterativeConfig()
    assert (cfg.max_iter, cfg.alpha, cfg.tol, cfg.patience, cfg.temporal_weight, cfg.tv_weight, cfg.batch_size) == (
        300, 1.0, 1e-3, 10, 0.25, 0.005, 32)
    assert (cfg.support_threshold, cfg.device, cfg.start_seed, cfg.holdout_fraction, cfg.noise_floor_margin, cfg.seed) == (
        0.02, "auto", None, 0.1, 0.05, 0)
    d = it.config_dict(IterativeConfig(alpha=0.5, start_seed=3))
    assert d["alpha"] == 0.5 and d["start_seed"] == 3 and IterativeConfig(**d) == IterativeConfig(alpha=0.5, start_seed=3)
    assert it.METHODS == ("mixed-state", "mf-PIE")


@pytest.mark.parametrize("field, value, message", [
    ("max_iter", 0, r"^iterative config: max_iter must be in \[1, inf\), got 0$"),
    ("alpha", 0.0, r"^iterative config: alpha must be in \(0, inf\), got 0.0$"),
    ("tol", -1e-3, r"^iterative config: tol must be in \[0, inf\), got -0.001$"),
    ("patience", 0, r"^iterative config: patience must be in \[1, inf\), got 0$"),
    ("temporal_weight", -0.1, r"^iterative config: temporal_weight must be in \[0, inf\), got -0.1$"),
    ("tv_weight", -0.1, r"^iterative config: tv_weight must be in \[0, inf\), got -0.1$"),
    ("batch_size", 0, r"^iterative config: batch_size must be in \[1, inf\), got 0$"),
    ("support_threshold", 1.5, r"^iterative config: support_threshold must be in \[0, 1\], got 1.5$"),
    ("holdout_fraction", 1.0, r"^iterative config: holdout_fraction must be in \[0, 1\), got 1.0$"),
    ("holdout_fraction", -0.1, r"^iterative config: holdout_fraction must be in \[0, 1\), got -0.1$"),
    ("noise_floor_margin", 1.5, r"^iterative config: noise_floor_margin must be in \[0, 1\], got 1.5$"),
    ("seed", -1, r"^iterative config: seed must be in \[0, inf\), got -1$"),
    ("start_seed", -1, r"^iterative config: start_seed must be in \[0, inf\), got -1$"),
    ("max_iter", 2.5, r"^iterative config: max_iter must be a whole number, got 2.5$"),
])
def test_config_field_errors(field, value, message):
    with pytest.raises(ConfigError, match=message):
        IterativeConfig(**{field: value})


def test_config_validate_errors_and_edges():
    IterativeConfig(tol=0.0, temporal_weight=0.0, tv_weight=0.0, support_threshold=0.0, holdout_fraction=0.0,
                    noise_floor_margin=0.0, seed=0, start_seed=0, max_iter=1, patience=1, batch_size=1).validate()
    IterativeConfig(support_threshold=1.0, noise_floor_margin=None, seed=None, temporal_weight=0.49).validate()
    with pytest.raises(ConfigError, match=r"^temporal_weight must be in \[0, 0.5\) for a stable averaging step$"):
        IterativeConfig(temporal_weight=0.5).validate()
    with pytest.raises(ConfigError, match=r"^noise_floor_margin must be in \[0, 1\) or None, got 1.0$"):
        IterativeConfig(noise_floor_margin=1.0).validate()
    # validate() runs before any work: a bad method or config never touches the data
    counts, probe = _toy(n=1)
    with pytest.raises(ConfigError, match=r"^unknown iterative method 'ePIE'; choose one of mixed-state, mf-PIE$"):
        next(iter_iterative(counts, probe, "ePIE"))
    with pytest.raises(ConfigError, match="temporal_weight"):
        next(iter_iterative(counts, probe, "mf-PIE", IterativeConfig(temporal_weight=0.6, device="cpu")))
    with pytest.raises(ProbeMismatchError, match="probe frames are 8x8"):
        next(iter_iterative(counts, probe[:, :8, :8], "mixed-state", IterativeConfig(device="cpu")))
    with pytest.raises(DataValidationError, match="zero everywhere"):
        next(iter_iterative(counts, np.zeros_like(probe), "mixed-state", IterativeConfig(device="cpu")))


# --------------------------------------------------------------------------------------------- R_f helpers


def test_rf_by_hand():
    pred = torch.tensor([[4.0, 9.0]])
    meas = torch.tensor([[1.0, 4.0]])
    # sqrt: (2, 3) vs (1, 2): |diff| sum 2 over sqrt(measured) sum 3
    assert it._rf(pred, meas) == pytest.approx(2 / 3)
    assert it._rf(pred, meas, torch.tensor([[True, False]])) == pytest.approx(1 / 3)  # the denominator keeps all
    assert it._rf(torch.tensor([[-4.0, 9.0]]), meas) == pytest.approx((1 + 1) / 3)  # negatives clamp to 0
    assert it._rf(pred, torch.tensor([[-1.0, 4.0]])) == pytest.approx((2 + 1) / 2)
    assert it._rf(pred, torch.zeros(1, 2)) == pytest.approx(5 / 1e-12)  # no signal: clamp, no division by 0
    assert isinstance(it._rf(pred, meas), float)


def test_rf_and_floor_per_frame_by_hand():
    pred = torch.tensor([[[4.0, 9.0]], [[16.0, 1.0]]])
    meas = torch.tensor([[[1.0, 4.0]], [[16.0, 4.0]]])
    rf, floor = it._rf_and_floor_per_frame(pred, meas, None)
    assert rf.tolist() == pytest.approx([2 / 3, 1 / 6])
    assert floor.shape == (2,)
    valid = torch.tensor([[[True, False]], [[False, True]]])
    rf, _ = it._rf_and_floor_per_frame(pred, meas, None, valid)
    assert rf.tolist() == pytest.approx([1.0, 0.5])  # only the measured pixel, in both sums
    # the floor: R_f of Poisson draws of the prediction against the prediction; for large counts
    # sqrt(n) - sqrt(I) ~ N(0, 1/4), so the mean |.| is 0.5 sqrt(2/pi) and the floor 0.5 sqrt(2/pi) / sqrt(I)
    big = torch.full((2, 64, 64), 1e6)
    big[1] = 1e4
    gen = torch.Generator().manual_seed(0)
    rf, floor = it._rf_and_floor_per_frame(big, big, gen)
    assert rf.tolist() == pytest.approx([0.0, 0.0], abs=1e-9)
    expected = 0.5 * math.sqrt(2 / math.pi)
    assert floor.tolist() == pytest.approx([expected / 1e3, expected / 1e2], rel=0.05)
    # the floor is over the measured pixels only: the same floor with half the pixels masked
    half = torch.zeros_like(big, dtype=torch.bool)
    half[:, :32] = True
    _, floor_half = it._rf_and_floor_per_frame(big, big, gen, half)
    assert floor_half.tolist() == pytest.approx([expected / 1e3, expected / 1e2], rel=0.07)
    zero = torch.zeros(1, 4, 4)
    rf, floor = it._rf_and_floor_per_frame(zero, zero, gen)
    assert rf.tolist() == [0.0] and floor.tolist() == [0.0]
    # seeded generator: the same floor twice
    a = it._rf_and_floor_per_frame(big, big, torch.Generator().manual_seed(5))[1]
    b = it._rf_and_floor_per_frame(big, big, torch.Generator().manual_seed(5))[1]
    assert torch.equal(a, b)


def _tv(obj, eps):
    dy = torch.roll(obj, -1, dims=-2) - obj
    dx = torch.roll(obj, -1, dims=-1) - obj
    return torch.sqrt(dy.abs() ** 2 + dx.abs() ** 2 + eps**2).sum()


@pytest.mark.parametrize("eps", [1e-3, 0.5])
def test_tv_gradient_is_the_gradient_of_the_smoothed_tv(eps):
    g = torch.Generator().manual_seed(1)
    re, im = torch.randn(2, 5, 6, generator=g, dtype=torch.float64), torch.randn(2, 5, 6, generator=g, dtype=torch.float64)
    re.requires_grad_(True)
    im.requires_grad_(True)
    _tv(torch.complex(re, im), eps).backward()
    expected = torch.complex(re.grad, im.grad)
    obj = torch.complex(re.detach(), im.detach())
    got = it.tv_gradient(obj, eps) if eps != 1e-3 else it.tv_gradient(obj)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    # a constant image has no TV gradient; a single bright pixel is pulled down, its neighbours up
    assert torch.count_nonzero(it.tv_gradient(torch.ones(4, 4, dtype=torch.complex64))) == 0
    spike = torch.zeros(5, 5, dtype=torch.complex128)
    spike[2, 2] = 1.0
    grad = it.tv_gradient(spike)
    assert grad[2, 2].real > 0 and grad[1, 2].real < 0 and grad[2, 1].real < 0


# --------------------------------------------------------------------------------------------- iterations


def _one_step(obj, probe, counts, alpha, support, method="mixed-state", temporal=0.25, tv=0.005):
    obj = obj + alpha * mixed_state_update(obj, probe, counts)
    if method == "mf-PIE":
        if len(obj) > 1 and temporal > 0:
            prev = torch.cat([obj[:1], obj[:-1]])
            nxt = torch.cat([obj[1:], obj[-1:]])
            obj = obj + temporal * (prev + nxt - 2 * obj)
        if tv > 0:
            obj = obj - tv * it.tv_gradient(obj)
    return support * obj + (1 - support)


def test_one_mixed_state_iteration_is_the_physics_update_inside_the_support():
    counts, probe = _toy(n=2)
    cfg = IterativeConfig(max_iter=1, alpha=0.7, support_threshold=0.3, **PLAIN)
    out = run_iterative(counts, probe, "mixed-state", cfg)
    support = torch.as_tensor(support_mask(probe, 0.3), dtype=torch.float32)
    assert 0 < float(support.mean()) < 0.5
    expected = _one_step(torch.ones(2, 16, 16, dtype=torch.complex64), torch.as_tensor(probe), torch.as_tensor(counts),
                         0.7, support)
    assert out.dtype == np.complex64 and out.shape == (2, 16, 16)
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert np.all(out[:, support.numpy() == 0] == 1)  # vacuum outside the probe footprint
    assert np.abs(out - 1).max() > 0.05  # it did move


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_two_mf_pie_iterations_see_one_neighbour_on_each_side(batch_size):
    counts, probe = _toy(n=4)
    cfg = IterativeConfig(max_iter=2, alpha=0.9, temporal_weight=0.3, tv_weight=0.02, batch_size=batch_size, **PLAIN)
    out = run_iterative(counts, probe, "mf-PIE", cfg)
    p, c = torch.as_tensor(probe), torch.as_tensor(counts)
    support = torch.as_tensor(support_mask(probe, 0.02), dtype=torch.float32)
    expected = np.empty_like(out)
    for start in range(0, 4, batch_size):
        stop = min(start + batch_size, 4)
        lo, hi = max(start - 1, 0), min(stop + 1, 4)  # one halo frame on each side
        obj = torch.ones(hi - lo, 16, 16, dtype=torch.complex64)
        for _ in range(2):
            obj = _one_step(obj, p, c[lo:hi], 0.9, support, "mf-PIE", 0.3, 0.02)
        expected[start:stop] = obj[start - lo: stop - lo].numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    plain = run_iterative(counts, probe, "mixed-state", cfg)
    assert np.abs(out - plain).max() > 1e-3  # the coupling and the TV step do act


def test_mf_pie_terms_switch_off_separately():
    counts, probe = _toy(n=3)
    p, c = torch.as_tensor(probe), torch.as_tensor(counts)
    support = torch.as_tensor(support_mask(probe, 0.02), dtype=torch.float32)
    flat = torch.ones(3, 16, 16, dtype=torch.complex64)
    for temporal, tv in ((0.0, 0.05), (0.3, 0.0), (0.0, 0.0)):
        cfg = IterativeConfig(max_iter=1, temporal_weight=temporal, tv_weight=tv, batch_size=3, **PLAIN)
        out = run_iterative(counts, probe, "mf-PIE", cfg)
        expected = _one_step(flat, p, c, 1.0, support, "mf-PIE", temporal, tv)
        np.testing.assert_allclose(out, expected.numpy(), rtol=1e-5, atol=1e-6)
    # one frame: no neighbours, only the TV step
    cfg = IterativeConfig(max_iter=1, temporal_weight=0.3, tv_weight=0.05, **PLAIN)
    out = run_iterative(counts[:1], probe, "mf-PIE", cfg)
    expected = _one_step(flat[:1], p, c[:1], 1.0, support, "mf-PIE", 0.0, 0.05)
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_events_and_previews():
    counts, probe = _toy(n=3)
    cfg = IterativeConfig(max_iter=12, batch_size=2, **PLAIN)
    events, out = _drain(iter_iterative(counts, probe, "mixed-state", cfg, preview_frame=1))
    progress = [e for e in events if e["event"] == "progress"]
    batches = [e for e in events if e["event"] == "batch"]
    previews = [e for e in events if e["event"] == "preview"]
    # progress at iterations 1, 6, 11 and the last (12), per batch of frames [0, 2) and [2, 3)
    assert [e["iteration"] for e in progress] == [1, 6, 11, 12] * 2
    assert [e["frames_done"] for e in progress] == [0] * 4 + [2] * 4
    assert all(e["total_frames"] == 3 and e["method"] == "mixed-state" and "heldout_nll" not in e for e in progress)
    assert all(e["elapsed_s"] >= 0 and e["rf_floor"] > 0 for e in progress)
    assert [(b["frames_done"], b["iterations"], b["stopped"]) for b in batches] == [(2, 12, "max_iter"), (3, 12, "max_iter")]
    assert batches[0]["rf"] == progress[3]["rf"] and batches[1]["rf"] == progress[7]["rf"]
    assert batches[0]["below_noise_floor_frames"] == 0 and "heldout_nll" not in batches[0]
    # R_f of the returned objects (no hold-out: all counts) is the last progress R_f of each batch
    pred = diffraction_intensity(torch.as_tensor(probe), torch.as_tensor(out))
    assert it._rf(pred[:2], torch.as_tensor(counts[:2])) == pytest.approx(progress[3]["rf"], rel=1e-5)
    assert progress[0]["rf"] > progress[3]["rf"]
    # previews: iteration 10 of the batch holding frame 1, then one after each batch (frame clamped to it)
    assert [(e["frame"], e.get("iteration"), e.get("iterations"), e["frames_done"]) for e in previews] == [
        (1, 10, None, 0), (1, None, 12, 2), (2, None, 12, 3)]
    assert previews[0]["rf"] == pytest.approx(batches[0]["rf"], rel=0.2) and previews[0]["total_frames"] == 3
    np.testing.assert_allclose(previews[1]["amplitude"], np.abs(out[1]), rtol=1e-6)
    np.testing.assert_allclose(previews[1]["phase"], np.angle(out[1]), atol=1e-6)
    assert previews[1]["phase"].dtype == np.float32 and previews[2]["rf"] == batches[1]["rf"]
    # the early preview shows the 10th iterate: the result of max_iter=10
    ten = run_iterative(counts[:2], probe, "mixed-state", IterativeConfig(max_iter=10, batch_size=2, **PLAIN))
    np.testing.assert_allclose(previews[0]["amplitude"], np.abs(ten[1]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(previews[0]["phase"], np.angle(ten[1]), atol=1e-5)
    # no preview frame: no preview events
    events, _ = _drain(iter_iterative(counts, probe, "mixed-state", cfg))
    assert not [e for e in events if e["event"] == "preview"]


def test_rf_plateau_stops_after_patience():
    counts, probe = _toy(n=1)
    # tol = 1: any R_f > 0 counts as "no relative improvement" -> stop after patience + 1 iterations
    events, _ = _drain(iter_iterative(counts, probe, "mixed-state", IterativeConfig(
        max_iter=50, device="cpu", holdout_fraction=0.0, noise_floor_margin=None, patience=3, tol=1.0)))
    batch = [e for e in events if e["event"] == "batch"][0]
    assert (batch["iterations"], batch["stopped"]) == (4, "rf_plateau")
    # tol 0.01 over patience 1: stops when R_f fell by less than 1 % in one iteration
    events, _ = _drain(iter_iterative(counts, probe, "mixed-state", IterativeConfig(
        max_iter=200, device="cpu", holdout_fraction=0.0, noise_floor_margin=None, patience=1, tol=0.01)))
    rfs = [e["rf"] for e in events if e["event"] == "progress"]
    batch = [e for e in events if e["event"] == "batch"][0]
    assert batch["stopped"] == "rf_plateau" and 2 < batch["iterations"] < 200
    k = batch["iterations"]
    ends = [run_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=m, **PLAIN)) for m in (k - 1, k)]
    r = [it._rf(diffraction_intensity(torch.as_tensor(probe), torch.as_tensor(o)), torch.as_tensor(counts)) for o in ends]
    assert r[0] - r[1] < 0.01 * r[0]  # the stopping step
    assert batch["rf"] == pytest.approx(r[1], rel=1e-5)  # the last iterate's R_f, not the last progress event's
    assert rfs[-1] > batch["rf"]


def test_heldout_rule_keeps_the_lowest_nll_iterate_and_stops_when_it_rises():
    # at ~30 photons per pixel the held-out NLL of this toy falls for 5 iterations and rises at the 6th
    counts, probe = _toy(n=1)
    base = dict(device="cpu", holdout_fraction=0.3, noise_floor_margin=None, tol=0.0, seed=0)
    nll = []
    for m in range(1, 8):
        events, _ = _drain(iter_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=m, patience=100, **base)))
        nll.append([e for e in events if e["event"] == "progress"][-1]["heldout_nll"])
    rise = next(j for j in range(1, len(nll)) if nll[j] >= min(nll[:j]))  # first iterate (0-based) that does not improve
    best = int(np.argmin(nll[:rise]))
    assert rise >= 2 and best >= 1  # the toy is built so: neither the first nor the last iterate is the best
    events, out = _drain(iter_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=50, patience=1, **base)))
    batch = [e for e in events if e["event"] == "batch"][0]
    assert (batch["iterations"], batch["stopped"]) == (rise + 1, "heldout_rising")
    assert batch["heldout_nll"] == pytest.approx(nll[best], rel=1e-6)
    kept = run_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=best + 1, patience=100, **base))
    np.testing.assert_array_equal(out, kept)  # the kept iterate is the best one, not the last one
    # patience 2 tolerates one non-improving iterate
    events, _ = _drain(iter_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=50, patience=2, **base)))
    stop2 = next(j for j in range(rise + 1, len(nll)) if nll[j] >= min(nll[:j]))
    assert [e for e in events if e["event"] == "batch"][0]["iterations"] == stop2 + 1
    # the iterations use the kept counts rescaled to the full dose; the NLL compares with the held-out part
    kept, held = binomial_thinning(counts, 0.3, 0)
    p = torch.as_tensor(probe)
    support = torch.as_tensor(support_mask(probe, 0.02), dtype=torch.float32)
    one = _one_step(torch.ones(1, 16, 16, dtype=torch.complex64), p, torch.as_tensor(kept) / 0.7, 1.0, support)
    got = run_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=1, patience=100, **base))
    np.testing.assert_allclose(got, one.numpy(), rtol=1e-5, atol=1e-6)
    pred = diffraction_intensity(p, one)
    assert nll[0] == pytest.approx(float(poisson_nll_per_frame(pred * 0.3, torch.as_tensor(held))[0]), rel=1e-5)
    events, _ = _drain(iter_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=1, patience=100, **base)))
    assert events[0]["rf"] == pytest.approx(it._rf(pred * 0.7, torch.as_tensor(kept)), rel=1e-5)
    # another holdout seed splits differently
    other = run_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=1, patience=100, **{**base, "seed": 1}))
    assert np.abs(other - got).max() > 1e-4


def test_noise_floor_counter_and_fallback():
    # counts = the exact (noise-free) intensity of the flat start: R_f is ~0, below any Poisson floor
    _, probe = _toy(n=1)
    flat = diffraction_intensity(torch.as_tensor(probe), torch.ones(2, 16, 16, dtype=torch.complex64)).numpy()
    probe = (probe * np.sqrt(1e4 / flat.max())).astype(np.complex64)
    counts = diffraction_intensity(torch.as_tensor(probe), torch.ones(2, 16, 16, dtype=torch.complex64)).numpy()
    events, out = _drain(iter_iterative(counts, probe, "mixed-state", IterativeConfig(
        max_iter=3, device="cpu", holdout_fraction=0.0, noise_floor_margin=0.05, patience=100, tol=0.0)))
    batch = [e for e in events if e["event"] == "batch"][0]
    assert batch["below_noise_floor_frames"] == 2
    assert events[0]["rf"] < 0.2 * events[0]["rf_floor"]
    np.testing.assert_allclose(out, 1, atol=2e-3)
    events, _ = _drain(iter_iterative(counts, probe, "mixed-state", IterativeConfig(
        max_iter=3, device="cpu", holdout_fraction=0.0, noise_floor_margin=None, patience=100, tol=0.0)))
    assert [e for e in events if e["event"] == "batch"][0]["below_noise_floor_frames"] == 0
    # noisy counts far from the start: R_f is above the floor, nothing is below it
    noisy, probe = _toy(n=2)
    events, _ = _drain(iter_iterative(noisy, probe, "mixed-state", IterativeConfig(
        max_iter=2, device="cpu", holdout_fraction=0.0, noise_floor_margin=0.05, patience=100, tol=0.0)))
    assert [e for e in events if e["event"] == "batch"][0]["below_noise_floor_frames"] == 0


def test_floor_margin_099_counts_every_iterate_as_above_the_floor():
    counts, probe = _toy(n=1, photons=3000.0)
    base = dict(device="cpu", holdout_fraction=0.0, patience=1000, tol=0.0)
    a = run_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=8, noise_floor_margin=0.99, **base))
    b = run_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=8, noise_floor_margin=None, **base))
    np.testing.assert_array_equal(a, b)  # no hold-out: the last iterate above the floor, i.e. the last one


def test_start_seed_gives_random_phases_inside_the_support():
    counts, probe = _toy(n=2)
    cfg = IterativeConfig(max_iter=1, alpha=1e-9, start_seed=4, batch_size=1, **PLAIN)
    out = run_iterative(counts, probe, "mixed-state", cfg)
    support = support_mask(probe, 0.02)
    assert np.all(out[:, ~support] == 1)
    np.testing.assert_allclose(np.abs(out[:, support]), 1, atol=1e-5)
    for lo in (0, 1):  # one generator per batch, seeded by (start_seed, first frame)
        gen = torch.Generator().manual_seed(4 * 1_000_003 + lo)
        phase = ((torch.rand((1, 16, 16), generator=gen) * 2 - 1) * torch.pi).numpy()[0]
        np.testing.assert_allclose(np.angle(out[lo][support]), phase[support], atol=1e-4)
    ph = np.angle(out[:, support])
    assert ph.min() < -2.5 and ph.max() > 2.5  # uniform on (-pi, pi), not (0, pi) or (-1, 1)
    same = run_iterative(counts, probe, "mixed-state", cfg)
    np.testing.assert_array_equal(out, same)
    other = run_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=1, alpha=1e-9, start_seed=5, batch_size=1, **PLAIN))
    assert np.abs(np.angle(other[:, support]) - ph).max() > 1
    seed0 = run_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=1, alpha=1e-9, start_seed=0, batch_size=1, **PLAIN))
    assert np.abs(np.angle(seed0[:, support])).max() > 2.5  # seed 0 is a seed, not "flat"


def test_unmeasured_pixels_are_left_free():
    counts, probe = _toy(n=2)
    holed = counts.copy()
    holed[:, 7:9, 6:9] = np.nan  # a masked beam stop
    cfg = IterativeConfig(max_iter=1, **PLAIN)
    out = run_iterative(holed, probe, "mixed-state", cfg)
    assert np.isfinite(out).all()
    p = torch.as_tensor(probe)
    c = torch.as_tensor(np.nan_to_num(holed))
    valid = torch.as_tensor(np.isfinite(holed))
    support = torch.as_tensor(support_mask(probe, 0.02), dtype=torch.float32)
    obj = torch.ones(2, 16, 16, dtype=torch.complex64)
    expected = support * (obj + mixed_state_update(obj, p, c, valid=valid)) + (1 - support)
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert np.abs(out - run_iterative(counts, probe, "mixed-state", cfg)).max() > 1e-4
    events, _ = _drain(iter_iterative(holed, probe, "mixed-state", cfg))
    pred = diffraction_intensity(p, expected)
    assert events[0]["rf"] == pytest.approx(it._rf(pred, c, valid), rel=1e-5)
