"""Turn on test-time averaging over the 4 symmetric views of the Patterson map for a trained Patterson model
and refit its temperature with it (validation seed 12, both polydispersity laws, noise-free + one noisy copy).

    python scripts/train_speckle_patterson_tta.py sample_data/models/speckle_patterson_poly.pt --per-class 15
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_cxdi.speckle.calibration import fit_temperature, reliability
from napari_cxdi.speckle.evaluate import classification_report
from napari_cxdi.speckle.patterson import load_patterson, save_patterson
from napari_cxdi.speckle.patterson_train import PattersonTrainConfig, simulate_inputs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path)
    p.add_argument("--per-class", type=int, default=15)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    clf = load_patterson(args.model)
    cfg = PattersonTrainConfig.from_dict(clf.provenance["config"]["train"])
    val = simulate_inputs(cfg.n_values, cfg.val_seed, 0, args.per_class, poly_laws=cfg.poly_laws,
                          photons=cfg.photons, noisy_copies=cfg.noisy_copies, features=cfg.features, half=cfg.half)
    classes = np.asarray(clf.classes)
    y = np.searchsorted(classes, val["y"])
    m = clf.provenance.setdefault("metrics", {})
    out = {}
    for tta in (False, True):
        clf.tta = tta
        logits = clf.logits_maps(val["maps"].astype(np.float32), val["x"])
        t = fit_temperature(logits, y)
        probs = torch.softmax(torch.from_numpy(logits / t), 1).numpy()
        rep = classification_report(val["y"], classes[probs.argmax(1)], classes)
        out[tta] = {"temperature": t, "accuracy": rep["accuracy"], "macro_f1": rep["macro_f1"],
                    "ece": reliability(probs, y)["ece"]}
        print(f"tta {tta}: accuracy {rep['accuracy']:.4f}, macro-F1 {rep['macro_f1']:.4f}, T = {t:.3f}, "
              f"ECE {out[tta]['ece']:.4f}", flush=True)
    clf.tta = True
    clf.temperature = out[True]["temperature"]
    m["tta"] = {"without": out[False], "with": out[True], "per_class": args.per_class,
                "seconds": time.perf_counter() - t0}
    clf.provenance["config"]["tta_command"] = "python " + " ".join(sys.argv)
    save_patterson(clf, args.model, overwrite=True)
    print(f"wrote {args.model} ({(time.perf_counter() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
