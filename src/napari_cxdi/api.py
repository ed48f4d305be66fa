"""The public Python API: the same functions back the napari widgets, the CLI and console scripts.

```python
import napari_cxdi as cx
result = cx.reconstruct("movie.cxi", method="PID3Net-PO", epochs=20)   # or "mixed-state", "mf-PIE"
result.phase, result.amplitude, result.metrics; result.save("movie_recon.cxi")
metrics = cx.evaluate(result.objects, counts, probe, pixel_size_nm=27.0, truth=true_objects)
```
Every long step is also available as a generator (``iter_reconstruction``) that yields progress
events and returns the result, so a GUI thread worker can show progress and stop between steps.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator

import numpy as np
import torch

from .devices import free_device_memory
from .errors import ConfigError
from .io import Movie, open_movie, read_probe, write_cxi
from .io.validate import check_probe
from .metrics import estimate_velocity, frc, phase_ssim, prtf, r_factor, remove_phase_offset
from .physics.forward import diffraction_intensity
from .physics.probe import support_mask
from .progress import CANCELLED, cancellable, drain
from .pid3net import PID3Net, PID3NetConfig, PID3NetTrainer, iter_reconstruct, load_checkpoint, save_checkpoint
from .recon import METHODS as ITERATIVE_METHODS
from .recon import IterativeConfig, iter_iterative
from .pid3net.config import VARIANTS

ALL_METHODS = tuple(VARIANTS) + ITERATIVE_METHODS


@dataclass
class Reconstruction:
    """A reconstructed movie: objects [N, H, W] complex64 with method, config, metrics and history."""

    objects: np.ndarray | None
    method: str
    pixel_size_nm: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    model: PID3Net | None = None
    probe: np.ndarray | None = None
    source: str | None = None
    cancelled: bool = False

    @property
    def phase(self) -> np.ndarray:
        return np.angle(self.objects).astype(np.float32)

    @property
    def amplitude(self) -> np.ndarray:
        return np.abs(self.objects).astype(np.float32)

    def save(self, path: str | Path, counts=None, metadata: dict | None = None, overwrite: bool = False) -> Path:
        """Write objects, probe, metrics, config and provenance to CXI (never over the input movie)."""
        meta = dict(metadata or {})
        if self.pixel_size_nm:
            meta.setdefault("pixel_size_nm", self.pixel_size_nm)
        scalar_metrics = {k: v for k, v in self.metrics.items() if not isinstance(v, dict)}
        return write_cxi(
            path, counts=counts, probe=self.probe, reconstruction=self.objects, metadata=meta,
            config={"method": self.method, **self.config, "timings": self.timings}, metrics=scalar_metrics,
            overwrite=overwrite, protected=[self.source] if self.source else (),
        )


def _movie_and_probe(movie, probe) -> tuple[Any, np.ndarray, Movie | None, dict]:
    """Normalise the inputs: (counts array-like [N, H, W], probe [K, H, W], Movie or None, metadata)."""
    from .simulate import SimulatedMovie

    meta: dict = {}
    source = None
    if isinstance(movie, (str, Path)):
        movie = open_movie(movie)
    if isinstance(movie, SimulatedMovie):
        meta = {k: v for k, v in movie.metadata.items() if k != "config"}
        probe = movie.probe if probe is None else probe
        data = movie.counts
    elif isinstance(movie, Movie):
        source = movie
        meta = dict(movie.metadata)
        if movie.pixel_size_nm:
            meta["pixel_size_nm"] = movie.pixel_size_nm
        probe = movie.probe if probe is None else probe
        data = movie.data
    else:
        data = movie
    if data.ndim == 2:
        data = data[None]
    if probe is None:
        raise ConfigError("no probe given and the movie carries none; pass probe=array or a probe file")
    if isinstance(probe, (str, Path)):
        probe = read_probe(probe, tuple(data.shape))
    return data, check_probe(probe, tuple(data.shape)), source, meta


def interior_weights(mask: np.ndarray, margin_px: float = 3.0) -> np.ndarray:
    """Smooth weights [H, W] on the inside of the probe footprint, zero within ``margin_px`` of its edge.

    Velocities are registered on these weights: the footprint's edge does not move with the sample
    and would bias the estimate toward zero.
    """
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(mask)
    return np.clip((depth - margin_px) / margin_px, 0.0, 1.0)


def evaluate(
    objects,
    counts,
    probe,
    pixel_size_nm: float | None = None,
    truth=None,
    frame_interval_s: float | None = None,
    velocity_lag: int = 3,
) -> dict[str, Any]:
    """Metrics of a reconstruction: R_f and PRTF against the counts; with ``truth`` (complex [N, H, W])
    phase SSIM and FRC inside the probe support; with ``frame_interval_s`` the drift velocity (nm/s).
    """
    objects = np.asarray(objects)
    counts_np = np.asarray(counts.compute() if hasattr(counts, "compute") else counts, dtype=np.float32)
    p = torch.as_tensor(np.asarray(probe, np.complex64))
    predicted = np.concatenate(
        [diffraction_intensity(p, torch.as_tensor(objects[i : i + 32])).numpy() for i in range(0, len(objects), 32)]
    )
    dx = pixel_size_nm or 1.0
    curve = prtf(np.sqrt(predicted), counts_np, dx)
    out: dict[str, Any] = {"rf": r_factor(predicted, counts_np), "prtf_resolution_nm": curve.resolution_nm,
                           "prtf_curve": curve.as_dict()}
    mask = support_mask(np.asarray(probe), threshold=0.2, dilate_px=0)
    phase = np.angle(objects)
    if truth is not None:
        true_phase = np.angle(np.asarray(truth))
        out["phase_ssim"] = phase_ssim(phase, true_phase, mask=mask)
        aligned = remove_phase_offset(phase, true_phase, mask)
        from scipy import ndimage

        soft = ndimage.gaussian_filter(mask.astype(float), 2.0)
        f = frc(aligned * soft, true_phase * soft, dx, window=False)
        out["frc_resolution_nm"] = f.resolution_nm
        out["frc_curve"] = f.as_dict()
    if frame_interval_s and len(objects) > velocity_lag:
        weights = interior_weights(support_mask(np.asarray(probe), threshold=0.05, dilate_px=0))
        v = estimate_velocity(phase, dx, frame_interval_s, lag=velocity_lag, weights=weights)
        out["velocity_nm_s"] = v["mean_nm_s"].tolist()
        out["velocity_std_nm_s"] = v["std_nm_s"].tolist()
    return out


def iter_reconstruction(
    movie,
    probe=None,
    method: str = "PID3Net-PO",
    config: PID3NetConfig | IterativeConfig | None = None,
    model: PID3Net | str | Path | None = None,
    train: bool = True,
    truth=None,
    evaluate_metrics: bool = True,
    preview_frame: int = 0,
    inference_stride: int | None = None,
    measure_velocity: bool | None = None,
    cancel: threading.Event | None = None,
    pixel_size_nm: float | None = None,
    **overrides: Any,
) -> Generator[dict[str, Any], None, Reconstruction]:
    """Reconstruct a movie with PID3Net (train on the movie, or reuse ``model``) or an iterative baseline.

    Yields progress events (``stage`` = train / inference / iterative / evaluate); returns a
    :class:`Reconstruction`. ``overrides`` update the config (e.g. ``epochs=5, device="cpu"``).
    ``model`` may be a checkpoint path; with ``train=False`` it is used as it is (no retraining).
    ``measure_velocity``: estimate the drift velocity from the phase movie (default: when the
    metadata records a set velocity, as for the test chart).
    ``cancel``: when this event is set the run stops after the current step and returns a
    Reconstruction with ``cancelled=True`` (``objects`` None) that keeps the best model trained so far.
    ``pixel_size_nm`` sets the object-plane pixel when the movie is a bare array (default: its metadata).
    """
    import time

    data, probe_np, source, meta = _movie_and_probe(movie, probe)
    dx = pixel_size_nm or meta.get("pixel_size_nm")
    timings: dict[str, float] = {}
    history: list[dict] = []
    if method in ITERATIVE_METHODS:
        cfg = config if isinstance(config, IterativeConfig) else IterativeConfig(**overrides)
        t0 = time.perf_counter()
        gen = iter_iterative(data, probe_np, method, cfg, preview_frame=preview_frame)
        objects = yield from _tag(gen, "iterative", cancel)
        timings["reconstruction_s"] = time.perf_counter() - t0
        trained = None
        cfg_dict = {"method": method, **cfg.__dict__}
        if objects is CANCELLED:
            return Reconstruction(None, method, dx, cfg_dict, timings=timings, probe=probe_np, cancelled=True)
    elif method in VARIANTS or isinstance(model, (PID3Net, str, Path)):
        if isinstance(model, (str, Path)):
            model, payload = load_checkpoint(model, device=overrides.get("device", "auto"))
            history = list(payload.get("history", []))
        if model is None:
            cfg = config if isinstance(config, PID3NetConfig) else PID3NetConfig.variant(method, **overrides)
        else:
            cfg = model.config.with_(**overrides) if overrides else model.config
        trained = model
        if train or trained is None:
            trainer = PID3NetTrainer(data, probe_np, cfg, model=trained, preview_frame=preview_frame)
            t0 = time.perf_counter()
            stopped = yield from _tag(trainer.run(), "train", cancel)
            timings["training_s"] = time.perf_counter() - t0
            trained = trainer.model
            history = history + trainer.history
            if stopped is CANCELLED:
                return Reconstruction(None, cfg.name, dx, {"method": cfg.name, **cfg.to_dict()}, history=history,
                                      timings=timings, model=trained, probe=probe_np, cancelled=True)
        elif trained.frame_size != data.shape[-1]:
            raise ConfigError(f"the model was trained on {trained.frame_size}px frames, the movie has {data.shape[-1]}px")
        t0 = time.perf_counter()
        objects = yield from _tag(iter_reconstruct(trained, data, stride=inference_stride), "inference", cancel)
        timings["inference_s"] = time.perf_counter() - t0
        if objects is CANCELLED:
            return Reconstruction(None, cfg.name, dx, {"method": cfg.name, **cfg.to_dict()}, history=history,
                                  timings=timings, model=trained, probe=probe_np, cancelled=True)
        timings["inference_frames_per_s"] = len(objects) / max(timings["inference_s"], 1e-9)
        cfg_dict = {"method": cfg.name, **cfg.to_dict()}
        method = cfg.name
    else:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(ALL_METHODS)}")
    result = Reconstruction(
        objects=np.asarray(objects), method=method, pixel_size_nm=dx, config=cfg_dict, history=history,
        timings=timings, model=trained, probe=probe_np, source=str(source.path) if source and source.path else None,
    )
    if evaluate_metrics:
        yield {"event": "progress", "stage": "evaluate"}
        truth_objects = truth.objects if hasattr(truth, "objects") else truth
        if measure_velocity is None:
            measure_velocity = "velocity_nm_s" in meta
        interval = meta.get("frame_interval_s", meta.get("exposure_s")) if measure_velocity else None
        result.metrics = evaluate(result.objects, data, probe_np, dx, truth_objects, interval)
    if trained is not None:
        trained.to("cpu")
    free_device_memory()
    return result


def _tag(gen, stage: str, cancel: threading.Event | None = None):
    """Re-yield a generator's events with ``stage`` added (see :func:`progress.cancellable`)."""
    return cancellable(gen, cancel, stage=stage)


