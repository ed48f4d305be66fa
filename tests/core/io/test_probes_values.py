"""Value tests of io/probes.py (issue 20, mutation testing): each layout's modes, pixel size, format,
dataset and notes checked exactly; typed errors with their messages; resampling and fitting by hand.

Fast: tiny probes, no reconstruction. The cross-layout round trip is in test_probe_formats.py.
"""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_cxdi.errors import ConfigError, DataValidationError, InputFileError, ProbeMismatchError
from napari_cxdi.io.probes import (
    MIN_PROBE_PX, PROBE_SUFFIXES, ProbeFile, _as_complex, _basis_pixel, _crop_pad, _modes, _padded_size, _pixel_pair,
    emit, fit_probe, load_probe, resample_modes,
)


def _p(k=2, h=10, w=12, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(k, h, w)) + 1j * rng.normal(size=(k, h, w))).astype(np.complex64)


def _write(path, build):
    with h5py.File(path, "w") as f:
        build(f)
    return path


# -- array helpers ---------------------------------------------------------------------------------

def test_as_complex_variants():
    notes: list[str] = []
    rec = np.zeros((8, 8), dtype=[("r", "f4"), ("i", "f4")])
    rec["r"], rec["i"] = 1.0, 2.0
    out = _as_complex(rec, "w", notes)
    assert out.dtype == np.complex64 and out[0, 0] == 1 + 2j and notes == []
    pairs = np.zeros((2, 8, 3, 2))
    pairs[..., 0], pairs[..., 1] = 3.0, -4.0
    out = _as_complex(pairs, "w", notes)
    assert out.shape == (2, 8, 3) and out[0, 0, 0] == 3 - 4j
    assert notes == ["w: real array with a last axis of 2 read as (real, imaginary) parts"]
    notes.clear()
    for real in (np.ones((8, 8)), np.ones((8, 2, 2)), np.ones((8, 2))):  # no (re, im) pairs: an amplitude
        out = _as_complex(real, "w", notes)
        assert out.shape == real.shape and out.dtype == np.complex64 and out.imag.max() == 0
    assert notes == ["w: the probe is real; used as an amplitude with zero phase"] * 3
    with pytest.raises(DataValidationError, match="w: the probe must be numeric, got <U1"):
        _as_complex(np.array([["a"]]), "w", [])
    notes.clear()
    assert _as_complex(np.ones((8, 8), np.complex128), "w", notes).dtype == np.complex64 and notes == []


def test_modes_shapes_opr_and_checks():
    p = _p(2, 8, 9)
    notes: list[str] = []
    out = _modes(p[0], "w", notes)
    assert out.shape == (1, 8, 9) and out.flags.c_contiguous and notes == []
    np.testing.assert_array_equal(out[0], p[0])
    np.testing.assert_array_equal(_modes(p, "w", notes), p)
    opr = np.stack([p, 3 * p, 5 * p])
    out = _modes(opr, "w", notes)
    np.testing.assert_array_equal(out, p)
    assert notes == ["w: [n_opr=3, modes, H, W] probe (pty-chi layout): the first OPR mode (the mean illumination) "
                     "is used, the other 2 are dropped"]
    notes.clear()
    out = _modes(opr, "w", notes, opr="mean")
    np.testing.assert_allclose(out, 3 * p, rtol=1e-6)
    assert notes == ["w: [n_opr=3, modes, H, W] probe: the 3 OPR modes were averaged (OPR modes describe "
                     "position-to-position variation; their mean is not a physical probe)"]
    notes.clear()
    np.testing.assert_array_equal(_modes(p[None], "w", notes, opr="mean"), p)
    assert notes == []
    for bad in (np.ones(9, np.complex64), np.ones((1, 1, 2, 9, 9), np.complex64)):
        with pytest.raises(ProbeMismatchError, match=r"w: a probe must be \[modes, H, W\] \(or pty-chi \[n_opr, modes, H, W\]\), got shape"):
            _modes(bad, "w", [])
    with pytest.raises(ProbeMismatchError, match=r"w: a probe of 7x9 pixels is too small to be an illumination \(at least 8x8\)"):
        _modes(np.ones((7, 9), np.complex64), "w", [])
    with pytest.raises(ProbeMismatchError, match="9x7 pixels"):
        _modes(np.ones((9, 7), np.complex64), "w", [])
    assert MIN_PROBE_PX == 8 and _modes(np.ones((8, 8), np.complex64), "w", []).shape == (1, 8, 8)
    for value in (np.nan, np.inf, complex(0, np.inf)):
        a = np.ones((8, 8), np.complex64)
        a[3, 4] = value
        with pytest.raises(DataValidationError, match="w: the probe contains NaN or infinite values"):
            _modes(a, "w", [])
    with pytest.raises(DataValidationError, match="w: the probe is zero everywhere"):
        _modes(np.zeros((8, 8), np.complex64), "w", [])
    one = np.zeros((8, 8), np.complex64)
    one[2, 2] = 1e-30j
    assert _modes(one, "w", [])[0, 2, 2] == one[2, 2]


def test_pixel_pair():
    assert _pixel_pair(2e-8, 1e9) == pytest.approx((20.0, 20.0), rel=1e-12)
    assert _pixel_pair([1e-8, 3e-8], 1e9) == pytest.approx((10.0, 30.0), rel=1e-12)
    assert _pixel_pair(np.array([[5.0, 6.0, 7.0]]), 1.0) == pytest.approx((5.0, 6.0), rel=1e-12)
    for bad in ([], [np.nan], [1.0, np.inf], [0.0], [-1.0, 2.0], [2.0, 0.0]):
        assert _pixel_pair(bad, 1.0) is None
    assert isinstance(_pixel_pair(np.float32(2), 1.0)[0], float)


def test_basis_pixel():
    b = np.array([[0.0, -20e-9], [-10e-9, 0.0], [0.0, 0.0]])
    assert _basis_pixel(b) == pytest.approx((10.0, 20.0), rel=1e-12)
    assert _basis_pixel(b.T) == pytest.approx((10.0, 20.0), rel=1e-12)
    assert _basis_pixel(np.array([[3e-9, 0], [4e-9, 0], [0, 5e-9]])) == (pytest.approx(5.0), pytest.approx(5.0))
    assert _basis_pixel(np.ones((3, 3))) is None and _basis_pixel(np.ones(6)) is None
    assert _basis_pixel(np.zeros((3, 2))) is None
    assert _basis_pixel(np.array([[1e-9, 0], [0, 0], [0, 0]])) is None
    assert _basis_pixel(np.array([[0, 1e-9], [0, 0], [0, 0]])) is None


# -- NumPy and NPZ files ---------------------------------------------------------------------------

