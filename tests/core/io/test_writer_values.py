"""Value tests of io/writer.py (issue 20, mutation testing): every dataset, unit, link and attribute of
the CXI layout read back with h5py and compared with what was given; output-path rules; tables.
"""

from __future__ import annotations

import json

import dask.array as da
import h5py
import numpy as np
import pandas as pd
import pytest

from napari_cxdi.errors import DataValidationError, OutputExistsError
from napari_cxdi.io import writer
from napari_cxdi.io.probes import load_probe
from napari_cxdi.io.writer import (
    JOULE_PER_KEV, _write_frames, check_output_path, default_output_path, read_table, write_cxi,
)

META = {"energy_kev": 8.0, "distance_m": 5.0, "detector_pixel_um": 75.0, "exposure_s": 0.01, "pixel_size_nm": 12.5}


def _s(ds):
    v = ds[()]
    return v.decode() if isinstance(v, bytes) else v


def _arrays(t=3, h=6, w=8):
    rng = np.random.default_rng(0)
    counts = rng.poisson(20.0, (t, h, w)).astype(np.float32)
    recon = (rng.uniform(0.2, 1, (t, h, w)) * np.exp(1j * rng.uniform(-3, 3, (t, h, w)))).astype(np.complex64)
    probe = (rng.normal(size=(2, h, w)) + 1j * rng.normal(size=(2, h, w))).astype(np.complex64)
    return counts, recon, probe


