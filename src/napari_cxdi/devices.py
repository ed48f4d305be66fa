"""Device selection: ``auto`` picks CUDA, then MPS, then CPU."""

from __future__ import annotations

import contextlib
import gc

import torch

from .errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a :class:`torch.device` for ``auto|cpu|cuda[:n]|mps``.

    Raises :class:`ConfigError` when an explicitly requested accelerator is not available.
    """
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but CUDA is not available on this machine")
        return torch.device(name)
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("device 'mps' requested but Apple MPS is not available on this machine")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}")


def autocast(device: torch.device, enabled: bool = True):
    """Mixed-precision context: bfloat16/float16 autocast on CUDA only (a no-op elsewhere).

    FFTs and the physics run in float32/complex64 regardless (callers cast explicitly).
    """
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def free_device_memory(device: torch.device | None = None) -> None:
    """Release cached accelerator memory after a run."""
    gc.collect()
    if torch.cuda.is_available() and (device is None or device.type == "cuda"):
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if device is not None and device.type == "mps" and mps is not None:
        with contextlib.suppress(Exception):
            mps.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    """True when ``exc`` is an accelerator out-of-memory error."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
