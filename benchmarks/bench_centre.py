"""Beam-centre estimate on detector-like patterns: how often it is right, wrong (silently) or refused.

Random beams anywhere on a 96 x 96 detector with two module gaps (masked), ring patterns of Poisson counts
at three photon levels (the peak's mean counts), with and without unmasked hot pixels (1e6 counts, not in
the mask), estimated by ``napari_cxdi.io.detector.estimate_centre`` and by its previous version (the
widening overlap search, kept here as the baseline). A result within 1 px of the true centre is right;
further off it is wrong (a silent wrong result: the worst outcome; "gross": more than 3 px off); a ConfigError asking for the centre
is refused (the honest outcome when a beam is too near the edge or the pattern too sparse).

    python benchmarks/bench_centre.py [--beams 60] [--out benchmarks/results/centre.json]   # ~1 min

Writes ``benchmarks/results/centre.json``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

N = 96
YY, XX = np.mgrid[:N, :N]


def previous_estimate_centre(pattern, bad=None, min_overlap=0.5):
    """The estimator before this benchmark (git 988f9d5): an overlap rule halved from 0.5 down to 0.05 while the
    peak lies on its edge, the energy rule beside it, no hot-pixel handling."""
    from scipy.signal import fftconvolve

    from napari_cxdi.errors import ConfigError

    p = np.nan_to_num(np.asarray(pattern, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    w = np.ones(p.shape) if bad is None else (~np.asarray(bad, bool)).astype(np.float64)
    w[p < 0] = 0.0
    v = np.log1p(np.clip(p, 0, None)) * w
    if not (w > 0).any() or not v.any():
        raise ConfigError("no counts")
    v = np.minimum(v, np.percentile(v[w > 0], 99.9))
    num, den, overlap = fftconvolve(v, v), fftconvolve(v * v, w), fftconvolve(w, w)
    measurable = den > 0.5 * den.max()
    tried = min_overlap
    while True:
        ok = (overlap > tried * overlap.max()) & measurable
        score = np.pad(np.where(ok, num / np.where(ok, den, 1.0), -np.inf), 1, constant_values=-np.inf)
        sy, sx = np.unravel_index(int(np.argmax(score)), score.shape)
        around = score[sy - 1: sy + 2, sx - 1: sx + 2]
        if np.isfinite(around[1]).all() and np.isfinite(around[:, 1]).all():
            break
        if tried <= 0.05:
            raise ConfigError("edge")
        tried = max(tried / 2, 0.05)

    def refine(c0, c1, c2):
        d = c0 - 2 * c1 + c2
        return float(np.clip(0.5 * (c0 - c2) / d, -0.5, 0.5)) if d < 0 else 0.0

    return (sy - 1 + refine(*around[:, 1])) / 2.0, (sx - 1 + refine(*around[1])) / 2.0, float(score[sy, sx])


def pattern(cy, cx, rng, photons, hot):
    r = np.hypot(YY - cy, XX - cx)
    counts = rng.poisson(photons * np.exp(-r / 8.0) * (1 + np.cos(r / 2) ** 2)).astype(float)
    bad = np.zeros((N, N), bool)
    bad[:, 45:47] = True
    bad[30:32, :] = True
    if hot:
        idx = rng.integers(0, N, (hot, 2))
        counts[idx[:, 0], idx[:, 1]] = 1e6
    counts[bad] = 0.0
    return counts, bad


def main(argv=None) -> int:
    from napari_cxdi.errors import ConfigError
    from napari_cxdi.io.detector import estimate_centre
    from napari_cxdi.io.safe_write import write_json
    from napari_cxdi.provenance import provenance

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beams", type=int, default=60, help="random beam positions per case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/centre.json")
    args = parser.parse_args(argv)
    methods = {"estimate_centre": estimate_centre, "previous (overlap search)": previous_estimate_centre}
    rows = []
    t0 = time.perf_counter()
    for photons in (50.0, 2.0, 0.3):
        for hot in (0, 20):
            tally = {m: {"right": 0, "wrong": 0, "gross": 0, "refused": 0, "error_px": []} for m in methods}
            for k in range(args.beams):
                rng = np.random.default_rng([args.seed, int(photons * 10), hot, k])
                cy, cx = rng.uniform(2, N - 2, 2)
                counts, bad = pattern(cy, cx, rng, photons, hot)
                for name, f in methods.items():
                    try:
                        y, x, _ = f(counts, bad)
                    except ConfigError:
                        tally[name]["refused"] += 1
                        continue
                    err = float(np.hypot(y - cy, x - cx))
                    tally[name]["right" if err < 1.0 else "wrong"] += 1
                    tally[name]["gross"] += err > 3.0
                    if err < 1.0:
                        tally[name]["error_px"].append(err)
            for name, t in tally.items():
                errs = t.pop("error_px")
                rows.append({"photons_peak": photons, "hot_pixels": hot, "method": name, "beams": args.beams, **t,
                             "median_error_px_when_right": float(np.median(errs)) if errs else None})
    seconds = time.perf_counter() - t0
    print(f"{'peak photons':>12} {'hot px':>6}  {'method':<26} {'right':>5} {'wrong':>5} {'>3 px':>5} {'refused':>7} {'median err px':>13}")
    for r in rows:
        med = "-" if r["median_error_px_when_right"] is None else f"{r['median_error_px_when_right']:.2f}"
        print(f"{r['photons_peak']:>12g} {r['hot_pixels']:>6d}  {r['method']:<26} {r['right']:>5d} {r['wrong']:>5d} "
              f"{r['gross']:>5d} {r['refused']:>7d} {med:>13}")
    print(f"({seconds:.0f} s; {args.beams} random beams per case on a {N} x {N} detector with 2 masked gaps)")
    write_json(args.out, provenance({"beams": args.beams, "seed": args.seed, "detector_px": N},
                                    {"rows": rows, "seconds": seconds}), overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
