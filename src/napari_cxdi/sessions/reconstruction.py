"""Reconstruction session (Qt-free): settings, CPU-aware presets, run-time estimate, progress events,
and the last *good* result and model (a cancelled or failed run never replaces them).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from psygnal import Signal

from ..errors import ConfigError
from ..pid3net.config import VARIANTS, PID3NetConfig
from ..recon import METHODS as ITERATIVE_METHODS
from ..recon import IterativeConfig
from ._base import RunSession

ALL_METHODS = tuple(VARIANTS) + tuple(ITERATIVE_METHODS)
MODEL_SOURCES = ("new", "last", "file")
PROBE_SOURCES = ("layer", "file")

PRESET_QUICK = "quick: mf-PIE baseline"
PRESET_SMALL = "CPU: small PID3Net-PO"
PRESET_FULL = "GPU: full PID3Net-PO"
PRESET_CUSTOM = "custom"
PRESETS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    # name: (method, PID3Net overrides, iterative overrides)
    PRESET_QUICK: ("mf-PIE", {}, {"max_iter": 300, "batch_size": 8}),
    PRESET_SMALL: ("PID3Net-PO", {"width": 4, "refine_steps": 2, "refine_width": 8, "frames": 5, "epochs": 3,
                                  "batch_size": 4, "lr": 1e-2, "preview_every": 2}, {}),  # lr: docs/fidelity.md
    PRESET_FULL: ("PID3Net-PO", {"width": 8, "refine_steps": 5, "refine_width": 32, "frames": 5, "epochs": 20,
                                 "batch_size": 4, "preview_every": 10}, {}),
}
SLOW_WARNING_S = 600.0
"""A setting whose estimated run time exceeds this (10 minutes) is flagged before it starts."""


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover
        return False


def default_preset(has_gpu: bool | None = None) -> str:
    """Without a GPU the mf-PIE baseline (seconds on the sample, a preview after every batch; as good as a
    short PID3Net on CPU, see benchmarks/results/reconstruction_quick.json), else the full PID3Net."""
    has_gpu = cuda_available() if has_gpu is None else has_gpu
    return PRESET_FULL if has_gpu else PRESET_QUICK


@dataclass(frozen=True)
class ReconstructionSettings:
    """Everything the reconstruction dock's form holds; one protocol: frozen, validate, with_, to/from dict."""

    method: str = "PID3Net-PO"
    preset: str = PRESET_CUSTOM
    pid3net: PID3NetConfig = field(default_factory=PID3NetConfig)
    iterative: IterativeConfig = field(default_factory=IterativeConfig)
    probe_source: str = "layer"
    probe_path: str = ""
    model_source: str = "new"
    model_path: str = ""
    finetune: bool = False
    inference_stride: int | None = None

    @classmethod
    def from_preset(cls, name: str, **changes: Any) -> "ReconstructionSettings":
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        method, net, it = PRESETS[name]
        base = cls()
        device = changes.pop("device", None)
        pid = base.pid3net.with_(**net)
        itc = replace(base.iterative, **it)
        if device:
            pid, itc = pid.with_(device=device), replace(itc, device=device)
        return cls(method=method, preset=name, pid3net=pid, iterative=itc).with_(**changes)

    @property
    def is_pid3net(self) -> bool:
        return self.method in VARIANTS

    def with_(self, **changes: Any) -> "ReconstructionSettings":
        return replace(self, **changes)

    def validate(self, n_frames: int | None = None, frame_shape: tuple[int, int] | None = None) -> None:
        if self.method not in ALL_METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(ALL_METHODS)}")
        if self.probe_source not in PROBE_SOURCES:
            raise ConfigError(f"probe source must be one of {PROBE_SOURCES}")
        if self.probe_source == "file" and not self.probe_path.strip():
            raise ConfigError("give a probe file (or take the probe of the movie layer)")
        if self.model_source not in MODEL_SOURCES:
            raise ConfigError(f"model source must be one of {MODEL_SOURCES}")
        if self.is_pid3net:
            if self.model_source == "file" and not self.model_path.strip():
                raise ConfigError("give a PID3Net checkpoint file (or train a new model)")
            if self.model_source == "new":
                self.pid3net.validate(frame_shape, n_frames)
        else:
            self.iterative.validate()

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["pid3net"] = self.pid3net.to_dict()
        d["iterative"] = asdict(self.iterative)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ReconstructionSettings":
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in known}
        if isinstance(kw.get("pid3net"), dict):
            kw["pid3net"] = PID3NetConfig.from_dict(kw["pid3net"])
        if isinstance(kw.get("iterative"), dict):
            it_known = {f.name for f in fields(IterativeConfig)}
            kw["iterative"] = IterativeConfig(**{k: v for k, v in kw["iterative"].items() if k in it_known})
        return cls(**kw)

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`napari_cxdi.api.iter_reconstruction` (without movie, probe and model)."""
        if not self.is_pid3net:
            return {"method": self.method, "config": self.iterative}
        kw: dict[str, Any] = {"method": self.method, "train": self.model_source == "new" or self.finetune,
                              "inference_stride": self.inference_stride}
        if self.model_source == "new":
            kw["config"] = PID3NetConfig.variant(self.method, **{k: v for k, v in self.pid3net.to_dict().items()
                                                                 if k != "loss" and not (k == "refine_steps" and self.method == "PID3Net-NR")})
        else:  # a reused model keeps its architecture; the training settings still apply when fine-tuning
            c = self.pid3net
            kw.update(epochs=c.epochs, device=c.device, seed=c.seed, batch_size=c.batch_size, lr=c.lr,
                      tv_weight=c.tv_weight, preview_every=c.preview_every)
        return kw


# -- run-time estimate ----------------------------------------------------------------------------------
# Seconds per step measured on one loaded CPU core (2-core machine, 128 x 128 frames, T = 5, batch 4) and
# fitted as base + a F^2 + b K W_r^2; a GPU is taken as ~50x faster. Rough by design: it tells minutes
# from hours before a run starts; during a run the trainer's own ETA replaces it.
_STEP_BASE_S, _STEP_WIDTH_S, _STEP_REFINE_S = 0.3, 0.078, 0.0121
_ITER_FRAME_S = 2.5e-3  # one iteration of mf-PIE / mixed-state on one 128 x 128 frame, CPU
_TYPICAL_ITERS = 150  # iterative methods stop early on R_f; a typical count on the samples
GPU_SPEEDUP = 50.0


def estimate_seconds(settings: ReconstructionSettings, n_frames: int, frame_size: int, device: str = "auto") -> float:
    """Rough wall time (s) of a run with these settings on an ``n_frames`` x ``frame_size``^2 movie."""
    on_gpu = device in ("cuda", "mps") or (device == "auto" and cuda_available())
    speed = GPU_SPEEDUP if on_gpu else 1.0
    if not settings.is_pid3net:
        iters = min(settings.iterative.max_iter, _TYPICAL_ITERS)
        return n_frames * iters * _ITER_FRAME_S * (frame_size / 128) ** 2 / speed + 1.0
    c = settings.pid3net
    m = c.working_size(frame_size)
    per_step = (c.batch_size * c.frames / 20) * (m / 128) ** 2 * (
        _STEP_BASE_S + _STEP_WIDTH_S * c.width**2 + _STEP_REFINE_S * c.refine_steps * c.refine_width**2)
    n_windows = max(n_frames - c.frames + 1, 1)
    steps = c.epochs * math.ceil(n_windows / c.batch_size) if settings.model_source == "new" or settings.finetune else 0
    previews = steps // c.preview_every if c.preview_every else 0
    inference = math.ceil(n_frames / c.frames) / c.batch_size * per_step * 0.35
    return (steps * per_step + previews * per_step * 0.1 / c.batch_size + inference) / speed + 2.0


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def eta_text(settings: ReconstructionSettings, n_frames: int, frame_size: int, device: str = "auto") -> tuple[str, bool]:
    """(text, slow): the estimate shown before a run, and whether it exceeds :data:`SLOW_WARNING_S`."""
    s = estimate_seconds(settings, n_frames, frame_size, device)
    slow = s > SLOW_WARNING_S
    text = f"estimated time ≈ {format_duration(s)} on {'GPU' if device in ('cuda', 'mps') or (device == 'auto' and cuda_available()) else 'CPU'}"
    if slow:
        text += f" — more than {SLOW_WARNING_S / 60:.0f} min: choose '{PRESET_QUICK}' or '{PRESET_SMALL}', fewer epochs or a GPU"
    return text, slow


class ReconstructionSession(RunSession):
    """The reconstruction dock's model.

    Signals: ``preview_ready(dict)`` (frame, amplitude, phase), ``losses_changed()``, ``result_changed(object)``,
    ``warning(str)``; plus the run-state signals of :class:`RunSession`.
    """

    preview_ready = Signal(dict)
    losses_changed = Signal()
    result_changed = Signal(object)
    warning = Signal(str)

    def __init__(self, settings: ReconstructionSettings | None = None):
        super().__init__("reconstruction")
        self.settings = settings or ReconstructionSettings.from_preset(default_preset())
        self.result = None  # last completed Reconstruction
        self.model = None  # last completed (trained) PID3Net
        self.history: list[dict] = []
        self.cancelled_model = None  # the best weights of a cancelled run: never reused automatically
        self.losses: list[tuple[int, float]] = []
        self.heldout: list[tuple[int, float]] = []  # (step, held-out Poisson NLL) per epoch (docs/fidelity.md)
        self.t_start: float | None = None
        self.t_first_preview: float | None = None
        self.previews = 0

    def begin(self, job: str = "") -> Any:
        event = super().begin(job or f"starting {self.settings.method}")
        self.losses = []
        self.heldout = []
        self.t_start, self.t_first_preview, self.previews = time.perf_counter(), None, 0
        self.losses_changed.emit()
        return event

    # -- events of iter_reconstruction --------------------------------------------------------------
    def handle(self, event: dict) -> None:
        stage, kind = event.get("stage"), event.get("event")
        if kind == "warning":
            self.warning.emit(event["message"])
        elif kind == "preview":
            self.previews += 1
            if self.t_first_preview is None and self.t_start is not None:
                self.t_first_preview = time.perf_counter() - self.t_start
            self.preview_ready.emit(event)
        elif stage == "train" and kind == "start":
            self.set_progress(0, event["total_steps"])
            self.set_status(f"training {event['variant']} on {event['device']} ({event['n_parameters']:,} parameters)")
        elif stage == "train" and kind == "step":
            self.set_progress(event["step"], event["total_steps"])
            self.losses.append((event["step"], event["loss"]))
            if self.state.value == "running":
                self.set_status(f"epoch {event['epoch'] + 1}, step {event['step']}/{event['total_steps']}: "
                                f"loss {event['loss']:.4g}, R_f {event['rf']:.3f}, ETA {format_duration(event['eta_s'])}")
            if event["step"] % 5 == 0 or event["step"] == event["total_steps"] or event["step"] <= 2:
                self.losses_changed.emit()
        elif stage == "train" and kind == "epoch" and "heldout_nll" in event:
            step = self.losses[-1][0] if self.losses else 0
            self.heldout.append((step, event["heldout_nll"]))  # drawn with the next loss redraw (draws are slow)
        elif stage == "inference" and kind == "progress":
            self.set_progress(event["done"], event["total"])
            self.set_status(f"inference: {event['frames_done']} frames ({event['frames_per_s']:.1f} frames/s)")
        elif stage == "iterative" and "total_frames" in event:
            self.set_progress(event["frames_done"], event["total_frames"])
            if event.get("event") == "progress":  # the baseline's R_f curve takes the loss plot's place
                self.losses.append((len(self.losses) + 1, event["rf"]))
                if len(self.losses) % 5 == 1:
                    self.losses_changed.emit()
            it = event.get("iteration", event.get("iterations"))
            self.set_status(f"{event['method']}: frame {event['frames_done']}/{event['total_frames']}, "
                            f"iteration {it}, R_f {event['rf']:.3f}")
        elif stage == "validate" and kind == "progress":
            self.set_progress(event["done"], event["total"])
            self.set_status(f"checking the movie: frame {event['done']}/{event['total']}")
        elif stage == "evaluate":
            self.set_status("computing metrics …")

    # -- outcome -----------------------------------------------------------------------------------------
    def accept(self, result) -> bool:
        """Keep a finished run's result and model; a cancelled one replaces nothing (returns False)."""
        if result is None or getattr(result, "cancelled", False) or getattr(result, "objects", None) is None:
            if result is not None and getattr(result, "model", None) is not None:
                self.cancelled_model = result.model
            self.cancelled()
            return False
        self.result = result
        if result.model is not None:
            self.model, self.history = result.model, list(result.history)
        self.set_progress(1, 1)
        self.end("done")
        self.result_changed.emit(result)
        return True

    def summary(self, pixel_size_nm: float | None) -> str:
        """One line of metrics and timings of the last result."""
        r = self.result
        if r is None:
            return ""
        m, t = r.metrics, r.timings
        parts = []
        if "rf" in m:
            parts.append(f"R_f {m['rf']:.3f}")
        unit = "nm" if any(k.endswith("_nm") for k in m if k.startswith(("fourier_fit", "prtf", "frc"))) else "px"
        digits = 0 if unit == "nm" else 1
        if m.get(f"prtf_resolution_{unit}") is not None:  # only with several independent runs
            parts.append(f"PRTF resolution {m[f'prtf_resolution_{unit}']:.{digits}f} {unit}")
        elif m.get(f"fourier_fit_resolution_{unit}") is not None:
            parts.append(f"Fourier fit to {m[f'fourier_fit_resolution_{unit}']:.{digits}f} {unit}")
        if m.get(f"frc_resolution_{unit}") is not None:
            parts.append(f"FRC {m[f'frc_resolution_{unit}']:.{digits}f} {unit}")
        if "phase_ssim" in m:
            parts.append(f"phase SSIM {m['phase_ssim']:.3f}")
        if "training_s" in t:
            parts.append(f"training {t['training_s']:.1f} s")
        if "inference_frames_per_s" in t:
            parts.append(f"inference {t['inference_frames_per_s']:.1f} frames/s")
        if "reconstruction_s" in t:
            parts.append(f"{t['reconstruction_s']:.1f} s")
        return f"{r.method}: " + " · ".join(parts)
