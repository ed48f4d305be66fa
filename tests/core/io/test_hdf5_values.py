"""Value tests of io/hdf5.py (issue 20, mutation testing): units of every geometry value, layout detection
(CXI, NeXus default signal, EIGER links, plain HDF5), typed errors with their messages, lazy reads.
"""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

from napari_cxdi.errors import DataValidationError, InputFileError
from napari_cxdi.io.hdf5 import (
    CXI_PROBE_PATHS, GEOMETRY_KEYS, HDF5_SUFFIXES, JOULE_PER_KEV, MAX_PROBE_BYTES, RECONSTRUCTION_PATH, _generic_candidates,
    _nexus_signal, _nx_class, _read_metadata, _scalar, _LENGTH, check_geometry_metadata, dangling_links, inspect_hdf5,
    is_hdf5, read_hdf5_movie, read_hdf5_probe, read_hdf5_reconstruction,
)
from napari_cxdi.io.lazy import h5_stack_of


def _h5(path, build):
    with h5py.File(path, "w") as f:
        build(f)
    return path


def _frames(t=3, h=8, w=9, dtype=np.uint16):
    return (np.arange(t * h * w) % 50 + 1).reshape(t, h, w).astype(dtype)


# -- scalars and metadata ------------------------------------------------------------------------

def test_scalar_units_and_shapes(tmp_path):
    def build(f):
        f["a"] = 2.5
        f["b"] = np.array([[3.0, 4.0]])
        f["b"].attrs["units"] = b"mm"
        f["c"] = np.int32(7)
        f["c"].attrs["unit"] = " UM "
        f["d"] = 1.5
        f["d"].attrs["units"] = "furlong"  # unknown: the default unit
        f["s"] = "text"
        f["e"] = np.zeros(0)
        f["z"] = np.array([1 + 1j])
        f.create_group("g")
        f["u"] = np.uint8(3)
        f["w"] = 5.0
        f["w"].attrs["units"] = "mm"
        f["w"].attrs["unit"] = "m"
    with h5py.File(_h5(tmp_path / "s.h5", build), "r") as f:
        assert _scalar(f, ("a",), _LENGTH, "m") == 2.5
        assert _scalar(f, ("b",), _LENGTH, "m") == pytest.approx(3e-3)
        assert _scalar(f, ("c",), _LENGTH, "m") == pytest.approx(7e-6)
        assert _scalar(f, ("d",), _LENGTH, "mm") == pytest.approx(1.5e-3)
        assert _scalar(f, ("d",), _LENGTH, "parsec") == 1.5
        assert _scalar(f, ("w",), _LENGTH, "m") == pytest.approx(5e-3)  # 'units' before 'unit'
        assert _scalar(f, ("missing", "s", "e", "z", "g", "u"), _LENGTH, "m") == 3.0
        assert _scalar(f, ("missing", "s", "e", "z", "g"), _LENGTH, "m") is None
        assert _scalar(f, ("a", "u"), _LENGTH, "m") == 2.5
        assert isinstance(_scalar(f, ("c",), _LENGTH, "m"), float)


def test_cxi_metadata_units(tmp_path):
    def build(f):
        f["entry_1/instrument_1/source_1/energy"] = 8.0 * JOULE_PER_KEV
        f["entry_1/instrument_1/detector_1/distance"] = 5000.0
        f["entry_1/instrument_1/detector_1/distance"].attrs["units"] = "mm"
        f["entry_1/instrument_1/detector_1/x_pixel_size"] = 75e-6
        f["entry_1/instrument_1/detector_1/exposure_time"] = 20.0
        f["entry_1/instrument_1/detector_1/exposure_time"].attrs["units"] = "ms"
        f["entry_1/sample_1/pixel_size"] = 12.5
        f["entry_1/sample_1/pixel_size"].attrs["units"] = "nm"
    with h5py.File(_h5(tmp_path / "m.cxi", build), "r") as f:
        md = _read_metadata(f, "cxi")
    assert md == pytest.approx({"energy_kev": 8.0, "distance_m": 5.0, "detector_pixel_um": 75.0, "exposure_s": 0.02,
                                "pixel_size_nm": 12.5}, rel=1e-12)

    def build2(f):
        f["entry_1/instrument_1/source_1/energy"] = 8000.0
        f["entry_1/instrument_1/source_1/energy"].attrs["units"] = "eV"
        f["entry_1/instrument_1/detector_1/count_time"] = 0.0  # exposure 0: not recorded
        f["entry_1/instrument_1/detector_1/exposure_time"] = 3.0
        f["entry_1/image_1/x_pixel_size"] = 2e-8
        f["entry_1/sample_1/pixel_size"] = 1.0
        f["entry_1/napari_cxdi/metadata_json"] = json.dumps({"energy_kev": 1.0, "sample": "Au", "frame_interval_s": 0.5})
    with h5py.File(_h5(tmp_path / "m2.cxi", build2), "r") as f:
        md = _read_metadata(f, "cxi")
    assert md == pytest.approx({"energy_kev": 8.0, "pixel_size_nm": 20.0, "sample": "Au", "frame_interval_s": 0.5})

    def build3(f):
        f["entry_1/napari_cxdi/metadata_json"] = json.dumps({"sample": "x"}).encode()
    with h5py.File(_h5(tmp_path / "m3.cxi", build3), "r") as f:
        assert _read_metadata(f, "cxi") == {"sample": "x"}
        assert _read_metadata(f, "nexus") == {}  # only CXI files carry our metadata


