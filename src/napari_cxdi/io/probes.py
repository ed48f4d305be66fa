"""Probes (illumination modes) from the files ptychography and CDI codes write (no Qt).

``load_probe(path)`` finds the complex probe modes and, where the file records it, their pixel size;
``fit_probe(...)`` brings them onto the diffraction window (resampling to the data's object-plane
pixel, then cropping/padding about the centre) and says what it did in ``notes``.

What is read (layouts checked against each code's writer; assumptions marked *):

============  ==========================================================================================
PyNX          result CXI from ``save_obj_probe_cxi``: ``/entry_last`` (soft link to the last ``entry_N``)
              ``/probe`` (soft link to ``result_2``) ``/data`` [modes, H, W] complex, with
              ``x_pixel_size`` / ``y_pixel_size`` (m) beside it. PyNX flips the probe up/down before
              writing (``np.flip(probe, axis=-2)``, "origin at top, left corner") and flips it back when it
              loads a result to continue: its working orientation is that of the diffraction frames. We
              flip it back the same way, so the probe matches the frames it was reconstructed from.
ptypy         ``.ptyr`` (HDF5): ``/content/probe/<storage ID>/data`` [modes, H, W] complex and
              ``_psize`` [2] (m, (y, x)) beside it. With several storages the first (sorted) is used
              and a note names the others. Used as stored (ptypy's working orientation is that of its
              prepared frames; a ``data.orientation`` flip applied when preparing them is not undone).
pty-chi       probes are ``[n_opr, modes, H, W]``: the first OPR mode (index 0) is the mean
              illumination; the other OPR modes describe its variation from scan point to scan point and
              are dropped with a note (``opr="mean"`` averages them instead, also with a note).
              * Files: any HDF5/NPZ holding a 4-D complex ``probe``; pixel size from ``pixel_size_m``,
              ``probe_pixel_size_m`` or ``probe_pixel_width_m``/``probe_pixel_height_m`` when present.
cdtools       ``model.save_to_h5``: newer versions write the state dict (``/state_dict/probe``, stored
              divided by ``/state_dict/probe_norm``, so the two are multiplied back, and
              ``/state_dict/probe_basis`` (3, 2) in m); older versions wrote ``/probe`` and ``/basis``
              (or ``/probe_basis``) at the root. The pixel size along rows / columns is the norm of the
              basis' first / second column. ``.pt`` checkpoints (``torch.save(model.save_results())``)
              are read with ``torch.load(weights_only=True)``, allowing only NumPy's array
              reconstruction globals; anything else is refused (never unpickled). cdtools saves its working
              arrays unflipped, so the probe is used as stored.
CXI           ours and other writers: ``entry_1/instrument_1/source_1/probe`` (or ``illumination``),
              ``entry_1/probe_1/data``, ``entry_1/probe`` ...; pixel from the dataset's or group's
              ``x_pixel_size``, else ``entry_1/image_1/x_pixel_size``, else the far-field geometry.
NumPy         ``.npy`` (array) or ``.npz`` (key ``probe``, ``probes``, ``arr_0`` or a single array; pixel
              size keys ``pixel_size_m`` / ``pixel_size_nm`` / ``probe_pixel_size_m`` / ``psize``).
plain HDF5    the only complex 2-D/3-D/4-D dataset in the file, or ``dataset=...``.
============  ==========================================================================================

Complex values stored as a trailing real axis of length 2 (old torch files) are combined; a real
probe is accepted as an amplitude with zero phase (noted).

Resampling (``fit_probe``): when the probe pixel ``d_p`` differs from the data's object-plane pixel
``d_x`` by more than ``tolerance`` (relative), each mode is resampled in the Fourier domain: its
real-space array is first zero-padded about its centre to the size ``N'`` (at most ``N_p / 2`` larger)
whose ``N' d_p / d_x`` is closest to an integer ``M``; its centred spectrum is then cropped or zero-padded to
``M`` pixels and transformed back, which keeps the field of view and samples it at ``d_p N' / M`` (the
small residual from ``d_x`` is noted). Each mode's power (photons) is then restored exactly, so
the photon normalisation and mode shares are kept. Ratios beyond ``max_zoom`` are refused with both
pixel sizes in the message. Afterwards a probe larger than the window is cropped about its centre (the
photons outside are reported), a smaller one zero-padded about its centre.
"""

from __future__ import annotations

import importlib
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np

