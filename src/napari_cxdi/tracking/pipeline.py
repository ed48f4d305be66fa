"""Detection + linking + statistics of a whole movie, as a progress generator (GUI worker / CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generator

import numpy as np
import pandas as pd

from ..configs import ConfigMethods
from ..errors import ConfigError
from ..progress import drain
from .detect import DetectionConfig, as_movie, iter_detect
from .link import link_tracks, point_speeds, track_table
from .statistics import count_per_frame, diameter_distribution, lifetime_distribution, msd_analysis


@dataclass(frozen=True)
class TrackingConfig(ConfigMethods):
    """Detection settings plus linking: max_displacement_nm per frame step, memory (missed frames),
    min_length (detections per kept track), max_lag / fit_lags of the MSD (frames)."""

    detection: DetectionConfig = field(default_factory=DetectionConfig)
    max_displacement_nm: float = 150.0
    memory: int = 1
    min_length: int = 3
    max_lag: int = 10
    fit_lags: int = 4

    def validate(self) -> None:
        from ..checks import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, check_fields

        check_fields(self, {"max_displacement_nm": POSITIVE, "memory": NON_NEGATIVE, "min_length": AT_LEAST_ONE,
                            "max_lag": AT_LEAST_ONE, "fit_lags": AT_LEAST_ONE}, where="tracking config")
        self.detection.validate()
        if self.max_displacement_nm <= 0 or self.memory < 0 or self.min_length < 1:
            raise ConfigError("max displacement must be > 0, memory >= 0, minimum track length >= 1")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrackingConfig":
        kw = cls.known(data)
        if isinstance(kw.get("detection"), dict):
            kw["detection"] = DetectionConfig.from_dict(kw["detection"])
        return cls(**kw)


@dataclass
class TrackingResult:
    """features: all detections (frame, y, x px, y_nm, x_nm, diameter_nm, area_px, contrast, mass);
    tracks: linked detections with ``particle`` and ``speed_nm_s``; per_track: one row per track;
    statistics: counts per frame, diameter/lifetime distributions, MSD fits."""

    features: pd.DataFrame
    tracks: pd.DataFrame
    per_track: pd.DataFrame
    statistics: dict[str, Any]
    config: TrackingConfig
    pixel_size_nm: float
    frame_interval_s: float
    n_frames: int

    def summary(self) -> dict[str, Any]:
        """Scalar statistics (for printing, JSON and provenance)."""
        s = self.statistics
        msd = s["msd"]
        return {
            "n_frames": self.n_frames, "n_detections": len(self.features), "mean_count_per_frame": float(np.mean(s["count_per_frame"])) if self.n_frames else 0.0,
            "n_tracks": int(self.per_track.shape[0]), "mean_track_length": float(self.per_track["n_detections"].mean()) if len(self.per_track) else 0.0,
            "mean_lifetime_s": s["lifetime"]["mean_s"], "diameter_mean_nm": s["diameter"]["mean_nm"], "diameter_std_nm": s["diameter"]["std_nm"],
            "diffusion_nm2_s": msd["diffusion_nm2_s"], "diffusion_err_nm2_s": msd["diffusion_err"],
            "drift_vy_nm_s": float(msd["drift_nm_s"][0]), "drift_vx_nm_s": float(msd["drift_nm_s"][1]),
            "drift_vy_err_nm_s": float(msd["drift_err"][0]), "drift_vx_err_nm_s": float(msd["drift_err"][1]),
        }


def track_statistics(tracks: pd.DataFrame, features: pd.DataFrame, n_frames: int, pixel_size_nm: float,
                     frame_interval_s: float, cfg: TrackingConfig) -> dict[str, Any]:
    return {
        "count_per_frame": count_per_frame(features, n_frames),
        "diameter": diameter_distribution(tracks),
        "lifetime": lifetime_distribution(tracks, frame_interval_s),
        "msd": msd_analysis(tracks, pixel_size_nm, frame_interval_s, cfg.max_lag, cfg.fit_lags),
    }


def iter_track(movie, config: TrackingConfig | None = None, pixel_size_nm: float = 1.0, frame_interval_s: float = 1.0,
               mask: np.ndarray | None = None) -> Generator[dict, None, TrackingResult]:
    """Detect in each frame of ``movie`` [T, H, W] (phase in rad, or amplitude), link, compute statistics.

    Yields ``{"stage": "detect"|"link"|"statistics", ...}`` events; returns a :class:`TrackingResult`.
    Close the generator between events to stop.
    """
    cfg = config or TrackingConfig()
    cfg.validate()
    if pixel_size_nm <= 0 or frame_interval_s <= 0:
        raise ConfigError("pixel size and frame interval must be positive")
    frames = as_movie(movie)
    features = yield from iter_detect(frames, cfg.detection, pixel_size_nm, mask)
    yield {"stage": "link", "event": "progress", "count": len(features)}
    tracks = link_tracks(features, cfg.max_displacement_nm, pixel_size_nm, cfg.memory, cfg.min_length)
    tracks["speed_nm_s"] = point_speeds(tracks, frame_interval_s, pixel_size_nm)
    yield {"stage": "statistics", "event": "progress", "n_tracks": int(tracks["particle"].nunique()) if len(tracks) else 0}
    per = track_table(tracks, frame_interval_s, pixel_size_nm)
    if len(tracks):
        life = per.set_index("particle")["lifetime_s"]
        tracks["lifetime_s"] = life.loc[tracks["particle"]].to_numpy(float)
    else:
        tracks["lifetime_s"] = pd.Series(dtype=float)
    stats = track_statistics(tracks, features, len(frames), pixel_size_nm, frame_interval_s, cfg)
    return TrackingResult(features, tracks, per, stats, cfg, pixel_size_nm, frame_interval_s, len(frames))


def track(movie, config: TrackingConfig | None = None, pixel_size_nm: float = 1.0, frame_interval_s: float = 1.0,
          mask: np.ndarray | None = None, progress=None) -> TrackingResult:
    """Blocking form of :func:`iter_track` (``progress(event)`` is called with every event)."""
    return drain(iter_track(movie, config, pixel_size_nm, frame_interval_s, mask), progress)
