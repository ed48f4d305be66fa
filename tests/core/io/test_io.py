import tracemalloc

import h5py
import hdf5plugin
import numpy as np
import pytest
import tifffile

from napari_cxdi.errors import DataValidationError, InputFileError, OutputExistsError, ProbeMismatchError
from napari_cxdi.io import default_output_path, movie_info, open_movie, read_probe, read_table, write_cxi


@pytest.fixture
def counts(rng):
    return rng.poisson(5.0, size=(6, 32, 32)).astype(np.uint32)


def test_cxi_round_trip_with_metadata_probe_and_provenance(tmp_path, counts, rng):
    probe = (rng.normal(size=(2, 32, 32)) + 1j * rng.normal(size=(2, 32, 32))).astype(np.complex64)
    meta = {"energy_kev": 5.0, "distance_m": 3.14, "detector_pixel_um": 75.0 * 384 / 32, "exposure_s": 0.1}
    path = write_cxi(tmp_path / "m.cxi", counts=counts, probe=probe, metadata=meta, config={"seed": 1}, metrics={"rf": 0.2})
    movie = open_movie(path)
    assert movie.is_lazy and movie.format == "cxi"
    assert np.array_equal(movie.frames(0, 6), counts)
    assert np.allclose(movie.probe, probe)
    assert movie.pixel_size_nm == pytest.approx(27.035, abs=0.01)
    assert movie.metadata["exposure_s"] == pytest.approx(0.1)
    with h5py.File(path) as f:
        record = f["entry_1/provenance"][()].decode()
        assert '"seed": 1' in record and '"version"' in record and '"rf": 0.2' in record


def test_writer_never_overwrites_and_is_atomic(tmp_path, counts):
    path = write_cxi(tmp_path / "m.cxi", counts=counts)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        write_cxi(path, counts=counts[:2])
    with pytest.raises(OutputExistsError, match="input"):
        write_cxi(path, counts=counts[:2], protected=[path])
    assert path.read_bytes() == before
    write_cxi(path, counts=counts[:2], overwrite=True)
    assert open_movie(path).n_frames == 2
    assert [p.name for p in tmp_path.iterdir()] == ["m.cxi"]  # no temporary files left
    assert default_output_path(path).name == "m_recon.cxi"


def test_tables_round_trip(tmp_path, counts):
    import pandas as pd

    table = pd.DataFrame({"frame": [0, 1], "particle": [3, 3], "y": [1.5, 2.5]})
    path = write_cxi(tmp_path / "t.cxi", counts=counts, tables={"trajectories": table})
    assert read_table(path, "trajectories").equals(table)


def test_nexus_default_signal(tmp_path, counts):
    path = tmp_path / "scan.nxs"
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "entry"
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry.attrs["default"] = "frames"
        entry.create_dataset("other", data=np.zeros((4, 8, 8)))  # a decoy the signal attribute rules out
        data = entry.create_group("frames")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "counts"
        data.create_dataset("counts", data=counts)
        inst = entry.create_group("instrument")
        inst.create_dataset("beam/incident_wavelength", data=2.4797).attrs["units"] = "angstrom"
        det = inst.create_group("detector")
        det.create_dataset("detector_distance", data=3140.0).attrs["units"] = "mm"
        det.create_dataset("x_pixel_size", data=75e-6).attrs["units"] = "m"
    movie = open_movie(path)
    assert movie.format == "nexus" and movie.dataset == "/entry/frames/counts"
    assert np.array_equal(movie.frames(0, 6), counts)
    assert movie.metadata["energy_kev"] == pytest.approx(5.0, rel=1e-3)
    assert movie.metadata["distance_m"] == pytest.approx(3.14)


