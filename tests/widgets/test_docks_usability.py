"""The napari docks on one worker controller and Qt-free sessions (issue 15): one test per numbered symptom.

Tiny movies and few epochs keep them fast; speed is measured in benchmarks/bench_gui_latency.py.
"""

import torch  # noqa: F401  (before Qt)
import numpy as np
import pytest
from qtpy.QtCore import QThreadPool
from qtpy.QtWidgets import QFileDialog

from napari_cxdi._napari.layers import phase_layer
from napari_cxdi._napari.sample_data import movie_layers
from napari_cxdi.simulate import simulate_test_chart
from napari_cxdi.widgets.reconstruction_widget import ReconstructionWidget

pytestmark = pytest.mark.gui


@pytest.fixture
def chart_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    movie = simulate_test_chart(n_frames=6, size=32, seed=0)
    for data, kwargs, kind in movie_layers(movie, "chart"):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    return viewer


@pytest.fixture
def notes(monkeypatch):
    import napari.utils.notifications as notifications

    shown = {"error": [], "warning": [], "info": []}
    for kind in shown:
        monkeypatch.setattr(notifications, f"show_{kind}", lambda msg, k=kind: shown[k].append(str(msg)))
    return shown


def wait_idle(qtbot, widget, timeout=120_000):
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)
    QThreadPool.globalInstance().waitForDone(5000)


def quick(widget, method="mf-PIE", epochs=2):
    widget.method_combo.setCurrentText(method)
    widget.epochs.setValue(epochs)
    widget.frames.setValue(3)
    widget.refine_steps.setValue(1)
    widget.width.setValue(4)
    widget.device.setCurrentText("cpu")
    widget.max_iter.setValue(10)


# -- 1. CPU defaults, ETA, previews ---------------------------------------------------------------------------
def test_1_cpu_preset_eta_and_preview_hidden_until_it_has_content(chart_viewer, qtbot, monkeypatch):
    from napari_cxdi.sessions import reconstruction as rs

    monkeypatch.setattr(rs, "cuda_available", lambda: False)
    widget = ReconstructionWidget(chart_viewer)
    assert widget.preset_combo.currentText() == rs.PRESET_QUICK and widget.method_combo.currentText() == "mf-PIE"
    assert "estimated time" in widget.eta_label.text() and "⚠" not in widget.eta_label.text()
    widget.preset_combo.setCurrentText(rs.PRESET_SMALL)
    assert widget.epochs.value() <= 5 and "⚠" not in widget.eta_label.text()
    widget.preset_combo.setCurrentText(rs.PRESET_FULL)
    widget.device.setCurrentText("cpu")
    widget.epochs.setValue(5000)
    assert "⚠" in widget.eta_label.text() and "more than 10 min" in widget.eta_label.text()
    assert widget.preset_combo.currentText() == rs.PRESET_CUSTOM  # an edited preset is custom
    widget.preset_combo.setCurrentText(rs.PRESET_SMALL)
    widget.device.setCurrentText("cpu")
    widget.frames.setValue(3)  # the 6-frame test movie
    widget.epochs.setValue(2)
    widget.start()
    assert not [layer for layer in chart_viewer.layers if "preview" in layer.name]  # no blank preview at start
    qtbot.waitUntil(lambda: widget.session.previews >= 1 or not widget.running, timeout=60_000)
    assert widget.session.t_first_preview is not None and widget.session.t_first_preview < 15
    wait_idle(qtbot, widget)
    # previews of a baseline too
    quick(widget, "mf-PIE")
    widget.start()
    wait_idle(qtbot, widget)
    assert widget.session.previews >= 1 and "chart phase (mf-PIE)" in chart_viewer.layers


# -- 2. compact docks -------------------------------------------------------------------------------------------
def test_2_every_dock_fits_a_laptop_and_two_fit_a_1080p_column(make_napari_viewer, qtbot):
    from napari_cxdi.widgets.molecule_widget import MoleculeWidget
    from napari_cxdi.widgets.speckle_widget import SpeckleWidget
    from napari_cxdi.widgets.tracking_widget import TrackingWidget

    viewer = make_napari_viewer()
    heights = {}
    for cls in (ReconstructionWidget, TrackingWidget, SpeckleWidget, MoleculeWidget):
        w = cls(viewer)
        dock = viewer.window.add_dock_widget(w, name=cls.__name__)
        heights[cls.__name__] = dock.minimumSizeHint().height()
        if cls is MoleculeWidget:
            w.cleanup()
    assert max(heights.values()) <= 648, heights
    two = sorted(heights.values())[-2:]
    assert sum(two) <= 1080 - 120, heights  # title bar, menus and status bar of the window