def test_npy_probe(tmp_path):
    p = _p()
    np.save(tmp_path / "p.npy", p)
    pf = load_probe(tmp_path / "p.npy")
    assert pf == ProbeFile(pf.modes, None, "numpy", None, [])
    np.testing.assert_array_equal(pf.modes, p)
    with open(tmp_path / "o.NPY", "wb") as fh:
        np.save(fh, np.stack([p, 2 * p]))
    pf = load_probe(tmp_path / "o.NPY", opr="mean")
    assert pf.format == "pty-chi" and pf.modes.shape == (2, 10, 12) and "averaged" in pf.notes[0]
    np.testing.assert_allclose(pf.modes, 1.5 * p, rtol=1e-6)
    np.save(tmp_path / "obj.npy", np.array([None, 1], dtype=object))
    with pytest.raises(InputFileError, match="not a readable probe file"):
        load_probe(tmp_path / "obj.npy")
    (tmp_path / "cut.npy").write_bytes((tmp_path / "p.npy").read_bytes()[:100])
    with pytest.raises(InputFileError, match=r"not a readable probe file \(truncated or corrupt\?\)"):
        load_probe(tmp_path / "cut.npy")


def test_npz_keys_and_pixel_sizes(tmp_path):
    p = _p()
    for key in ("probe", "probes", "arr_0", "illumination"):
        np.savez(tmp_path / f"{key}.npz", **{key: p, "other": np.ones((8, 8), np.complex64)})
        pf = load_probe(tmp_path / f"{key}.npz")
        assert pf.dataset == key and pf.format == "numpy" and pf.pixel_size_nm is None
        np.testing.assert_array_equal(pf.modes, p)
    np.savez(tmp_path / "order.npz", illumination=2 * p, probe=p)
    assert load_probe(tmp_path / "order.npz").dataset == "probe"
    np.savez(tmp_path / "single.npz", whatever=p.real)
    assert load_probe(tmp_path / "single.npz").dataset == "whatever"
    np.savez(tmp_path / "cplx.npz", real=np.ones((8, 8)), field=p, flat=np.ones(3, np.complex64))
    assert load_probe(tmp_path / "cplx.npz").dataset == "field"
    np.savez(tmp_path / "two.npz", a=p, b=p)
    with pytest.raises(InputFileError, match=r"cannot tell which array is the probe among keys \['a', 'b'\]; expected 'probe'"):
        load_probe(tmp_path / "two.npz")
    assert load_probe(tmp_path / "two.npz", dataset="b").dataset == "b"
    with pytest.raises(InputFileError, match=r"no key 'c' in the NPZ file \(keys: a, b\)"):
        load_probe(tmp_path / "two.npz", dataset="c")
    np.savez(tmp_path / "opr.npz", probe=np.stack([p, p]))
    assert load_probe(tmp_path / "opr.npz").format == "pty-chi"

    cases = [
        (dict(probe_pixel_width_m=2e-8, probe_pixel_height_m=3e-8), pytest.approx((30.0, 20.0), rel=1e-12)),
        (dict(probe_pixel_width_m=np.array([2e-8])), pytest.approx((20.0, 20.0), rel=1e-12)),
        (dict(probe_pixel_width_m=2e-8, probe_pixel_height_m=0.0), None),
        (dict(probe_pixel_width_m=-2e-8), None),
        (dict(pixel_size_nm=np.array([4.0, 5.0]), pixel_size_m=1.0), pytest.approx((4.0, 5.0), rel=1e-12)),
        (dict(pixel_size_m=6e-9), pytest.approx((6.0, 6.0), rel=1e-12)),
        (dict(probe_pixel_size_m=7e-9), pytest.approx((7.0, 7.0), rel=1e-12)),
        (dict(psize=[8e-9, 9e-9]), pytest.approx((8.0, 9.0), rel=1e-12)),
        (dict(x_pixel_size=1e-8), pytest.approx((10.0, 10.0), rel=1e-12)),
        (dict(pixel_size=1.1e-8), pytest.approx((11.0, 11.0), rel=1e-12)),
        (dict(pixel_size_m=6e-9, pixel_size=1.0), pytest.approx((6.0, 6.0), rel=1e-12)),
        (dict(pixel_size_m=-1.0, pixel_size=1e-8), None),
    ]
    for i, (extra, expected) in enumerate(cases):
        np.savez(tmp_path / f"px{i}.npz", probe=p, **extra)
        got = load_probe(tmp_path / f"px{i}.npz").pixel_size_nm
        if expected is None:
            assert got is None, extra
        else:
            assert got == expected, extra


# -- HDF5 layouts -------------------------------------------------------------------------------

def test_ptypy_storages_and_pixel(tmp_path):
    p = _p()

    def build(f):
        for sid, scale in (("S01", 2.0), ("S00", 1.0)):
            g = f.create_group(f"content/probe/{sid}")
            g["data"] = p * scale
            g["_psize"] = np.array([3e-8, 2e-8])
        f.create_group("content/probe/empty")
    pf = load_probe(_write(tmp_path / "a.ptyr", build))
    assert (pf.format, pf.dataset, pf.pixel_size_nm) == ("ptypy", "/content/probe/S00/data", pytest.approx((30.0, 20.0), rel=1e-12))
    np.testing.assert_array_equal(pf.modes, p)
    assert pf.notes == ["ptypy file holds 2 probe storages (S00, S01); S00 is used"]

    def build2(f):
        g = f.create_group("content/probe/S00")
        g["data"] = p
        g["psize"] = 1.5e-8
    pf = load_probe(_write(tmp_path / "b.ptyr", build2))
    assert pf.pixel_size_nm == pytest.approx((15.0, 15.0), rel=1e-12) and pf.notes == []

    def build3(f):
        g = f.create_group("content/probe/S00")
        g["data"] = p
        g.create_group("_psize")
        g["psize"] = 1.5e-8
    assert load_probe(_write(tmp_path / "c.ptyr", build3)).pixel_size_nm == pytest.approx((15.0, 15.0), rel=1e-12)

    def build4(f):
        g = f.create_group("content/probe/S00")
        g["data"] = p
    assert load_probe(_write(tmp_path / "d.ptyr", build4)).pixel_size_nm is None

    def build5(f):
        f.create_group("content/probe/S00")["notdata"] = p
        f["content/probe/loose"] = 1.0
    with pytest.raises(InputFileError, match=r"ptypy file: /content/probe holds no storage with data \(found \['S00', 'loose'\]\)"):
        load_probe(_write(tmp_path / "e.ptyr", build5))


