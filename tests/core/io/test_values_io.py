"""Round trips compare data, not names (issue 20): what napari shows is what was written."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from napari_cxdi._napari.reader import file_layers
from napari_cxdi.io import open_movie
from napari_cxdi.io.writer import write_cxi


@pytest.fixture
def written(tmp_path):
    rng = np.random.default_rng(3)
    counts = rng.poisson(20.0, (3, 16, 16)).astype(np.float32)
    recon = (rng.uniform(0.2, 1.0, (3, 16, 16)) * np.exp(1j * rng.uniform(-3, 3, (3, 16, 16)))).astype(np.complex64)
    path = write_cxi(tmp_path / "r.cxi", counts=counts, reconstruction=recon,
                     metadata={"pixel_size_nm": 12.5, "energy_kev": 5.0, "distance_m": 3.0, "detector_pixel_um": 75.0})
    return path, counts, recon


def test_napari_layers_hold_the_written_values(written):
    path, counts, recon = written
    layers = {meta["name"]: (np.asarray(data), meta, kind) for data, meta, kind in file_layers(Path(path))}
    amp = next(v for k, v in layers.items() if k.endswith("amplitude"))
    phase = next(v for k, v in layers.items() if k.endswith("phase"))
    diff = next(v for k, v in layers.items() if k.endswith("diffraction"))
    np.testing.assert_allclose(amp[0], np.abs(recon), rtol=1e-6)
    np.testing.assert_allclose(phase[0], np.angle(recon), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(diff[0]).reshape(counts.shape), counts)
    assert amp[2] == "image" and phase[2] == "image"


def test_movie_round_trip_keeps_counts_and_geometry(written):
    path, counts, _ = written
    movie = open_movie(path)
    np.testing.assert_array_equal(np.asarray(movie.data), counts)
    assert movie.metadata["energy_kev"] == pytest.approx(5.0)
    assert movie.metadata["distance_m"] == pytest.approx(3.0)


def test_a_failing_rewrite_leaves_the_previous_file_intact(written, monkeypatch):
    """Atomic means temporary-then-rename: a write that fails halfway must not touch the old file."""
    path, counts, recon = written
    before = Path(path).read_bytes()

    import napari_cxdi.io.writer as writer

    monkeypatch.setattr(writer, "_write_frames", _failing_after_first(writer._write_frames))
    with pytest.raises(RuntimeError):
        write_cxi(path, counts=counts, reconstruction=recon, overwrite=True)
    assert Path(path).read_bytes() == before
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["entry_1/data_1/data"][()], counts)
    assert sorted(p.name for p in Path(path).parent.iterdir()) == [Path(path).name]


def _failing_after_first(real):
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("disk went away")
        return real(*args, **kwargs)

    return wrapped
