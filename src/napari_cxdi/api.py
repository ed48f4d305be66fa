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
from .io import Movie, open_movie, write_cxi
from .io.safe_write import check_output
from .io.validate import check_probe, iter_check_movie
from .metrics import (estimate_velocity, fourier_fit_ratio, frc, phase_ssim, prtf, r_factor, remove_phase_offset,
                      structured_frames)
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
    inputs: list[str] = field(default_factory=list)  # files of the run (movie, probe, model): never written
    mask: np.ndarray | None = None  # [H, W] bool, True = unmeasured pixel of the reconstructed frames
    filled_intensity: np.ndarray | None = None  # [N, H, W]: counts, with the model's intensity where unmeasured
    metadata: dict[str, Any] = field(default_factory=dict)  # geometry of the reconstructed frames (crop, pixel)

    @property
    def phase(self) -> np.ndarray:
        return np.angle(self.objects).astype(np.float32)

    @property
    def amplitude(self) -> np.ndarray:
        return np.abs(self.objects).astype(np.float32)

    def save(self, path: str | Path, counts=None, metadata: dict | None = None, overwrite: bool = False) -> Path:
        """Write objects, probe, mask (``detector_1/mask``), metrics, config and provenance to CXI (never over the input movie)."""
        meta = dict(metadata or {})
        if self.pixel_size_nm:
            meta.setdefault("pixel_size_nm", self.pixel_size_nm)
        scalar_metrics = {k: v for k, v in self.metrics.items() if not isinstance(v, dict)}
        # the unmeasured pixels of the reconstructed frames travel with them (CXI detector_1/mask), so
        # ``evaluate`` scores the file exactly as the run was scored; skipped if ``counts`` are other frames
        mask = None
        if self.mask is not None and self.objects is not None:
            mask = np.asarray(self.mask, bool)
            frames = tuple(np.shape(self.objects)[-2:])
            if mask.shape != frames or (counts is not None and tuple(np.shape(counts)[-2:]) != frames):
                mask = None
        return write_cxi(
            path, counts=counts, probe=self.probe, reconstruction=self.objects, metadata=meta,
            config={"method": self.method, **self.config, "timings": self.timings}, metrics=scalar_metrics,
            overwrite=overwrite, protected=[*([self.source] if self.source else []), *self.inputs], mask=mask,
        )


def input_paths(*items) -> list[str]:
    """The files among a run's inputs (paths, or objects with a ``path``): outputs may never be one of them."""
    paths = []
    for item in items:
        if isinstance(item, (str, Path)):
            paths.append(str(item))
        elif getattr(item, "path", None):
            paths.append(str(item.path))
    return paths


def invalid_values_note(summary: dict) -> str:
    """What the validation pass found and what it means, for the user."""
    return (f"{summary['invalid_pixels']} pixel values in {summary['invalid_frames']} of {summary['frames']} frames are "
            "NaN, infinite, negative, detector-gap sentinels or saturated: they are treated as unmeasured (masked); "
            "give a mask (--mask) if other pixels are bad too")


def _validated(data, source, cancel=None, prepared: bool = False):
    """Stream-check every frame (cached per file) before long work; returns CANCELLED if cancelled.

    A file's movie is checked with its detector mask (invalid values are unmeasured pixels); prepared
    frames (NaN = unmeasured) likewise; a bare array must be finite and non-negative everywhere.
    """
    if source is not None and getattr(source, "path", None):
        target, mask = source, getattr(source, "mask", None)
    else:
        from .io.mask import DetectorMask

        target, mask = data, (DetectorMask.for_dtype(np.dtype(data.dtype)) if prepared else None)
    return _tag(iter_check_movie(target, mask=mask), "validate", cancel)


MATERIALISE_BELOW_BYTES = 512 * 1024**2


