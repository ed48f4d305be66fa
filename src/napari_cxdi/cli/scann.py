"""``napari-cxdi scann train|predict``: SCANN / SCANN+ structure–property models with GA scores."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ConfigError, InputFileError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "scann", help="SCANN/SCANN+: predict properties and per-atom global-attention scores",
        description="Train SCANN/SCANN+ models on QM9 or your own structures, and predict a property per "
                    "structure with a global-attention (GA) score per atom.")
    sub = parser.add_subparsers(dest="scann_command", metavar="ACTION")

    t = sub.add_parser("train", help="train a model (QM9 from qm9pack, or an ase-readable file / database)")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--qm9", metavar="TARGET", help="QM9 target: homo, lumo, gap, alpha, cv, u0, mu")
    src.add_argument("--data", metavar="FILE", help="ase-readable file or ase .db with per-structure properties")
    t.add_argument("--property", action="append", default=[],
                   help="property key in atoms.info / the database (repeat for several); needed with --data")
    t.add_argument("--n", type=int, default=None, help="QM9: random subset size (default: all 130,831)")
    t.add_argument("--split", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"))
    t.add_argument("--variant", choices=["scann", "scann+"], default="scann+")
    t.add_argument("--width", type=int, default=128)
    t.add_argument("--layers", type=int, default=8)
    t.add_argument("--heads", type=int, default=8)
    t.add_argument("--epochs", type=int, default=100)
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--lr-min", type=float, default=1e-4)
    t.add_argument("--patience", type=int, default=30)
    t.add_argument("--time-limit-min", type=float, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto")
    t.add_argument("--jobs", type=int, default=None, help="featurisation processes (default: all cores)")
    t.add_argument("--init-from", default=None, help="transfer learning: start from this checkpoint")
    t.add_argument("--legacy-box", action="store_true", help="official 10 Å molecule box (for comparison)")
    t.add_argument("-o", "--output", required=True, help="checkpoint to write (.pt)")
    t.add_argument("--overwrite", action="store_true")
    t.set_defaults(func=_train)

    p = sub.add_parser("predict", help="predict a property per structure and a GA score per atom")
    p.add_argument("input", help="structure file (xyz, extxyz, traj, cif, db, ...); all frames are used")
    p.add_argument("-m", "--model", default="qm9-homo",
                   help="checkpoint / ensemble path or shipped model name (qm9-homo, qm9-lumo, qm9: both); "
                        "default qm9-homo")
    p.add_argument("-o", "--output", default=None, help="extxyz to write with a ga_score column per atom")
    p.add_argument("--json", default=None, help="also write predictions and GA scores as JSON")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_predict)
    parser.set_defaults(func=lambda args: (parser.print_help(), 1)[1])


def _train(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io.safe_write import check_output
    from ..scann import (ScannConfig, TrainConfig, VoronoiConfig, evaluate, featurize, load_qm9,
                         load_structures, mae, save_checkpoint, split_indices, train_iter)

    out = Path(args.output)
    inputs = [args.data, args.init_from]
    check_output(out, overwrite=args.overwrite, protected=inputs)  # before any work
    if args.data and not args.property:
        raise ConfigError("--data needs at least one --property KEY to learn")
    if args.qm9:
        structures = load_qm9((args.qm9,), n=args.n, seed=args.seed)
    else:
        structures = load_structures(args.data, args.property)
    voronoi = VoronoiConfig(legacy_box=args.legacy_box)
    print(f"featurising {len(structures)} structures ...", file=sys.stderr)
    envs = featurize(structures, voronoi, n_jobs=args.jobs)
    keep = np.flatnonzero(~np.all(np.isnan(envs.targets), axis=1))
    envs = envs.subset(keep)
    fr = np.asarray(args.split, dtype=float)
    fr = fr / fr.sum()
    n_val, n_test = int(round(fr[1] * len(envs))), int(round(fr[2] * len(envs)))
    parts = split_indices(len(envs), [len(envs) - n_val - n_test, n_val, n_test], seed=args.seed)
    if min(len(parts[0]), len(parts[1])) == 0:
        raise ConfigError(f"{len(envs)} structures are too few for the split {tuple(args.split)}")
    train, val, test = (envs.subset(p) for p in parts)
    names = list(envs.target_names)
    model_cfg = ScannConfig(variant=args.variant, width=args.width, n_layers=args.layers, n_heads=args.heads,
                            readout=args.width, n_targets=len(names), target_names=names)
    train_cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_min=args.lr_min,
                            patience=args.patience, seed=args.seed, device=args.device,
                            time_limit_s=None if args.time_limit_min is None else 60 * args.time_limit_min,
                            init_from=args.init_from, checkpoint=str(out))
    result = None
    for prog in train_iter(model_cfg, train, val, train_cfg, voronoi):
        if prog["event"] == "epoch":
            val_txt = ", ".join(f"{n} {v:.4g}" for n, v in zip(names, prog["val_mae"]))
            print(f"epoch {prog['epoch']:4d}  loss {prog['train_loss']:.4f}  val MAE {val_txt}"
                  f"{'  *' if prog['improved'] else ''}", file=sys.stderr)
        elif prog["event"] == "done":
            result = prog["result"]
    metrics = {"val_mae": result.best_val_mae, "best_epoch": result.best_epoch,
               "n_train": len(train), "n_val": len(val), "n_test": len(test)}
    if len(test):
        metrics["test_mae"] = mae(evaluate(result.model, test), test.targets)
    save_checkpoint(out, result.model, voronoi=voronoi, train_config=train_cfg, metrics=metrics,
                    target_units=list(envs.target_units))
    print(json.dumps({"checkpoint": str(out), **metrics}, indent=1))
    return 0


def _predict(args: argparse.Namespace) -> int:
    import warnings

    import numpy as np

    from ..io.safe_write import check_output, write_json
    from ..scann import OutOfDomainWarning, ScannPredictor, export_extxyz, read_atoms

    src = Path(args.input)
    if not src.exists():
        raise InputFileError(src, "file does not exist")
    inputs = [src, args.model if Path(str(args.model)).exists() else None]
    outputs = [Path(o) for o in (args.output, args.json) if o]
    if len(outputs) == 2 and outputs[0].resolve() == outputs[1].resolve():
        raise ConfigError("--output and --json name the same file; choose two names")
    for out in outputs:  # before any work
        check_output(out, overwrite=args.overwrite, protected=inputs)
    frames = read_atoms(src)  # a bad input fails before the model loads
    predictor = ScannPredictor.load(args.model, device=args.device)
    with warnings.catch_warnings():  # the CLI prints the domain per frame instead
        warnings.simplefilter("ignore", OutOfDomainWarning)
        results = predictor.predict(frames)
    n_out = 0
    for k, (atoms, res) in enumerate(zip(frames, results)):
        props = "  ".join(
            f"{n} = {v:.3f}" + (f" ± {res.sigma[n]:.3f}" if np.isfinite(res.sigma.get(n, np.nan)) else "")
            + f" {res.units.get(n, '')}".rstrip() for n, v in res.properties.items())
        top = int(res.ga_scores.argmax())
        print(f"frame {k}: {atoms.get_chemical_formula()}  {props}  "
              f"max GA atom {top} ({atoms[top].symbol}, N*a = {res.relative_ga_scores[top]:.3f})")
        if not res.reliable:
            n_out += 1
            print(f"  WARNING out of domain, unreliable: {res.domain.message()}", file=sys.stderr)
    if n_out:
        print(f"WARNING: {n_out} of {len(results)} structures are outside the model's applicability domain",
              file=sys.stderr)
    if args.output:
        path = export_extxyz(frames, results, args.output, overwrite=args.overwrite, source=src,
                             model=str(args.model), protected=inputs)
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        from ..provenance import provenance

        payload = provenance({"model": str(args.model), "input": str(src), "ensemble_members": predictor.n_members,
                              "members_per_target": {t: len(k) for t, k in predictor.target_members.items()}},
                             None, frames=[r.to_dict() for r in results])
        write_json(args.json, payload, overwrite=args.overwrite, protected=inputs)
    return 0