def test_nexus_metadata_units(tmp_path):
    def build(f):
        f["entry/instrument/beam/energy"] = 8.0
        f["entry/instrument/monochromator/energy"] = 9.0
        f["entry/instrument/detector/distance"] = 5.0
        f["entry/instrument/detector/x_pixel_size"] = 0.075
        f["entry/instrument/detector/x_pixel_size"].attrs["units"] = "mm"
        f["entry/instrument/detector/frame_time"] = 1.0
        f["entry/instrument/detector/frame_time"].attrs["units"] = "us"
        f["entry_1/sample_1/pixel_size"] = 1.0  # a CXI place: not read for NeXus
    with h5py.File(_h5(tmp_path / "n.nxs", build), "r") as f:
        md = _read_metadata(f, "nexus")
    assert md == pytest.approx({"energy_kev": 8.0, "distance_m": 5.0, "detector_pixel_um": 75.0, "exposure_s": 1e-6}, rel=1e-12)

    def build2(f):  # no energy: from the wavelength (default Angstrom)
        f["entry/instrument/beam/incident_wavelength"] = 1.5498
        f["entry/instrument/detector/detector_distance"] = 2.0
        f["entry/instrument/detector/distance"] = 9.0
        f["entry/instrument/source/energy"] = np.zeros(0)
    with h5py.File(_h5(tmp_path / "n2.nxs", build2), "r") as f:
        md = _read_metadata(f, "eiger")
    assert md["energy_kev"] == pytest.approx(12.398419843320026 / 1.5498) and md["distance_m"] == 2.0
    assert sorted(md) == ["distance_m", "energy_kev"]

    def build3(f):
        f["entry/instrument/monochromator/wavelength"] = 0.15498
        f["entry/instrument/monochromator/wavelength"].attrs["units"] = "nm"
        f["entry/instrument/source/energy"] = 8000.0
        f["entry/instrument/source/energy"].attrs["units"] = "ev"
    with h5py.File(_h5(tmp_path / "n3.nxs", build3), "r") as f:
        assert _read_metadata(f, "hdf5") == pytest.approx({"energy_kev": 8.0})

    def build4(f):
        f["entry/instrument/monochromator/wavelength"] = 0.15498e-9
        f["entry/instrument/monochromator/wavelength"].attrs["units"] = "m"
    with h5py.File(_h5(tmp_path / "n4.nxs", build4), "r") as f:
        assert _read_metadata(f, "hdf5")["energy_kev"] == pytest.approx(12.398419843320026 / 1.5498)


@pytest.mark.parametrize("payload, message", [
    (b"{not json", r"/entry_1/napari_cxdi/metadata_json is not valid JSON \(.*\); the file's metadata are corrupt - rewrite it or remove that dataset"),
    (json.dumps([1, 2]), r"/entry_1/napari_cxdi/metadata_json must hold a JSON object, got list"),
    (b"\xff\xfe", "is not valid JSON"),
])
def test_corrupt_metadata_json(tmp_path, payload, message):
    def build(f):
        f["entry_1/napari_cxdi/metadata_json"] = np.void(payload) if isinstance(payload, bytes) and payload.startswith(b"\xff") else payload
    path = _h5(tmp_path / "c.cxi", build)
    if payload.startswith(b"\xff") if isinstance(payload, bytes) else False:
        with h5py.File(path, "w") as f:
            f["entry_1/napari_cxdi/metadata_json"] = payload
    with h5py.File(path, "r") as f:
        with pytest.raises(InputFileError, match=message) as info:
            _read_metadata(f, "cxi")
    assert info.value.path == str(path)


