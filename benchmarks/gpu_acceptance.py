"""GPU acceptance in one command: the seed-scale checks that a 2-core CPU cannot run.

    python benchmarks/gpu_acceptance.py              # on a CUDA machine, < 8 minutes
    python benchmarks/gpu_acceptance.py --dry-run    # the same code at toy size on CPU (CI, < 1 minute)

Checks, each printed against the seed's number and written to one JSON
(benchmarks/results/gpu_acceptance.json, or --out):

1. quality: PID3Net-PO and -NR trained on a simulated AuNP movie at m >= 128 with AMP (held-out
   stopping on), mixed-state and mf-PIE on the same movie and seed: phase SSIM, R_f, the noise floor;
2. inference frames/s at m = 384 (seed: 333 frames/s on an A100);
3. mixed-state s/frame on the GPU at 384 x 384 (seed: 4.45 s/frame, CPU, Ta chart);
4. peak GPU memory, and the memory still allocated after the run (must return to ~0);
5. the out-of-memory -> half-batch path: a real CUDA OOM provoked by capping this process's
   memory (on CPU, --dry-run, an injected OOM error stands in);
6. the moving Ta test chart (issue 17's goals the CPU quick size cannot reach, docs/fidelity.md): PID3Net-PO
   and -NR at m = 128 over 64 frames (the chart moves 0.08 px per frame, 5 px in all), phase SSIM (PO >= NR)
   and the measured velocity against the set 340 nm/s (within 2 %) and the truth's own measurement.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

SEED = {"inference_frames_per_s": 333.0, "mixed_state_s_per_frame": 4.45, "phase_ssim_po": 0.95,
        "phase_ssim_mixed_state": 0.55, "phase_ssim_mf_pie": 0.81}
SIZES = {
    "gpu": {"frames": 64, "size": 128, "epochs": 40, "width": 8, "refine_width": 16, "refine_steps": 3,
            "batch_size": 8, "max_iter": 300, "infer_size": 384, "infer_frames": 512, "infer_batch": 16,
            "ms_frames": 16, "ms_iter": 100, "oom_batch": 64, "chart_frames": 64, "chart_epochs": 60},
    "dry": {"frames": 8, "size": 32, "epochs": 2, "width": 4, "refine_width": 4, "refine_steps": 1,
            "batch_size": 4, "max_iter": 5, "infer_size": 48, "infer_frames": 8, "infer_batch": 4,
            "ms_frames": 2, "ms_iter": 3, "oom_batch": 4, "chart_frames": 8, "chart_epochs": 2},
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _allocated(device: torch.device) -> int:
    return int(torch.cuda.memory_allocated(device)) if device.type == "cuda" else 0


def check_quality(size: dict, device: torch.device, seed: int) -> dict:
    import napari_cxdi.api as cx
    from napari_cxdi.simulate import simulate_aunp

    sim = simulate_aunp(n_frames=size["frames"], size=size["size"], seed=seed, match_fluence=True)
    floor = cx.evaluate(sim.objects, sim.counts, sim.probe, sim.pixel_size_nm)["rf"]
    out = {"rf_truth": floor, "frames": size["frames"], "size": size["size"], "methods": {}}
    for method in ("PID3Net-PO", "PID3Net-NR", "mixed-state", "mf-PIE"):
        if method.startswith("PID3Net"):
            kw = {k: size[k] for k in ("epochs", "width", "refine_width", "batch_size")}
            if method == "PID3Net-PO":
                kw["refine_steps"] = size["refine_steps"]
            kw.update(device=str(device), seed=seed, preview_every=0, amp=True, tv_weight=1.0)
        else:
            kw = {"max_iter": size["max_iter"], "device": str(device)}
        events: list[dict] = []
        t0 = time.perf_counter()
        result = cx.reconstruct(sim, method=method, truth=sim, progress=events.append, **kw)
        done = next((e for e in events if e.get("event") == "done"), {})
        out["methods"][method] = {
            # NaN when no frame has a particle under the probe (evaluate leaves phase SSIM undefined then)
            "phase_ssim": result.metrics.get("phase_ssim", float("nan")), "rf": result.metrics["rf"], "wall_s": time.perf_counter() - t0,
            "steps": done.get("steps"), "stopped": done.get("stopped"), "best_epoch": done.get("best_epoch"),
        }
    return out


def check_chart(size: dict, device: torch.device, seed: int) -> dict:
    """PID3Net-PO and -NR on the moving test chart: phase SSIM, R_f, the measured velocity (nm/s)."""
    import napari_cxdi.api as cx
    from napari_cxdi.simulate import simulate_test_chart

    sim = simulate_test_chart(n_frames=size["chart_frames"], size=size["size"], seed=seed, match_fluence=True)
    dt = sim.metadata["frame_interval_s"]
    truth = cx.evaluate(sim.objects, sim.counts, sim.probe, sim.pixel_size_nm, truth=sim.objects, frame_interval_s=dt)
    out = {"frames": size["chart_frames"], "size": size["size"], "rf_truth": truth["rf"],
           "velocity_set_nm_s": float(sim.metadata["velocity_nm_s"][1]),
           "velocity_truth_nm_s": float(truth["velocity_nm_s"][1]), "methods": {}}
    for method in ("PID3Net-PO", "PID3Net-NR"):
        kw = {"epochs": size["chart_epochs"], "width": size["width"], "refine_width": size["refine_width"],
              "batch_size": size["batch_size"], "device": str(device), "seed": seed, "preview_every": 0, "amp": True,
              "tv_weight": 1.0}
        if method == "PID3Net-PO":
            kw["refine_steps"] = size["refine_steps"]
        t0 = time.perf_counter()
        result = cx.reconstruct(sim, method=method, truth=sim, measure_velocity=True, **kw)
        out["methods"][method] = {"phase_ssim": result.metrics.get("phase_ssim", float("nan")), "rf": result.metrics["rf"],
                                  "velocity_nm_s": float(np.asarray(result.metrics["velocity_nm_s"])[1]),
                                  "wall_s": time.perf_counter() - t0}
    return out


def check_inference(size: dict, device: torch.device) -> dict:
    from napari_cxdi.pid3net import PID3Net, PID3NetConfig, reconstruct_movie

    m = size["infer_size"]
    yy, xx = np.mgrid[:m, :m] - m / 2
    probe = (np.exp(-(xx**2 + yy**2) / (2 * (m / 8) ** 2)) * 30).astype(np.complex64)[None]
    cfg = PID3NetConfig(width=8, refine_width=32, refine_steps=5, frames=5, device=str(device), amp=True)
    torch.manual_seed(0)
    model = PID3Net(cfg, probe).to(device).eval()
    rng = np.random.default_rng(0)
    movie = rng.poisson(2.0, size=(size["infer_frames"], m, m)).astype(np.float32)
    reconstruct_movie(model, movie[: cfg.frames * 2], batch_size=size["infer_batch"])  # warm-up (cuDNN autotune)
    _sync(device)
    t0 = time.perf_counter()
    reconstruct_movie(model, movie, batch_size=size["infer_batch"])
    _sync(device)
    seconds = time.perf_counter() - t0
    return {"size": m, "frames": size["infer_frames"], "seconds": seconds,
            "frames_per_s": size["infer_frames"] / seconds, "seed_frames_per_s": SEED["inference_frames_per_s"]}


def check_mixed_state(size: dict, device: torch.device) -> dict:
    from napari_cxdi.recon import IterativeConfig, run_iterative
    from napari_cxdi.simulate import simulate_aunp

    sim = simulate_aunp(n_frames=size["ms_frames"], size=size["infer_size"], seed=0, match_fluence=True)
    cfg = IterativeConfig(max_iter=size["ms_iter"], patience=10**6, tol=0.0, holdout_fraction=0.0,
                          noise_floor_margin=None, device=str(device))
    run_iterative(sim.counts[:1], sim.probe, "mixed-state", IterativeConfig(**{**cfg.__dict__, "max_iter": 2}))  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    run_iterative(sim.counts, sim.probe, "mixed-state", cfg)
    _sync(device)
    seconds = time.perf_counter() - t0
    # the seed's 4.45 s/frame is per frame at convergence (~300 iterations): scale to 300 iterations
    per_frame_300 = seconds / size["ms_frames"] * 300 / size["ms_iter"]
    return {"size": size["infer_size"], "frames": size["ms_frames"], "iterations": size["ms_iter"], "seconds": seconds,
            "s_per_frame_300_iterations": per_frame_300, "seed_s_per_frame": SEED["mixed_state_s_per_frame"]}


def check_oom_half_batch(size: dict, device: torch.device) -> dict:
    from napari_cxdi.pid3net import PID3NetConfig, PID3NetTrainer
    from napari_cxdi.simulate import simulate_aunp

    sim = simulate_aunp(n_frames=max(size["oom_batch"] + 4, 8), size=size["size"], seed=1, match_fluence=True)
    cfg = PID3NetConfig(width=size["width"], refine_width=size["refine_width"], refine_steps=size["refine_steps"],
                        frames=5, batch_size=size["oom_batch"], epochs=1, device=str(device), preview_every=0)
    trainer = PID3NetTrainer(sim.counts, sim.probe, cfg)
    capped = False
    if device.type == "cuda":
        # cap this process so that the first batch cannot fit: a real OOM, then the trainer halves the batch
        _, total = torch.cuda.mem_get_info(device)
        used = torch.cuda.memory_allocated(device)
        torch.cuda.set_per_process_memory_fraction(min(1.0, (used + 1.5 * 1024**3) / total), device)
        capped = True
    else:
        real = trainer._optimise
        calls = {"n": 0}

        def injected(*args):
            calls["n"] += 1
            if calls["n"] == 1:
                raise torch.OutOfMemoryError("CUDA out of memory (injected by --dry-run)")
            return real(*args)

        trainer._optimise = injected
        trainer.device = torch.device("cuda")  # only the OOM policy reads it; the tensors stay on the CPU
    try:
        events = list(trainer.run())
    finally:
        if capped:
            torch.cuda.set_per_process_memory_fraction(1.0, device)
    warnings = [e["message"] for e in events if e.get("event") == "warning"]
    return {"start_batch": size["oom_batch"], "final_batch": trainer.batch_size, "warnings": warnings,
            "halved": trainer.batch_size < size["oom_batch"], "stopped": trainer.stopped_reason, "real_oom": capped}


def print_table(record: dict) -> None:
    q, inf, ms, mem, oom = (record[k] for k in ("quality", "inference", "mixed_state", "memory", "oom"))
    rows = [("check", "measured", "seed / target", "pass")]
    ssim = {k: v["phase_ssim"] for k, v in q["methods"].items()}
    rows.append(("SSIM PO", f"{ssim['PID3Net-PO']:.3f}", f"{SEED['phase_ssim_po']}", ""))
    rows.append(("SSIM NR", f"{ssim['PID3Net-NR']:.3f}", "<= PO", str(ssim["PID3Net-PO"] >= ssim["PID3Net-NR"])))
    rows.append(("SSIM mixed-state", f"{ssim['mixed-state']:.3f}", f"{SEED['phase_ssim_mixed_state']} (PO - 0.15)",
                 str(ssim["PID3Net-PO"] >= ssim["mixed-state"] + 0.15)))
    rows.append(("SSIM mf-PIE", f"{ssim['mf-PIE']:.3f}", f"{SEED['phase_ssim_mf_pie']} (PO - 0.10)",
                 str(ssim["PID3Net-PO"] >= ssim["mf-PIE"] + 0.10)))
    po_rf = q["methods"]["PID3Net-PO"]["rf"]
    rows.append(("R_f PO / floor", f"{po_rf:.3f} / {q['rf_truth']:.3f}", ">= 0.98 floor", str(po_rf >= 0.98 * q["rf_truth"])))
    rows.append((f"inference f/s (m={inf['size']})", f"{inf['frames_per_s']:.0f}", f"{SEED['inference_frames_per_s']:.0f} (A100)",
                 str(inf["frames_per_s"] >= SEED["inference_frames_per_s"])))
    rows.append((f"mixed-state s/frame ({ms['size']}px, 300 it)", f"{ms['s_per_frame_300_iterations']:.3f}",
                 f"{SEED['mixed_state_s_per_frame']} (CPU)", str(ms["s_per_frame_300_iterations"] < SEED["mixed_state_s_per_frame"])))
    rows.append(("peak GPU memory GiB", f"{mem['peak_gib']:.2f}", "", ""))
    rows.append(("allocated after run MiB", f"{mem['after_mib']:.1f}", "< 64", str(mem["after_mib"] < 64)))
    rows.append(("OOM -> half batch", f"{oom['start_batch']} -> {oom['final_batch']}", "halved", str(oom["halved"])))
    chart = record.get("chart")
    if chart:
        po, nr = chart["methods"]["PID3Net-PO"], chart["methods"]["PID3Net-NR"]
        rows.append(("chart SSIM PO / NR", f"{po['phase_ssim']:.3f} / {nr['phase_ssim']:.3f}", "PO >= NR",
                     str(po["phase_ssim"] >= nr["phase_ssim"])))
        rows.append(("chart velocity PO nm/s", f"{po['velocity_nm_s']:.0f}",
                     f"340 +- 2 % (truth measures {chart['velocity_truth_nm_s']:.0f})",
                     str(abs(po["velocity_nm_s"] - 340.0) <= 6.8)))
        rows.append(("chart R_f PO / floor", f"{po['rf']:.3f} / {chart['rf_truth']:.3f}", ">= 0.98 floor",
                     str(po["rf"] >= 0.98 * chart["rf_truth"])))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="toy size on the CPU (checks the code path, not the numbers)")
    ap.add_argument("--out", type=Path, default=None, help="JSON to write (default benchmarks/results/gpu_acceptance[_dry].json)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-quality", action="store_true", help="only the speed/memory/OOM checks")
    args = ap.parse_args(argv)

    from napari_cxdi.devices import free_device_memory
    from napari_cxdi.io.safe_write import check_output, write_json
    from napari_cxdi.provenance import provenance

    if args.dry_run:
        device, size = torch.device("cpu"), SIZES["dry"]
        torch.set_num_threads(1)
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: run this on a GPU machine, or pass --dry-run", file=sys.stderr)
            return 2
        device, size = torch.device("cuda"), SIZES["gpu"]
        torch.backends.cudnn.benchmark = True
    out = args.out or Path(__file__).parent / "results" / ("gpu_acceptance_dry.json" if args.dry_run else "gpu_acceptance.json")
    check_output(out, overwrite=True)
    t0 = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = _allocated(device)
    record: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)",
                    "dry_run": args.dry_run, "size": size}
    timings = {}
    t = time.perf_counter()
    record["quality"] = (check_quality(size, device, args.seed) if not args.skip_quality
                         else {"rf_truth": float("nan"), "methods": {m: {"phase_ssim": float("nan"), "rf": float("nan")}
                                                                     for m in ("PID3Net-PO", "PID3Net-NR", "mixed-state", "mf-PIE")}})
    timings["quality_s"] = time.perf_counter() - t
    t = time.perf_counter()
    record["inference"] = check_inference(size, device)
    timings["inference_s"] = time.perf_counter() - t
    t = time.perf_counter()
    record["mixed_state"] = check_mixed_state(size, device)
    timings["mixed_state_s"] = time.perf_counter() - t
    if not args.skip_quality:
        t = time.perf_counter()
        record["chart"] = check_chart(size, device, args.seed)
        timings["chart_s"] = time.perf_counter() - t
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else 0
    t = time.perf_counter()
    record["oom"] = check_oom_half_batch(size, device)
    timings["oom_s"] = time.perf_counter() - t
    free_device_memory(device)
    record["memory"] = {"peak_gib": peak / 1024**3, "before_mib": before / 1024**2, "after_mib": _allocated(device) / 1024**2}
    timings["total_s"] = time.perf_counter() - t0
    record["timings"] = timings
    print_table(record)
    print(f"total {timings['total_s']:.0f} s on {record['device']}")
    write_json(out, provenance(config={"command": "python benchmarks/gpu_acceptance.py " + " ".join(argv or sys.argv[1:])},
                               metrics=record), overwrite=True)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
