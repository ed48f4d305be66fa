"""Detector masks: which pixels are measurements and which are not (no Qt).

A :class:`DetectorMask` is cheap and lazy: one boolean image of pixels that never measure (module and
chip gaps, dead, hot and user-masked pixels; ``True`` = bad) plus rules that flag per-frame invalid
values, applied frame by frame as the frames are read:

* the integer type's maximum (gap / overflow sentinels: ``2**32 - 1`` for uint32, ``2**16 - 1`` for uint16),
* values at or above the detector's ``saturation_value`` / ``countrate_correction_count_cutoff``,
* negative values, NaN and infinities.

Downstream the library encodes an unmeasured pixel as NaN in float32 counts (see
:func:`DetectorMask.apply`); every function that compares model and data ignores NaN pixels, so the
unmeasured pixels are free and the physics fills them.

Where masks are read from (``nonzero = bad`` unless stated):

* Dectris EIGER / NeXus ``/entry/instrument/detector/detectorSpecific/pixel_mask`` and NXdetector
  ``pixel_mask``. Bits (NeXus NXdetector; Dectris uses the same low bits): 0 gap (no pixel),
  1 dead, 2 under-responding, 3 over-responding (hot), 4 noisy, 8 user-defined; any set bit masks.
* CXI ``/entry_1/instrument_1/detector_1/mask`` (CXI 1.6 convention): bits 0 invalid, 1 saturated,
  2 hot, 3 dead, 4 shadowed, 6 to ignore, 7 bad, 9 missing, 10 noisy, 12 failed artifact correction
  mask the pixel; bits 5 (in peak mask), 8 (out of resolution limits), 11 (artifact corrected),
  13 (peak for hit finder) and 14 (background corrected) do not.
* a separate mask file (HDF5, NPY/NPZ, TIFF), bool or integer: nonzero = bad
  (:func:`read_mask_file`; ``good_is_one=True`` for files that mark good pixels with 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import DataValidationError, InputFileError

NEXUS_MASK_PATHS = (
    "entry/instrument/detector/detectorSpecific/pixel_mask",
    "entry/instrument/detector/pixel_mask",
)
CXI_MASK_PATHS = ("entry_1/instrument_1/detector_1/mask", "entry_1/data_1/mask")
SATURATION_PATHS = (
    "entry/instrument/detector/saturation_value",
    "entry/instrument/detector/detectorSpecific/countrate_correction_count_cutoff",
    "entry_1/instrument_1/detector_1/saturation_value",
)
NEXUS_BITS = {0: "gap", 1: "dead", 2: "under-responding", 3: "hot", 4: "noisy", 8: "user"}
CXI_BITS = {0: "invalid", 1: "saturated", 2: "hot", 3: "dead", 4: "shadowed", 6: "ignore", 7: "bad",
            9: "missing", 10: "noisy", 12: "failed correction"}
CXI_BAD_BITS = sum(1 << b for b in CXI_BITS)


@dataclass
class DetectorMask:
    """Bad pixels of a detector: a static image plus per-frame invalid-value rules.

    bad: [H, W] bool, True where the pixel never measures (None: no static mask).
    saturation: counts at or above this are invalid (None: no limit).
    sentinel: invalid value of an integer detector (the dtype maximum), or None.
    sources: where the static mask came from (file paths / "hot pixels" / "painted").
    bit_counts: pixels per documented bit meaning of the file mask (for reports).
    """

    bad: np.ndarray | None = None
    saturation: float | None = None
    sentinel: float | None = None
    sources: list[str] = field(default_factory=list)
    bit_counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        # validated once, here: every user of ``bad`` may rely on a 2-D bool image (a 0/1 integer image is
        # read as True = bad; ~ of an integer image would flip all its bits)
        if self.bad is None:
            return
        bad = np.asarray(self.bad)
        if bad.ndim != 2:
            raise DataValidationError(f"a detector mask is a 2-D image [H, W] (True = bad pixel), got shape {bad.shape}")
        if bad.dtype != bool:
            if not (np.issubdtype(bad.dtype, np.integer) or np.issubdtype(bad.dtype, np.floating)) \
                    or not np.isin(bad, (0, 1)).all():
                raise DataValidationError(
                    f"a detector mask must be boolean or 0/1 (True or 1 = bad pixel), got {bad.dtype} values "
                    f"{np.unique(bad)[:5].tolist()}; convert it, e.g. mask != 0")
            bad = bad.astype(bool)
        self.bad = bad

    @classmethod
    def for_dtype(cls, dtype, **kwargs) -> "DetectorMask":
        """Rules for data of ``dtype``: integer types get their maximum as the gap sentinel."""
        dtype = np.dtype(dtype)
        sentinel = float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) and dtype.itemsize >= 2 else None
        return cls(sentinel=sentinel, **kwargs)

    def with_bad(self, extra: np.ndarray | None, source: str) -> "DetectorMask":
        """This mask OR'ed with ``extra`` [H, W] (True = bad)."""
        if extra is None:
            return self
        extra = np.asarray(extra, bool)
        if self.bad is not None and extra.shape != self.bad.shape:
            raise DataValidationError(f"{source}: the mask is {extra.shape[0]}x{extra.shape[1]} but the detector "
                                      f"frames are {self.bad.shape[0]}x{self.bad.shape[1]}")
        bad = extra.copy() if self.bad is None else (self.bad | extra)
        return replace(self, bad=bad, sources=[*self.sources, source])

    def without_file_mask(self) -> "DetectorMask":
        return replace(self, bad=None, sources=[], bit_counts={})

    def check_shape(self, frame_shape: tuple[int, int], where: str) -> None:
        if self.bad is not None and tuple(self.bad.shape) != tuple(frame_shape):
            raise DataValidationError(f"{where}: the mask is {self.bad.shape[0]}x{self.bad.shape[1]} but the frames are "
                                      f"{frame_shape[0]}x{frame_shape[1]}; give a mask of the detector's full size")

    def invalid(self, frames: np.ndarray) -> np.ndarray:
        """Per-frame invalid pixels of ``frames`` [..., H, W] (static mask not included)."""
        frames = np.asarray(frames)
        bad = np.zeros(frames.shape, bool)
        if np.issubdtype(frames.dtype, np.floating):
            bad |= ~np.isfinite(frames)
        if np.issubdtype(frames.dtype, np.signedinteger) or np.issubdtype(frames.dtype, np.floating):
            with np.errstate(invalid="ignore"):
                bad |= frames < 0
        if self.sentinel is not None and np.issubdtype(frames.dtype, np.integer):
            # the sentinel is a float: for 64-bit types float(max) rounds up past the maximum, and casting it
            # back wrapped (uint64: to 0, so every zero count was flagged); clamp to the type's range instead,
            # and compare only when the sentinel is (to float precision) a value of this type
            info = np.iinfo(frames.dtype)
            value = min(max(int(self.sentinel), int(info.min)), int(info.max))
            if float(value) == float(self.sentinel):
                bad |= frames == frames.dtype.type(value)
        if self.saturation is not None:
            with np.errstate(invalid="ignore"):
                bad |= frames >= self.saturation
        return bad

    def apply(self, frames: np.ndarray, bad: np.ndarray | None = None) -> np.ndarray:
        """float32 counts with NaN at every unmeasured pixel (static ``bad`` region given, else ``self.bad``)."""
        frames = np.asarray(frames)
        invalid = self.invalid(frames)
        static = self.bad if bad is None else bad
        if static is not None:
            invalid |= static
        out = frames.astype(np.float32)
        out[invalid] = np.nan
        return out

    @property
    def n_bad(self) -> int:
        return 0 if self.bad is None else int(self.bad.sum())

    def describe(self) -> dict:
        """Mask statistics for ``info`` and reports."""
        info: dict = {"mask_pixels": self.n_bad}
        if self.bad is not None:
            info["mask_fraction"] = round(self.n_bad / self.bad.size, 5)
        info["mask_sources"] = ", ".join(self.sources) if self.sources else "none"
        info.update({f"mask_{k}": v for k, v in self.bit_counts.items() if v})
        if self.saturation is not None:
            info["saturation_counts"] = self.saturation
        if self.sentinel is not None:
            info["invalid_value"] = int(self.sentinel)
        return info


