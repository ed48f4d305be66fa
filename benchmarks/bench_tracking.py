"""Tracking benchmark: the quantitative form of the seed's Fig. 3.9 (PID3Net gives more, longer, truer tracks?).

On the simulated AuNP movie, the same tracker (adaptive threshold + trackpy linking, identical settings)
runs on the ground-truth phase, on PID3Net-PO output and on mixed-state output, inside the illuminated
region (probe support). Reported against the simulator's trajectories: detection precision/recall/F1,
diameter bias, number and mean length of tracks, identity switches, drift-velocity error (tracks' MSD fit
and whole-image cross-correlation) and the relative error of the diffusion coefficient.

    python benchmarks/bench_tracking.py --quick      # 2 CPU cores, minutes (stated small size)
    python benchmarks/bench_tracking.py              # full size, meant for a GPU
    ... --cache benchmarks/results/cache           # keep the reconstructions, re-score without retraining

Writes ``benchmarks/results/tracking_<size>.json`` (numbers, sizes, configs, provenance).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

import napari_cxdi.api as cx
from napari_cxdi.physics.probe import support_mask
from napari_cxdi.provenance import provenance
from napari_cxdi.simulate import simulate_aunp
from napari_cxdi.tracking import DetectionConfig, TrackingConfig, evaluate_tracking, image_velocity, track

SIZES = {
    "quick": {"frames": 24, "size": 64, "epochs": 20, "width": 4, "refine_width": 8, "refine_steps": 2,
              "batch_size": 4, "max_iter": 100, "probe_fill": 0.8},
    "full": {"frames": 200, "size": 256, "epochs": 50, "width": 8, "refine_width": 32, "refine_steps": 5,
             "batch_size": 8, "max_iter": 500, "probe_fill": 0.6},
}
COLUMNS = [("f1", "F1", "{:.3f}"), ("precision", "prec", "{:.3f}"), ("recall", "recall", "{:.3f}"),
           ("diameter_bias_nm", "d bias nm", "{:+.0f}"), ("n_tracks", "tracks", "{}"),
           ("mean_track_length", "mean len", "{:.1f}"), ("identity_switches", "ID sw", "{}"),
           ("drift_error_nm_s", "|dv| tracks", "{:.0f}"), ("image_velocity_error_nm_s", "|dv| image", "{:.0f}"),
           ("diffusion_relative_error", "D rel err", "{:+.2f}")]


def reconstruct_phase(sim, method: str, size: dict, device: str, seed: int, cache: Path | None = None) -> tuple[np.ndarray, float]:
    """Phase movie [T, H, W] of ``method`` and its reconstruction time (s); reused from ``cache`` if stored there."""
    if method == "ground truth":
        return sim.phase, 0.0
    key = hashlib.sha1(json.dumps([method, size, seed], sort_keys=True).encode()).hexdigest()[:12]
    stored = cache / f"tracking_{method}_{key}.npz" if cache else None
    if stored is not None and stored.exists():
        with np.load(stored) as z:
            return z["phase"], float(z["seconds"])
    phase, seconds = _reconstruct(sim, method, size, device, seed)
    if stored is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(stored, phase=phase, seconds=seconds)
    return phase, seconds


def _reconstruct(sim, method: str, size: dict, device: str, seed: int) -> tuple[np.ndarray, float]:
    if method.startswith("PID3Net"):
        kw = {k: size[k] for k in ("epochs", "width", "refine_width", "refine_steps", "batch_size")}
        kw.update(seed=seed, preview_every=0)
    else:
        kw = {"max_iter": size["max_iter"]}
    t0 = time.perf_counter()
    result = cx.reconstruct(sim, method=method, device=device, evaluate_metrics=False, **kw)
    return result.phase, time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small CPU size (minutes)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="override the PID3Net epochs of the size")
    parser.add_argument("--frames", type=int, default=None, help="override the number of frames of the size")
    parser.add_argument("--size", type=int, default=None, help="override the frame size (pixels) of the size")
    parser.add_argument("--threshold", type=float, default=0.15, help="adaptive-threshold excess (rad)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cache", type=Path, default=None, help="keep reconstructed phases here and reuse them")
    args = parser.parse_args(argv)
    name = "quick" if args.quick else "full"
    size = dict(SIZES[name])
    for key in ("epochs", "frames", "size"):
        if getattr(args, key):
            size[key] = getattr(args, key)
    device = "cpu" if args.quick and args.device == "auto" else args.device
    sim = simulate_aunp(n_frames=size["frames"], size=size["size"], seed=args.seed, probe_fill=size["probe_fill"])
    cfg_sim = sim.metadata["config"]
    dx, dt = sim.pixel_size_nm, sim.metadata["exposure_s"]
    # detection inside the illuminated region (probe support); scoring where at least half a particle is inside it
    roi = ndimage.binary_erosion(support_mask(sim.probe, threshold=0.2, dilate_px=0), iterations=1)
    half_radius_px = int(round(cfg_sim["diameter_nm"] / dx / 4))
    score_roi = ndimage.binary_erosion(roi, iterations=half_radius_px)
    tcfg = TrackingConfig(DetectionConfig(threshold=args.threshold, exclude_border=False), max_displacement_nm=150.0,
                          memory=1, min_length=3)
    rows = []
    for method in ("ground truth", "PID3Net-PO", "mixed-state"):
        phase, seconds = reconstruct_phase(sim, method, size, device, args.seed, args.cache)
        res = track(phase, tcfg, dx, dt, mask=roi)
        scores = evaluate_tracking(res.tracks, sim.trajectories, dx, roi=score_roi, frame_shape=phase.shape[1:],
                                   true_drift_nm_s=cfg_sim["drift_nm_s"], true_diffusion_nm2_s=cfg_sim["diffusion_nm2_s"],
                                   msd=res.statistics["msd"])
        v = image_velocity(phase, dx, dt, mask=roi)
        scores["image_velocity_nm_s"] = v["mean_nm_s"].tolist()
        scores["image_velocity_error_nm_s"] = float(np.hypot(*(v["mean_nm_s"] - np.asarray(cfg_sim["drift_nm_s"]))))
        rows.append({"method": method, "reconstruction_s": seconds, **scores, **res.summary()})
        print(f"{method}: done ({seconds:.0f} s reconstruction)", flush=True)
    print(f"\nAuNP simulation: {size['frames']} frames of {size['size']}x{size['size']}, {dx:.1f} nm pixels, "
          f"drift {cfg_sim['drift_nm_s']} nm/s, D {cfg_sim['diffusion_nm2_s']} nm^2/s, 300 nm particles; "
          f"detection in the probe support ({int(roi.sum())} px), scored in it less half a radius ({int(score_roi.sum())} px)")
    print(f"{'method':<14}" + "".join(f"{h:>12}" for _, h, _ in COLUMNS))
    for r in rows:
        cells = []
        for key, _, fmt in COLUMNS:
            value = r.get(key, float("nan"))
            cells.append(f"{fmt.format(value) if value == value else 'nan':>12}")
        print(f"{r['method']:<14}" + "".join(cells))
    out = args.out or Path(__file__).parent / "results" / f"tracking_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = provenance(config={"size": name, **size, "device": device, "seed": args.seed, "tracking": tcfg.to_dict(),
                                "simulation": cfg_sim}, metrics={"rows": rows})
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