def test_check_geometry_metadata():
    assert GEOMETRY_KEYS == ("energy_kev", "distance_m", "detector_pixel_um", "pixel_size_nm", "exposure_s", "frame_interval_s")
    check_geometry_metadata({"energy_kev": 8, "distance_m": np.float32(5), "exposure_s": 0, "pixel_size_nm": None,
                             "frame_interval_s": np.int64(1), "other": -1}, "w")
    for key in GEOMETRY_KEYS:
        for bad in (0, -1.0, float("nan"), float("inf"), True, "5", [1.0]):
            if key == "exposure_s" and bad == 0 and bad is not True:
                continue
            with pytest.raises(InputFileError, match=rf"w: the geometry value {key} = .* is not a finite positive number; "
                                                     r"fix the file's metadata \(energy, detector distance, pixel size\)"):
                check_geometry_metadata({key: bad}, "w")
    with pytest.raises(InputFileError, match=r"exposure_s = -0\.5"):
        check_geometry_metadata({"exposure_s": -0.5}, "w")


# -- layout detection ---------------------------------------------------------------------------

def test_nexus_signal_rules(tmp_path):
    def build(f):
        f.attrs["default"] = "scan"
        g = f.create_group("scan")
        g.attrs["default"] = np.bytes_(b"plot")  # h5py returns numpy bytes for these
        d = g.create_group("plot")
        d.attrs["signal"] = np.bytes_(b"counts")
        d["counts"] = np.ones((2, 8, 8))
        other = f.create_group("other")
        nx = other.create_group("data")
        nx.attrs["NX_class"] = "NXdata"
        nx.attrs["signal"] = "frames"
        nx["frames"] = np.ones((2, 8, 8))
    with h5py.File(_h5(tmp_path / "a.nxs", build), "r") as f:
        assert _nexus_signal(f) == "/scan/plot/counts"
        assert _nx_class(f["other/data"]) == "NXdata" and _nx_class(f["scan"]) == ""

    def build2(f):  # no defaults: any NXdata group with a signal
        g = f.create_group("entry")
        g.create_group("junk").attrs["NX_class"] = "NXcollection"
        nx = g.create_group("data")
        nx.attrs["NX_class"] = np.bytes_(b"NXdata")
        nx.attrs["signal"] = "frames"
        nx["frames"] = np.ones((2, 8, 8))
        f["loose"] = 1.0
    with h5py.File(_h5(tmp_path / "b.nxs", build2), "r") as f:
        assert _nexus_signal(f) == "/entry/data/frames"

    def build3(f):  # a default entry that does not exist; a signal that is not a dataset; no signal
        f.attrs["default"] = "nope"
        g = f.create_group("entry")
        g.attrs["default"] = "missing"
        nx = g.create_group("data")
        nx.attrs["NX_class"] = "NXdata"
        nx.attrs["signal"] = "sub"
        nx.create_group("sub")
        nx2 = g.create_group("data2")
        nx2.attrs["NX_class"] = "NXdata"
        nx2["frames"] = np.ones((2, 8, 8))
    with h5py.File(_h5(tmp_path / "c.nxs", build3), "r") as f:
        assert _nexus_signal(f) is None


def test_cxi_layout_and_movie(tmp_path):
    frames = _frames()
    probe = (np.ones((2, 8, 9)) * (1 + 1j)).astype(np.complex64)

    def build(f):
        f["cxi_version"] = 150
        f["entry_1/instrument_1/detector_1/data"] = frames
        f["entry_1/instrument_1/source_1/illumination"] = probe
        f["entry_1/image_1/data"] = np.ones((3, 8, 9), np.complex64)
        f["entry_1/instrument_1/detector_1/distance"] = 4.0
    path = _h5(tmp_path / "a.cxi", build)
    layout = inspect_hdf5(path)
    assert (layout.kind, layout.datasets, layout.shape, layout.dtype) == ("cxi", ["entry_1/instrument_1/detector_1/data"], (3, 8, 9), np.uint16)
    assert layout.probe == "entry_1/instrument_1/source_1/illumination" and layout.reconstruction == RECONSTRUCTION_PATH
    assert layout.metadata == {"distance_m": 4.0}
    movie = read_hdf5_movie(path)
    assert movie.format == "cxi" and movie.dataset == "entry_1/instrument_1/detector_1/data" and movie.path == path
    assert movie.metadata == {"distance_m": 4.0} and movie.beam_centre is None
    np.testing.assert_array_equal(np.asarray(movie.data), frames)
    np.testing.assert_array_equal(movie.probe, probe)
    assert movie.mask.sentinel == 65535.0 and movie.mask.bad is None and movie.mask.saturation is None
    stack = h5_stack_of(movie.data)
    assert stack is not None and stack.parts == [("entry_1/instrument_1/detector_1/data", 3, 3)]

    def build2(f):  # data_1 first; a dataset at a probe path that is not a dataset is skipped
        f["entry_1/data_1/data"] = frames
        f["entry_1/instrument_1/detector_1/data"] = 2 * frames
        f.create_group("entry_1/instrument_1/source_1/probe")
        f["entry_1/probe"] = probe
        f.create_group("entry_1/image_1/data")
    layout = inspect_hdf5(_h5(tmp_path / "b.cxi", build2))
    assert layout.datasets == ["entry_1/data_1/data"] and layout.probe == "entry_1/probe" and layout.reconstruction is None

    def build3(f):  # a CXI file holding only a reconstruction
        f["entry_1/image_1/data"] = np.ones((3, 8, 9), np.complex64)
    path = _h5(tmp_path / "c.cxi", build3)
    layout = inspect_hdf5(path)
    assert layout.datasets == [] and layout.shape == () and layout.dtype is None and layout.probe is None
    with pytest.raises(InputFileError, match=r"the file holds a reconstruction only \(looked for entry_1/data_1/data, "
                                             r"entry_1/instrument_1/detector_1/data and NeXus signals\)"):
        read_hdf5_movie(path)
    rec = read_hdf5_reconstruction(path)
    assert rec.shape == (3, 8, 9) and rec.dtype == np.complex64 and np.asarray(rec).sum() == 3 * 72
    assert read_hdf5_reconstruction(_h5(tmp_path / "d.cxi", lambda f: f.__setitem__("cxi_version", 1))) is None
    with pytest.raises(InputFileError, match="the file holds no diffraction frames"):
        read_hdf5_movie(tmp_path / "d.cxi")