@dataclass(frozen=True)
class DetectorSettings:
    """How a detector movie becomes reconstruction frames (all optional; see :mod:`napari_cxdi.io.detector`).

    mask: extra bad pixels (array [H, W], True = bad, or a mask file); use_file_mask: honour the file's
    pixel mask; center: beam centre (y, x) in detector pixels (default: the file's, else estimated);
    crop_size: m, frame size after cropping (default: the probe's size, else the largest that fits);
    bin: b x b binning; energy_kev, distance_m, detector_pixel_um: geometry the file lacks (override it);
    mask_hot_pixels: accept the hot-pixel candidates of :func:`~napari_cxdi.io.mask.suggest_hot_pixels`
    (isolated outliers of the summed pattern) into the mask.
    """

    mask: Any = None
    use_file_mask: bool = True
    center: tuple[float, float] | None = None
    crop_size: int | None = None
    bin: int = 1
    energy_kev: float | None = None
    distance_m: float | None = None
    detector_pixel_um: float | None = None
    probe_resample: bool = True  # a probe file whose pixel differs from the data's: resample (else refuse)
    mask_hot_pixels: bool = False

    def validate(self) -> None:
        if self.bin < 1:
            raise ConfigError(f"bin must be a positive integer, got {self.bin}")
        if self.crop_size is not None and self.crop_size < 8:
            raise ConfigError(f"crop_size must be at least 8 pixels, got {self.crop_size}")
        for name in ("energy_kev", "distance_m", "detector_pixel_um"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be positive, got {value}")

    def with_(self, **changes) -> "DetectorSettings":
        import dataclasses

        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "mask"}
        out["mask"] = str(self.mask) if isinstance(self.mask, (str, Path)) else (None if self.mask is None else "array")
        return out

    @property
    def needs_preparation(self) -> bool:
        return (self.mask is not None or self.center is not None or self.crop_size is not None or self.bin != 1
                or self.mask_hot_pixels)