def decode_bits(mask: np.ndarray, meanings: dict[int, str]) -> dict[str, int]:
    """Pixels per documented bit of an integer mask."""
    m = np.asarray(mask)
    if not np.issubdtype(m.dtype, np.integer):
        return {}
    m = m.astype(np.int64)
    return {name: int(((m >> bit) & 1).sum()) for bit, name in meanings.items()}


def mask_from_nexus(pixel_mask: np.ndarray) -> np.ndarray:
    """NeXus / Dectris ``pixel_mask``: any nonzero bit masks the pixel."""
    return np.asarray(pixel_mask) != 0


def mask_from_cxi(mask: np.ndarray) -> np.ndarray:
    """CXI ``detector_1/mask``: bad when a masking bit is set (see module docstring); bool masks: True = bad."""
    m = np.asarray(mask)
    if m.dtype == bool:
        return m
    return (m.astype(np.int64) & CXI_BAD_BITS) != 0


def _frame_mask(array: np.ndarray, where: str) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise DataValidationError(f"{where}: a mask must be one image [H, W], got shape {a.shape}")
    return a


def read_hdf5_detector(f, kind: str) -> dict:
    """Mask, saturation and beam centre an open HDF5 file records (see :mod:`napari_cxdi.io.detector`)."""
    import h5py

    from .detector import read_centre_hdf5

    out: dict = {}
    paths = list(CXI_MASK_PATHS if kind == "cxi" else NEXUS_MASK_PATHS)
    if kind != "cxi":  # any NXdetector group's pixel_mask (e.g. /entry/instrument/eiger/pixel_mask)
        instrument = f.get("entry/instrument")
        if isinstance(instrument, h5py.Group):
            for group in instrument.values():
                c = group.attrs.get("NX_class", b"") if isinstance(group, h5py.Group) else b""
                if (c.decode() if isinstance(c, bytes) else str(c)) == "NXdetector" and "pixel_mask" in group:
                    paths.append(group["pixel_mask"].name.lstrip("/"))
    for name in paths:
        obj = f.get(name)
        if isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3):
            raw = _frame_mask(obj[()], f"{f.filename}:{name}")
            if kind == "cxi":
                out["bad"], out["bit_counts"] = mask_from_cxi(raw), decode_bits(raw, CXI_BITS)
            else:
                out["bad"], out["bit_counts"] = mask_from_nexus(raw), decode_bits(raw, NEXUS_BITS)
            out["source"] = f"{Path(f.filename).name}:/{name}"
            break
    limits = []
    for name in SATURATION_PATHS:
        obj = f.get(name)
        if isinstance(obj, h5py.Dataset) and obj.size >= 1 and np.issubdtype(obj.dtype, np.number):
            value = float(np.asarray(obj[()]).ravel()[0])
            if value > 0:
                limits.append(value)
    if limits:
        out["saturation"] = min(limits)
    centre = read_centre_hdf5(f, kind)
    if centre is not None:
        out["centre"] = centre
    return out


