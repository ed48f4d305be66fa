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
