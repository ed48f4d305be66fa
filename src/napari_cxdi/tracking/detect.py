"""Particle detection on a phase (or amplitude) movie [T, H, W] (SPEC §5).

Two detectors, both returning one row per particle per frame with columns
``frame, y, x`` (pixels, sub-pixel), ``y_nm, x_nm, diameter_nm, area_px, contrast, mass``:

- ``"adaptive"`` (the seed's filter): local Gaussian adaptive threshold (skimage ``threshold_local``)
  separates particles from the solution, followed by cleaning (opening, hole filling, size limits);
  centroids are intensity-weighted, the diameter is the equivalent-area diameter.
- ``"trackpy"``: Crocker-Grier band-pass + ``trackpy.locate``; the diameter is ``2*sqrt(2)*size``
  (exact for a uniform disk).

Gold particles *delay* the phase (negative inside particles), so ``polarity="dark"`` (default) flips
the sign before detection; use ``"bright"`` for amplitude-absorption or positive-contrast images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generator

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage import filters, measure, morphology

from ..configs import ConfigMethods
from ..errors import ConfigError, DataValidationError
from ..progress import drain

FEATURE_COLUMNS = ["frame", "y", "x", "y_nm", "x_nm", "diameter_nm", "area_px", "contrast", "mass"]


@dataclass(frozen=True)
class DetectionConfig(ConfigMethods):
    """Detection settings. Lengths in nm unless named ``_px``; phase contrasts in the image's units (rad).

    method: "adaptive" | "trackpy"; polarity: "dark" (particles below the solution, e.g. phase) | "bright".
    threshold: a pixel is a particle when it exceeds the local (Gaussian-weighted) background by this much.
    block_nm: size of the local neighbourhood for the background (a few particle diameters).
    smooth_px: Gaussian pre-smoothing (denoising) in pixels; 0 = none.
    min_diameter_nm / max_diameter_nm: equivalent diameters outside this range are discarded.
    diameter_nm: expected particle diameter (trackpy's feature size); separation_nm: trackpy's minimum separation.
    min_contrast: a particle's median must differ from its surrounding ring by this much (default threshold / 2).
    exclude_border: drop particles touching the image (or ``mask``) border.
    """

    method: str = "adaptive"
    polarity: str = "dark"
    threshold: float = 0.15
    block_nm: float = 1200.0
    smooth_px: float = 1.0
    min_diameter_nm: float = 100.0
    max_diameter_nm: float = 1000.0
    diameter_nm: float = 300.0
    separation_nm: float | None = None
    minmass: float | None = None
    min_contrast: float | None = None
    exclude_border: bool = True

    def validate(self) -> None:
        from ..checks import NON_NEGATIVE, POSITIVE, check_fields

        check_fields(self, {"threshold": NON_NEGATIVE, "block_nm": POSITIVE, "smooth_px": NON_NEGATIVE,
                            "min_diameter_nm": POSITIVE, "max_diameter_nm": POSITIVE, "diameter_nm": POSITIVE,
                            "separation_nm": POSITIVE, "minmass": NON_NEGATIVE, "min_contrast": NON_NEGATIVE},
                     where="detection config")
        if self.method not in ("adaptive", "trackpy"):
            raise ConfigError(f"detection method must be 'adaptive' or 'trackpy', got {self.method!r}")
        if self.polarity not in ("dark", "bright"):
            raise ConfigError(f"polarity must be 'dark' or 'bright', got {self.polarity!r}")
        if self.block_nm <= 0 or self.diameter_nm <= 0 or self.smooth_px < 0:
            raise ConfigError("block size and diameter must be positive, smoothing >= 0")
        if not 0 <= self.min_diameter_nm < self.max_diameter_nm:
            raise ConfigError(f"need 0 <= min diameter < max diameter, got {self.min_diameter_nm}, {self.max_diameter_nm}")



def _check_frame(frame) -> np.ndarray:
    a = np.asarray(frame)
    if np.iscomplexobj(a):
        a = np.angle(a)
    a = a.astype(np.float64)
    if a.ndim != 2:
        raise DataValidationError(f"need a 2D frame [H, W], got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise DataValidationError("the frame contains NaN or infinite values")
    return a


def as_movie(movie) -> np.ndarray:
    """A float movie [T, H, W] (complex input -> phase; a single frame [H, W] -> [1, H, W])."""
    a = np.asarray(movie.compute() if hasattr(movie, "compute") else movie)
    if np.iscomplexobj(a):
        a = np.angle(a)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise DataValidationError(f"need a movie [T, H, W] or a frame [H, W], got shape {a.shape}")
    return a.astype(np.float32)


def _odd(n: float) -> int:
    n = max(3, int(round(n)))
    return n if n % 2 else n + 1


def signal_and_background(frame, cfg: DetectionConfig, pixel_size_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """(signal, local background) [H, W]: the sign-corrected, smoothed frame and its Gaussian local mean."""
    a = _check_frame(frame)
    s = -a if cfg.polarity == "dark" else a
    if cfg.smooth_px > 0:
        s = ndimage.gaussian_filter(s, cfg.smooth_px)
    block = _odd(cfg.block_nm / pixel_size_nm)
    background = filters.threshold_local(s, block, method="gaussian", mode="reflect")
    return s, background


def particle_mask(frame, cfg: DetectionConfig, pixel_size_nm: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Cleaned binary mask [H, W] of particle pixels (adaptive threshold, opening, holes filled)."""
    s, bg = signal_and_background(frame, cfg, pixel_size_nm)
    return _clean(s - bg, cfg, mask)


def _clean(excess: np.ndarray, cfg: DetectionConfig, mask) -> np.ndarray:
    fg = excess > cfg.threshold
    if mask is not None:
        fg &= np.asarray(mask, bool)
    return ndimage.binary_fill_holes(ndimage.binary_opening(fg, morphology.disk(1)))


def label_particles(frame, cfg: DetectionConfig, pixel_size_nm: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Integer labels [H, W] of the accepted particles (0 = solution), for a preview overlay."""
    cfg.validate()
    labels, rows, kept = _adaptive(frame, cfg, pixel_size_nm, 0, mask)
    return np.where(np.isin(labels, kept), labels, 0).astype(np.int32)


def _accepted(labels, cfg, pixel_size_nm, mask, intensity=None):
    border = np.zeros_like(labels, bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    if mask is not None:
        border |= np.asarray(mask, bool) & ~ndimage.binary_erosion(np.asarray(mask, bool))
    touching = set(np.unique(labels[border])) if cfg.exclude_border else set()
    for p in measure.regionprops(labels, intensity_image=intensity):
        d = p.equivalent_diameter_area * pixel_size_nm
        if p.label in touching or not cfg.min_diameter_nm <= d <= cfg.max_diameter_nm:
            continue
        yield p


def detect_frame(frame, cfg: DetectionConfig | None = None, pixel_size_nm: float = 1.0,
                 frame_index: int = 0, mask: np.ndarray | None = None) -> pd.DataFrame:
    """Particles of one frame [H, W] as a table (see module docstring); ``mask`` [H, W] limits the search."""
    cfg = cfg or DetectionConfig()
    cfg.validate()
    if pixel_size_nm <= 0:
        raise ConfigError("pixel size must be positive")
    if cfg.method == "trackpy":
        return _detect_trackpy(frame, cfg, pixel_size_nm, frame_index, mask)
    return _table(_adaptive(frame, cfg, pixel_size_nm, frame_index, mask)[1])


def _adaptive(frame, cfg: DetectionConfig, pixel_size_nm: float, frame_index: int, mask):
    """(labels [H, W], feature rows, accepted labels) of the adaptive-threshold detector."""
    s, bg = signal_and_background(frame, cfg, pixel_size_nm)
    labels = measure.label(_clean(s - bg, cfg, mask))
    excess = np.clip(s - bg, 0, None)
    min_contrast = cfg.threshold / 2 if cfg.min_contrast is None else cfg.min_contrast
    rows, kept = [], []
    for p in _accepted(labels, cfg, pixel_size_nm, mask, intensity=excess):
        contrast = _ring_contrast(s, labels, p)
        if contrast < min_contrast:  # a bump of solution between particles, not a particle
            continue
        vals = excess[p.coords[:, 0], p.coords[:, 1]]
        cy, cx = p.centroid_weighted if vals.sum() > 0 else p.centroid
        rows.append((frame_index, cy, cx, cy * pixel_size_nm, cx * pixel_size_nm, p.equivalent_diameter_area * pixel_size_nm,
                     float(p.area), contrast, float(vals.sum())))
        kept.append(p.label)
    return labels, rows, kept


def _ring_contrast(signal: np.ndarray, labels: np.ndarray, region, width: int = 3) -> float:
    """Median signal inside the particle minus the median of a ``width``-pixel ring of solution around it."""
    y0, x0, y1, x1 = region.bbox
    sl = (slice(max(y0 - width, 0), y1 + width), slice(max(x0 - width, 0), x1 + width))
    own = labels[sl] == region.label
    ring = ndimage.binary_dilation(own, iterations=width) & (labels[sl] == 0)
    inside = np.median(signal[sl][own])
    return float(inside - np.median(signal[sl][ring])) if ring.any() else float(inside)


def _table(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=FEATURE_COLUMNS)
    df["frame"] = df["frame"].astype(int)
    for c in FEATURE_COLUMNS[1:]:
        df[c] = df[c].astype(float)
    return df


def _detect_trackpy(frame, cfg, pixel_size_nm, frame_index, mask) -> pd.DataFrame:
    import trackpy as tp

    a = _check_frame(frame)
    s = -a if cfg.polarity == "dark" else a
    s = s - s.min()
    diameter = _odd(cfg.diameter_nm / pixel_size_nm)
    separation = (cfg.separation_nm / pixel_size_nm) if cfg.separation_nm else diameter
    minmass = cfg.minmass if cfg.minmass is not None else cfg.threshold * np.pi * (diameter / 2) ** 2 / 2
    noise = max(cfg.smooth_px, 0.5)
    import warnings

    with warnings.catch_warnings():  # trackpy's pandas deprecation warnings are not the user's business
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # nor its "No maxima survived ..." / "All local maxima were in the margins" per empty frame: the
        # progress events and the feature table already say how many particles each frame has (0 here)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"trackpy(\.|$)")
        f = tp.locate(s, diameter, minmass=minmass, separation=separation, noise_size=noise, preprocess=True,
                      characterize=True, engine="python" if s.size < 4096 else "auto")
    if len(f) and mask is not None:
        m = np.asarray(mask, bool)
        f = f[m[f.y.round().astype(int).clip(0, m.shape[0] - 1), f.x.round().astype(int).clip(0, m.shape[1] - 1)]]
    d = 2 * np.sqrt(2) * f["size"].to_numpy() * pixel_size_nm if len(f) else np.zeros(0)
    keep = (d >= cfg.min_diameter_nm) & (d <= cfg.max_diameter_nm)
    f, d = f[keep], d[keep]
    rows = [(frame_index, y, x, y * pixel_size_nm, x * pixel_size_nm, di, np.pi * (di / pixel_size_nm / 2) ** 2, sig, mass)
            for y, x, di, sig, mass in zip(f.y, f.x, d, f.signal, f.mass)]
    return _table(rows)


def iter_detect(movie, cfg: DetectionConfig | None = None, pixel_size_nm: float = 1.0,
                mask: np.ndarray | None = None) -> Generator[dict, None, pd.DataFrame]:
    """Detect in every frame of ``movie`` [T, H, W]; yields ``{"stage": "detect", "done", "total", "count"}``
    after each frame and returns the concatenated feature table."""
    cfg = cfg or DetectionConfig()
    cfg.validate()
    frames = as_movie(movie)
    if mask is not None and np.shape(mask) != frames.shape[1:]:
        raise DataValidationError(f"mask shape {np.shape(mask)} does not match the frames {frames.shape[1:]}")
    parts = []
    for t, frame in enumerate(frames):
        parts.append(detect_frame(frame, cfg, pixel_size_nm, t, mask))
        yield {"stage": "detect", "event": "progress", "done": t + 1, "total": len(frames), "count": len(parts[-1])}
    return pd.concat(parts, ignore_index=True) if parts else _table([])


def detect(movie, cfg: DetectionConfig | None = None, pixel_size_nm: float = 1.0, mask: np.ndarray | None = None) -> pd.DataFrame:
    """Blocking form of :func:`iter_detect`."""
    return drain(iter_detect(movie, cfg, pixel_size_nm, mask))
