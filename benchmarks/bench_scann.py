#!/usr/bin/env python
"""SCANN / SCANN+ benchmark: QM9 HOMO/LUMO MAE against the thesis table, featurisation speed,
parameter counts. Prints a table and writes JSON (with provenance).

    python benchmarks/bench_scann.py --quick          # CPU, a few minutes, stated QM9 subset
    python benchmarks/bench_scann.py --full           # paper split 110,000/10,000/10,831 (GPU, hours)

Thesis (SPEC §6), QM9 MAE in meV: SCANN HOMO 41 / LUMO 37, SCANN+ 32 / 31 (full data, width 128,
8 layers). ``--quick`` numbers come from a tiny subset and a minute of training per model, so
they are far above the paper's; they show the pipeline works and let runs be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_cxdi.devices import resolve_device
from napari_cxdi.provenance import provenance
from napari_cxdi.scann.data import publish
from napari_cxdi.scann import (ScannConfig, TrainConfig, VoronoiConfig, build_model, evaluate, featurize,
                               load_qm9, mae, split_indices, train_iter)

PAPER_MEV = {"scann": {"homo": 41, "lumo": 37}, "scann+": {"homo": 32, "lumo": 31}}


def featurisation_speed(n: int, jobs: int, seed: int = 123) -> dict:
    s = load_qm9(("homo",), n=n, seed=seed)
    out = {}
    for j in sorted({1, jobs}):
        t = time.perf_counter()
        featurize(s, VoronoiConfig(), n_jobs=j, cache=False)
        dt = time.perf_counter() - t
        out[f"{j}_process"] = round(n / dt, 1)
    return {"n_structures": n, "structures_per_s": out, "mean_atoms": float(np.mean([len(z) for z in s.numbers]))}


def run_mae(args, device) -> list[dict]:
    if args.full:
        sizes, n_total = [110_000, 10_000, 10_831], None
        arch = dict(width=128, n_layers=8, n_heads=8, readout=128, dropout=0.1)
        train = dict(epochs=args.epochs or 1000, batch_size=128, lr=5e-4, lr_min=1e-4, restart_epochs=50,
                     patience=150)
    else:
        n_total = args.n_total
        n_val = n_test = n_total // 10
        sizes = [n_total - n_val - n_test, n_val, n_test]
        arch = dict(width=args.width, n_layers=args.layers, n_heads=4, readout=args.width, dropout=0.0)
        train = dict(epochs=args.epochs or 200, batch_size=32, lr=2e-3, lr_min=2e-4, restart_epochs=1000,
                     patience=1000)
    t = time.perf_counter()
    structures = load_qm9(("homo", "lumo"), n=n_total, seed=args.seed)
    envs = featurize(structures, VoronoiConfig(), n_jobs=args.jobs)
    t_feat = time.perf_counter() - t
    tr_i, va_i, te_i = split_indices(len(envs), sizes, seed=args.seed)
    rows = []
    for variant in args.variants:
        for ti, target in enumerate(("homo", "lumo")):
            part = envs.subset(np.arange(len(envs)))
            part.targets = envs.targets[:, ti:ti + 1]
            part.target_names, part.target_units = [target], ["eV"]
            tr, va, te = part.subset(tr_i), part.subset(va_i), part.subset(te_i)
            cfg = ScannConfig(variant=variant, target_names=[target], **arch)
            tcfg = TrainConfig(device=str(device), seed=args.seed, log_every=10_000,
                               time_limit_s=args.minutes_per_model * 60 if args.minutes_per_model else None, **train)
            t0 = time.perf_counter()
            for prog in train_iter(cfg, tr, va, tcfg):
                if prog["event"] == "epoch" and args.verbose:
                    print(f"  {variant} {target} epoch {prog['epoch']} val {1000 * prog['val_mae'][0]:.1f} meV",
                          flush=True)
                if prog["event"] == "done":
                    result = prog["result"]
            test_mae = 1000 * mae(evaluate(result.model, te), te.targets)[0]
            mean_mae = 1000 * float(np.mean(np.abs(te.targets[:, 0] - tr.targets[:, 0].mean())))
            rows.append({"model": variant, "target": target, "test_mae_meV": round(test_mae, 1),
                         "paper_meV": PAPER_MEV[variant][target], "mean_predictor_meV": round(mean_mae, 1),
                         "n_train": len(tr), "n_val": len(va), "n_test": len(te),
                         "epochs": len(result.history), "train_s": round(time.perf_counter() - t0, 1),
                         "n_parameters": result.model.n_parameters(), "featurisation_s": round(t_feat, 1)})
            print(f"{variant:7s} {target:5s} test MAE {test_mae:7.1f} meV (paper {PAPER_MEV[variant][target]}, "
                  f"mean predictor {mean_mae:.1f}) epochs {len(result.history)}", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="CPU subset run (default)")
    mode.add_argument("--full", action="store_true", help="full QM9 paper split (GPU)")
    p.add_argument("--n-total", type=int, default=3000, help="--quick: QM9 subset size (80/10/10 split)")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--minutes-per-model", type=float, default=None,
                   help="wall-time cap per trained model (default: 0.75 for --quick, none for --full)")
    p.add_argument("--variants", nargs="+", default=["scann", "scann+"], choices=["scann", "scann+"])
    p.add_argument("--speed-n", type=int, default=400, help="structures timed for featurisation speed")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--skip-mae", action="store_true")
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--out", default="benchmarks/results/bench_scann.json")
    args = p.parse_args(argv)
    if not args.full and args.minutes_per_model is None:
        args.minutes_per_model = 0.75
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)

    params = {v: build_model(ScannConfig(variant=v)).n_parameters() for v in ("scann", "scann+")}
    speed = featurisation_speed(args.speed_n, args.jobs)
    rows = [] if args.skip_mae else run_mae(args, device)

    print("\nSCANN benchmark (" + ("full QM9 split" if args.full else f"quick: QM9 subset of {args.n_total}")
          + f", device {device})")
    print(f"{'model':8s} {'target':6s} {'test MAE meV':>13s} {'paper meV':>10s} {'mean-pred meV':>14s} "
          f"{'n_train':>8s} {'epochs':>7s} {'params':>8s}")
    for r in rows:
        print(f"{r['model']:8s} {r['target']:6s} {r['test_mae_meV']:13.1f} {r['paper_meV']:10d} "
              f"{r['mean_predictor_meV']:14.1f} {r['n_train']:8d} {r['epochs']:7d} {r['n_parameters']:8d}")
    print(f"paper-size parameters (width 128, 8 layers, 8 heads): SCANN {params['scann']:,}, "
          f"SCANN+ {params['scann+']:,} (< 1 M: {max(params.values()) < 1_000_000})")
    print(f"featurisation ({speed['n_structures']} QM9 molecules, {speed['mean_atoms']:.1f} atoms mean): "
          + ", ".join(f"{k.replace('_', ' ')}: {v} structures/s" for k, v in speed["structures_per_s"].items()))

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = provenance(vars(args), {"qm9": rows, "parameters_paper_size": params, "featurisation": speed},
                        device=str(device), cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads())
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1)
    publish(tmp, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