# -- 3. save dialogs overwrite what the user confirmed, never the input -----------------------------------------------
def test_3_confirmed_save_replaces_the_file_but_never_the_input(chart_viewer, qtbot, tmp_path, monkeypatch, notes):
    widget = ReconstructionWidget(chart_viewer)
    quick(widget, "PID3Net-PO", epochs=1)
    widget.start()
    wait_idle(qtbot, widget)
    recon, model = tmp_path / "recon.cxi", tmp_path / "model.pt"
    recon.write_bytes(b"old")
    model.write_bytes(b"old")
    answers = iter([str(recon), str(model)])
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (next(answers), "x"))
    widget.save_recon_button.click()
    qtbot.waitUntil(lambda: recon.stat().st_size > 100, timeout=20_000)
    widget.save_model_button.click()
    assert model.stat().st_size > 100 and not notes["error"]
    # the input movie is never replaced, even when confirmed
    src = tmp_path / "movie.cxi"
    src.write_bytes(b"input")
    chart_viewer.layers["chart diffraction"].metadata["source_path"] = str(src)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(src), "x"))
    widget.save_recon_button.click()
    qtbot.waitUntil(lambda: bool(notes["error"]), timeout=20_000)
    assert src.read_bytes() == b"input" and "Save reconstruction failed" in notes["error"][-1]
    QThreadPool.globalInstance().waitForDone(5000)


def test_3_tracking_export_dialog_overwrites(make_napari_viewer, qtbot, tmp_path, monkeypatch, notes):
    from test_tracking_widget import DX, moving_disks

    from napari_cxdi.widgets.tracking_widget import TrackingWidget

    viewer = make_napari_viewer()
    data, kwargs, _ = phase_layer(moving_disks(), "disks phase", DX, {"exposure_s": 0.1})
    viewer.add_image(data, **kwargs)
    widget = TrackingWidget(viewer)
    widget.start()
    wait_idle(qtbot, widget)
    out = tmp_path / "t.h5"
    out.write_bytes(b"old")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), "x"))
    widget.export_h5.click()
    assert out.stat().st_size > 100 and not notes["error"]


# -- 4. cancel: see test_reconstruction_widget.test_cancel_never_replaces_the_last_good_model... ----------------------
def test_4_cancel_clears_status_previews_and_save_buttons(chart_viewer, qtbot, notes):
    widget = ReconstructionWidget(chart_viewer)
    quick(widget, "PID3Net-PO", epochs=300)
    widget.preview_every.setValue(1)
    widget.start()
    qtbot.waitUntil(lambda: widget.session.previews >= 1, timeout=60_000)
    assert [layer for layer in chart_viewer.layers if "preview" in layer.name]
    widget.cancel()
    assert not widget.cancel_button.isEnabled()
    wait_idle(qtbot, widget)
    assert "cancelled" in widget.status.text() and "epoch" not in widget.status.text()
    assert not [layer for layer in chart_viewer.layers if "preview" in layer.name]
    assert not widget.save_recon_button.isEnabled() and not widget.save_model_button.isEnabled()
    assert widget.run_button.isEnabled() and widget.progress_bar.value() <= 0


# -- 5. errors, FRC, plots per run, method-specific controls, units, measured data first ------------------------------
def test_5_frc_with_ground_truth_fresh_plots_and_method_controls(chart_viewer, qtbot):
    widget = ReconstructionWidget(chart_viewer)
    quick(widget, "mf-PIE")
    assert widget.pid3net_section.isHidden() and not widget.baseline_section.isHidden()
    widget.method_combo.setCurrentText("PID3Net-PO")
    assert not widget.pid3net_section.isHidden() and widget.baseline_section.isHidden()
    widget.method_combo.setCurrentText("mf-PIE")
    assert "ground truth: chart true phase" in widget.truth_label.text()
    widget.start()
    wait_idle(qtbot, widget)
    m = widget.result.metrics
    assert "frc_resolution_nm" in m and "FRC" in widget.metrics_label.text()
    labels = [line.get_label() for line in widget.plots.axes[1].lines]
    assert "FRC" in labels and "Fourier fit" in labels  # one run: no consistency PRTF (issue 13)
    widget.start()  # a new run starts with empty plots
    assert not widget.plots.axes[1].lines and not widget.plots.axes[0].lines
    wait_idle(qtbot, widget)


