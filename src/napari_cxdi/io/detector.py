"""Detector geometry of real data: beam centre, crop window and binning, applied lazily (no Qt).

```python
movie = open_movie("run_master.h5")               # movie.mask, movie.beam_centre (from the file, if it has them)
prepared = prepare_movie(movie, size=64, bin=2)    # lazy [T, 64, 64] float32, NaN = unmeasured
```

Beam centre, in this order: given (``centre=(y, x)``, ``--center Y,X``); from the file (Dectris / NeXus
``beam_center_x/y`` in pixels, CXI ``corner_position`` with the pixel size or ``basis_vectors``); else
estimated from the data (:func:`estimate_centre`: the centre of symmetry of the summed, masked pattern).

The crop takes an ``m b x m b`` detector window placed so that the beam falls on pixel ``m // 2`` of the
binned ``m x m`` frame (where the centred FFT puts zero frequency); parts of the window outside the
detector are unmeasured. ``b x b`` binning sums counts; a binned pixel is unmeasured only when all its
pixels are, and partially masked bins are scaled by ``b^2 / n_measured``. The object-plane pixel is
``dx = lambda z / (m b p)``. Every frame is processed when it is read, so memory stays bounded by a few
frames: an HDF5 movie is read in blocks of up to 32 frames (a few MiB of window) per dask task, the file opened once per block
and only the window's hyperslab read (HDF5 decompresses only the chunks it intersects); no file handle
is held between tasks. Other movies: one task per frame chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import dask.array as da
import numpy as np

from ..errors import ConfigError
from .lazy import h5_stack_of, read_window_block
from .mask import DetectorMask
from .movie import Movie


@dataclass(frozen=True)
class BeamCentre:
    """Beam centre (row ``y``, column ``x``) in detector pixels and where it came from."""

    y: float
    x: float
    source: str  # "given" | "file:<path>" | "estimated" | "frame centre"

    def as_tuple(self) -> tuple[float, float]:
        return (self.y, self.x)



MIN_CENTRE_ENERGY = 0.5
"""A candidate centre's reflection must meet at least this fraction of the pattern's (log) energy."""

def read_centre_hdf5(f, kind: str) -> BeamCentre | None:
    """The beam centre an open HDF5 file records, or None."""
    import h5py

    def number(name):
        obj = f.get(name)
        if isinstance(obj, h5py.Dataset) and obj.size >= 1 and np.issubdtype(obj.dtype, np.number):
            return np.asarray(obj[()], np.float64).ravel()
        return None

    if kind != "cxi":
        bases = ["entry/instrument/detector", "entry/instrument/detector/detectorSpecific"]
        instrument = f.get("entry/instrument")
        if isinstance(instrument, h5py.Group):  # any NXdetector group (e.g. /entry/instrument/eiger)
            for group in instrument.values():
                c = group.attrs.get("NX_class", b"") if isinstance(group, h5py.Group) else b""
                if (c.decode() if isinstance(c, bytes) else str(c)) == "NXdetector":
                    bases.append(group.name.lstrip("/"))
        for base in bases:
            bx, by = number(f"{base}/beam_center_x"), number(f"{base}/beam_center_y")
            if bx is not None and by is not None:
                unit = f[f"{base}/beam_center_x"].attrs.get("units", b"pixel")
                unit = unit.decode() if isinstance(unit, bytes) else str(unit)
                scale = 1.0
                if unit.strip().lower() in ("m", "mm", "um"):
                    pixel = number(f"{base}/x_pixel_size") if number(f"{base}/x_pixel_size") is not None else number(
                        "entry/instrument/detector/x_pixel_size")
                    if pixel is None:
                        continue
                    scale = {"m": 1.0, "mm": 1e-3, "um": 1e-6}[unit.strip().lower()] / float(pixel[0])
                return BeamCentre(float(by[0]) * scale, float(bx[0]) * scale, f"file:/{base}/beam_center_x,y")
        return None
    det = "entry_1/instrument_1/detector_1"
    corner = number(f"{det}/corner_position")
    if corner is None or corner.size < 2:
        return None
    obj = f.get(f"{det}/basis_vectors")
    raw = np.asarray(obj[()], np.float64) if isinstance(obj, h5py.Dataset) else None
    # the step of one pixel along the frame's (y, x) axes, in (x, y, z) metres: rows of a [2, 3] array
    # (CXI) or columns of a [3, 2] one (cdtools writes ``basis.T``)
    basis = raw.T if raw is not None and raw.shape == (3, 2) else raw
    if basis is not None and basis.shape == (2, 3):
        b = basis
        a = np.stack([b[0, :2], b[1, :2]], axis=1)  # [[dx/dy_idx, dx/dx_idx], [dy/dy_idx, dy/dx_idx]]
        try:
            iy, ix = np.linalg.solve(a, -corner[:2])
        except np.linalg.LinAlgError:
            return None
        return BeamCentre(float(iy), float(ix), "file:/entry_1/instrument_1/detector_1/corner_position")
    px, py = number(f"{det}/x_pixel_size"), number(f"{det}/y_pixel_size")
    if px is None:
        return None
    py = px if py is None else py
    return BeamCentre(float(-corner[1] / py[0]), float(-corner[0] / px[0]), "file:/entry_1/instrument_1/detector_1/corner_position")


def summed_pattern(movie: Movie, max_frames: int = 32) -> np.ndarray:
    """Sum of up to ``max_frames`` evenly spaced frames [H, W] with unmeasured pixels 0 (reads only those frames)."""
    n = movie.n_frames
    picks = np.unique(np.linspace(0, n - 1, min(max_frames, n)).astype(int))
    mask = movie.mask or DetectorMask.for_dtype(movie.data.dtype)
    total = np.zeros(movie.shape[1:], np.float64)
    for t in picks:
        total += np.nan_to_num(mask.apply(movie.frames_raw(int(t), int(t) + 1))[0], nan=0.0)
    return total


def estimate_centre(pattern: np.ndarray, bad: np.ndarray | None = None) -> tuple[float, float, float]:
    """Centre of symmetry (y, x, score) of a diffraction pattern [H, W], sub-pixel.

    Far-field intensities are (nearly) centrosymmetric about the beam: ``I(c + q) = I(c - q)``. The
    pattern ``v = log(1 + I)`` (clipped at its 99.9th percentile, so saturated regions weigh little) is
    correlated with its point reflection through every candidate centre at once: the self-convolution
    ``C(s) = sum_r v(r) v(s - r)`` over measured pixels peaks at ``s = 2c``. ``C`` is normalised by its
    Cauchy-Schwarz bound ``sum_r v(r)^2 w(s - r)`` (``w`` = measured), so gaps do not bias it. A parabola
    through the peak and its neighbours gives the sub-pixel position. score: the normalised correlation (<= 1).

    Only candidate centres whose reflection meets at least :data:`MIN_CENTRE_ENERGY` of the pattern's energy
    ``sum v^2`` are searched: elsewhere sparse background counts can match by chance. This rule (not the
    area of the overlap) is what lets a beam far from the detector's middle be found: a pattern's energy
    lies around its beam. A peak on the edge of the searched candidates is not a result: a
    :class:`ConfigError` asks for the centre. Isolated hot pixels that the mask misses (candidates of
    :func:`~napari_cxdi.io.mask.suggest_hot_pixels`) are left out of the estimate, not out of the data:
    a few of them decided the centre (20 in a 96 x 96 pattern put 36 of 60 random beams elsewhere). A
    pattern made only of isolated pixels keeps them.
    """
    from scipy.signal import fftconvolve

    from .mask import suggest_hot_pixels

    p = np.nan_to_num(np.asarray(pattern, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    w = np.ones(p.shape) if bad is None else (~np.asarray(bad, bool)).astype(np.float64)
    w[p < 0] = 0.0
    hot = suggest_hot_pixels(p, w == 0)[0]
    if (p[(w > 0) & ~hot] > 0).any():  # unless the isolated pixels are all the pattern has
        w[hot] = 0.0
    v = np.log1p(np.clip(p, 0, None)) * w
    if not (w > 0).any() or not v.any():
        raise ConfigError("cannot estimate the beam centre: the pattern has no counts; give it (--center Y,X)")
    v = np.minimum(v, np.percentile(v[w > 0], 99.9))
    num = fftconvolve(v, v, mode="full")
    den = fftconvolve(v * v, w, mode="full")
    searched = den > MIN_CENTRE_ENERGY * den.max()
    score = np.where(searched, num / np.where(searched, den, 1.0), -np.inf)
    sy, sx, peak = subpixel_peak(score)
    return sy / 2.0, sx / 2.0, peak


def subpixel_peak(score: np.ndarray) -> tuple[float, float, float]:
    """The maximum (y, x, value) of a score map [H, W] whose unsearched entries are -inf, sub-pixel.

    A parabola through the peak and its two neighbours along each axis gives the offset. The parabola is
    always concave and its vertex within half a pixel: ``argmax`` returns the first of equal values, so the
    neighbour before the peak is strictly lower (``c0 < c1 >= c2``), hence ``c0 - 2 c1 + c2 < 0`` and
    ``|c0 - c2| <= 2 c1 - c0 - c2``. A peak whose four neighbours were not all searched (-inf, or outside the
    map) lies on the edge of the search, not inside it: a :class:`ConfigError`.
    """
    padded = np.pad(np.asarray(score, np.float64), 1, constant_values=-np.inf)
    py, px = np.unravel_index(int(np.argmax(padded)), padded.shape)  # shift + 1 in the padded map
    around = padded[py - 1 : py + 2, px - 1 : px + 2]
    if not (np.isfinite(around[1]).all() and np.isfinite(around[:, 1]).all()):
        raise ConfigError(
            f"cannot estimate the beam centre: the pattern's centre of symmetry lies at the edge of what can be "
            f"searched (centres whose reflection meets at least {MIN_CENTRE_ENERGY:.0%} of the pattern's energy); the "
            f"beam is probably near the detector's edge: give it (--center Y,X)")

    def refine(c0, c1, c2):
        return float(0.5 * (c0 - c2) / (c0 - 2 * c1 + c2))

    return py - 1 + refine(*around[:, 1]), px - 1 + refine(*around[1]), float(around[1, 1])


@dataclass(frozen=True)
class CropWindow:
    """An ``size * bin`` square detector window from (y0, x0), read out as ``size x size`` binned pixels."""

    y0: int
    x0: int
    size: int
    bin: int = 1

    @property
    def extent(self) -> int:
        return self.size * self.bin

    def fits(self, frame_shape: tuple[int, int]) -> bool:
        h, w = frame_shape
        return self.y0 >= 0 and self.x0 >= 0 and self.y0 + self.extent <= h and self.x0 + self.extent <= w

    def is_identity(self, frame_shape: tuple[int, int]) -> bool:
        return self.bin == 1 and (self.y0, self.x0) == (0, 0) and tuple(frame_shape) == (self.size, self.size)

    def to_dict(self) -> dict:
        return {"y0": self.y0, "x0": self.x0, "size": self.size, "bin": self.bin}

    def cut(self, frames: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """The window of ``frames`` [..., H, W] as float32 (outside the detector: ``fill``), before binning."""
        h, w = frames.shape[-2:]
        e = self.extent
        out = np.full((*frames.shape[:-2], e, e), fill, dtype=np.float32)
        ys, xs = max(self.y0, 0), max(self.x0, 0)
        ye, xe = min(self.y0 + e, h), min(self.x0 + e, w)
        if ye > ys and xe > xs:
            out[..., ys - self.y0 : ye - self.y0, xs - self.x0 : xe - self.x0] = frames[..., ys:ye, xs:xe]
        return out


def crop_window(centre: tuple[float, float], frame_shape: tuple[int, int], size: int | None = None, bin: int = 1) -> CropWindow:
    """The window that puts the beam ``centre`` on pixel ``size // 2`` of the binned frame.

    size None: the largest even size whose window fits on the detector.
    """
    if bin < 1:
        raise ConfigError(f"binning must be a positive integer, got {bin}")
    cy, cx = centre
    h, w = frame_shape

    def origin(m: int) -> tuple[int, int]:
        offset = (m // 2) * bin + (bin - 1) / 2.0
        return int(np.floor(cy - offset + 0.5)), int(np.floor(cx - offset + 0.5))

    if size is None:
        for m in range(min(h, w) // bin // 2 * 2, 7, -2):
            y0, x0 = origin(m)
            if CropWindow(y0, x0, m, bin).fits(frame_shape):
                return CropWindow(y0, x0, m, bin)
        raise ConfigError(f"the beam centre ({cy:.1f}, {cx:.1f}) is too close to the detector edge for an 8-pixel "
                          f"window; give --crop-size (the window may extend beyond the detector) or --center")
    if size < 8:
        raise ConfigError(f"the crop size must be at least 8 pixels, got {size}")
    y0, x0 = origin(size)
    return CropWindow(y0, x0, size, bin)


def bin_frames(frames: np.ndarray, b: int) -> np.ndarray:
    """Sum ``b x b`` bins of float32 frames [..., m b, m b] with NaN = unmeasured.

    A bin with no measured pixel is NaN; a partially measured bin holds its measured sum x ``b^2 / n``.
    """
    if b == 1:
        return frames
    *lead, hh, ww = frames.shape
    blocks = frames.reshape(*lead, hh // b, b, ww // b, b)
    measured = np.isfinite(blocks)
    n = measured.sum(axis=(-3, -1))
    total = np.where(measured, blocks, 0.0).sum(axis=(-3, -1), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n > 0, total * (b * b) / np.maximum(n, 1), np.nan)
    return out.astype(np.float32)


def bin_mask(bad: np.ndarray, b: int) -> np.ndarray:
    """A binned pixel is bad only when all its ``b x b`` pixels are."""
    if b == 1:
        return bad
    hh, ww = bad.shape
    return bad.reshape(hh // b, b, ww // b, b).all(axis=(1, 3))


def _process(block: np.ndarray, window: CropWindow, mask: DetectorMask, bad_window: np.ndarray | None,
             offset: tuple[int, int]) -> np.ndarray:
    """Frames [t, h, w] of the window's on-detector part (native dtype) -> [t, m, m] float32, NaN = unmeasured."""
    values = block.astype(np.float32)
    values[mask.invalid(block)] = np.nan
    e = window.extent
    if values.shape[-2:] != (e, e):
        padded = np.full((block.shape[0], e, e), np.nan, np.float32)
        oy, ox = offset
        padded[:, oy : oy + values.shape[1], ox : ox + values.shape[2]] = values
        values = padded
    if bad_window is not None:
        values[:, bad_window] = np.nan
    return bin_frames(values, window.bin)


