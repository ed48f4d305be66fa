"""Speckle patterns ``|F|^2`` of n-disk systems and their pre-processing.

k grid (SPEC section 7, the public code's convention): the ``(box+1)^2`` image is zero-padded to
``pad = 18001`` (9x oversampled, one speckle is ~9 pixels) and the centred ``window x window``
(513 x 513; k = 0 at index ``window // 2``) block of its DFT is kept. Pixel ``q`` has wave number
``k = 2 pi q / pad`` rad per box unit. The 257 x 257 patterns are the centred crop of the 513 window.

Instead of the padded 18001^2 FFT the window is computed directly as ``W D W^T`` with
``W[q, m] = exp(-2 pi i q m / pad)``, ``q = -window//2 .. window//2``, ``m = 0 .. box`` (same
``|F|^2``; the public code's extra ``+8000`` offset is a pure phase).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import special

from ..errors import ConfigError, DataValidationError
from .disks import DiskSystem

PAD = 18001
WINDOW = 513
BLOCK = 11
TRANSFORMS = ("linear", "log")


@lru_cache(maxsize=4)
def dft_matrix(window: int = WINDOW, n: int = 2001, pad: int = PAD) -> np.ndarray:
    """``W`` ``(window, n)`` complex64: rows are the centred wave numbers ``q = -window//2..window//2``."""
    if window % 2 == 0 or window > pad:
        raise ConfigError(f"window must be odd and <= pad ({pad}), got {window}")
    q = np.arange(window) - window // 2
    phase = np.outer(q, np.arange(n)) % pad  # exact integer reduction before the float multiply
    w = np.exp(-2j * np.pi * phase / pad).astype(np.complex64)
    w.setflags(write=False)
    return w


def speckle_dft(obj: np.ndarray, window: int = WINDOW, pad: int = PAD) -> np.ndarray:
    """``|F|^2`` ``(window, window)`` float32 of a square real or complex object ``(n, n)``."""
    obj = np.asarray(obj)
    if obj.ndim != 2 or obj.shape[0] != obj.shape[1]:
        raise DataValidationError(f"object must be a square 2D array, got shape {obj.shape}")
    w = dft_matrix(window, obj.shape[0], pad)
    if np.iscomplexobj(obj):
        a = w @ obj.astype(np.complex64)
    else:
        d = obj.astype(np.float32)
        a = (w.real @ d) + 1j * (w.imag @ d)
    f = a.astype(np.complex64) @ w.T
    return (f.real**2 + f.imag**2).astype(np.float32)


