"""Train the Patterson speckle model (shipped as ``speckle-poly``) on freshly simulated polydisperse patterns.

    python scripts/train_speckle_patterson.py --minutes 45 --out sample_data/models/speckle_patterson_poly.pt

Streams n = 2..20 polydisperse disk patterns (513 window binned 3 x 3, analytic disks, seed 11; the two
polydispersity laws alternate: radius sd = mean/3 and the seed code's area law), each as a noise-free copy
and one Poisson-noise copy at 3e4..3e7 photons; validation (temperature, domain check) uses seed 12. The
held-out test split (seed 4) and the baseline's split (seed 3) are in benchmarks/bench_speckle.py. Prints
wall and CPU time (main process = training, children = simulation).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from napari_cxdi.io.safe_write import check_output
from napari_cxdi.progress import drain
from napari_cxdi.speckle.patterson import save_patterson
from napari_cxdi.speckle.patterson_train import PattersonTrainConfig, train_patterson

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=45.0, help="wall-time budget (simulation + training)")
    p.add_argument("--workers", type=int, default=1, help="simulation processes")
    p.add_argument("--laws", default="radius,area", help="polydispersity laws mixed in training")
    p.add_argument("--val-per-class", type=int, default=30)
    p.add_argument("--chunk-per-class", type=int, default=4)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--seed", type=int, default=11, help="training pattern seed (validation: 12, baseline: 3, test: 4)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--max-pool", type=int, default=60000)
    p.add_argument("--ordinal-weight", type=float, default=0.0, help="weight of the expected-count squared error")
    p.add_argument("--augment", action="store_true", help="random symmetric view of each map in training")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the training steps")
    p.add_argument("--epochs-per-chunk", type=float, default=2.0, help="passes over the pool before waiting for new patterns")
    p.add_argument("--out", type=Path, default=ROOT / "sample_data" / "models" / "speckle_patterson_poly.pt")
    p.add_argument("--name", default="speckle-poly")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--init", type=Path, default=None, help="continue training this model (give another --seed)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    check_output(args.out, overwrite=args.overwrite)
    cfg = PattersonTrainConfig(poly_laws=tuple(args.laws.split(",")), max_minutes=args.minutes, workers=args.workers,
                               val_per_class=args.val_per_class, chunk_per_class=args.chunk_per_class,
                               width=args.width, seed=args.seed, lr=args.lr, max_pool=args.max_pool,
                               ordinal_weight=args.ordinal_weight, epochs_per_chunk=args.epochs_per_chunk,
                               augment=args.augment, bf16=args.bf16)
    t0 = time.perf_counter()

    def show(p):
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items()}, file=sys.stderr, flush=True)

    init = None
    if args.init is not None:
        from napari_cxdi.speckle.patterson import load_patterson

        init = load_patterson(args.init)
    clf = drain(train_patterson(cfg, name=args.name, init=init), show)
    clf.provenance.setdefault("config", {})["command"] = "python " + " ".join(sys.argv)
    m = clf.provenance["metrics"]
    if init is not None:   # totals over the runs
        runs = clf.provenance["config"]["history"]
        for key in ("train_seconds", "cpu_seconds_main", "cpu_seconds_simulation", "patterns_per_class"):
            m[key + "_total"] = m[key] + sum(r.get(key) or 0 for r in runs)
    save_patterson(clf, args.out, overwrite=args.overwrite)
    print(f"validation accuracy {m['validation']['accuracy']:.4f}, macro F1 {m['validation']['macro_f1']:.4f}, "
          f"T = {m['temperature']:.3f}, ECE {m['val_ece_before']:.4f} -> {m['val_ece_after']:.4f}, "
          f"{m['patterns_per_class']} patterns/class, wall {m['train_seconds'] / 60:.1f} min, CPU "
          f"{m['cpu_seconds_main'] / 60:.1f} min (training) + {m['cpu_seconds_simulation'] / 60:.1f} min (simulation); "
          f"total {(time.perf_counter() - t0) / 60:.1f} min; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
