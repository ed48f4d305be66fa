"""Resolution estimates: the phase-retrieval transfer function (PRTF) and Fourier ring correlation (FRC).

PRTF — consistency of independent reconstructions (Shapiro et al., PNAS 102, 15343 (2005); Chapman et al.,
JOSA A 23, 1179 (2006)). Phase retrieval from ``R`` independent random starts gives complex far fields
``F_j(q)`` (of the exit wave ``P O_j`` when the probe is known, else of the object ``O_j``). Each is aligned
to run 0 for the ambiguities the measurement cannot see — a global phase always; a real-space translation
and the twin image ``O*(-r)`` (far field ``conj(F)``) for isolated objects without a known probe — and

    PRTF(q) = sum_ring |<F_j(q)>_j| / sum_ring <|F_j(q)|>_j

(an amplitude-weighted ring average). Where the phases are retrieved consistently the average keeps its
modulus and PRTF -> 1; where they are random it falls to the noise floor ``~ 1 / sqrt(R)`` (far fields of
random objects are complex Gaussian; ``sqrt(pi) / (2 sqrt(R))`` if only the phases are random), slightly
raised by the alignment. The resolution is the full period at the first ring below 1/e. With fewer than 12
runs that floor is within ~20 % of 1/e (measured: 8 random-phase runs average 0.37 at high q), so a random
object might not cross it: :func:`prtf` refuses fewer than 2 runs and adds a note (``curve.notes``) below 12.
Pixels in ``mask`` (True = not measured) are left out.

The old quantity ``|model far field| / sqrt(counts)`` measures only how well the model's *amplitudes*
fit the data: any object, even one with random phases, whose modulus fits reaches Nyquist. It is kept as
:func:`fourier_fit_ratio` under that honest name.

FRC (van Heel & Schatz, J. Struct. Biol. 151, 250 (2005)): the correlation of two images per ring, with
three thresholds reported together: 1/e (this project's historical choice), half-bit
``(0.2071 + 1.9102/sqrt(n)) / (1.2071 + 0.9102/sqrt(n))`` and 3-sigma ``3 / sqrt(n)``, where ``n`` is the
number of independent Fourier pixels per ring (ring pixels x frames, halved for real images whose
spectrum is Hermitian).

Resolutions are full periods in nm (pixels when ``pixel_size_nm`` is 1); a curve that never drops below
its threshold reports the Nyquist limit ``2 dx``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import DataValidationError
from ..physics.fft import fft2c_np
from .radial import ring_index, ring_sum, ring_to_resolution_nm

ONE_OVER_E = float(np.exp(-1.0))
MIN_PRTF_RUNS_FOR_1E = 12


@dataclass
class ResolutionCurve:
    """A ring-averaged curve and its threshold crossing(s).

    spatial_frequency: [R] cycles per nm at each ring; curve: [R]; threshold / resolution_nm: the primary
    (1/e) criterion; thresholds / resolutions_nm: every criterion computed (name -> [R] curve or number,
    name -> full period); notes: caveats (e.g. too few runs).
    """

    spatial_frequency: np.ndarray
    curve: np.ndarray
    threshold: float
    resolution_nm: float
    thresholds: dict = field(default_factory=dict)
    resolutions_nm: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def as_dict(self) -> dict:
        out = {
            "spatial_frequency_per_nm": self.spatial_frequency.tolist(),
            "curve": self.curve.tolist(),
            "threshold": self.threshold,
            "resolution_nm": self.resolution_nm,
        }
        if self.resolutions_nm:
            out["resolutions_nm"] = dict(self.resolutions_nm)
            out["thresholds"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.thresholds.items()}
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def _crossing(curve: np.ndarray, threshold, start: int = 1) -> int | None:
    """First ring >= ``start`` below ``threshold`` (scalar or per ring); rings whose threshold is >= 1 (too
    few pixels for the criterion, e.g. 3-sigma at the lowest rings) and NaN rings are skipped."""
    thr = np.broadcast_to(np.asarray(threshold, float), curve.shape)
    below = np.flatnonzero((curve[start:] < thr[start:]) & (thr[start:] < 1.0))
    return int(below[0] + start) if below.size else None


def _curve(values_num, values_den, shape, pixel_size_nm, threshold, undefined: float = 0.0) -> ResolutionCurve:
    rings = ring_index(shape)
    n = min(shape)
    n_rings = n // 2
    num = ring_sum(values_num, rings, n_rings)
    den = ring_sum(values_den, rings, n_rings)
    curve = np.where(den > 0, num / np.maximum(den, 1e-300), undefined)
    crossing = _crossing(curve, threshold)  # rings without data (NaN) never count as a crossing
    freq = np.arange(n_rings) / (n * pixel_size_nm)
    return ResolutionCurve(freq, curve, threshold, ring_to_resolution_nm(crossing, n, pixel_size_nm))


def _bad_pixels(mask, shape) -> np.ndarray:
    """``mask`` (True = not measured; [H, W] or the full shape) broadcast to ``shape``; all False if None."""
    if mask is None:
        return np.zeros(shape, bool)
    m = np.asarray(mask, bool)
    try:
        return np.broadcast_to(m, shape)
    except ValueError as exc:
        raise DataValidationError(f"the mask {m.shape} does not fit the data {shape}") from exc


def fourier_fit_ratio(predicted_modulus, measured_intensity, pixel_size_nm: float, threshold: float = ONE_OVER_E,
                      mask=None) -> ResolutionCurve:
    """Ring average of ``min(|Psi_hat| / sqrt(I), 1)`` over measured pixels with counts (amplitude fit only).

    predicted_modulus: [..., H, W] modulus of the model's far field (``sqrt(sum_k |F(P_k O)|^2)``);
    measured_intensity: counts of the same shape; mask: True = not measured. This is *not* a resolution
    estimate (see the module docstring): it says up to which ring the model's amplitudes reach the data.
    """
    a = np.asarray(predicted_modulus, np.float64)
    i = np.asarray(measured_intensity, np.float64)
    if a.shape != i.shape:
        raise DataValidationError(f"the Fourier fit ratio needs equal shapes, got {a.shape} and {i.shape}")
    valid = (i > 0) & np.isfinite(i) & ~_bad_pixels(mask, i.shape)
    ratio = np.where(valid, a / np.sqrt(np.where(valid, i, 1.0)), 0.0)
    return _curve(np.clip(ratio, 0, 1.0), valid.astype(float), a.shape[-2:], pixel_size_nm, threshold)


def _align(reference: np.ndarray, candidate: np.ndarray, weights: np.ndarray, shift: bool, twin: bool) -> np.ndarray:
    """``candidate`` (unshifted far field [H, W]) aligned to ``reference`` for phase (+ translation, twin)."""
    from skimage.registration import phase_cross_correlation

    best, best_score = None, -1.0
    for cand in ([candidate, np.conj(candidate)] if twin else [candidate]):
        if shift:
            s = phase_cross_correlation(reference, cand, space="fourier", upsample_factor=20, normalization=None)[0]
            cand = ndimage.fourier_shift(cand, s)
        c = np.sum(weights * reference * np.conj(cand))
        if abs(c) > best_score:
            best, best_score = cand * np.exp(1j * np.angle(c)), abs(c)
    return best


def prtf(runs, pixel_size_nm: float = 1.0, threshold: float = ONE_OVER_E, *, probe=None, mask=None,
         align_shift: bool | None = None, align_twin: bool | None = None) -> ResolutionCurve:
    """Consistency PRTF of ``R >= 2`` independent reconstructions (see the module docstring).

    runs: [R, ..., H, W] complex objects (or exit waves), e.g. [R, T, H, W] for R runs of a T-frame movie;
    probe: [K, H, W] or [H, W] — when given, far fields are of ``P_0 O_j`` (dominant mode) and only the
    global phase is aligned (the known probe fixes translation and twin); without it translation and
    twin are aligned too (override with ``align_shift`` / ``align_twin``). mask: True = not measured
    detector pixel ([H, W], same grid as the far field), left out of the ring averages.
    """
    r = np.asarray(runs)
    if r.ndim < 3 or r.shape[0] < 2:
        raise DataValidationError(f"the PRTF needs at least 2 independent reconstructions [R, ..., H, W], got shape {r.shape}")
    h, w = r.shape[-2:]
    waves = r.reshape(r.shape[0], -1, h, w).astype(np.complex128)
    if probe is not None:
        p = np.asarray(probe)
        p0 = p[0] if p.ndim == 3 else p
        if p0.shape != (h, w):
            raise DataValidationError(f"the probe {p0.shape} does not match the reconstructions {(h, w)}")
        waves = waves * p0
    align_shift = probe is None if align_shift is None else align_shift
    align_twin = probe is None if align_twin is None else align_twin
    spectra = np.fft.fft2(waves, norm="ortho")  # unshifted for the alignment
    n_runs, n_frames = spectra.shape[:2]
    m = None if mask is None else np.asarray(mask, bool)
    if m is not None and m.ndim > 2:
        m = m.reshape(-1, h, w)
    good = ~_bad_pixels(m, (n_frames, h, w))  # centred (detector) grid
    for t in range(n_frames):
        weights = np.fft.ifftshift(good[t]).astype(float)
        for j in range(1, n_runs):
            spectra[j, t] = _align(spectra[0, t], spectra[j, t], weights, align_shift, align_twin)
    num = np.fft.fftshift(np.abs(spectra.mean(axis=0)), axes=(-2, -1)) * good
    den = np.fft.fftshift(np.abs(spectra).mean(axis=0), axes=(-2, -1)) * good
    result = _curve(num, den, (h, w), pixel_size_nm, threshold, undefined=np.nan)  # NaN: ring fully masked
    floor = float(1.0 / np.sqrt(n_runs))
    result.thresholds = {"1/e": threshold, "random-phase floor": floor}
    result.resolutions_nm = {"1/e": result.resolution_nm}
    if n_runs < MIN_PRTF_RUNS_FOR_1E:
        result.notes.append(f"only {n_runs} runs: random phases would still average to ~{floor:.2f} "
                            f"(1/e = {threshold:.2f}); use at least {MIN_PRTF_RUNS_FOR_1E} runs")
    return result


def half_bit_threshold(n_pixels) -> np.ndarray:
    """van Heel & Schatz (2005) half-bit curve for ``n_pixels`` independent Fourier pixels per ring."""
    s = np.sqrt(np.maximum(np.asarray(n_pixels, float), 1.0))
    return (0.2071 + 1.9102 / s) / (1.2071 + 0.9102 / s)


def sigma_threshold(n_pixels, n_sigma: float = 3.0) -> np.ndarray:
    """``n_sigma / sqrt(n)``: the correlation that pure noise exceeds with probability ~ 0.1 % (3 sigma)."""
    return n_sigma / np.sqrt(np.maximum(np.asarray(n_pixels, float), 1.0))


def frc(image_a, image_b, pixel_size_nm: float, threshold: float = ONE_OVER_E, window: bool = True,
        n_sigma: float = 3.0) -> ResolutionCurve:
    """FRC(q) = Re sum F_a conj(F_b) / sqrt(sum |F_a|^2 sum |F_b|^2) per ring, summed over frames.

    image_a, image_b: [..., H, W] real or complex (e.g. reconstructed and true phase). A Hann window
    suppresses edge artefacts unless ``window=False``. The result carries the 1/e crossing as
    ``resolution_nm`` and the 1/e, half-bit and ``n_sigma``-sigma crossings in ``resolutions_nm``.
    """
    a = np.asarray(image_a)
    b = np.asarray(image_b)
    if a.shape != b.shape:
        raise DataValidationError(f"FRC needs equal shapes, got {a.shape} and {b.shape}")
    if window:
        h, w = a.shape[-2:]
        win = np.outer(np.hanning(h), np.hanning(w))
        a = (a - a.mean(axis=(-2, -1), keepdims=True)) * win
        b = (b - b.mean(axis=(-2, -1), keepdims=True)) * win
    fa, fb = fft2c_np(a), fft2c_np(b)
    rings = ring_index(a.shape[-2:])
    n = min(a.shape[-2:])
    n_rings = n // 2
    num = ring_sum((fa * fb.conj()).real, rings, n_rings)
    den = np.sqrt(ring_sum(np.abs(fa) ** 2, rings, n_rings) * ring_sum(np.abs(fb) ** 2, rings, n_rings))
    curve = np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)
    freq = np.arange(n_rings) / (n * pixel_size_nm)
    n_frames = int(np.prod(a.shape[:-2])) if a.ndim > 2 else 1
    hermitian = not (np.iscomplexobj(a) or np.iscomplexobj(b))
    n_pix = np.bincount(rings.ravel(), minlength=n_rings)[:n_rings] * n_frames / (2.0 if hermitian else 1.0)
    thresholds = {"1/e": threshold, "half-bit": half_bit_threshold(n_pix), f"{n_sigma:g}-sigma": sigma_threshold(n_pix, n_sigma)}
    resolutions = {k: ring_to_resolution_nm(_crossing(curve, t), n, pixel_size_nm) for k, t in thresholds.items()}
    return ResolutionCurve(freq, curve, threshold, resolutions["1/e"], thresholds, resolutions)