def test_full_layout_values(tmp_path):
    counts, recon, probe = _arrays(3, 8, 10)
    mask = np.zeros((8, 10), bool)
    mask[1, 2] = mask[4, 7] = True
    out = write_cxi(tmp_path / "a.cxi", counts=counts, probe=probe, reconstruction=recon, metadata=dict(META),
                    config={"method": "mixed-state", "max_iter": 3}, metrics={"rf": 0.25, "per_frame": [1.0, 2.0], "n_frames": 3,
                                                                              "label": "x"}, mask=mask)
    assert out == tmp_path / "a.cxi"
    with h5py.File(out, "r") as f:
        assert f["cxi_version"][()] == 160 and f.attrs["default"] == "entry_1" and f.attrs["creator"] == "napari-cxdi"
        e = f["entry_1"]
        assert e.attrs["NX_class"] == "NXentry" and _s(e["program_name"]) == "napari-cxdi" and e.attrs["default"] == "data_1"
        src = e["instrument_1/source_1"]
        assert e["instrument_1"].attrs["NX_class"] == "NXinstrument" and src.attrs["NX_class"] == "NXsource"
        assert src["energy"][()] == pytest.approx(8.0 * 1.602176634e-16, rel=1e-12) and src["energy"].attrs["units"] == "J"
        assert src["wavelength"][()] == pytest.approx(12.398419843320026e-10 / 8.0, rel=1e-12)
        assert src["wavelength"].attrs["units"] == "m"
        d = e["instrument_1/detector_1"]
        assert d.attrs["NX_class"] == "NXdetector"
        assert d["distance"][()] == 5.0 and d["distance"].attrs["units"] == "m"
        assert d["x_pixel_size"][()] == pytest.approx(75e-6, rel=1e-12) and d["x_pixel_size"].attrs["units"] == "m"
        assert d["y_pixel_size"][()] == pytest.approx(75e-6, rel=1e-12) and d["y_pixel_size"].attrs["units"] == "m"
        assert d["count_time"][()] == 0.01 and d["count_time"].attrs["units"] == "s"
        np.testing.assert_allclose(d["basis_vectors"][()], [[0, -75e-6, 0], [-75e-6, 0, 0]], rtol=1e-12)
        assert d["basis_vectors"].attrs["units"] == "m"
        np.testing.assert_allclose(d["corner_position"][()], [5 * 75e-6, 4 * 75e-6, 5.0], rtol=1e-12)
        assert d["corner_position"].attrs["units"] == "m"
        assert d["corner_position"].attrs["note"] == "pixel (H // 2, W // 2) on the beam axis"
        m = d["mask"]
        assert m.dtype == np.uint32 and m.compression == "gzip"
        np.testing.assert_array_equal(m[()], mask.astype(np.uint32))
        assert m.attrs["note"] == "CXI pixel mask: 0 = good, 0x00000001 = invalid (not measured)"
        data = d["data"]
        assert data.dtype == np.float32 and data.chunks == (1, 8, 10) and data.compression == "gzip"
        assert data.compression_opts == 4 and data.shuffle and data.attrs["axes"] == "translation:y:x"
        np.testing.assert_array_equal(data[()], counts)
        tr = e["sample_1/geometry_1/translation"]
        assert e["sample_1"].attrs["NX_class"] == "NXsample" and e["sample_1/geometry_1"].attrs["NX_class"] == "NXgeometry"
        assert tr.shape == (3, 3) and not tr[()].any() and tr.attrs["units"] == "m"
        assert tr.attrs["note"] == "single-shot movie: the sample is not scanned"
        d1 = e["data_1"]
        assert d1.attrs["NX_class"] == "NXdata" and d1.attrs["signal"] == "data"
        assert e.get("data_1/data", getlink=True).path == "/entry_1/instrument_1/detector_1/data"
        assert e.get("data_1/translation", getlink=True).path == "/entry_1/sample_1/geometry_1/translation"
        assert d.get("translation", getlink=True).path == "/entry_1/sample_1/geometry_1/translation"
        pds = src["probe"]
        assert pds.dtype == np.complex64 and pds.attrs["note"] == "probe modes [K, H, W] in sqrt(photons) per object-plane pixel"
        np.testing.assert_array_equal(pds[()], probe)
        p1 = e["probe_1"]
        assert p1.attrs["NX_class"] == "NXdata" and p1.attrs["signal"] == "data"
        assert e.get("probe_1/data", getlink=True).path == "/entry_1/instrument_1/source_1/probe"
        assert _s(p1["data_space"]) == "real" and _s(p1["data_type"]) == "probe modes"
        for name in ("x_pixel_size", "y_pixel_size"):
            assert p1[name][()] == pytest.approx(12.5e-9, rel=1e-12) and p1[name].attrs["units"] == "m"
        assert e.get("probe", getlink=True).path == "/entry_1/probe_1"
        im = e["image_1"]
        assert im.attrs["NX_class"] == "NXdata" and im.attrs["signal"] == "data"
        assert im["data"].dtype == np.complex64 and im["data"].chunks == (1, 8, 10)
        np.testing.assert_array_equal(im["data"][()], recon)
        assert _s(im["data_space"]) == "real" and _s(im["data_type"]) == "complex transmission function"
        for name in ("x_pixel_size", "y_pixel_size"):
            assert im[name][()] == pytest.approx(12.5e-9, rel=1e-12) and im[name].attrs["units"] == "m"
        pr = im["process_1"]
        assert pr.attrs["NX_class"] == "NXprocess" and _s(pr["program"]) == "napari-cxdi"
        assert json.loads(_s(pr["configuration"])) == {"method": "mixed-state", "max_iter": 3}
        text = _s(e["provenance"])
        record = json.loads(text)
        assert text == json.dumps(record, sort_keys=True)  # keys sorted: files diff cleanly
        assert record["config"] == {"method": "mixed-state", "max_iter": 3} and record["metrics"]["rf"] == 0.25
        assert record["metadata"]["energy_kev"] == 8.0 and record["software"] == "napari-cxdi"
        r = e["result_1"]
        assert r.attrs["NX_class"] == "NXcollection"
        assert r["rf"][()] == 0.25 and r["rf"].dtype == np.float64
        assert r["n_frames"][()] == 3.0 and r["n_frames"].dtype == np.float64
        np.testing.assert_array_equal(r["per_frame"][()], [1.0, 2.0])
        assert json.loads(_s(r["label"])) == "x"
        ours = e["napari_cxdi"]
        assert ours.attrs["NX_class"] == "NXcollection"
        assert json.loads(_s(ours["metadata_json"])) == META
        assert _s(ours["metadata_json"]) == json.dumps(META, sort_keys=True)
    # the file reads back through our own reader and the probe loader
    pf = load_probe(out)
    np.testing.assert_array_equal(pf.modes, probe)
    assert pf.pixel_size_nm == pytest.approx((12.5, 12.5))


