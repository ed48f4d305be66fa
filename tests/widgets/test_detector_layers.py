"""Detector layers in napari: mask (Labels), beam centre (Points), crop box (Shapes), and reading them back."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_cxdi._napari.detector_layers import detector_inputs
from napari_cxdi._napari.reader import get_reader
from napari_cxdi.simulate import simulate_aunp
from napari_cxdi.simulate.detector import DetectorLayout, place_on_detector, write_eiger_master


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    sim = simulate_aunp(n_frames=4, size=64, seed=5)
    folder = tmp_path_factory.mktemp("eiger")
    layout = DetectorLayout()
    path = write_eiger_master(folder, place_on_detector(sim.counts, layout), layout, 8.0, 5.0, 75.0)
    np.save(folder / "probe.npy", sim.probe)
    return path, sim, layout


def _as_layers(layer_data):
    layers = {}
    for data, kwargs, kind in layer_data:
        layers[kwargs["name"]] = SimpleNamespace(data=data, metadata=kwargs["metadata"], kind=kind)
    return layers


def test_reader_adds_linked_mask_centre_and_crop_layers(master):
    path, _, layout = master
    data = get_reader(str(path))(str(path))
    kinds = [(kw["name"], kind) for _, kw, kind in data]
    assert kinds == [("series_master diffraction", "image"), ("series_master mask", "labels"),
                     ("series_master beam centre", "points"), ("series_master crop", "shapes")]
    layers = _as_layers(data)
    diffraction = layers["series_master diffraction"]
    np.testing.assert_array_equal(layers["series_master mask"].data, layout.pixel_mask() != 0)
    np.testing.assert_array_equal(layers["series_master beam centre"].data, [[71.0, 62.0]])
    # untouched layers give the file's own settings; the box shows the largest centred window, and while
    # it is untouched the crop follows the probe's size
    assert np.ptp(np.asarray(layers["series_master crop"].data[0])[:, 0]) == 124
    inputs = detector_inputs(diffraction, layers)
    det = inputs["detector"]
    assert det.center == (71.0, 62.0) and det.crop_size is None and inputs["movie"].shape == (4, 150, 140)
    np.testing.assert_array_equal(det.mask, layout.pixel_mask() != 0)


def test_painting_dragging_and_resizing_change_what_is_used(master):
    path, _, _ = master
    layers = _as_layers(get_reader(str(path))(str(path)))
    diffraction = layers["series_master diffraction"]
    layers["series_master mask"].data = layers["series_master mask"].data.copy()
    layers["series_master mask"].data[10:12, 20:30] = 1  # painted
    layers["series_master mask"].data[70:72, 5] = 0  # erased
    layers["series_master beam centre"].data = np.array([[72.4, 61.2]])  # dragged
    y0, x0 = 40.0, 30.0
    layers["series_master crop"].data = [np.array([[y0, x0], [y0, x0 + 48], [y0 + 48, x0 + 48], [y0 + 48, x0]])]
    det = detector_inputs(diffraction, layers)["detector"]
    assert det.mask[10:12, 20:30].all() and not det.mask[70:72, 5].any() and det.use_file_mask is False
    assert det.center == pytest.approx((72.4, 61.2)) and det.crop_size == 48
    assert detector_inputs(SimpleNamespace(data=np.zeros((2, 8, 8)), metadata={}), layers) == {}


@pytest.mark.gui
def test_reconstruct_layer_uses_the_painted_mask(make_napari_viewer, master):
    from napari_cxdi._napari.scripting import reconstruct_layer

    path, sim, _ = master
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-cxdi")
    mask = viewer.layers["series_master mask"]
    painted = mask.data.copy()
    painted[50:53, 40:44] = 1  # inside the 64 x 64 window around (71, 62)
    mask.data = painted
    result = reconstruct_layer(viewer, "series_master diffraction", method="mixed-state", probe=sim.probe,
                               max_iter=3, evaluate_metrics=True)
    assert result.objects.shape == (4, 64, 64)
    assert result.mask[50 - 39 : 53 - 39, 40 - 30 : 44 - 30].all()
    assert any(layer.name.startswith("series_master intensity, gaps filled") for layer in viewer.layers)