def test_nexus_and_plain_layouts(tmp_path):
    frames = _frames()

    def build(f):
        nx = f.create_group("entry/data")
        nx.attrs["NX_class"] = "NXdata"
        nx.attrs["signal"] = "frames"
        nx["frames"] = frames.astype(np.float32)
        f["entry/instrument/detector/x_pixel_size"] = 55e-6
    layout = inspect_hdf5(_h5(tmp_path / "a.nxs", build))
    assert (layout.kind, layout.datasets, layout.dtype) == ("nexus", ["/entry/data/frames"], np.float32)
    assert layout.metadata == pytest.approx({"detector_pixel_um": 55.0}) and layout.probe is None
    assert read_hdf5_movie(tmp_path / "a.nxs").mask.sentinel is None

    def build2(f):
        f["frames"] = frames
        f["small"] = np.ones((4, 4))  # < 64 values: not a candidate
        f["vec"] = np.ones(100)
        f["text"] = np.array([b"a"] * 100).reshape(10, 10)
    path = _h5(tmp_path / "b.h5", build2)
    layout = inspect_hdf5(path)
    assert (layout.kind, layout.datasets, layout.shape) == ("hdf5", ["/frames"], (3, 8, 9))
    with h5py.File(path, "r") as f:
        assert _generic_candidates(f) == ["/frames"]

    def build3(f):
        for name in "abcdefghij":
            f[name] = frames
    path = _h5(tmp_path / "c.h5", build3)
    with pytest.raises(InputFileError, match=r"several datasets could be the movie \(/a, /b, /c, /d, /e, /f\); choose one "
                                             r"\(CLI: --dataset PATH, API: dataset=PATH\)"):
        inspect_hdf5(path)
    layout = inspect_hdf5(path, "/c")
    assert (layout.kind, layout.datasets) == ("hdf5", ["/c"])
    with pytest.raises(InputFileError, match=r"no dataset 'zz' in the file; candidates: /a, /b, /c, /d, /e, /f, /g, /h$"):
        inspect_hdf5(path, "zz")
    with pytest.raises(InputFileError, match=r"no dataset 'g' in the file; candidates: none"):
        inspect_hdf5(_h5(tmp_path / "d.h5", lambda f: f.create_group("g")), "g")
    single = read_hdf5_movie(_h5(tmp_path / "e.h5", lambda f: f.__setitem__("img", frames[0])))
    assert single.shape == (1, 8, 9) and h5_stack_of(single.data).parts == [("/img", 1, 2)]
    np.testing.assert_array_equal(np.asarray(single.data)[0], frames[0])


def test_movie_checks(tmp_path):
    with pytest.raises(DataValidationError, match=r"c\.h5:/d: diffraction counts must be real"):
        inspect_hdf5(_h5(tmp_path / "c.h5", lambda f: f.__setitem__("d", np.ones((2, 8, 8), np.complex64))))
    with pytest.raises(DataValidationError, match="expected a diffraction movie"):
        inspect_hdf5(_h5(tmp_path / "x.h5", lambda f: f.__setitem__("d", np.ones((2, 2, 8, 8)))), "d")
    four = _h5(tmp_path / "four.h5", lambda f: f.__setitem__("d", _frames(2, 8, 8)[:, None]))
    movie = read_hdf5_movie(four, "d")
    assert movie.shape == (2, 8, 8) and h5_stack_of(movie.data).parts == [("d", 2, 4)]
    np.testing.assert_array_equal(np.asarray(movie.data), _frames(2, 8, 8))


