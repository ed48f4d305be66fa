"""Classical baselines: defaults, seeding, event keys and timing, preview placement, held-out batches
and the selection among iterates around the noise floor (issue 20)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cxdi.physics.forward import diffraction_intensity
from napari_cxdi.physics.mixed_state import mixed_state_update
from napari_cxdi.physics.probe import support_mask
from napari_cxdi.physics.thinning import binomial_thinning, poisson_nll_per_frame
from napari_cxdi.recon import iterative as it
from napari_cxdi.recon import IterativeConfig, iter_iterative, run_iterative
from napari_cxdi.progress import drain

torch.set_num_threads(1)


def _toy(n=3, size=16, photons=30.0, seed=0, poisson=True):
    yy, xx = np.mgrid[:size, :size] - size / 2
    probe = np.exp(-(yy**2 + xx**2) / (2 * 2.5**2)).astype(np.complex64)[None]
    obj = np.exp(1j * 0.8 * np.stack([np.exp(-((yy - 1 - t) ** 2 + (xx + 1) ** 2) / 4.0) for t in range(n)]))
    inten = diffraction_intensity(torch.as_tensor(probe), torch.as_tensor(obj.astype(np.complex64))).numpy()
    scale = photons * size * size / 10 / inten[0].sum()
    inten, probe = inten * scale, (probe * np.sqrt(scale)).astype(np.complex64)
    counts = np.random.default_rng(seed).poisson(inten) if poisson else inten  # exact (float) counts: no noise
    return counts.astype(np.float32), probe


def _drain(gen):
    """(events, result) of a progress generator, through the project's own drain."""
    events = []
    return events, drain(gen, events.append)


PLAIN = dict(device="cpu", holdout_fraction=0.0, noise_floor_margin=None, patience=1000, tol=0.0)
PROGRESS_KEYS = {"event", "method", "frames_done", "total_frames", "iteration", "rf", "rf_floor", "elapsed_s"}
BATCH_KEYS = {"event", "method", "frames_done", "total_frames", "iterations", "rf", "stopped", "elapsed_s",
              "below_noise_floor_frames"}
PREVIEW_KEYS = {"event", "method", "frame", "amplitude", "phase", "frames_done", "total_frames", "rf"}


def test_defaults_device_and_memory_release(monkeypatch):
    counts, probe = _toy(n=2)
    cfg = IterativeConfig(max_iter=2, **PLAIN)
    np.testing.assert_array_equal(run_iterative(counts, probe, config=cfg), run_iterative(counts, probe, "mixed-state", cfg))
    _, out = _drain(iter_iterative(counts, probe, config=cfg))
    np.testing.assert_array_equal(out, run_iterative(counts, probe, "mixed-state", cfg))
    asked, freed = [], []
    real = it.resolve_device
    monkeypatch.setattr(it, "resolve_device", lambda d: asked.append(d) or real(d))
    monkeypatch.setattr(it, "free_device_memory", lambda d: freed.append(str(d)))
    _drain(iter_iterative(counts, probe, "mixed-state", cfg))
    assert asked == ["cpu"] and freed == ["cpu"]  # the configured device; memory released by default
    _drain(iter_iterative(counts, probe, "mixed-state", cfg, release_memory=False))
    assert freed == ["cpu"]


def test_floor_generator_is_seeded_by_the_config():
    counts, probe = _toy(n=2)

    def floors(seed):
        torch.manual_seed(np.random.randint(1 << 30))  # the global generator must not matter
        events, _ = _drain(iter_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=6, **{**PLAIN}, seed=seed)))
        return [e["rf_floor"] for e in events if e["event"] == "progress"]

    assert floors(0) == floors(0) == floors(None)  # None seeds the floor draws with 0
    assert floors(5) != floors(0)
    assert floors(5) == floors(5)


def test_event_keys_and_elapsed_time():
    counts, probe = _toy(n=3)
    events, _ = _drain(iter_iterative(counts, probe, "mf-PIE", IterativeConfig(max_iter=11, batch_size=2, **PLAIN),
                                      preview_frame=2))
    for e in events:
        keys = {"progress": PROGRESS_KEYS, "batch": BATCH_KEYS}.get(e["event"])
        if keys is None:
            assert set(e) in (PREVIEW_KEYS | {"iteration"}, PREVIEW_KEYS | {"iterations"})
        else:
            assert set(e) == keys
        assert e["method"] == "mf-PIE" and e["total_frames"] == 3
        if "elapsed_s" in e:
            assert 0 <= e["elapsed_s"] < 600
    held, _ = _drain(iter_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=2, device="cpu", patience=100)))
    assert set(held[0]) == PROGRESS_KEYS | {"heldout_nll"}
    assert set(held[-1]) == BATCH_KEYS | {"heldout_nll"}


def test_preview_placement():
    counts, probe = _toy(n=5)
    cfg = IterativeConfig(max_iter=30, batch_size=2, **PLAIN)

    def previews(frame):
        events, out = _drain(iter_iterative(counts, probe, "mixed-state", cfg, preview_frame=frame))
        return [(e["frame"], e.get("iteration"), e["frames_done"]) for e in events if e["event"] == "preview"], events, out

    # early previews every 20 iterations from the 10th, in the batch holding the frame (its first frame too)
    got, events, out = previews(0)
    assert got == [(0, 10, 0), (0, 30, 0), (0, None, 2), (2, None, 4), (4, None, 5)]
    got, events, out = previews(3)  # the second batch [2, 4): the frame's index in the batch is 1
    assert got[:3] == [(1, None, 2), (3, 10, 2), (3, 30, 2)]
    early = [e for e in events if e["event"] == "preview" and e.get("iteration") == 30][0]
    np.testing.assert_allclose(early["amplitude"], np.abs(out[3]), rtol=1e-5, atol=1e-6)
    got, _, _ = previews(2)  # the first frame of the next batch is not previewed early in this one
    assert got == [(1, None, 2), (2, 10, 2), (2, 30, 2), (2, None, 4), (4, None, 5)]


