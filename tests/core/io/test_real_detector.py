"""Real detector data: masks, invalid values, beam centre, crop/bin and mask-aware reconstruction.

The detector files are written here: an EIGER-like master + bitshuffle data file (150 x 140 uint32,
module gaps crossing the beam, dead pixels 0xFFFFFFFF, flagged and unflagged hot pixels, beam off
the detector centre, 8 keV / 5 m / 75 um: a geometry no sample uses).
"""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import tifffile
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import napari_cxdi as cx
from napari_cxdi.cli import main
from napari_cxdi.errors import ConfigError, DataValidationError
from napari_cxdi.io import open_movie
from napari_cxdi.io.detector import (
    bin_frames, bin_mask, crop_window, estimate_centre, plan_crop, prepare_movie, summed_pattern,
)
from napari_cxdi.io.mask import DetectorMask, mask_from_cxi, read_mask_file, suggest_hot_pixels
from napari_cxdi.metrics import phase_ssim, r_factor
from napari_cxdi.physics.mixed_state import modulus_projection
from napari_cxdi.physics.probe import support_mask
from napari_cxdi.pid3net.losses import diffraction_loss
from napari_cxdi.simulate import simulate_aunp
from napari_cxdi.simulate.detector import GAP, DetectorLayout, place_on_detector, write_eiger_master

GEOMETRY = dict(energy_kev=8.0, distance_m=5.0, pixel_um=75.0)


@pytest.fixture(scope="module")
def sim():
    return simulate_aunp(n_frames=6, size=64, seed=3)


def eiger(folder, sim, layout=None, **kwargs):
    layout = layout or DetectorLayout()
    frames = place_on_detector(sim.counts, layout)
    return write_eiger_master(folder, frames, layout, **GEOMETRY, **kwargs), layout, frames


# -- masks ----------------------------------------------------------------------------------------

def test_eiger_mask_saturation_and_centre_are_read(tmp_path, sim):
    master, layout, _ = eiger(tmp_path, sim)
    movie = open_movie(master)
    assert movie.shape == (6, 150, 140)
    np.testing.assert_array_equal(movie.mask.bad, layout.pixel_mask() != 0)
    assert movie.mask.bit_counts["gap"] == 2 * 140 + 2 * 150 - 4 and movie.mask.bit_counts["dead"] == 3
    assert movie.mask.saturation == 1_000_000 and movie.mask.sentinel == 2**32 - 1
    assert (movie.beam_centre.y, movie.beam_centre.x) == (71.0, 62.0)
    assert open_movie(master, use_file_mask=False).mask.bad is None


def test_invalid_values_are_unmeasured_per_frame():
    mask = DetectorMask.for_dtype(np.uint16, saturation=1000)
    frames = np.array([[[1, 2**16 - 1], [999, 1000]]], np.uint16)
    np.testing.assert_array_equal(mask.invalid(frames), [[[False, True], [False, True]]])
    floats = np.array([[[1.0, np.nan], [-1.0, np.inf]]], np.float32)
    np.testing.assert_array_equal(DetectorMask.for_dtype(np.float32).invalid(floats), [[[False, True], [True, True]]])
    applied = DetectorMask.for_dtype(np.uint32).apply(np.array([[[5, 0xFFFFFFFF]]], np.uint32))
    assert applied[0, 0, 0] == 5 and np.isnan(applied[0, 0, 1])


def test_mask_files_and_cxi_convention(tmp_path):
    bad = np.zeros((10, 12), bool)
    bad[2, 3] = bad[7, 1] = True
    np.save(tmp_path / "m.npy", bad)
    tifffile.imwrite(tmp_path / "m.tif", bad.astype(np.uint8) * 4)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f["entry/instrument/detector/pixel_mask"] = bad.astype(np.uint32) * 2
    for name in ("m.npy", "m.tif", "m.h5"):
        np.testing.assert_array_equal(read_mask_file(tmp_path / name), bad)
    np.save(tmp_path / "good.npy", ~bad)
    np.testing.assert_array_equal(read_mask_file(tmp_path / "good.npy", good_is_one=True), bad)
    # CXI bits: 1 invalid and 8 dead mask the pixel; 32 (in peak mask) and 256 (resolution) do not
    np.testing.assert_array_equal(mask_from_cxi(np.array([1, 8, 32, 256, 0, 33])), [True, True, False, False, False, True])
    np.save(tmp_path / "wrong.npy", np.zeros((3, 3), bool))
    movie_path = tmp_path / "movie.npy"
    np.save(movie_path, np.ones((2, 10, 12), np.float32))
    with pytest.raises(DataValidationError, match="3x3.*10x12"):
        open_movie(movie_path, mask=tmp_path / "wrong.npy")


