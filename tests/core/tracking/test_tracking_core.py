"""Tracking core: detection, linking, MSD, velocity, evaluation, export, CLI (no Qt)."""

import argparse

import numpy as np
import pandas as pd
import pytest

from napari_cxdi.errors import ConfigError, DataValidationError, OutputExistsError
from napari_cxdi.tracking import (
    DetectionConfig, TrackingConfig, detect, detect_frame, evaluate_tracking, image_velocity, label_particles,
    link_tracks, msd_analysis, read_provenance, read_tables, track, write_tables,
)

DX = 27.0  # nm per pixel


def disks(shape, centres, radii, depth=-0.8):
    """A phase frame with uniform dark disks (the particles delay the phase)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape, np.float32)
    for (cy, cx), r in zip(centres, radii):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2] = depth
    return img


def test_detection_recovers_planted_disks(rng):
    centres = [(15.3, 20.7), (40.2, 45.6), (20.5, 50.1), (48.0, 14.4)]
    radii = [5.5, 5.5, 7.5, 5.5]
    frame = disks((64, 64), centres, radii) + rng.normal(0, 0.05, (64, 64)).astype(np.float32)
    cfg = DetectionConfig(threshold=0.2, smooth_px=1.0)
    f = detect_frame(frame, cfg, DX)
    assert len(f) == 4
    f = f.sort_values("x")
    for (cy, cx), r in zip(centres, radii):
        i = np.argmin(np.hypot(f.y - cy, f.x - cx))
        row = f.iloc[i]
        assert np.hypot(row.y - cy, row.x - cx) < 0.3  # sub-pixel centroid
        assert row.diameter_nm == pytest.approx(2 * r * DX, rel=0.1)
        assert row.contrast == pytest.approx(0.8, abs=0.25)
    # the sign matters: the same image with 'bright' polarity finds no particles
    assert len(detect_frame(frame, DetectionConfig(threshold=0.2, polarity="bright"), DX)) == 0
    # trackpy band-pass + locate finds the same positions
    t = detect_frame(frame, DetectionConfig(method="trackpy", threshold=0.2, diameter_nm=19 * DX, separation_nm=12 * DX), DX)
    assert len(t) == 4
    for cy, cx in centres:
        assert np.min(np.hypot(t.y - cy, t.x - cx)) < 0.5
    labels = label_particles(frame, cfg, DX)
    assert labels.max() == 4 and labels.dtype == np.int32


def test_size_limits_border_and_mask():
    frame = disks((64, 64), [(30, 30), (10, 10), (32, 62)], [6, 1.6, 6])  # normal, too small, cut by the border
    f = detect_frame(frame, DetectionConfig(min_diameter_nm=150), DX)
    assert len(f) == 1 and abs(f.y.iloc[0] - 30) < 0.1
    mask = np.zeros((64, 64), bool)
    mask[:20, :20] = True
    assert len(detect_frame(frame, DetectionConfig(min_diameter_nm=150), DX, mask=mask)) == 0
    assert len(detect_frame(frame, DetectionConfig(min_diameter_nm=50), DX, mask=mask)) == 1  # the small one


def test_empty_and_flat_movies_are_handled():
    flat = np.zeros((5, 32, 32), np.float32)
    res = track(flat, TrackingConfig(), DX, 0.1)
    assert res.features.empty and res.tracks.empty and res.per_track.empty
    assert np.array_equal(res.statistics["count_per_frame"], np.zeros(5))
    assert np.isnan(res.summary()["diffusion_nm2_s"])
    scores = evaluate_tracking(res.tracks, pd.DataFrame(columns=["frame", "particle", "y", "x", "diameter_nm"]), DX)
    assert scores["true_positives"] == 0
    with pytest.raises(DataValidationError):
        detect(np.zeros((2, 3, 4, 5)), pixel_size_nm=DX)
    with pytest.raises(DataValidationError):
        detect_frame(np.full((8, 8), np.nan), pixel_size_nm=DX)
    with pytest.raises(ConfigError):
        detect_frame(flat[0], DetectionConfig(polarity="up"), DX)


def _planted_movie(n_frames=10, shape=(64, 96)):
    """Three disks moving on known straight paths; the second is missing in frame 4."""
    starts = np.array([[15.0, 10.0], [35.0, 20.0], [50.0, 70.0]])
    vel = np.array([[0.3, 2.0], [-0.5, 1.5], [0.4, -2.2]])
    frames, truth = [], []
    for t in range(n_frames):
        pos = starts + vel * t
        keep = [i for i in range(3) if not (i == 1 and t == 4)]
        frames.append(disks(shape, pos[keep], [5.5] * len(keep)))
        truth += [(t, i, *pos[i], 11 * DX) for i in keep]
    return np.stack(frames), pd.DataFrame(truth, columns=["frame", "particle", "y", "x", "diameter_nm"])


def test_linking_recovers_known_trajectories_with_a_missed_frame():
    movie, truth = _planted_movie()
    res = track(movie, TrackingConfig(max_displacement_nm=4 * DX, memory=1, min_length=3), DX, 0.1)
    assert res.tracks["particle"].nunique() == 3
    scores = evaluate_tracking(res.tracks, truth, DX)
    assert scores["f1"] == 1.0 and scores["identity_switches"] == 0
    lengths = sorted(res.tracks.groupby("particle").size())
    assert lengths == [9, 10, 10]
    # without memory the gap splits the second trajectory
    res0 = track(movie, TrackingConfig(max_displacement_nm=4 * DX, memory=0, min_length=3), DX, 0.1)
    assert res0.tracks["particle"].nunique() == 4
    # min_length filtering
    assert link_tracks(res.features, 4 * DX, DX, memory=1, min_length=11).empty
    assert set(res.tracks.columns) >= {"particle", "speed_nm_s", "lifetime_s", "diameter_nm", "contrast"}
    assert res.per_track["lifetime_s"].max() == pytest.approx(1.0)
    assert res.statistics["lifetime"]["values"].size == 3


def test_msd_of_brownian_motion_with_drift_gives_the_set_values():
    rng = np.random.default_rng(3)
    d_true, v_true, dt = 2000.0, np.array([0.0, 200.0]), 0.1  # nm^2/s, nm/s, s
    rows = []
    for pid in range(150):
        steps = rng.normal(0, np.sqrt(2 * d_true * dt), (40, 2)) + v_true * dt
        pos = np.cumsum(steps, axis=0) + rng.uniform(0, 5000, 2)
        pos += rng.normal(0, 5.0, pos.shape)  # localisation noise, nm
        rows += [(t, pid, y / DX, x / DX) for t, (y, x) in enumerate(pos)]
    tracks = pd.DataFrame(rows, columns=["frame", "particle", "y", "x"])
    m = msd_analysis(tracks, DX, dt)
    assert m["diffusion_nm2_s"] == pytest.approx(d_true, rel=0.1)
    assert abs(m["diffusion_nm2_s"] - d_true) < 4 * m["diffusion_err"]
    assert np.all(np.abs(m["drift_nm_s"] - v_true) < 4 * m["drift_err"] + 5)
    assert m["drift_nm_s"][1] == pytest.approx(200, abs=15)
    assert m["msd_nm2"][0] == pytest.approx(4 * d_true * dt + (v_true ** 2).sum() * dt ** 2 + 4 * 25, rel=0.15)


def test_cross_correlation_recovers_a_subpixel_shift():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    base = ndimage.gaussian_filter(rng.normal(size=(64, 64)), 2)
    shift = np.array([0.3, 0.74])  # px per frame
    movie = np.stack([ndimage.shift(base, shift * t, order=3, mode="wrap") for t in range(5)])
    v = image_velocity(movie[:, 8:-8, 8:-8], DX, 0.1)
    assert np.allclose(v["mean_nm_s"], shift * DX / 0.1, atol=0.05 * DX / 0.1)
    assert v["per_pair_nm_s"].shape == (4, 2)


def test_tracking_the_true_phase_of_a_simulated_movie(small_aunp):
    sim = small_aunp
    res = track(sim.phase, TrackingConfig(), sim.pixel_size_nm, sim.metadata["exposure_s"])
    scores = evaluate_tracking(res.tracks, sim.trajectories, sim.pixel_size_nm, frame_shape=sim.phase.shape[1:])
    assert scores["precision"] > 0.95 and scores["recall"] > 0.6
    assert abs(scores["diameter_bias_nm"]) < 60  # 300 nm spheres
    assert scores["identity_switches"] == 0


def test_export_csv_and_hdf5_with_provenance(tmp_path):
    movie, _ = _planted_movie()
    res = track(movie, TrackingConfig(max_displacement_nm=4 * DX), DX, 0.1)
    tables = {"tracks": res.tracks, "per_track": res.per_track}
    paths = write_tables(tmp_path / "out.csv", tables, config=res.config.to_dict(), metrics=res.summary())
    assert [p.name for p in paths] == ["out_tracks.csv", "out_per_track.csv"]
    back = read_tables(paths[0])["out_tracks"]
    assert np.allclose(back[["y", "x"]].to_numpy(), res.tracks[["y", "x"]].to_numpy())
    assert read_provenance(paths[0])["config"]["max_displacement_nm"] == 4 * DX
    with pytest.raises(OutputExistsError):
        write_tables(tmp_path / "out.csv", tables)
    h5 = write_tables(tmp_path / "out.h5", tables, metrics=res.summary())[0]
    got = read_tables(h5)
    assert set(got) == {"tracks", "per_track"} and len(got["tracks"]) == len(res.tracks)
    assert read_provenance(h5)["metrics"]["n_tracks"] == 3
    write_tables(tmp_path / "out.h5", {"tracks": res.tracks.iloc[:2]}, overwrite=True)
    assert len(read_tables(h5)["tracks"]) == 2
    with pytest.raises(ConfigError):
        write_tables(tmp_path / "out.txt", tables)
    assert not list(tmp_path.glob(".*.tmp"))


def _parser():
    from napari_cxdi.cli import simulate, track as track_cli

    p = argparse.ArgumentParser()
    sp = p.add_subparsers(dest="command")
    simulate.register(sp)
    track_cli.register(sp)
    return p


def test_cli_on_a_simulated_file_and_a_npy_movie(tmp_path, capsys):
    p = _parser()
    sim = tmp_path / "sim.cxi"
    a = p.parse_args(["simulate", "aunp", "-o", str(sim), "--frames", "6", "--size", "64", "--no-noise"])
    assert a.func(a) == 0
    a = p.parse_args(["track", str(sim), "-o", str(tmp_path / "t.h5"), "--velocity", "--json", str(tmp_path / "s.json")])
    assert a.func(a) == 0
    out = capsys.readouterr().out
    assert "n_tracks" in out and "precision" in out and "image_velocity_vx_nm_s" in out and "drift_error_nm_s" in out
    assert set(read_tables(tmp_path / "t.h5")) == {"features", "tracks", "per_track"}
    with pytest.raises(OutputExistsError):
        a.func(a)
    movie, _ = _planted_movie()
    np.save(tmp_path / "m.npy", movie)
    a = p.parse_args(["track", str(tmp_path / "m.npy")])
    with pytest.raises(ConfigError, match="pixel-size"):
        a.func(a)
    a = p.parse_args(["track", str(tmp_path / "m.npy"), "--pixel-size", "27", "--frame-interval", "0.1",
                      "--max-displacement", "108", "-o", str(tmp_path / "m.csv")])
    assert a.func(a) == 0
    assert (tmp_path / "m_tracks.csv").exists() and "n_tracks                   3" in capsys.readouterr().out


def test_cli_on_a_reconstruction_file(tmp_path, capsys):
    from napari_cxdi.io import write_cxi

    movie, _ = _planted_movie()
    objects = np.exp(1j * (movie + 0.7)).astype(np.complex64)  # a global phase offset does not matter
    path = write_cxi(tmp_path / "recon.cxi", reconstruction=objects, metadata={"pixel_size_nm": DX, "exposure_s": 0.1})
    a = _parser().parse_args(["track", str(path), "--max-displacement", "108", "--method", "adaptive"])
    assert a.func(a) == 0
    out = capsys.readouterr().out
    assert "n_tracks                   3" in out and "precision" not in out  # no ground truth in a reconstruction
    bad = tmp_path / "bad.txt"
    bad.write_text("x")
    from napari_cxdi.errors import InputFileError

    with pytest.raises(InputFileError):
        a = _parser().parse_args(["track", str(bad), "--pixel-size", "27", "--frame-interval", "0.1"])
        a.func(a)
