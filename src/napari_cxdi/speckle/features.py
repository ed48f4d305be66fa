"""Physics features of a speckle pattern: the radially averaged intensity, speckle statistics, moments.

Why these (seed 001's n-disk system: fixed total disk area ``A``, so the disk radius fixes ``n``):

* ``log I(q)`` averaged over rings (normalised by the mean intensity, so the scale of the data does not
  matter): the disk form factor ``(2 J1(qr)/qr)^2`` sets the fall-off and the ring minima (first minimum
  at ``q r = 3.8317``), the structure factor modulates the low-q part; for polydisperse disks the minima
  fill in and the Porod tail ``~ perimeter / q^3`` carries ``sum r`` (with ``sum r^2`` fixed, that is n).
* the speckle contrast per ring, ``<I^2>/<I>^2 - 1``: for ``n`` random phasors of equal amplitude it is
  ``1 - 1/n`` (``1 - sum a^4 / (sum a^2)^2`` for unequal disks), a direct reading of ``n`` at small n.
  For photon counts the Poisson term is removed with the factorial moment ``<S(S-1)>``.
* the first and second moments of ``|q|`` (the first is the one-number baseline), the autocorrelation
  of the standardised pattern at lags 1 and 2 (the speckle width) and ``log10`` of the photon count
  (a fixed 10 for noise-free patterns).
* a one-disk fit: the ring profile against ring-averaged Airy templates ``(2 J1(qr)/qr)^2`` for radii
  :data:`FIT_RADII` (free scale, least squares in ``log I``, rings weighted by their pixel and photon counts):
  ``log`` of the best radius (for monodisperse disks ``n = A / (pi r^2)``) and the residual (the ring
  visibility: small for one disk size, large when polydispersity fills the minima).

All radii are in full-resolution detector pixels of the 513 x 513 window (k = 0 at the centre pixel,
``k = 2 pi q / 18001`` rad per box unit). Features are computed on the pattern binned 3 x 3
(171 x 171 pixels, one speckle is ~3 binned pixels); rings are one binned pixel (3 full pixels) wide,
from ``r_min`` to ``r_max`` binned pixels (rings beyond 85 are the corners, partly covered).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import ConfigError, DataValidationError
from .patterns import BLOCK, WINDOW, bin_pattern, center_crop

#: noise-free patterns get this value as their "log10 photons" feature
NOISE_FREE_LOG_PHOTONS = 10.0
GLOBAL_NAMES = ("first_moment_px", "second_moment_px", "contrast", "acf_lag1", "acf_lag2", "log10_photons",
                "fit_log_radius", "fit_residual")
#: disk radii (box units) of the single-disk templates the ring profile is fitted with
FIT_RADII = np.geomspace(12.0, 160.0, 240)


@dataclass(frozen=True)
class FeatureConfig:
    """Where the features are read. ``window``/``bin``/``block`` in full-resolution pixels; ``r_min`` /
    ``r_max`` ring radii in binned pixels (``r_min`` clears the central block)."""

    window: int = WINDOW
    bin: int = 3
    block: int = BLOCK
    r_min: int = 4
    r_max: int = 120

    def __post_init__(self):
        if self.window % 2 == 0 or self.window % self.bin or (self.window // self.bin) % 2 == 0:
            raise ConfigError(f"window {self.window} must be odd and an odd multiple of bin {self.bin}")
        size = self.window // self.bin
        if not 1 <= self.r_min < self.r_max or self.r_min * self.bin < self.block / 2:
            raise ConfigError(f"rings r_min {self.r_min} .. r_max {self.r_max} (binned px) must clear the "
                              f"central block ({self.block} px) and be increasing")
        if self.r_max > int(np.ceil(np.sqrt(2) * (size // 2))):
            raise ConfigError(f"r_max {self.r_max} lies outside the {size} x {size} binned window")

    def validate(self) -> FeatureConfig:
        return self

    def with_(self, **changes) -> FeatureConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FeatureConfig:
        return cls(**{k: d[k] for k in ("window", "bin", "block", "r_min", "r_max") if k in d})

    @property
    def size(self) -> int:
        """Side of the binned pattern the features are read from."""
        return self.window // self.bin

    @property
    def n_rings(self) -> int:
        return self.r_max - self.r_min + 1

    @property
    def n_features(self) -> int:
        return 2 * self.n_rings + len(GLOBAL_NAMES)

    def ring_radii_px(self) -> np.ndarray:
        """Centre radius of every ring in full-resolution pixels ``(n_rings,)``."""
        return np.arange(self.r_min, self.r_max + 1, dtype=float) * self.bin

    def feature_names(self) -> list[str]:
        rings = [f"{r:g}" for r in self.ring_radii_px()]
        return [f"logI_q{r}" for r in rings] + [f"contrast_q{r}" for r in rings] + list(GLOBAL_NAMES)


@lru_cache(maxsize=4)
def _geometry(size: int, bin_: int, r_min: int, r_max: int, block_binned: float):
    """Ring index per pixel (-1 = unused), the ring one-hot matrix, |q| (full-res px) and the valid mask."""
    c = size // 2
    y, x = np.mgrid[:size, :size] - c
    r = np.hypot(y, x)
    ring = np.rint(r).astype(int)
    valid = (np.abs(y) > block_binned) | (np.abs(x) > block_binned)
    valid &= r >= r_min - 0.5
    idx = np.where(valid & (ring >= r_min) & (ring <= r_max), ring - r_min, -1).ravel()
    used = np.flatnonzero(idx >= 0)
    order = used[np.argsort(idx[used], kind="stable")]       # pixels sorted by ring
    counts = np.bincount(idx[used], minlength=r_max - r_min + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, starts, counts, (r * bin_).ravel(), valid.ravel()


def _ring_means(values: np.ndarray, order: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean of ``values (N, P)`` over the pixels of every ring -> ``(N, R)``."""
    return np.add.reduceat(values[:, order], starts, axis=1) / counts