def reconstruct(movie, probe=None, method: str = "PID3Net-PO", progress: Callable[[dict], None] | None = None, **kwargs) -> Reconstruction:
    """Blocking form of :func:`iter_reconstruction` (``progress`` is called with every event)."""
    return drain(iter_reconstruction(movie, probe, method, **kwargs), progress)


def train(movie, probe=None, variant: str = "PID3Net-PO", checkpoint: str | Path | None = None,
          progress: Callable[[dict], None] | None = None, model: PID3Net | str | Path | None = None,
          overwrite: bool = False, **overrides: Any) -> PID3Net:
    """Train PID3Net on a movie (optionally continuing ``model``) and save a checkpoint if asked."""
    data, probe_np, _, _ = _movie_and_probe(movie, probe)
    history: list[dict] = []
    optimizer_state = None
    if isinstance(model, (str, Path)):
        model, payload = load_checkpoint(model, device=overrides.get("device", "auto"))
        history = list(payload.get("history", []))
        optimizer_state = payload.get("optimizer")
    cfg = model.config.with_(**overrides) if model is not None else PID3NetConfig.variant(variant, **overrides)
    trainer = PID3NetTrainer(data, probe_np, cfg, model=model, optimizer_state=optimizer_state)
    drain(trainer.run(), progress)
    if checkpoint is not None:
        save_checkpoint(checkpoint, trainer.model, history + trainer.history,
                        optimizer_state=trainer.optimizer.state_dict(), overwrite=overwrite)
    return trainer.model
