"""The speckle dock with the shipped radial model by name: out-of-domain notification and q-ring overlay."""

import torch  # noqa: F401  (torch before Qt)

import numpy as np
import pytest

from napari_cxdi._napari.speckle_sample import simulate_speckle_layers


def _run(qtbot, widget, action, timeout=60000):
    worker = action()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)
    return worker


def test_dock_by_name_warns_and_draws_rings(make_napari_viewer, qtbot, monkeypatch):
    from napari_cxdi.speckle.models import model_path
    from napari_cxdi.widgets import speckle_widget as sw

    if not model_path("speckle-mono").is_file():
        pytest.skip("speckle-mono not trained yet")
    errors, warned = [], []
    monkeypatch.setattr(sw, "show_error", errors.append)
    monkeypatch.setattr(sw, "show_warning", warned.append)
    viewer = make_napari_viewer()
    widget = sw.SpeckleWidget(viewer)
    assert widget.model_edit.text() == "speckle-mono"
    for data, kwargs, _ in simulate_speckle_layers(5, seed=3, polydisperse=True, window=513):
        viewer.add_image(data, **kwargs)
    name = [layer.name for layer in viewer.layers if layer.name.startswith("speckle")][0]
    widget.layer_combo.setCurrentText(name)
    _run(qtbot, widget, widget.classify)
    assert not errors
    assert widget.last_result["ood"].tolist() == [True]
    assert warned and "outside the training domain of speckle-mono" in warned[-1]
    assert "outside the training domain" in widget.result_label.text()

    _run(qtbot, widget, widget.explain)
    assert not errors
    rings = viewer.layers[f"q-rings {name}"]
    assert rings.nshapes >= 1 and set(rings.shape_type) == {"ellipse"}
    # circles are centred on the pattern's k = 0 pixel
    h, w = viewer.layers[name].data.shape[-2:]
    centre = np.mean(rings.data[0], axis=0)
    np.testing.assert_allclose(centre, [h // 2, w // 2], atol=1e-6)

    widget.model_edit.setText("speckle-crystal")
    assert widget.classify() is None
    assert "unknown speckle model" in errors[-1]
