"""Value tests for tracking behaviour the earlier tests left open (issue 20: surviving mutants of
tracking.detect, evaluate and statistics)."""

import numpy as np
import pandas as pd
import pytest

from napari_cxdi.tracking.detect import DetectionConfig, detect_frame
from napari_cxdi.tracking.evaluate import _inside
from napari_cxdi.tracking.statistics import _estimate


def _disk(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def test_adaptive_detection_default_min_contrast_is_half_the_threshold():
    # a disk 0.06 above a plateau ring that is itself 0.12 above a flat, empty field: the disk exceeds the
    # (threshold 0.15) local background, the ring does not, and the disk's contrast to its ring is 0.06 --
    # under the default minimum contrast 0.15 / 2 = 0.075 (a bump between particles), over 0.15 / 3
    frame = np.zeros((96, 96))
    frame[_disk(frame.shape, 48, 48, 12)] = 0.12
    frame[_disk(frame.shape, 48, 48, 6)] = 0.18
    cfg = DetectionConfig(polarity="bright", threshold=0.15, block_nm=181.0, smooth_px=0.0, min_diameter_nm=2.0,
                          max_diameter_nm=50.0)
    assert len(detect_frame(frame, cfg, pixel_size_nm=1.0)) == 0
    found = detect_frame(frame, cfg.with_(min_contrast=0.055), pixel_size_nm=1.0)
    assert len(found) == 1
    assert found["contrast"].iloc[0] == pytest.approx(0.06)
    assert (found["y"].iloc[0], found["x"].iloc[0]) == pytest.approx((48.0, 48.0), abs=1e-3)


def test_trackpy_detection_on_a_small_frame_finds_the_particle():
    # frames under 4096 pixels run trackpy's pure-python engine
    frame = np.zeros((48, 48))
    yy, xx = np.mgrid[:48, :48]
    frame -= np.exp(-((yy - 20.0) ** 2 + (xx - 27.0) ** 2) / (2 * 2.0**2))  # a dark particle
    cfg = DetectionConfig(method="trackpy", diameter_nm=90.0, min_diameter_nm=1.0, max_diameter_nm=1000.0,
                          smooth_px=0.0)
    found = detect_frame(frame, cfg, pixel_size_nm=10.0)
    assert len(found) == 1
    assert (found["y"].iloc[0], found["x"].iloc[0]) == pytest.approx((20.0, 27.0), abs=0.1)
    assert found["y_nm"].iloc[0] == pytest.approx(10.0 * found["y"].iloc[0])


def test_inside_roi_rounds_positions_just_outside_the_frame_to_the_edge_pixel():
    roi = np.zeros((4, 5), bool)
    roi[:, 0] = True  # only the first column is in the region of interest
    df = pd.DataFrame({"y": [1.0, 2.0], "x": [-0.6, 4.4]})  # x rounds to -1 (edge: column 0) and 4
    kept = _inside(df, roi, None)
    assert kept["x"].tolist() == [-0.6]


def test_diffusion_from_a_single_lag_is_variance_over_4_tau():
    # one lag of 0.5 s, four displacements with zero mean and mean square 2.0 nm^2: D = 2 / 0.5 / 4 = 1
    sums = np.array([[[4.0, 0.0, 0.0, 8.0]]])  # [particles, lags, (count, sum dy, sum dx, sum d^2)]
    d, vy, vx, var = _estimate(sums, dt=0.5, fit_lags=1)
    assert d == pytest.approx(1.0) and vy == 0.0 and vx == 0.0
    np.testing.assert_allclose(var, [2.0])
