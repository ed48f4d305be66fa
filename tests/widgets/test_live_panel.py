"""The Live dock in a real viewer (pytest-qt, Xvfb): layers grow while a writer process appends, stop/resume."""

import sys
import time
from pathlib import Path

import torch  # noqa: F401  (before Qt)
import h5py
import numpy as np
import pytest
from qtpy.QtCore import QThreadPool, QTimer

from napari_cxdi.live import read_live_output
from napari_cxdi.widgets.live_panel import LAYERS, LivePanel

sys.path.insert(0, str(Path(__file__).parents[1] / "core" / "io"))  # the writer helpers of the core live tests
from test_live import make_movie, start_writer  # noqa: E402

pytestmark = pytest.mark.gui


def wait_stopped(qtbot, panel, timeout=30_000):
    qtbot.waitUntil(lambda: not panel.running, timeout=timeout)
    QThreadPool.globalInstance().waitForDone(5000)


def test_live_toggle_grows_layers_stops_and_resumes(make_napari_viewer, qtbot, tmp_path):
    counts, probe = make_movie(12)
    np.save(tmp_path / "frames8.npy", counts[:8])
    np.save(tmp_path / "probe.npy", probe)
    src, out = tmp_path / "run.h5", tmp_path / "run_live.cxi"
    viewer = make_napari_viewer()
    panel = LivePanel(viewer)
    panel.refresh_interval_s = 0.0  # a round of layer updates per block (the default 1 s coalesces blocks)
    viewer.window.add_dock_widget(panel)
    panel.source.setText(str(src))
    panel.probe.setText(str(tmp_path / "probe.npy"))
    panel.output.setText(str(out))
    panel.max_iter.setValue(5)
    panel.block.setValue(2)
    panel.idle.setValue(1.5)
    proc = start_writer("swmr", src, tmp_path / "frames8.npy", 4)
    gaps, last = [], [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    panel.idle.setValue(0)  # follow until the toggle is switched off
    panel.live_button.setChecked(True)  # the toggle starts the worker
    assert panel.running

    def grown():
        return bool(panel.layer_sizes) and panel.layer_sizes[-1] == 8

    qtbot.waitUntil(grown, timeout=40_000)
    assert len(panel.layer_sizes) >= 2 and panel.layer_sizes == sorted(panel.layer_sizes)  # grew block by block
    assert viewer.dims.current_step[0] == 7  # follows the newest frame
    panel.live_button.setChecked(False)  # stop
    wait_stopped(qtbot, panel)
    proc.wait(20)
    assert panel.summary is not None and panel.summary.stopped == "cancelled", panel.summary.to_dict()
    stored = read_live_output(out)
    assert stored["frames_complete"] == 8 and stored["complete"]
    for name in LAYERS:  # the layers hold exactly what the output holds
        assert len(viewer.layers[name].data) == 8
    np.testing.assert_allclose(viewer.layers[LAYERS[2]].data, np.angle(stored["objects"]), atol=1e-6)
    viewer.dims.set_current_step(0, 2)  # the user scrolls back: new frames must not pull the view forward
    with h5py.File(src, "a", libver="latest") as f:  # the acquisition continues while live mode is off
        d = f["entry/data/data"]
        d.resize(12, axis=0)
        d[8:] = counts[8:]
    panel.idle.setValue(1.0)
    panel.live_button.setChecked(True)  # resume
    wait_stopped(qtbot, panel)
    timer.stop()
    assert panel.error is None and panel.summary.stopped == "idle"
    assert panel.summary.resumed_from == 8 and panel.summary.frames_total == 12
    final = read_live_output(out)
    assert final["source_frame"].tolist() == list(range(12))
    for name in LAYERS:
        assert len(viewer.layers[name].data) == 12
    np.testing.assert_allclose(viewer.layers[LAYERS[0]].data, counts.astype(np.float32))
    assert viewer.dims.current_step[0] == 2
    assert not panel.live_button.isChecked()
    assert len(gaps) > 10  # the event loop kept running while frames streamed in (latency: benchmarks/bench_live.py)


def test_live_events_fill_points_and_tracks_layers(make_napari_viewer, qtbot):
    """Two blocks arriving within one refresh interval are shown by one round of layer updates (coalesced: the
    event loop is not held once per block), and that round shows both."""
    import pandas as pd

    viewer = make_napari_viewer()
    panel = LivePanel(viewer)
    assert panel.refresh_interval_s >= 0.5
    m = 16
    for start in (0, 2):
        tracks = pd.DataFrame({"frame": [start, start, start + 1, start + 1], "y": [4.0, 10.0, 4.5, 10.5],
                               "x": [4.0, 10.0, 4.5, 10.5], "particle": [0, 1, 0, 1], "diameter_nm": 1.0, "contrast": 0.1})
        panel._on_event({"event": "frames", "start": start, "counts": np.ones((2, m, m), np.float32),
                         "objects": np.exp(1j * np.full((2, m, m), 0.5, np.float32)), "tracks": tracks,
                         "latency_s": 0.1, "frames_per_s": 10.0, "pixel_size_nm": 25.0})
    assert LAYERS[2] not in viewer.layers  # nothing is drawn from inside the event handler
    qtbot.waitUntil(lambda: bool(panel.layer_sizes), timeout=10_000)
    assert panel.layer_sizes == [4]  # one round for both blocks
    assert "4 frames" in panel.status.text()
    assert viewer.layers[LAYERS[2]].visible and not viewer.layers[LAYERS[0]].visible and not viewer.layers[LAYERS[1]].visible
    assert len(viewer.layers[LAYERS[2]].data) == 4
    np.testing.assert_allclose(viewer.layers[LAYERS[2]].data, 0.5, atol=1e-6)
    assert len(viewer.layers["live detections"].data) == 8
    assert viewer.layers["live tracks"].data.shape == (8, 4)
    assert sorted(set(viewer.layers["live tracks"].data[:, 0])) == [0, 1]
    # the run's pixel size: every live layer on the reader's grid (1 frame, dx nm, dx nm), axes named t, y, x
    for name in (*LAYERS, "live detections", "live tracks"):
        np.testing.assert_allclose(viewer.layers[name].scale, (1.0, 25.0, 25.0), err_msg=name)
    for name in (*LAYERS, "live detections", "live tracks"):  # one set of units: no "Inconsistent units"
        assert tuple(viewer.layers[name].axis_labels) == ("t", "y", "x")
        assert [str(u) for u in viewer.layers[name].units][1:] == ["nanometer", "nanometer"]
    assert tuple(viewer.dims.axis_labels) == ("t", "y", "x")
    # an event out of step (a gap) is refused by the session, not silently appended
    assert not panel.session.add({"start": 7, "objects": np.ones((1, m, m), np.complex64), "counts": np.ones((1, m, m))})
