"""Track statistics: diameters of single particles, lifetimes, MSD with diffusion and drift, counts, velocity.

MSD convention (2D): per lag tau the displacement d = r(t+tau) - r(t) pooled over tracks;
mean <d> = v tau (drift), per-axis variance = 2 D tau + 2 sigma_loc^2. D comes from a weighted linear fit of
the summed variance 4 D tau + c over the first lags (c absorbs localisation error), v from a fit of <d>
through the origin. Uncertainties are bootstrap standard errors over tracks (tracks are independent,
lags within a track are not).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataValidationError


def diameter_distribution(tracks: pd.DataFrame, bins: int | np.ndarray = 20, max_ratio: float = 1.6) -> dict[str, Any]:
    """Median diameter (nm) per track of single particles; tracks larger than ``max_ratio`` x the overall
    median (aggregates, touching pairs) are excluded. Returns values, histogram counts/edges, mean, std."""
    if tracks.empty or "diameter_nm" not in tracks:
        return {"values": np.zeros(0), "counts": np.zeros(0, int), "edges": np.zeros(0), "mean_nm": np.nan, "std_nm": np.nan}
    key = "particle" if "particle" in tracks else None
    per = tracks.groupby(key)["diameter_nm"].median().to_numpy() if key else tracks["diameter_nm"].to_numpy()
    single = per[per <= max_ratio * np.median(per)]
    counts, edges = np.histogram(single, bins=bins)
    return {"values": single, "counts": counts, "edges": edges, "mean_nm": float(np.mean(single)),
            "std_nm": float(np.std(single))}


def lifetime_distribution(tracks: pd.DataFrame, frame_interval_s: float = 1.0, bins: int | np.ndarray = 20) -> dict[str, Any]:
    """Track lifetimes (s) = (last - first + 1) frames x interval; histogram, mean and median."""
    if tracks.empty:
        return {"values": np.zeros(0), "counts": np.zeros(0, int), "edges": np.zeros(0), "mean_s": np.nan, "median_s": np.nan}
    g = tracks.groupby("particle")["frame"]
    life = ((g.max() - g.min() + 1) * frame_interval_s).to_numpy(float)
    counts, edges = np.histogram(life, bins=bins)
    return {"values": life, "counts": counts, "edges": edges, "mean_s": float(life.mean()), "median_s": float(np.median(life))}


def count_per_frame(features: pd.DataFrame, n_frames: int | None = None) -> np.ndarray:
    """Number of detected particles in each frame [T]."""
    n = n_frames if n_frames is not None else (int(features["frame"].max()) + 1 if len(features) else 0)
    return np.bincount(features["frame"].to_numpy(int), minlength=n)[:n] if len(features) else np.zeros(n, int)


def _lag_sums(tracks: pd.DataFrame, max_lag: int, pixel_size_nm: float) -> np.ndarray:
    """Per-track, per-lag sums [n_tracks, max_lag, 4]: pairs, sum dy, sum dx, sum (dy^2 + dx^2) (nm)."""
    ids = tracks["particle"].to_numpy()
    uniq, inv = np.unique(ids, return_inverse=True)
    out = np.zeros((len(uniq), max_lag, 4))
    t = tracks.sort_values(["particle", "frame"])
    for pid, grp in t.groupby("particle"):
        i = np.searchsorted(uniq, pid)
        f = grp["frame"].to_numpy(int)
        pos = np.full((f.max() - f.min() + 1, 2), np.nan)
        pos[f - f.min()] = grp[["y", "x"]].to_numpy(float) * pixel_size_nm
        for lag in range(1, min(max_lag, len(pos) - 1) + 1):
            d = pos[lag:] - pos[:-lag]
            d = d[~np.isnan(d).any(axis=1)]
            if len(d):
                out[i, lag - 1] = (len(d), d[:, 0].sum(), d[:, 1].sum(), (d ** 2).sum())
    return out


def _estimate(sums: np.ndarray, dt: float, fit_lags: int) -> tuple[float, float, float, np.ndarray]:
    tot = sums.sum(axis=0)
    n = tot[:, 0]
    ok = n[:fit_lags] > 1
    lags = np.arange(1, len(n) + 1) * dt
    with np.errstate(invalid="ignore", divide="ignore"):
        my, mx = tot[:, 1] / n, tot[:, 2] / n
        var = tot[:, 3] / n - my ** 2 - mx ** 2
    tau, w = lags[:fit_lags][ok], n[:fit_lags][ok]
    if len(tau) == 0:
        return np.nan, np.nan, np.nan, var
    vy = np.sum(w * tau * my[:fit_lags][ok]) / np.sum(w * tau ** 2)
    vx = np.sum(w * tau * mx[:fit_lags][ok]) / np.sum(w * tau ** 2)
    if len(tau) >= 2:
        slope = np.polyfit(tau, var[:fit_lags][ok], 1, w=np.sqrt(w))[0]
    else:
        slope = var[0] / tau[0]  # one lag: no localisation correction possible
    return slope / 4.0, vy, vx, var


def msd_analysis(tracks: pd.DataFrame, pixel_size_nm: float, frame_interval_s: float, max_lag: int = 10,
                 fit_lags: int = 4, n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """MSD curve and fits of linked ``tracks`` (``particle, frame, y, x`` in pixels).

    Returns lag_s [L], msd_nm2 [L] (drift included), var_nm2 [L] (drift removed), n_pairs [L],
    diffusion_nm2_s, diffusion_err, drift_nm_s (vy, vx), drift_err (vy, vx), speed_nm_s.
    """
    if pixel_size_nm <= 0 or frame_interval_s <= 0:
        raise ConfigError("pixel size and frame interval must be positive")
    if max_lag < 1 or fit_lags < 1:
        raise ConfigError("max_lag and fit_lags must be >= 1")
    nan = {"lag_s": np.zeros(0), "msd_nm2": np.zeros(0), "var_nm2": np.zeros(0), "n_pairs": np.zeros(0),
           "diffusion_nm2_s": np.nan, "diffusion_err": np.nan, "drift_nm_s": np.array([np.nan, np.nan]),
           "drift_err": np.array([np.nan, np.nan]), "speed_nm_s": np.nan, "n_tracks": 0}
    if tracks.empty:
        return nan
    if "particle" not in tracks:
        raise DataValidationError("tracks need a 'particle' column (link them first)")
    sums = _lag_sums(tracks, max_lag, pixel_size_nm)
    n = sums.sum(axis=0)[:, 0]
    if n[0] < 2:
        return {**nan, "n_tracks": int(tracks["particle"].nunique())}
    d, vy, vx, var = _estimate(sums, frame_interval_s, fit_lags)
    tot = sums.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        msd = tot[:, 3] / tot[:, 0]
    rng = np.random.default_rng(seed)
    boot = []
    if len(sums) > 1:
        for _ in range(n_boot):
            b = _estimate(sums[rng.integers(0, len(sums), len(sums))], frame_interval_s, fit_lags)
            boot.append(b[:3])
    boot = np.asarray(boot) if boot else np.full((1, 3), np.nan)
    valid = n > 0
    return {
        "lag_s": (np.arange(1, max_lag + 1) * frame_interval_s)[valid], "msd_nm2": msd[valid], "var_nm2": var[valid],
        "n_pairs": n[valid].astype(int), "diffusion_nm2_s": float(d), "diffusion_err": float(np.nanstd(boot[:, 0])),
        "drift_nm_s": np.array([vy, vx]), "drift_err": np.nanstd(boot[:, 1:], axis=0),
        "speed_nm_s": float(np.hypot(vy, vx)), "n_tracks": int(len(sums)),
    }


def image_velocity(movie, pixel_size_nm: float, frame_interval_s: float, lag: int = 1,
                   mask: np.ndarray | None = None) -> dict[str, Any]:
    """Whole-image drift velocity (nm/s) by sub-pixel cross-correlation of frame pairs
    (:func:`napari_cxdi.metrics.velocity.estimate_velocity`), on the bounding box of ``mask`` if given.
    Adds the median and the per-pair speed to its result."""
    from ..metrics.velocity import estimate_velocity
    from .detect import as_movie

    frames = as_movie(movie)
    if mask is not None:
        m = np.asarray(mask, bool)
        if m.shape != frames.shape[1:] or not m.any():
            raise DataValidationError("the velocity mask must match the frames and select some pixels")
        ys, xs = np.nonzero(m)
        frames = frames[:, ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    out = estimate_velocity(frames, pixel_size_nm, frame_interval_s, lag=lag)
    out["median_nm_s"] = np.median(out["per_pair_nm_s"], axis=0)
    out["per_pair_speed_nm_s"] = np.hypot(out["per_pair_nm_s"][:, 0], out["per_pair_nm_s"][:, 1])
    return out
