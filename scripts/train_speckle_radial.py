"""Train a shipped radial speckle model (``speckle-mono`` / ``speckle-poly``) on freshly simulated patterns.

    python scripts/train_speckle_radial.py mono --minutes 12     # -> sample_data/models/speckle_radial_mono.pt
    python scripts/train_speckle_radial.py poly --minutes 15     # -> sample_data/models/speckle_radial_poly.pt
    python scripts/train_speckle_radial.py poly --refit          # redo read-out, temperature, domain check

Streams n = 2..20 disk patterns (513 window binned 3 x 3, analytic disks, seed 1), each as a noise-free
copy and two Poisson-noise copies at 3e4..3e7 photons; validation (temperature, domain check) uses seed
2. The held-out test split (seed 4) and the baseline's own split (seed 3) are in benchmarks/bench_speckle.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from napari_cxdi.io.safe_write import check_output
from napari_cxdi.progress import drain
from napari_cxdi.speckle.radial import save_radial
from napari_cxdi.speckle.radial_train import RadialTrainConfig, train_radial

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=("mono", "poly"))
    p.add_argument("--minutes", type=float, default=12.0, help="wall-time budget (simulation + training)")
    p.add_argument("--arch", choices=("mlp", "cnn1d"), default="mlp")
    p.add_argument("--workers", type=int, default=1, help="simulation processes")
    p.add_argument("--val-per-class", type=int, default=40)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--init", type=Path, default=None,
                   help="continue training this model (new patterns: give another --seed)")
    p.add_argument("--seed", type=int, default=1, help="training pattern seed (validation: 2, baseline: 3, test: 4)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--noisy-copies", type=int, default=2)
    p.add_argument("--refit", action="store_true",
                   help="keep the network of the existing model; refit the one-disk-fit read-out (on 40 training "
                        "patterns per class, seed 1), the temperature and the domain statistics (validation, seed 2)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = args.out or ROOT / "sample_data" / "models" / f"speckle_radial_{args.kind}.pt"
    if args.refit:
        return refit(out, args)
    check_output(out, overwrite=args.overwrite)
    cfg = RadialTrainConfig(kind=args.kind, arch=args.arch, max_minutes=args.minutes, workers=args.workers,
                            val_per_class=args.val_per_class, seed=args.seed, lr=args.lr,
                            noisy_copies=args.noisy_copies)
    init = None
    if args.init is not None:
        from napari_cxdi.speckle.radial import load_radial

        init = load_radial(args.init)
    t0 = time.perf_counter()

    def show(p):
        if p["stage"] != "epoch" or p["epoch"] % 20 == 1:
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items()}, file=sys.stderr, flush=True)

    clf = drain(train_radial(cfg, name=f"speckle-{args.kind}", init=init), show)
    clf.provenance.setdefault("config", {})["command"] = "python " + " ".join(sys.argv)
    m = clf.provenance["metrics"]
    if init is not None:
        before = init.provenance.get("metrics", {})
        m["train_seconds_total"] = m["train_seconds"] + before.get("train_seconds_total", before.get("train_seconds", 0))
        m["patterns_per_class_total"] = m["patterns_per_class"] + before.get(
            "patterns_per_class_total", before.get("patterns_per_class", 0))
    save_radial(clf, out, overwrite=args.overwrite)
    print(f"validation accuracy {m['validation']['accuracy']:.4f}, macro F1 {m['validation']['macro_f1']:.4f}, "
          f"T = {m['temperature']:.3f}, ECE {m['val_ece_before']:.4f} -> {m['val_ece_after']:.4f}, "
          f"{m['patterns_per_class']} patterns/class, {(time.perf_counter() - t0) / 60:.1f} min; wrote {out}")
    return 0


def refit(path: Path, args) -> int:
    import numpy as np

    from napari_cxdi.speckle.calibration import reliability
    from napari_cxdi.speckle.evaluate import classification_report
    from napari_cxdi.speckle.radial import domain_statistics, fit_readout, load_radial
    from napari_cxdi.speckle.radial_train import simulate_features

    t0 = time.perf_counter()
    clf = load_radial(path)
    cfg = RadialTrainConfig.from_dict(clf.provenance["config"]["train"])
    kw = dict(photons=cfg.photons, noisy_copies=cfg.noisy_copies, clean=cfg.clean, features=cfg.features)
    tr = simulate_features(cfg.kind, cfg.n_values, cfg.seed, 0, 40, **kw)
    va = simulate_features(cfg.kind, cfg.n_values, cfg.val_seed, 0, args.val_per_class, **kw)
    clf.readout = {}
    logits = clf.logits(va["x"])
    yv = np.searchsorted(clf.classes, va["y"])
    chosen = fit_readout(clf, tr["x"], tr["y"], va["x"], va["y"])
    before = reliability(np.exp(logits - logits.max(1, keepdims=True)) / np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True), yv)
    probs = clf.predict_features(va["x"])["probs"]
    after = reliability(probs, yv)
    domain_statistics(clf, va["x"], va["y"])
    rep = classification_report(va["y"], clf.classes[probs.argmax(1)], clf.classes)
    m = clf.provenance.setdefault("metrics", {})
    m.update({"validation": {k: rep[k] for k in ("accuracy", "macro_f1", "n", "errors")},
              "temperature": clf.temperature, "readout_weight": chosen["weight"], "val_ece_before": before["ece"],
              "val_ece_after": after["ece"], "refit_seconds": time.perf_counter() - t0})
    clf.provenance["config"]["refit_command"] = "python " + " ".join(sys.argv)
    save_radial(clf, path, overwrite=True)
    print(f"refit {path.name}: read-out weight {chosen['weight']}, T = {clf.temperature:.3f}, validation accuracy "
          f"{rep['accuracy']:.4f}, macro F1 {rep['macro_f1']:.4f}, ECE {before['ece']:.4f} -> {after['ece']:.4f} "
          f"({(time.perf_counter() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