from ..errors import ConfigError, DataValidationError, InputFileError, ProbeMismatchError, warn_user

PROBE_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5", ".hdf", ".cxi", ".nxs", ".ptyr", ".pt", ".pth")

_CXI_SOURCE_PATHS = ("entry_1/instrument_1/source_1/probe", "entry_1/instrument_1/source_1/illumination")
_CXI_PROBE_PATHS = (
    "entry_1/probe_1/data",
    "entry_1/probe/data",
    "entry_1/probe",
    "entry_1/instrument_1/probe",
)
_PIXEL_KEYS_M = ("pixel_size_m", "probe_pixel_size_m", "psize", "x_pixel_size", "pixel_size")
_NPZ_PROBE_KEYS = ("probe", "probes", "arr_0", "illumination")


@dataclass
class ProbeFile:
    """Probe modes read from a file.

    modes: [K, H, W] complex64 (sqrt(photons) per pixel when the writer used photons);
    pixel_size_nm: (dy, dx) object-plane pixel in nm, or None when the file does not say;
    format: which code's layout was recognised; dataset: where in the file; notes: what was assumed/done.
    """

    modes: np.ndarray
    pixel_size_nm: tuple[float, float] | None
    format: str
    dataset: str | None = None
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------
# array helpers


def _as_complex(array, where: str, notes: list[str]) -> np.ndarray:
    a = np.asarray(array)
    if a.dtype.names and {"r", "i"} <= set(a.dtype.names):
        a = a["r"] + 1j * a["i"]
    if not np.issubdtype(a.dtype, np.number):
        raise DataValidationError(f"{where}: the probe must be numeric, got {a.dtype}")
    if not np.iscomplexobj(a):
        if a.ndim >= 3 and a.shape[-1] == 2 and a.shape[-2] > 2:
            notes.append(f"{where}: real array with a last axis of 2 read as (real, imaginary) parts")
            a = a[..., 0] + 1j * a[..., 1]
        else:
            notes.append(f"{where}: the probe is real; used as an amplitude with zero phase")
    return np.asarray(a, np.complex64)


MIN_PROBE_PX = 8


def _modes(array, where: str, notes: list[str], opr: str = "first", fmt: str = "") -> np.ndarray:
    """[K, H, W] from 2-D, 3-D or 4-D ([n_opr, K, H, W], pty-chi) arrays."""
    a = _as_complex(array, where, notes)
    if a.ndim == 2:
        a = a[None]
    elif a.ndim == 4:
        n_opr = a.shape[0]
        if n_opr > 1:
            if opr == "mean":
                notes.append(f"{where}: [n_opr={n_opr}, modes, H, W] probe: the {n_opr} OPR modes were averaged "
                             "(OPR modes describe position-to-position variation; their mean is not a physical probe)")
                a = a.mean(axis=0)
            else:
                notes.append(f"{where}: [n_opr={n_opr}, modes, H, W] probe (pty-chi layout): the first OPR mode "
                             f"(the mean illumination) is used, the other {n_opr - 1} are dropped")
                a = a[0]
        else:
            a = a[0]
    elif a.ndim != 3:
        raise ProbeMismatchError(f"{where}: a probe must be [modes, H, W] (or pty-chi [n_opr, modes, H, W]), got shape {a.shape}")
    if min(a.shape[-2:]) < MIN_PROBE_PX:
        raise ProbeMismatchError(f"{where}: a probe of {a.shape[-2]}x{a.shape[-1]} pixels is too small to be an "
                                 f"illumination (at least {MIN_PROBE_PX}x{MIN_PROBE_PX}); is this the right file or dataset?")
    if not np.isfinite(a).all():
        raise DataValidationError(f"{where}: the probe contains NaN or infinite values")
    if not np.any(a):
        raise DataValidationError(f"{where}: the probe is zero everywhere")
    return np.ascontiguousarray(a, dtype=np.complex64)


def _pixel_pair(value, scale_to_nm: float) -> tuple[float, float] | None:
    v = np.asarray(value, np.float64).ravel()
    if v.size == 0 or not np.all(np.isfinite(v)) or np.any(v <= 0):
        return None
    if v.size == 1:
        return (float(v[0] * scale_to_nm),) * 2
    return float(v[0] * scale_to_nm), float(v[1] * scale_to_nm)


_UNIT_TO_NM = {"m": 1e9, "mm": 1e6, "um": 1e3, "µm": 1e3, "micron": 1e3, "nm": 1.0, "a": 0.1, "angstrom": 0.1}


