"""The npe2 reader, writer and sample data, with and without a real viewer."""

import h5py
import numpy as np
import pytest

from napari_cxdi._napari.reader import get_reader
from napari_cxdi._napari.sample_data import sample_aunp, sample_test_chart
from napari_cxdi._napari.writer import write_image_cxi
from napari_cxdi.io import open_movie, write_cxi
from napari_cxdi.simulate import simulate_aunp


@pytest.fixture(scope="module")
def movie_file(tmp_path_factory):
    m = simulate_aunp(n_frames=4, size=64, seed=2)
    path = tmp_path_factory.mktemp("data") / "aunp.cxi"
    meta = {k: v for k, v in m.metadata.items() if k != "config"}
    return write_cxi(path, counts=m.counts, probe=m.probe, reconstruction=m.objects, metadata=meta)


def test_reader_claims_ours_and_declines_foreign_hdf5(tmp_path, movie_file):
    assert get_reader(str(movie_file)) is not None
    foreign = tmp_path / "table.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(10)
        f["y"] = np.arange(10)
    assert get_reader(str(foreign)) is None
    assert get_reader(str(tmp_path / "notes.txt")) is None


def test_reader_layers_have_nm_scale_and_probe(movie_file):
    layers = get_reader(str(movie_file))(str(movie_file))
    names = [kwargs["name"] for _, kwargs, _ in layers]
    assert names == ["aunp diffraction", "aunp probe", "aunp amplitude", "aunp phase"]
    data, kwargs, kind = layers[0]
    assert kind == "image" and data.shape == (4, 64, 64)
    assert kwargs["scale"][1] == pytest.approx(27.035, abs=0.01)
    assert kwargs["metadata"]["probe"].shape == (4, 64, 64)
    phase = layers[3]
    assert phase[1]["colormap"] == "twilight_shifted"


def test_sample_data_functions():
    layers = sample_aunp()
    kinds = [(kw["name"], t) for _, kw, t in layers]
    # ground truth first and hidden, the measured diffraction last: on top, the first thing shown (issue 15)
    assert kinds[-1] == ("AuNP diffraction", "image") and ("AuNP true tracks", "tracks") in kinds
    assert all(not kw.get("visible", True) for _, kw, _ in layers[:-1])
    assert layers[-1][0].shape == (64, 128, 128)
    assert layers[0][1]["scale"] == layers[-1][1]["scale"]
    assert sample_test_chart()[-1][0].shape == (64, 128, 128)


def test_writer_refuses_to_overwrite_the_source(tmp_path, movie_file):
    movie = open_movie(movie_file)
    attrs = {"name": "d", "metadata": {"kind": "diffraction", "source_path": str(movie_file)}, "scale": (1, 27, 27)}
    with pytest.raises(Exception, match="input"):
        write_image_cxi(str(movie_file), movie.data, attrs)
    out = write_image_cxi(str(tmp_path / "copy.cxi"), movie.data, attrs)
    assert open_movie(out[0]).shape == (4, 64, 64)


@pytest.mark.gui
def test_open_file_and_sample_in_a_real_viewer(make_napari_viewer, movie_file, tmp_path):
    viewer = make_napari_viewer()
    viewer.open(str(movie_file), plugin="napari-cxdi")
    assert [layer.name for layer in viewer.layers] == ["aunp diffraction", "aunp probe", "aunp amplitude", "aunp phase"]
    assert viewer.layers["aunp phase"].scale[1] == pytest.approx(27.035, abs=0.01)
    viewer.open_sample("napari-cxdi", "aunp")
    assert "AuNP true tracks" in [layer.name for layer in viewer.layers]
    assert viewer.layers["AuNP diffraction"].data.shape == (64, 128, 128)
    # a corrupt file reports our message, naming the file
    bad = tmp_path / "broken.cxi"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(Exception, match="broken.cxi.*truncated or corrupt"):
        viewer.open(str(bad), plugin="napari-cxdi")
