"""``napari-cxdi speckle simulate|train|evaluate|classify``: n-disk speckle number-density analysis."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ..errors import ConfigError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "speckle", help="simulate n-disk speckle patterns, train / evaluate / apply the ResNet classifier",
        description="Number density of 2D disk systems from coherent X-ray speckle (seed 001).")
    sub = parser.add_subparsers(dest="speckle_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 1)[1])

    p = sub.add_parser("simulate", help="write a labelled HDF5 dataset of speckle patterns")
    p.add_argument("output", type=Path, help="HDF5 file to write")
    p.add_argument("--n-min", type=int, default=2, help="fewest disks (default 2)")
    p.add_argument("--n-max", type=int, default=20, help="most disks (default 20)")
    p.add_argument("--per-class", type=int, default=100, help="patterns per disk number (default 100)")
    p.add_argument("--window", type=int, default=513, help="pattern side, full-res pixels (513 or 257)")
    p.add_argument("--bin", type=int, default=1, help="store patterns binned by this factor (e.g. 3)")
    p.add_argument("--polydisperse", action="store_true", help="Gaussian radii, sd = mean/3")
    p.add_argument("--contrast", choices=("amplitude", "phase", "mixed"), default="amplitude")
    p.add_argument("--profile", choices=("flat", "sphere"), default="flat", help="disk thickness profile")
    p.add_argument("--phase", type=float, default=0.5, help="phase shift at a disk centre, rad")
    p.add_argument("--absorption", type=float, default=0.0, help="amplitude attenuation mu*t/2 (mixed)")
    p.add_argument("--photons", type=float, default=None, help="Poisson noise at this many photons per pattern")
    p.add_argument("--method", choices=("dft", "analytic"), default="dft",
                   help="rasterised W D W^T DFT (default) or analytic ideal disks (faster, flat amplitude only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_simulate)

    p = sub.add_parser("train", help="train a ResNet on a dataset; writes the checkpoint and a JSON report")
    p.add_argument("dataset", type=Path)
    p.add_argument("--out", type=Path, required=True, help="checkpoint (.pt) to write; the report goes beside it (.json)")
    p.add_argument("--depth", type=int, choices=(18, 34, 50), default=18)
    p.add_argument("--width", type=int, default=16, help="stem width (64 = original ResNet)")
    p.add_argument("--task", choices=("classification", "regression"), default="classification")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=3, help="LR halving / early stopping patience (0 = off)")
    p.add_argument("--no-augment", action="store_true", help="no random flips / transposes")
    p.add_argument("--window", type=int, default=513, help="centred crop fed to the net, full-res pixels")
    p.add_argument("--model-bin", type=int, default=3, help="binning before the net (default 3: 513 -> 171)")
    p.add_argument("--transform", choices=("linear", "log"), default="linear")
    p.add_argument("--test-per-class", type=int, default=None, help="balanced test set (seed: 100)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="random test share if not balanced")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="initialisation / shuffling seed")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--half", action="store_true", help="store float16 weights (half the size)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="score a checkpoint (and the first-moment baseline) on a dataset")
    p.add_argument("model", type=Path)
    p.add_argument("dataset", type=Path)
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    p.add_argument("--baseline-fraction", type=float, default=0.5,
                   help="share of the dataset used to fit the baseline (scored on the rest)")
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("classify", help="predict the disk number of patterns in a file",
                       description="napari-cxdi speckle classify [MODEL] INPUT. MODEL is a shipped model name "
                                   "(speckle-mono (default), speckle-poly, speckle-poly-mixed, speckle-poly-radial, speckle-resnet18-mono) or a "
                                   "checkpoint.")
    p.add_argument("model", nargs="?", default=None,
                   help="model name or checkpoint (default: speckle-mono)")
    p.add_argument("input", type=Path, help=".npy / .npz / .h5 / .tif with (H, W) or (N, H, W) raw intensities")
    p.add_argument("--key", default=None, help="array name inside .npz / HDF5")
    p.add_argument("--input-bin", type=int, default=None, help="binning of the input (HDF5 datasets say)")
    p.add_argument("--top", type=int, default=3, help="show this many most likely classes")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_classify)


def _check_output(path: Path, overwrite: bool, inputs: tuple[Path, ...] = ()) -> None:
    from ..io.safe_write import check_output

    check_output(path, overwrite=overwrite, protected=inputs)


def _write_json(path: Path, record: dict, inputs: tuple[Path, ...] = ()) -> None:
    from ..io.safe_write import write_json

    # the output was checked (exists / --overwrite) before the work; the inputs are protected again
    write_json(path, record, overwrite=True, protected=inputs)


def _simulate(args) -> int:
    from ..speckle.dataset import SpeckleDatasetConfig, write_dataset

    if args.n_max < args.n_min:
        raise ConfigError(f"--n-max {args.n_max} < --n-min {args.n_min}")
    cfg = SpeckleDatasetConfig(
        n_values=tuple(range(args.n_min, args.n_max + 1)), per_class=args.per_class, window=args.window,
        bin=args.bin, polydisperse=args.polydisperse, contrast=args.contrast, profile=args.profile,
        phase=args.phase, absorption=args.absorption, photons=args.photons, method=args.method, seed=args.seed)
    _check_output(Path(args.output), args.overwrite)
    last = -1
    for p in write_dataset(args.output, cfg, args.workers, args.overwrite):
        pct = 100 * p["done"] // p["total"]
        if pct >= last + 10 or p["done"] == p["total"]:
            print(f"simulated {p['done']}/{p['total']} patterns", file=sys.stderr)
            last = pct
    print(f"wrote {args.output}")
    return 0


def _train(args) -> int:
    import torch

    from ..speckle.classifier import save_checkpoint
    from ..speckle.dataset import load_dataset
    from ..speckle.evaluate import format_report
    from ..speckle.patterns import PreprocessConfig
    from ..speckle.pipeline import fit_and_test
    from ..speckle.train import TrainConfig

    _check_output(args.out, args.overwrite, (args.dataset,))
    _check_output(args.out.with_suffix(".json"), args.overwrite, (args.dataset,))
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    pre = PreprocessConfig(window=args.window, bin=args.model_bin, transform=args.transform)
    cfg = TrainConfig(depth=args.depth, width=args.width, task=args.task, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, patience=args.patience or None,
                      augment=not args.no_augment, seed=args.seed, device=args.device)
    command = "napari-cxdi " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""
    gen = fit_and_test(data, pre, cfg, args.test_per_class, args.test_fraction, args.val_fraction,
                       args.split_seed, extra_config={"command": command, "dataset_path": str(args.dataset)})
    from ..progress import drain

    def show(p):
        if p["stage"] == "epoch":
            print(f"epoch {p['epoch']}/{p['epochs']}: loss {p['train_loss']:.4f}, val acc {p['val_accuracy']:.4f}, "
                  f"{p['seconds']:.1f} s", file=sys.stderr)

    clf, report = drain(gen, show)
    save_checkpoint(clf, args.out, half=args.half, protected=(args.dataset,))
    _write_json(args.out.with_suffix(".json"), {**clf.provenance, "test_report": report}, (args.dataset,))
    print(format_report(report["network"], "network (test split)"))
    for name, rep in report["baseline"].items():
        print(f"first-moment baseline ({name}): accuracy {rep['accuracy']:.4f}, macro F1 {rep['macro_f1']:.3f}")
    print(f"wrote {args.out}")
    return 0


def _evaluate(args) -> int:
    import numpy as np

    from ..provenance import provenance
    from ..speckle.classifier import load_checkpoint
    from ..speckle.dataset import load_dataset
    from ..speckle.evaluate import format_report
    from ..speckle.pipeline import baseline_reports, evaluate_classifier

    if args.json is not None:
        _check_output(args.json, args.overwrite, (args.model, args.dataset))
    clf = load_checkpoint(args.model, args.device)
    data = load_dataset(args.dataset)
    report = evaluate_classifier(clf, data)
    print(format_report(report, f"{args.model.name} on {args.dataset.name}"))
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(data.labels))
    cut = int(round(args.baseline_fraction * len(perm)))
    base = baseline_reports(data, clf.preprocess, np.sort(perm[:cut]), np.sort(perm[cut:]))
    for name, rep in base.items():
        print(f"first-moment baseline ({name}, fitted on {cut}, scored on {len(perm) - cut}): "
              f"accuracy {rep['accuracy']:.4f}, macro F1 {rep['macro_f1']:.3f}")
    if args.json is not None:
        _write_json(args.json, provenance({"model": str(args.model), "dataset": str(args.dataset)},
                                          {"network": report, "baseline": base}), (args.model, args.dataset))
        print(f"wrote {args.json}")
    return 0


def _classify(args) -> int:
    import numpy as np

    from ..provenance import provenance
    from ..speckle.dataset import load_patterns
    from ..speckle.models import DEFAULT_MODEL, classify_patterns, load_model

    if args.json is not None:
        _check_output(args.json, args.overwrite, (args.input,))
    patterns, file_bin = load_patterns(args.input, args.key)  # a bad input fails before the model loads
    name = args.model or DEFAULT_MODEL
    clf = load_model(name, args.device)
    result = classify_patterns(patterns, clf, args.input_bin or file_bin, warn=False)
    rows = []
    for i, pred in enumerate(np.atleast_1d(result["pred"])):
        row = {"frame": i, "n": int(pred), "value": float(result["value"][i]), "out_of_domain": bool(result["ood"][i])}
        line = f"frame {i}: n = {int(pred)}"
        if result["probs"] is not None:
            order = np.argsort(result["probs"][i])[::-1][: args.top]
            row["top"] = {int(clf.classes[j]): float(result["probs"][i, j]) for j in order}
            line += "  (" + ", ".join(f"{int(clf.classes[j])}: {result['probs'][i, j]:.3f}" for j in order) + ")"
        else:
            line += f"  (regression {row['value']:.2f})"
        if row["out_of_domain"]:
            line += "  [outside the training domain]"
        rows.append(row)
        print(line)
    for msg in result["warnings"]:
        print(f"warning: {msg}", file=sys.stderr)
    if args.json is not None:
        _write_json(args.json, provenance({"model": str(name), "input": str(args.input)},
                                          {"predictions": rows, "warnings": result["warnings"]}), (args.input,))
    return 0
