"""Our CXI files follow the layout cdtools and PyNX read (checked with cdtools' own readers when installed)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from napari_cxdi.io import load_probe, open_movie, read_hdf5_reconstruction, write_cxi

META = {"energy_kev": 6.2, "distance_m": 2.5, "detector_pixel_um": 55.0, "exposure_s": 0.01, "pixel_size_nm": 30.0}


@pytest.fixture
def written(tmp_path, rng):
    counts = rng.poisson(20, size=(4, 24, 20)).astype(np.float32)
    mask = np.zeros((24, 20), bool)
    mask[10:12, :] = True  # a module gap
    mask[3, 7] = True  # a dead pixel
    probe = (rng.normal(size=(2, 24, 20)) + 1j * rng.normal(size=(2, 24, 20))).astype(np.complex64)
    recon = np.exp(1j * rng.uniform(-1, 1, size=(4, 24, 20))).astype(np.complex64)
    path = write_cxi(tmp_path / "movie.cxi", counts=counts, probe=probe, reconstruction=recon, metadata=META, mask=mask,
                     metrics={"rf": 0.2})
    return path, counts, mask, probe, recon


def test_layout_nx_classes_links_and_geometry(written):
    path, counts, mask, probe, recon = written
    with h5py.File(path) as f:
        assert f.attrs["default"] == "entry_1" and f["entry_1"].attrs["default"] == "data_1"
        groups = []
        f.visititems(lambda name, obj: groups.append(name) if isinstance(obj, h5py.Group) else None)
        assert groups and all("NX_class" in f[g].attrs for g in groups), [g for g in groups if "NX_class" not in f[g].attrs]
        assert f["entry_1/data_1"].get("data", getlink=True).path == "/entry_1/instrument_1/detector_1/data"
        np.testing.assert_array_equal(f["entry_1/data_1/data"][()], counts)
        assert f["entry_1/data_1/translation"].shape == (4, 3) and not f["entry_1/data_1/translation"][()].any()
        det = f["entry_1/instrument_1/detector_1"]
        np.testing.assert_array_equal(det["mask"][()] != 0, mask)
        assert det["mask"].dtype == np.uint32 and set(np.unique(det["mask"][()])) == {0, 1}
        p = 55e-6
        basis = det["basis_vectors"][()]
        corner = det["corner_position"][()]
        # the beam (pixel H//2, W//2) sits on the axis at the detector distance
        np.testing.assert_allclose(corner + 12 * basis[0] + 10 * basis[1], [0, 0, 2.5], atol=1e-12)
        assert np.allclose(np.linalg.norm(basis, axis=1), p)
        image = f["entry_1/image_1"]
        assert image["data_space"][()] == b"real" and b"transmission" in image["data_type"][()]
        assert image["x_pixel_size"][()] == pytest.approx(30e-9)
        np.testing.assert_array_equal(f["entry_1/probe/data"][()], probe)  # PyNX's place
        np.testing.assert_array_equal(f["entry_1/instrument_1/source_1/probe"][()], probe)
        assert f["entry_1/instrument_1/source_1/wavelength"][()] == pytest.approx(12.398419843320026e-10 / 6.2)


def test_our_reader_reads_mask_probe_and_reconstruction_back(written):
    path, counts, mask, probe, recon = written
    movie = open_movie(path)
    np.testing.assert_array_equal(movie.mask.bad, mask)
    assert movie.describe()["masked_pixels"] == int(mask.sum())
    np.testing.assert_array_equal(movie.probe, probe)
    pf = load_probe(path)
    assert pf.format == "cxi" and pf.pixel_size_nm == pytest.approx((30.0, 30.0))
    np.testing.assert_array_equal(read_hdf5_reconstruction(path).compute(), recon)
    # a reconstruction-only file names its image as the entry's default
    only = write_cxi(path.with_name("recon_only.cxi"), reconstruction=recon, metadata={"pixel_size_nm": 30.0})
    with h5py.File(only) as f:
        assert f["entry_1"].attrs["default"] == "image_1" and "data_1" not in f["entry_1"]
    with pytest.raises(Exception, match="mask"):
        write_cxi(path.with_name("bad.cxi"), counts=counts, mask=mask[:5])


def test_cdtools_reads_our_files(written):
    cdtools_data = pytest.importorskip("cdtools.tools.data", reason="cdtools-py (test extra) is not installed")
    from cdtools.datasets import Ptycho2DDataset

    path, counts, mask, probe, recon = written
    with h5py.File(path) as f:
        assert cdtools_data.get_wavelength(f) == pytest.approx(12.398419843320026e-10 / 6.2, rel=1e-4)
        distance, basis, corner = cdtools_data.get_detector_geometry(f)
        assert distance == pytest.approx(2.5) and basis.shape == (3, 2)
        assert np.allclose(np.linalg.norm(basis, axis=0), 55e-6)
        np.testing.assert_array_equal(cdtools_data.get_mask(f), ~mask)  # cdtools: True = good
        data, axes = cdtools_data.get_data(f)
        np.testing.assert_array_equal(data, counts)
        assert axes == ["translation", "y", "x"]
    dataset = Ptycho2DDataset.from_cxi(str(path))
    assert len(dataset) == 4
    np.testing.assert_array_equal(dataset.mask.numpy(), ~mask)
    (index, translation), pattern = dataset[2]
    np.testing.assert_allclose(pattern.numpy(), counts[2])