def test_cxi_source_probe_and_pixel_sources(tmp_path):
    p = _p()

    def build(f):
        f["entry_1/instrument_1/source_1/illumination"] = p
        f["entry_1/instrument_1/source_1/illumination"].attrs["x_pixel_size"] = 2e-8
    pf = load_probe(_write(tmp_path / "a.cxi", build))
    assert (pf.format, pf.dataset, pf.pixel_size_nm, pf.notes) == ("cxi", "/entry_1/instrument_1/source_1/illumination", pytest.approx((20.0, 20.0), rel=1e-12), [])
    np.testing.assert_array_equal(pf.modes, p)

    def build2(f):  # the group's x/y_pixel_size datasets (with units)
        f["entry_1/instrument_1/source_1/probe"] = p
        f["entry_1/instrument_1/source_1/x_pixel_size"] = 20.0
        f["entry_1/instrument_1/source_1/x_pixel_size"].attrs["units"] = "nm"
        f["entry_1/instrument_1/source_1/y_pixel_size"] = 0.03
        f["entry_1/instrument_1/source_1/y_pixel_size"].attrs["unit"] = b"um"
    assert load_probe(_write(tmp_path / "b.cxi", build2)).pixel_size_nm == (pytest.approx(30.0), pytest.approx(20.0))

    def build3(f):  # entry_1/image_1 pixel, with the source probe preferred over entry_1/probe_1
        f["entry_1/instrument_1/source_1/probe"] = p
        f["entry_1/probe_1/data"] = 2 * p
        f["entry_1/image_1/x_pixel_size"] = 4e-8
    pf = load_probe(_write(tmp_path / "c.cxi", build3))
    assert pf.dataset == "/entry_1/instrument_1/source_1/probe" and pf.pixel_size_nm == pytest.approx((40.0, 40.0), rel=1e-12)

    def build4(f):  # entry_1/probe_1 pixel
        f["entry_1/instrument_1/source_1/probe"] = p
        f["entry_1/probe_1/x_pixel_size"] = 5e-8
        f["entry_1/image_1/x_pixel_size"] = 4e-8
    assert load_probe(_write(tmp_path / "d.cxi", build4)).pixel_size_nm == pytest.approx((50.0, 50.0), rel=1e-12)

    def build5(f):  # the far-field geometry
        f["entry_1/instrument_1/source_1/probe"] = p  # 12 columns
        f["entry_1/instrument_1/source_1/energy"] = 8.0 * 1.602176634e-16
        f["entry_1/instrument_1/detector_1/distance"] = 5.0
        f["entry_1/instrument_1/detector_1/x_pixel_size"] = 75e-6
    dx = 12.398419843320026e-10 / 8.0 * 5.0 / (12 * 75e-6) * 1e9
    got = load_probe(_write(tmp_path / "e.cxi", build5)).pixel_size_nm
    assert got == (pytest.approx(dx, rel=1e-12), pytest.approx(dx, rel=1e-12))

    def build6(f):  # an object-plane pixel in the geometry wins
        f["entry_1/instrument_1/source_1/probe"] = p
        f["entry_1/sample_1/pixel_size"] = 7e-9
        f["entry_1/instrument_1/detector_1/distance"] = 5.0
    assert load_probe(_write(tmp_path / "f.cxi", build6)).pixel_size_nm == (pytest.approx(7.0), pytest.approx(7.0))

    def build7(f):  # a 1-D dataset at a source path is not a probe; nothing else either
        f["entry_1/instrument_1/source_1/probe"] = np.ones(3)
    with pytest.raises(InputFileError, match="no probe layout recognised"):
        load_probe(_write(tmp_path / "g.cxi", build7))

    def build8(f):  # an NXdata group at a source path; only energy: no pixel
        g = f.create_group("entry_1/instrument_1/source_1/probe")
        g["data"] = p
        f["entry_1/instrument_1/source_1/energy"] = 8.0 * 1.602176634e-16
    pf = load_probe(_write(tmp_path / "h.cxi", build8))
    assert pf.dataset == "/entry_1/instrument_1/source_1/probe" and pf.pixel_size_nm is None


@pytest.mark.parametrize("name", ["entry_1/probe_1/data", "entry_1/probe", "entry_1/instrument_1/probe"])
def test_other_cxi_places(tmp_path, name):
    p = _p()

    def build(f):
        f[name] = p
        f["entry_1/image_1/x_pixel_size"] = 4e-8
        f["entry_1/image_1/y_pixel_size"] = 6e-8
    pf = load_probe(_write(tmp_path / "a.cxi", build))
    assert (pf.format, pf.dataset, pf.pixel_size_nm) == ("cxi", "/" + name, pytest.approx((60.0, 40.0), rel=1e-12))
    np.testing.assert_array_equal(pf.modes, p)


def test_pynx_result_is_flipped_back(tmp_path):
    p = _p()

    def build(f):
        for n, scale in ((2, 1.0), (10, 3.0), (1, 5.0)):
            r = f.create_group(f"entry_{n}/result_2")
            r["data"] = np.flip(p * scale, axis=-2)
            r["x_pixel_size"] = 2e-8
            r["y_pixel_size"] = 3e-8
            f[f"entry_{n}/probe"] = h5py.SoftLink(f"/entry_{n}/result_2")
        f.create_group("entry_last_not")
    pf = load_probe(_write(tmp_path / "a.cxi", build))
    assert (pf.format, pf.dataset, pf.pixel_size_nm) == ("pynx", "/entry_10/probe/data", pytest.approx((30.0, 20.0), rel=1e-12))  # entry_10 > entry_2
    np.testing.assert_allclose(pf.modes, 3 * p, rtol=1e-6)
    assert pf.modes.flags.c_contiguous
    assert pf.notes == [f"{tmp_path / 'a.cxi'}: PyNX stores the probe flipped up/down (top-left origin); flipped back to the frames' orientation"]

    def build2(f):
        r = f.create_group("entry_1/result_2")
        r["data"] = np.flip(p, axis=-2)
        f["entry_1/probe"] = h5py.SoftLink("/entry_1/result_2")
        f.create_group("entry_3/probe")  # a probe group without data is skipped
        f["entry_4/probe"] = np.ones(3)  # not a group
        f["entry_last"] = h5py.SoftLink("/entry_1")
    pf = load_probe(_write(tmp_path / "b.cxi", build2))
    assert pf.dataset == "/entry_last/probe/data" and pf.pixel_size_nm is None
    np.testing.assert_array_equal(pf.modes, p)

    def build3(f):
        r = f.create_group("entry_1/result_2")
        r["data"] = np.flip(p, axis=-2)
        f["entry_1/probe"] = h5py.SoftLink("/entry_1/result_2")
        f.create_group("entry_3/probe")
        f["entry_x"] = 1
    assert load_probe(_write(tmp_path / "c.cxi", build3)).dataset == "/entry_1/probe/data"


