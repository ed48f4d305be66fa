"""Value tests for io behaviour the earlier tests left open (issue 20: survivors of io.hdf5 and io.probes)."""

import os
import warnings

import h5py
import numpy as np

import napari_cxdi
from napari_cxdi.io import read_probe
from napari_cxdi.io.hdf5 import _LENGTH, _scalar, dangling_links


def test_scalar_reads_units_stored_as_numpy_bytes(tmp_path):
    with h5py.File(tmp_path / "u.h5", "w") as f:
        f["distance"] = 2.0
        f["distance"].attrs["units"] = np.bytes_(b"mm")  # fixed-length ASCII, as many writers store it
    with h5py.File(tmp_path / "u.h5", "r") as f:
        assert isinstance(f["distance"].attrs["units"], bytes)
        assert _scalar(f, ("distance",), _LENGTH, "m") == 2e-3


def test_a_soft_link_cycle_is_reported_as_dangling(tmp_path):
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["entry/l1"] = h5py.SoftLink("/entry/l2")  # resolving it raises ("too many links")
        f["entry/l2"] = h5py.SoftLink("/entry/l1")
        f["entry/data"] = np.arange(3)
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert sorted(dangling_links(f)) == ["/entry/l1 -> /entry/l2", "/entry/l2 -> /entry/l1"]


def test_the_link_scan_stops_after_2000_entries(tmp_path):
    # 1999 datasets and one group at the top: 2000 entries seen, so the group's dangling link is not visited
    with h5py.File(tmp_path / "big.h5", "w") as f:
        for i in range(1999):
            f.create_dataset(f"d{i:04d}", data=i)
        f["zz/lost"] = h5py.SoftLink("/nowhere")
    with h5py.File(tmp_path / "big.h5", "r") as f:
        assert dangling_links(f) == []
        assert dangling_links(f, limit=2001) == ["/zz/lost -> /nowhere"]


def test_probe_fitting_notes_are_warnings_at_the_users_line(tmp_path):
    np.save(tmp_path / "p.npy", np.ones((1, 20, 20), np.complex64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_probe(tmp_path / "p.npy", frame_shape=(16, 16))  # cropped: a note, issued as a warning
    notes = [w for w in caught if "cropped about its centre" in str(w.message)]
    assert len(notes) == 1 and notes[0].category is UserWarning
    # attributed to the caller outside napari-cxdi (this file; under mutmut its trampoline, also outside),
    # not to the reader or its decorator
    package = os.path.dirname(os.path.abspath(napari_cxdi.__file__)) + os.sep
    assert not os.path.abspath(notes[0].filename).startswith(package), notes[0].filename
    assert notes[0].filename in (__file__, *[f for f in [notes[0].filename] if "mutmut" in f])