def test_eiger_master_with_links(tmp_path):
    frames = _frames(5, 8, 9, np.uint32)
    _h5(tmp_path / "run_data_000001.h5", lambda f: f.__setitem__("entry/data/data", frames[:3]))
    _h5(tmp_path / "run_data_000002.h5", lambda f: f.__setitem__("entry/data/data", frames[3:]))

    def build(f):
        f["entry/data/data_000002"] = h5py.ExternalLink("run_data_000002.h5", "entry/data/data")
        f["entry/data/data_000001"] = h5py.ExternalLink("run_data_000001.h5", "entry/data/data")
        f["entry/data/other"] = 1.0
        d = f.create_group("entry/instrument/detector")
        d["detectorSpecific/pixel_mask"] = np.zeros((8, 9), np.uint32)
        d["detectorSpecific/countrate_correction_count_cutoff"] = 1000
        d["beam_center_x"] = 4.0
        d["beam_center_y"] = 3.0
        d["detector_distance"] = 2.0
    master = _h5(tmp_path / "run_master.h5", build)
    layout = inspect_hdf5(master)
    assert (layout.kind, layout.datasets, layout.shape, layout.dtype) == (
        "eiger", ["/entry/data/data_000001", "/entry/data/data_000002"], (5, 8, 9), np.uint32)
    movie = read_hdf5_movie(master)
    np.testing.assert_array_equal(np.asarray(movie.data), frames)
    assert movie.dataset == "/entry/data/data_000001,/entry/data/data_000002" and movie.format == "eiger"
    assert h5_stack_of(movie.data).parts == [("/entry/data/data_000001", 3, 3), ("/entry/data/data_000002", 2, 3)]
    assert movie.beam_centre.as_tuple() == (3.0, 4.0) and movie.metadata == {"distance_m": 2.0}
    assert movie.mask.sentinel == 2**32 - 1
    os.remove(tmp_path / "run_data_000002.h5")
    with pytest.raises(InputFileError, match=r"EIGER data file 'run_data_000002\.h5' \(linked as /entry/data/data_000002\) is missing"):
        inspect_hdf5(master)

    def build2(f):  # frame sizes differ
        f["entry/data/data_000001"] = np.ones((2, 8, 9), np.uint16)
        f["entry/data/data_000002"] = np.ones((2, 8, 8), np.uint16)
    with pytest.raises(DataValidationError, match=r"data files have different frame sizes \[\(8, 8\), \(8, 9\)\]"):
        inspect_hdf5(_h5(tmp_path / "m2.h5", build2))

    def build3(f):  # dtypes are combined
        f["entry/data/data_000001"] = np.ones((2, 8, 9), np.uint16)
        f["entry/data/data_000002"] = np.ones((2, 8, 9), np.uint32)
    assert inspect_hdf5(_h5(tmp_path / "m3.h5", build3)).dtype == np.uint32

    def build4(f):  # no data_ links: not an EIGER master; nothing else either
        f.create_group("entry/data").attrs["x"] = 1
    with pytest.raises(InputFileError, match="holds no diffraction frames"):
        read_hdf5_movie(_h5(tmp_path / "m4.h5", build4))

    def build5(f):
        f["entry/data"] = np.ones((2, 8, 9))
    assert inspect_hdf5(_h5(tmp_path / "m5.h5", build5)).kind == "hdf5"


def test_dangling_links(tmp_path):
    def build(f):
        f["real"] = np.ones((2, 8, 8))
        f["g/soft"] = h5py.SoftLink("/nowhere")
        f["g/ext"] = h5py.ExternalLink("gone.h5", "/x")
        f["g/fine"] = h5py.SoftLink("/real")
        f["g/h/deep"] = h5py.SoftLink("/lost")
    path = _h5(tmp_path / "l.h5", build)
    with h5py.File(path, "r") as f:
        assert sorted(dangling_links(f)) == ["/g/ext -> gone.h5:/x", "/g/h/deep -> /lost", "/g/soft -> /nowhere"]
        assert dangling_links(f, limit=1) == []  # stops after `limit` names

    def build2(f):
        f["entry/data/data_000001"] = h5py.ExternalLink("gone.h5", "/entry/data/data")
    master = _h5(tmp_path / "m.h5", build2)
    with pytest.raises(InputFileError, match="is missing"):
        inspect_hdf5(master)

    def build3(f):
        f["x"] = h5py.SoftLink("/missing/data")
    with pytest.raises(InputFileError, match=r"link\(s\) to missing data: /x -> /missing/data; copy the linked files next to "
                                             r"this one \(same relative paths\) and open it again"):
        inspect_hdf5(_h5(tmp_path / "s.h5", build3))