def test_minimal_files_and_defaults(tmp_path):
    counts, recon, probe = _arrays()
    out = write_cxi(tmp_path / "r.cxi", reconstruction=recon)
    with h5py.File(out, "r") as f:
        e = f["entry_1"]
        assert e.attrs["default"] == "image_1" and "data_1" not in e and "sample_1" not in e
        src, det = e["instrument_1/source_1"], e["instrument_1/detector_1"]
        assert list(src.keys()) == [] and list(det.keys()) == []
        assert "x_pixel_size" not in e["image_1"] and "result_1" not in e and "probe" not in e
        assert json.loads(_s(e["image_1/process_1/configuration"])) is None
        assert json.loads(_s(e["napari_cxdi/metadata_json"])) == {}
        assert json.loads(_s(e["provenance"]))["metrics"] is None
    out = write_cxi(tmp_path / "c.cxi", counts=counts[0:1], metadata={"energy_kev": 0, "distance_m": 2.0, "exposure_s": 0})
    with h5py.File(out, "r") as f:
        e = f["entry_1"]
        assert e.attrs["default"] == "data_1" and "image_1" not in e
        det = e["instrument_1/detector_1"]
        assert sorted(det.keys()) == ["data", "distance", "translation"]  # no pixel: no basis, no corner
        assert "energy" not in e["instrument_1/source_1"] and e["sample_1/geometry_1/translation"].shape == (1, 3)
    out = write_cxi(tmp_path / "p.cxi", probe=probe, metadata={"detector_pixel_um": 55.0})
    with h5py.File(out, "r") as f:
        det = f["entry_1/instrument_1/detector_1"]
        np.testing.assert_allclose(det["basis_vectors"][()], [[0, -55e-6, 0], [-55e-6, 0, 0]])
        assert "corner_position" not in det and "x_pixel_size" not in f["entry_1/probe_1"]
        assert "default" not in f["entry_1"].attrs
    out = write_cxi(tmp_path / "m.cxi", mask=np.eye(5, 7, dtype=bool), metadata={"detector_pixel_um": 10.0, "distance_m": 1.0})
    with h5py.File(out, "r") as f:  # the frame shape comes from the mask when nothing else gives it
        np.testing.assert_allclose(f["entry_1/instrument_1/detector_1/corner_position"][()], [3 * 10e-6, 2 * 10e-6, 1.0])
        assert f["entry_1/instrument_1/detector_1/mask"][()].sum() == 5
    out = write_cxi(tmp_path / "n.cxi", metadata={"detector_pixel_um": 10.0, "distance_m": 1.0})
    with h5py.File(out, "r") as f:
        assert "basis_vectors" not in f["entry_1/instrument_1/detector_1"]


def test_frame_shape_order_and_mask_check(tmp_path):
    counts, recon, probe = _arrays(2, 6, 8)
    meta = {"detector_pixel_um": 10.0, "distance_m": 1.0}
    out = write_cxi(tmp_path / "a.cxi", reconstruction=recon, probe=probe[:, :4, :4], metadata=meta)
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["entry_1/instrument_1/detector_1/corner_position"][()], [4e-5, 3e-5, 1.0])
    out = write_cxi(tmp_path / "b.cxi", counts=counts[:, :4, :6], reconstruction=recon, metadata=meta)
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["entry_1/instrument_1/detector_1/corner_position"][()], [3e-5, 2e-5, 1.0])
    out = write_cxi(tmp_path / "c.cxi", probe=probe[:, :4, :6], mask=np.zeros((4, 6), bool), metadata=meta)
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["entry_1/instrument_1/detector_1/corner_position"][()], [3e-5, 2e-5, 1.0])
    with pytest.raises(DataValidationError, match=r"the mask is \(3, 8\) but the frames are \(6, 8\)"):
        write_cxi(tmp_path / "d.cxi", counts=counts, mask=np.zeros((3, 8), bool))
    assert not (tmp_path / "d.cxi").exists()
    m8 = np.zeros((6, 8), np.uint8)
    m8[2, 3] = 2  # any non-zero value is a bad pixel, written as the CXI bit 0x1
    out = write_cxi(tmp_path / "e.cxi", counts=counts, mask=m8)
    with h5py.File(out, "r") as f:
        written = f["entry_1/instrument_1/detector_1/mask"][()]
        assert written[2, 3] == 1 and written.sum() == 1


def test_ground_truth_tables_and_lazy_frames(tmp_path):
    counts, recon, _ = _arrays(20, 4, 4)
    lazy = da.from_array(counts, chunks=(3, 4, 4))
    truth = {"phase": np.angle(recon).astype(np.float64), "objects": recon}
    table = pd.DataFrame({"frame": [0, 1, 2], "x_nm": [1.5, 2.5, 3.5], 3: ["a", "b", "c"]})
    out = write_cxi(tmp_path / "t.cxi", counts=lazy, ground_truth=truth, tables={"tracks": table, "empty": pd.DataFrame({"a": []})})
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["entry_1/instrument_1/detector_1/data"][()], counts)
        gt = f["entry_1/napari_cxdi/ground_truth"]
        assert gt.attrs["NX_class"] == "NXcollection"
        assert gt["phase"].dtype == np.float64 and gt["objects"].dtype == np.complex64
        np.testing.assert_array_equal(gt["phase"][()], truth["phase"])
        np.testing.assert_array_equal(gt["objects"][()], recon)
        tables = f["entry_1/napari_cxdi/tables"]
        assert tables.attrs["NX_class"] == "NXcollection" and tables["tracks"].attrs["NX_class"] == "NXcollection"
        assert json.loads(tables["tracks"].attrs["columns"]) == ["frame", "x_nm", "3"]
    back = read_table(out, "tracks")
    assert list(back.columns) == ["frame", "x_nm", "3"]
    np.testing.assert_array_equal(back["x_nm"].to_numpy(), [1.5, 2.5, 3.5])
    np.testing.assert_array_equal(back["frame"].to_numpy(), [0, 1, 2])
    assert read_table(out, "empty").shape == (0, 1)
    with h5py.File(out, "a") as f:  # a table without the columns attribute: its datasets
        g = f.create_group("entry_1/napari_cxdi/tables/bare")
        g["b"] = [1, 2]
        g["a"] = [3, 4]
    bare = read_table(out, "bare")
    assert sorted(bare.columns) == ["a", "b"] and bare["a"].tolist() == [3, 4]


