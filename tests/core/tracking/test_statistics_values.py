"""Track statistics by value: image velocity with a lag, a mask's bounding box and uneven motion;
MSD fits with localisation noise and the bootstrap over tracks (issue 20)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_cxdi.tracking import statistics


def _blob_movie(xs, ys=None, n=40, sigma2=6.0):
    yy, xx = np.mgrid[0:n, 0:n]
    ys = ys if ys is not None else [20.0] * len(xs)
    return np.stack([np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / sigma2) for x, y in zip(xs, ys)])


def test_image_velocity_lag_median_and_units():
    # steps of +1, +1, +4 px in x: per-pair speeds 1, 1, 4 px/frame -> the median is 1, the mean 2
    frames = _blob_movie([10, 11, 12, 16])
    out = statistics.image_velocity(frames, pixel_size_nm=5.0, frame_interval_s=0.5)
    v = out["per_pair_nm_s"]
    assert v.shape == (3, 2)
    assert v[:, 1] == pytest.approx([10.0, 10.0, 40.0], abs=0.5)  # 1 px x 5 nm / 0.5 s = 10 nm/s
    assert out["median_nm_s"][1] == pytest.approx(10.0, abs=0.5) and out["median_nm_s"][0] == pytest.approx(0.0, abs=0.5)
    assert out["mean_nm_s"][1] == pytest.approx(20.0, abs=0.5)
    assert out["per_pair_speed_nm_s"] == pytest.approx(np.hypot(v[:, 0], v[:, 1]))
    assert out["per_pair_speed_nm_s"] == pytest.approx([10.0, 10.0, 40.0], abs=0.5)
    # lag 2: pairs (0, 2) and (1, 3): 2 px and 5 px per 2 frames
    lag2 = statistics.image_velocity(frames, 5.0, 0.5, lag=2)
    assert lag2["per_pair_nm_s"][:, 1] == pytest.approx([10.0, 25.0], abs=0.5)
    # y motion goes to the first component
    ym = statistics.image_velocity(_blob_movie([20, 20, 20], ys=[12, 14, 16]), 1.0, 1.0)
    assert ym["median_nm_s"] == pytest.approx([2.0, 0.0], abs=0.1)


def test_image_velocity_uses_the_bounding_box_of_the_mask():
    # two blobs moving in opposite directions; a mask around the left one measures only its motion
    a = _blob_movie([8, 10, 12])
    b = _blob_movie([32, 30, 28])
    frames = a + b
    mask = np.zeros((40, 40), bool)
    mask[10:30, 1:20] = True
    mask[15:25, 5:15] = False  # a hole: the bounding box is still the whole rectangle
    out = statistics.image_velocity(frames, 1.0, 1.0, mask=mask)
    assert out["median_nm_s"][1] == pytest.approx(2.0, abs=0.2)
    right = np.zeros((40, 40), bool)
    right[10:30, 21:39] = True
    assert statistics.image_velocity(frames, 1.0, 1.0, mask=right)["median_nm_s"][1] == pytest.approx(-2.0, abs=0.2)
    # the last row / column of the mask are inside the box (ys.max() + 1)
    edge = np.zeros((40, 40), bool)
    edge[0, 0] = edge[39, 39] = True
    full = statistics.image_velocity(frames, 1.0, 1.0)
    np.testing.assert_allclose(statistics.image_velocity(frames, 1.0, 1.0, mask=edge)["per_pair_nm_s"], full["per_pair_nm_s"])
    # a complex movie is tracked on its phase
    phase = statistics.image_velocity(np.exp(1j * a), 1.0, 1.0)
    assert phase["median_nm_s"][1] == pytest.approx(2.0, abs=0.2)


def test_msd_with_localisation_offset_and_bootstrap():
    # per-axis variance 2 D tau + 2 s^2: built exactly from alternating jitter on a straight line
    rows = []
    for p in range(4):
        for t in range(9):
            jitter = 0.5 if (t + p) % 2 else -0.5
            rows.append((p, t, 10.0 * p + jitter, 2.0 * t))
    tracks = pd.DataFrame(rows, columns=["particle", "frame", "y", "x"])
    m = statistics.msd_analysis(tracks, pixel_size_nm=2.0, frame_interval_s=0.1, max_lag=4, fit_lags=4, n_boot=10)
    # x drifts 2 px/frame = 4 nm per 0.1 s = 40 nm/s; y jitter: lag odd -> |dy| = 1 px = 2 nm (var 4), lag even -> 0
    assert m["drift_nm_s"].tolist() == pytest.approx([0.0, 40.0], abs=1e-9)
    assert m["var_nm2"].tolist() == pytest.approx([4.0, 0.0, 4.0, 0.0], abs=1e-9)
    assert m["msd_nm2"].tolist() == pytest.approx([4.0 + 16, 64.0, 4.0 + 144, 256.0], abs=1e-9)
    # weighted fit of var over tau with weights sqrt(n): n = 32, 28, 24, 20 pairs
    tau = np.array([0.1, 0.2, 0.3, 0.4])
    slope = np.polyfit(tau, [4.0, 0.0, 4.0, 0.0], 1, w=np.sqrt([32, 28, 24, 20]))[0]
    assert m["diffusion_nm2_s"] == pytest.approx(slope / 4, rel=1e-9)
    assert m["n_pairs"].tolist() == [32, 28, 24, 20]
    assert m["speed_nm_s"] == pytest.approx(40.0)
    # identical tracks: every bootstrap resample gives the same fit
    assert m["drift_err"].tolist() == pytest.approx([0.0, 0.0], abs=1e-9)
    assert m["diffusion_err"] >= 0
    # the drift is a weighted fit through the origin: sum(n tau d) / sum(n tau^2)
    acc = pd.DataFrame([(0, t, 0.0, 0.5 * t * t) for t in range(4)], columns=["particle", "frame", "y", "x"])
    ma = statistics.msd_analysis(acc, 1.0, 1.0, max_lag=2, fit_lags=2)
    # lag 1: dx = 0.5, 1.5, 2.5 (mean 1.5, n 3); lag 2: dx = 2, 4 (mean 3, n 2)
    assert ma["drift_nm_s"][1] == pytest.approx((3 * 1 * 1.5 + 2 * 2 * 3.0) / (3 * 1 + 2 * 4))


def _tracks(rows):
    return pd.DataFrame(rows, columns=["particle", "frame", "y", "x"])


def test_empty_results_have_the_full_keys():
    t = pd.DataFrame({"particle": [0, 0, 1, 1], "frame": [0, 1, 0, 2], "diameter_nm": [10.0, 12.0, 11.0, 11.0],
                      "y": [0.0, 1.0, 5.0, 6.0], "x": [0.0, 0.0, 1.0, 1.0]})
    for fn in (statistics.diameter_distribution, statistics.lifetime_distribution):
        full, empty = fn(t), fn(t.iloc[:0])
        assert set(empty) == set(full)
        assert len(empty["values"]) == 0 and len(empty["edges"]) == 0
        assert empty["counts"].dtype.kind == "i" and len(empty["counts"]) == 0
        assert len(full["edges"]) == 21 and len(full["counts"]) == 20  # 20 bins by default
    full, empty = statistics.msd_analysis(t, 1.0, 1.0), statistics.msd_analysis(t.iloc[:0], 1.0, 1.0)
    assert set(empty) == set(full)
    for k in ("lag_s", "msd_nm2", "var_nm2", "n_pairs"):
        assert len(empty[k]) == 0
    assert np.isnan(empty["speed_nm_s"]) and np.isnan(empty["diffusion_err"])
    assert np.isnan(empty["drift_err"]).all() and empty["drift_err"].shape == (2,)


def test_distribution_edges_and_dtypes():
    t = pd.DataFrame({"particle": [0, 1, 2], "diameter_nm": [10.0, 10.0, 16.0], "frame": [0, 0, 0]})
    # median 10, 1.6 x 10 = 16: a track exactly at the limit is kept; 20 is not (not even with a 2.6 default)
    assert statistics.diameter_distribution(t)["values"].tolist() == [10.0, 10.0, 16.0]
    t.loc[2, "diameter_nm"] = 20.0
    assert statistics.diameter_distribution(t)["values"].tolist() == [10.0, 10.0]
    life = statistics.lifetime_distribution(pd.DataFrame({"particle": [0, 0], "frame": [1, 4]}), frame_interval_s=2)
    assert life["values"].tolist() == [8.0] and life["values"].dtype == np.float64
    # counts per frame: float frame numbers, and a table without columns
    assert statistics.count_per_frame(pd.DataFrame({"frame": [0.0, 2.0, 2.0]})).tolist() == [1, 0, 2]
    assert statistics.count_per_frame(pd.DataFrame(), 3).tolist() == [0, 0, 0]
    assert statistics.count_per_frame(pd.DataFrame({"frame": []}), 2).dtype.kind == "i"


def test_msd_fit_rules_by_hand():
    # one track y = 0, 1, 0: lag 1 has 2 pairs (d = +-1, var 1), lag 2 has one pair (d = 0)
    one = _tracks([(0, 0, 0.0, 0.0), (0, 1, 1.0, 0.0), (0, 2, 0.0, 0.0)])
    m = statistics.msd_analysis(one, 1.0, 1.0, max_lag=2, fit_lags=2)
    # a lag needs more than one pair to enter the fit: only lag 1 -> D = var / (4 tau) = 0.25
    assert m["diffusion_nm2_s"] == pytest.approx(0.25)
    # with 0.5 s per frame the single lag is tau = 0.5 s: D = var / (4 tau) = 0.5
    assert statistics.msd_analysis(one, 1.0, 0.5, max_lag=2, fit_lags=2)["diffusion_nm2_s"] == pytest.approx(0.5)
    assert m["n_pairs"].tolist() == [2, 1] and m["n_pairs"].dtype.kind == "i"
    assert m["drift_err"].shape == (2,)
    # fit_lags beyond max_lag fits the lags there are
    assert statistics.msd_analysis(one, 1.0, 1.0, max_lag=2, fit_lags=4)["diffusion_nm2_s"] == pytest.approx(0.25)
    # max_lag 1 is allowed; lags without pairs are left out of the curve
    assert statistics.msd_analysis(one, 1.0, 1.0, max_lag=1)["lag_s"].tolist() == [1.0]
    assert statistics.msd_analysis(one, 1.0, 1.0, max_lag=5)["lag_s"].tolist() == [1.0, 2.0]
    # float frame numbers work
    flt = one.assign(frame=one["frame"].astype(float))
    assert statistics.msd_analysis(flt, 1.0, 1.0, max_lag=2, fit_lags=2)["diffusion_nm2_s"] == pytest.approx(0.25)
    # a weighted fit (weights sqrt(pairs)) of an uneven variance curve
    rows = [(0, t, float(y), 0.0) for t, y in enumerate([0, 1, 3, 2, 5, 4, 4, 7, 6])]
    tr = _tracks(rows)
    m = statistics.msd_analysis(tr, 1.0, 1.0, max_lag=3, fit_lags=3)
    n = m["n_pairs"]
    slope = np.polyfit(m["lag_s"], m["var_nm2"], 1, w=np.sqrt(n))[0]
    assert m["diffusion_nm2_s"] == pytest.approx(slope / 4, rel=1e-9)
    assert np.polyfit(m["lag_s"], m["var_nm2"], 1)[0] != pytest.approx(slope, rel=1e-3)  # the weights matter here


def test_msd_defaults_and_bootstrap_over_tracks():
    rng = np.random.default_rng(3)
    rows = []
    for p in range(6):
        pos = np.cumsum(rng.normal(size=(15, 2)) * (1 + p), axis=0)
        rows += [(p, t, y, x) for t, (y, x) in enumerate(pos)]
    t = _tracks(rows)
    d = statistics.msd_analysis(t, 1.0, 1.0)
    assert d["diffusion_nm2_s"] == statistics.msd_analysis(t, 1.0, 1.0, fit_lags=4)["diffusion_nm2_s"]
    assert d["diffusion_nm2_s"] != statistics.msd_analysis(t, 1.0, 1.0, fit_lags=5)["diffusion_nm2_s"]
    assert d["diffusion_err"] == statistics.msd_analysis(t, 1.0, 1.0, n_boot=200, seed=0)["diffusion_err"]
    assert d["diffusion_err"] != statistics.msd_analysis(t, 1.0, 1.0, n_boot=201, seed=0)["diffusion_err"]
    assert d["diffusion_err"] != statistics.msd_analysis(t, 1.0, 1.0, seed=1)["diffusion_err"]
    # two tracks with the same lag-1 sums but different lag-2 sums:
    # A: y = 0 1 0 1 0 (lag 2: d = 0), B: y = 0 1 2 1 0 (lag 2: d = 2, 0, -2)
    ab = _tracks([(0, k, float(y), 0.0) for k, y in enumerate([0, 1, 0, 1, 0])]
                 + [(1, k, float(y), 0.0) for k, y in enumerate([0, 1, 2, 1, 0])])
    one_lag = statistics.msd_analysis(ab, 1.0, 1.0, max_lag=2, fit_lags=1, n_boot=50)
    assert one_lag["diffusion_err"] == pytest.approx(0.0, abs=1e-12)  # every resample fits lag 1 alone: the same D
    two_lags = statistics.msd_analysis(ab, 1.0, 1.0, max_lag=2, fit_lags=2, n_boot=50)
    assert two_lags["diffusion_err"] > 0.05  # resamples AA, AB, BB differ at lag 2
    assert two_lags["drift_err"].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)  # no drift in any resample


def test_image_velocity_crop_is_exactly_the_bounding_box():
    from napari_cxdi.metrics.velocity import estimate_velocity

    frames = _blob_movie([14, 15, 17], ys=[18, 19, 19], sigma2=30.0)
    mask = np.zeros((40, 40), bool)
    mask[8:25, 6:23] = True
    out = statistics.image_velocity(frames, 2.0, 0.5, mask=mask)
    ref = estimate_velocity(frames[:, 8:25, 6:23].astype(np.float32), 2.0, 0.5)
    np.testing.assert_allclose(out["per_pair_nm_s"], ref["per_pair_nm_s"], rtol=1e-12, atol=1e-12)
    bigger = estimate_velocity(frames[:, 8:26, 6:24].astype(np.float32), 2.0, 0.5)
    assert np.abs(bigger["per_pair_nm_s"] - ref["per_pair_nm_s"]).max() > 1e-9  # the crop matters