# -- probe, reconstruction, files ---------------------------------------------------------------

def test_read_hdf5_probe(tmp_path):
    probe = (np.arange(2 * 8 * 8).reshape(2, 8, 8) * 1j).astype(np.complex64)
    assert CXI_PROBE_PATHS[0] == "entry_1/instrument_1/source_1/probe" and CXI_PROBE_PATHS[-1] == "probe"

    def build(f):
        f["probe"] = 2 * probe
        f["entry_1/instrument_1/probe"] = probe
        f["g/p2"] = probe[0]
        f["g/p4"] = np.ones((1, 1, 8, 8))
        f.create_group("grp")
    path = _h5(tmp_path / "p.h5", build)
    np.testing.assert_array_equal(read_hdf5_probe(path), probe)
    np.testing.assert_array_equal(read_hdf5_probe(path, "probe"), 2 * probe)
    assert read_hdf5_probe(path, "g/p2").shape == (8, 8)
    with pytest.raises(DataValidationError, match=r"p\.h5:g/p4: a probe is \[modes, H, W\] of at most 1024 MB, got shape \(1, 1, 8, 8\)"):
        read_hdf5_probe(path, "g/p4")
    with pytest.raises(InputFileError, match="grp is not a dataset"):
        read_hdf5_probe(path, "grp")
    with pytest.raises(InputFileError, match="cannot read the probe nope"):
        read_hdf5_probe(path, "nope")
    with pytest.raises(InputFileError, match=r"no probe found \(looked for entry_1/instrument_1/source_1/probe, .*, probe\)"):
        read_hdf5_probe(_h5(tmp_path / "n.h5", lambda f: f.__setitem__("x", 1)))
    assert MAX_PROBE_BYTES == 1 << 30


def test_files_and_signature(tmp_path):
    good = _h5(tmp_path / "g.h5", lambda f: f.__setitem__("x", 1))
    assert is_hdf5(good) and not is_hdf5(tmp_path / "missing.h5")
    (tmp_path / "t.h5").write_bytes(b"\x89HDF\r\n\x1a")  # 7 of the 8 signature bytes
    assert not is_hdf5(tmp_path / "t.h5")
    (tmp_path / "s.bin").write_bytes(b"\x89HDF\r\n\x1a\nrest")
    assert is_hdf5(tmp_path / "s.bin")
    assert ".nxs" in HDF5_SUFFIXES and ".cxi" in HDF5_SUFFIXES and ".nx5" in HDF5_SUFFIXES
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(InputFileError, match=r"not a readable HDF5 file \(truncated or corrupt\?\)"):
        inspect_hdf5(tmp_path / "bad.h5")
    with pytest.raises(InputFileError, match="file not found"):
        inspect_hdf5(tmp_path / "none.h5")
    if os.geteuid() != 0:
        locked = _h5(tmp_path / "locked.h5", lambda f: f.__setitem__("x", 1))
        os.chmod(locked, 0)
        with pytest.raises(InputFileError, match="permission denied"):
            inspect_hdf5(locked)


