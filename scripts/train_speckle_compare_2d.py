"""Which polydisperse representation carries the disk number: the same simulated patterns, the same held-out
split, small models on (a) the radial features, (b) the Patterson peak statistics, (c) both, and (d) the
2-D Patterson CNN joined with both (the shipped ``speckle-poly`` design), each trained for a fixed budget.

    python scripts/train_speckle_compare_2d.py --per-class 200 --cnn-minutes 7

Training patterns: seed 1 (radius law, noise-free + one Poisson copy at 3e4..3e7 photons); held-out: seed 2,
noise-free. Writes benchmarks/results/speckle_compare_2d.json (with this command) and prints a table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_cxdi.io.safe_write import check_output, write_json
from napari_cxdi.provenance import provenance
from napari_cxdi.speckle.evaluate import classification_report
from napari_cxdi.speckle.features import FeatureConfig
from napari_cxdi.speckle.patterson import PattersonNet
from napari_cxdi.speckle.patterson_train import simulate_inputs

ROOT = Path(__file__).resolve().parents[1]
CLASSES = np.arange(2, 21)
NR = FeatureConfig().n_features


def _summary(y, pred) -> dict:
    rep = classification_report(y, pred, CLASSES)
    f1 = {c["class"]: c["f1"] for c in rep["per_class"]}
    return {"accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"],
            "f1_14_20": float(np.mean([f1[c] for c in range(14, 21)])), "per_class_f1": f1}


def _scale(x, ref):
    mean = ref.mean(0)
    return ((x - mean) / (ref.std(0) + 1e-2 * (np.abs(mean) + 1.0))).astype(np.float32)


def mlp(xtr, ytr, xte, epochs=60, seed=0):
    torch.manual_seed(seed)
    x, xt = torch.from_numpy(_scale(xtr, xtr)), torch.from_numpy(_scale(xte, xtr))
    y = torch.from_numpy(np.searchsorted(CLASSES, ytr))
    net = nn.Sequential(nn.Linear(x.shape[1], 256), nn.GELU(), nn.Dropout(0.2), nn.Linear(256, 256), nn.GELU(),
                        nn.Dropout(0.2), nn.Linear(256, len(CLASSES)))
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-3)
    for ep in range(epochs):
        for g in opt.param_groups:
            g["lr"] = 2e-3 * 0.5 * (1 + np.cos(np.pi * ep / epochs))
        net.train()
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 256):
            b = perm[i:i + 256]
            loss = F.cross_entropy(net(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        return CLASSES[net(xt).argmax(1).numpy()]


def cnn(tr, te, minutes, seed=0):
    torch.manual_seed(seed)
    net = PattersonNet(tr["x"].shape[1], len(CLASSES))
    x, xt = torch.from_numpy(_scale(tr["x"], tr["x"])), torch.from_numpy(_scale(te["x"], tr["x"]))
    m, mt = torch.from_numpy(tr["maps"].astype(np.float32)), torch.from_numpy(te["maps"].astype(np.float32))
    y = torch.from_numpy(np.searchsorted(CLASSES, tr["y"]))
    opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    t0, budget, done = time.perf_counter(), minutes * 60, False
    while not done:
        net.train()
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            frac = (time.perf_counter() - t0) / budget
            if frac >= 1:
                done = True
                break
            for g in opt.param_groups:
                g["lr"] = 2e-3 * 0.5 * (1 + np.cos(np.pi * frac))
            b = perm[i:i + 64]
            loss = F.cross_entropy(net(m[b], x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        out = torch.cat([net(mt[i:i + 256], xt[i:i + 256]) for i in range(0, len(xt), 256)])
    return CLASSES[out.argmax(1).numpy()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-class", type=int, default=200)
    p.add_argument("--test-per-class", type=int, default=30)
    p.add_argument("--cnn-minutes", type=float, default=7.0, help="0: skip the CNN")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "speckle_compare_2d.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    check_output(args.json, overwrite=True)
    t0 = time.perf_counter()
    parts = [simulate_inputs(CLASSES, 1, s, min(10, args.per_class - s)) for s in range(0, args.per_class, 10)]
    tr = {k: np.concatenate([q[k] for q in parts]) for k in ("maps", "x", "y")}
    te = simulate_inputs(CLASSES, 2, 0, args.test_per_class, noisy_copies=0)
    print(f"simulated {args.per_class}/class x 2 copies + {args.test_per_class}/class test in "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    rows = []
    for label, cols in (("MLP on radial features (I(q), contrast, moments, fit)", slice(0, NR)),
                        ("MLP on Patterson peak statistics", slice(NR, None)),
                        ("MLP on radial + Patterson peak features", slice(None))):
        t1 = time.perf_counter()
        pred = mlp(tr["x"][:, cols], tr["y"], te["x"][:, cols])
        rows.append({"model": label, "train_minutes": (time.perf_counter() - t1) / 60, **_summary(te["y"], pred)})
        print(f"{label}: macro-F1 {rows[-1]['macro_f1']:.3f}", file=sys.stderr, flush=True)
    if args.cnn_minutes > 0:
        t1 = time.perf_counter()
        pred = cnn(tr, te, args.cnn_minutes)
        rows.append({"model": "Patterson CNN + radial + peak features (speckle-poly design)",
                     "train_minutes": (time.perf_counter() - t1) / 60, **_summary(te["y"], pred)})
    print(f"\npolydisperse (radius law), {args.per_class}/class training (clean + 1 noisy), "
          f"{args.test_per_class}/class held out; CPU, 1 thread, shared machine")
    print(f"{'model':<62} {'acc':>6} {'mF1':>6} {'F1 14-20':>8} {'min':>5}")
    for r in rows:
        print(f"{r['model']:<62} {r['accuracy']:>6.3f} {r['macro_f1']:>6.3f} {r['f1_14_20']:>8.3f} {r['train_minutes']:>5.1f}")
    write_json(args.json, provenance({"per_class": args.per_class, "test_per_class": args.test_per_class,
                                      "cnn_minutes": args.cnn_minutes, "command": "python " + " ".join(sys.argv)},
                                     {"rows": rows, "total_seconds": time.perf_counter() - t0}), overwrite=True)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