def _h5_length_nm(obj) -> tuple[float, float] | None:
    """A length dataset (default unit m, or its ``units`` attribute) as (dy, dx) nm."""
    if not isinstance(obj, h5py.Dataset) or not np.issubdtype(obj.dtype, np.number):
        return None
    unit = obj.attrs.get("units", obj.attrs.get("unit", "m"))
    unit = unit.decode() if isinstance(unit, bytes) else str(unit)
    return _pixel_pair(obj[()], _UNIT_TO_NM.get(unit.strip().lower(), 1e9))


# ----------------------------------------------------------------------------------------------------------
# HDF5 layouts


def _h5_get(f: h5py.File, name: str):
    try:
        return f.get(name)
    except (KeyError, OSError, ValueError):
        return None


def _dataset_of(obj):
    """A dataset, or the ``data`` dataset of an NXdata-like group."""
    if isinstance(obj, h5py.Dataset):
        return obj
    if isinstance(obj, h5py.Group) and isinstance(obj.get("data"), h5py.Dataset):
        return obj["data"]
    return None


def _xy_pixel(group) -> tuple[float, float] | None:
    if group is None:
        return None
    x = _h5_length_nm(group.get("x_pixel_size")) if isinstance(group, h5py.Group) else None
    y = _h5_length_nm(group.get("y_pixel_size")) if isinstance(group, h5py.Group) else None
    if x is None and isinstance(group, (h5py.Group, h5py.Dataset)):
        for key in ("x_pixel_size", "pixel_size_m", "pixel_size"):
            if key in group.attrs:
                pair = _pixel_pair(group.attrs[key], 1e9)
                if pair:
                    return pair
        return None
    return (y[0] if y else x[0], x[0])


def _pynx(f: h5py.File) -> str | None:
    if isinstance(_h5_get(f, "entry_last/probe/data"), h5py.Dataset):
        return "entry_last/probe"
    entries = sorted((int(m.group(1)), k) for k in f.keys() if (m := re.fullmatch(r"entry_(\d+)", k)))
    for _, name in reversed(entries):
        if isinstance(_h5_get(f, f"{name}/probe"), h5py.Group) and isinstance(_h5_get(f, f"{name}/probe/data"), h5py.Dataset):
            return f"{name}/probe"
    return None