def test_write_frames_blocks(tmp_path):
    data = np.arange(40 * 2 * 3, dtype=np.float64).reshape(40, 2, 3)
    calls = []

    class Tracked:
        shape = data.shape

        def __getitem__(self, key):
            calls.append((key.start, key.stop))
            return data[key]

    with h5py.File(tmp_path / "f.h5", "w") as f:
        ds = _write_frames(f, "x", Tracked(), np.float32)
        assert ds.dtype == np.float32 and ds.chunks == (1, 2, 3)
        np.testing.assert_array_equal(ds[()], data.astype(np.float32))
        two = _write_frames(f, "y", np.ones((4, 5)), np.float32)  # 2-D: not chunked per frame
        assert two.shape == (4, 5) and two[()].sum() == 20 and two.compression == "gzip" and two.chunks == (4, 5)
    assert calls == [(0, 16), (16, 32), (32, 48)]


def test_output_paths(tmp_path):
    src = tmp_path / "run.h5"
    src.write_bytes(b"x")
    assert default_output_path(src) == tmp_path / "run_recon.cxi"
    (tmp_path / "run_recon.cxi").write_bytes(b"")
    assert default_output_path(src) == tmp_path / "run_recon_1.cxi"
    (tmp_path / "run_recon_1.cxi").write_bytes(b"")
    assert default_output_path(src) == tmp_path / "run_recon_2.cxi"
    assert default_output_path(str(src), "tracks", ".csv") == tmp_path / "run_tracks.csv"
    same = tmp_path / "a_recon.cxi"  # the input itself has the default name
    same.write_bytes(b"x")
    assert default_output_path(tmp_path / "a.cxi", "recon") == tmp_path / "a_recon_1.cxi"
    with pytest.raises(OutputExistsError):
        check_output_path(src, overwrite=False)
    check_output_path(src, overwrite=True)
    with pytest.raises(OutputExistsError, match="input of the run"):
        check_output_path(src, overwrite=True, protected=[src])
    check_output_path(tmp_path / "new.cxi", overwrite=False)


def test_write_refuses_inputs_and_existing_files(tmp_path):
    counts, _, _ = _arrays()
    path = write_cxi(tmp_path / "x.cxi", counts=counts)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        write_cxi(path, counts=counts)
    with pytest.raises(OutputExistsError, match="input of the run"):
        write_cxi(path, counts=counts, overwrite=True, protected=[path])
    assert path.read_bytes() == before
    write_cxi(path, counts=2 * counts, overwrite=True)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["entry_1/data_1/data"][()], 2 * counts)


def test_needed_bytes_are_counted(tmp_path, monkeypatch):
    seen = {}
    real = writer.atomic_output

    def spy(path, **kwargs):
        seen.update(kwargs)
        return real(path, **kwargs)

    monkeypatch.setattr(writer, "atomic_output", spy)
    counts, recon, _ = _arrays(3, 6, 8)
    write_cxi(tmp_path / "a.cxi", counts=counts, reconstruction=recon, protected=[tmp_path / "in.h5"])
    assert seen == {"overwrite": False, "protected": [tmp_path / "in.h5"], "needed_bytes": 3 * 6 * 8 * (4 + 8)}
    write_cxi(tmp_path / "b.cxi", counts=counts, overwrite=True)
    assert seen["needed_bytes"] == 3 * 6 * 8 * 4 and seen["overwrite"] is True
    write_cxi(tmp_path / "c.cxi", probe=np.ones((1, 8, 8), np.complex64))
    assert seen["needed_bytes"] is None
    assert JOULE_PER_KEV == 1.602176634e-16


def test_single_frame_counts_and_double_probe(tmp_path):
    counts = np.arange(8 * 9, dtype=np.float64).reshape(8, 9)
    probe = np.ones((1, 8, 9), np.complex128)
    out = write_cxi(tmp_path / "s.cxi", counts=counts, probe=probe)
    with h5py.File(out, "r") as f:
        assert f["entry_1/sample_1/geometry_1/translation"].shape == (1, 3)  # one frame, not one per row
        assert f["entry_1/instrument_1/source_1/probe"].dtype == np.complex64
        np.testing.assert_array_equal(f["entry_1/instrument_1/detector_1/data"][()], counts.astype(np.float32))
