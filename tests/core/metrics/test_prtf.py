"""Consistency PRTF (Shapiro 2005 / Chapman 2006) and FRC thresholds (van Heel & Schatz 2005)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_cxdi.errors import DataValidationError
from napari_cxdi.metrics import ONE_OVER_E, fourier_fit_ratio, frc, half_bit_threshold, prtf
from napari_cxdi.physics.fft import fft2c_np, ifft2c_np

N = 64
DX = 10.0


@pytest.fixture(scope="module")
def obj():
    """An isolated complex object: smooth random amplitude and phase inside a disk of radius 14 px."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[:N, :N] - N // 2
    support = np.hypot(y + 2, x - 3) < 14
    amp = 0.5 + ndimage.gaussian_filter(rng.random((N, N)), 1.5)
    phase = 3 * ndimage.gaussian_filter(rng.normal(size=(N, N)), 1.0)
    return support * amp * np.exp(1j * phase)


def with_phases(o, rng, keep_ring: int | None = None):
    """Same Fourier modulus as ``o``; phases random beyond ``keep_ring`` (all of them when None)."""
    f = fft2c_np(o)
    random = np.exp(1j * rng.uniform(-np.pi, np.pi, f.shape))
    if keep_ring is not None:
        q = np.hypot(*np.meshgrid(np.arange(N) - N // 2, np.arange(N) - N // 2, indexing="ij"))
        random = np.where(q < keep_ring, np.exp(1j * np.angle(f)), random)
    return ifft2c_np(np.abs(f) * random)


def test_consistent_runs_score_well_despite_phase_shift_and_twin(obj):
    rng = np.random.default_rng(0)
    runs = []
    for j in range(12):
        o = obj * np.exp(1j * rng.uniform(-np.pi, np.pi))  # global phase
        o = np.roll(o, tuple(rng.integers(-5, 6, 2)), axis=(0, 1))  # translation
        if j % 2:
            o = np.conj(np.roll(o[::-1, ::-1], 1, axis=(0, 1)))  # twin image
        runs.append(o + 0.01 * (rng.normal(size=o.shape) + 1j * rng.normal(size=o.shape)))
    curve = prtf(np.array(runs), DX)
    assert curve.curve[1:N // 2].min() > 0.9
    assert curve.resolution_nm == pytest.approx(2 * DX)  # never below 1/e: Nyquist
    assert not curve.notes


def test_random_phase_object_scores_badly_though_its_amplitudes_fit(obj):
    rng = np.random.default_rng(1)
    runs = np.array([with_phases(obj, rng) for _ in range(12)])
    curve = prtf(runs, DX)
    assert curve.curve[2:].mean() < 0.35 and curve.resolution_nm > N * DX / 4
    assert curve.thresholds["random-phase floor"] == pytest.approx(1 / np.sqrt(12)) and not curve.notes
    # the old amplitude-only quantity rates the same runs perfect: the reason it was renamed
    intensity = np.abs(fft2c_np(obj)) ** 2 * 1e4
    fit = fourier_fit_ratio(np.abs(fft2c_np(runs[0] * 100)), intensity, DX)
    assert fit.resolution_nm == pytest.approx(2 * DX)


def test_prtf_crosses_where_phases_stop_being_reproducible(obj):
    rng = np.random.default_rng(2)
    runs = np.array([with_phases(obj, rng, keep_ring=12) for _ in range(12)])
    curve = prtf(runs, DX, align_shift=False, align_twin=False)
    assert curve.curve[3:10].min() > 0.9 and curve.curve[14:].max() < ONE_OVER_E
    assert N * DX / 14 <= curve.resolution_nm <= N * DX / 11


def test_prtf_with_probe_movie_and_mask(obj):
    rng = np.random.default_rng(4)
    y, x = np.mgrid[:N, :N] - N // 2
    probe = np.exp(-(x**2 + y**2) / 200.0)[None] * np.exp(1j * 0.01 * x**2)
    movie = np.stack([obj, np.roll(obj, 3, axis=1)])
    runs = np.array([movie * np.exp(1j * rng.uniform(-3, 3)) for _ in range(3)])
    mask = np.zeros((N, N), bool)
    mask[N // 2 - 3 : N // 2 + 3, :] = True  # a gap across the centre
    curve = prtf(runs, DX, probe=probe, mask=mask)
    assert np.isnan(curve.curve[1]) and np.nanmin(curve.curve[1:]) > 0.99  # ring 1 lies in the gap: undefined
    assert curve.resolution_nm == pytest.approx(2 * DX)
    assert curve.notes and "3 runs" in curve.notes[0]  # too few runs for the 1/e criterion to mean much
    with pytest.raises(DataValidationError, match="at least 2"):
        prtf(runs[:1], DX)


def test_frc_thresholds(rng):
    assert half_bit_threshold(1) == pytest.approx(1.0)
    assert half_bit_threshold(1e12) == pytest.approx(0.2071 / 1.2071, rel=1e-4)
    a = ndimage.gaussian_filter(rng.normal(size=(N, N)), 2)
    same = frc(a, a, DX)
    assert set(same.resolutions_nm) == {"1/e", "half-bit", "3-sigma"}
    assert all(v == pytest.approx(2 * DX) for v in same.resolutions_nm.values())
    noisy = frc(a, a + 0.6 * a.std() * rng.normal(size=a.shape), DX)
    r = noisy.resolutions_nm
    # the noise-adaptive thresholds are lower than 1/e at high q, so they resolve finer (or equal) detail
    assert r["3-sigma"] <= r["half-bit"] <= r["1/e"] + 1e-9 and r["1/e"] > 2 * DX
    assert noisy.as_dict()["resolutions_nm"] == r


def test_api_prtf_runs_and_evaluate_runs(small_aunp):
    import napari_cxdi as cx
    from napari_cxdi.errors import ConfigError

    sim = small_aunp
    result = cx.reconstruct(sim, method="mixed-state", max_iter=20, device="cpu", prtf_runs=3)
    m = result.metrics
    assert m["prtf_runs"] == 3 and m["prtf_resolution_nm"] is not None and "3 runs" in m["prtf_note"]
    assert m["fourier_fit_resolution_nm"] >= 2 * sim.pixel_size_nm - 1e-6
    single = cx.evaluate(result.objects, sim.counts, sim.probe, sim.pixel_size_nm)
    assert single["prtf_resolution_nm"] is None and "independent random starts" in single["prtf_note"]
    # runs whose phases are random inside the probe footprint: the PRTF collapses, the Fourier fit does not care
    rng = np.random.default_rng(0)
    n = sim.objects.shape[-1]
    randomised = [np.abs(sim.objects) * np.exp(1j * rng.uniform(-np.pi, np.pi, sim.objects.shape)) for _ in range(9)]
    bad = cx.evaluate(randomised[0], sim.counts, sim.probe, sim.pixel_size_nm, runs=randomised[1:])
    good = cx.evaluate(sim.objects, sim.counts, sim.probe, sim.pixel_size_nm, runs=[sim.objects * np.exp(0.7j)] * 8)
    assert good["prtf_resolution_nm"] == pytest.approx(2 * sim.pixel_size_nm)
    assert bad["prtf_resolution_nm"] > n * sim.pixel_size_nm / 4
    with pytest.raises(ConfigError, match="iterative"):
        cx.reconstruct(sim, method="PID3Net-NR", prtf_runs=3, epochs=1, device="cpu")
    with pytest.raises(ConfigError, match="at least 2"):
        cx.reconstruct(sim, method="mixed-state", prtf_runs=1, device="cpu")
