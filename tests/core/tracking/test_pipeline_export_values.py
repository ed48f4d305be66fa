"""Tracking pipeline configuration and results, and the table export, by value (issue 20)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from napari_cxdi.errors import ConfigError
from napari_cxdi.tracking import export
from napari_cxdi.tracking.detect import DetectionConfig
from napari_cxdi.tracking.pipeline import TrackingConfig, TrackingResult, iter_track, track, track_statistics


def _movie(n_frames=5, n=48, step=1):
    yy, xx = np.mgrid[0:n, 0:n]
    frames = np.zeros((n_frames, n, n))
    for t in range(n_frames):
        for cy, cx in ((14, 10 + step * t), (34, 30 - step * t)):
            frames[t][(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = -1.0
    return frames


DET = DetectionConfig(block_nm=400.0, min_diameter_nm=20.0, max_diameter_nm=300.0, smooth_px=0.0)


def test_tracking_config_defaults_and_errors():
    cfg = TrackingConfig()
    assert (cfg.max_displacement_nm, cfg.memory, cfg.min_length, cfg.max_lag, cfg.fit_lags) == (150.0, 1, 3, 10, 4)
    assert cfg.detection == DetectionConfig()
    cfg.validate()
    for field, value, interval in (("memory", -1, "[0, inf)"), ("max_lag", 0, "[1, inf)"), ("fit_lags", 0, "[1, inf)")):
        with pytest.raises(ConfigError) as err:
            TrackingConfig(**{field: value}).validate()
        assert str(err.value) == f"tracking config: {field} must be in {interval}, got {value}"
    TrackingConfig(max_displacement_nm=1e-3, memory=0, min_length=1, max_lag=1, fit_lags=1).validate()
    d = cfg.to_dict()
    assert d["detection"] == DetectionConfig().to_dict() and d["max_lag"] == 10
    back = TrackingConfig.from_dict({"max_lag": 5, "detection": {"threshold": 0.4, "zzz": 1}})
    assert back.max_lag == 5 and back.detection == DetectionConfig(threshold=0.4) and back.min_length == 3
    obj = TrackingConfig.from_dict({"detection": DetectionConfig(polarity="bright")})
    assert obj.detection.polarity == "bright"
    assert TrackingConfig.from_dict({}) == TrackingConfig()


def test_pipeline_results_by_value():
    frames = _movie()
    cfg = TrackingConfig(detection=DET, max_displacement_nm=30.0, min_length=4, max_lag=3, fit_lags=2, memory=0)
    res = track(frames, cfg, pixel_size_nm=10.0, frame_interval_s=0.25)
    assert isinstance(res, TrackingResult) and res.n_frames == 5
    assert len(res.features) == 10 and res.features["frame"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert sorted(res.tracks["particle"].unique().tolist()) == [0, 1]
    # 1 px per frame = 10 nm per 0.25 s = 40 nm/s, in nm/s (not px/s, not px/frame)
    assert res.tracks["speed_nm_s"].to_numpy() == pytest.approx(40.0, abs=0.5)
    assert res.per_track["speed_nm_s"].tolist() == pytest.approx([40.0, 40.0], abs=0.5)
    assert res.tracks["lifetime_s"].tolist() == [1.25] * 10 and res.per_track["lifetime_s"].tolist() == [1.25, 1.25]
    st = res.statistics
    assert set(st) == {"count_per_frame", "diameter", "lifetime", "msd"}
    assert st["count_per_frame"].tolist() == [2] * 5
    assert st["lifetime"]["values"].tolist() == [1.25, 1.25]
    assert st["msd"]["lag_s"].tolist() == pytest.approx([0.25, 0.5, 0.75])  # max_lag 3 of the config
    # opposite drifts cancel: mean drift 0, but the MSD grows as (40 nm/s t)^2
    assert st["msd"]["msd_nm2"].tolist() == pytest.approx([100.0, 400.0, 900.0], rel=0.05)
    assert st["msd"]["drift_nm_s"].tolist() == pytest.approx([0.0, 0.0], abs=0.5)
    s = res.summary()
    assert s["n_tracks"] == 2 and s["mean_track_length"] == 5.0 and s["mean_lifetime_s"] == 1.25
    assert s["mean_count_per_frame"] == 2.0 and s["n_detections"] == 10
    # min_length 6 > 5 frames: no tracks, the statistics are empty but defined
    empty = track(frames, cfg.with_(min_length=6), 10.0, 0.25)
    assert empty.tracks.empty and "lifetime_s" in empty.tracks and empty.per_track.empty
    s = empty.summary()
    assert (s["n_tracks"], s["mean_track_length"]) == (0, 0.0) and math.isnan(s["mean_lifetime_s"])
    assert math.isnan(s["drift_vy_nm_s"]) and s["n_detections"] == 10
    # a mask limits detection
    mask = np.zeros((48, 48), bool)
    mask[:24] = True
    masked = track(frames, cfg, 10.0, 0.25, mask=mask)
    assert masked.features["y"].round().unique().tolist() == [14.0]
    events = list(iter_track(frames[:2], cfg.with_(min_length=1), 10.0, 0.25))
    assert [e["stage"] for e in events] == ["detect", "detect", "link", "statistics"]
    assert events[2]["count"] == 4 and events[3]["n_tracks"] == 2
    stats = track_statistics(res.tracks, res.features, 7, 10.0, 0.25, cfg)
    assert stats["count_per_frame"].tolist() == [2] * 5 + [0, 0]


def test_pipeline_defaults_and_memory():
    frames = _movie()
    gap = frames.copy()
    gap[2] = 0.0  # both particles missed in frame 2
    cfg = TrackingConfig(detection=DET, max_displacement_nm=30.0, min_length=2)
    kept = track(gap, cfg, 10.0, 1.0)  # default memory 1: the ids survive the gap
    assert kept.per_track.shape[0] == 2 and kept.per_track["n_detections"].tolist() == [4, 4]
    assert kept.per_track["lifetime_s"].tolist() == [5.0, 5.0]
    split = track(gap, cfg.with_(memory=0), 10.0, 1.0)
    assert split.per_track.shape[0] == 4
    # default pixel size and interval: 1 nm, 1 s -> the speed is in px per frame numerically
    res = track(frames, TrackingConfig(detection=DetectionConfig(block_nm=40.0, min_diameter_nm=2.0, max_diameter_nm=30.0,
                                                                smooth_px=0.0), max_displacement_nm=3.0))
    assert res.tracks["speed_nm_s"].to_numpy() == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ConfigError):
        next(iter_track(frames, TrackingConfig(memory=-1)))


def test_write_tables_checks_every_target_before_writing(tmp_path):
    t1 = pd.DataFrame({"a": [1, 2]})
    t2 = pd.DataFrame({"b": [3.5]})
    (tmp_path / "out_second.csv").write_text("x\n")
    with pytest.raises(Exception, match="exists"):
        export.write_tables(tmp_path / "out.csv", {"first": t1, "second": t2})
    assert not (tmp_path / "out_first.csv").exists()  # nothing written when one target is refused
    paths = export.write_tables(tmp_path / "out.csv", {"first": t1, "second": t2}, overwrite=True)
    assert (tmp_path / "out_second.csv").read_text().splitlines()[2:] == ["b", "3.5"]
    protected = tmp_path / "movie.csv"
    protected.write_text("raw\n")
    with pytest.raises(Exception):
        export.write_tables(protected, {"t": t1}, overwrite=True, protected=[protected])
    assert protected.read_text() == "raw\n"
    with pytest.raises(Exception):
        export.write_tables(tmp_path / "p.h5", {"t": t1}, overwrite=True, protected=[tmp_path / "p.h5"])
    assert paths == [tmp_path / "out_first.csv", tmp_path / "out_second.csv"]


def test_csv_and_hdf5_contents(tmp_path):
    t = pd.DataFrame({"particle": [0, 1], "speed_nm_s": [1.5, 2.5], 3: [7, 8]})
    [p] = export.write_tables(tmp_path / "one.CSV", {"tracks": t}, config={"k": 1}, metrics={"m": 2.0})
    assert p == tmp_path / "one.CSV"
    lines = p.read_text().splitlines()
    assert lines[0] == "# napari-cxdi table: tracks"
    prov = json.loads(lines[1][len("# provenance: "):])
    assert prov["tables"] == ["tracks"] and prov["config"] == {"k": 1} and prov["metrics"]["m"] == 2.0
    assert lines[2:] == ["particle,speed_nm_s,3", "0,1.5,7", "1,2.5,8"]
    assert export.read_provenance(p) == prov
    [h] = export.write_tables(tmp_path / "t.HDF5", {"tracks": t, "other": t.iloc[:1]}, config={"k": 1})
    import h5py

    with h5py.File(h, "r") as f:
        assert json.loads(f["tracks"].attrs["columns"]) == ["particle", "speed_nm_s", "3"]
        assert f["tracks"]["speed_nm_s"][()].tolist() == [1.5, 2.5] and f["other"]["3"][()].tolist() == [7]
        assert json.loads(f.attrs["provenance"])["tables"] == ["tracks", "other"]
    back = export.read_tables(h)
    assert back["tracks"].columns.tolist() == ["particle", "speed_nm_s", "3"]
    assert back["tracks"]["particle"].tolist() == [0, 1]
    assert export.read_provenance(h)["config"] == {"k": 1}
    assert export.HDF5_SUFFIXES == (".h5", ".hdf5")
    # the provenance line is found after other comment lines, and only with its exact prefix
    q = tmp_path / "q.csv"
    q.write_text('# other\n#provenance: {"x": 1}\n# provenance: {"y": 2}\na\n1\n')
    assert export.read_provenance(q) == {"y": 2}


def test_atomic_helper_replaces_by_default(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    export._atomic(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new"
    with pytest.raises(Exception, match="exists"):
        export._atomic(target, lambda tmp: tmp.write_text("newer"), overwrite=False)
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_a_protected_target_stops_the_export_before_any_file(tmp_path):
    t = pd.DataFrame({"a": [1]})
    second = tmp_path / "out_second.csv"
    second.write_text("input\n")
    with pytest.raises(Exception):
        export.write_tables(tmp_path / "out.csv", {"first": t, "second": t}, overwrite=True, protected=[second])
    assert not (tmp_path / "out_first.csv").exists() and second.read_text() == "input\n"
    target = tmp_path / "f.txt"
    target.write_text("input")
    with pytest.raises(Exception):
        export._atomic(target, lambda tmp: tmp.write_text("new"), overwrite=True, protected=[target])
    assert target.read_text() == "input"


def test_provenance_json_has_sorted_keys(tmp_path):
    [p] = export.write_tables(tmp_path / "s.csv", {"t": pd.DataFrame({"a": [1]})}, config={"zeta": 1, "alpha": 2},
                              metrics={"z": 1.0, "a": 2.0})
    line = p.read_text().splitlines()[1][len("# provenance: "):]
    assert line == json.dumps(json.loads(line), sort_keys=True)
    [h] = export.write_tables(tmp_path / "s.h5", {"t": pd.DataFrame({"a": [1]})}, config={"zeta": 1, "alpha": 2})
    import h5py

    with h5py.File(h, "r") as f:
        text = f.attrs["provenance"]
    assert text == json.dumps(json.loads(text), sort_keys=True)


def test_iter_track_defaults_events_and_dtypes():
    from napari_cxdi.progress import drain

    frames = _movie()
    det = DetectionConfig(block_nm=40.0, min_diameter_nm=2.0, max_diameter_nm=30.0, smooth_px=0.0)
    cfg = TrackingConfig(detection=det, max_displacement_nm=3.0)
    events = []
    res = drain(iter_track(frames, cfg), events.append)  # defaults: 1 nm per pixel, 1 s per frame
    assert (res.pixel_size_nm, res.frame_interval_s) == (1.0, 1.0)
    assert res.tracks["speed_nm_s"].to_numpy() == pytest.approx(1.0, abs=0.05)
    assert res.tracks["lifetime_s"].tolist() == [5.0] * 10 and res.tracks["lifetime_s"].dtype == np.float64
    assert [e["event"] for e in events] == ["progress"] * 7
    # an integer frame interval still gives float lifetimes
    res = track(frames, cfg, 1.0, 2)
    assert res.tracks["lifetime_s"].dtype == np.float64 and res.tracks["lifetime_s"].tolist() == [10.0] * 10
    # no tracks: the statistics event says 0, the lifetime column is float
    events = []
    none = track(frames, cfg.with_(min_length=9), progress=events.append)
    assert events[-1] == {"stage": "statistics", "event": "progress", "n_tracks": 0}
    assert none.tracks["lifetime_s"].dtype == np.float64
    # an empty movie: zero counts, not NaN
    empty = track(np.zeros((0, 16, 16)), cfg)
    s = empty.summary()
    assert (s["n_frames"], s["n_detections"], s["mean_count_per_frame"], s["n_tracks"]) == (0, 0, 0.0, 0)


def test_summary_maps_every_statistic():
    stats = {"count_per_frame": np.array([1, 3]), "lifetime": {"mean_s": 2.5}, "diameter": {"mean_nm": 80.0, "std_nm": 4.0},
             "msd": {"diffusion_nm2_s": 7.0, "diffusion_err": 0.5, "drift_nm_s": np.array([1.0, 2.0]),
                     "drift_err": np.array([0.1, 0.2])}}
    per = pd.DataFrame({"n_detections": [2, 4, 6]})
    res = TrackingResult(pd.DataFrame({"frame": [0, 1, 1, 1]}), pd.DataFrame(), per, stats, TrackingConfig(), 5.0, 0.5, 2)
    assert res.summary() == {
        "n_frames": 2, "n_detections": 4, "mean_count_per_frame": 2.0, "n_tracks": 3, "mean_track_length": 4.0,
        "mean_lifetime_s": 2.5, "diameter_mean_nm": 80.0, "diameter_std_nm": 4.0, "diffusion_nm2_s": 7.0,
        "diffusion_err_nm2_s": 0.5, "drift_vy_nm_s": 1.0, "drift_vx_nm_s": 2.0, "drift_vy_err_nm_s": 0.1,
        "drift_vx_err_nm_s": 0.2}


def test_track_statistics_use_the_configured_fit():
    from napari_cxdi.tracking.statistics import msd_analysis

    rng = np.random.default_rng(2)
    rows = []
    for p in range(5):
        pos = np.cumsum(rng.normal(size=(12, 2)), axis=0)
        rows += [(p, t, y, x) for t, (y, x) in enumerate(pos)]
    tracks = pd.DataFrame(rows, columns=["particle", "frame", "y", "x"])
    cfg = TrackingConfig(max_lag=6, fit_lags=2)
    st = track_statistics(tracks, tracks, 12, 3.0, 0.5, cfg)
    ref = msd_analysis(tracks, 3.0, 0.5, 6, 2)
    assert st["msd"]["diffusion_nm2_s"] == ref["diffusion_nm2_s"]
    assert st["msd"]["diffusion_nm2_s"] != msd_analysis(tracks, 3.0, 0.5, 6, 4)["diffusion_nm2_s"]
    assert len(st["msd"]["lag_s"]) == 6
