"""Tracking against the simulator's ground truth: detection P/R/F1, diameter error, identity switches,
velocity and diffusion-coefficient error."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from ..errors import ConfigError


def _inside(df: pd.DataFrame, roi: np.ndarray | None, shape: tuple[int, int] | None) -> pd.DataFrame:
    if df.empty:
        return df
    keep = np.ones(len(df), bool)
    if shape is not None:
        keep &= df["y"].between(0, shape[0] - 1).to_numpy() & df["x"].between(0, shape[1] - 1).to_numpy()
    if roi is not None:
        m = np.asarray(roi, bool)
        yi = df["y"].round().astype(int).clip(0, m.shape[0] - 1).to_numpy()
        xi = df["x"].round().astype(int).clip(0, m.shape[1] - 1).to_numpy()
        keep &= m[yi, xi]
    return df[keep]


def match_frames(detected: pd.DataFrame, truth: pd.DataFrame, radius_nm: float, pixel_size_nm: float) -> pd.DataFrame:
    """Optimal one-to-one matches per frame (Hungarian) within ``radius_nm``: index pairs and distance (nm)."""
    rows = []
    for t, tru in truth.groupby("frame"):
        det = detected[detected["frame"] == t]
        if det.empty:
            continue
        dist = cdist(tru[["y", "x"]].to_numpy(float), det[["y", "x"]].to_numpy(float)) * pixel_size_nm
        r, c = linear_sum_assignment(np.where(dist <= radius_nm, dist, 1e12))
        for i, j in zip(r, c):
            if dist[i, j] <= radius_nm:
                rows.append((t, tru.index[i], det.index[j], dist[i, j]))
    return pd.DataFrame(rows, columns=["frame", "truth_index", "detected_index", "distance_nm"])


def evaluate_tracking(tracks: pd.DataFrame, truth: pd.DataFrame, pixel_size_nm: float, radius_nm: float | None = None,
                      roi: np.ndarray | None = None, frame_shape: tuple[int, int] | None = None,
                      true_drift_nm_s=None, true_diffusion_nm2_s: float | None = None,
                      msd: dict | None = None) -> dict[str, Any]:
    """Scores of ``tracks`` (detections with ``frame, y, x, diameter_nm`` and optionally ``particle``) against
    ``truth`` (simulator trajectories: ``frame, particle, y, x, diameter_nm``; pixels).

    Only true particles whose centres lie inside ``roi`` (and ``frame_shape``) count, and only detections there.
    ``radius_nm``: matching radius (default half the mean true diameter). Returns precision, recall, f1,
    mean localisation error, diameter bias/abs error (nm), identity switches (MOT: a true particle's
    matched track id changes), and with ``msd`` + true values the drift-velocity and D errors.
    """
    if pixel_size_nm <= 0:
        raise ConfigError("pixel size must be positive")
    truth = _inside(truth, roi, frame_shape)
    det = _inside(tracks, roi, frame_shape)
    if radius_nm is None:
        radius_nm = 0.5 * float(truth["diameter_nm"].mean()) if len(truth) else 150.0
    m = match_frames(det, truth, radius_nm, pixel_size_nm) if len(truth) and len(det) else pd.DataFrame(
        columns=["frame", "truth_index", "detected_index", "distance_nm"])
    tp, n_det, n_true = len(m), len(det), len(truth)
    precision = tp / n_det if n_det else np.nan
    recall = tp / n_true if n_true else np.nan
    f1 = 2 * tp / (n_det + n_true) if n_det + n_true else np.nan
    out: dict[str, Any] = {"n_true": n_true, "n_detected": n_det, "true_positives": tp, "precision": precision,
                           "recall": recall, "f1": f1, "match_radius_nm": radius_nm,
                           "localisation_error_nm": float(m["distance_nm"].mean()) if tp else np.nan}
    if tp and "diameter_nm" in det:
        err = det.loc[m["detected_index"], "diameter_nm"].to_numpy() - truth.loc[m["truth_index"], "diameter_nm"].to_numpy()
        out.update(diameter_bias_nm=float(err.mean()), diameter_abs_error_nm=float(np.abs(err).mean()))
    else:
        out.update(diameter_bias_nm=np.nan, diameter_abs_error_nm=np.nan)
    switches = 0
    if tp and "particle" in det:
        pairs = pd.DataFrame({"true_id": truth.loc[m["truth_index"], "particle"].to_numpy(),
                              "track": det.loc[m["detected_index"], "particle"].to_numpy(), "frame": m["frame"].to_numpy()})
        for _, g in pairs.sort_values("frame").groupby("true_id"):
            switches += int((g["track"].to_numpy()[1:] != g["track"].to_numpy()[:-1]).sum())
        out["n_tracks"] = int(det["particle"].nunique())
        out["mean_track_length"] = float(det.groupby("particle").size().mean())
        out["true_mean_track_length"] = float(truth.groupby("particle").size().mean()) if len(truth) else np.nan
    out["identity_switches"] = switches
    if msd is not None and true_drift_nm_s is not None:
        v = np.asarray(msd["drift_nm_s"], float)
        out["drift_error_nm_s"] = float(np.hypot(*(v - np.asarray(true_drift_nm_s, float))))
    if msd is not None and true_diffusion_nm2_s:
        out["diffusion_relative_error"] = float((msd["diffusion_nm2_s"] - true_diffusion_nm2_s) / true_diffusion_nm2_s)
    return out
