"""Probes from PyNX, ptypy, pty-chi, cdtools (h5 and .pt), CXI and NumPy files load to the same modes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from napari_cxdi.errors import InputFileError, ProbeMismatchError
from napari_cxdi.io import load_probe, read_probe, write_cxi
from napari_cxdi.io.probes import fit_probe, resample_modes

DX_NM = 17.0


@pytest.fixture(scope="module")
def modes():
    """Two non-symmetric modes (a tilted, defocused Gaussian and a weaker vortex-like mode), 20 x 24 px."""
    y, x = np.mgrid[-10:10, -12:12].astype(float)
    a = np.exp(-((x - 1.5) ** 2 + y**2) / 30) * np.exp(1j * (0.04 * x**2 + 0.2 * y))
    b = 0.4 * np.exp(-(x**2 + (y + 1) ** 2) / 40) * np.exp(1j * np.arctan2(y, x))
    return (np.stack([a, b]) * 300).astype(np.complex64)


def _basis(d_nm):
    return np.array([[0.0, -d_nm], [-d_nm, 0.0], [0.0, 0.0]]) * 1e-9  # cdtools (3, 2): columns = row, column pixel


def write_all_layouts(folder, p):
    """One file per layout, each written the way that code writes it (and different from each other)."""
    torch = pytest.importorskip("torch")
    files = {}
    np.save(folder / "plain.npy", p)
    files["numpy"] = folder / "plain.npy"
    np.savez(folder / "ptychodus.npz", probe=p, probe_pixel_width_m=DX_NM * 1e-9, probe_pixel_height_m=DX_NM * 1e-9, positions=np.zeros((3, 2)))
    files["npz"] = folder / "ptychodus.npz"
    with h5py.File(folder / "recon.ptyr", "w") as f:  # ptypy: content/probe/<ID>/{data, _psize}
        g = f.create_group("content/probe/Sscan00G00")
        g["data"] = p
        g["_psize"] = np.array([DX_NM, DX_NM]) * 1e-9
        f.create_group("content/obj/Sscan00G00")["data"] = np.ones((40, 40), np.complex64)
    files["ptypy"] = folder / "recon.ptyr"
    with h5py.File(folder / "pynx_result.cxi", "w") as f:  # PyNX: entry_N/result_2 linked as probe, entry_last
        f["cxi_version"] = 150
        for n, scale in ((1, 0.5), (2, 1.0)):  # an earlier step (entry_1) and the final one (entry_2)
            r = f.create_group(f"entry_{n}/result_2")
            r.attrs["NX_class"] = "NXdata"
            r["data"] = np.flip(p * scale, axis=-2)  # PyNX writes the probe flipped up/down
            r["x_pixel_size"] = DX_NM * 1e-9
            r["y_pixel_size"] = DX_NM * 1e-9
            f[f"entry_{n}/probe"] = h5py.SoftLink(f"/entry_{n}/result_2")
        f["entry_last"] = h5py.SoftLink("/entry_2")
    files["pynx"] = folder / "pynx_result.cxi"
    with h5py.File(folder / "cdtools_results.h5", "w") as f:  # newer cdtools: state_dict, probe / probe_norm
        f["state_dict/probe"] = p / 7.0
        f["state_dict/probe_norm"] = np.float32(7.0)
        f["state_dict/probe_basis"] = _basis(DX_NM)
        f["loss_history"] = np.arange(3.0)
    files["cdtools-h5"] = folder / "cdtools_results.h5"
    with h5py.File(folder / "cdtools_old.h5", "w") as f:  # older cdtools: probe and basis at the root
        f["probe"] = p
        f["basis"] = _basis(DX_NM)
    files["cdtools-old"] = folder / "cdtools_old.h5"
    torch.save({"state_dict": {"probe": torch.as_tensor(p / 3.0), "probe_norm": torch.tensor(3.0),
                               "probe_basis": torch.as_tensor(_basis(DX_NM))}, "loss_history": np.arange(2.0), "epoch": 4},
               folder / "checkpoint.pt")
    files["cdtools-pt"] = folder / "checkpoint.pt"
    with h5py.File(folder / "ptychi.h5", "w") as f:  # pty-chi: [n_opr, modes, H, W]
        f["probe"] = np.stack([p, 0.2 * np.roll(p, 3, axis=-1)])
        f["pixel_size_m"] = DX_NM * 1e-9
    files["pty-chi"] = folder / "ptychi.h5"
    write_cxi(folder / "ours.cxi", probe=p, metadata={"pixel_size_nm": DX_NM})
    files["cxi"] = folder / "ours.cxi"
    return files


def test_every_layout_loads_to_the_same_modes(tmp_path, modes):
    files = write_all_layouts(tmp_path, modes)
    expected_format = {"numpy": "numpy", "npz": "numpy", "ptypy": "ptypy", "pynx": "pynx", "cdtools-h5": "cdtools",
                       "cdtools-old": "cdtools", "cdtools-pt": "cdtools", "pty-chi": "pty-chi", "cxi": "cxi"}
    for kind, path in files.items():
        pf = load_probe(path)
        assert pf.format == expected_format[kind], kind
        np.testing.assert_allclose(pf.modes, modes, rtol=1e-5, atol=1e-4, err_msg=kind)
        if kind != "numpy":
            assert pf.pixel_size_nm == pytest.approx((DX_NM, DX_NM), rel=1e-6), kind
    assert any("OPR" in n for n in load_probe(files["pty-chi"]).notes)
    assert any("flipped back" in n for n in load_probe(files["pynx"]).notes)
    mean = load_probe(files["pty-chi"], opr="mean").modes
    assert not np.allclose(mean, modes) and any("averaged" in n for n in load_probe(files["pty-chi"], opr="mean").notes)


def test_probe_is_fitted_to_the_window_and_resampled(tmp_path, modes):
    files = write_all_layouts(tmp_path, modes)
    notes: list[str] = []
    same = read_probe(files["ptypy"], (4, 20, 24), pixel_size_nm=DX_NM, notes=notes)
    np.testing.assert_allclose(same, modes, atol=1e-4)
    assert notes == []
    notes = []
    padded = read_probe(files["pynx"], (4, 32, 32), pixel_size_nm=DX_NM, notes=notes)
    assert padded.shape == (2, 32, 32) and any("zero-padded" in n for n in notes)
    np.testing.assert_allclose(padded[:, 16 - 10 : 16 + 10, 16 - 12 : 16 + 12], modes, atol=1e-4)  # centred
    # twice finer data pixel: Fourier resampling keeps photons per mode and the field of view
    notes = []
    fine = read_probe(files["cdtools-h5"], (4, 40, 48), pixel_size_nm=DX_NM / 2, notes=notes)
    assert any("resampled" in n for n in notes)
    np.testing.assert_allclose((abs(fine) ** 2).sum(axis=(1, 2)), (abs(modes) ** 2).sum(axis=(1, 2)), rtol=1e-4)
    # back to the coarse grid gives the original
    coarse, actual = resample_modes(fine, DX_NM / 2, DX_NM)
    assert actual == pytest.approx(DX_NM) and np.abs(coarse - modes).max() < 1e-3 * np.abs(modes).max()
    with pytest.raises(ProbeMismatchError, match=r"17 nm.*8\.5 nm"):
        read_probe(files["cdtools-pt"], (4, 40, 48), pixel_size_nm=DX_NM / 2, resample=False)
    with pytest.raises(ProbeMismatchError, match="beyond"):
        read_probe(files["cdtools-pt"], (4, 40, 48), pixel_size_nm=DX_NM / 20)
    notes = []
    cropped, _ = fit_probe(load_probe(files["numpy"]), (1, 12, 12), DX_NM, where="p")
    assert cropped.shape == (2, 12, 12)


def test_unknown_layouts_are_named(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["counts"] = np.ones((3, 8, 8))
        f["weights"] = np.ones(3)
    with pytest.raises(InputFileError, match=r"no probe layout recognised.*/counts"):
        load_probe(tmp_path / "other.h5")
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"] = np.ones((8, 8), np.complex64)
        f["b"] = np.ones((8, 8), np.complex64)
    with pytest.raises(InputFileError, match="several datasets"):
        load_probe(tmp_path / "two.h5")
    assert load_probe(tmp_path / "two.h5", dataset="b").modes.shape == (1, 8, 8)
    np.savez(tmp_path / "keys.npz", x=np.ones((4, 4)), y=np.ones((4, 4)))
    with pytest.raises(InputFileError, match="cannot tell which array is the probe"):
        load_probe(tmp_path / "keys.npz")
    (tmp_path / "p.txt").write_text("1 2 3")
    with pytest.raises(InputFileError, match="unsupported probe file type"):
        load_probe(tmp_path / "p.txt")
    import torch

    torch.save({"probe": torch.ones(2, 8, 8)}, tmp_path / "real.pt")
    torch.save({"probe": torch.ones(1, 4, 4)}, tmp_path / "tiny.pt")
    with pytest.raises(ProbeMismatchError, match="too small"):
        load_probe(tmp_path / "tiny.pt")
    assert any("real" in n for n in load_probe(tmp_path / "real.pt").notes)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(h=st.integers(2, 12), w=st.integers(2, 12), th=st.integers(2, 16), tw=st.integers(2, 16), seed=st.integers(0, 99))
def test_crop_pad_keeps_the_centre_pixel_and_round_trips(h, w, th, tw, seed):
    from napari_cxdi.io.probes import _crop_pad

    a = np.random.default_rng(seed).normal(size=(2, h, w))
    b = _crop_pad(a, (th, tw))
    assert b.shape == (2, th, tw)
    if th >= 1 and tw >= 1:
        assert np.array_equal(b[:, th // 2, tw // 2], a[:, h // 2, w // 2])  # centres (n // 2) stay aligned
    if th >= h and tw >= w:  # padding loses nothing and cropping back is the identity
        assert np.array_equal(_crop_pad(b, (h, w)), a)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(12, 24), factor=st.sampled_from([0.5, 2.0, 1.5]), seed=st.integers(0, 99))
def test_resampling_keeps_photons_per_mode(n, factor, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, :n] - n // 2
    modes = (np.exp(-(x**2 + y**2) / (n / 4) ** 2) * np.exp(1j * rng.normal() * x / n))[None] * rng.uniform(1, 100)
    out, actual = resample_modes(modes.astype(np.complex64), 10.0, 10.0 / factor)
    assert abs(out.shape[-1] - n * factor) <= n / 2 * factor + 1  # the field of view is kept (plus padding)
    assert abs(actual - 10.0 / factor) <= 1e-3 * 10.0 / factor  # the padding makes the new pixel count exact
    np.testing.assert_allclose((abs(out) ** 2).sum(), (abs(modes) ** 2).sum(), rtol=1e-4)