def prepare_input(movie, probe=None, detector: DetectorSettings | None = None,
                  default_probe: np.ndarray | None = None) -> tuple[Any, np.ndarray | None, Movie | None, dict]:
    """(counts [N, m, m] with NaN = unmeasured, probe [K, m, m] or None, source Movie or None, metadata).

    A movie file or :class:`Movie` is masked (file mask, ``detector.mask``, invalid values), centred,
    cropped to the probe's size (or ``detector.crop_size``) and binned, lazily; small results are
    loaded into memory. Bare arrays pass through unchanged unless ``detector`` asks for a mask or crop,
    or their frames differ from the probe's. ``metadata["notes"]`` lists what was adapted.
    ``default_probe`` (e.g. a trained model's) is used when neither ``probe`` nor the movie gives one.
    """
    from .io.detector import centre_crop_probe, plan_crop, prepare_movie
    from .simulate import SimulatedMovie

    det = detector or DetectorSettings()
    det.validate()
    meta: dict = {}
    notes: list[str] = []
    source = None
    from .io.probes import ProbeFile, load_probe

    probe_file, probe_path = None, "probe"
    if isinstance(probe, (str, Path)):
        probe_path, probe = str(probe), load_probe(probe)
    if isinstance(probe, ProbeFile):  # modes + their pixel size: fitted to the reconstruction window below
        probe_file, probe = probe, probe.modes
    if isinstance(movie, (str, Path)):
        movie = open_movie(movie, mask=det.mask, use_file_mask=det.use_file_mask)
        det = det.with_(mask=None, use_file_mask=True)
    if isinstance(movie, SimulatedMovie):
        meta = {k: v for k, v in movie.metadata.items() if k != "config"}
        probe = movie.probe if probe is None else probe
        movie = movie.counts
    elif isinstance(movie, Movie):
        source = movie
        probe = movie.probe if probe is None else probe
    if probe is None:
        probe = default_probe
    if not isinstance(movie, Movie):
        data = movie if movie.ndim == 3 else movie[None]
        frame = tuple(data.shape[-2:])
        probe_frame = None if probe is None else tuple(np.shape(probe)[-2:])
        if not det.needs_preparation and (probe_frame is None or probe_frame == frame):
            return data, probe, None, meta
        from .io.mask import DetectorMask

        movie = Movie(data=data, metadata=dict(meta), mask=DetectorMask.for_dtype(data.dtype))
    geometry = {k: getattr(det, k) for k in ("energy_kev", "distance_m", "detector_pixel_um") if getattr(det, k)}
    if geometry:
        movie = Movie(**{**movie.__dict__, "metadata": {**movie.metadata, **geometry}})
        movie.metadata.pop("pixel_size_nm", None)
    size = det.crop_size
    if size is None and probe is not None:
        size = int(np.shape(probe)[-1])
    if movie.prepared:
        prepared = movie
    else:
        extra = det.mask
        if isinstance(extra, (str, Path)):
            from .io.mask import read_mask_file

            extra = read_mask_file(extra)
        mask = movie.mask if movie.mask is not None else None
        if mask is not None and not det.use_file_mask:
            mask = mask.without_file_mask()
        movie = Movie(**{**movie.__dict__, "mask": mask})
        if extra is not None:
            from .io.mask import DetectorMask

            movie.mask = (movie.mask or DetectorMask.for_dtype(movie.data.dtype)).with_bad(extra, "given")
        if det.mask_hot_pixels:
            from .io.detector import summed_pattern
            from .io.mask import DetectorMask, suggest_hot_pixels

            base = movie.mask or DetectorMask.for_dtype(movie.data.dtype)
            hot, n_hot = suggest_hot_pixels(summed_pattern(movie), base.bad)
            movie.mask = base.with_bad(hot, "hot pixels (accepted)")
            notes.append(f"masked {n_hot} hot pixels (isolated outliers of the summed pattern)")
        centre, window = plan_crop(movie, size, det.bin, det.center)
        prepared = prepare_movie(movie, window=window, centre=None if centre.source == "frame centre" else centre.as_tuple())
        prepared.metadata["crop"].update(centre_y=round(centre.y, 3), centre_x=round(centre.x, 3), centre_source=centre.source)
        if not window.is_identity(tuple(movie.shape[1:])):
            notes.append(f"cropped a {window.extent}x{window.extent} window at ({window.y0}, {window.x0}) around the beam "
                         f"centre ({centre.y:.1f}, {centre.x:.1f}, {centre.source})"
                         + (f", binned {det.bin}x{det.bin}" if det.bin > 1 else ""))
    meta = {**meta, **{k: v for k, v in prepared.metadata.items() if not isinstance(v, np.ndarray)}}
    if prepared.pixel_size_nm:
        meta["pixel_size_nm"] = prepared.pixel_size_nm
    data = prepared.data
    if np.prod(data.shape) * 4 <= MATERIALISE_BELOW_BYTES and hasattr(data, "compute"):
        data = np.asarray(data.compute(), np.float32)
    if probe_file is not None:
        from .io.probes import fit_probe

        probe, done = fit_probe(probe_file, tuple(data.shape), meta.get("pixel_size_nm"), where=probe_path,
                                resample=det.probe_resample)
        notes.extend(done)
    elif probe is not None:
        probe, note = centre_crop_probe(np.asarray(probe), int(data.shape[-1]))
        if note:
            notes.append(note)
    meta["notes"] = notes
    meta["mask_bad"] = prepared.mask.bad if prepared.mask is not None else None
    return data, probe, source, meta


def _movie_and_probe(movie, probe, detector: DetectorSettings | None = None,
                     default_probe: np.ndarray | None = None) -> tuple[Any, np.ndarray, Movie | None, dict]:
    """Normalise the inputs: (counts array-like [N, H, W], probe [K, H, W], Movie or None, metadata)."""
    data, probe, source, meta = prepare_input(movie, probe, detector, default_probe)
    if probe is None:
        raise ConfigError("no probe given and the movie carries none; pass probe=array or a probe file (CLI: --probe)")
    return data, check_probe(probe, tuple(data.shape)), source, meta