def _read_h5(path: Path, f: h5py.File, dataset: str | None, opr: str) -> ProbeFile:
    notes: list[str] = []
    if dataset is not None:
        obj = _dataset_of(_h5_get(f, dataset))
        if obj is None:
            raise InputFileError(path, f"no probe dataset {dataset!r} in the file")
        pixel = _xy_pixel(obj) or _xy_pixel(obj.parent)
        return ProbeFile(_modes(obj[()], f"{path}:{dataset}", notes, opr), pixel, "hdf5", dataset, notes)

    # ptypy .ptyr
    content = _h5_get(f, "content/probe")
    if isinstance(content, h5py.Group):
        ids = sorted(k for k in content.keys() if isinstance(content[k], h5py.Group) and isinstance(content[k].get("data"), h5py.Dataset))
        if not ids:
            raise InputFileError(path, f"ptypy file: /content/probe holds no storage with data (found {sorted(content.keys())})")
        if len(ids) > 1:
            notes.append(f"ptypy file holds {len(ids)} probe storages ({', '.join(ids)}); {ids[0]} is used")
        store = content[ids[0]]
        pixel = None
        for key in ("_psize", "psize"):
            if key in store and isinstance(store[key], h5py.Dataset):
                pixel = _pixel_pair(store[key][()], 1e9)
                break
        where = f"/content/probe/{ids[0]}/data"
        return ProbeFile(_modes(store["data"][()], f"{path}:{where}", notes, opr), pixel, "ptypy", where, notes)

    # CXI source_1/probe (ours and other CXI writers; PyNX does not use it)
    for name in _CXI_SOURCE_PATHS:
        obj = _dataset_of(_h5_get(f, name))
        if obj is not None and obj.ndim >= 2:
            return ProbeFile(_modes(obj[()], f"{path}:/{name}", notes, opr), _cxi_pixel(f, obj), "cxi", "/" + name, notes)

    # PyNX result CXI (entry_last/probe -> result_2)
    group = _pynx(f)
    if group is not None:
        g = f[group]
        where = f"/{group}/data"
        modes = np.ascontiguousarray(np.flip(_modes(g["data"][()], f"{path}:{where}", notes, opr), axis=-2))
        notes.append(f"{path}: PyNX stores the probe flipped up/down (top-left origin); flipped back to the frames' orientation")
        return ProbeFile(modes, _xy_pixel(g), "pynx", where, notes)

    # cdtools save_to_h5 (state dict, or old root layout)
    for prefix in ("state_dict/", ""):
        obj = _h5_get(f, prefix + "probe")
        basis = next((b for b in (_h5_get(f, prefix + "probe_basis"), _h5_get(f, prefix + "basis"), _h5_get(f, prefix + "obj_basis"))
                      if isinstance(b, h5py.Dataset)), None)
        if isinstance(obj, h5py.Dataset) and (prefix or basis is not None):
            modes = _modes(obj[()], f"{path}:/{prefix}probe", notes, opr)
            norm = _h5_get(f, prefix + "probe_norm")
            if isinstance(norm, h5py.Dataset):
                modes = (modes * np.float32(np.asarray(norm[()]).ravel()[0])).astype(np.complex64)
                notes.append("cdtools probe multiplied back by its stored probe_norm")
            pixel = _basis_pixel(basis[()]) if basis is not None else None
            return ProbeFile(modes, pixel, "cdtools", f"/{prefix}probe", notes)

    # other CXI places
    for name in _CXI_PROBE_PATHS:
        obj = _dataset_of(_h5_get(f, name))
        if obj is not None and obj.ndim >= 2:
            return ProbeFile(_modes(obj[()], f"{path}:/{name}", notes, opr), _cxi_pixel(f, obj), "cxi", "/" + name, notes)

    # plain HDF5: a unique complex array (or a 'probe' dataset anywhere)
    found: list[str] = []

    def visit(name, o):
        if isinstance(o, h5py.Dataset) and o.ndim in (2, 3, 4) and (np.iscomplexobj(np.empty(0, o.dtype)) or name.split("/")[-1].lower() in ("probe", "probes")):
            found.append(name)

    f.visititems(visit)
    if len(found) == 1:
        obj = f[found[0]]
        pixel = _xy_pixel(obj) or _sibling_pixel(obj.parent)
        fmt = "pty-chi" if obj.ndim == 4 else "hdf5"
        return ProbeFile(_modes(obj[()], f"{path}:/{found[0]}", notes, opr), pixel, fmt, "/" + found[0], notes)
    listing = []
    f.visititems(lambda n, o: listing.append(f"/{n} {o.shape} {o.dtype}") if isinstance(o, h5py.Dataset) and len(listing) < 12 else None)
    if found:
        raise InputFileError(path, f"several datasets could be the probe ({', '.join('/' + n for n in found[:6])}); "
                                   "choose one (API: dataset=..., CLI: --probe-dataset)")
    raise InputFileError(path, "no probe layout recognised (PyNX entry_N/probe, ptypy content/probe, cdtools probe + basis, "
                               f"CXI source_1/probe, or a complex dataset); the file holds: {'; '.join(listing) or 'no datasets'}")


def _cxi_pixel(f: h5py.File, obj) -> tuple[float, float] | None:
    return (_xy_pixel(obj) or _xy_pixel(obj.parent) or _xy_pixel(_h5_get(f, "entry_1/probe_1"))
            or _xy_pixel(_h5_get(f, "entry_1/image_1")) or _cxi_geometry_pixel(f, obj.shape[-1]))


def _sibling_pixel(group) -> tuple[float, float] | None:
    if not isinstance(group, h5py.Group):
        return None
    if isinstance(group.get("probe_pixel_width_m"), h5py.Dataset):
        x = float(np.asarray(group["probe_pixel_width_m"][()]).ravel()[0]) * 1e9
        h = group.get("probe_pixel_height_m")
        y = float(np.asarray(h[()]).ravel()[0]) * 1e9 if isinstance(h, h5py.Dataset) else x
        return (y, x) if x > 0 and y > 0 else None
    for key in _PIXEL_KEYS_M:
        pair = _h5_length_nm(group.get(key))
        if pair:
            return pair
    return None