def test_more_layout_details(tmp_path, monkeypatch):
    def build(f):
        f["f64"] = np.ones((8, 8))  # exactly 64 values: a candidate
        f["f63"] = np.ones((7, 9))  # 63: not
        f["i3"] = np.ones((2, 4, 8), np.int16)
    with h5py.File(_h5(tmp_path / "c.h5", build), "r") as f:
        assert _generic_candidates(f) == ["/f64", "/i3"]

    def build2(f):  # a wavelength of 0 gives no energy
        f["entry/instrument/beam/incident_wavelength"] = 0.0
    with h5py.File(_h5(tmp_path / "w.nxs", build2), "r") as f:
        assert _read_metadata(f, "nexus") == {}
    # an EIGER data file linked by an absolute path
    frames = _frames(2, 8, 9, np.uint32)
    data = _h5(tmp_path / "abs_data.h5", lambda f: f.__setitem__("entry/data/data", frames))
    sub = tmp_path / "sub"
    sub.mkdir()
    master = _h5(sub / "m.h5", lambda f: f.__setitem__("entry/data/data_000001", h5py.ExternalLink(str(data), "entry/data/data")))
    np.testing.assert_array_equal(np.asarray(read_hdf5_movie(master).data), frames)

    def build3(f):  # the detector's mask, saturation and centre reach the movie
        f["entry/data/data"] = _frames(2, 8, 9, np.uint32)
        f["entry/data"].attrs["NX_class"] = "NXdata"
        f["entry/data"].attrs["signal"] = "data"
        d = f.create_group("entry/instrument/detector")
        pm = np.zeros((8, 9), np.uint32)
        pm[1, 2] = 1  # dead/gap bit
        d["pixel_mask"] = pm
        d["saturation_value"] = 1000
    movie = read_hdf5_movie(_h5(tmp_path / "d.nxs", build3))
    assert movie.mask.bad.sum() == 1 and movie.mask.bad[1, 2] and movie.mask.saturation == 1000.0
    assert movie.mask.sentinel == 2.0**32 - 1
    assert movie.mask.sources == ["d.nxs:/entry/instrument/detector/pixel_mask"] and sum(movie.mask.bit_counts.values()) >= 1

    def build4(f):  # a pixel mask of the wrong dimensionality is a typed error
        f["entry_1/data_1/data"] = _frames(2, 8, 9)
        f["entry_1/instrument_1/detector_1/mask"] = np.zeros((2, 2, 8, 9), np.uint32)
    import napari_cxdi.io.hdf5 as h5mod

    def broken(f, kind):
        raise KeyError("boom")
    monkeypatch.setattr(h5mod, "read_hdf5_detector", broken)
    with pytest.raises(InputFileError, match=r"cannot read the detector mask / beam centre: 'boom'") as info:
        read_hdf5_movie(_h5(tmp_path / "k.cxi", build4))
    assert info.value.path == str(tmp_path / "k.cxi")
    monkeypatch.undo()
    big = _h5(tmp_path / "p.h5", lambda f: f.__setitem__("probe", np.ones((2, 8, 8), np.complex64)))
    monkeypatch.setattr(h5mod, "MAX_PROBE_BYTES", 2 * 8 * 8 * 8 - 1)
    with pytest.raises(DataValidationError, match=r"p\.h5:probe: a probe is \[modes, H, W\] of at most 0 MB, got shape \(2, 8, 8\) complex64"):
        read_hdf5_probe(big)
    monkeypatch.setattr(h5mod, "MAX_PROBE_BYTES", 2 * 8 * 8 * 8)
    assert read_hdf5_probe(big).shape == (2, 8, 8)
    assert not is_hdf5(tmp_path)  # a folder


def test_error_paths_and_more_rules(tmp_path):
    frames = _frames()

    def build(f):  # only NXdata groups are searched without defaults
        g = f.create_group("entry")
        aaa = g.create_group("aaa")
        aaa.attrs["NX_class"] = "NXcollection"
        aaa.attrs["signal"] = "frames"
        aaa["frames"] = frames
        nx = g.create_group("data")
        nx.attrs["NX_class"] = "NXdata"
        nx.attrs["signal"] = "frames"
        nx["frames"] = frames
    with h5py.File(_h5(tmp_path / "a.nxs", build), "r") as f:
        assert _nexus_signal(f) == "/entry/data/frames"

    def build2(f):  # cxi_version alone marks a CXI file
        f["cxi_version"] = 140
        f["data"] = frames
    layout = inspect_hdf5(_h5(tmp_path / "v.h5", build2))
    assert layout.kind == "cxi" and layout.datasets == []
    paths = {
        "no_ds.h5": (lambda f: f.__setitem__("x", frames), dict(dataset="zz")),
        "several.h5": (lambda f: (f.__setitem__("a", frames), f.__setitem__("b", frames)), {}),
        "eiger.h5": (lambda f: f.__setitem__("entry/data/data_000001", h5py.ExternalLink("gone.h5", "/d")), {}),
    }
    for name, (build_fn, kwargs) in paths.items():
        with pytest.raises(InputFileError) as info:
            inspect_hdf5(_h5(tmp_path / name, build_fn), **kwargs)
        assert info.value.path == str(tmp_path / name), name
    probe_file = _h5(tmp_path / "p.h5", lambda f: (f.__setitem__("x", 1), f.create_group("grp")))
    for kwargs in ({}, {"dataset": "grp"}, {"dataset": "nope"}):
        with pytest.raises(InputFileError) as info:
            read_hdf5_probe(probe_file, **kwargs)
        assert info.value.path == str(probe_file)


def test_dangling_link_walk_limits(tmp_path):
    def root_link(f):
        f["x"] = h5py.SoftLink("/missing")
    with h5py.File(_h5(tmp_path / "a.h5", root_link), "r") as f:
        assert dangling_links(f, limit=1) == ["/x -> /missing"]  # the first group is always listed whole

    def nested(f):
        f["g/soft"] = h5py.SoftLink("/missing")
    with h5py.File(_h5(tmp_path / "b.h5", nested), "r") as f:
        assert dangling_links(f, limit=1) == []  # one name seen: the walk stops before /g
        assert dangling_links(f, limit=2) == ["/g/soft -> /missing"]

    def three(f):
        f["a"] = 1
        f["b"] = 2
        f["g/soft"] = h5py.SoftLink("/missing")
    with h5py.File(_h5(tmp_path / "c.h5", three), "r") as f:
        assert dangling_links(f, limit=2) == [] and dangling_links(f, limit=4) == ["/g/soft -> /missing"]

    def x_name(f):
        f["boX/soft"] = h5py.SoftLink("/missing")
    with h5py.File(_h5(tmp_path / "d.h5", x_name), "r") as f:
        assert dangling_links(f) == ["/boX/soft -> /missing"]


