"""The tracking dock widget in a real viewer (pytest-qt, Xvfb): preview, Points/Tracks layers, plots, export."""

import torch  # noqa: F401  (before Qt)
import numpy as np
import pytest
from qtpy.QtCore import QThreadPool

from napari_cxdi._napari.layers import phase_layer
from napari_cxdi.widgets.tracking_widget import TrackingWidget

pytestmark = pytest.mark.gui
DX = 27.0


def moving_disks(n_frames=8, shape=(64, 64)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    starts = np.array([[15.0, 10.0], [40.0, 20.0], [30.0, 45.0]])
    radii = np.array([5.5, 5.5, 7.0])
    movie = np.zeros((n_frames,) + shape, np.float32)
    for t in range(n_frames):
        for (cy, cx), r in zip(starts + [0.4, 1.5] * np.array(t), radii):
            movie[t][(yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2] = -0.8
    return movie


@pytest.fixture
def viewer_widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    data, kwargs, kind = phase_layer(moving_disks(), "disks phase", DX, {"exposure_s": 0.1})
    viewer.add_image(data, **kwargs)
    widget = TrackingWidget(viewer)
    viewer.window.add_dock_widget(widget)
    yield viewer, widget
    QThreadPool.globalInstance().waitForDone(5000)


def wait_done(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)
    QThreadPool.globalInstance().waitForDone(5000)


def test_preview_tracking_layers_plots_and_export(viewer_widget, qtbot, tmp_path):
    viewer, widget = viewer_widget
    assert widget.layer_combo.currentText() == "disks phase"
    widget.update_preview()
    preview = viewer.layers["disks phase detection preview"]
    assert preview.__class__.__name__ == "Labels" and len(np.unique(preview.data)) - 1 == 3
    widget.threshold.setValue(2.0)  # above the particles' contrast: nothing left
    widget.update_preview()
    assert preview.data.max() == 0 and "0 particle" in widget.preview_label.text()
    widget.threshold.setValue(0.15)
    widget.max_disp.setValue(100)
    worker = widget.start()
    assert worker is not None and widget.start() is None  # one run at a time
    wait_done(qtbot, widget)
    points = viewer.layers["disks phase particles"]
    tracks = viewer.layers["disks phase tracks"]
    assert points.data.shape == (24, 3) and set(points.features.columns) == {"diameter_nm", "contrast"}
    assert points.features["diameter_nm"].dtype == float and points.face_colorbar.visible
    assert np.allclose(points.scale[1:], [DX, DX])
    assert tracks.__class__.__name__ == "Tracks" and len(np.unique(tracks.data[:, 0])) == 3
    assert {"speed_nm_s", "lifetime_s"} <= set(tracks.features.columns)
    assert tracks.features["speed_nm_s"].median() == pytest.approx(np.hypot(0.4, 1.5) * DX / 0.1, rel=0.1)
    assert widget.plots.axes[0].patches and widget.plots2.axes[0].lines
    widget.color_by.setCurrentText("contrast")
    assert points.face_contrast_limits[1] <= 1.0
    written = widget.export(tmp_path / "t.csv")
    assert written and all(p.exists() for p in written)
    assert widget.export(tmp_path / "t.h5", ".h5")[0].exists()
    # velocity tool: every frame pair, then mean and spread
    widget.estimate_velocity()
    qtbot.waitUntil(lambda: widget.velocity is not None, timeout=30_000)
    assert widget.velocity["per_pair_nm_s"].shape == (7, 2)
    assert "image velocity" in widget.status.text()
    QThreadPool.globalInstance().waitForDone(5000)
    assert QThreadPool.globalInstance().activeThreadCount() == 0


def test_empty_movie_and_bad_input_are_reported(make_napari_viewer, qtbot, monkeypatch):
    import napari.utils.notifications as notifications

    shown = []
    monkeypatch.setattr(notifications, "show_error", lambda msg: shown.append(msg))
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 32, 32), np.float32), name="empty")  # no pixel size
    widget = TrackingWidget(viewer)
    assert widget.start() is None and "pixel size" in shown[-1]
    widget.pixel_size.setValue(DX)
    widget.interval.setValue(0.1)
    widget.start()
    wait_done(qtbot, widget)
    assert "empty particles" in viewer.layers and len(viewer.layers["empty particles"].data) == 0
    assert "empty tracks" not in viewer.layers and "0 tracks" in widget.status.text()
    assert widget.run_button.isEnabled()
    viewer.layers.remove("empty")
    assert widget.start() is None and "choose a phase" in shown[-1]
