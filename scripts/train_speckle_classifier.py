"""Train the shipped speckle classifier ``sample_data/models/speckle_resnet18_mono.pt``.

Monodisperse n = 2..20 disks, 513 x 513 window (9x-oversampled k grid), binned 3 -> 171 x 171,
log transform + per-pattern standardisation, ResNet-18 (stem width 16), Adam + cross-entropy.
The test set is balanced (``--test-per-class`` per class, the seed's protocol) and never used for
model selection; its accuracy and the first-moment baseline on the same split go into the JSON
written beside the checkpoint, together with the exact command.

    python scripts/train_speckle_classifier.py            # ~15-20 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from napari_cxdi.speckle.classifier import save_checkpoint
from napari_cxdi.speckle.dataset import SpeckleDatasetConfig, make_dataset
from napari_cxdi.speckle.evaluate import format_report
from napari_cxdi.speckle.patterns import PreprocessConfig
from napari_cxdi.speckle.pipeline import fit_and_test
from napari_cxdi.speckle.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "sample_data" / "models" / "speckle_resnet18_mono.pt")
    p.add_argument("--per-class", type=int, default=160)
    p.add_argument("--test-per-class", type=int, default=20)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--polydisperse", action="store_true")
    p.add_argument("--method", choices=("analytic", "dft"), default="analytic")
    p.add_argument("--photons", type=float, default=None)
    p.add_argument("--window", type=int, default=513)
    p.add_argument("--bin", type=int, default=3)
    p.add_argument("--transform", choices=("linear", "log"), default="log")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--depth", type=int, default=18)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--time-limit-min", type=float, default=15.0, help="stop training after the epoch passing this")
    p.add_argument("--data-seed", type=int, default=2024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)

    if args.out.exists() and not args.overwrite:
        print(f"{args.out} exists; pass --overwrite", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *(argv or sys.argv[1:])])
    t0 = time.perf_counter()
    dcfg = SpeckleDatasetConfig(per_class=args.per_class, window=args.window, bin=args.bin,
                                polydisperse=args.polydisperse, photons=args.photons, method=args.method,
                                seed=args.data_seed)
    total = len(dcfg.n_values) * dcfg.per_class
    print(f"simulating {total} patterns ({args.method}) ...", flush=True)
    data = make_dataset(dcfg, args.workers)
    t_sim = time.perf_counter() - t0
    print(f"simulated in {t_sim:.0f} s", flush=True)

    pre = PreprocessConfig(window=args.window, bin=args.bin, transform=args.transform)
    tcfg = TrainConfig(depth=args.depth, width=args.width, epochs=args.epochs, batch_size=args.batch_size,
                       lr=args.lr, patience=args.patience, seed=args.seed, device="auto",
                       max_seconds=args.time_limit_min * 60)
    gen = fit_and_test(data, pre, tcfg, test_per_class=args.test_per_class, val_fraction=args.val_fraction,
                       split_seed=args.seed, extra_config={"command": command})
    from napari_cxdi.progress import drain

    def show(prog):
        if prog["stage"] == "epoch":
            print(f"epoch {prog['epoch']}: loss {prog['train_loss']:.4f} val acc {prog['val_accuracy']:.4f} "
                  f"lr {prog['lr']:.1e} ({prog['seconds']:.0f} s)", flush=True)

    clf, report = drain(gen, show)
    t_all = time.perf_counter() - t0
    save_checkpoint(clf, args.out, half=True)
    net = report["network"]
    summary = {
        "command": command,
        "checkpoint": args.out.name,
        "checkpoint_bytes": args.out.stat().st_size,
        "weights": "float16 (loaded as float32)",
        "dataset": {**dcfg.to_dict(), "n_patterns": total},
        "split": report["split"],
        "seeds": {"data_seed": args.data_seed, "split_and_init_seed": args.seed},
        "test_accuracy": net["accuracy"],
        "test_macro_f1": net["macro_f1"],
        "test_errors": net["errors"],
        "test_errors_gt1": net["errors_gt1"],
        "baseline_first_moment_nearest_accuracy": report["baseline"]["nearest"]["accuracy"],
        "baseline_first_moment_regression_accuracy": report["baseline"]["regression"]["accuracy"],
        "simulation_seconds": round(t_sim, 1),
        "total_seconds": round(t_all, 1),
        "threads": args.threads,
        "note": "honest held-out test split (balanced per class, never used for model selection); "
                "training patterns use ideal (analytic) disks, the same k grid as the rasterised DFT",
        **clf.provenance,
        "test_report": report,
    }
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, args.out.with_suffix(".json"))
    print(format_report(net, "test split"))
    print(f"first-moment baseline: nearest {summary['baseline_first_moment_nearest_accuracy']:.4f}, "
          f"regression {summary['baseline_first_moment_regression_accuracy']:.4f}")
    print(f"wrote {args.out} ({summary['checkpoint_bytes'] / 1e6:.2f} MB) in {t_all / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