def read_mask_file(path: str | Path, dataset: str | None = None, good_is_one: bool = False) -> np.ndarray:
    """A bad-pixel mask [H, W] (True = bad) from HDF5 (a NeXus/CXI mask path, ``dataset`` or the only 2D
    dataset), NPY/NPZ or TIFF. Integer or bool: nonzero = bad (``good_is_one`` inverts)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "mask file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".npy", ".npz"):
            loaded = np.load(path, allow_pickle=False)
            if suffix == ".npz":
                with loaded as z:
                    keys = list(z.keys())
                    key = dataset or ("mask" if "mask" in keys else keys[0])
                    array = np.asarray(z[key])
            else:
                array = np.asarray(loaded)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(path)
        else:
            import h5py
            import hdf5plugin  # noqa: F401

            with h5py.File(path, "r") as f:
                names = [dataset] if dataset else [p for p in (*NEXUS_MASK_PATHS, *CXI_MASK_PATHS, "mask", "data") if p in f]
                if not names:
                    found = []
                    f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.ndim == 2 else None)
                    if len(found) != 1:
                        raise InputFileError(path, f"cannot tell which dataset is the mask ({found[:6]}); name it")
                    names = found
                if names[0] not in f:
                    raise InputFileError(path, f"no dataset {names[0]!r} in the mask file")
                array = np.asarray(f[names[0]][()])
                if names[0] in CXI_MASK_PATHS:
                    return mask_from_cxi(_frame_mask(array, str(path)))
    except InputFileError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise InputFileError(path, f"cannot read the mask: {exc}") from exc
    array = _frame_mask(array, str(path))
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool or np.issubdtype(array.dtype, np.floating)):
        raise DataValidationError(f"{path}: a mask must be bool or integer, got {array.dtype}")
    bad = array != 0
    return ~bad if good_is_one else bad


def suggest_hot_pixels(summed: np.ndarray, bad: np.ndarray | None = None, ratio: float = 4.0,
                       n_sigma: float = 10.0) -> tuple[np.ndarray, int]:
    """Candidate hot pixels of a summed pattern [H, W]: a suggestion the user accepts (never applied silently).

    A pixel is a candidate when its sum is more than ``ratio`` times its brightest valid neighbour and
    exceeds it by ``n_sigma`` Poisson standard deviations. Real speckles are wider than one pixel
    (oversampling >= 2), so their peaks have comparably bright neighbours. Returns (mask, count).
    """
    from scipy import ndimage

    s = np.nan_to_num(np.asarray(summed, np.float64), nan=0.0, posinf=0.0)
    valid = np.ones(s.shape, bool) if bad is None else ~np.asarray(bad, bool)
    s = np.where(valid, s, 0.0)
    footprint = np.ones((3, 3), bool)
    footprint[1, 1] = False
    neighbour = ndimage.maximum_filter(s, footprint=footprint, mode="constant", cval=0.0)
    hot = valid & (s > ratio * neighbour) & (s - neighbour > n_sigma * np.sqrt(neighbour + 1.0))
    return hot, int(hot.sum())
