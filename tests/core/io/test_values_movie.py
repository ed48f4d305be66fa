"""Value tests of io/movie.py's Movie (issue 20, mutation testing): shape, laziness, pixel size, describe."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from napari_cxdi.io.movie import Movie
from napari_cxdi.physics.geometry import Geometry, wavelength_m


def test_shape_frames_and_laziness(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    m = Movie(data)
    assert m.shape == (2, 3, 4) and isinstance(m.shape, tuple) and m.n_frames == 2 and not m.is_lazy
    assert m.format == "array" and m.path is None and m.dataset is None and m.metadata == {} and not m.prepared
    f = m.frames(1, 2)
    assert f.dtype == np.float32 and f.shape == (1, 3, 4) and f[0, 2, 3] == 23.0
    raw = m.frames_raw(0, 1)
    assert raw.dtype == np.uint16 and raw[0, 1, 1] == 5
    lazy = Movie(da.from_array(data, chunks=(1, 3, 4)))
    assert lazy.is_lazy and lazy.frames(0, 2).dtype == np.float32 and lazy.frames(0, 2)[1, 0, 0] == 12.0
    assert lazy.frames_raw(1, 2).dtype == np.uint16 and isinstance(lazy.frames_raw(1, 2), np.ndarray)
    np.save(tmp_path / "a.npy", data)
    assert Movie(np.load(tmp_path / "a.npy", mmap_mode="r")).is_lazy


def test_pixel_size_given_or_from_geometry():
    data = np.zeros((1, 64, 64), np.float32)
    assert Movie(data, metadata={"pixel_size_nm": 7}).pixel_size_nm == 7.0
    meta = {"energy_kev": 8.0, "distance_m": 5.0, "detector_pixel_um": 75.0}
    m = Movie(data, metadata=dict(meta))
    expected = Geometry(8.0, 5.0, 75.0, 64).pixel_size_nm
    assert m.geometry == Geometry(8.0, 5.0, 75.0, 64)
    assert m.pixel_size_nm == pytest.approx(expected)
    assert m.pixel_size_nm == pytest.approx(wavelength_m(8.0) * 5.0 / (64 * 75e-6) * 1e9)
    for k in meta:
        assert Movie(data, metadata={**meta, k: 0}).geometry is None
        assert Movie(data, metadata={**meta, k: 0}).pixel_size_nm is None
    assert Movie(data, metadata={**meta, "pixel_size_nm": 0}).pixel_size_nm == pytest.approx(expected)


def test_describe_values():
    class Mask:
        n_bad = 3

    data = np.zeros((2, 64, 64), np.int32)
    probe = np.ones((3, 64, 64), np.complex64)
    meta = {"energy_kev": 8.0, "distance_m": 5.0, "detector_pixel_um": 75.0, "note": "x",
            "table": {"a": 1}, "list": [1], "arr": np.ones(2)}
    info = Movie(data, path=Path("/d/m.cxi"), dataset="/entry/data", format="cxi", metadata=meta, probe=probe,
                 mask=Mask()).describe()
    px = round(Geometry(8.0, 5.0, 75.0, 64).pixel_size_nm, 4)
    assert info == {"path": "/d/m.cxi", "format": "cxi", "dataset": "/entry/data", "shape": [2, 64, 64],
                    "dtype": "int32", "lazy": False, "probe_modes": 3, "masked_pixels": 3, "energy_kev": 8.0,
                    "distance_m": 5.0, "detector_pixel_um": 75.0, "note": "x", "pixel_size_nm": px,
                    "wavelength_A": round(wavelength_m(8.0) * 1e10, 5)}
    assert info["wavelength_A"] == pytest.approx(1.54980, abs=1e-5)
    bare = Movie(data).describe()
    assert bare == {"path": None, "format": "array", "dataset": None, "shape": [2, 64, 64], "dtype": "int32",
                    "lazy": False, "probe_modes": None}
    assert Movie(data, metadata={"pixel_size_nm": 1.234567}).describe()["pixel_size_nm"] == 1.2346