def test_cxi_mask_and_corner_position(tmp_path, sim):
    path = tmp_path / "cdtools_like.cxi"
    counts = sim.counts[:2]
    with h5py.File(path, "w") as f:
        f["entry_1/data_1/data"] = counts
        det = f.create_group("entry_1/instrument_1/detector_1")
        mask = np.zeros(counts.shape[1:], np.uint32)
        mask[5, 6] = 8  # dead
        mask[9, 9] = 32  # in peak mask: not bad
        det["mask"] = mask
        det["x_pixel_size"] = 75e-6
        det["y_pixel_size"] = 75e-6
        det["corner_position"] = np.array([-30 * 75e-6, -33 * 75e-6, 5.0])
    movie = open_movie(path)
    assert movie.mask.bad.sum() == 1 and movie.mask.bad[5, 6]
    assert movie.beam_centre.y == pytest.approx(33.0) and movie.beam_centre.x == pytest.approx(30.0)
    # cdtools: mask 1 = off, basis vectors stored as [3, 2] columns (here flipped axes: -p along both)
    with h5py.File(path, "a") as f:
        det = f["entry_1/instrument_1/detector_1"]
        det["basis_vectors"] = np.array([[0.0, -75e-6, 0.0], [-75e-6, 0.0, 0.0]]).T
        del det["corner_position"]
        det["corner_position"] = np.array([40 * 75e-6, 20 * 75e-6, 5.0])
    centre = open_movie(path).beam_centre
    assert (centre.y, centre.x) == (pytest.approx(20.0), pytest.approx(40.0))


def test_hot_pixel_suggestion_finds_isolated_pixels_not_speckles(sim):
    pattern = sim.counts.sum(axis=0).astype(np.float64)
    hot = [(5, 9), (40, 20), (33, 31)]
    for y, x in hot:
        pattern[y, x] = 20 * pattern.max()
    candidates, n = suggest_hot_pixels(pattern)
    assert n == len(hot) and all(candidates[y, x] for y, x in hot)
    assert suggest_hot_pixels(sim.counts.sum(axis=0))[1] == 0  # the speckle pattern alone: no candidates


# -- beam centre, crop and bin ----------------------------------------------------------------------

@pytest.mark.parametrize("centre", [(71, 62), (84, 49)])
def test_estimated_centre_within_half_a_pixel(tmp_path, sim, centre):
    layout = DetectorLayout(centre=centre, gap_rows=((centre[0] - 1, centre[0] + 1),),
                            hot_unflagged=((30, 120), (130, 15)))
    master, _, _ = eiger(tmp_path, sim, layout, beam_centre=False)
    movie = open_movie(master)
    assert movie.beam_centre is None
    cy, cx_, score = estimate_centre(summed_pattern(movie), movie.mask.bad)
    assert abs(cy - centre[0]) < 0.5 and abs(cx_ - centre[1]) < 0.5 and score > 0.8
    c, window = plan_crop(movie, 64)
    assert c.source == "estimated" and (window.y0, window.x0) == (centre[0] - 32, centre[1] - 32)