def test_cdtools_layouts(tmp_path):
    p = _p()
    basis = np.array([[0.0, -2e-8], [-3e-8, 0.0], [0.0, 0.0]])

    def build(f):
        f["state_dict/probe"] = p / 4
        f["state_dict/probe_norm"] = np.array([4.0])
        f["state_dict/obj_basis"] = basis
        f["state_dict/basis"] = basis * 2
    pf = load_probe(_write(tmp_path / "a.h5", build))
    assert (pf.format, pf.dataset) == ("cdtools", "/state_dict/probe")
    assert pf.pixel_size_nm == (pytest.approx(60.0), pytest.approx(40.0))  # basis before obj_basis
    np.testing.assert_allclose(pf.modes, p, rtol=1e-6)
    assert pf.notes == ["cdtools probe multiplied back by its stored probe_norm"] and pf.modes.dtype == np.complex64

    def build2(f):  # state dict without basis or norm
        f["state_dict/probe"] = p
    pf = load_probe(_write(tmp_path / "b.h5", build2))
    assert (pf.format, pf.pixel_size_nm, pf.notes) == ("cdtools", None, [])

    def build3(f):  # old root layout needs a basis
        f["probe"] = p
        f["probe_basis"] = basis
        f["basis"] = basis * 2
    pf = load_probe(_write(tmp_path / "c.h5", build3))
    assert (pf.format, pf.dataset, pf.pixel_size_nm) == ("cdtools", "/probe", (pytest.approx(30.0), pytest.approx(20.0)))

    def build4(f):
        f["probe"] = p
        f["obj_basis"] = basis
    assert load_probe(_write(tmp_path / "d.h5", build4)).pixel_size_nm == (pytest.approx(30.0), pytest.approx(20.0))

    def build5(f):  # a root 'probe' without basis: the plain-HDF5 rule (a 'probe' dataset), sibling pixel keys
        f["probe"] = p.real
        f["probe_pixel_width_m"] = 2e-8
        f["probe_pixel_height_m"] = 3e-8
    pf = load_probe(_write(tmp_path / "e.h5", build5))
    assert (pf.format, pf.dataset, pf.pixel_size_nm) == ("hdf5", "/probe", pytest.approx((30.0, 20.0), rel=1e-12))
    assert pf.notes == [f"{tmp_path / 'e.h5'}:/probe: the probe is real; used as an amplitude with zero phase"]


def test_plain_hdf5_probe_and_sibling_pixels(tmp_path):
    p = _p()
    cases = [
        (lambda g: g.__setitem__("probe_pixel_width_m", 2e-8), pytest.approx((20.0, 20.0), rel=1e-12)),
        (lambda g: (g.__setitem__("probe_pixel_width_m", 2e-8), g.__setitem__("probe_pixel_height_m", -1.0)), None),
        (lambda g: g.__setitem__("probe_pixel_width_m", 0.0), None),
        (lambda g: g.__setitem__("pixel_size_m", 5e-9), pytest.approx((5.0, 5.0), rel=1e-12)),
        (lambda g: g.__setitem__("psize", [5e-9, 6e-9]), pytest.approx((5.0, 6.0), rel=1e-12)),
        (lambda g: g.__setitem__("pixel_size", 5.0), (5e9, 5e9)),
        (lambda g: (g.__setitem__("pixel_size_m", -1.0), g.__setitem__("pixel_size", 4e-9)), pytest.approx((4.0, 4.0), rel=1e-12)),
        (lambda g: g.__setitem__("pixel_size_m", "x"), None),
        (lambda g: None, None),
    ]
    for i, (add, expected) in enumerate(cases):
        def build(f, add=add):
            g = f.create_group("results")
            g["field"] = p
            g["counts"] = np.ones((3, 8, 8))
            add(g)
        pf = load_probe(_write(tmp_path / f"{i}.h5", build))
        assert (pf.format, pf.dataset) == ("hdf5", "/results/field")
        assert pf.pixel_size_nm == expected, i

    def attrs(f):  # the dataset's own attributes
        f["field"] = p
        f["field"].attrs["pixel_size_m"] = 9e-9
        f["x_pixel_size"] = 1.0
    assert load_probe(_write(tmp_path / "attrs.h5", attrs)).pixel_size_nm == (pytest.approx(9.0), pytest.approx(9.0))

    def attrs2(f):
        f["field"] = p
        f["field"].attrs["pixel_size"] = [9e-9, 8e-9]
        f["field"].attrs["x_pixel_size"] = -1.0
    assert load_probe(_write(tmp_path / "attrs2.h5", attrs2)).pixel_size_nm == (pytest.approx(9.0), pytest.approx(8.0))

    def opr(f):
        f["ptychi/probes"] = np.stack([p, p]).real
        f["ptychi/pixel_size_m"] = 1e-8
    pf = load_probe(_write(tmp_path / "opr.h5", opr))
    assert (pf.format, pf.dataset, pf.pixel_size_nm) == ("pty-chi", "/ptychi/probes", pytest.approx((10.0, 10.0), rel=1e-12))

    def named(f):  # a real dataset named 'PROBE' counts, a real one with another name does not
        f["x/PROBE"] = p.real
        f["x/other"] = p.real
    assert load_probe(_write(tmp_path / "named.h5", named)).dataset == "/x/PROBE"

    def none(f):
        f["counts"] = np.ones((3, 8, 8))
        f["vec"] = np.ones(3, np.complex64)
        f["big"] = np.ones((1, 1, 1, 1, 8), np.complex64)
    with pytest.raises(InputFileError, match=r"no probe layout recognised \(PyNX entry_N/probe, ptypy content/probe, "
                                             r"cdtools probe \+ basis, CXI source_1/probe, or a complex dataset\); "
                                             r"the file holds: /big \(1, 1, 1, 1, 8\) complex64; /counts \(3, 8, 8\) float64; /vec"):
        load_probe(_write(tmp_path / "none.h5", none))
    with pytest.raises(InputFileError, match="the file holds: no datasets"):
        load_probe(_write(tmp_path / "empty.h5", lambda f: f.create_group("g")))

    def many(f):
        for i in range(14):
            f[f"d{i:02d}"] = np.ones(2)
    with pytest.raises(InputFileError) as info:
        load_probe(_write(tmp_path / "many.h5", many))
    assert str(info.value).count("float64") == 12

    def several(f):
        for name in ("a", "b", "c", "d", "e", "f", "g"):
            f[name] = p
    with pytest.raises(InputFileError, match=r"several datasets could be the probe \(/a, /b, /c, /d, /e, /f\); "
                                             r"choose one \(API: dataset=\.\.\., CLI: --probe-dataset\)"):
        load_probe(_write(tmp_path / "several.h5", several))


def test_dataset_argument(tmp_path):
    p = _p()

    def build(f):
        f["a"] = p
        g = f.create_group("grp")
        g["data"] = 2 * p
        g["x_pixel_size"] = 3e-8
        f["b"] = p
        f["b"].attrs["x_pixel_size"] = 2e-8
    path = _write(tmp_path / "x.h5", build)
    pf = load_probe(path, dataset="grp")
    assert (pf.format, pf.dataset, pf.pixel_size_nm) == ("hdf5", "grp", pytest.approx((30.0, 30.0), rel=1e-12))
    np.testing.assert_array_equal(pf.modes, 2 * p)
    assert load_probe(path, dataset="b").pixel_size_nm == pytest.approx((20.0, 20.0), rel=1e-12)
    assert load_probe(path, dataset="a").pixel_size_nm is None
    with pytest.raises(InputFileError, match="no probe dataset 'zz' in the file"):
        load_probe(path, dataset="zz")
    pf = load_probe(path, dataset="/grp/data")
    assert pf.pixel_size_nm == pytest.approx((30.0, 30.0), rel=1e-12)  # the parent group's


