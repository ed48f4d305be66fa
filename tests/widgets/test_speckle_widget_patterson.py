"""The speckle dock with the shipped 2-D ``speckle-poly`` (Patterson) model: classify by name, then Explain
draws the saliency over the pattern and the Patterson map with its Grad-CAM beside it."""

import torch  # noqa: F401  (torch before Qt)

import numpy as np
import pytest

from napari_cxdi._napari.speckle_sample import simulate_speckle_layers


def _run(qtbot, widget, action, timeout=60000):
    worker = action()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)
    return worker


def test_dock_poly_model_explains_with_the_patterson_map(make_napari_viewer, qtbot, monkeypatch):
    from napari_cxdi.errors import InputFileError
    from napari_cxdi.speckle.models import model_path
    from napari_cxdi.widgets import speckle_widget as sw

    try:
        model_path("speckle-poly")
    except InputFileError:
        pytest.skip("speckle-poly not trained yet")
    errors = []
    monkeypatch.setattr(sw, "show_error", errors.append)
    monkeypatch.setattr(sw, "show_warning", lambda *a: None)
    viewer = make_napari_viewer()
    widget = sw.SpeckleWidget(viewer)
    widget.model_edit.setText("speckle-poly")
    for data, kwargs, _ in simulate_speckle_layers(4, seed=5, polydisperse=True, window=513):
        viewer.add_image(data, **kwargs)
    name = [layer.name for layer in viewer.layers if layer.name.startswith("speckle")][0]
    widget.layer_combo.setCurrentText(name)
    _run(qtbot, widget, widget.classify)
    assert not errors
    assert 2 <= int(widget.last_result["pred"][0]) <= 20
    _run(qtbot, widget, widget.explain)
    assert not errors
    pattern = viewer.layers[name].data
    sal = viewer.layers[f"Saliency {name}"].data
    assert sal.shape == pattern.shape[-2:] and sal.max() == pytest.approx(1.0)
    pmap = viewer.layers[f"Patterson {name}"]
    cam = viewer.layers[f"Patterson Grad-CAM {name}"]
    assert pmap.data.shape == cam.data.shape == (121, 121)
    # the map sits to the right of the pattern, not over it
    assert pmap.translate[-1] > pattern.shape[-1]
    np.testing.assert_allclose(cam.data, cam.data[::-1, ::-1], atol=1e-6)