def _basis_pixel(basis) -> tuple[float, float] | None:
    """cdtools basis (3, 2) (or CXI (2, 3)) in m: (row, column) pixel sizes in nm."""
    b = np.asarray(basis, np.float64)
    if b.shape == (2, 3):
        b = b.T
    if b.shape != (3, 2):
        return None
    dy, dx = np.linalg.norm(b[:, 0]), np.linalg.norm(b[:, 1])
    return (float(dy * 1e9), float(dx * 1e9)) if dy > 0 and dx > 0 else None


def _cxi_geometry_pixel(f: h5py.File, n: int) -> tuple[float, float] | None:
    from .hdf5 import _read_metadata

    md = _read_metadata(f, "cxi")
    if md.get("pixel_size_nm"):
        return (float(md["pixel_size_nm"]),) * 2
    if all(md.get(k) for k in ("energy_kev", "distance_m", "detector_pixel_um")):
        wavelength_m = 12.398419843320026e-10 / md["energy_kev"]
        dx = wavelength_m * md["distance_m"] / (n * md["detector_pixel_um"] * 1e-6) * 1e9
        return (dx, dx)
    return None


# ----------------------------------------------------------------------------------------------------------
# NumPy and torch files


def _read_npz(path: Path, opr: str, dataset: str | None) -> ProbeFile:
    notes: list[str] = []
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        if dataset is not None:
            if dataset not in keys:
                raise InputFileError(path, f"no key {dataset!r} in the NPZ file (keys: {', '.join(keys)})")
            key = dataset
        else:
            key = next((k for k in _NPZ_PROBE_KEYS if k in keys), None)
            if key is None:
                complex_keys = [k for k in keys if np.iscomplexobj(z[k]) and z[k].ndim in (2, 3, 4)]
                if len(complex_keys) == 1 or len(keys) == 1:
                    key = (complex_keys or keys)[0]
                else:
                    raise InputFileError(path, f"cannot tell which array is the probe among keys {keys}; "
                                               "expected 'probe' (choose one: API dataset=..., CLI --probe-dataset)")
        raw = z[key]
        fmt = "pty-chi" if raw.ndim == 4 else "numpy"
        modes = _modes(raw, f"{path}[{key}]", notes, opr)
        pixel = None
        if "probe_pixel_width_m" in keys:
            x = float(np.asarray(z["probe_pixel_width_m"]).ravel()[0])
            y = float(np.asarray(z["probe_pixel_height_m"]).ravel()[0]) if "probe_pixel_height_m" in keys else x
            pixel = (y * 1e9, x * 1e9) if x > 0 and y > 0 else None
        elif "pixel_size_nm" in keys:
            pixel = _pixel_pair(z["pixel_size_nm"], 1.0)
        else:
            for k in _PIXEL_KEYS_M:
                if k in keys:
                    pixel = _pixel_pair(z[k], 1e9)
                    break
    return ProbeFile(modes, pixel, fmt, key, notes)


def _torch_load(path: Path):
    import torch
    from torch.serialization import get_unsafe_globals_in_checkpoint, safe_globals

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001 - classify below
        try:
            needed = get_unsafe_globals_in_checkpoint(str(path))
        except Exception as exc:  # noqa: BLE001
            raise InputFileError(path, f"not a readable torch file: {exc}") from exc
        if not needed or any(not name.startswith("numpy.") for name in needed):
            raise InputFileError(path, "the torch file needs objects other than tensors and NumPy arrays to load "
                                       f"({', '.join(n for n in needed if not n.startswith('numpy.'))}); it is not "
                                       "unpickled. Load it yourself if you trust it and save the probe with numpy.save") from first
        allowed = []
        for name in needed:
            module, _, attr = name.rpartition(".")
            try:
                allowed.append(getattr(importlib.import_module(module), attr))
            except (ImportError, AttributeError) as exc:
                raise InputFileError(path, f"the torch file refers to {name}, which this NumPy lacks") from exc
        dtypes = getattr(np, "dtypes", None)  # the dtype classes NumPy arrays pickle with (NumPy >= 1.25)
        if dtypes is not None:
            allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
        with safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)