def test_load_probe_errors(tmp_path):
    with pytest.raises(ConfigError, match="opr must be 'first' or 'mean', got 'last'"):
        load_probe(tmp_path / "whatever.npy", opr="last")
    with pytest.raises(InputFileError):
        load_probe(tmp_path / "missing.h5")
    (tmp_path / "x.cxi").write_bytes(b"not hdf5 at all")
    with pytest.raises(InputFileError, match=r"unsupported probe file type '\.cxi'; use one of \.npy, \.npz, \.h5"):
        load_probe(tmp_path / "x.cxi")
    assert PROBE_SUFFIXES[:3] == (".npy", ".npz", ".h5") and ".ptyr" in PROBE_SUFFIXES and ".pth" in PROBE_SUFFIXES
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(InputFileError, match="not a readable probe file"):
        load_probe(tmp_path / "bad.npz")
    good = tmp_path / "good.h5"
    _write(good, lambda f: f.__setitem__("probe", _p()))
    (tmp_path / "trunc.h5").write_bytes(good.read_bytes()[:1200])
    with pytest.raises(InputFileError, match="not a readable HDF5 probe file"):
        load_probe(tmp_path / "trunc.h5")


def test_torch_checkpoints(tmp_path):
    import torch

    p = _p()
    basis = np.array([[0.0, -2e-8], [-3e-8, 0.0], [0.0, 0.0]])
    torch.save({"probe": torch.as_tensor(p / 2), "probe_norm": torch.tensor([2.0]), "obj_basis": basis}, tmp_path / "a.pt")
    pf = load_probe(tmp_path / "a.pt")
    assert (pf.format, pf.dataset, pf.pixel_size_nm) == ("cdtools", "probe", (pytest.approx(30.0), pytest.approx(20.0)))
    np.testing.assert_allclose(pf.modes, p, rtol=1e-6)
    assert pf.notes == ["cdtools probe multiplied back by its stored probe_norm"]
    torch.save({"state_dict": {"probe": p, "basis": torch.as_tensor(basis), "probe_basis": torch.as_tensor(basis * 2)}},
               tmp_path / "b.pth")
    pf = load_probe(tmp_path / "b.pth")
    assert pf.dataset == "state_dict/probe" and pf.pixel_size_nm == (pytest.approx(60.0), pytest.approx(40.0))
    assert pf.notes == []
    np.testing.assert_array_equal(pf.modes, p)
    torch.save({"probe": torch.as_tensor(p)}, tmp_path / "c.pt")
    assert load_probe(tmp_path / "c.pt").pixel_size_nm is None
    torch.save({"weights": torch.ones(2)}, tmp_path / "d.pt")
    with pytest.raises(InputFileError, match=r"no 'probe' in the torch file \(cdtools checkpoint / state dict expected\); found \['weights'\]"):
        load_probe(tmp_path / "d.pt")
    torch.save([torch.ones(2)], tmp_path / "e.pt")
    with pytest.raises(InputFileError, match="found list"):
        load_probe(tmp_path / "e.pt")
    torch.save({"state_dict": [1, 2]}, tmp_path / "f.pt")
    with pytest.raises(InputFileError, match="found dict"):
        load_probe(tmp_path / "f.pt")
    from fractions import Fraction

    torch.save({"probe": torch.ones(2, 8, 8), "extra": Fraction(1, 3)}, tmp_path / "g.pt")
    with pytest.raises(InputFileError, match=r"needs objects other than tensors and NumPy arrays to load \(fractions\.Fraction\); it is not unpickled"):
        load_probe(tmp_path / "g.pt")
    (tmp_path / "h.pt").write_bytes(b"garbage")
    with pytest.raises(InputFileError, match="not a readable torch file"):
        load_probe(tmp_path / "h.pt")


# -- resampling and fitting ----------------------------------------------------------------------

def test_padded_size():
    assert _padded_size(10, 1.0) == 10
    assert _padded_size(10, 0.5) == 10  # 5 pixels exactly
    assert _padded_size(11, 0.5) == 12  # 11 * 0.5 = 5.5; 12 * 0.5 = 6
    assert _padded_size(20, 1 / 3) == 21
    assert _padded_size(7, 0.3) == 10  # up to 7 + 8: 10 * 0.3 = 3 exactly
    assert _padded_size(40, 0.37) == 54  # 54 * 0.37 = 19.98 (0.1 %) beats 46 * 0.37 = 17.02 (0.12 %)
    assert _padded_size(3, 0.1) == 11  # rint(t) < 2 is raised to 2: the largest t = 1.1 is the closest
    assert isinstance(_padded_size(10, 0.5), int)


def test_resample_modes_by_hand():
    y, x = np.mgrid[-8:8, -8:8]
    g = np.exp(-(x**2 + y**2) / 8.0).astype(np.complex64)[None]
    out, actual = resample_modes(g, 10.0, 5.0)
    assert out.shape == (1, 32, 32) and out.dtype == np.complex64 and actual == 5.0
    # a band-limited Gaussian sampled twice as finely: the even pixels are the original samples
    np.testing.assert_allclose(out[0, ::2, ::2] / out[0, 16, 16], g[0] / g[0, 8, 8], atol=2e-3)
    np.testing.assert_allclose((abs(out) ** 2).sum(), (abs(g) ** 2).sum(), rtol=1e-5)
    two = np.stack([g[0], 3 * g[0]])
    out2, _ = resample_modes(two, 10.0, 5.0)
    np.testing.assert_allclose((abs(out2) ** 2).sum(axis=(1, 2)), (abs(two) ** 2).sum(axis=(1, 2)), rtol=1e-5)
    coarse, actual = resample_modes(g, 10.0, 20.0)
    assert coarse.shape == (1, 8, 8) and actual == 20.0
    np.testing.assert_allclose(np.abs(coarse[0, 4, :]) / np.abs(coarse[0, 4, 4]),
                               np.abs(g[0, 8, ::2]) / np.abs(g[0, 8, 8]), atol=0.02)
    rect, actual = resample_modes(np.ones((1, 10, 14), np.complex64), 10.0, 5.0)
    assert rect.shape == (1, 20, 28) and actual == 5.0
    odd, actual = resample_modes(np.ones((1, 11, 11), np.complex64), 10.0, 20.0)
    assert odd.shape == (1, 6, 6) and actual == pytest.approx(10.0 * 12 / 6)
    zero, _ = resample_modes(np.zeros((1, 8, 8), np.complex64), 10.0, 5.0)
    assert np.isfinite(zero).all() and not zero.any()


def test_crop_pad_by_hand():
    a = np.arange(5 * 6).reshape(5, 6)
    np.testing.assert_array_equal(_crop_pad(a, (3, 2)), a[1:4, 2:4])
    b = _crop_pad(a, (7, 8))
    assert b.dtype == a.dtype and b.shape == (7, 8)
    np.testing.assert_array_equal(b[1:6, 1:7], a)
    assert b.sum() == a.sum()
    np.testing.assert_array_equal(_crop_pad(a, (5, 6)), a)
    c = _crop_pad(a, (6, 4))
    np.testing.assert_array_equal(c[1:6], a[:, 1:5])
    assert not c[0].any()