def to_feature_grid(patterns: np.ndarray, config: FeatureConfig = FeatureConfig(), input_bin: int = 1) -> np.ndarray:
    """Raw intensities ``(H, W)`` / ``(N, H, W)`` (binned by ``input_bin``, k = 0 at the centre) -> the
    ``(N, S, S)`` float64 pattern the features read (centred crop of ``config.window``, binned by
    ``config.bin``, i.e. 171 x 171 for the default)."""
    x = np.asarray(patterns)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or not np.issubdtype(x.dtype, np.number):
        raise DataValidationError(f"expected a pattern (H, W) or a stack (N, H, W) of numbers, got {x.dtype} {x.shape}")
    if input_bin < 1 or config.bin % input_bin:
        raise ConfigError(f"patterns binned by {input_bin} cannot be re-binned to {config.bin}; "
                          f"give full-resolution patterns (input_bin 1) or ones binned by a divisor of {config.bin}")
    need = config.window // input_bin
    if min(x.shape[-2:]) < need:
        raise DataValidationError(
            f"pattern {x.shape[-2]} x {x.shape[-1]} (binned by {input_bin}) is smaller than the {config.window} x "
            f"{config.window} window the radial models read ({need} x {need} at this binning); "
            "use the ResNet models for 257 windows")
    x = center_crop(x.astype(np.float64), need)
    if not np.all(np.isfinite(x)):
        raise DataValidationError("pattern contains NaN or infinite values")
    if np.any(x < 0):
        raise DataValidationError("pattern has negative intensities; give raw intensities or photon counts")
    return bin_pattern(x, config.bin // input_bin)


def looks_like_counts(grid: np.ndarray, config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Per pattern: True if the binned pattern times ``bin^2`` holds whole numbers (photon counts averaged
    over the bin, as the simulator stores them), at least one photon in some pixel and fewer than 1e9
    photons in all. (Intensities normalised to a small sum, every pixel far below one, are not counts.)"""
    s = grid * config.bin**2
    whole = np.all(np.abs(s - np.rint(s)) < 1e-3, axis=(-2, -1))
    return whole & (s.max(axis=(-2, -1)) >= 0.5) & (s.sum(axis=(-2, -1)) < 1e9)


def radial_features(patterns: np.ndarray, config: FeatureConfig = FeatureConfig(), input_bin: int = 1,
                    counts: bool | None = None) -> np.ndarray:
    """Feature vectors ``(N, config.n_features)`` float32: ``log`` ring means (normalised by the mean
    intensity outside the block), ring speckle contrasts, then :data:`GLOBAL_NAMES`.

    ``counts``: treat the data as photon counts (factorial-moment contrast, photon-count feature); None
    decides per pattern with :func:`looks_like_counts`.
    """
    grid = to_feature_grid(patterns, config, input_bin)
    n = grid.shape[0]
    block_binned = (config.block / 2) / config.bin
    order, starts, ring_counts, q, valid = _geometry(config.size, config.bin, config.r_min, config.r_max,
                                                     block_binned)
    is_counts = looks_like_counts(grid, config) if counts is None else np.full(n, bool(counts))
    # photon sums per binned pixel for counts; intensities otherwise
    s = grid.reshape(n, -1) * np.where(is_counts, config.bin**2, 1.0)[:, None]
    s = s * valid[None, :]
    total = s.sum(1)
    if np.any(total <= 0):
        raise DataValidationError("pattern has no intensity outside the central block")
    mean_all = total / valid.sum()
    m1 = _ring_means(s, order, starts, ring_counts)        # ring means (N, R)
    m2 = _ring_means(s * s, order, starts, ring_counts)    # ring second moments
    m2 = m2 - np.where(is_counts[:, None], m1, 0.0)  # factorial moment for Poisson counts
    with np.errstate(divide="ignore", invalid="ignore"):
        contrast = np.where(m1 > 0, m2 / np.maximum(m1, 1e-300) ** 2 - 1.0, 0.0)
    contrast = np.clip(contrast, -1.0, 5.0)
    # photon-count-aware floor: a ring mean below ~1/1000 of a photon per pixel is not resolved
    floor = np.where(is_counts, 1e-3 / np.maximum(mean_all, 1e-300), 1e-7)
    log_i = np.log10(m1 / mean_all[:, None] + floor[:, None])
    w = s / total[:, None]
    first = w @ q
    second = np.sqrt(w @ q**2)
    gmean = s.sum(1) / valid.sum()
    g2 = ((s * s).sum(1) - np.where(is_counts, total, 0.0)) / valid.sum()
    contrast_all = np.clip(g2 / gmean**2 - 1.0, -1.0, 5.0)
    acf = _acf(grid, valid.reshape(config.size, config.size))
    log_ph = np.where(is_counts, np.log10(np.maximum(total, 1.0)), NOISE_FREE_LOG_PHOTONS)
    # rings with few photons weigh less in the fit (noise-free: all weigh 1)
    # each ring weighs by its pixel count (speckle averaging) and, for counts, less when it holds few photons
    ring_photons = m1 * ring_counts[None, :]
    weight = ring_counts[None, :] * np.where(is_counts[:, None], np.clip(ring_photons / 50.0, 0.0, 1.0), 1.0)
    fit_r, fit_res = _fit_disk(log_i, weight, config)
    glob = np.stack([first, second, contrast_all, acf[:, 0], acf[:, 1], log_ph, np.log(fit_r), fit_res], 1)
    return np.concatenate([log_i, contrast, glob], 1).astype(np.float32)


@lru_cache(maxsize=2)
def airy_templates(config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """``log10`` ring profiles ``(len(FIT_RADII), n_rings)`` of single flat disks, computed exactly as the
    data's (513 window, central block, binned, ring means)."""
    from .patterns import airy_pattern, block_center

    pats = np.stack([block_center(airy_pattern(r, config.window), config.block) for r in FIT_RADII])
    grid = bin_pattern(pats.astype(np.float64), config.bin)
    block_binned = (config.block / 2) / config.bin
    order, starts, counts, _, valid = _geometry(config.size, config.bin, config.r_min, config.r_max, block_binned)
    flat = grid.reshape(len(FIT_RADII), -1) * valid[None]
    m = _ring_means(flat, order, starts, counts)
    m /= (flat.sum(1) / valid.sum())[:, None]
    return np.log10(m + 1e-7)


def _fit_disk(log_i: np.ndarray, weight: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Best single-disk radius (box units, parabolic refinement on the log-radius grid) and the weighted
    RMS residual of ``log_i (N, R)`` against :func:`airy_templates` (free offset)."""
    t = airy_templates(config)                                    # (G, R)
    w = weight / np.maximum(weight.sum(1, keepdims=True), 1e-12)  # (N, R)
    d = log_i[:, None, :] - t[None]                               # (N, G, R)
    c = (d * w[:, None, :]).sum(-1, keepdims=True)
    res = (((d - c) ** 2) * w[:, None, :]).sum(-1)                # (N, G)
    g = res.argmin(1)
    lr = np.log(FIT_RADII)
    gi = np.clip(g, 1, len(FIT_RADII) - 2)
    rows = np.arange(len(g))
    y0, y1, y2 = res[rows, gi - 1], res[rows, gi], res[rows, gi + 1]
    den = y0 - 2 * y1 + y2
    shift = np.where(den > 0, 0.5 * (y0 - y2) / np.where(den > 0, den, 1.0), 0.0)
    best = np.exp(lr[gi] + np.clip(shift, -1, 1) * (lr[1] - lr[0]))
    return best, np.sqrt(res[rows, g])


def _acf(grid: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Autocorrelation of the standardised (log) pattern at lags 1 and 2 binned pixels, mean of both axes."""
    z = np.log1p(grid / np.maximum(grid.mean(axis=(-2, -1), keepdims=True), 1e-300))
    v = valid.astype(float)
    mu = (z * v).sum(axis=(-2, -1), keepdims=True) / v.sum()
    z = (z - mu) * v
    var = (z * z).sum(axis=(-2, -1)) / v.sum()
    out = np.zeros((grid.shape[0], 2))
    for j, lag in enumerate((1, 2)):
        a = (z[:, lag:, :] * z[:, :-lag, :]).sum(axis=(-2, -1)) / (v[lag:, :] * v[:-lag, :]).sum()
        b = (z[:, :, lag:] * z[:, :, :-lag]).sum(axis=(-2, -1)) / (v[:, lag:] * v[:, :-lag]).sum()
        out[:, j] = 0.5 * (a + b) / np.maximum(var, 1e-300)
    return out


def add_counts_noise(grid: np.ndarray, photons: np.ndarray | float, rng: np.random.Generator,
                     config: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """Poisson photon counts for binned noise-free patterns ``(N, S, S)``: each scaled to ``photons``
    expected counts in all (the central block stays empty), sampled, and returned as the simulator
    stores counts (averaged over the ``bin x bin`` pixels). The sum of Poisson pixels is Poisson, so
    noise on the binned sums equals noise on the full-resolution pixels."""
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim == 2:
        g = g[None]
    photons = np.broadcast_to(np.asarray(photons, dtype=float), (g.shape[0],))
    if np.any(photons <= 0):
        raise ConfigError("photon counts must be > 0")
    total = g.sum(axis=(-2, -1), keepdims=True)
    lam = g * (photons[:, None, None] / total)
    return (rng.poisson(lam) / config.bin**2).astype(np.float64)


def disk_first_minimum_px(radius: float, pad: int = 18001) -> float:
    """Radius (full-resolution pixels) of the first zero of the disk form factor for a disk ``radius``
    box units wide: ``q r = 3.8317`` with ``q = 2 pi p / pad``."""
    from scipy.special import jn_zeros

    return float(jn_zeros(1, 1)[0] * pad / (2 * np.pi * radius))