def _read_torch(path: Path, opr: str) -> ProbeFile:
    payload = _torch_load(path)
    notes: list[str] = []
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or "probe" not in state:
        keys = sorted(state.keys()) if isinstance(state, dict) else type(payload).__name__
        raise InputFileError(path, f"no 'probe' in the torch file (cdtools checkpoint / state dict expected); found {keys}")

    def arr(value):
        return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)

    modes = _modes(arr(state["probe"]), f"{path}[probe]", notes, opr)
    if "probe_norm" in state:
        modes = (modes * np.float32(arr(state["probe_norm"]).ravel()[0])).astype(np.complex64)
        notes.append("cdtools probe multiplied back by its stored probe_norm")
    basis = next((state[k] for k in ("probe_basis", "basis", "obj_basis") if k in state), None)
    pixel = _basis_pixel(arr(basis)) if basis is not None else None
    return ProbeFile(modes, pixel, "cdtools", "state_dict/probe" if "state_dict" in payload else "probe", notes)


# ----------------------------------------------------------------------------------------------------------
# public


def load_probe(path: str | Path, dataset: str | None = None, opr: str = "first") -> ProbeFile:
    """Read probe modes [K, H, W] (and their pixel size if recorded) from any supported layout.

    ``dataset``: an HDF5 path or NPZ key when the file holds several candidates; ``opr``: ``"first"``
    (default) or ``"mean"`` for pty-chi's ``[n_opr, modes, H, W]`` probes.
    Raises :class:`InputFileError` naming what the file holds when no layout is recognised.
    """
    path = Path(path)
    if opr not in ("first", "mean"):
        raise ConfigError(f"opr must be 'first' or 'mean', got {opr!r}")
    from .validate import check_readable

    check_readable(path)  # missing, empty, folder, dangling link, permission denied: typed
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            notes: list[str] = []
            raw = np.load(path, allow_pickle=False)
            fmt = "pty-chi" if raw.ndim == 4 else "numpy"
            return ProbeFile(_modes(raw, str(path), notes, opr), None, fmt, None, notes)
        if suffix == ".npz":
            return _read_npz(path, opr, dataset)
        if suffix in (".pt", ".pth"):
            return _read_torch(path, opr)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputFileError(path, f"not a readable probe file (truncated or corrupt?): {exc}") from exc
    from .hdf5 import is_hdf5

    if not is_hdf5(path):
        raise InputFileError(path, f"unsupported probe file type {path.suffix!r}; use one of {', '.join(PROBE_SUFFIXES)}")
    try:
        with h5py.File(path, "r") as f:
            return _read_h5(path, f, dataset, opr)
    except OSError as exc:
        raise InputFileError(path, f"not a readable HDF5 probe file: {exc}") from exc


def _power(modes: np.ndarray) -> np.ndarray:
    return (np.abs(modes.astype(np.complex128)) ** 2).sum(axis=(-2, -1))


def _padded_size(n: int, ratio: float) -> int:
    """The size ``n' >= n`` (up to ``n + max(8, n // 2)``) whose ``n' ratio`` is closest to an integer."""
    sizes = np.arange(n, n + max(8, n // 2) + 1)
    target = sizes * ratio
    residual = np.abs(np.maximum(np.rint(target), 2) / target - 1.0)
    return int(sizes[np.argmin(residual + 1e-9 * (sizes - n))])  # ties: the smallest padding


def resample_modes(modes: np.ndarray, probe_pixel_nm: float, target_pixel_nm: float) -> tuple[np.ndarray, float]:
    """Fourier-domain resampling of [K, H, W] modes to ``target_pixel_nm`` (power of each mode kept).

    The modes are first zero-padded about their centre to the size whose resampled pixel count is
    closest to an integer (so the residual pixel error is small), then their centred spectrum is
    cropped/padded to ``M = round(N' d_p / d_x)`` and transformed back. Returns the resampled modes and the
    pixel size they actually have (``d_p N' / M``, from the column axis).
    """
    ratio = probe_pixel_nm / target_pixel_nm
    k, h, w = modes.shape
    ph, pw = _padded_size(h, ratio), _padded_size(w, ratio)
    padded = _crop_pad(modes.astype(np.complex128), (ph, pw))
    mh, mw = max(2, int(round(ph * ratio))), max(2, int(round(pw * ratio)))
    spec = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(padded, axes=(-2, -1))), axes=(-2, -1))
    spec = _crop_pad(spec, (mh, mw))
    out = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(spec, axes=(-2, -1))), axes=(-2, -1))
    before, after = _power(modes), _power(out)
    out *= np.sqrt(before / np.maximum(after, 1e-300))[:, None, None]
    return out.astype(np.complex64), probe_pixel_nm * pw / mw


