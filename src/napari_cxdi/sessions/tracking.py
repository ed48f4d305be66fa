"""Tracking session (Qt-free): settings, the last good result, the velocity estimate, and the advice
given when a run finds nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
from psygnal import Signal

from ..tracking import DetectionConfig, TrackingConfig
from ._base import RunSession


def explain_empty(frame: np.ndarray | None, config: TrackingConfig, pixel_size_nm: float | None = None) -> str:
    """Which setting to move when no particle was detected: the threshold against the frame's contrast,
    the polarity, and the diameter window."""
    d = config.detection
    parts = [f"0 particles detected with threshold {d.threshold:g}"]
    if frame is not None and np.size(frame):
        a = np.asarray(frame, float)
        a = np.angle(a) if np.iscomplexobj(frame) else a
        a = a[np.isfinite(a)]
        if a.size:
            med = float(np.median(a))
            dark, bright = med - float(np.percentile(a, 0.5)), float(np.percentile(a, 99.5)) - med
            contrast = dark if d.polarity == "dark" else bright
            other = bright if d.polarity == "dark" else dark
            if contrast < d.threshold:
                parts.append(f"the frame's {d.polarity} contrast is only {contrast:.3g}: lower 'threshold' to about "
                             f"{max(contrast / 2, 1e-3):.3g}")
            if other > 2 * max(contrast, 1e-12):
                flip = "bright" if d.polarity == "dark" else "dark"
                parts.append(f"the frame has more {flip} contrast ({other:.3g}): try 'particles are' = {flip}")
    parts.append(f"check the diameter window {d.min_diameter_nm:.0f}–{d.max_diameter_nm:.0f} nm"
                 + (f" ({d.min_diameter_nm / pixel_size_nm:.1f}–{d.max_diameter_nm / pixel_size_nm:.1f} px)" if pixel_size_nm else ""))
    return "; ".join(parts)


def summary_text(summary: dict[str, Any]) -> str:
    """The status line of a finished run; no NaN when there are no tracks."""
    s = summary
    text = f"{s['n_detections']} detections, {s['n_tracks']} tracks"
    if s["n_tracks"]:
        text += f" (mean length {s['mean_track_length']:.1f})"
    if np.isfinite(s.get("diameter_mean_nm", np.nan)):
        text += f"; diameter {s['diameter_mean_nm']:.0f} ± {s['diameter_std_nm']:.0f} nm"
    if np.isfinite(s.get("diffusion_nm2_s", np.nan)):
        text += f"; D = {s['diffusion_nm2_s']:.3g} ± {s['diffusion_err_nm2_s']:.2g} nm²/s"
    if np.isfinite(s.get("drift_vy_nm_s", np.nan)) and np.isfinite(s.get("drift_vx_nm_s", np.nan)):
        text += (f"; drift ({s['drift_vy_nm_s']:.0f}, {s['drift_vx_nm_s']:.0f}) ± "
                 f"({s['drift_vy_err_nm_s']:.0f}, {s['drift_vx_err_nm_s']:.0f}) nm/s")
    return text


class TrackingSession(RunSession):
    """Signals: ``result_changed(object)``, ``velocity_changed(dict)``, ``hint(str)``."""

    result_changed = Signal(object)
    velocity_changed = Signal(dict)
    hint = Signal(str)

    def __init__(self, config: TrackingConfig | None = None):
        super().__init__("tracking")
        self.config = config or TrackingConfig(DetectionConfig())
        self.result = None
        self.velocity: dict | None = None
        self.source: str | None = None

    def handle(self, event: dict) -> None:
        if event.get("stage") == "detect":
            self.set_progress(event["done"], event["total"])
            self.set_status(f"frame {event['done']}/{event['total']}: {event['count']} particle(s)")
        elif "stage" in event:
            self.set_status(f"{event['stage']} …")

    def accept(self, result, frame: np.ndarray | None = None, pixel_size_nm: float | None = None) -> bool:
        if result is None:
            self.cancelled()
            return False
        self.result = result
        s = result.summary()
        text = summary_text(s)
        if s["n_detections"] == 0:
            advice = explain_empty(frame, result.config, pixel_size_nm)
            text += " — " + advice
            self.hint.emit(advice)
        elif s["n_tracks"] == 0:
            advice = (f"no track of at least {result.config.min_length} detections: raise 'max step per frame' "
                      f"({result.config.max_displacement_nm:.0f} nm) or 'memory', or lower 'min track length'")
            text += " — " + advice
            self.hint.emit(advice)
        self.set_progress(1, 1)
        self.end(text)
        self.result_changed.emit(result)
        return True

    def accept_velocity(self, v: dict | None) -> None:
        if v is None:
            self.cancelled()
            return
        self.velocity = v
        vy, vx = v["mean_nm_s"]
        sy, sx = v["std_nm_s"]
        self.end(f"image velocity (vy, vx) = ({vy:.0f} ± {sy:.0f}, {vx:.0f} ± {sx:.0f}) nm/s, "
                 f"speed {v['speed_nm_s']:.0f} nm/s over {len(v['per_pair_nm_s'])} frame pairs")
        self.velocity_changed.emit(v)
