"""Reproduce seed 001's table (speckle -> number of disks) at a stated size, with the first-moment baseline.

Rows (seed's value in brackets):
  mono-257      monodisperse, 257 x 257 window, balanced test            [99.9 %, 1 error in 1900]
  transfer-513  the mono-257 network applied to the 513 x 513 window      [3 errors in 1900]
  mono-513      network trained on the 513 window                         [-]
  poly-257      polydisperse (radius sd = mean/3), random test split      [macro F1 0.89]
  noisy-513     monodisperse 513 window with Poisson noise (--photons)    [- (seed: open question)]
Every row also shows the first-moment baseline (mean |q| weighted by intensity, raw pattern, same window
and split) with the nearest-class and the quadratic-regression read-out.

    python benchmarks/bench_speckle_resnet.py --quick    # CPU, a few minutes (60 patterns per class)
    python benchmarks/bench_speckle_resnet.py --full     # GPU: the seed's 1000 per class, ResNet-50, 100 epochs

Prints a table and writes JSON (``--json``, default ``benchmarks/results/bench_speckle_resnet_<size>.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

from napari_cxdi.devices import resolve_device
from napari_cxdi.provenance import provenance
from napari_cxdi.speckle.dataset import SpeckleDatasetConfig, make_dataset, split_indices
from napari_cxdi.speckle.evaluate import classification_report
from napari_cxdi.speckle.patterns import PreprocessConfig, prepare
from napari_cxdi.speckle.pipeline import baseline_reports, fit_and_test
from napari_cxdi.speckle.train import TrainConfig

SIZES = {
    "quick": dict(per_class=60, test_per_class=10, bin=3, depth=18, width=16, epochs=20, batch_size=32,
                  max_minutes=2.5),
    "full": dict(per_class=1000, test_per_class=100, bin=1, depth=50, width=64, epochs=100, batch_size=40,
                 max_minutes=None),
}
SEED_VALUES = {"mono-257": "acc 0.999 (1/1900 errors)", "transfer-513": "acc 0.998 (3/1900 errors)",
               "mono-513": "-", "poly-257": "macro F1 0.89", "noisy-513": "-"}


def _train(name, data, window, size, args, test_per_class, log):
    pre = PreprocessConfig(window=window, bin=size["bin"], transform=args.transform)
    cfg = TrainConfig(depth=size["depth"], width=size["width"], epochs=size["epochs"],
                      batch_size=size["batch_size"], lr=args.lr, patience=3, seed=args.seed, device=args.device,
                      max_seconds=size["max_minutes"] * 60 if size["max_minutes"] else None)
    t0 = time.perf_counter()
    gen = fit_and_test(data, pre, cfg, test_per_class=test_per_class, test_fraction=0.1, val_fraction=0.1,
                       split_seed=args.seed)
    from napari_cxdi.progress import drain

    def show(p):
        if p["stage"] == "epoch":
            log(f"  [{name}] epoch {p['epoch']}: loss {p['train_loss']:.3f} val acc {p['val_accuracy']:.3f} ({p['seconds']:.0f} s)")

    clf, report = drain(gen, show)
    report["train_seconds"] = time.perf_counter() - t0
    report["epochs_run"] = clf.provenance["metrics"]["epochs_run"]
    return clf, report


def _row(name, report):
    net, base = report["network"], report["baseline"]
    return {"experiment": name, "n_train": report["split"]["train"], "n_test": report["split"]["test"],
            "accuracy": net["accuracy"], "macro_f1": net["macro_f1"], "errors": net["errors"],
            "errors_gt1": net["errors_gt1"], "baseline_nearest_accuracy": base["nearest"]["accuracy"],
            "baseline_nearest_macro_f1": base["nearest"]["macro_f1"],
            "baseline_regression_accuracy": base["regression"]["accuracy"], "seed_paper": SEED_VALUES[name],
            "train_seconds": round(report.get("train_seconds", 0.0), 1), "epochs_run": report.get("epochs_run")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="CPU size (default)")
    g.add_argument("--full", action="store_true", help="the seed's size; needs a GPU")
    p.add_argument("--per-class", type=int, default=None, help="override the patterns per class")
    p.add_argument("--max-minutes", type=float, default=None, help="override the training time cap per model")
    p.add_argument("--photons", type=float, default=1e4, help="expected photons per noisy pattern")
    p.add_argument("--transform", choices=("linear", "log"), default="log")
    p.add_argument("--method", choices=("analytic", "dft"), default="analytic")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--only", nargs="*", default=None, help="subset of: mono poly noisy mono513")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    size_name = "full" if args.full else "quick"
    size = dict(SIZES[size_name])
    if args.per_class:
        size["per_class"] = args.per_class
    if args.max_minutes:
        size["max_minutes"] = args.max_minutes
    if args.threads:
        torch.set_num_threads(args.threads)
    only = set(args.only or ["mono", "mono513", "poly", "noisy"])
    out_path = args.json or Path(__file__).resolve().parent / "results" / f"bench_speckle_resnet_{size_name}.json"
    t_start = time.perf_counter()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    device = resolve_device(args.device)
    log(f"size {size_name}: {size} on {device}, {torch.get_num_threads()} threads")

    def simulate(**kw):
        cfg = SpeckleDatasetConfig(per_class=size["per_class"], window=513, bin=size["bin"], method=args.method,
                                   seed=args.seed, **kw)
        t0 = time.perf_counter()
        data = make_dataset(cfg, args.workers)
        log(f"simulated {len(data.labels)} patterns {kw or ''} in {time.perf_counter() - t0:.0f} s")
        return data

    rows, reports = [], {}
    tpc = size["test_per_class"]
    if only & {"mono", "mono513"}:
        mono = simulate()
        if "mono" in only:
            clf, rep = _train("mono-257", mono, 257, size, args, tpc, log)
            rows.append(_row("mono-257", rep))
            reports["mono-257"] = rep
            # transfer: the same network, the same test patterns, now the full 513 window
            tr, _, te = split_indices(mono.labels, tpc, 0.1, 0.1, args.seed)
            clf513 = dataclasses.replace(clf, preprocess=dataclasses.replace(clf.preprocess, window=513))
            pred = clf513.predict_prepared(prepare(mono.patterns[te], clf513.preprocess, mono.bin))["pred"]
            rep513 = {"network": classification_report(mono.labels[te], pred, clf.classes),
                      "baseline": baseline_reports(mono, clf513.preprocess, tr, te),
                      "split": rep["split"], "train_seconds": 0.0, "epochs_run": rep["epochs_run"]}
            rows.append(_row("transfer-513", rep513))
            reports["transfer-513"] = rep513
        if "mono513" in only:
            _, rep = _train("mono-513", mono, 513, size, args, tpc, log)
            rows.append(_row("mono-513", rep))
            reports["mono-513"] = rep
        del mono
    if "poly" in only:
        poly = simulate(polydisperse=True)
        _, rep = _train("poly-257", poly, 257, size, args, None, log)
        rows.append(_row("poly-257", rep))
        reports["poly-257"] = rep
        del poly
    if "noisy" in only:
        noisy = simulate(photons=args.photons)
        _, rep = _train("noisy-513", noisy, 513, size, args, tpc, log)
        rows.append(_row("noisy-513", rep))
        reports["noisy-513"] = rep
        del noisy

    header = f"{'experiment':<13} {'train':>6} {'test':>5} {'acc':>6} {'F1':>6} {'err':>4} {'err>1':>5} " \
             f"{'FM-near':>7} {'FM-reg':>6}  seed paper"
    print(f"\nspeckle benchmark ({size_name}: {size['per_class']} patterns/class, n = 2..20, ResNet-{size['depth']} "
          f"width {size['width']}, bin {size['bin']}, {args.transform}, {args.method} patterns, device {device})")
    print(header)
    for r in rows:
        print(f"{r['experiment']:<13} {r['n_train']:>6} {r['n_test']:>5} {r['accuracy']:>6.3f} {r['macro_f1']:>6.3f} "
              f"{r['errors']:>4} {r['errors_gt1']:>5} {r['baseline_nearest_accuracy']:>7.3f} "
              f"{r['baseline_regression_accuracy']:>6.3f}  {r['seed_paper']}")
    if "poly-257" in reports:
        net = reports["poly-257"]["network"]["per_class"]
        base = reports["poly-257"]["baseline"]["nearest"]["per_class"]
        print("\npoly-257 per class (network precision / recall / F1 | first-moment F1)")
        for a, b in zip(net, base):
            print(f"  {a['class']:>3}  {a['precision']:.2f} {a['recall']:.2f} {a['f1']:.2f} | {b['f1']:.2f}  (n={a['support']})")
    record = provenance({"size": size_name, **size, "photons": args.photons, "transform": args.transform,
                         "method": args.method, "seed": args.seed, "device": str(device),
                         "threads": torch.get_num_threads(), "command": " ".join(sys.argv)},
                        {"rows": rows, "reports": reports, "total_seconds": time.perf_counter() - t_start})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, out_path)
    print(f"\nwrote {out_path} ({(time.perf_counter() - t_start) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
