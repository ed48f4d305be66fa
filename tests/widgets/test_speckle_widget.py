"""The speckle dock widget in a real viewer, and the sample-data function."""

import torch  # noqa: F401  (torch before Qt)

import numpy as np
import pytest

from napari_cxdi._napari.speckle_sample import make_speckle_sample, simulate_speckle_layers
from napari_cxdi.speckle.classifier import SpeckleClassifier, save_checkpoint
from napari_cxdi.speckle.patterns import PreprocessConfig
from napari_cxdi.speckle.resnet import build_resnet


def test_sample_data_function():
    layers = simulate_speckle_layers(5, seed=1, polydisperse=True, window=257)
    (disks, dkw, dkind), (pattern, pkw, pkind) = layers
    assert dkind == pkind == "image"
    assert disks.shape == (2001, 2001) and pattern.shape == (257, 257)
    assert dkw["metadata"]["n_disks"] == 5 and len(dkw["metadata"]["radii"]) == 5
    assert np.all(pattern[123:134, 123:134] == 0) and pattern.max() > 0
    assert len(make_speckle_sample()) == 2


@pytest.fixture
def tiny_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_resnet(18, num_classes=3, width=8).eval()
    clf = SpeckleClassifier(model, np.array([2, 8, 20]), PreprocessConfig(window=513, bin=9))
    return str(save_checkpoint(clf, tmp_path / "tiny.pt"))


def _run(qtbot, widget, action, timeout=60000):
    """Start a widget action and wait until its worker has finished (the widget's own finished slot,
    connected before the thread starts, clears ``widget.worker``)."""
    worker = action()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)
    assert worker.is_running is False
    return worker


def test_widget_classifies_explains_and_generates(make_napari_viewer, qtbot, tiny_checkpoint, monkeypatch):
    from qtpy.QtCore import QThreadPool

    from napari_cxdi.widgets import speckle_widget as sw

    errors = []
    monkeypatch.setattr(sw, "show_error", errors.append)
    viewer = make_napari_viewer()
    widget = sw.SpeckleWidget(viewer)
    viewer.window.add_dock_widget(widget)
    for data, kwargs, _ in simulate_speckle_layers(8, seed=2):
        viewer.add_image(data, **kwargs)
    stack = np.stack([viewer.layers["speckle 8 disks"].data] * 3)
    viewer.add_image(stack, name="stack")

    widget.model_edit.setText(tiny_checkpoint)
    widget.layer_combo.setCurrentText("speckle 8 disks")
    _run(qtbot, widget, widget.classify)
    assert not errors
    result = widget.last_result
    assert result["probs"].shape == (1, 3) and np.isclose(result["probs"].sum(), 1, atol=1e-5)
    assert widget.result_label.text().startswith("n = ")
    assert viewer.layers["speckle 8 disks"].metadata["speckle_prediction"]["n"][0] in (2, 8, 20)
    assert widget.classify_button.isEnabled()

    widget.layer_combo.setCurrentText("stack")
    widget.stack_check.setChecked(True)
    _run(qtbot, widget, widget.classify)
    assert widget.last_result["pred"].shape == (3,) and len(set(widget.last_result["pred"].tolist())) == 1

    widget.layer_combo.setCurrentText("speckle 8 disks")
    _run(qtbot, widget, widget.explain)
    cam = viewer.layers["Grad-CAM speckle 8 disks"]
    assert cam.data.shape == (513, 513) and cam.data.max() <= 1

    n_layers = len(viewer.layers)
    widget.n_spin.setValue(4)
    _run(qtbot, widget, widget.generate_sample)
    assert len(viewer.layers) == n_layers + 2 and "speckle 4 disks" in viewer.layers

    # errors become notifications; the widget stays usable
    widget.model_edit.setText(str(tiny_checkpoint) + ".missing")
    assert widget.classify() is None
    assert errors and "not found" in errors[-1]
    bad = tiny_checkpoint.replace("tiny.pt", "bad.pt")
    with open(bad, "wb") as f:
        f.write(b"garbage")
    widget.model_edit.setText(bad)
    _run(qtbot, widget, widget.classify)
    assert "cannot read checkpoint" in errors[-1]
    assert widget.classify_button.isEnabled() and widget.sample_button.isEnabled()

    assert QThreadPool.globalInstance().waitForDone(10000)
    assert QThreadPool.globalInstance().activeThreadCount() == 0
