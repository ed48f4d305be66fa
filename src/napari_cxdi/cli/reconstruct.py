"""``napari-cxdi train | reconstruct | evaluate``: PID3Net and the iterative baselines, headless."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TRAIN_OPTIONS = ("epochs", "batch_size", "frames", "refine_steps", "width", "lr", "tv_weight", "seed", "device", "image_size",
                 "holdout_fraction")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("movie", type=Path, help="diffraction movie (CXI, NeXus/EIGER, HDF5, TIFF, NPY/NPZ)")
    p.add_argument("--probe", type=Path, default=None, help="probe file (NPY/CXI/HDF5); default: the probe stored in the movie file")
    p.add_argument("--dataset", default=None, help="HDF5 dataset holding the frames, if the file has several")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_training(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("PID3Net settings")
    g.add_argument("--epochs", type=int, default=None, help="training epochs (default 20)")
    g.add_argument("--batch-size", type=int, default=None, help="windows per step (default 4)")
    g.add_argument("--frames", type=int, default=None, help="T, frames per window (default 5)")
    g.add_argument("--refine-steps", type=int, default=None, help="K, refinement steps (default 5)")
    g.add_argument("--width", type=int, default=None, help="F, channels of the first block (default 8)")
    g.add_argument("--image-size", type=int, default=None, help="m, working size (multiple of 16; default frame size rounded up)")
    g.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-3)")
    g.add_argument("--tv-weight", type=float, default=None, help="3D total-variation weight")
    g.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    g.add_argument("--device", default=None, help="auto | cpu | cuda | mps (default auto)")
    g.add_argument("--holdout-fraction", type=float, default=None,
                   help="photons held out by binomial thinning to stop before fitting noise (default 0.1; 0 = off; docs/fidelity.md)")


def _overrides(args) -> dict:
    return {k: getattr(args, k) for k in TRAIN_OPTIONS if getattr(args, k, None) is not None}


def register(subparsers) -> None:
    t = subparsers.add_parser("train", help="train PID3Net on a movie and save a checkpoint")
    _add_common(t)
    t.add_argument("--variant", default="PID3Net-PO", choices=["PID3Net-PO", "PID3Net-MAE", "PID3Net-NR"])
    t.add_argument("--resume", type=Path, default=None, help="continue training from this checkpoint")
    t.add_argument("-o", "--output", type=Path, required=True, help="checkpoint file to write (.pt)")
    t.add_argument("--overwrite", action="store_true")
    _add_training(t)
    t.set_defaults(func=run_train)

    r = subparsers.add_parser("reconstruct", help="reconstruct a movie (PID3Net or a baseline) and write CXI")
    _add_common(r)
    r.add_argument("--method", default="PID3Net-PO", choices=["PID3Net-PO", "PID3Net-MAE", "PID3Net-NR", "mixed-state", "mf-PIE"])
    r.add_argument("--model", type=Path, default=None, help="a trained PID3Net checkpoint to use as it is (no retraining)")
    r.add_argument("--finetune", action="store_true", help="with --model: train it further on this movie first")
    r.add_argument("--max-iter", type=int, default=None, help="iterative methods: iterations per batch (default 300)")
    r.add_argument("--stride", type=int, default=None, help="PID3Net inference window stride (default T; 1 averages all overlaps)")
    r.add_argument("-o", "--output", type=Path, default=None, help="output .cxi (default <movie>_<method>.cxi next to the input)")
    r.add_argument("--save-model", type=Path, default=None, help="also save the trained model here")
    r.add_argument("--overwrite", action="store_true")
    _add_training(r)
    r.set_defaults(func=run_reconstruct)

    e = subparsers.add_parser("evaluate", help="metrics of a reconstruction against the measurement (and ground truth)")
    e.add_argument("reconstruction", type=Path, help="a .cxi written by napari-cxdi reconstruct")
    e.add_argument("movie", type=Path, help="the measured movie")
    e.add_argument("--probe", type=Path, default=None, help="probe file (default: the one in the movie or reconstruction file)")
    e.add_argument("--truth", type=Path, default=None, help="a simulated movie (.cxi from napari-cxdi simulate) with ground truth")
    e.add_argument("--json", type=Path, default=None, help="also write the metrics as JSON here")
    e.set_defaults(func=run_evaluate)


def _load(args):
    from ..io import open_movie

    return open_movie(args.movie, dataset=args.dataset)


def _truth_from(path: Path | None):
    if path is None:
        return None
    import h5py
    import numpy as np

    from ..errors import InputFileError

    with h5py.File(path, "r") as f:
        if "entry_1/napari_cxdi/ground_truth/objects" not in f:
            raise InputFileError(path, "holds no ground truth (expected a file written by napari-cxdi simulate)")
        return np.asarray(f["entry_1/napari_cxdi/ground_truth/objects"][()])


def _print_metrics(metrics: dict, timings: dict | None = None) -> None:
    for key, value in {**metrics, **(timings or {})}.items():
        if isinstance(value, dict):
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        print(f"{key:<24} {value}")


def run_train(args) -> int:
    from ..api import train
    from .progress import ProgressPrinter

    movie = _load(args)
    bar = ProgressPrinter(args.quiet)
    model = train(movie, args.probe, variant=args.variant, checkpoint=args.output, progress=bar,
                  model=args.resume, overwrite=args.overwrite, **_overrides(args))
    bar.close()
    print(f"wrote {args.output} ({model.config.name}, {model.n_parameters()} parameters)")
    return 0


def run_reconstruct(args) -> int:
    from ..api import iter_reconstruction, drain
    from ..io import default_output_path
    from ..io.writer import check_output_path
    from ..pid3net import save_checkpoint
    from .progress import ProgressPrinter

    movie = _load(args)
    output = args.output or default_output_path(args.movie, suffix=args.method.replace("PID3Net-", "pid3net_").lower())
    check_output_path(output, args.overwrite, protected=[args.movie])
    overrides = _overrides(args)
    if args.max_iter is not None:
        overrides["max_iter"] = args.max_iter
    if args.method in ("mixed-state", "mf-PIE"):
        overrides = {k: v for k, v in overrides.items() if k in ("max_iter", "device", "holdout_fraction", "seed")}
    bar = ProgressPrinter(args.quiet)
    result = drain(
        iter_reconstruction(movie, args.probe, args.method, model=args.model, train=args.model is None or args.finetune,
                            inference_stride=args.stride, **overrides),
        bar,
    )
    bar.close()
    result.save(output, metadata=movie.metadata, overwrite=args.overwrite)
    if args.save_model and result.model is not None:
        save_checkpoint(args.save_model, result.model, result.history, overwrite=args.overwrite)
    _print_metrics(result.metrics, result.timings)
    print(f"wrote {output}")
    return 0


def run_evaluate(args) -> int:
    from ..api import evaluate
    from ..io import open_movie, read_hdf5_reconstruction, read_probe

    from ..errors import InputFileError

    recon = read_hdf5_reconstruction(args.reconstruction)
    if recon is None:
        raise InputFileError(args.reconstruction, "holds no reconstruction (entry_1/image_1/data)")
    movie = open_movie(args.movie)
    probe = read_probe(args.probe, movie.shape) if args.probe else movie.probe
    if probe is None:
        from ..io.hdf5 import read_hdf5_probe

        probe = read_hdf5_probe(args.reconstruction)
    metrics = evaluate(recon.compute(), movie.data, probe, movie.pixel_size_nm, _truth_from(args.truth),
                       movie.metadata.get("frame_interval_s") if movie.metadata.get("velocity_nm_s") else None)
    _print_metrics(metrics)
    if args.json:
        from ..provenance import to_jsonable

        args.json.write_text(json.dumps(to_jsonable(metrics), indent=1))
    return 0