def _crop_pad(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Crop or zero-pad the last two axes to ``shape`` keeping the centre pixel (index n // 2) in the centre."""
    h, w = a.shape[-2:]
    th, tw = shape
    out = np.zeros(a.shape[:-2] + (th, tw), a.dtype)
    # source and destination windows aligned on the n // 2 centres
    def span(n_src, n_dst):
        off = n_dst // 2 - n_src // 2
        s0, d0 = max(0, -off), max(0, off)
        length = min(n_src - s0, n_dst - d0)
        return slice(s0, s0 + length), slice(d0, d0 + length)

    sy, dy = span(h, th)
    sx, dx = span(w, tw)
    out[..., dy, dx] = a[..., sy, sx]
    return out


def fit_probe(
    probe: ProbeFile | np.ndarray,
    frame_shape: tuple[int, ...],
    pixel_size_nm: float | None = None,
    *,
    resample: bool = True,
    tolerance: float = 0.01,
    max_zoom: float = 8.0,
    where: str = "probe",
) -> tuple[np.ndarray, list[str]]:
    """The probe modes on the diffraction window: ``(modes [K, H, W] complex64, notes)``.

    ``pixel_size_nm`` is the data's object-plane pixel. With both pixel sizes known and differing by more
    than ``tolerance`` the modes are resampled (see the module docstring) or, with ``resample=False``
    or a ratio beyond ``max_zoom``, refused with :class:`ProbeMismatchError` naming both sizes.
    """
    if isinstance(probe, ProbeFile):
        modes, probe_pixel, notes = probe.modes, probe.pixel_size_nm, list(probe.notes)
    else:
        notes = []
        modes, probe_pixel = _modes(probe, where, notes), None
    h, w = int(frame_shape[-2]), int(frame_shape[-1])
    if probe_pixel is not None and abs(probe_pixel[0] - probe_pixel[1]) > tolerance * max(probe_pixel):
        notes.append(f"{where}: probe pixels are not square ({probe_pixel[0]:.4g} x {probe_pixel[1]:.4g} nm); "
                     "the column size is used")
    if probe_pixel is not None and pixel_size_nm:
        p = probe_pixel[1]
        rel = abs(p - pixel_size_nm) / pixel_size_nm
        if rel > tolerance:
            ratio = p / pixel_size_nm
            if not resample or not (1 / max_zoom <= ratio <= max_zoom):
                why = "resampling is off" if not resample else f"the ratio {ratio:.3g} is beyond the x{max_zoom:g} limit"
                raise ProbeMismatchError(
                    f"{where}: the probe's pixel is {p:.4g} nm but the data's object-plane pixel is "
                    f"{pixel_size_nm:.4g} nm ({why}); give a probe reconstructed at the data's geometry"
                )
            old_shape = modes.shape[-2:]
            modes, actual = resample_modes(modes, p, pixel_size_nm)
            notes.append(f"{where}: resampled from {p:.4g} nm to {actual:.4g} nm pixels (data: {pixel_size_nm:.4g} nm) "
                         f"by Fourier crop/pad, {old_shape[0]}x{old_shape[1]} -> {modes.shape[-2]}x{modes.shape[-1]}, "
                         "photons per mode kept")
    elif probe_pixel is None and pixel_size_nm:
        notes.append(f"{where}: the file does not record the probe's pixel size; assumed equal to the data's ({pixel_size_nm:.4g} nm)")
    elif probe_pixel is not None and not pixel_size_nm:
        notes.append(f"{where}: the data's object-plane pixel is unknown (no geometry), so the probe's "
                     f"{probe_pixel[1]:.4g} nm pixel could not be checked against it")
    if modes.shape[-2:] != (h, w):
        total = _power(modes).sum()
        old = modes.shape[-2:]
        modes = _crop_pad(modes, (h, w))
        lost = 1.0 - _power(modes).sum() / max(total, 1e-300)
        bigger, smaller = (old[0] > h or old[1] > w), (old[0] < h or old[1] < w)
        action = "cropped/padded" if bigger and smaller else ("cropped" if bigger else "zero-padded")
        notes.append(f"{where}: probe {old[0]}x{old[1]} {action} about its centre to the {h}x{w} window"
                     + (f" ({100 * lost:.2g} % of its photons fall outside)" if lost > 1e-6 else ""))
    return np.ascontiguousarray(modes, np.complex64), notes


def emit(notes: list[str]) -> None:
    """Show notes as warnings (for callers that pass no ``notes`` list), attributed to the user's call."""
    for note in notes:
        warn_user(note, UserWarning)