def write_eiger(tmp_path, counts, n_files=2):
    """An EIGER-like master with external links to bitshuffle/LZ4 data files."""
    per = len(counts) // n_files
    master = tmp_path / "run_master.h5"
    with h5py.File(master, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        for i in range(n_files):
            name = f"run_data_{i + 1:06d}.h5"
            with h5py.File(tmp_path / name, "w") as d:
                d.create_dataset(
                    "entry/data/data", data=counts[i * per : (i + 1) * per], chunks=(1, 32, 32),
                    **hdf5plugin.Bitshuffle(cname="lz4"),
                )
            data[f"data_{i + 1:06d}"] = h5py.ExternalLink(name, "/entry/data/data")
        det = entry.create_group("instrument/detector")
        det.create_dataset("x_pixel_size", data=75e-6)
        det.create_dataset("detector_distance", data=3.14)
        det.create_dataset("count_time", data=0.1)
        entry.create_dataset("instrument/beam/incident_wavelength", data=2.4797)
    return master


def test_eiger_master_with_external_links_and_bitshuffle(tmp_path, counts):
    master = write_eiger(tmp_path, counts)
    movie = open_movie(master)
    assert movie.format == "eiger" and movie.shape == (6, 32, 32)
    assert np.array_equal(movie.frames(0, 6), counts)
    assert movie.metadata["exposure_s"] == pytest.approx(0.1)
    assert movie.data.chunks[0] == (1,) * 6  # one frame per chunk
    (tmp_path / "run_data_000002.h5").unlink()
    with pytest.raises(InputFileError, match="run_data_000002.h5"):
        open_movie(master)


def test_lazy_open_reads_no_frames(tmp_path):
    path = tmp_path / "big.h5"
    frame = np.ones((256, 256), np.float32)
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("data", shape=(400, 256, 256), dtype=np.float32, chunks=(1, 256, 256))
        for i in range(400):
            dset[i] = frame * i
    tracemalloc.start()
    movie = open_movie(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert movie.is_lazy and movie.shape == (400, 256, 256)
    assert peak < 5 * frame.nbytes  # 400 frames = 105 MB; opening touches three frames at most
    assert movie.frames(399, 400)[0, 0, 0] == 399
    path.rename(tmp_path / "moved.h5")  # no handle is held open between reads


def test_tiff_and_numpy_readers(tmp_path, counts):
    tifffile.imwrite(tmp_path / "m.tif", counts)
    tifffile.imwrite(tmp_path / "mz.tif", counts, compression="zlib")
    np.save(tmp_path / "m.npy", counts)
    np.savez(tmp_path / "m.npz", counts)
    np.savez(tmp_path / "k.npz", data=counts)
    for name in ("m.tif", "mz.tif", "m.npy", "m.npz", "k.npz"):
        movie = open_movie(tmp_path / name)
        assert movie.shape == (6, 32, 32), name
        assert np.array_equal(movie.frames(0, 6), counts), name
    assert open_movie(tmp_path / "m.npy").is_lazy  # memory-mapped


def test_probe_files(tmp_path, rng):
    probe = (rng.normal(size=(3, 16, 16)) + 1j * rng.normal(size=(3, 16, 16))).astype(np.complex64)
    np.save(tmp_path / "p.npy", probe)
    write_cxi(tmp_path / "p.cxi", probe=probe)
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f.create_dataset("entry_1/instrument_1/source_1/probe", data=probe)
    for name in ("p.npy", "p.cxi", "p.h5"):
        assert np.allclose(read_probe(tmp_path / name, frame_shape=(10, 16, 16)), probe)
    notes: list[str] = []  # a smaller probe is zero-padded about its centre, with a note
    padded = read_probe(tmp_path / "p.npy", frame_shape=(10, 32, 32), notes=notes)
    assert padded.shape == (3, 32, 32) and np.allclose(padded[:, 8:24, 8:24], probe) and "zero-padded" in notes[0]
    np.save(tmp_path / "line.npy", probe[0, 0])
    with pytest.raises(ProbeMismatchError, match=r"\[modes, H, W\]"):
        read_probe(tmp_path / "line.npy", frame_shape=(10, 32, 32))
    np.save(tmp_path / "single.npy", probe[0])
    assert read_probe(tmp_path / "single.npy").shape == (1, 16, 16)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda p: p.write_bytes(b""), InputFileError, "empty"),
        (lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40), InputFileError, "truncated or corrupt"),
        (lambda p: np.save(p.with_suffix(".npy"), np.zeros((2, 3, 4, 5))), DataValidationError, "4-D"),
        (lambda p: np.save(p.with_suffix(".npy"), np.full((2, 4, 4), np.nan)), DataValidationError, "NaN"),
        (lambda p: np.save(p.with_suffix(".npy"), -np.ones((2, 4, 4))), DataValidationError, "negative"),
        (lambda p: np.save(p.with_suffix(".npy"), np.ones((2, 4, 4), np.complex64)), DataValidationError, "complex"),
        (lambda p: p.with_suffix(".txt").write_text("hello"), InputFileError, "unsupported"),
    ],
)
def test_bad_input_gives_clear_errors(tmp_path, make, error, message):
    base = tmp_path / "bad.h5"
    make(base)
    path = next(tmp_path.iterdir())
    with pytest.raises(error, match=message) as info:
        open_movie(path)
    assert path.name in str(info.value)


def test_truncated_real_hdf5_file(tmp_path, counts):
    path = write_cxi(tmp_path / "ok.cxi", counts=counts)
    data = path.read_bytes()
    cut = tmp_path / "cut.cxi"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="cut.cxi"):
        movie = open_movie(cut)
        movie.frames(0, 6)


def test_ambiguous_plain_hdf5_asks_for_a_dataset(tmp_path, counts):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["a"] = counts
        f["b"] = counts
    with pytest.raises(InputFileError, match="dataset="):
        open_movie(path)
    assert open_movie(path, dataset="b").shape == (6, 32, 32)


def test_info_of_a_reconstruction(tmp_path, counts):
    recon = np.ones((6, 32, 32), np.complex64)
    path = write_cxi(tmp_path / "r.cxi", counts=counts, reconstruction=recon, metadata={"pixel_size_nm": 27.0})
    info = movie_info(path)
    assert info["reconstruction"] == "entry_1/image_1/data" and info["shape"] == [6, 32, 32]