#: Gaussian low-pass (pixels) of every phase movie before its velocity is registered, the truth's and every
#: method's alike: the chart's truth measured 289 nm/s for 340 unsmoothed (its 1-px edges are not
#: band-limited), 341 with 2 px (docs/fidelity.md, "chart velocity").
VELOCITY_SMOOTH_PX = 2.0


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
    mask=None,
    keep_filled: bool = False,
    *,
    runs=None,
    heldout_split: tuple[float, int | None] | None = None,
) -> dict[str, Any]:
    """Metrics of a reconstruction: R_f and the Fourier fit ratio against the counts; the consistency PRTF
    when ``runs`` (further reconstructions of the same movie from independent random starts, each like
    ``objects``) are given; with ``truth`` (complex [N, H, W]) phase SSIM and FRC inside the probe
    support (over the frames with sample structure there, ``phase_ssim_frames`` of them; none: no
    ``phase_ssim``, a ``phase_ssim_note``); with ``frame_interval_s`` the drift velocity (nm/s), registered
    on the probe's interior after a ``VELOCITY_SMOOTH_PX`` low-pass with a fitted phase offset per pair.

    Without ``runs`` the PRTF is not defined (one run says nothing about how reproducible its phases are):
    ``prtf_resolution_nm`` is None and ``prtf_note`` says why.

    Unmeasured pixels (NaN counts, ``mask`` True) are left out of R_f, the Fourier fit and the PRTF.
    Without ``pixel_size_nm`` resolutions and velocities are in pixels (``*_px`` keys). ``keep_filled``
    adds ``filled_intensity``: the counts with the model's intensity in the unmeasured pixels.
    ``heldout_split=(fraction, seed)``: the binomial-thinning split the method held out (its config's
    ``holdout_fraction`` and ``seed``); with ``truth`` adds ``heldout_excess`` (metrics.heldout_excess): the
    Poisson deviance on those never-seen photons relative to the truth's, the test for noise fitting.
    """
    objects = np.asarray(objects)
    counts_np = np.asarray(counts.compute() if hasattr(counts, "compute") else counts, dtype=np.float32)
    p = torch.as_tensor(np.asarray(probe, np.complex64))
    predicted = np.concatenate(
        [diffraction_intensity(p, torch.as_tensor(objects[i : i + 32])).numpy() for i in range(0, len(objects), 32)]
    )
    # without a pixel size, lengths are in pixels (keys end in _px), never invented nm
    dx = pixel_size_nm or 1.0
    unit = "nm" if pixel_size_nm else "px"
    fit = fourier_fit_ratio(np.sqrt(predicted), counts_np, dx, mask=mask)
    out: dict[str, Any] = {"rf": r_factor(predicted, counts_np, mask=mask), f"fourier_fit_resolution_{unit}": fit.resolution_nm,
                           "fourier_fit_curve": fit.as_dict(), f"prtf_resolution_{unit}": None}
    run_list = [np.asarray(r) for r in (runs or [])]
    if run_list:
        for r in run_list:
            if r.shape != objects.shape:
                raise ConfigError(f"every PRTF run must have the reconstruction's shape {objects.shape}, got {r.shape}")
        curve = prtf(np.stack([objects, *run_list]), dx, probe=np.asarray(probe), mask=mask)
        out[f"prtf_resolution_{unit}"] = curve.resolution_nm
        out["prtf_runs"] = len(run_list) + 1
        out["prtf_curve"] = curve.as_dict()
        if curve.notes:
            out["prtf_note"] = "; ".join(curve.notes)
    else:
        out["prtf_note"] = ("the PRTF needs reconstructions from several independent random starts "
                            "(API: runs=... or prtf_runs=N; CLI: evaluate --runs FILE ... or reconstruct --prtf-runs N)")
    unmeasured = ~np.isfinite(counts_np)
    if mask is not None:
        unmeasured |= np.broadcast_to(np.asarray(mask, bool), counts_np.shape)
    if unmeasured.any():
        out["unmeasured_fraction"] = float(unmeasured.mean())
        if keep_filled:
            out["filled_intensity"] = np.where(unmeasured, predicted, counts_np).astype(np.float32)
    if heldout_split is not None and truth is not None:
        from .metrics import heldout_excess
        from .physics.thinning import binomial_thinning

        fraction, split_seed = heldout_split
        _, held = binomial_thinning(counts_np, fraction, split_seed)
        true_intensity = np.concatenate([diffraction_intensity(p, torch.as_tensor(np.asarray(truth)[i : i + 32])).numpy()
                                         for i in range(0, len(objects), 32)])
        out.update(heldout_excess(predicted, true_intensity, held, fraction, mask=mask))
    mask = support_mask(np.asarray(probe), threshold=0.2, dilate_px=0)
    phase = np.angle(objects)
    if truth is not None:
        true_phase = np.angle(np.asarray(truth))
        # only frames with sample under the probe are scored (metrics.image.structured_frames): a frame with
        # nothing there scores any flat estimate ~1 (AuNP quick, seed 1: 0.99 for a constant phase)
        scored = structured_frames(true_phase, mask)
        out["phase_ssim_frames"] = int(scored.sum())
        if scored.any():
            out["phase_ssim"] = phase_ssim(phase, true_phase, mask=mask, structured_only=True)
        else:
            out["phase_ssim_note"] = "no frame has sample structure inside the probe footprint: phase SSIM undefined"
        aligned = remove_phase_offset(phase, true_phase, mask)
        from scipy import ndimage

        soft = ndimage.gaussian_filter(mask.astype(float), 2.0)
        f = frc(aligned * soft, true_phase * soft, dx, window=False)
        out[f"frc_resolution_{unit}"] = f.resolution_nm
        out[f"frc_resolution_half_bit_{unit}"] = f.resolutions_nm["half-bit"]
        out[f"frc_resolution_3sigma_{unit}"] = f.resolutions_nm["3-sigma"]
        out["frc_curve"] = f.as_dict()
    if frame_interval_s and len(objects) > velocity_lag:
        weights = interior_weights(support_mask(np.asarray(probe), threshold=0.05, dilate_px=0))
        v = estimate_velocity(phase, dx, frame_interval_s, lag=velocity_lag, weights=weights, offset=True,
                              smooth_px=VELOCITY_SMOOTH_PX)
        out[f"velocity_{unit}_s"] = v["mean_nm_s"].tolist()
        out[f"velocity_std_{unit}_s"] = v["std_nm_s"].tolist()
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
    prtf_runs: int = 0,
    detector: DetectorSettings | None = None,
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
    ``prtf_runs`` (iterative methods, >= 2): reconstruct that many times from independent random starts
    (``start_seed`` 0, 1, ...) and report the consistency PRTF; the first run is the result.
    ``detector`` (:class:`DetectorSettings`) or its fields as keywords (``mask=``, ``center=(y, x)``,
    ``crop_size=``, ``bin=``, ``use_file_mask=``, ``energy_kev=``, ``distance_m=``, ``detector_pixel_um=``)
    say how a detector movie is masked, centred, cropped and binned; by default the file's mask and
    beam centre are used and the frames are cropped to the probe's size.
    """
    import time

    inputs = input_paths(movie, probe, model)
    detector = _detector_from(detector, overrides)
    history: list[dict] = []
    if isinstance(model, (str, Path)) and method not in ITERATIVE_METHODS:
        model, payload = load_checkpoint(model, device=overrides.get("device", "auto"))
        history = list(payload.get("history", []))
    # a trained model carries its probe: the default when neither the call nor the file gives one
    model_probe = model.probe.detach().cpu().numpy() if isinstance(model, PID3Net) else None
    data, probe_np, source, meta = _movie_and_probe(movie, probe, detector, default_probe=model_probe)
    crop = meta.get("crop")
    if pixel_size_nm and crop:  # given for the uncropped frames: dx = lambda z / (m b p) follows the window
        pixel_size_nm = pixel_size_nm * crop["detector_shape"][-1] / (crop["size"] * crop["bin"])
    dx = pixel_size_nm or meta.get("pixel_size_nm")
    for note in meta.get("notes", []):
        yield {"event": "warning", "stage": "prepare", "message": note}
    timings: dict[str, float] = {}
    extra_runs: list[np.ndarray] = []
    if prtf_runs and method not in ITERATIVE_METHODS:
        raise ConfigError("prtf_runs is offered for the iterative methods; for PID3Net train with different seeds and "
                          "pass the reconstructions to evaluate(runs=...) (CLI: evaluate --runs)")
    if prtf_runs == 1 or prtf_runs < 0:
        raise ConfigError(f"prtf_runs must be 0 (no PRTF) or at least 2, got {prtf_runs}")
    checked = yield from _validated(data, source, cancel, prepared="crop" in meta)
    if checked is CANCELLED:
        return Reconstruction(None, method, dx, {"method": method}, probe=probe_np, cancelled=True, inputs=inputs)
    if checked.get("invalid_pixels"):
        yield {"event": "warning", "stage": "validate", "message": invalid_values_note(checked)}
    if method in ITERATIVE_METHODS:
        from dataclasses import replace

        cfg = config if isinstance(config, IterativeConfig) else IterativeConfig(**overrides)
        if prtf_runs and cfg.start_seed is None:
            cfg = replace(cfg, start_seed=0)
        t0 = time.perf_counter()
        gen = iter_iterative(data, probe_np, method, cfg, preview_frame=preview_frame)
        objects = yield from _tag(gen, "iterative", cancel)
        for k in range(1, prtf_runs if objects is not CANCELLED else 0):
            run = yield from _tag(iter_iterative(data, probe_np, method, replace(cfg, start_seed=cfg.start_seed + k)),
                                  f"prtf run {k + 1}/{prtf_runs}", cancel)
            if run is CANCELLED:
                objects = CANCELLED
                break
            extra_runs.append(np.asarray(run))
        timings["reconstruction_s"] = time.perf_counter() - t0
        trained = None
        cfg_dict = {"method": method, **cfg.__dict__}
        if objects is CANCELLED:
            return Reconstruction(None, method, dx, cfg_dict, timings=timings, probe=probe_np, cancelled=True)
    elif method in VARIANTS or isinstance(model, PID3Net):
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
        inputs=inputs,
        mask=meta.get("mask_bad"),
        metadata={k: v for k, v in meta.items() if k not in ("mask_bad", "config") and not isinstance(v, np.ndarray)},
    )
    if evaluate_metrics:
        yield {"event": "progress", "stage": "evaluate"}
        truth_objects = truth.objects if hasattr(truth, "objects") else truth
        if measure_velocity is None:
            measure_velocity = "velocity_nm_s" in meta
        interval = meta.get("frame_interval_s", meta.get("exposure_s")) if measure_velocity else None
        result.metrics = evaluate(result.objects, data, probe_np, dx, truth_objects, interval, keep_filled=True,
                                  runs=extra_runs or None)
        filled = result.metrics.pop("filled_intensity", None)
        result.filled_intensity = filled
    if trained is not None:
        trained.to("cpu")
    free_device_memory()
    return result


DETECTOR_KEYS = ("mask", "use_file_mask", "center", "crop_size", "bin", "energy_kev", "distance_m", "detector_pixel_um",
                 "mask_hot_pixels")


def _detector_from(detector: DetectorSettings | None, overrides: dict) -> DetectorSettings:
    """``detector`` updated by (and the detector keywords removed from) ``overrides``."""
    given = {k: overrides.pop(k) for k in DETECTOR_KEYS if k in overrides}
    det = detector or DetectorSettings()
    if given.get("center") is not None:
        given["center"] = tuple(float(c) for c in given["center"])
    return det.with_(**given) if given else det


def _tag(gen, stage: str, cancel: threading.Event | None = None):
    """Re-yield a generator's events with ``stage`` added (see :func:`progress.cancellable`)."""
    return cancellable(gen, cancel, stage=stage)