@settings(max_examples=60, deadline=None)
@given(cy=st.floats(0, 200), cx=st.floats(0, 200), m=st.integers(8, 64), b=st.integers(1, 4))
def test_crop_window_puts_the_beam_on_pixel_m_over_2(cy, cx, m, b):
    w = crop_window((cy, cx), (201, 201), m, b)
    assert abs(w.y0 + (m // 2) * b + (b - 1) / 2 - cy) <= 0.5 and abs(w.x0 + (m // 2) * b + (b - 1) / 2 - cx) <= 0.5


def test_largest_window_that_fits():
    w = crop_window((71, 62), (150, 140), None, 1)
    assert w.fits((150, 140)) and w.size == 2 * 62 and not crop_window((71, 62), (150, 140), w.size + 2).fits((150, 140))


def test_binning_conserves_counts_and_scales_partial_bins(rng):
    frames = rng.poisson(50, size=(3, 12, 12)).astype(np.float32)
    binned = bin_frames(frames, 3)
    assert binned.shape == (3, 4, 4)
    np.testing.assert_allclose(binned.sum(axis=(1, 2)), frames.sum(axis=(1, 2)), rtol=1e-6)
    masked = frames.copy()
    masked[:, 0:3, 0:3] = np.nan  # a whole bin unmeasured
    masked[:, 3, 3] = np.nan  # one pixel of the next bin
    out = bin_frames(masked, 3)
    assert np.isnan(out[:, 0, 0]).all()
    np.testing.assert_allclose(out[:, 1, 1], np.nansum(masked[:, 3:6, 3:6], axis=(1, 2)) * 9 / 8, rtol=1e-6)
    bad = np.zeros((12, 12), bool)
    bad[0:3, 0:3] = True
    bad[3, 3] = True
    assert bin_mask(bad, 3).sum() == 1


def test_prepared_movie_is_lazy_and_geometry_follows_the_window(tmp_path, sim):
    master, layout, frames = eiger(tmp_path, sim)
    movie = open_movie(master)
    prepared = prepare_movie(movie, size=32, bin=2)
    assert prepared.shape == (6, 32, 32) and prepared.is_lazy and prepared.data.chunks[0] == (6,)  # blocks of <= 8 frames
    wavelength = 12.398419843320026e-10 / 8.0
    assert prepared.pixel_size_nm == pytest.approx(wavelength * 5.0 / (32 * 2 * 75e-6) * 1e9)
    assert prepared.metadata["crop"]["bin"] == 2 and prepared.metadata["detector_pixel_um"] == 150
    full = prepare_movie(movie, size=64).data.compute()
    valid = np.isfinite(full)
    np.testing.assert_array_equal(full[valid], sim.counts[valid])  # measured pixels are the counts
    assert (~valid).sum(axis=(1, 2)).min() > 100  # gaps, dead and flagged hot pixels are unmeasured


# -- mask-aware physics ------------------------------------------------------------------------------

def test_losses_and_projection_ignore_unmeasured_pixels(rng):
    predicted = torch.rand(2, 3, 8, 8, requires_grad=True)
    measured = torch.poisson(torch.full((2, 3, 8, 8), 5.0))
    measured[..., 2, :] = float("nan")
    for kind in ("poisson", "mae", "sqrt_mse"):
        loss = diffraction_loss(kind, predicted, measured)
        keep = torch.isfinite(measured)
        ref = diffraction_loss(kind, predicted[keep], measured[keep])
        assert torch.isfinite(loss) and float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
        (grad,) = torch.autograd.grad(loss, predicted)
        assert torch.all(grad[..., 2, :] == 0) and torch.all(torch.isfinite(grad))
    psi = torch.randn(4, 2, 8, 8, dtype=torch.complex64)
    counts = torch.rand(4, 8, 8) * 10
    counts[:, 0, 0] = float("nan")
    out = modulus_projection(psi, counts)
    torch.testing.assert_close(out[:, :, 0, 0], psi[:, :, 0, 0])
    total = (out.abs() ** 2).sum(dim=1)
    torch.testing.assert_close(total[:, 1:, :], counts[:, 1:, :], rtol=1e-4, atol=1e-4)


def test_r_factor_leaves_masked_pixels_out(rng):
    measured = rng.poisson(20, size=(2, 8, 8)).astype(np.float32)
    predicted = measured.copy()
    mask = np.zeros((8, 8), bool)
    mask[1, :] = True
    predicted[:, 1, :] = 1e6
    assert r_factor(predicted, measured, mask=mask) == 0.0
    with_nan = measured.copy()
    with_nan[:, 1, :] = np.nan
    assert r_factor(predicted, with_nan) == 0.0


ITER = dict(method="mixed-state", tol=0.0, evaluate_metrics=True)


def test_masked_pixels_set_to_huge_values_change_nothing(tmp_path, sim):
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    layout = DetectorLayout()
    frames = place_on_detector(sim.counts[:3], layout)
    np.save(tmp_path / "probe.npy", sim.probe)
    other = frames.copy()
    flagged = layout.pixel_mask() != 0
    other[:, flagged] = np.random.default_rng(0).integers(10**5, 10**9, size=(3, int(flagged.sum())), dtype=np.uint32)
    ra = cx.reconstruct(write_eiger_master(a, frames, layout, **GEOMETRY), tmp_path / "probe.npy", max_iter=15, **ITER)
    rb = cx.reconstruct(write_eiger_master(b, other, layout, **GEOMETRY), tmp_path / "probe.npy", max_iter=15, **ITER)
    np.testing.assert_array_equal(ra.objects, rb.objects)
    assert ra.metrics["rf"] == rb.metrics["rf"] and ra.mask.sum() == flagged[39:103, 30:94].sum()


def test_gaps_crossing_the_centre_still_reconstruct(tmp_path, sim):
    """The detector movie (gaps through the beam, dead and hot pixels) reconstructs as well as the clean,
    cropped movie; treating the gaps as zero counts (the old behaviour) does clearly worse."""
    master, layout, frames = eiger(tmp_path, sim)
    clean = cx.reconstruct(sim, max_iter=60, **ITER)
    masked = cx.reconstruct(master, sim.probe, max_iter=60, **ITER)
    zeros = prepare_movie(open_movie(master), size=64).data.compute()
    zeros = np.nan_to_num(zeros, nan=0.0)
    zero_filled = cx.reconstruct(zeros, sim.probe, max_iter=60, **ITER)
    support = support_mask(sim.probe, 0.2, 0)
    ssim = {name: phase_ssim(r.phase, sim.phase, mask=support) for name, r in
            (("clean", clean), ("masked", masked), ("zeros", zero_filled))}
    # gap rows through the beam hide the two lowest rows of q: ~0.03 SSIM is lost on this short run
    assert ssim["masked"] > ssim["clean"] - 0.045, ssim
    assert ssim["masked"] > ssim["zeros"] + 0.15, ssim
    # the physics fills the gaps: model intensity there, close to the (hidden) true counts' scale
    filled = masked.filled_intensity
    gap = masked.mask
    assert filled is not None and np.isfinite(filled).all() and gap[31:33, :].all() and not gap[33, 0]
    truth_gap = sim.expected[:, gap].mean()
    assert 0.3 < filled[:, gap].mean() / truth_gap < 3.0


# -- end to end ------------------------------------------------------------------------------------------

def test_cli_reconstruct_master_with_probe_and_no_flags(tmp_path, sim, capsys):
    master, _, _ = eiger(tmp_path, sim)
    probe = tmp_path / "probe.h5"
    with h5py.File(probe, "w") as f:
        f["entry_1/instrument_1/source_1/probe"] = sim.probe
    assert main(["reconstruct", str(master), "--probe", str(probe), "--method", "mixed-state", "--max-iter", "5", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "prtf_resolution_nm" in out.out and "cropped a 64x64 window" in out.err
    result = tmp_path / "series_master_mixed-state.cxi"
    with h5py.File(result, "r") as f:
        assert f["entry_1/image_1/data"].shape == (6, 64, 64)
    assert main(["info", str(master), "--probe", str(probe), "--json"]) == 0
    info = __import__("json").loads(capsys.readouterr().out)
    assert info["beam_centre_source"].startswith("file:") and info["mask_gap"] == 2 * 140 + 2 * 150 - 4
    assert info["crop"].startswith("64x64 px at (y 39, x 30)") and info["cropped_pixel_size_nm"] == pytest.approx(161.44, abs=0.01)
    extra = np.zeros((150, 140), bool)
    extra[5, 5:9] = True
    np.save(tmp_path / "extra.npy", extra)
    assert main(["info", str(master), "--mask", str(tmp_path / "extra.npy"), "--json"]) == 0
    assert __import__("json").loads(capsys.readouterr().out)["mask_pixels"] == info["mask_pixels"] + 4
    assert main(["info", str(master), "--no-file-mask", "--json"]) == 0
    assert __import__("json").loads(capsys.readouterr().out)["mask_pixels"] == 0


def test_without_geometry_lengths_are_in_pixels(tmp_path, sim, capsys):
    np.save(tmp_path / "movie.npy", sim.counts[:3])
    np.save(tmp_path / "probe.npy", sim.probe)
    assert main(["reconstruct", str(tmp_path / "movie.npy"), "--probe", str(tmp_path / "probe.npy"),
                 "--method", "mixed-state", "--max-iter", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "prtf_resolution_px" in out and "_nm" not in out
    assert main(["reconstruct", str(tmp_path / "movie.npy"), "--probe", str(tmp_path / "probe.npy"), "--method",
                 "mixed-state", "--max-iter", "3", "--quiet", "--energy-kev", "8", "--distance-m", "5",
                 "--pixel-size-um", "75", "--overwrite"]) == 0
    assert "prtf_resolution_nm" in capsys.readouterr().out


def test_api_centre_crop_bin_and_bad_options(tmp_path, sim):
    master, _, _ = eiger(tmp_path, sim)
    probe_small = sim.probe[:, 16:48, 16:48]
    r = cx.reconstruct(master, probe_small, method="mixed-state", max_iter=3, center=(71, 62), evaluate_metrics=False)
    assert r.objects.shape == (6, 32, 32) and r.metadata["crop"]["centre_source"] == "given"
    r2 = cx.reconstruct(master, probe_small, method="mixed-state", max_iter=3, bin=2, evaluate_metrics=False)
    assert r2.metadata["crop"]["bin"] == 2 and r2.pixel_size_nm == pytest.approx(r.pixel_size_nm / 2, rel=1e-6)
    # a bare array cropped to a smaller probe: the given object pixel follows the window (dx = lambda z / (m p))
    r3 = cx.reconstruct(sim.counts, probe_small, method="mixed-state", max_iter=2, pixel_size_nm=10.0, evaluate_metrics=False)
    assert r3.objects.shape == (6, 32, 32) and r3.pixel_size_nm == pytest.approx(20.0)
    with pytest.raises(ConfigError, match="outside"):
        cx.reconstruct(master, probe_small, method="mixed-state", center=(500, 5))
    assert main(["reconstruct", str(master), "--probe", str(tmp_path / "nope.npy"), "--bin", "0"]) == 2


def test_pid3net_trains_on_masked_counts(sim):
    from napari_cxdi.pid3net import PID3NetConfig, PID3NetTrainer

    counts = sim.counts.copy()
    counts[:, 30:34, :] = np.nan
    cfg = PID3NetConfig.variant("PID3Net-PO", epochs=1, batch_size=2, frames=3, width=4, refine_steps=1, seed=0,
                                device="cpu", preview_every=0)
    trainer = PID3NetTrainer(counts, sim.probe, cfg)
    events = list(trainer.run())
    steps = [e for e in events if e["event"] == "step"]
    assert steps and all(np.isfinite(e["loss"]) and np.isfinite(e["rf"]) for e in steps)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_accepted_hot_pixels_are_masked(tmp_path, sim):
    layout = DetectorLayout(hot_unflagged=((50, 45), (90, 80)))  # inside the 64 x 64 window around (71, 62)
    master, _, _ = eiger(tmp_path, sim, layout)
    plain = cx.reconstruct(master, sim.probe, method="mixed-state", max_iter=2, evaluate_metrics=False)
    assert not plain.mask[50 - 39, 45 - 30] and not plain.mask[90 - 39, 80 - 30]
    accepted = cx.reconstruct(master, sim.probe, method="mixed-state", max_iter=2, evaluate_metrics=False,
                              mask_hot_pixels=True)
    assert accepted.mask[50 - 39, 45 - 30] and accepted.mask[90 - 39, 80 - 30]
    assert accepted.mask.sum() == plain.mask.sum() + 2


def test_estimated_centre_is_sub_pixel(sim):
    """A tilt of the exit waves shifts the pattern by a fraction of a pixel; the estimate follows the shift
    (to 0.1 px) and stays within 0.5 px of the true centre (the complex probe's pattern is not exactly
    centrosymmetric, which biases any centre-of-symmetry estimate by a few tenths of a pixel)."""
    from napari_cxdi.physics.forward import diffraction_intensity

    n = sim.probe.shape[-1]
    y, x = np.mgrid[0:n, 0:n]

    def centre(dy, dx):
        ramp = np.exp(2j * np.pi * (dy * y + dx * x) / n).astype(np.complex64)
        pattern = diffraction_intensity(torch.as_tensor(sim.probe * ramp), torch.as_tensor(sim.objects)).sum(0).numpy()
        return np.array(estimate_centre(pattern)[:2])

    base = centre(0.0, 0.0)
    for shift in ((0.3, -0.4), (0.5, 0.5)):
        moved = centre(*shift)
        np.testing.assert_allclose(moved - base, shift, atol=0.1)
        assert np.all(np.abs(moved - (n // 2 + np.array(shift))) < 0.5)


def test_a_trained_model_reconstructs_a_detector_file_with_its_own_probe(tmp_path, sim):
    master, _, _ = eiger(tmp_path, sim)
    tiny = dict(epochs=1, batch_size=2, frames=3, width=4, refine_steps=1, seed=0, device="cpu", preview_every=0)
    model = cx.train(master, sim.probe, checkpoint=tmp_path / "m.pt", **tiny)
    assert model.frame_size == 64
    result = cx.reconstruct(master, model=tmp_path / "m.pt", train=False, evaluate_metrics=True)  # no probe given
    assert result.objects.shape == (6, 64, 64) and np.isfinite(result.metrics["rf"])
    assert result.mask is not None and result.mask.sum() > 100