def test_fit_probe_notes_exactly():
    p = _p(1, 12, 12)
    pf = ProbeFile(p, (20.0, 20.0), "numpy", None, ["read note"])
    out, notes = fit_probe(pf, (3, 12, 12), 20.0, where="P")
    assert notes == ["read note"] and out.dtype == np.complex64 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, p)
    assert pf.notes == ["read note"]  # the file's notes are not changed
    _, notes = fit_probe(pf, (12, 12), 20.0 * 1.0099, where="P")  # within 1 %: not resampled
    assert notes == ["read note"]
    out, notes = fit_probe(ProbeFile(p, (20.0, 10.0), "x"), (12, 12), 10.0, where="P")
    assert notes == ["P: probe pixels are not square (20 x 10 nm); the column size is used"]
    np.testing.assert_array_equal(out, p)
    _, notes = fit_probe(ProbeFile(p, (10.1, 10.0), "x"), (12, 12), 10.0, where="P")
    assert notes == []  # 1 % of the larger: square enough
    _, notes = fit_probe(ProbeFile(p, (10.0, 10.2), "x"), (12, 12), 10.2, where="P")
    assert notes == ["P: probe pixels are not square (10 x 10.2 nm); the column size is used"]
    out, notes = fit_probe(ProbeFile(p, (20.0, 20.0), "x"), (24, 24), 10.0, where="P")
    assert out.shape == (1, 24, 24)
    assert notes == ["P: resampled from 20 nm to 10 nm pixels (data: 10 nm) by Fourier crop/pad, 12x12 -> 24x24, photons per mode kept"]
    out, notes = fit_probe(p, (12, 12), 10.0, where="Q")
    assert notes == ["Q: the file does not record the probe's pixel size; assumed equal to the data's (10 nm)"]
    _, notes = fit_probe(ProbeFile(p, (12.5, 12.5), "x"), (12, 12), None, where="P")
    assert notes == ["P: the data's object-plane pixel is unknown (no geometry), so the probe's 12.5 nm pixel could not be checked against it"]
    _, notes = fit_probe(p, (12, 12), None)
    assert notes == []
    _, notes = fit_probe(p[0].real, (12, 12), None, where="R")
    assert notes == ["R: the probe is real; used as an amplitude with zero phase"]


def test_fit_probe_refusals():
    p = _p(1, 12, 12)
    with pytest.raises(ProbeMismatchError, match=r"P: the probe's pixel is 20 nm but the data's object-plane pixel is 10 nm "
                                                 r"\(resampling is off\); give a probe reconstructed at the data's geometry"):
        fit_probe(ProbeFile(p, (20.0, 20.0), "x"), (12, 12), 10.0, resample=False, where="P")
    with pytest.raises(ProbeMismatchError, match=r"\(the ratio 9 is beyond the x8 limit\)"):
        fit_probe(ProbeFile(p, (90.0, 90.0), "x"), (12, 12), 10.0, where="P")
    with pytest.raises(ProbeMismatchError, match=r"the ratio 0\.111 is beyond the x8 limit"):
        fit_probe(ProbeFile(p, (10.0, 10.0), "x"), (12, 12), 90.0, where="P")
    with pytest.raises(ProbeMismatchError, match=r"beyond the x2 limit"):
        fit_probe(ProbeFile(p, (30.0, 30.0), "x"), (12, 12), 10.0, max_zoom=2.0)
    out, _ = fit_probe(ProbeFile(p, (80.0, 80.0), "x"), (12, 12), 10.0)  # exactly x8 is allowed
    assert out.shape == (1, 12, 12)
    out, _ = fit_probe(ProbeFile(np.ones((1, 16, 16), np.complex64), (10.0, 10.0), "x"), (12, 12), 80.0)
    assert out.shape == (1, 12, 12)
    _, notes = fit_probe(ProbeFile(p, (10.5, 10.5), "x"), (12, 12), 10.0, tolerance=0.1)
    assert notes == []
    with pytest.raises(ProbeMismatchError):
        fit_probe(ProbeFile(p, (10.5, 10.5), "x"), (12, 12), 10.0, tolerance=0.01, resample=False)


def test_fit_probe_crop_and_pad_notes():
    p = np.zeros((1, 10, 10), np.complex64)
    p[0, 5, 5] = 3.0
    out, notes = fit_probe(p, (1, 14, 14), None, where="P")
    assert notes == ["P: probe 10x10 zero-padded about its centre to the 14x14 window"]
    assert out[0, 7, 7] == 3.0 and abs(out).sum() == 3.0
    out, notes = fit_probe(p, (1, 6, 6), None, where="P")
    assert notes == ["P: probe 10x10 cropped about its centre to the 6x6 window"] and out[0, 3, 3] == 3.0
    p[0, 0, 0] = 1.0  # 1 of 10 photons falls outside
    out, notes = fit_probe(p, (6, 6), None, where="P")
    assert notes == ["P: probe 10x10 cropped about its centre to the 6x6 window (10 % of its photons fall outside)"]
    out, notes = fit_probe(p, (6, 14), None, where="P")
    assert notes == ["P: probe 10x10 cropped/padded about its centre to the 6x14 window (10 % of its photons fall outside)"]
    assert out.shape == (1, 6, 14) and out[0, 3, 7] == 3.0
    _, notes = fit_probe(p, (14, 6), None, where="P")
    assert notes[0].startswith("P: probe 10x10 cropped/padded")
    q = np.zeros((1, 10, 10), np.complex64)
    q[0, 5, 5] = 1.0
    q[0, 0, 0] = 1e-4  # 1e-8 of the photons: below the reporting limit
    _, notes = fit_probe(q, (6, 6), None, where="P")
    assert notes == ["P: probe 10x10 cropped about its centre to the 6x6 window"]
    _, notes = fit_probe(p, (10, 6), None, where="P")
    assert notes[0].startswith("P: probe 10x10 cropped about")
    _, notes = fit_probe(p, (10, 14), None, where="P")
    assert notes == ["P: probe 10x10 zero-padded about its centre to the 10x14 window"]


def test_emit_warns_each_note():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emit(["one", "two"])
    assert [str(w.message) for w in caught] == ["one", "two"] and all(w.category is UserWarning for w in caught)


