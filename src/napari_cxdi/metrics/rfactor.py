"""R_f: the discrepancy between measured and modelled diffraction moduli (thesis Eq. 3.13)."""

from __future__ import annotations

import numpy as np

from ..errors import DataValidationError


def _measured(measured: np.ndarray, mask) -> np.ndarray:
    """Measured pixels: finite counts, not in ``mask`` (True = bad, broadcast against the counts)."""
    ok = np.isfinite(measured)
    if mask is not None:
        ok &= ~np.broadcast_to(np.asarray(mask, bool), measured.shape)
    return ok


def r_factor(predicted_intensity, measured_intensity, mask=None) -> float:
    """``R_f = sum | sqrt(I_hat) - sqrt(I) | / sum sqrt(I)`` over measured pixels and frames (lower is better).

    predicted_intensity, measured_intensity: arrays of equal shape [..., H, W] (photons; NaN = unmeasured).
    mask: bad pixels (True = not measured), [H, W] or the counts' shape; left out like NaN counts.
    """
    a = np.asarray(predicted_intensity, dtype=np.float64)
    b = np.asarray(measured_intensity, dtype=np.float64)
    if a.shape != b.shape:
        raise DataValidationError(f"R_f needs equal shapes, got {a.shape} and {b.shape}")
    ok = _measured(b, mask)
    sb = np.where(ok, np.sqrt(np.clip(np.where(ok, b, 0.0), 0, None)), 0.0)
    denom = sb.sum()
    if denom <= 0:
        raise DataValidationError("R_f is undefined for an all-zero measurement")
    return float(np.where(ok, np.abs(np.sqrt(np.clip(a, 0, None)) - sb), 0.0).sum() / denom)


def r_factor_per_frame(predicted_intensity, measured_intensity, mask=None) -> np.ndarray:
    """R_f of each frame [T] of [T, H, W] stacks (measured pixels only, see :func:`r_factor`)."""
    m = np.asarray(measured_intensity, np.float64)
    ok = _measured(m, mask)
    a = np.sqrt(np.clip(np.asarray(predicted_intensity, np.float64), 0, None))
    b = np.where(ok, np.sqrt(np.clip(np.where(ok, m, 0.0), 0, None)), 0.0)
    return np.where(ok, np.abs(a - b), 0.0).sum(axis=(-2, -1)) / np.maximum(b.sum(axis=(-2, -1)), 1e-300)


def _unit_deviance(predicted_intensity, measured_counts, mask=None) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(predicted_intensity, dtype=np.float64)
    b = np.asarray(measured_counts, dtype=np.float64)
    if a.shape != b.shape:
        raise DataValidationError(f"the Poisson deviance needs equal shapes, got {a.shape} and {b.shape}")
    ok = _measured(b, mask)
    if not ok.any():
        raise DataValidationError("the Poisson deviance is undefined without measured pixels")
    n = np.where(ok, np.clip(b, 0, None), 0.0)
    i_hat = np.clip(np.where(ok, a, 1.0), 1e-12, None)
    log_term = np.where(n > 0, n * np.log(np.where(n > 0, n, 1.0) / i_hat), 0.0)
    return np.where(ok, 2.0 * (log_term - (n - i_hat)), 0.0), ok


def poisson_deviance(predicted_intensity, measured_counts, mask=None) -> float:
    """Mean Poisson unit deviance ``2 [n log(n / I_hat) - (n - I_hat)]`` over measured pixels (lower is better).

    A proper score: its expectation over fresh counts ``n ~ Poisson(I)`` is smallest for ``I_hat = I``, so
    on photons a method never saw (a held-out thinning split) no reconstruction can beat the true
    intensity except by chance. R_f has no such property at low counts (see :func:`heldout_excess`).
    """
    d, ok = _unit_deviance(predicted_intensity, measured_counts, mask)
    return float(d[ok].mean())


def heldout_excess(predicted_intensity, true_intensity, heldout_counts, fraction: float, mask=None) -> dict[str, float]:
    """Does a reconstruction fit the noise? Judged on held-out photons it never saw.

    ``heldout_counts`` [T, H, W] is the ``fraction`` of every frame's photons split off by binomial thinning
    (physics.thinning) before the method ran. Returns the mean Poisson deviance of ``fraction x I_hat`` and
    of ``fraction x I_true`` on them, ``excess = (dev_hat - dev_true) / dev_true`` and its standard error
    ``excess_se`` (from the spread of the per-frame differences): about 0 (within ~2 standard errors) for a
    reconstruction as good as the truth at predicting fresh photons, clearly > 0 for one that copied its
    training noise (or is simply wrong). Unlike "R_f below the truth's R_f" this cannot be met by a
    biased prediction: at ~2 photons per pixel a sharpened truth (I^1.2, same total) has an R_f 23 %
    *below* the truth's without having seen any noise (docs/fidelity.md).
    """
    held = np.asarray(heldout_counts, np.float64)
    d_hat, ok = _unit_deviance(fraction * np.asarray(predicted_intensity, np.float64), held, mask)
    d_true, _ = _unit_deviance(fraction * np.asarray(true_intensity, np.float64), held, mask)
    dev_hat, dev_true = float(d_hat[ok].mean()), float(d_true[ok].mean())
    out = {"heldout_deviance": dev_hat, "heldout_deviance_truth": dev_true,
           "heldout_excess": (dev_hat - dev_true) / dev_true}
    if held.ndim >= 3 and held.shape[0] > 1:
        frames = held.shape[0]
        per_frame = (d_hat - d_true).reshape(frames, -1).sum(axis=1) / np.maximum(ok.reshape(frames, -1).sum(axis=1), 1)
        out["heldout_excess_se"] = float(per_frame.std(ddof=1) / np.sqrt(frames) / dev_true)
    return out