def test_5_errors_name_what_failed_and_units_stay_consistent(chart_viewer, qtbot, tmp_path, notes):
    from napari_cxdi.widgets.tracking_widget import TrackingWidget

    widget = ReconstructionWidget(chart_viewer)
    quick(widget, "PID3Net-PO")
    widget.probe_source.setCurrentText("probe file…")
    widget.probe_path.setText(str(tmp_path / "missing.npy"))
    assert widget.start() is None
    assert notes["error"][-1].startswith("Reconstruction failed:") and "missing.npy" in notes["error"][-1]
    widget.probe_source.setCurrentText("probe of the movie layer")
    widget.method_combo.setCurrentText("mf-PIE")
    widget.start()
    wait_idle(qtbot, widget)
    tracker = TrackingWidget(chart_viewer)
    tracker.layer_combo.setCurrentText("chart phase (mf-PIE)")
    tracker.update_preview()
    tracker.start()
    wait_idle(qtbot, tracker)
    assert not [w for w in notes["warning"] if "Inconsistent units" in w]
    units = chart_viewer.layers.extent.units
    assert units is not None and str(units[-1]) == "nanometer"
    assert all(str(layer.units[-1]) == "nanometer" for layer in chart_viewer.layers)
    diffraction = chart_viewer.layers["chart diffraction"]
    assert diffraction.metadata["q_pixel_per_nm"] == pytest.approx(1 / (32 * diffraction.scale[-1]))


