"""The reconstruction dock widget in a real viewer (pytest-qt, Xvfb)."""

import time

import torch  # noqa: F401  (before Qt)
import numpy as np
import pytest
from qtpy.QtCore import QThreadPool, QTimer

from napari_cxdi._napari.sample_data import movie_layers
from napari_cxdi.simulate import simulate_test_chart
from napari_cxdi.widgets.reconstruction_widget import PROBE_FROM_FILE, ReconstructionWidget

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer_with_movie(make_napari_viewer):
    viewer = make_napari_viewer()
    movie = simulate_test_chart(n_frames=6, size=32, seed=0)
    for data, kwargs, kind in movie_layers(movie, "chart"):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    return viewer


def tiny(widget: ReconstructionWidget, method="PID3Net-PO", epochs=2):
    widget.method_combo.setCurrentText(method)
    widget.epochs.setValue(epochs)
    widget.frames.setValue(3)
    widget.refine_steps.setValue(1)
    widget.width.setValue(4)
    widget.refine_width.setValue(32)  # the CPU preset's 8 makes a step so fast that training ends within one tick
    widget.device.setCurrentText("cpu")
    widget.max_iter.setValue(10)


def wait_done(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)
    QThreadPool.globalInstance().waitForDone(5000)


def test_widget_trains_reconstructs_and_adds_layers(viewer_with_movie, qtbot, tmp_path):
    viewer = viewer_with_movie
    widget = ReconstructionWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.movie_combo.currentText() == "chart diffraction"  # phase/probe layers are not offered
    tiny(widget, epochs=12)  # long enough (seconds) for the event-loop ticks to measure something
    gaps, last = [], [time.perf_counter()]

    def tick():  # event-loop latency while training runs (from the first step to the result)
        now = time.perf_counter()
        if widget._losses and widget.result is None:
            gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    worker = widget.start()
    assert worker is not None and not widget.run_button.isEnabled()
    assert widget.start() is None  # a second run while one is going is refused
    wait_done(qtbot, widget)
    timer.stop()
    assert widget.result is not None and not widget.result.cancelled
    phase = viewer.layers["chart phase (PID3Net-PO)"]
    assert phase.data.shape == (6, 32, 32)
    assert phase.scale[1] == pytest.approx(viewer.layers["chart diffraction"].scale[1])
    assert phase.colormap.name == "twilight_shifted"
    assert "chart amplitude (PID3Net-PO)" in viewer.layers
    assert not [layer for layer in viewer.layers if "preview" in layer.name]  # previews replaced by the final movie
    assert "R_f" in widget.metrics_label.text() and widget.plots.axes[1].lines
    dx = viewer.layers["chart diffraction"].scale[1]
    assert widget.result.pixel_size_nm == pytest.approx(dx)  # metrics in nm, not pixels
    assert widget.result.metrics["fourier_fit_resolution_nm"] >= 2 * dx - 1e-6
    assert widget.result.metrics["prtf_resolution_nm"] is None  # one run: no consistency PRTF
    assert len(gaps) >= 3 and max(gaps) < 3.0  # no freeze while training (latency is measured in benchmarks/)
    # save both outputs
    out = tmp_path / "recon.cxi"
    widget.save_reconstruction(out)
    qtbot.waitUntil(out.exists, timeout=20_000)
    assert widget.save_model(tmp_path / "m.pt").exists()
    QThreadPool.globalInstance().waitForDone(5000)
    assert QThreadPool.globalInstance().activeThreadCount() == 0


