"""The one FFT convention of napari-cxdi.

``F(x)   = fftshift(fft2(x, norm="ortho"))``   (zero frequency at the array centre, ``N // 2``)
``F^-1(X) = ifft2(ifftshift(X), norm="ortho")``

Real-space arrays are *not* shifted. The orthonormal transform conserves energy (Parseval):
``sum |x|^2 == sum |F(x)|^2``, so intensities are in the same units (photons) in both planes.
Works on any tensor whose last two axes are (H, W): batched over frames and probe modes.
"""

from __future__ import annotations

import numpy as np
import torch


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Far-field transform ``F``: [..., H, W] complex -> [..., H, W] complex (centred)."""
    return torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))


def ifft2c(x: torch.Tensor) -> torch.Tensor:
    """Inverse transform ``F^-1`` of :func:`fft2c`."""
    return torch.fft.ifft2(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho")


def fft2c_np(x: np.ndarray) -> np.ndarray:
    """NumPy twin of :func:`fft2c`, for analysis code that never needs gradients."""
    return np.fft.fftshift(np.fft.fft2(x, norm="ortho"), axes=(-2, -1))


def ifft2c_np(x: np.ndarray) -> np.ndarray:
    """NumPy twin of :func:`ifft2c`."""
    return np.fft.ifft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho")


def frequency_radius(shape: tuple[int, int]) -> np.ndarray:
    """Radial frequency index ``|q|`` (pixels of the centred spectrum) for an (H, W) array."""
    h, w = shape
    qy = np.arange(h) - h // 2
    qx = np.arange(w) - w // 2
    return np.hypot(qy[:, None] * (w / h if h != w else 1.0), qx[None, :])
