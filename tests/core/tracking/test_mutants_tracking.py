"""Value tests that pin the numbers of napari_cxdi.tracking (written to kill mutmut survivors, issue 20).

Expected numbers are hand-computed from tiny tables, not read back from the code under test.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pandas as pd
import pytest

from napari_cxdi.errors import ConfigError, DataValidationError
from napari_cxdi.tracking import evaluate, export, link, statistics

# the package exports a function named detect: take the module itself
detect = importlib.import_module("napari_cxdi.tracking.detect")


def _tracks(rows):
    return pd.DataFrame(rows, columns=["particle", "frame", "y", "x"])


# ------------------------------------------------------------------------------------------------- link


def test_link_tracks_errors():
    f = pd.DataFrame({"frame": [0], "y": [1.0], "x": [1.0]})
    for kw in ({"max_displacement_nm": 0}, {"max_displacement_nm": 1, "pixel_size_nm": 0}):
        with pytest.raises(ConfigError, match=r"^maximum displacement and pixel size must be positive$"):
            link.link_tracks(f, **{"max_displacement_nm": 1, **kw})
    for kw in ({"memory": -1}, {"min_length": 0}):
        with pytest.raises(ConfigError, match=r"^memory must be >= 0 and the minimum track length >= 1$"):
            link.link_tracks(f, 1.0, **kw)
    link.link_tracks(f, 1.0, memory=0, min_length=1)
    with pytest.raises(DataValidationError, match=r"^the feature table lacks the columns \['x', 'y'\]$"):
        link.link_tracks(pd.DataFrame({"frame": [0]}), 1.0)
    empty = link.link_tracks(pd.DataFrame({"frame": [], "y": [], "x": []}), 1.0)
    assert empty.empty and "particle" in empty.columns


def test_link_tracks_values():
    # two particles moving 1 px per frame, far apart; 1 px = 10 nm
    rows = [(t, 5.0 + t, 5.0) for t in range(4)] + [(t, 50.0, 50.0 - t) for t in range(4)] + [(0, 90.0, 90.0)]
    f = pd.DataFrame(rows, columns=["frame", "y", "x"])
    out = link.link_tracks(f, max_displacement_nm=15.0, pixel_size_nm=10.0, min_length=2)
    assert sorted(out["particle"].unique().tolist()) == [0, 1]
    assert len(out) == 8
    a = out[out["x"] == 5.0]
    assert a["particle"].nunique() == 1
    # the search range is in pixels: 15 nm / 10 nm/px = 1.5 px -> a 1 px step links; at 5 nm / px it is 3 px
    out = link.link_tracks(f, max_displacement_nm=9.0, pixel_size_nm=10.0)  # 0.9 px: nothing links
    assert out["particle"].nunique() == 9
    out = link.link_tracks(f, max_displacement_nm=9.0, pixel_size_nm=5.0, min_length=4)  # 1.8 px
    assert out["particle"].nunique() == 2
    # memory: a particle missed for one frame keeps its id with memory=1 (the default), not with 0
    g = f[~((f["frame"] == 2) & (f["x"] == 5.0))]
    assert link.link_tracks(g, 25.0, 10.0)[lambda d: d["x"] == 5.0]["particle"].nunique() == 1
    assert link.link_tracks(g, 25.0, 10.0, memory=0)[lambda d: d["x"] == 5.0]["particle"].nunique() == 2


def test_filter_tracks_renumbers_in_order_of_appearance():
    t = _tracks([(7, 2, 0.0, 0.0), (7, 3, 0.0, 1.0), (3, 1, 5.0, 5.0), (3, 2, 5.0, 6.0), (3, 3, 5.0, 7.0),
                 (9, 0, 9.0, 9.0)])
    out = link.filter_tracks(t, min_length=2)
    assert out["particle"].tolist() == [0, 0, 1, 0, 1]  # sorted by frame then particle
    assert out["frame"].tolist() == [1, 2, 2, 3, 3]
    assert out.index.tolist() == list(range(5))
    out = link.filter_tracks(t)  # default min_length 1 keeps all: 9 appears first (frame 0)
    assert out.groupby("particle")["frame"].min().tolist() == [0, 1, 2]
    assert out[out["frame"] == 0]["particle"].tolist() == [0]
    assert link.filter_tracks(t, 3)["particle"].unique().tolist() == [0]
    assert link.filter_tracks(t.iloc[:0]).empty


def test_track_table_and_point_speeds_values():
    t = _tracks([(0, 0, 0.0, 0.0), (0, 1, 3.0, 4.0), (0, 3, 3.0, 14.0), (1, 5, 1.0, 1.0), (1, 6, 1.0, 2.0)])
    t["diameter_nm"] = [10.0, 20.0, 60.0, 5.0, 7.0]
    t["contrast"] = [1.0, 2.0, 3.0, 4.0, 6.0]
    tab = link.track_table(t, frame_interval_s=0.5, pixel_size_nm=2.0)
    assert tab.columns.tolist() == ["particle", "first_frame", "last_frame", "n_detections", "lifetime_s",
                                    "speed_nm_s", "diameter_nm", "contrast"]
    r0, r1 = tab.iloc[0], tab.iloc[1]
    assert (r0["first_frame"], r0["last_frame"], r0["n_detections"]) == (0, 3, 3)
    assert r0["lifetime_s"] == pytest.approx(4 * 0.5)
    # steps: 5 px in 1 frame -> 10 nm / 0.5 s = 20 nm/s; 10 px in 2 frames -> 20 nm / 1 s = 20 nm/s
    assert r0["speed_nm_s"] == pytest.approx(20.0)
    assert r1["speed_nm_s"] == pytest.approx(2.0 / 0.5)
    assert r0["diameter_nm"] == 20.0 and r1["diameter_nm"] == 6.0 and r0["contrast"] == 2.0 and r1["contrast"] == 5.0
    assert r1["lifetime_s"] == pytest.approx(1.0)
    bare = link.track_table(t[["particle", "frame", "y", "x"]])
    assert bare["diameter_nm"].isna().all() and bare["contrast"].isna().all()
    assert bare["speed_nm_s"].tolist() == pytest.approx([5.0, 1.0])  # defaults: 1 s, 1 nm
    assert link.track_table(t.iloc[:0]).columns.tolist()[0] == "particle" and link.track_table(t.iloc[:0]).empty
    sp = link.point_speeds(t, frame_interval_s=0.5, pixel_size_nm=2.0)
    assert sp.tolist() == pytest.approx([20.0, 20.0, 20.0, 4.0, 4.0])  # the first row takes the next step
    assert link.point_speeds(t).tolist() == pytest.approx([5.0, 5.0, 5.0, 1.0, 1.0])
    single = _tracks([(0, 0, 1.0, 1.0)])
    assert link.point_speeds(single).tolist() == [0.0]
    assert link.point_speeds(t.iloc[:0]).shape == (0,)


# ------------------------------------------------------------------------------------------- statistics


def test_diameter_distribution_values():
    t = pd.DataFrame({"particle": [0, 0, 0, 1, 1, 2], "diameter_nm": [10.0, 12.0, 50.0, 14.0, 14.0, 40.0]})
    # per-track medians 12, 14, 40; median 14 -> 1.6 x 14 = 22.4 excludes 40
    d = statistics.diameter_distribution(t, bins=2)
    assert d["values"].tolist() == [12.0, 14.0]
    assert d["mean_nm"] == pytest.approx(13.0) and d["std_nm"] == pytest.approx(1.0)
    assert d["counts"].tolist() == [1, 1] and d["edges"].tolist() == pytest.approx([12.0, 13.0, 14.0])
    assert statistics.diameter_distribution(t, max_ratio=3.0)["values"].tolist() == [12.0, 14.0, 40.0]
    assert statistics.diameter_distribution(t)["counts"].sum() == 2  # default 20 bins
    assert len(statistics.diameter_distribution(t)["edges"]) == 21
    flat = statistics.diameter_distribution(pd.DataFrame({"diameter_nm": [10.0, 20.0, 100.0]}))
    assert flat["values"].tolist() == [10.0, 20.0]  # no particle column: every row; 100 > 1.6 x 20
    for empty in (t.iloc[:0], pd.DataFrame({"particle": [1]})):
        e = statistics.diameter_distribution(empty)
        assert len(e["values"]) == 0 and math.isnan(e["mean_nm"]) and math.isnan(e["std_nm"])


def test_lifetime_distribution_and_counts():
    t = pd.DataFrame({"particle": [0, 0, 1, 1, 1], "frame": [2, 5, 0, 1, 2]})
    lt = statistics.lifetime_distribution(t, frame_interval_s=0.5, bins=2)
    assert sorted(lt["values"].tolist()) == [1.5, 2.0]
    assert lt["mean_s"] == pytest.approx(1.75) and lt["median_s"] == pytest.approx(1.75)
    assert statistics.lifetime_distribution(t)["values"].tolist() == [4.0, 3.0]
    e = statistics.lifetime_distribution(t.iloc[:0])
    assert len(e["values"]) == 0 and math.isnan(e["mean_s"]) and math.isnan(e["median_s"])
    f = pd.DataFrame({"frame": [0, 0, 2, 2, 2]})
    assert statistics.count_per_frame(f).tolist() == [2, 0, 3]
    assert statistics.count_per_frame(f, 5).tolist() == [2, 0, 3, 0, 0]
    assert statistics.count_per_frame(f, 2).tolist() == [2, 0]
    assert statistics.count_per_frame(f.iloc[:0], 3).tolist() == [0, 0, 0]
    assert statistics.count_per_frame(f.iloc[:0]).tolist() == []


def test_msd_pure_drift_hand_values():
    # every particle moves (dy, dx) = (1, 2) px per frame; 10 nm/px, 0.5 s/frame -> v = (20, 40) nm/s, no diffusion
    rows = [(p, t, 3.0 * p + t, 2.0 * t) for p in range(3) for t in range(6)]
    m = statistics.msd_analysis(_tracks(rows), pixel_size_nm=10.0, frame_interval_s=0.5, max_lag=3, fit_lags=2, n_boot=20)
    assert m["lag_s"].tolist() == pytest.approx([0.5, 1.0, 1.5])
    assert m["msd_nm2"].tolist() == pytest.approx([500.0, 2000.0, 4500.0])  # (10^2 + 20^2) lag^2
    assert m["var_nm2"] == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)
    assert m["n_pairs"].tolist() == [15, 12, 9]
    assert m["drift_nm_s"].tolist() == pytest.approx([20.0, 40.0])
    assert m["speed_nm_s"] == pytest.approx(math.hypot(20.0, 40.0))
    assert m["diffusion_nm2_s"] == pytest.approx(0.0, abs=1e-9)
    assert m["drift_err"].tolist() == pytest.approx([0.0, 0.0], abs=1e-9)
    assert m["n_tracks"] == 3


def test_msd_diffusion_hand_values():
    # one track alternating +/-1 px in y: lag-1 displacements +-1 (var 1 px^2), lag-2 displacements 0
    ys = [0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    rows = [(0, t, y, 0.0) for t, y in enumerate(ys)]
    m = statistics.msd_analysis(_tracks(rows), pixel_size_nm=2.0, frame_interval_s=1.0, max_lag=2, fit_lags=1)
    # lag 1: 6 pairs, mean dy = 0 (3 up, 3 down), var = 4 nm^2 -> one lag: D = var / (4 tau) = 1
    assert m["n_pairs"].tolist() == [6, 5]
    assert m["msd_nm2"].tolist() == pytest.approx([4.0, 0.0])
    assert m["diffusion_nm2_s"] == pytest.approx(1.0)
    assert m["drift_nm_s"].tolist() == pytest.approx([0.0, 0.0])
    assert math.isnan(m["diffusion_err"])  # one track: no bootstrap
    # two fitted lags: var(tau) = 4, 0 -> slope -4 per s -> D = -1
    m2 = statistics.msd_analysis(_tracks(rows), pixel_size_nm=2.0, frame_interval_s=1.0, max_lag=2, fit_lags=2)
    assert m2["diffusion_nm2_s"] == pytest.approx(-1.0)
    # a frame gap is skipped, not bridged: frames 0, 1, 3 -> lag 1 has one pair, lag 2 one pair
    gap = _tracks([(0, 0, 0.0, 0.0), (0, 1, 1.0, 0.0), (0, 3, 3.0, 0.0), (1, 0, 0.0, 0.0), (1, 1, 1.0, 0.0)])
    mg = statistics.msd_analysis(gap, 1.0, 1.0, max_lag=3, fit_lags=1)
    assert mg["n_pairs"].tolist() == [2, 1, 1]


def test_msd_errors_and_degenerate_inputs():
    t = _tracks([(0, 0, 0.0, 0.0), (0, 1, 1.0, 0.0)])
    for kw in ({"pixel_size_nm": 0.0, "frame_interval_s": 1.0}, {"pixel_size_nm": 1.0, "frame_interval_s": 0.0}):
        with pytest.raises(ConfigError, match=r"^pixel size and frame interval must be positive$"):
            statistics.msd_analysis(t, **kw)
    for kw in ({"max_lag": 0}, {"fit_lags": 0}):
        with pytest.raises(ConfigError, match=r"^max_lag and fit_lags must be >= 1$"):
            statistics.msd_analysis(t, 1.0, 1.0, **kw)
    with pytest.raises(DataValidationError, match=r"^tracks need a 'particle' column \(link them first\)$"):
        statistics.msd_analysis(t.drop(columns="particle"), 1.0, 1.0)
    e = statistics.msd_analysis(t.iloc[:0], 1.0, 1.0)
    assert e["n_tracks"] == 0 and math.isnan(e["diffusion_nm2_s"]) and len(e["lag_s"]) == 0
    one = statistics.msd_analysis(t, 1.0, 1.0)  # a single pair: too few for any estimate
    assert one["n_tracks"] == 1 and math.isnan(one["diffusion_nm2_s"]) and np.isnan(one["drift_nm_s"]).all()


def test_msd_bootstrap_is_seeded():
    rng = np.random.default_rng(0)
    rows = []
    for p in range(8):
        pos = np.cumsum(rng.normal(size=(12, 2)), axis=0)
        rows += [(p, t, y, x) for t, (y, x) in enumerate(pos)]
    t = _tracks(rows)
    a = statistics.msd_analysis(t, 1.0, 1.0, n_boot=30, seed=1)
    b = statistics.msd_analysis(t, 1.0, 1.0, n_boot=30, seed=1)
    c = statistics.msd_analysis(t, 1.0, 1.0, n_boot=30, seed=2)
    assert a["diffusion_err"] == b["diffusion_err"] != c["diffusion_err"]
    assert 0 < a["diffusion_err"] < a["diffusion_nm2_s"]
    assert a["drift_err"].shape == (2,) and np.all(a["drift_err"] > 0)
    assert len(a["lag_s"]) == 10  # default max_lag
    assert a["diffusion_nm2_s"] == pytest.approx(0.5, rel=0.5)  # unit steps per axis: D = 1/2 px^2 per frame


def test_image_velocity_mask_errors():
    movie = np.zeros((2, 8, 8))
    with pytest.raises(DataValidationError, match=r"^the velocity mask must match the frames and select some pixels$"):
        statistics.image_velocity(movie, 1.0, 1.0, mask=np.zeros((8, 8), bool))
    with pytest.raises(DataValidationError, match="velocity mask"):
        statistics.image_velocity(movie, 1.0, 1.0, mask=np.ones((4, 4), bool))


def test_image_velocity_of_a_shifted_blob():
    yy, xx = np.mgrid[0:32, 0:32]
    frames = np.stack([np.exp(-((yy - 16) ** 2 + (xx - 12 - 2 * t) ** 2) / 8.0) for t in range(3)])
    out = statistics.image_velocity(frames, pixel_size_nm=10.0, frame_interval_s=0.5)
    assert out["median_nm_s"][1] == pytest.approx(40.0, abs=2.0)
    assert out["median_nm_s"][0] == pytest.approx(0.0, abs=2.0)
    assert out["per_pair_speed_nm_s"] == pytest.approx(np.hypot(out["per_pair_nm_s"][:, 0], out["per_pair_nm_s"][:, 1]))
    mask = np.zeros((32, 32), bool)
    mask[4:28, 2:30] = True
    masked = statistics.image_velocity(frames, 10.0, 0.5, mask=mask)
    assert masked["median_nm_s"][1] == pytest.approx(40.0, abs=2.0)


# --------------------------------------------------------------------------------------------- evaluate


def test_evaluate_tracking_hand_values():
    truth = pd.DataFrame({"frame": [0, 0, 1, 1], "particle": [0, 1, 0, 1], "y": [10.0, 30.0, 11.0, 30.0],
                          "x": [10.0, 30.0, 10.0, 31.0], "diameter_nm": [100.0, 100.0, 100.0, 100.0]})
    det = pd.DataFrame({"frame": [0, 0, 1, 1, 1], "particle": [5, 6, 6, 5, 7], "y": [10.0, 30.5, 11.0, 30.0, 60.0],
                        "x": [10.0, 30.0, 10.0, 31.0, 60.0], "diameter_nm": [110.0, 90.0, 120.0, 100.0, 50.0]})
    out = evaluate.evaluate_tracking(det, truth, pixel_size_nm=10.0)
    assert out["match_radius_nm"] == 50.0  # half the mean true diameter
    assert (out["n_true"], out["n_detected"], out["true_positives"]) == (4, 5, 4)
    assert out["precision"] == pytest.approx(0.8) and out["recall"] == 1.0
    assert out["f1"] == pytest.approx(2 * 4 / 9)
    assert out["localisation_error_nm"] == pytest.approx(5.0 / 4)  # one 0.5 px = 5 nm miss
    assert out["diameter_bias_nm"] == pytest.approx((10 - 10 + 20 + 0) / 4)
    assert out["diameter_abs_error_nm"] == pytest.approx((10 + 10 + 20 + 0) / 4)
    assert out["identity_switches"] == 2  # truth 0: 5 -> 6, truth 1: 6 -> 5
    assert out["n_tracks"] == 3 and out["mean_track_length"] == pytest.approx(5 / 3)
    assert out["true_mean_track_length"] == 2.0
    # a smaller radius drops the 5 nm miss
    out = evaluate.evaluate_tracking(det, truth, pixel_size_nm=10.0, radius_nm=4.0)
    assert out["true_positives"] == 3 and out["match_radius_nm"] == 4.0
    assert evaluate.evaluate_tracking(det, truth, pixel_size_nm=10.0, radius_nm=5.0)["true_positives"] == 4
    # roi and frame shape restrict both tables
    roi = np.zeros((50, 50), bool)
    roi[:20, :20] = True
    out = evaluate.evaluate_tracking(det, truth, 10.0, roi=roi, frame_shape=(50, 50))
    assert (out["n_true"], out["n_detected"], out["true_positives"]) == (2, 2, 2)
    out = evaluate.evaluate_tracking(det, truth, 10.0, frame_shape=(50, 50))
    assert out["n_detected"] == 4 and out["precision"] == 1.0
    out = evaluate.evaluate_tracking(det, truth, 10.0, frame_shape=(61, 61))
    assert out["n_detected"] == 5
    # without particle ids and diameters
    out = evaluate.evaluate_tracking(det[["frame", "y", "x"]], truth, 10.0)
    assert out["identity_switches"] == 0 and "n_tracks" not in out and math.isnan(out["diameter_bias_nm"])
    with pytest.raises(ConfigError, match=r"^pixel size must be positive$"):
        evaluate.evaluate_tracking(det, truth, 0.0)


def test_evaluate_tracking_empty_and_msd_errors():
    truth = pd.DataFrame({"frame": [0], "particle": [0], "y": [1.0], "x": [1.0], "diameter_nm": [80.0]})
    empty = truth.iloc[:0]
    out = evaluate.evaluate_tracking(empty, truth, 1.0)
    assert out["true_positives"] == 0 and math.isnan(out["precision"]) and out["recall"] == 0.0 and out["f1"] == 0.0
    assert math.isnan(out["localisation_error_nm"])
    out = evaluate.evaluate_tracking(truth, empty, 1.0)
    assert out["match_radius_nm"] == 150.0 and math.isnan(out["recall"]) and out["precision"] == 0.0
    out = evaluate.evaluate_tracking(empty, empty, 1.0)
    assert math.isnan(out["f1"])
    msd = {"drift_nm_s": [3.0, 4.0], "diffusion_nm2_s": 15.0}
    out = evaluate.evaluate_tracking(truth, truth, 1.0, msd=msd, true_drift_nm_s=(0.0, 0.0), true_diffusion_nm2_s=10.0)
    assert out["drift_error_nm_s"] == pytest.approx(5.0)
    assert out["diffusion_relative_error"] == pytest.approx(0.5)
    out = evaluate.evaluate_tracking(truth, truth, 1.0, msd=msd)
    assert "drift_error_nm_s" not in out and "diffusion_relative_error" not in out


def test_match_frames_is_one_to_one_and_optimal():
    truth = pd.DataFrame({"frame": [0, 0], "y": [0.0, 0.0], "x": [0.0, 2.0]})
    det = pd.DataFrame({"frame": [0, 0, 1], "y": [0.0, 0.0, 0.0], "x": [1.0, 3.0, 0.0]})
    m = evaluate.match_frames(det, truth, radius_nm=1.5, pixel_size_nm=1.0)
    # greedy would pair truth 0 / det 0 (1 px) and truth 1 / det 0 too; optimal one-to-one: (0,0) and (1,1)
    assert sorted(zip(m["truth_index"], m["detected_index"])) == [(0, 0), (1, 1)]
    assert m["distance_nm"].tolist() == pytest.approx([1.0, 1.0])
    m = evaluate.match_frames(det, truth, radius_nm=2.0, pixel_size_nm=2.0)  # 2 nm per px: only 1 px pairs fit
    assert m["distance_nm"].tolist() == pytest.approx([2.0, 2.0])
    assert evaluate.match_frames(det, truth, radius_nm=1.9, pixel_size_nm=2.0).empty


# ------------------------------------------------------------------------------------------------ detect


def test_detection_config_errors():
    detect.DetectionConfig().validate()
    with pytest.raises(ConfigError, match=r"^detection method must be 'adaptive' or 'trackpy', got 'x'$"):
        detect.DetectionConfig(method="x").validate()
    with pytest.raises(ConfigError, match=r"^polarity must be 'dark' or 'bright', got 'grey'$"):
        detect.DetectionConfig(polarity="grey").validate()
    with pytest.raises(ConfigError, match=r"^need 0 <= min diameter < max diameter, got 500.0, 500.0$"):
        detect.DetectionConfig(min_diameter_nm=500.0, max_diameter_nm=500.0).validate()
    with pytest.raises(ConfigError, match=r"^detection config: threshold must be in \[0, inf\), got -0.1$"):
        detect.DetectionConfig(threshold=-0.1).validate()
    with pytest.raises(ConfigError, match=r"^detection config: block_nm must be in \(0, inf\), got 0$"):
        detect.DetectionConfig(block_nm=0).validate()
    detect.DetectionConfig(threshold=0.0, smooth_px=0.0, min_contrast=0.0).validate()
    cfg = detect.DetectionConfig(threshold=0.3)
    assert detect.DetectionConfig.from_dict({**cfg.to_dict(), "unknown": 1}) == cfg
    assert cfg.with_(polarity="bright").polarity == "bright"
    assert cfg.to_dict()["threshold"] == 0.3


def test_frame_and_movie_checks():
    with pytest.raises(DataValidationError, match=r"^need a 2D frame \[H, W\], got shape \(2, 2, 2\)$"):
        detect.detect_frame(np.zeros((2, 2, 2)))
    bad = np.zeros((8, 8))
    bad[1, 1] = np.nan
    with pytest.raises(DataValidationError, match=r"^the frame contains NaN or infinite values$"):
        detect.detect_frame(bad)
    with pytest.raises(ConfigError, match=r"^pixel size must be positive$"):
        detect.detect_frame(np.zeros((8, 8)), pixel_size_nm=0.0)
    with pytest.raises(DataValidationError, match=r"^need a movie \[T, H, W\] or a frame \[H, W\], got shape \(4,\)$"):
        detect.as_movie(np.zeros(4))
    m = detect.as_movie(np.zeros((3, 4)))
    assert m.shape == (1, 3, 4) and m.dtype == np.float32
    c = detect.as_movie(np.full((1, 2, 2), 1j))
    assert np.allclose(c, np.pi / 2)
    assert [detect._odd(x) for x in (0, 2.4, 3, 4, 4.6, 7)] == [3, 3, 3, 5, 5, 7]
    with pytest.raises(DataValidationError, match=r"^mask shape \(4, 4\) does not match the frames \(8, 8\)$"):
        detect.detect(np.zeros((1, 8, 8)), mask=np.ones((4, 4), bool))


def _disc_movie(polarity=-1.0, n=64):
    yy, xx = np.mgrid[0:n, 0:n]
    frame = np.zeros((n, n))
    for cy, cx in ((20, 20), (40, 44)):
        frame[(yy - cy) ** 2 + (xx - cx) ** 2 <= 5 ** 2] = polarity * 1.0
    return frame


def test_adaptive_detection_values():
    frame = _disc_movie()
    cfg = detect.DetectionConfig(block_nm=400.0, min_diameter_nm=20.0, max_diameter_nm=300.0, smooth_px=0.0)
    f = detect.detect_frame(frame, cfg, pixel_size_nm=10.0, frame_index=4)
    assert f.columns.tolist() == detect.FEATURE_COLUMNS
    assert len(f) == 2 and f["frame"].tolist() == [4, 4]
    f = f.sort_values("y").reset_index(drop=True)
    assert f["y"].tolist() == pytest.approx([20.0, 40.0], abs=0.05) and f["x"].tolist() == pytest.approx([20.0, 44.0], abs=0.05)
    assert f["y_nm"].tolist() == pytest.approx((f["y"] * 10).tolist())
    area = float(np.sum(_disc_movie() < 0) / 2)
    assert f["area_px"].tolist() == [area, area]
    assert f["diameter_nm"].tolist() == pytest.approx([2 * math.sqrt(area / math.pi) * 10] * 2)
    assert (f["contrast"] > 0.5).all() and (f["mass"] > 0).all()
    # bright particles are missed with the dark polarity and found with the bright one
    assert len(detect.detect_frame(-frame, cfg, 10.0)) == 0
    assert len(detect.detect_frame(-frame, cfg.with_(polarity="bright"), 10.0)) == 2
    # size limits in nm: the ~100 nm discs are dropped when the minimum is above them
    assert len(detect.detect_frame(frame, cfg.with_(min_diameter_nm=150.0), 10.0)) == 0
    assert len(detect.detect_frame(frame, cfg.with_(max_diameter_nm=90.0), 10.0)) == 0
    # a high contrast requirement or threshold rejects them
    assert len(detect.detect_frame(frame, cfg.with_(min_contrast=2.0), 10.0)) == 0
    assert len(detect.detect_frame(frame, cfg.with_(threshold=1.5), 10.0)) == 0
    # a mask limits the search to one disc
    mask = np.zeros_like(frame, bool)
    mask[5:35, 5:35] = True
    fm = detect.detect_frame(frame, cfg, 10.0, mask=mask)
    assert fm["y"].tolist() == pytest.approx([20.0], abs=0.05)
    labels = detect.label_particles(frame, cfg, 10.0)
    assert labels.dtype == np.int32 and len(np.unique(labels)) == 3 and (labels > 0).sum() == 2 * area
    # a particle touching the border is excluded unless exclude_border=False
    edge = np.roll(frame, -17, axis=0)  # disc at y = 3 -> touches the top row
    assert len(detect.detect_frame(edge, cfg, 10.0)) == 1
    assert len(detect.detect_frame(edge, cfg.with_(exclude_border=False), 10.0)) == 2
    # iter_detect yields progress per frame and concatenates
    gen = detect.iter_detect(np.stack([frame, frame]), cfg, 10.0)
    events = []
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        table = stop.value
    assert [e["done"] for e in events] == [1, 2] and events[0]["total"] == 2 and events[0]["count"] == 2
    assert events[0]["stage"] == "detect" and table["frame"].tolist() == [0, 0, 1, 1]


def test_trackpy_detection_values():
    frame = _disc_movie()
    cfg = detect.DetectionConfig(method="trackpy", diameter_nm=130.0, min_diameter_nm=20.0, max_diameter_nm=300.0)
    f = detect.detect_frame(frame, cfg, pixel_size_nm=10.0, frame_index=2)
    f = f.sort_values("y").reset_index(drop=True)
    assert len(f) == 2 and f["frame"].tolist() == [2, 2]
    assert f["y"].tolist() == pytest.approx([20.0, 40.0], abs=0.3) and f["x"].tolist() == pytest.approx([20.0, 44.0], abs=0.3)
    assert f["area_px"].tolist() == pytest.approx((np.pi * (f["diameter_nm"] / 10 / 2) ** 2).tolist())
    assert len(detect.detect_frame(frame, cfg.with_(max_diameter_nm=30.0), 10.0)) == 0
    mask = np.zeros_like(frame, bool)
    mask[5:35, 5:35] = True
    assert len(detect.detect_frame(frame, cfg, 10.0, mask=mask)) == 1


# ------------------------------------------------------------------------------------------------ export


def test_table_paths_and_errors(tmp_path):
    assert export.table_paths(tmp_path / "a.h5", ["x", "y"]) == {"x": tmp_path / "a.h5", "y": tmp_path / "a.h5"}
    assert export.table_paths(tmp_path / "a.HDF5", ["x"]) == {"x": tmp_path / "a.HDF5"}
    assert export.table_paths(tmp_path / "a.csv", ["x"]) == {"x": tmp_path / "a.csv"}
    assert export.table_paths(tmp_path / "a.CSV", ["x", "y"]) == {"x": tmp_path / "a_x.csv", "y": tmp_path / "a_y.csv"}
    with pytest.raises(ConfigError, match=r"a\.txt: choose a \.csv, \.h5 or \.hdf5 output$"):
        export.table_paths(tmp_path / "a.txt", ["x"])
    with pytest.raises(ConfigError, match=r"^no tables to write$"):
        export.write_tables(tmp_path / "a.csv", {})


def test_write_and_read_tables_round_trip(tmp_path):
    t1 = pd.DataFrame({"particle": [0, 1], "speed_nm_s": [1.5, 2.5]})
    t2 = pd.DataFrame({"frame": [0, 1, 2], "count": [3, 4, 5]})
    paths = export.write_tables(tmp_path / "out.csv", {"tracks": t1, "counts": t2}, config={"a": 1}, metrics={"m": 2})
    assert paths == [tmp_path / "out_tracks.csv", tmp_path / "out_counts.csv"]
    first = paths[0].read_text().splitlines()
    assert first[0] == "# napari-cxdi table: tracks" and first[1].startswith("# provenance: {")
    back = export.read_tables(paths[0])
    assert list(back) == ["out_tracks"] and back["out_tracks"].equals(t1)
    prov = export.read_provenance(paths[1])
    assert prov["tables"] == ["tracks", "counts"]
    h5 = export.write_tables(tmp_path / "out.h5", {"tracks": t1, "counts": t2})
    assert h5 == [tmp_path / "out.h5"]
    back = export.read_tables(h5[0])
    assert set(back) == {"tracks", "counts"} and back["counts"]["count"].tolist() == [3, 4, 5]
    assert back["tracks"].columns.tolist() == ["particle", "speed_nm_s"]
    assert export.read_provenance(h5[0])["tables"] == ["tracks", "counts"]
    with pytest.raises(Exception, match="exists"):
        export.write_tables(tmp_path / "out.h5", {"tracks": t1})
    export.write_tables(tmp_path / "out.h5", {"tracks": t1}, overwrite=True)
    assert list(export.read_tables(tmp_path / "out.h5")) == ["tracks"]
    plain = tmp_path / "plain.csv"
    plain.write_text("a\n1\n")
    assert export.read_provenance(plain) == {}


# ---------------------------------------------------------------------------------------------- pipeline


def test_tracking_config_errors_and_round_trip():
    from napari_cxdi.tracking.pipeline import TrackingConfig

    TrackingConfig(memory=0, min_length=1).validate()
    with pytest.raises(ConfigError, match=r"^tracking config: max_displacement_nm must be in \(0, inf\), got 0$"):
        TrackingConfig(max_displacement_nm=0).validate()
    with pytest.raises(ConfigError, match=r"^tracking config: min_length must be in \[1, inf\), got 0$"):
        TrackingConfig(min_length=0).validate()
    with pytest.raises(ConfigError, match="polarity"):
        TrackingConfig(detection=detect.DetectionConfig(polarity="x")).validate()
    cfg = TrackingConfig(detection=detect.DetectionConfig(threshold=0.2), memory=2)
    back = TrackingConfig.from_dict({**cfg.to_dict(), "extra": 1})
    assert back == cfg and isinstance(back.detection, detect.DetectionConfig)
    assert cfg.with_(fit_lags=2).fit_lags == 2 and cfg.to_dict()["detection"]["threshold"] == 0.2


def test_track_pipeline_summary_by_hand():
    from napari_cxdi.tracking.pipeline import TrackingConfig, iter_track, track

    frames = np.stack([np.roll(_disc_movie(), t, axis=1) for t in range(6)])  # 1 px per frame to the right
    det = detect.DetectionConfig(block_nm=400.0, min_diameter_nm=20.0, max_diameter_nm=300.0, smooth_px=0.0)
    cfg = TrackingConfig(detection=det, max_displacement_nm=25.0, min_length=3, max_lag=3, fit_lags=2)
    events = []
    res = track(frames, cfg, pixel_size_nm=10.0, frame_interval_s=0.5, progress=events.append)
    assert [e["stage"] for e in events] == ["detect"] * 6 + ["link", "statistics"]
    assert events[6]["count"] == 12 and events[7]["n_tracks"] == 2
    s = res.summary()
    assert (s["n_frames"], s["n_detections"], s["n_tracks"]) == (6, 12, 2)
    assert s["mean_count_per_frame"] == 2.0 and s["mean_track_length"] == 6.0
    assert s["mean_lifetime_s"] == pytest.approx(3.0)
    assert s["drift_vx_nm_s"] == pytest.approx(20.0, abs=0.5) and s["drift_vy_nm_s"] == pytest.approx(0.0, abs=0.5)
    assert s["drift_vx_err_nm_s"] == pytest.approx(0.0, abs=0.5) and s["drift_vy_err_nm_s"] == pytest.approx(0.0, abs=0.5)
    assert s["diffusion_nm2_s"] == pytest.approx(0.0, abs=5.0) and s["diffusion_err_nm2_s"] >= 0
    area = float(np.sum(_disc_movie() < 0) / 2)
    assert s["diameter_mean_nm"] == pytest.approx(2 * math.sqrt(area / math.pi) * 10, rel=1e-6)
    assert s["diameter_std_nm"] == pytest.approx(0.0, abs=1e-6)
    assert res.tracks["speed_nm_s"].to_numpy() == pytest.approx(20.0, abs=0.5)
    assert res.tracks["lifetime_s"].tolist() == [3.0] * 12
    assert res.statistics["count_per_frame"].tolist() == [2] * 6
    assert (res.pixel_size_nm, res.frame_interval_s, res.n_frames, res.config) == (10.0, 0.5, 6, cfg)
    with pytest.raises(ConfigError, match=r"^pixel size and frame interval must be positive$"):
        next(iter_track(frames, cfg, pixel_size_nm=0.0))
    with pytest.raises(ConfigError, match=r"^pixel size and frame interval must be positive$"):
        next(iter_track(frames, cfg, frame_interval_s=0.0))
    flat = track(np.zeros((3, 32, 32)), cfg, 10.0, 0.5).summary()
    assert (flat["n_frames"], flat["n_detections"], flat["n_tracks"], flat["mean_track_length"]) == (3, 0, 0, 0.0)
    assert flat["mean_count_per_frame"] == 0.0


def test_trackpy_units_and_particle_mask():
    frame = _disc_movie()
    cfg = detect.DetectionConfig(method="trackpy", diameter_nm=130.0, min_diameter_nm=20.0, max_diameter_nm=300.0)
    f = detect.detect_frame(frame, cfg, pixel_size_nm=10.0)
    assert f["y_nm"].tolist() == pytest.approx((f["y"] * 10).tolist())
    assert f["x_nm"].tolist() == pytest.approx((f["x"] * 10).tolist())
    assert f["diameter_nm"].to_numpy() == pytest.approx(100.0, rel=0.15)  # 2 sqrt(2) x size: exact for a uniform disc
    assert len(detect.detect_frame(-frame, cfg.with_(polarity="bright"), 10.0)) == 2
    adaptive = detect.DetectionConfig(block_nm=400.0, min_diameter_nm=20.0, max_diameter_nm=300.0, smooth_px=0.0)
    m = detect.particle_mask(frame, adaptive, 10.0)
    assert m.dtype == bool and m.sum() == np.sum(frame < 0)
    assert np.array_equal(m, frame < 0)
    half = np.zeros_like(m)
    half[:32] = True
    assert np.array_equal(detect.particle_mask(frame, adaptive, 10.0, mask=half), (frame < 0) & half)


def test_evaluation_region_edges():
    truth = pd.DataFrame({"frame": [0, 0, 0, 0], "particle": [0, 1, 2, 3], "y": [0.0, 9.0, -0.4, 4.0],
                          "x": [0.0, 4.0, 4.0, 9.4], "diameter_nm": [10.0] * 4})
    out = evaluate.evaluate_tracking(truth, truth, 1.0, frame_shape=(10, 12))
    assert out["n_true"] == 3  # y in [0, 9], x in [0, 11]: y = -0.4 is outside
    out = evaluate.evaluate_tracking(truth, truth, 1.0, frame_shape=(10, 9))
    assert out["n_true"] == 2  # x = 9.4 > 8 is outside too
    roi = np.zeros((10, 12), bool)
    roi[9, 4] = True  # only particle 1 (y 9, x 4)
    roi[0, 0] = True
    out = evaluate.evaluate_tracking(truth, truth, 1.0, roi=roi)
    assert out["n_true"] == 2  # (0, 0) and (9, 4); (-0.4, 4) rounds to row 0, col 4: not in the roi
