"""Evaluation against ground truth: region edges, optimal matching at the radius, identity switches and
drift error on cases built to give known non-zero values (issue 20)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from napari_cxdi.tracking import evaluate


def _pts(rows, cols=("frame", "particle", "y", "x")):
    df = pd.DataFrame(rows, columns=list(cols))
    df["diameter_nm"] = 10.0
    return df


def test_frame_shape_bounds_are_inclusive_pixel_centres():
    pts = _pts([(0, 0, 9.0, 1.0), (0, 1, 9.5, 1.0), (0, 2, 10.5, 1.0), (0, 3, 1.0, 5.0), (0, 4, 1.0, 5.5)])
    out = evaluate.evaluate_tracking(pts, pts, 1.0, frame_shape=(10, 6))
    assert out["n_true"] == 2 and out["n_detected"] == 2  # y <= 9 and x <= 5 only


def test_roi_lookup_rounds_and_clips_to_the_roi():
    # a non-square roi [12, 6]: rows 0..11, columns 0..5
    roi = np.zeros((12, 6), bool)
    roi[10, 2] = True  # (10, 2) inside
    roi[11, 0] = True  # the last row: a wrapped index (-1) would hit it
    roi[0, 5] = True  # the last column
    roi[5, 5] = True  # a wrapped column index (-1) would hit it
    pts = _pts([(0, 0, 10.2, 2.0),   # rounds to (10, 2): kept
                (0, 1, -0.6, 0.0),   # rounds to row -1 -> clipped to row 0: roi False, dropped
                (0, 2, 0.0, 7.0),    # column 7 -> clipped to 5: roi[0, 5] True, kept
                (0, 3, 5.0, -0.7),   # column -1 -> clipped to 0: roi[5, 0] False, dropped
                (0, 4, 4.0, 4.0)])   # roi False, dropped
    out = evaluate.evaluate_tracking(pts, pts, 1.0, roi=roi)
    assert out["n_true"] == 2 and out["true_positives"] == 2
    roi_int = roi.astype(np.uint8)  # a 0/1 label image works as a roi
    assert evaluate.evaluate_tracking(pts, pts, 1.0, roi=roi_int)["n_true"] == 2
    # roi and frame shape both apply: (0, 7) is in the roi (clipped) but outside a 12 x 6 frame
    out = evaluate.evaluate_tracking(pts, pts, 1.0, roi=roi, frame_shape=(12, 6))
    assert out["n_true"] == 1
    # a row beyond a short roi is clipped to its last row, not to its last column index
    tall = _pts([(0, 0, 11.0, 0.0)])
    assert evaluate.evaluate_tracking(tall, tall, 1.0, roi=roi)["n_true"] == 1
    wide_roi = np.zeros((3, 9), bool)
    wide_roi[2, 8] = True
    far = _pts([(0, 0, 7.0, 8.0)])  # row 7 -> clipped to 2 (not 8: that would be out of range)
    assert evaluate.evaluate_tracking(far, far, 1.0, roi=wide_roi)["n_true"] == 1


def test_a_frame_without_detections_does_not_end_the_matching():
    truth = _pts([(0, 0, 1.0, 1.0), (1, 0, 2.0, 1.0), (2, 0, 3.0, 1.0)])
    det = _pts([(1, 7, 2.0, 1.0), (2, 7, 3.5, 1.0)])  # nothing in frame 0
    m = evaluate.match_frames(det, truth, radius_nm=10.0, pixel_size_nm=2.0)
    assert m["frame"].tolist() == [1, 2] and m["distance_nm"].tolist() == pytest.approx([0.0, 1.0])
    out = evaluate.evaluate_tracking(det, truth, 2.0, radius_nm=10.0)
    assert (out["true_positives"], out["recall"], out["precision"]) == (2, pytest.approx(2 / 3), 1.0)
    assert out["localisation_error_nm"] == pytest.approx(0.5)


def test_a_pair_exactly_at_the_radius_takes_part_in_the_optimal_assignment():
    # truth A (0, 0), B (0, 0.3); detections a (0, 3), b (0, 0.1); radius 3 px exactly
    truth = _pts([(0, 0, 0.0, 0.0), (0, 1, 0.0, 0.3)])
    det = _pts([(0, 5, 0.0, 3.0), (0, 6, 0.0, 0.1)])
    m = evaluate.match_frames(det, truth, radius_nm=3.0, pixel_size_nm=1.0)
    # allowed pairs: A-a 3.0 (at the radius), A-b 0.1, B-a 2.7, B-b 0.2; the optimum is A-b + B-a = 2.8
    assert sorted(zip(m["truth_index"], m["detected_index"])) == [(0, 1), (1, 0)]
    assert sorted(m["distance_nm"].tolist()) == pytest.approx([0.1, 2.7])
    # with B far from a, the pair at the radius is the only way to match both
    truth = _pts([(0, 0, 0.0, 0.0), (0, 1, 0.0, -0.3)])
    det = _pts([(0, 5, 0.0, 3.0), (0, 6, 0.0, -0.1)])
    m = evaluate.match_frames(det, truth, radius_nm=3.0, pixel_size_nm=1.0)
    # A-a 3.0, A-b 0.1, B-a 3.3 (too far), B-b 0.2: A-a + B-b
    assert sorted(zip(m["truth_index"], m["detected_index"])) == [(0, 0), (1, 1)]
    assert sorted(m["distance_nm"].tolist()) == pytest.approx([0.2, 3.0])


def test_identity_switches_counted_per_true_particle():
    # two true particles over 4 frames; tracks: truth 0 -> 10, 10, 11, 10 (2 switches); truth 1 -> 20, 20, 20, 21 (1)
    truth_rows, det_rows = [], []
    ids = {0: [10, 10, 11, 10], 1: [20, 20, 20, 21]}
    for t in range(4):
        for p, y in ((0, 5.0), (1, 50.0)):
            truth_rows.append((t, p, y, 5.0 + t))
            det_rows.append((t, ids[p][t], y + 0.1, 5.0 + t))
    truth, det = _pts(truth_rows), _pts(det_rows)
    out = evaluate.evaluate_tracking(det.sample(frac=1.0, random_state=3), truth, pixel_size_nm=10.0)
    assert out["identity_switches"] == 3
    assert out["n_tracks"] == 4 and out["mean_track_length"] == pytest.approx(8 / 4)
    assert out["true_mean_track_length"] == 4.0
    assert out["localisation_error_nm"] == pytest.approx(1.0)  # 0.1 px x 10 nm/px
    # a missed frame is not a switch: the id before and after the gap is the same
    gap = det[~((det["frame"] == 1) & (det["particle"] == 20))]
    assert evaluate.evaluate_tracking(gap, truth, 10.0)["identity_switches"] == 3
    # one id per true particle: no switch even though the ids are not the truth's
    same = det.assign(particle=np.where(det["y"] < 20, 99, 98))
    assert evaluate.evaluate_tracking(same, truth, 10.0)["identity_switches"] == 0


def test_missing_values_are_nan_not_absent():
    truth = _pts([(0, 0, 1.0, 1.0)])
    det = truth[["frame", "y", "x"]]  # no diameter, no ids
    out = evaluate.evaluate_tracking(det, truth, 1.0)
    assert math.isnan(out["diameter_bias_nm"]) and math.isnan(out["diameter_abs_error_nm"])
    far = truth.assign(y=500.0)  # no match: no diameter error either
    out = evaluate.evaluate_tracking(far, truth, 1.0)
    assert out["true_positives"] == 0 and math.isnan(out["diameter_abs_error_nm"]) and math.isnan(out["diameter_bias_nm"])
    assert out["identity_switches"] == 0 and "n_tracks" not in out


def test_drift_and_diffusion_errors_against_non_zero_truth():
    truth = _pts([(0, 0, 1.0, 1.0)])
    msd = {"drift_nm_s": np.array([5.0, 9.0]), "diffusion_nm2_s": 30.0}
    out = evaluate.evaluate_tracking(truth, truth, 1.0, msd=msd, true_drift_nm_s=(2.0, 5.0), true_diffusion_nm2_s=40.0)
    assert out["drift_error_nm_s"] == pytest.approx(5.0)  # |(3, 4)|
    assert out["diffusion_relative_error"] == pytest.approx(-0.25)
    out = evaluate.evaluate_tracking(truth, truth, 1.0, msd={"drift_nm_s": [1, 2], "diffusion_nm2_s": 3},
                                     true_drift_nm_s=[4, 6], true_diffusion_nm2_s=0.0)
    assert out["drift_error_nm_s"] == pytest.approx(5.0) and "diffusion_relative_error" not in out
