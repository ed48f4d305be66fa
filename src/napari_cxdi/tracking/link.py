"""Linking detections across frames into tracks (trackpy's linker) and track filtering."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataValidationError


def link_tracks(features: pd.DataFrame, max_displacement_nm: float, pixel_size_nm: float = 1.0, memory: int = 1,
                min_length: int = 1) -> pd.DataFrame:
    """Link a feature table (``frame, y, x`` in pixels, ...) into tracks; adds an integer ``particle`` column.

    max_displacement_nm: largest step between linked positions; memory: frames a particle may be missed
    and still keep its id; min_length: tracks with fewer detections are dropped. Ids are renumbered 0..N-1.
    """
    if max_displacement_nm <= 0 or pixel_size_nm <= 0:
        raise ConfigError("maximum displacement and pixel size must be positive")
    if memory < 0 or min_length < 1:
        raise ConfigError("memory must be >= 0 and the minimum track length >= 1")
    missing = {"frame", "y", "x"} - set(features.columns)
    if missing:
        raise DataValidationError(f"the feature table lacks the columns {sorted(missing)}")
    if features.empty:
        out = features.copy()
        out["particle"] = pd.Series(dtype=int)
        return out
    import trackpy as tp

    tp.quiet()
    logging.getLogger("trackpy").setLevel(logging.WARNING)
    import warnings

    with warnings.catch_warnings():  # trackpy's pandas deprecation warnings are not the user's business
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        linked = tp.link(features.reset_index(drop=True), search_range=max_displacement_nm / pixel_size_nm,
                         memory=memory, pos_columns=["y", "x"], t_column="frame", link_strategy="auto")
    return filter_tracks(linked, min_length)


def filter_tracks(tracks: pd.DataFrame, min_length: int = 1) -> pd.DataFrame:
    """Keep tracks with at least ``min_length`` detections; renumber ids 0..N-1 in order of appearance."""
    if tracks.empty:
        return tracks.copy()
    counts = tracks.groupby("particle")["frame"].transform("size")
    kept = tracks[counts >= min_length].sort_values(["particle", "frame"])
    order = kept.groupby("particle")["frame"].min().sort_values(kind="stable").index
    ids = pd.Series(np.arange(len(order)), index=order)
    kept = kept.assign(particle=ids.loc[kept["particle"]].to_numpy().astype(int))
    return kept.sort_values(["frame", "particle"]).reset_index(drop=True)


def track_table(tracks: pd.DataFrame, frame_interval_s: float = 1.0, pixel_size_nm: float = 1.0) -> pd.DataFrame:
    """One row per track: first/last frame, detections, lifetime_s, mean speed_nm_s, median diameter and contrast."""
    cols = ["particle", "first_frame", "last_frame", "n_detections", "lifetime_s", "speed_nm_s", "diameter_nm", "contrast"]
    if tracks.empty:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in cols})
    t = tracks.sort_values(["particle", "frame"])
    g = t.groupby("particle")
    step = np.hypot(g["y"].diff(), g["x"].diff()) * pixel_size_nm / (g["frame"].diff() * frame_interval_s)
    table = pd.DataFrame({
        "first_frame": g["frame"].min(), "last_frame": g["frame"].max(), "n_detections": g.size(),
        "speed_nm_s": step.groupby(t["particle"]).mean(),
        "diameter_nm": g["diameter_nm"].median() if "diameter_nm" in t else np.nan,
        "contrast": g["contrast"].median() if "contrast" in t else np.nan,
    })
    table["lifetime_s"] = (table["last_frame"] - table["first_frame"] + 1) * frame_interval_s
    return table.reset_index()[cols]


def point_speeds(tracks: pd.DataFrame, frame_interval_s: float = 1.0, pixel_size_nm: float = 1.0) -> np.ndarray:
    """Instantaneous speed (nm/s) at each row of ``tracks`` (from the previous detection; first = next step)."""
    if tracks.empty:
        return np.zeros(0)
    g = tracks.groupby("particle")
    back = np.hypot(g["y"].diff(), g["x"].diff()) * pixel_size_nm / (g["frame"].diff() * frame_interval_s)
    fwd = np.hypot(g["y"].diff(-1), g["x"].diff(-1)) * pixel_size_nm / (-g["frame"].diff(-1) * frame_interval_s)
    return back.fillna(fwd).fillna(0.0).to_numpy(float)