@lru_cache(maxsize=4)
def _radial_grid(window: int, pad: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct ``|k|`` values of the window, the inverse index ``(window, window)`` and ``k`` (1D)."""
    q = np.arange(window) - window // 2
    k = 2 * np.pi * q / pad
    q2 = q[:, None] ** 2 + q[None, :] ** 2
    uniq, inv = np.unique(q2, return_inverse=True)
    return 2 * np.pi * np.sqrt(uniq) / pad, inv.reshape(window, window), k


def _disk_form_factor(kr: np.ndarray) -> np.ndarray:
    """``2 J1(kr) / (kr)`` (1 at ``kr = 0``)."""
    out = np.ones_like(kr)
    nz = kr > 0
    out[nz] = 2 * special.j1(kr[nz]) / kr[nz]
    return out


def speckle_analytic(system: DiskSystem, window: int = WINDOW, pad: int = PAD) -> np.ndarray:
    """``|F|^2`` of ideal (continuous, flat, amplitude) disks on the same k grid as :func:`speckle_dft`.

    ``F(k) = sum_j pi r_j^2 (2 J1(|k| r_j) / (|k| r_j)) exp(-i k . c_j)``; differs from the rasterised
    DFT only by the pixelation of the disk edges. Float32 ``(window, window)``; ~20x faster. Computed in
    single precision on the half plane ``q_y <= 0`` and mirrored (``|F(-k)| = |F(k)|`` for a real
    object; relative error ~1e-6).
    """
    kabs, inv, k = _radial_grid(window, pad)
    h = window // 2 + 1
    k = k.astype(np.float32)
    ey = np.exp(-1j * np.outer(system.centers[:, 0].astype(np.float32), k[:h])).astype(np.complex64)
    ex = np.exp(-1j * np.outer(system.centers[:, 1].astype(np.float32), k)).astype(np.complex64)
    radii = system.radii
    sub = inv[:h]
    if np.allclose(radii, radii[0]):
        amp = (np.pi * radii[0] ** 2 * _disk_form_factor(kabs * radii[0])).astype(np.float32)[sub]
        f = ey.T @ ex
        half = amp**2 * (f.real**2 + f.imag**2)
    else:
        f = np.zeros((h, window), dtype=np.complex64)
        for j, r in enumerate(radii):
            amp = (np.pi * r**2 * _disk_form_factor(kabs * r)).astype(np.float32)[sub]
            f += amp * np.outer(ey[j], ex[j])
        half = f.real**2 + f.imag**2
    out = np.empty((window, window), dtype=np.float32)
    out[:h] = half
    out[h:] = half[h - 2::-1, ::-1]
    return out


def airy_pattern(radius: float, window: int = WINDOW, pad: int = PAD) -> np.ndarray:
    """Analytic ``|F|^2`` of one disk: ``(pi r^2)^2 (2 J1(kr)/kr)^2`` ``(window, window)``."""
    kabs, inv, _ = _radial_grid(window, pad)
    return ((np.pi * radius**2 * _disk_form_factor(kabs * radius)) ** 2)[inv].astype(np.float32)


def block_center(pattern: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Copy of ``pattern`` (``(..., H, W)``, k = 0 at ``H//2, W//2``) with the central ``block^2`` zeroed."""
    out = np.array(pattern, dtype=np.float32, copy=True)
    if block > 0:
        h, w = out.shape[-2:]
        b0 = block // 2
        out[..., max(h // 2 - b0, 0): h // 2 - b0 + block, max(w // 2 - b0, 0): w // 2 - b0 + block] = 0
    return out


def center_crop(pattern: np.ndarray, size: int) -> np.ndarray:
    """Centred ``size x size`` crop of ``(..., H, W)`` keeping k = 0 at the centre pixel."""
    h, w = pattern.shape[-2:]
    if size > min(h, w):
        raise DataValidationError(f"cannot crop {size} x {size} from a {h} x {w} pattern")
    y0, x0 = h // 2 - size // 2, w // 2 - size // 2
    return pattern[..., y0:y0 + size, x0:x0 + size]


def bin_pattern(pattern: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor x factor`` pixels of ``(..., H, W)`` (H, W divisible by ``factor``)."""
    if factor == 1:
        return pattern
    h, w = pattern.shape[-2:]
    if h % factor or w % factor:
        raise DataValidationError(f"pattern {h} x {w} is not divisible by the binning factor {factor}")
    shaped = pattern.reshape(*pattern.shape[:-2], h // factor, factor, w // factor, factor)
    return shaped.mean(axis=(-3, -1))


def standardize(pattern: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance over the last two axes (float32). Constant patterns are an error."""
    x = np.asarray(pattern, dtype=np.float64)
    mean = x.mean(axis=(-2, -1), keepdims=True)
    std = x.std(axis=(-2, -1), keepdims=True)
    if np.any(std == 0) or not np.all(np.isfinite(std)):
        raise DataValidationError("cannot standardise a constant or non-finite pattern")
    return ((x - mean) / std).astype(np.float32)


def add_poisson_noise(intensity: np.ndarray, photons: float, rng: np.random.Generator | int | None = None,
                      block: int = BLOCK) -> np.ndarray:
    """Photon counts: ``intensity`` scaled to ``photons`` expected counts outside the central block, then
    Poisson-sampled (float32, same shape; the blocked pixels stay 0)."""
    if photons <= 0:
        raise ConfigError(f"photon count must be > 0, got {photons}")
    rng = np.random.default_rng(rng)
    blocked = block_center(intensity, block)
    total = blocked.sum(axis=(-2, -1), keepdims=True, dtype=np.float64)
    if np.any(total <= 0):
        raise DataValidationError("pattern has no intensity outside the central block")
    return rng.poisson(blocked * (photons / total)).astype(np.float32)


@dataclass(frozen=True)
class PreprocessConfig:
    """How a raw pattern becomes network input.

    window: centred crop in full-resolution pixels (257 or 513; trimmed to a multiple of ``bin``).
    bin: average-pooling factor (3 turns 513 into 171). block: central block in full-res pixels.
    transform: ``linear`` (the seed) or ``log`` (``log1p(I / mean I)``) before standardisation.
    """

    window: int = WINDOW
    bin: int = 3
    block: int = BLOCK
    transform: str = "linear"

    def __post_init__(self):
        from ..checks import AT_LEAST_ONE, check_fields

        check_fields(self, {"window": AT_LEAST_ONE, "bin": AT_LEAST_ONE, "block": AT_LEAST_ONE},
                     where="speckle preprocessing")
        if self.window < 3 or self.bin < 1 or self.window // self.bin < 3:
            raise ConfigError(f"invalid window {self.window} / bin {self.bin}")
        if self.transform not in TRANSFORMS:
            raise ConfigError(f"unknown transform {self.transform!r}; choose one of {', '.join(TRANSFORMS)}")

    @property
    def input_size(self) -> int:
        """Side of the network input in pixels."""
        return self.window // self.bin


def prepare(patterns: np.ndarray, config: PreprocessConfig, input_bin: int = 1) -> np.ndarray:
    """Raw intensities ``(H, W)`` or ``(N, H, W)`` (already binned by ``input_bin``) -> standardised
    network input ``(..., S, S)`` float32 with ``S = config.input_size``: crop, block, bin, transform,
    standardise."""
    with np.errstate(over="ignore"):  # a value beyond float32 becomes inf: reported below, not as numpy's warning
        x = np.asarray(patterns, dtype=np.float32)
    if x.ndim not in (2, 3):
        raise DataValidationError(f"expected a pattern (H, W) or a stack (N, H, W), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        beyond = np.isinf(x) & np.isfinite(np.asarray(patterns, dtype=np.float64))
        if beyond.any():
            raise DataValidationError(f"pattern values beyond the float32 range (|value| > {np.finfo(np.float32).max:.3g}) "
                                      f"at {int(beyond.sum())} pixels; rescale the patterns")
        raise DataValidationError("pattern contains NaN or infinite values")
    if config.bin % input_bin:
        raise ConfigError(f"data binned by {input_bin} cannot be re-binned to {config.bin}")
    crop = config.input_size * config.bin // input_bin
    x = center_crop(x, crop)
    block = config.block // input_bin
    x = block_center(x, block + (block % 2 == 0 and block > 0))
    x = bin_pattern(x, config.bin // input_bin)
    if config.transform == "log":
        x = np.log1p(np.clip(x, 0, None) / np.maximum(x.mean(axis=(-2, -1), keepdims=True), 1e-30))
    return standardize(x)