BLOCK_BYTES = 4 << 20  # the window of one block of frames, before processing (a few MiB)
MAX_BLOCK_FRAMES = 32


def block_frames(window_pixels: int, itemsize: int) -> int:
    """Frames per task of a crop: up to 32 (fewer tasks: dask's per-task cost; measured in
    benchmarks/bench_real_data.py, 8 -> 0.73x, 32 -> 0.9x of an h5py read with the file held open), and
    a block's window (float32 while processed) within a few MiB."""
    return int(max(1, min(MAX_BLOCK_FRAMES, BLOCK_BYTES // max(1, window_pixels * max(itemsize, 4)))))


def _read_process(stack, starts: tuple[int, ...], bounds, window: CropWindow, mask: DetectorMask, bad_window, offset,
                  block_id=None):
    t0, t1 = starts[block_id[0]], starts[block_id[0] + 1]
    ys, ye, xs, xe = bounds
    return _process(read_window_block(stack, t0, t1, ys, ye, xs, xe), window, mask, bad_window, offset)


def _window_blocks(stack, dtype, bounds, window: CropWindow, mask: DetectorMask, bad_window) -> da.Array:
    """Lazy [T, m, m] float32: one task per block of frames that opens the file, reads the window, processes it.

    One blockwise layer (not one layer per block): slicing and computing a few frames stays cheap.
    """
    ys, ye, xs, xe = bounds
    n, m = stack.n_frames, window.size
    step = block_frames((ye - ys) * (xe - xs), np.dtype(dtype).itemsize)
    sizes = tuple(min(step, n - t0) for t0 in range(0, n, step))
    starts = tuple(int(v) for v in np.cumsum((0, *sizes)))
    return da.map_blocks(_read_process, stack, starts, bounds, window, mask, bad_window, (ys - window.y0, xs - window.x0),
                         chunks=(sizes, (m,), (m,)), dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))


def resolve_centre(movie: Movie, centre: tuple[float, float] | None = None, estimate: bool = True) -> BeamCentre:
    """Given centre, else the file's, else estimated from the data (or the frame centre without ``estimate``)."""
    h, w = movie.shape[1:]
    if centre is not None:
        cy, cx = (float(c) for c in centre)
        if not (-0.5 <= cy <= h - 0.5 and -0.5 <= cx <= w - 0.5):
            raise ConfigError(f"the beam centre ({cy}, {cx}) is outside the {h}x{w} detector (give it as Y,X in pixels)")
        return BeamCentre(cy, cx, "given")
    if movie.beam_centre is not None:
        c = movie.beam_centre
        if -0.5 <= c.y <= h - 0.5 and -0.5 <= c.x <= w - 0.5:
            return c
    if not estimate:
        return BeamCentre(float(h // 2), float(w // 2), "frame centre")
    pattern = summed_pattern(movie)
    bad = movie.mask.bad if movie.mask is not None else None
    cy, cx, _ = estimate_centre(pattern, bad)
    return BeamCentre(cy, cx, "estimated")


def plan_crop(movie: Movie, size: int | None = None, bin: int = 1, centre: tuple[float, float] | None = None,
              estimate: bool = True) -> tuple[BeamCentre, CropWindow]:
    """The beam centre and the crop window :func:`prepare_movie` would use (reads frames only to estimate a centre).

    A square frame already of the requested size (or any square frame when no size is asked), with no
    centre given and none recorded more than 1 px off its middle, is taken as centred: the window is the
    whole frame (a file that records the conventional centre N/2 or (N-1)/2 is not shifted by a pixel).
    """
    h, w = movie.shape[1:]
    recorded = movie.beam_centre
    centred = recorded is None or (abs(recorded.y - h // 2) <= 1 and abs(recorded.x - w // 2) <= 1)
    square_ok = h == w and (size is None or size * bin == h) and centre is None and centred
    if square_ok:
        c = BeamCentre(float(h // 2), float(w // 2), "frame centre")
        m = h // bin
        return c, crop_window(c.as_tuple(), (h, w), m, bin)
    c = resolve_centre(movie, centre, estimate)
    return c, crop_window(c.as_tuple(), (h, w), size, bin)


def prepare_movie(
    movie: Movie,
    size: int | None = None,
    bin: int = 1,
    centre: tuple[float, float] | None = None,
    mask: np.ndarray | None = None,
    use_file_mask: bool = True,
    window: CropWindow | None = None,
) -> Movie:
    """Masked, centred, cropped and binned movie: lazy float32 [T, size, size] with NaN = unmeasured.

    mask: extra bad pixels [H, W] (True = bad; a mask file, hot pixels the user accepted, painted pixels).
    use_file_mask: False ignores the mask the file carries (per-frame invalid values still count).
    window: a crop already planned (:func:`plan_crop`); else planned here.
    The returned movie's ``metadata["crop"]`` records the window and the beam centre, its ``mask``
    is the static mask of the window (binned), and ``detector_pixel_um`` is multiplied by ``bin``.
    """
    h, w = movie.shape[1:]
    base = movie.mask or DetectorMask.for_dtype(movie.data.dtype)
    if not use_file_mask:
        base = base.without_file_mask()
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != (h, w):
            raise ConfigError(f"the mask is {mask.shape[0]}x{mask.shape[1]} but the detector frames are {h}x{w}")
        base = base.with_bad(mask, "given")
    base.check_shape((h, w), str(movie.path or "movie"))
    if window is None:
        c, window = plan_crop(replace(movie, mask=base), size, bin, centre)
    else:
        c = resolve_centre(movie, centre, estimate=False) if centre or movie.beam_centre else BeamCentre(
            window.y0 + (window.size // 2) * window.bin + (window.bin - 1) / 2, window.x0 + (window.size // 2) * window.bin + (window.bin - 1) / 2, "window")
    bad_window = None
    if base.bad is not None:
        bad_window = window.cut(base.bad.astype(np.float32), fill=1.0) > 0
    else:
        outside = window.cut(np.zeros((h, w), np.float32), fill=1.0) > 0
        bad_window = outside if outside.any() else None
    data = movie.data
    if not isinstance(data, da.Array):
        data = da.from_array(data, chunks=(1, h, w), asarray=True)
    # only the window's on-detector part is read and processed (HDF5: a block of frames per task)
    ys, xs = max(window.y0, 0), max(window.x0, 0)
    ye, xe = min(window.y0 + window.extent, h), min(window.x0 + window.extent, w)
    if ye <= ys or xe <= xs:
        raise ConfigError(f"the crop window {window.to_dict()} does not overlap the {h}x{w} detector")
    m = window.size
    stack = h5_stack_of(data)
    if stack is not None:  # an HDF5 movie: blocks of frames, one hyperslab read of the window each
        prepared = _window_blocks(stack, data.dtype, (ys, ye, xs, xe), window, replace(base, bad=None), bad_window)
    else:
        region = data[:, ys:ye, xs:xe].rechunk({1: -1, 2: -1})
        prepared = region.map_blocks(
            _process, window, replace(base, bad=None), bad_window, (ys - window.y0, xs - window.x0),
            dtype=np.float32, chunks=(region.chunks[0], (m,), (m,)),
        )
    static = bin_mask(bad_window, window.bin) if bad_window is not None else np.zeros((m, m), bool)
    meta = dict(movie.metadata)
    if window.bin != 1 and meta.get("detector_pixel_um"):
        meta["detector_pixel_um"] = meta["detector_pixel_um"] * window.bin
    if meta.get("pixel_size_nm") and not window.is_identity((h, w)):
        meta["pixel_size_nm"] = meta["pixel_size_nm"] * w / window.extent
    meta["crop"] = {**window.to_dict(), "centre_y": round(c.y, 3), "centre_x": round(c.x, 3), "centre_source": c.source,
                    "detector_shape": [h, w]}
    out_mask = DetectorMask(bad=static, sources=list(base.sources), bit_counts=dict(base.bit_counts))
    centre_px = float(m // 2)
    return Movie(data=prepared, path=movie.path, dataset=movie.dataset, format=movie.format, metadata=meta,
                 probe=movie.probe, mask=out_mask, beam_centre=BeamCentre(centre_px, centre_px, "window"), prepared=True)


def centre_crop_probe(probe: np.ndarray, size: int) -> tuple[np.ndarray, str | None]:
    """A probe [K, H, W] cropped or zero-padded (centred) to ``size x size``, with a note when changed."""
    p = np.asarray(probe)
    h, w = p.shape[-2:]
    if (h, w) == (size, size):
        return p, None
    out = np.zeros((*p.shape[:-2], size, size), p.dtype)
    sy, sx = max((h - size) // 2, 0), max((w - size) // 2, 0)
    dy, dx = max((size - h) // 2, 0), max((size - w) // 2, 0)
    ch, cw = min(h, size), min(w, size)
    out[..., dy : dy + ch, dx : dx + cw] = p[..., sy : sy + ch, sx : sx + cw]
    return out, f"the probe ({h}x{w}) was {'cropped' if h > size else 'padded'} to the {size}x{size} window, centred"


def detector_report(movie: Movie, size: int | None = None, bin: int = 1, centre: tuple[float, float] | None = None,
                    hot_pixels: bool = True) -> dict:
    """What ``info`` prints about a detector movie: beam centre and its source, mask statistics, the crop
    :func:`prepare_movie` would use and the resulting object-plane pixel (or "pixels" without geometry).

    Reads frames only to estimate a centre or count hot-pixel candidates (up to 32 frames).
    """
    from .mask import suggest_hot_pixels

    info: dict = {}
    if movie.mask is not None:
        info.update(movie.mask.describe())
    c, window = plan_crop(movie, size, bin, centre)
    info["beam_centre_yx"] = f"{c.y:.2f}, {c.x:.2f}"
    info["beam_centre_source"] = c.source
    info["crop"] = (f"{window.extent}x{window.extent} px at (y {window.y0}, x {window.x0})"
                    + (f", binned {bin}x{bin}" if bin > 1 else "") + f" -> {window.size}x{window.size} frames")
    if not window.fits(tuple(movie.shape[1:])):
        info["crop"] += " (extends beyond the detector: outside pixels unmeasured)"
    m = movie.metadata
    if all(m.get(k) for k in ("energy_kev", "distance_m", "detector_pixel_um")):
        from ..physics.geometry import Geometry

        g = Geometry(m["energy_kev"], m["distance_m"], m["detector_pixel_um"] * bin, window.size)
        info["cropped_pixel_size_nm"] = round(g.pixel_size_nm, 4)
    elif m.get("pixel_size_nm"):
        info["cropped_pixel_size_nm"] = round(m["pixel_size_nm"] * movie.shape[-1] / window.extent, 4)
    else:
        info["cropped_pixel_size_nm"] = "unknown (no geometry: sizes in pixels; give --energy-kev, --distance-m, --pixel-size-um)"
    if hot_pixels:
        _, n_hot = suggest_hot_pixels(summed_pattern(movie), movie.mask.bad if movie.mask is not None else None)
        info["hot_pixel_candidates"] = n_hot
    return info