def test_5_the_first_view_shows_the_measured_data(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-cxdi", "test_chart")
    top = viewer.layers[-1]
    assert top.name.endswith("diffraction") and top.visible
    assert not viewer.layers["Ta chart true phase"].visible
    assert [layer.name for layer in viewer.layers if layer.visible] == [top.name]


# -- 6. speckle ---------------------------------------------------------------------------------------------------------
def test_6_speckle_generate_selects_the_new_layer_warns_out_of_domain_and_follows_the_theme(make_napari_viewer, qtbot,
                                                                                              tmp_path, monkeypatch):
    from test_speckle_widget import _run

    from napari_cxdi.speckle.classifier import SpeckleClassifier, save_checkpoint
    from napari_cxdi.speckle.patterns import PreprocessConfig
    from napari_cxdi.speckle.resnet import build_resnet
    from napari_cxdi.widgets import speckle_widget as sw

    warnings = []
    monkeypatch.setattr(sw, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    widget = sw.SpeckleWidget(viewer)
    widget.n_spin.setValue(3)
    widget.seed_spin.setValue(1)
    _run(qtbot, widget, widget.generate_sample)
    widget.layer_combo.setCurrentText("3 disks (monodisperse)")
    widget.poly_check.setChecked(True)
    widget.seed_spin.setValue(2)
    _run(qtbot, widget, widget.generate_sample)
    # the pattern layer of the second run was renamed by napari; the combo selects it, not the old one
    assert widget.layer_combo.currentText() == viewer.layers[-1].name == "speckle 3 disks [1]"
    torch.manual_seed(0)
    model = build_resnet(18, num_classes=3, width=8).eval()
    ckpt = save_checkpoint(SpeckleClassifier(model, np.array([2, 8, 20]), PreprocessConfig(window=513, bin=9)),
                           tmp_path / "tiny.pt")
    widget.model_edit.setText(str(ckpt))
    _run(qtbot, widget, widget.classify)
    result = widget.last_result
    if result["probs"][0].max() < 0.5:  # an untrained model is unsure: it must say so
        assert warnings and "out of the model's domain" in warnings[-1] and "⚠" in widget.result_label.text()
    assert "out_of_domain" in viewer.layers[widget.layer_combo.currentText()].metadata["speckle_prediction"]
    viewer.theme = "light"
    assert widget.canvas.figure.get_facecolor()[0] > 0.8  # a light background in the light theme
    viewer.theme = "dark"
    assert widget.canvas.figure.get_facecolor()[0] < 0.3


# -- 7. tracking ---------------------------------------------------------------------------------------------------------
def test_7_tracking_removes_the_preview_and_explains_zero_detections(make_napari_viewer, qtbot):
    from test_tracking_widget import DX, moving_disks

    from napari_cxdi.widgets.tracking_widget import TrackingWidget

    viewer = make_napari_viewer()
    data, kwargs, _ = phase_layer(moving_disks(), "disks phase", DX, {"exposure_s": 0.1})
    viewer.add_image(data, **kwargs)
    widget = TrackingWidget(viewer)
    widget.update_preview()
    assert "disks phase detection preview" in viewer.layers
    widget.start()
    wait_idle(qtbot, widget)
    assert "disks phase detection preview" not in viewer.layers
    assert "disks phase particles" in viewer.layers
    widget.threshold.setValue(2.0)  # above the particles' contrast (0.8)
    widget.start()
    wait_idle(qtbot, widget)
    text = widget.status.text()
    assert "0 detections" in text and "nan" not in text.lower() and "lower 'threshold'" in text
    widget.update_preview()
    assert "lower 'threshold'" in widget.preview_label.text()


# -- 8. molecules ----------------------------------------------------------------------------------------------------------
def test_8_molecules_fresh_combo_and_info_units_and_slider(make_napari_viewer, qtbot):
    from napari_cxdi import molecules as mol
    from napari_cxdi.widgets.molecule_widget import MoleculeWidget

    viewer = make_napari_viewer()
    for data, kwargs, kind in movie_layers(simulate_test_chart(n_frames=4, size=32, seed=0), "chart"):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    widget = MoleculeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    try:
        widget.load("ethanol")
        wait_idle(qtbot, widget, 60_000)
        widget.select_atom(0)
        assert "atom 0" in widget.info.text()
        widget.model_combo.setCurrentText("qm9-lumo")
        widget.load("deformed C60 trajectory (12 frames)", predict=False)
        # no stale atom description or property of the previous structure / model
        assert "atom 0" not in widget.info.text() and widget.selected is None
        assert [widget.property_combo.itemText(i) for i in range(widget.property_combo.count())] == ["lumo"]
        assert widget.slider.minimum() == 0 and widget.slider.maximum() == 11
        widget.set_frame(-4)
        assert widget.frame == 0 and widget.slider.value() == 0
        widget.load("ethanol", predict=False)
        assert widget.slider.minimum() == 0 and widget.slider.maximum() == 0
        points, vectors = widget.send_to_viewer()
        # Å coordinates converted to the movie's nm: a C-C bond of 1.5 Å is 0.15 nm
        span_nm = np.ptp(points.data, axis=0).max()
        span_a = np.ptp(mol.example("ethanol")[0].positions, axis=0).max()
        assert span_nm == pytest.approx(span_a / 10, rel=1e-6) and str(points.units[-1]) == "nanometer"
        camera = viewer.scene.camera if hasattr(getattr(viewer, "scene", None), "camera") else viewer.camera
        assert np.allclose(camera.center[-3:], points.data.mean(0), atol=1e-6)
    finally:
        widget.cleanup()


# -- settings are saved and restored through the form <-> config mapping ---------------------------------------------------
def test_settings_save_and_restore(chart_viewer, tmp_path, notes):
    import json

    from napari_cxdi.widgets.tracking_widget import TrackingWidget

    widget = ReconstructionWidget(chart_viewer)
    quick(widget, "PID3Net-NR", epochs=7)
    widget.lr.setValue(0.002)
    path = widget.save_settings_dialog(tmp_path / "recon.json")
    saved = json.loads(path.read_text())["config"]["settings"]
    assert saved["method"] == "PID3Net-NR" and saved["pid3net"]["epochs"] == 7 and saved["pid3net"]["lr"] == 0.002
    widget.preset_combo.setCurrentText("quick: mf-PIE baseline")
    assert widget.method_combo.currentText() == "mf-PIE"
    widget.load_settings_dialog(path)
    assert widget.method_combo.currentText() == "PID3Net-NR" and widget.epochs.value() == 7
    assert widget.lr.value() == pytest.approx(0.002) and widget.settings().pid3net.epochs == 7
    assert widget.load_settings_dialog(tmp_path / "missing.json") is None and "Load settings failed" in notes["error"][-1]
    tracker = TrackingWidget(chart_viewer)
    tracker.threshold.setValue(0.4)
    tracker.memory.setValue(4)
    tpath = tracker.save_settings(tmp_path / "track.json")
    tracker.threshold.setValue(0.1)
    cfg = tracker.load_settings(tpath)
    assert cfg.detection.threshold == pytest.approx(0.4) and tracker.threshold.value() == pytest.approx(0.4)
    assert tracker.memory.value() == 4
    with pytest.raises(Exception, match="not settings of the tracking dock"):
        tracker.load_settings(path)