def test_heldout_in_later_batches():
    counts, probe = _toy(n=5)
    cfg = IterativeConfig(max_iter=1, batch_size=2, device="cpu", holdout_fraction=0.2, noise_floor_margin=None,
                          patience=100, seed=4)
    events, out = _drain(iter_iterative(counts, probe, "mixed-state", cfg))
    kept, held = binomial_thinning(counts, 0.2, 4)
    p = torch.as_tensor(probe)
    support = torch.as_tensor(support_mask(probe, 0.02), dtype=torch.float32)
    flat = torch.ones(5, 16, 16, dtype=torch.complex64)
    obj = support * (flat + mixed_state_update(flat, p, torch.as_tensor(kept) / 0.8)) + (1 - support)
    np.testing.assert_allclose(out, obj.numpy(), rtol=1e-5, atol=1e-6)
    nll = poisson_nll_per_frame(diffraction_intensity(p, obj) * 0.2, torch.as_tensor(held))  # 0.2 of the dose
    batches = [e for e in events if e["event"] == "batch"]
    assert [b["heldout_nll"] for b in batches] == pytest.approx([float(nll[0:2].mean()), float(nll[2:4].mean()),
                                                                 float(nll[4])], rel=1e-5)


def test_start_seed_outside_a_tight_support():
    counts, probe = _toy(n=1)
    cfg = IterativeConfig(max_iter=1, start_seed=2, support_threshold=0.5, **PLAIN)
    out = run_iterative(counts, probe, "mixed-state", cfg)
    support = torch.as_tensor(support_mask(probe, 0.5), dtype=torch.float32)
    gen = torch.Generator().manual_seed(2 * 1_000_003)
    phase = (torch.rand((1, 16, 16), generator=gen) * 2 - 1) * torch.pi
    start = support * torch.polar(torch.ones_like(phase), phase) + (1 - support)  # vacuum (1) outside
    p = torch.as_tensor(probe)
    expected = support * (start + mixed_state_update(start, p, torch.as_tensor(counts))) + (1 - support)
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_unmeasured_pixels_stay_out_of_the_floor():
    counts, probe = _toy(n=2)
    holed = counts.copy()
    holed[:, 6:10, 6:10] = np.nan
    events, _ = _drain(iter_iterative(holed, probe, "mixed-state", IterativeConfig(max_iter=1, **PLAIN)))
    p = torch.as_tensor(probe)
    c = torch.as_tensor(np.nan_to_num(holed))
    valid = torch.as_tensor(np.isfinite(holed))
    support = torch.as_tensor(support_mask(probe, 0.02), dtype=torch.float32)
    flat = torch.ones(2, 16, 16, dtype=torch.complex64)
    obj = support * (flat + mixed_state_update(flat, p, c, valid=valid)) + (1 - support)
    _, floor = it._rf_and_floor_per_frame(diffraction_intensity(p, obj), c, torch.Generator().manual_seed(0), valid)
    assert events[0]["rf_floor"] == pytest.approx(float(floor.mean()), rel=1e-5)


def test_rf_helpers_with_small_sums():
    pred = torch.tensor([[[0.04, 0.09]]])
    meas = torch.tensor([[[0.01, 0.04]]])
    rf, _ = it._rf_and_floor_per_frame(pred, meas, torch.Generator().manual_seed(0))
    assert rf.tolist() == pytest.approx([2 / 3])  # 0.2 / 0.3, not divided by a clamp of 1


def test_selection_around_the_noise_floor():
    # exact (noise-free) counts: R_f falls below the Poisson floor of the prediction as the fit converges.
    # The kept iterate (no hold-out) is the last one with R_f >= (1 - margin) x floor; with none such, the
    # one closest to the floor (largest R_f / floor). Worked out from the R_f and floor of every iterate.
    m_max = 10
    cases = 0
    for photons, margins in ((300.0, (0.0, 0.3, 0.45)), (3.0, (0.0,))):
        counts, probe = _toy(n=1, photons=photons, poisson=False)
        rf, floor = [], []
        for m in range(1, m_max + 1):
            events, _ = _drain(iter_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=m, **PLAIN)))
            last = [e for e in events if e["event"] == "progress"][-1]
            rf.append(last["rf"])
            floor.append(last["rf_floor"])
        rf, floor = np.array(rf), np.array(floor)
        for margin in margins:
            above = np.nonzero(rf >= floor * (1 - margin))[0]
            k = above[-1] if len(above) else int(np.argmax(rf / floor))
            cases += 0 < k < m_max - 1 or not len(above)
            cfg = IterativeConfig(max_iter=m_max, **{**PLAIN, "noise_floor_margin": margin})
            events, out = _drain(iter_iterative(counts, probe, "mixed-state", cfg))
            ref = run_iterative(counts, probe, "mixed-state", IterativeConfig(max_iter=int(k) + 1, **PLAIN))
            np.testing.assert_array_equal(out, ref)
            assert events[-1]["below_noise_floor_frames"] == (0 if len(above) else 1)
    assert cases >= 2  # the toy exercises both rules, not only "the last iterate"