def test_cancel_never_replaces_the_last_good_model_and_the_widget_stays_usable(viewer_with_movie, qtbot):
    widget = ReconstructionWidget(viewer_with_movie)
    tiny(widget, epochs=200)
    widget.start()
    qtbot.waitUntil(lambda: len(widget._losses) >= 2, timeout=60_000)
    widget.cancel()
    wait_done(qtbot, widget, timeout=30_000)
    # nothing to save or reuse after a cancelled first run (issue 15, item 4)
    assert widget.result is None and widget.model is None
    assert not widget.save_model_button.isEnabled() and not widget.save_recon_button.isEnabled()
    assert widget.run_button.isEnabled() and "cancelled" in widget.status.text()
    assert not [layer for layer in viewer_with_movie.layers if "preview" in layer.name]
    assert widget._losses[-1][0] < 100  # stopped long before the end
    # a completed run, then a cancelled one: the completed model and result stay
    widget.epochs.setValue(2)
    widget.start()
    wait_done(qtbot, widget)
    good_model, good_result = widget.model, widget.result
    assert good_model is not None and not good_result.cancelled
    widget.epochs.setValue(200)
    widget.start()
    qtbot.waitUntil(lambda: len(widget._losses) >= 2, timeout=60_000)
    widget.cancel()
    wait_done(qtbot, widget, timeout=30_000)
    assert widget.model is good_model and widget.result is good_result
    assert widget.save_model_button.isEnabled() and widget.save_recon_button.isEnabled()
    # reuse the kept model without training: inference only
    widget.model_source.setCurrentText("reuse the last trained model")
    widget.start()
    wait_done(qtbot, widget)
    assert not widget.result.cancelled and "chart phase (PID3Net-PO)" in viewer_with_movie.layers
    assert widget.result.timings.get("training_s") is None


def test_errors_become_notifications(viewer_with_movie, qtbot, tmp_path, monkeypatch):
    import napari.utils.notifications as notifications

    shown = []
    monkeypatch.setattr(notifications, "show_error", lambda msg: shown.append(msg))
    widget = ReconstructionWidget(viewer_with_movie)
    tiny(widget)
    widget.probe_source.setCurrentText(PROBE_FROM_FILE)
    np.save(tmp_path / "bad_probe.npy", np.ones((2, 2, 2, 16, 16), np.complex64))  # (a smaller probe would be padded)
    widget.probe_path.setText(str(tmp_path / "bad_probe.npy"))
    assert widget.start() is None
    assert shown and "[modes, H, W]" in shown[-1] and "(2, 2, 2, 16, 16)" in shown[-1]
    widget.probe_path.setText(str(tmp_path / "missing.npy"))
    assert widget.start() is None and "file not found" in shown[-1]
    # an error inside the worker (T larger than the movie) is reported, and the widget recovers
    widget.probe_source.setCurrentText("probe of the movie layer")
    widget.frames.setValue(9)
    widget.start()
    wait_done(qtbot, widget)
    assert "T = 9" in shown[-1] and widget.run_button.isEnabled()


def test_iterative_baseline_from_the_widget(viewer_with_movie, qtbot):
    widget = ReconstructionWidget(viewer_with_movie)
    tiny(widget, method="mf-PIE")
    widget.start()
    wait_done(qtbot, widget)
    assert viewer_with_movie.layers["chart phase (mf-PIE)"].data.shape == (6, 32, 32)


def test_closing_the_widget_ends_the_worker(viewer_with_movie, qtbot):
    widget = ReconstructionWidget(viewer_with_movie)
    tiny(widget, epochs=500)
    worker = widget.start()
    qtbot.waitUntil(lambda: len(widget._losses) >= 1, timeout=60_000)
    widget.close()
    qtbot.waitUntil(lambda: not widget.running, timeout=30_000)
    QThreadPool.globalInstance().waitForDone(10_000)
    assert QThreadPool.globalInstance().activeThreadCount() == 0
    assert worker is not None


def test_console_one_liner(viewer_with_movie):
    from napari_cxdi._napari.scripting import reconstruct_layer

    result = reconstruct_layer(viewer_with_movie, "chart diffraction", method="mixed-state", max_iter=5, device="cpu")
    assert result.objects.shape == (6, 32, 32)
    assert result.metrics["fourier_fit_resolution_nm"] >= 2 * result.pixel_size_nm - 1e-6 > 50  # nm (29 nm pixels)
    assert "chart phase (mixed-state)" in viewer_with_movie.layers