@settings(max_examples=25, deadline=None)
@given(ratio=st.floats(0.2, 5.0), n=st.integers(8, 40))
def test_padded_size_is_the_closest_to_an_integer(ratio, n):
    best = _padded_size(n, ratio)
    assert n <= best <= n + max(8, n // 2)

    def residual(s):
        t = s * ratio
        return abs(max(round(t), 2) / t - 1.0)
    assert all(residual(best) <= residual(s) + 1e-9 for s in range(n, n + max(8, n // 2) + 1))
    assert all(residual(s) > residual(best) - 1e-12 for s in range(n, best))  # ties: the smallest


# -- survivors of the first mutation run --------------------------------------------------------

def test_fit_probe_default_where_and_exact_tolerances():
    p = _p(1, 12, 12)
    _, notes = fit_probe(p, (12, 12), 10.0)
    assert notes[-1].startswith("probe: the file does not record")
    _, notes = fit_probe(ProbeFile(p, (100.0, 99.0), "x"), (12, 12), 99.0, where="P")
    assert notes == []  # |100 - 99| == 0.01 * 100: square within the tolerance
    _, notes = fit_probe(ProbeFile(p, (10.5, 10.5), "x"), (12, 12), 10.0, tolerance=0.05, where="P")
    assert notes == []  # 0.5 / 10 == tolerance: not resampled


def test_fit_probe_notes_name_rows_and_columns():
    p = np.ones((1, 12, 16), np.complex64)
    out, notes = fit_probe(ProbeFile(p, (20.0, 20.0), "x"), (24, 32), 10.0, where="P")
    assert out.shape == (1, 24, 32)
    assert notes == ["P: resampled from 20 nm to 10 nm pixels (data: 10 nm) by Fourier crop/pad, 12x16 -> 24x32, photons per mode kept"]
    q = np.zeros((1, 10, 10), np.complex64)
    q[0, 5, 5] = 0.3  # fewer than one photon in all
    q[0, 0, 0] = 0.1
    _, notes = fit_probe(q, (6, 6), None, where="P")
    assert notes == ["P: probe 10x10 cropped about its centre to the 6x6 window (10 % of its photons fall outside)"]
    for old, new, action in (((10, 6), (8, 8), "cropped/padded"), ((6, 8), (8, 8), "zero-padded"),
                             ((6, 10), (8, 8), "cropped/padded"), ((10, 8), (8, 8), "cropped"), ((8, 10), (8, 8), "cropped")):
        _, notes = fit_probe(ProbeFile(np.ones((1, *old), np.complex64), None, "x"), new, None, where="P")
        assert notes[-1].startswith(f"P: probe {old[0]}x{old[1]} {action} about its centre"), (old, notes)


def test_npz_details(tmp_path):
    p = _p()
    np.savez(tmp_path / "obj.npz", probe=np.array([1, None], dtype=object))
    with pytest.raises(InputFileError, match="not a readable probe file") as info:  # never unpickled
        load_probe(tmp_path / "obj.npz")
    assert info.value.path == str(tmp_path / "obj.npz")
    for name, arrays, key in (("two_d.npz", {"real": np.ones((8, 8)), "field": p[0]}, "field"),
                              ("four_d.npz", {"real": np.ones((8, 8)), "field": np.stack([p, p])}, "field")):
        np.savez(tmp_path / name, **arrays)
        assert load_probe(tmp_path / name).dataset == key
    np.savez(tmp_path / "two.npz", a=p, b=p)
    with pytest.raises(InputFileError) as info:
        load_probe(tmp_path / "two.npz")
    assert info.value.path == str(tmp_path / "two.npz")
    assert info.value.problem == ("cannot tell which array is the probe among keys ['a', 'b']; expected 'probe' "
                                  "(choose one: API dataset=..., CLI --probe-dataset)")
    with pytest.raises(InputFileError) as info:
        load_probe(tmp_path / "two.npz", dataset="c")
    assert info.value.path == str(tmp_path / "two.npz")
    np.savez(tmp_path / "real.npz", probe=p.real, probe_pixel_width_m=0.0, probe_pixel_height_m=3e-8)
    pf = load_probe(tmp_path / "real.npz")
    assert pf.notes == [f"{tmp_path / 'real.npz'}[probe]: the probe is real; used as an amplitude with zero phase"]
    assert pf.pixel_size_nm is None
    np.savez(tmp_path / "opr.npz", probe=np.stack([p, 3 * p]))
    np.testing.assert_allclose(load_probe(tmp_path / "opr.npz", opr="mean").modes, 2 * p, rtol=1e-6)


def test_torch_details(tmp_path, monkeypatch):
    import torch
    from decimal import Decimal
    from fractions import Fraction

    p = _p()
    torch.save({"probe": torch.as_tensor(p.real.copy()), "basis": np.array([[0.0, -2e-8], [-3e-8, 0.0], [0.0, 0.0]])},
               tmp_path / "a.pt")
    pf = load_probe(tmp_path / "a.pt")
    assert pf.notes == [f"{tmp_path / 'a.pt'}[probe]: the probe is real; used as an amplitude with zero phase"]
    assert pf.pixel_size_nm == pytest.approx((30.0, 20.0), rel=1e-12)
    torch.save({"probe": torch.as_tensor(np.stack([p, 3 * p]))}, tmp_path / "o.pt")
    np.testing.assert_allclose(load_probe(tmp_path / "o.pt", opr="mean").modes, 2 * p, rtol=1e-6)
    torch.save({"weights": torch.ones(2)}, tmp_path / "d.pt")
    with pytest.raises(InputFileError) as info:
        load_probe(tmp_path / "d.pt")
    assert info.value.path == str(tmp_path / "d.pt")
    torch.save({"probe": np.ones((2, 8, 8)), "f": Fraction(1, 3), "d": Decimal("1.5")}, tmp_path / "g.pt")
    with pytest.raises(InputFileError) as info:
        load_probe(tmp_path / "g.pt")
    assert info.value.path == str(tmp_path / "g.pt")
    assert info.value.problem == ("the torch file needs objects other than tensors and NumPy arrays to load "
                                  "(decimal.Decimal, fractions.Fraction); it is not unpickled. Load it yourself if you "
                                  "trust it and save the probe with numpy.save") or info.value.problem == (
        "the torch file needs objects other than tensors and NumPy arrays to load (fractions.Fraction, decimal.Decimal); "
        "it is not unpickled. Load it yourself if you trust it and save the probe with numpy.save")
    (tmp_path / "h.pt").write_bytes(b"garbage")
    with pytest.raises(InputFileError) as info:
        load_probe(tmp_path / "h.pt")
    assert info.value.path == str(tmp_path / "h.pt") and info.value.problem.startswith("not a readable torch file: ")
    import torch.serialization as ts

    torch.save({"probe": np.ones((2, 8, 8)), "f": Fraction(1, 3)}, tmp_path / "n.pt")
    monkeypatch.setattr(ts, "get_unsafe_globals_in_checkpoint", lambda path: ["numpy.no_such_thing"])
    with pytest.raises(InputFileError) as info:
        load_probe(tmp_path / "n.pt")
    assert info.value.path == str(tmp_path / "n.pt")
    assert info.value.problem == "the torch file refers to numpy.no_such_thing, which this NumPy lacks"


def test_resampling_details():
    assert _padded_size(8, 0.25) == 8  # 2 pixels exactly
    assert _padded_size(17, 0.23) == 22  # searched up to 17 + 8, not beyond
    tiny, actual = resample_modes(np.ones((1, 8, 8), np.complex64), 10.0, 40.0)
    assert tiny.shape == (1, 2, 2) and actual == 40.0
    y, x = np.mgrid[-8:8, -8:8]
    a = np.exp(-(x**2 + y**2) / 8.0)
    b = np.exp(-((x - 2) ** 2 + y**2) / 4.0) * np.exp(0.3j * x)
    two = np.stack([a, 0.5 * b]).astype(np.complex64)
    both, _ = resample_modes(two, 10.0, 5.0)
    for k in range(2):  # the modes are resampled each on its own (no shift across the mode axis)
        alone, _ = resample_modes(two[k : k + 1], 10.0, 5.0)
        np.testing.assert_allclose(both[k], alone[0], atol=1e-6)
    faint = (0.01 * a[None]).astype(np.complex64)  # less than one photon
    out, _ = resample_modes(faint, 10.0, 5.0)
    np.testing.assert_allclose((abs(out) ** 2).sum(), (abs(faint) ** 2).sum(), rtol=1e-5)
    _, notes = fit_probe(ProbeFile(np.ones((1, 8, 8), np.complex64), None, "x"), (2, 2), None, where="P")
    assert notes == ["P: probe 8x8 cropped about its centre to the 2x2 window (94 % of its photons fall outside)"]
    out, _ = fit_probe(ProbeFile(np.ones((1, 8, 8), np.complex128), None, "x"), (8, 8), None)
    assert out.dtype == np.complex64


LAYOUTS = {
    "dataset": ("grp/field", "hdf5", "grp/field"),
    "ptypy": ("content/probe/S00/data", "ptypy", "/content/probe/S00/data"),
    "cxi-source": ("entry_1/instrument_1/source_1/probe", "cxi", "/entry_1/instrument_1/source_1/probe"),
    "pynx": ("entry_1/probe/data", "pynx", "/entry_1/probe/data"),
    "cdtools": ("state_dict/probe", "cdtools", "/state_dict/probe"),
    "cxi-other": ("entry_1/probe_1/data", "cxi", "/entry_1/probe_1/data"),
    "plain": ("x/probes", "pty-chi", "/x/probes"),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_passes_where_notes_and_opr_on(tmp_path, layout):
    name, fmt, where = LAYOUTS[layout]
    real = np.stack([np.ones((1, 8, 9)), 3 * np.ones((1, 8, 9))])  # real [n_opr=2, modes=1, 8, 9]
    path = tmp_path / "p.h5"
    with h5py.File(path, "w") as f:
        f[name] = real
    pf = load_probe(path, dataset=name if layout == "dataset" else None, opr="mean")
    assert (pf.format, pf.dataset) == (fmt, where)
    np.testing.assert_allclose(pf.modes, 2 * np.ones((1, 8, 9)))
    shown = f"{path}:{name}" if layout == "dataset" else f"{path}:{where}"
    assert pf.notes[:2] == [f"{shown}: the probe is real; used as an amplitude with zero phase",
                            f"{shown}: [n_opr=2, modes, H, W] probe: the 2 OPR modes were averaged (OPR modes describe "
                            "position-to-position variation; their mean is not a physical probe)"]


def test_two_dimensional_probes_at_cxi_places(tmp_path):
    p = _p(1)[0]
    for name in ("entry_1/instrument_1/source_1/probe", "entry_1/probe_1/data"):
        path = tmp_path / (name.replace("/", "_") + ".cxi")
        with h5py.File(path, "w") as f:
            f[name] = p
        pf = load_probe(path)
        assert (pf.format, pf.dataset, pf.modes.shape) == ("cxi", "/" + name, (1, 10, 12))


def test_length_datasets_units_and_pairs(tmp_path):
    p = _p()

    def build(f):
        g = f.create_group("entry_1/instrument_1/source_1")
        g["probe"] = p
        g["x_pixel_size"] = np.int32(20)
        g["x_pixel_size"].attrs["units"] = np.bytes_(b"nm")
        g["y_pixel_size"] = 3.0
        g["y_pixel_size"].attrs["units"] = "furlong"  # unknown: metres
    pf = load_probe(_write(tmp_path / "a.cxi", build))
    assert pf.pixel_size_nm == pytest.approx((3e9, 20.0), rel=1e-12)

    def build2(f):  # pairs: the first value of each
        g = f.create_group("entry_1/instrument_1/source_1")
        g["probe"] = p
        g["x_pixel_size"] = np.array([2e-8, 5e-8])
        g["y_pixel_size"] = np.array([3e-8, 7e-8])
    assert load_probe(_write(tmp_path / "b.cxi", build2)).pixel_size_nm == pytest.approx((30.0, 20.0), rel=1e-12)

    def build3(f):
        g = f.create_group("entry_1/instrument_1/source_1")
        g["probe"] = p
        g["x_pixel_size"] = np.array([2e-8, 5e-8])
    assert load_probe(_write(tmp_path / "c.cxi", build3)).pixel_size_nm == pytest.approx((20.0, 20.0), rel=1e-12)

    def build4(f):  # a pixel size stored as text in an attribute is parsed
        f["field"] = p
        f["field"].attrs["pixel_size_m"] = "9e-9"
    assert load_probe(_write(tmp_path / "d.h5", build4)).pixel_size_nm == pytest.approx((9.0, 9.0), rel=1e-12)

    with pytest.raises(InputFileError) as info:
        load_probe(_write(tmp_path / "e.h5", lambda f: f.__setitem__("field", p)), dataset="nope")
    assert info.value.path == str(tmp_path / "e.h5")

    def build6(f):
        f.create_group("content/probe/S00")
    with pytest.raises(InputFileError) as info:
        load_probe(_write(tmp_path / "f.ptyr", build6))
    assert info.value.path == str(tmp_path / "f.ptyr")


@pytest.mark.parametrize("width, height, expected", [
    (0.5e-9, None, (0.5, 0.5)), (2e-8, 0.5e-9, (0.5, 20.0)), (0.0, 3e-8, None), (2e-8, 0.0, None),
])
def test_sibling_pixel_sizes_in_metres(tmp_path, width, height, expected):
    def build(f):
        f["r/field"] = _p()
        f["r/probe_pixel_width_m"] = width
        if height is not None:
            f["r/probe_pixel_height_m"] = height
    got = load_probe(_write(tmp_path / "s.h5", build)).pixel_size_nm
    assert got == (None if expected is None else pytest.approx(expected, rel=1e-12))


def test_last_survivors_paths_pairs_and_npy_notes(tmp_path):
    notes: list[str] = []
    pairs = np.zeros((8, 9, 2))
    pairs[..., 0], pairs[..., 1] = 1.0, 2.0
    out = _as_complex(pairs, "w", notes)  # a 3-D (re, im) array
    assert out.shape == (8, 9) and out[0, 0] == 1 + 2j and notes[0].startswith("w: real array with a last axis of 2")
    np.save(tmp_path / "r.npy", np.ones((8, 8)))
    assert load_probe(tmp_path / "r.npy").notes == [f"{tmp_path / 'r.npy'}: the probe is real; used as an amplitude with zero phase"]
    cases = {
        "several.h5": lambda f: (f.__setitem__("a", _p()), f.__setitem__("b", _p())),
        "none.h5": lambda f: f.__setitem__("counts", np.ones((3, 8, 8))),
    }
    for name, build in cases.items():
        with pytest.raises(InputFileError) as info:
            load_probe(_write(tmp_path / name, build))
        assert info.value.path == str(tmp_path / name)
    (tmp_path / "x.txt").write_text("1")
    (tmp_path / "cut.npy").write_bytes(b"\x93NUMPY")
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    for name in ("x.txt", "cut.npy", "bad.h5"):
        with pytest.raises(InputFileError) as info:
            load_probe(tmp_path / name)
        assert info.value.path == str(tmp_path / name), name
