"""Tracking numbers in the units users read (nm, nm/s, s) and evaluation counters on built cases (issue 20)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_cxdi.tracking import point_speeds, track_table
from napari_cxdi.tracking.evaluate import evaluate_tracking


def _line_track(particle, frames, y0, x0, vy, vx, diameter=300.0):
    f = np.asarray(frames)
    return pd.DataFrame({"frame": f, "particle": particle, "y": y0 + vy * (f - f[0]), "x": x0 + vx * (f - f[0]),
                         "diameter_nm": diameter, "contrast": 1.0})


def test_speeds_are_in_nm_per_second():
    # 3-4-5 pixel steps per frame, 10 nm pixels, 0.5 s frames: 5 px * 10 nm / 0.5 s = 100 nm/s
    tracks = _line_track(0, range(5), 10, 10, 3.0, 4.0)
    np.testing.assert_allclose(point_speeds(tracks, frame_interval_s=0.5, pixel_size_nm=10.0), 100.0)
    table = track_table(tracks, frame_interval_s=0.5, pixel_size_nm=10.0)
    assert table.loc[0, "speed_nm_s"] == pytest.approx(100.0)
    assert table.loc[0, "lifetime_s"] == pytest.approx(2.5)  # 5 frames of 0.5 s


def test_speed_across_a_missed_frame_uses_the_real_time_step():
    tracks = _line_track(0, [0, 1, 3, 4], 0, 0, 0.0, 2.0)  # frame 2 missed, steady 2 px/frame
    np.testing.assert_allclose(point_speeds(tracks, frame_interval_s=0.1, pixel_size_nm=5.0), 100.0)


def _truth_two_particles():
    return pd.concat([_line_track(0, range(6), 20, 20, 0, 1), _line_track(1, range(6), 60, 60, 0, 1)],
                     ignore_index=True)


def test_identity_switches_counted_on_a_built_case():
    truth = _truth_two_particles()
    det = truth.copy()
    det["particle"] = np.where(det["particle"] == 0, np.where(det["frame"] < 3, 10, 11), 12)
    scores = evaluate_tracking(det, truth, pixel_size_nm=10.0, radius_nm=50.0)
    assert scores["identity_switches"] == 1
    assert scores["f1"] == pytest.approx(1.0)
    assert scores["n_tracks"] == 3
    # two swaps back and forth: 0 -> 10, 11, 10 gives two switches
    det2 = truth.copy()
    det2["particle"] = np.where(det2["particle"] == 0, np.where(det2["frame"] == 2, 11, 10), 12)
    assert evaluate_tracking(det2, truth, pixel_size_nm=10.0, radius_nm=50.0)["identity_switches"] == 2


def test_detection_scores_and_diameter_bias_on_a_built_case():
    truth = _truth_two_particles()
    det = truth[truth["particle"] == 0].copy()      # particle 1 missed entirely
    det["diameter_nm"] = 280.0                       # 20 nm too small
    det = pd.concat([det, pd.DataFrame({"frame": [0], "particle": [99], "y": [5.0], "x": [90.0],
                                        "diameter_nm": [300.0], "contrast": [1.0]})], ignore_index=True)
    s = evaluate_tracking(det, truth, pixel_size_nm=10.0, radius_nm=50.0)
    assert s["true_positives"] == 6
    assert s["precision"] == pytest.approx(6 / 7)
    assert s["recall"] == pytest.approx(6 / 12)
    assert s["diameter_bias_nm"] == pytest.approx(-20.0)
    assert s["localisation_error_nm"] == pytest.approx(0.0)