def reconstruct(movie, probe=None, method: str = "PID3Net-PO", progress: Callable[[dict], None] | None = None, **kwargs) -> Reconstruction:
    """Blocking form of :func:`iter_reconstruction` (``progress`` is called with every event)."""
    return drain(iter_reconstruction(movie, probe, method, **kwargs), progress)


def train(movie, probe=None, variant: str = "PID3Net-PO", checkpoint: str | Path | None = None,
          progress: Callable[[dict], None] | None = None, model: PID3Net | str | Path | None = None,
          overwrite: bool = False, detector: DetectorSettings | None = None, distributed: bool | None = None,
          **overrides: Any) -> PID3Net:
    """Train PID3Net on a movie (optionally continuing ``model``) and save a checkpoint if asked.

    The checkpoint is checked before any work (never an input: movie, probe or ``model``; an existing
    file only with ``overwrite``) and written every ``checkpoint_every`` steps (config; 0 = every epoch)
    so a crash or kill loses at most that much; at the end it holds the best weights. Every frame is
    checked first. A NaN loss stops training with :class:`TrainingDivergedError` (the file keeps the
    last good state). ``detector`` / its fields as keywords: masking, centring, cropping as in
    :func:`iter_reconstruction`. distributed: DDP over the ranks of a ``torchrun`` job (default: when
    launched by torchrun, i.e. ``WORLD_SIZE`` > 1); rank 0 writes the checkpoint. See
    :mod:`napari_cxdi.pid3net.distributed`.
    """
    from .pid3net.distributed import launched_by_torchrun

    if distributed or (distributed is None and launched_by_torchrun()):
        from .pid3net.distributed import train_distributed

        return train_distributed(movie, probe, variant, checkpoint, progress, model, overwrite, detector=detector,
                                 **overrides)
    inputs = input_paths(movie, probe, model)
    if checkpoint is not None:
        check_output(checkpoint, overwrite=overwrite, protected=inputs)
    data, probe_np, source, meta = _movie_and_probe(movie, probe, _detector_from(detector, overrides))
    checked = drain(_validated(data, source, prepared="crop" in meta), progress)
    if checked.get("invalid_pixels") and progress is not None:
        progress({"event": "warning", "stage": "validate", "message": invalid_values_note(checked)})
    history: list[dict] = []
    optimizer_state = None
    if isinstance(model, (str, Path)):
        model, payload = load_checkpoint(model, device=overrides.get("device", "auto"))
        history = list(payload.get("history", []))
        optimizer_state = payload.get("optimizer")
    cfg = model.config.with_(**overrides) if model is not None else PID3NetConfig.variant(variant, **overrides)

    def save(tr: PID3NetTrainer) -> None:
        save_checkpoint(checkpoint, tr.model, history + tr.history, optimizer_state=tr.optimizer.state_dict(),
                        overwrite=True, protected=inputs, extra={"step": tr.step})

    trainer = PID3NetTrainer(data, probe_np, cfg, model=model, optimizer_state=optimizer_state,
                             on_checkpoint=save if checkpoint is not None else None)
    drain(trainer.run(), progress)
    if checkpoint is not None:
        save(trainer)
    return trainer.model


def batch(inputs, outdir, progress: Callable[[dict], None] | None = None, **kwargs: Any):
    """Many movies on a Dask cluster (or ``workers=0``: here, one after the other); see :mod:`napari_cxdi.batch`.

    ``cx.batch("scans/*.h5", "out/", method="PID3Net-PO", epochs=20, workers=4)`` -> :class:`BatchResult`
    (``.table``: one row per scan; ``summary.csv`` / ``summary.html`` in ``out/``).
    """
    from .batch import batch as _batch

    return _batch(inputs, outdir, progress=progress, **kwargs)