def test_unreadable_structures_and_messages(tmp_path, monkeypatch):
    import napari_cxdi.io.hdf5 as h5mod

    good = _h5(tmp_path / "g.h5", lambda f: f.__setitem__("d", _frames()))

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    with monkeypatch.context() as m:
        m.setattr(h5mod.h5py, "File", denied)
        with pytest.raises(InputFileError) as info:
            inspect_hdf5(good)
    assert info.value.path == str(good) and info.value.problem == "permission denied: you may not read this file"

    def boom(f, path, dataset):
        raise KeyError("x")
    with monkeypatch.context() as m:
        m.setattr(h5mod, "_layout", boom)
        with pytest.raises(InputFileError) as info:
            inspect_hdf5(good)
    assert info.value.path == str(good) and info.value.problem == "cannot read the file structure: KeyError: 'x'"

    def links(f):
        for i in range(6):
            f[f"l{i}"] = h5py.SoftLink(f"/missing{i}")
    path = _h5(tmp_path / "l.h5", links)
    with pytest.raises(InputFileError) as info:
        inspect_hdf5(path)
    assert info.value.path == str(path)
    shown = ", ".join(f"/l{i} -> /missing{i}" for i in range(5))
    assert info.value.problem == (f"link(s) to missing data: {shown}; copy the linked files next to this one "
                                  "(same relative paths) and open it again")
    with pytest.raises(DataValidationError, match=r"x\.h5:d: expected a diffraction movie"):
        inspect_hdf5(_h5(tmp_path / "x.h5", lambda f: f.__setitem__("d", np.ones((2, 2, 8, 8)))), "d")
    with pytest.raises(InputFileError) as info:
        read_hdf5_movie(_h5(tmp_path / "e.cxi", lambda f: f.__setitem__("cxi_version", 1)))
    assert info.value.path == str(tmp_path / "e.cxi")

    def cxi_mask(f):
        f["entry_1/data_1/data"] = _frames(2, 8, 9)
        m = np.zeros((8, 9), np.uint32)
        m[3, 4] = 1
        f["entry_1/instrument_1/detector_1/mask"] = m
    movie = read_hdf5_movie(_h5(tmp_path / "m.cxi", cxi_mask))
    assert movie.mask.bad.sum() == 1 and movie.mask.bad[3, 4]


def test_metadata_fallbacks_and_where(tmp_path):
    def build(f):  # an unknown energy unit in a CXI file falls back to joules
        f["entry_1/instrument_1/source_1/energy"] = np.float32(8.0 * JOULE_PER_KEV)
        f["entry_1/instrument_1/source_1/energy"].attrs["units"] = "furlong"
    with h5py.File(_h5(tmp_path / "j.cxi", build), "r") as f:
        assert _read_metadata(f, "cxi")["energy_kev"] == pytest.approx(8.0, rel=1e-6)

    def build2(f):  # the monochromator's energy is the last place looked at
        f["entry/instrument/monochromator/energy"] = 9.0
    with h5py.File(_h5(tmp_path / "m.nxs", build2), "r") as f:
        assert _read_metadata(f, "nexus") == {"energy_kev": 9.0}

    def build3(f):
        f["entry_1/instrument_1/detector_1/distance"] = -1.0
    path = _h5(tmp_path / "bad.cxi", build3)
    with h5py.File(path, "r") as f:
        with pytest.raises(InputFileError, match=r"distance_m = -1\.0 is not a finite positive number") as info:
            _read_metadata(f, "cxi")
    assert info.value.path == str(path)


def test_unknown_wavelength_unit_falls_back_to_angstrom(tmp_path):
    def build(f):
        f["entry/instrument/beam/incident_wavelength"] = 1.5498
        f["entry/instrument/beam/incident_wavelength"].attrs["units"] = "furlong"
    with h5py.File(_h5(tmp_path / "w.nxs", build), "r") as f:
        assert _read_metadata(f, "nexus")["energy_kev"] == pytest.approx(12.398419843320026 / 1.5498, rel=1e-12)


def test_units_stored_as_numpy_bytes(tmp_path):
    def build(f):
        f["d"] = 5000.0
        f["d"].attrs["units"] = np.bytes_(b"mm")  # h5py returns numpy bytes here
    with h5py.File(_h5(tmp_path / "b.h5", build), "r") as f:
        assert _scalar(f, ("d",), _LENGTH, "m") == pytest.approx(5.0, rel=1e-12)
