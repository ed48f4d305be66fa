"""The molecule dock widget in a real viewer (pytest-qt, Xvfb): load, predict, colour, step, pick, export."""

import torch  # noqa: F401  (before Qt)
import numpy as np
import pytest
from qtpy.QtCore import QThreadPool

from napari_cxdi import molecules as mol
from napari_cxdi.widgets.molecule_widget import COLOR_ELEMENT, MODEL_FILE, MoleculeWidget, show_molecule

pytestmark = pytest.mark.gui


def wait_idle(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)
    QThreadPool.globalInstance().waitForDone(5000)


@pytest.fixture
def docked(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    widget = MoleculeWidget(viewer)
    dock = viewer.window.add_dock_widget(widget, name="molecules", area="right")
    widget.canvas.native.resize(400, 380)
    qtbot.waitExposed(widget.canvas.native)
    yield viewer, widget, dock
    widget.cleanup()


def test_load_predict_colour_pick_and_export(docked, qtbot, tmp_path):
    viewer, widget, _ = docked
    widget.load("acetic acid")
    assert widget.results is None and widget.running  # prediction runs in a worker
    before = widget.canvas.colors.copy()  # element colours while predicting
    wait_idle(qtbot, widget)
    res = widget.results[0]
    assert widget.property_combo.currentText() == "homo" and "homo" in res.properties
    colors = widget.canvas.colors
    assert not np.allclose(colors, before)
    # colours follow the scores: the atom with the highest GA is the brightest in viridis, and
    # changing the scores changes the colours
    scale = widget.color_scale()
    assert np.argmax(scale.values) == np.argmax(res.ga_scores)
    np.testing.assert_allclose(colors, mol.map_colors(scale.values, scale.limits, "viridis"), atol=1e-6)
    res.ga_scores = res.ga_scores[::-1].copy()
    widget.update_colors()
    assert not np.allclose(widget.canvas.colors, colors)
    widget.cmap_combo.setCurrentText("magma")
    widget.scaling_combo.setCurrentText(mol.SCALINGS[1])
    assert widget.color_scale().limits == pytest.approx((res.ga_scores.min(), res.ga_scores.max()))
    widget.color_by.setCurrentText(COLOR_ELEMENT)
    np.testing.assert_allclose(widget.canvas.colors, mol.element_colors(widget.frames[0].numbers))
    widget.color_by.setCurrentText("GA score")
    # pick the oxygen of the carbonyl at its screen position -> info + Voronoi neighbours highlighted
    o = int(np.flatnonzero(widget.frames[0].numbers == 8)[0])
    picked = widget.pick(widget.canvas.screen_position(o))
    assert picked is not None
    widget.select_atom(picked)
    sym = widget.frames[0].get_chemical_symbols()[picked]
    assert f"atom {picked}: {sym}" in widget.info.text() and "GA α" in widget.info.text()
    assert "Voronoi neighbours" in widget.info.text() and widget.canvas.highlight_visual.visible
    # screenshot is not blank, and differs from an empty scene
    shot = widget.save_screenshot(tmp_path / "view.png")
    import matplotlib.image as mimg

    img = mimg.imread(shot)
    assert img.shape[0] > 100 and img[..., :3].std() > 0.02
    bg = img[0, 0, :3]
    assert (np.abs(img[..., :3] - bg).sum(-1) > 0.1).mean() > 0.01  # a real share of pixels show atoms
    # extxyz carries ga_score
    import ase.io

    out = widget.export_extxyz(tmp_path / "scored.extxyz")
    back = ase.io.read(out)
    np.testing.assert_allclose(back.arrays["ga_score"], res.ga_scores, atol=1e-6)
    assert back.info["homo_pred"] == pytest.approx(res.properties["homo"])


def test_picking_agrees_with_the_rendered_image(docked, qtbot):
    _, widget, _ = docked
    widget.load("C60 (fullerene)", predict=False)
    canvas = widget.canvas
    agree = 0
    for j in range(0, 60, 4):
        xy = canvas.screen_position(j)
        i = canvas.pick(xy)
        assert i is not None
        col = np.tile([[0, 0, 1, 1.0]], (60, 1))
        col[i] = (1, 0, 0, 1)
        canvas.set_colors(col)
        px = canvas.render()[int(round(xy[1])), int(round(xy[0])), :3].astype(int)
        agree += px[0] > px[2]  # the picked atom is the one drawn at that pixel
    assert agree >= 12  # of 15 (a front bond may cover an atom centre)


def test_trajectory_slider_plot_and_play(docked, qtbot):
    _, widget, _ = docked
    widget.load("deformed C60 trajectory (12 frames)")
    wait_idle(qtbot, widget)
    assert len(widget.results) == 12 and widget.slider.maximum() == 11 and widget.slider.isEnabled()
    line = widget.plot.axes[0].lines[0]
    np.testing.assert_allclose(line.get_ydata(), [r.properties["homo"] for r in widget.results])
    pos0, col0 = widget.canvas.positions.copy(), widget.canvas.colors.copy()
    widget.slider.setValue(3)
    assert widget.frame == 3 and "frame 4/12" == widget.frame_label.text()
    np.testing.assert_allclose(widget.canvas.positions, widget.frames[3].positions)
    assert not np.allclose(widget.canvas.positions, pos0) and not np.allclose(widget.canvas.colors, col0)
    assert widget._frame_line.get_xdata()[0] == 4
    assert "frame 4" in widget.status.text()
    widget.play_button.setChecked(True)
    qtbot.waitUntil(lambda: widget.frame >= 5, timeout=5000)
    widget.play_button.setChecked(False)


def test_send_to_viewer_adds_points_and_vectors(docked, qtbot):
    viewer, widget, _ = docked
    widget.load("ethanol")
    wait_idle(qtbot, widget)
    points, vectors = widget.send_to_viewer()
    assert points.data.shape == (9, 3) and viewer.dims.ndisplay == 3
    np.testing.assert_allclose(points.features["ga_score"], widget.results[0].ga_scores)
    assert vectors.data.shape == (8, 2, 3)
    assert len({tuple(c) for c in np.round(points.face_color, 3)}) > 2  # coloured by GA, not uniform
    widget.load("deformed C60 trajectory (12 frames)")
    wait_idle(qtbot, widget)
    points, vectors = widget.send_to_viewer()
    assert points.data.shape == (720, 4) and vectors.data.shape == (12 * 90, 2, 4)
    assert set(points.features["frame"]) == set(range(12))


def test_dock_resize_hide_show_and_no_floating(docked, qtbot):
    _, widget, dock = docked
    widget.load("benzene", predict=False)
    dock.resize(520, 800)
    qtbot.wait(50)
    dock.hide()
    qtbot.wait(50)
    dock.show()
    qtbot.waitExposed(widget.canvas.native)
    img = widget.canvas.render()
    assert img[..., :3].std() > 5
    assert not (dock.features() & dock.DockWidgetFeature.DockWidgetFloatable)
    dock.setFloating(True)
    qtbot.wait(50)
    assert not dock.isFloating()


def test_errors_are_notified_and_the_widget_stays_usable(docked, qtbot, tmp_path, monkeypatch):
    import napari.utils.notifications as notifications

    shown = []
    monkeypatch.setattr(notifications, "show_error", lambda msg: shown.append(msg))
    _, widget, _ = docked
    assert widget.predict() is None and "load a structure" in shown[-1]
    widget.load("ethanol", predict=False)
    widget.model_combo.setCurrentText(MODEL_FILE)
    widget.model_path.setText(str(tmp_path / "missing.pt"))
    assert widget.predict() is None and "missing.pt" in shown[-1]
    bad = tmp_path / "bad.xyz"
    bad.write_text("not a molecule\n")
    widget.load(bad)
    wait_idle(qtbot, widget)
    assert "bad.xyz" in shown[-1] and widget.frames[0].get_chemical_formula() == "C2H6O"
    with pytest.raises(Exception, match="prediction first"):
        widget.export_extxyz(tmp_path / "x.extxyz")
    widget.model_combo.setCurrentText("qm9-lumo")
    widget.predict()
    wait_idle(qtbot, widget)
    assert "lumo" in widget.results[0].properties and widget.predict_button.isEnabled()


def test_console_one_liner_with_a_trajectory_file(make_napari_viewer, qtbot, tmp_path):
    import ase.io

    path = tmp_path / "traj.xyz"
    ase.io.write(path, mol.deformed_fullerene(n_frames=3))
    viewer = make_napari_viewer(show=True)
    widget = show_molecule(viewer, path, model="qm9-lumo", colormap="plasma")
    qtbot.waitUntil(lambda: widget.results is not None, timeout=60_000)
    wait_idle(qtbot, widget)
    assert len(widget.frames) == 3 and "lumo" in widget.results[0].properties
    assert widget.name == "traj" and widget.cmap_combo.currentText() == "plasma"
    widget.cleanup()
