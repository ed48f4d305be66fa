"""``napari-cxdi train | reconstruct | evaluate``: PID3Net and the iterative baselines, headless."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .detector_options import add_detector_options, detector_settings

TRAIN_OPTIONS = ("epochs", "batch_size", "frames", "refine_steps", "width", "lr", "tv_weight", "seed", "device", "image_size",
                 "holdout_fraction")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("movie", type=Path, help="diffraction movie (CXI, NeXus/EIGER, HDF5, TIFF, NPY/NPZ)")
    p.add_argument("--probe", type=Path, default=None,
                   help="probe file: NPY/NPZ, CXI, PyNX result .cxi, ptypy .ptyr, cdtools .h5/.pt, pty-chi; "
                        "default: the probe stored in the movie file")
    p.add_argument("--probe-dataset", default=None, help="HDF5 path or NPZ key of the probe, if the probe file has several")
    p.add_argument("--probe-opr", choices=["first", "mean"], default="first",
                   help="pty-chi [n_opr, modes, H, W] probes: use the first OPR mode (default) or their mean")
    p.add_argument("--no-probe-resample", action="store_true",
                   help="refuse a probe whose pixel size differs from the data's instead of resampling it")
    p.add_argument("--dataset", default=None, help="HDF5 dataset or NPZ key holding the frames, if the file has several")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_detector_options(p)


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
    t.add_argument("--distributed", action="store_true",
                   help="DDP over the processes of a torchrun job (automatic when torchrun sets WORLD_SIZE > 1): "
                   "torchrun --nproc_per_node=N -m napari_cxdi train ...")
    t.add_argument("--checkpoint-every", type=int, default=0,
                   help="distributed: also write the checkpoint every N epochs (resume with --resume)")
    _add_training(t)
    t.set_defaults(func=run_train)

    r = subparsers.add_parser("reconstruct", help="reconstruct a movie (PID3Net or a baseline) and write CXI")
    _add_common(r)
    r.add_argument("--method", default="PID3Net-PO", choices=["PID3Net-PO", "PID3Net-MAE", "PID3Net-NR", "mixed-state", "mf-PIE"])
    r.add_argument("--model", type=Path, default=None, help="a trained PID3Net checkpoint to use as it is (no retraining)")
    r.add_argument("--finetune", action="store_true", help="with --model: train it further on this movie first")
    r.add_argument("--max-iter", type=int, default=None, help="iterative methods: iterations per batch (default 300)")
    r.add_argument("--stride", type=int, default=None, help="PID3Net inference window stride (default T; 1 averages all overlaps)")
    r.add_argument("--prtf-runs", type=int, default=0,
                   help="iterative methods: reconstruct N >= 2 times from random starts and report the consistency PRTF")
    r.add_argument("-o", "--output", type=Path, default=None, help="output .cxi (default <movie>_<method>.cxi next to the input)")
    r.add_argument("--save-model", type=Path, default=None, help="also save the trained model here")
    r.add_argument("--overwrite", action="store_true")
    _add_training(r)
    r.set_defaults(func=run_reconstruct)

    e = subparsers.add_parser("evaluate", help="metrics of a reconstruction against the measurement (and ground truth)")
    e.add_argument("reconstruction", type=Path, help="a .cxi written by napari-cxdi reconstruct")
    e.add_argument("movie", type=Path, help="the measured movie")
    e.add_argument("--probe", type=Path, default=None, help="probe file (default: the one in the movie or reconstruction file)")
    e.add_argument("--probe-dataset", default=None, help="HDF5 path or NPZ key of the probe, if the probe file has several")
    e.add_argument("--probe-opr", choices=["first", "mean"], default="first", help="pty-chi probes: first OPR mode or mean")
    e.add_argument("--dataset", default=None, help="HDF5 dataset or NPZ key holding the frames of the movie")
    e.add_argument("--runs", type=Path, nargs="+", default=None,
                   help="further reconstructions (.cxi) of the same movie from independent random starts: "
                        "the consistency PRTF is computed over these and RECONSTRUCTION")
    e.add_argument("--truth", type=Path, default=None, help="a simulated movie (.cxi from napari-cxdi simulate) with ground truth")
    e.add_argument("--json", type=Path, default=None, help="also write the metrics as JSON here")
    e.set_defaults(func=run_evaluate)


def _load(args):
    """The movie of ``args.movie`` (``--dataset``); notes on the file's experiment kind are printed."""
    import warnings

    from ..io import ExperimentKindWarning, open_movie

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExperimentKindWarning)
        movie = open_movie(args.movie, dataset=args.dataset, mask=getattr(args, "mask", None),
                           use_file_mask=not getattr(args, "no_file_mask", False))
    for w in caught:
        if issubclass(w.category, ExperimentKindWarning):
            print(f"note: {w.message}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return movie


def _probe(args, movie):
    """The probe for ``movie``: the ``--probe`` file's modes and pixel size (a :class:`ProbeFile`, fitted to
    the reconstruction window by the API), else the movie's own. Notes are printed; errors name the CLI option.
    """
    import numpy as np

    from ..errors import ConfigError, InputFileError
    from ..io.probes import load_probe

    if args.probe is None:
        if movie.probe is None:
            raise ConfigError(f"{args.movie} carries no probe; give one with --probe FILE "
                              "(NPY/NPZ, CXI, PyNX .cxi, ptypy .ptyr, cdtools .h5/.pt, pty-chi .h5/.npz)")
        return movie.probe
    try:
        probe_file = load_probe(args.probe, getattr(args, "probe_dataset", None), opr=getattr(args, "probe_opr", "first"))
    except InputFileError as exc:
        raise InputFileError(f"--probe {exc.path}", exc.problem.replace("dataset=...", "--probe-dataset")) from exc
    notes = list(probe_file.notes)
    probe_file.notes.clear()
    picks = sorted({0, movie.n_frames // 2, movie.n_frames - 1})
    counts = float(np.mean([np.nansum(np.where(np.isfinite(f), f, 0)) for f in
                            (np.asarray(movie.frames(t, t + 1), np.float64) for t in picks)]))
    photons = float((np.abs(probe_file.modes.astype(np.complex128)) ** 2).sum())
    if counts > 0 and not 1 / 3 <= photons / counts <= 3:
        notes.append(f"the probe carries {photons:.3g} photons per frame but the frames hold {counts:.3g} counts on "
                     "average: the code that wrote it may normalise its probe or FFT differently (the object's "
                     "amplitude absorbs the factor)")
    for note in notes:
        print(f"note: {note}")
    from ..io.experiment import ExperimentKindError, classify

    kind = classify(movie.metadata, movie.shape, probe_file.modes, None, str(args.movie))
    if kind.kind == "near-field":  # now judged on the probe's own size
        raise ExperimentKindError(args.movie, kind.message.replace(f"{args.movie} ", "", 1))
    return probe_file



def _detector(args):
    """The API's DetectorSettings from the CLI options (the mask file was applied when the movie was opened)."""
    settings = detector_settings(args).with_(mask=None)
    return settings.with_(probe_resample=not getattr(args, "no_probe_resample", False))


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


def _stored_crop(path: Path) -> dict | None:
    """The crop (window, centre, bin) recorded in a reconstruction written by ``reconstruct``, if any."""
    import h5py

    with h5py.File(path, "r") as f:
        obj = f.get("entry_1/napari_cxdi/metadata_json")
        if not isinstance(obj, h5py.Dataset):
            return None
        raw = obj[()]
        crop = json.loads(raw.decode() if isinstance(raw, bytes) else raw).get("crop")
    return crop if isinstance(crop, dict) and {"centre_y", "centre_x", "size", "bin"} <= set(crop) else None


def _stored_mask(path: Path):
    """The mask (True = unmeasured) stored with a reconstruction (CXI ``detector_1/mask``), or None."""
    import h5py

    from ..io.mask import read_hdf5_detector

    with h5py.File(path, "r") as f:
        found = read_hdf5_detector(f, "cxi")
    return found.get("bad")


def _print_metrics(metrics: dict, timings: dict | None = None) -> None:
    for key, value in {**metrics, **(timings or {})}.items():
        if isinstance(value, dict):
            continue
        if value is None:
            value = "-"
        elif isinstance(value, float):
            value = f"{value:.4g}"
        print(f"{key:<24} {value}")


def run_train(args) -> int:
    from ..api import train
    from .progress import ProgressPrinter

    from ..io.safe_write import check_output
    from ..pid3net.distributed import launched_by_torchrun, rank

    distributed = args.distributed or launched_by_torchrun()
    if rank() == 0:  # rank 0 writes; it checks the output before any work
        check_output(args.output, overwrite=args.overwrite or (distributed and bool(args.checkpoint_every)),
                     protected=[args.movie, args.probe, args.resume])
    movie = _load(args)
    probe = _probe(args, movie)
    extra = {"checkpoint_every": args.checkpoint_every} if distributed and args.checkpoint_every else {}
    bar = ProgressPrinter(args.quiet or int(os.environ.get("RANK", "0")) != 0)
    model = train(movie, probe, variant=args.variant, checkpoint=args.output, progress=bar,
                  model=args.resume, overwrite=args.overwrite, detector=_detector(args), distributed=distributed or None,
                  **extra, **_overrides(args))
    bar.close()
    if rank() == 0:
        print(f"wrote {args.output} ({model.config.name}, {model.n_parameters()} parameters)")
    if distributed:
        from ..pid3net.distributed import shutdown

        shutdown()
    return 0


def run_reconstruct(args) -> int:
    from ..api import iter_reconstruction, drain
    from ..io import default_output_path
    from ..errors import ConfigError
    from ..io.safe_write import check_output
    from ..pid3net import save_checkpoint
    from .progress import ProgressPrinter

    inputs = [args.movie, args.probe, args.model]
    output = args.output or default_output_path(args.movie, suffix=args.method.replace("PID3Net-", "pid3net_").lower())
    check_output(output, overwrite=args.overwrite, protected=inputs)  # before any work
    if args.save_model is not None:
        if Path(args.save_model).resolve() == Path(output).resolve():
            raise ConfigError("--save-model and the output name the same file; choose two names")
        check_output(args.save_model, overwrite=args.overwrite, protected=inputs)
    movie = _load(args)
    probe = _probe(args, movie)
    overrides = _overrides(args)
    if args.max_iter is not None:
        overrides["max_iter"] = args.max_iter
    if args.method in ("mixed-state", "mf-PIE"):
        overrides = {k: v for k, v in overrides.items() if k in ("max_iter", "device", "holdout_fraction", "seed")}
    elif args.prtf_runs:
        from ..errors import ConfigError

        raise ConfigError("--prtf-runs is offered for --method mixed-state / mf-PIE; for PID3Net train with several "
                          "--seed values and give the results to `napari-cxdi evaluate --runs`")
    from ..pid3net.distributed import launched_by_torchrun

    if launched_by_torchrun():  # torchrun: DDP training + sharded inference; rank 0 writes
        from ..pid3net.distributed import reconstruct_distributed

        bar = ProgressPrinter(args.quiet or int(os.environ.get("RANK", "0")) != 0)
        result = reconstruct_distributed(movie, probe, args.method, model=args.model,
                                         train=args.model is None or args.finetune, inference_stride=args.stride,
                                         progress=bar, detector=_detector(args), **overrides)
        bar.close()
        if result is None:  # ranks > 0: rank 0 evaluates and writes
            from ..pid3net.distributed import shutdown

            shutdown()
            return 0
    else:
        bar = ProgressPrinter(args.quiet)
        result = drain(
            iter_reconstruction(movie, probe, args.method, model=args.model, train=args.model is None or args.finetune,
                                inference_stride=args.stride, prtf_runs=args.prtf_runs, detector=_detector(args),
                                **overrides),
            bar,
        )
        bar.close()
    result.save(output, metadata={**movie.metadata, **result.metadata}, overwrite=args.overwrite)
    if args.save_model and result.model is not None:
        save_checkpoint(args.save_model, result.model, result.history, overwrite=args.overwrite, protected=inputs)
    _print_metrics(result.metrics, result.timings)
    print(f"wrote {output}")
    if launched_by_torchrun():
        from ..pid3net.distributed import shutdown

        shutdown()
    return 0


def run_evaluate(args) -> int:
    from ..api import evaluate
    from ..io import read_hdf5_reconstruction

    from ..errors import InputFileError
    from ..io.safe_write import check_output

    if args.json:
        check_output(args.json, overwrite=True, protected=[args.reconstruction, args.movie, args.probe, args.truth])
    recon = read_hdf5_reconstruction(args.reconstruction)
    if recon is None:
        raise InputFileError(args.reconstruction, "holds no reconstruction (entry_1/image_1/data)")
    movie = _load(args)
    if args.probe is None and movie.probe is None:
        from ..io.hdf5 import read_hdf5_probe

        probe = read_hdf5_probe(args.reconstruction)
    else:
        probe = _probe(args, movie)
    # a reconstruction of a detector movie: the same mask, centre and crop as when it was made
    from ..api import DetectorSettings, prepare_input

    crop = _stored_crop(args.reconstruction)
    detector = DetectorSettings(center=(crop["centre_y"], crop["centre_x"]), crop_size=crop["size"], bin=crop["bin"]) if crop else None
    data, probe, _, meta = prepare_input(movie, probe, detector)
    runs = []
    for path in args.runs or []:
        run = read_hdf5_reconstruction(path)
        if run is None:
            raise InputFileError(f"--runs {path}", "holds no reconstruction (entry_1/image_1/data)")
        if tuple(run.shape) != tuple(recon.shape):
            raise InputFileError(f"--runs {path}", f"its reconstruction is {tuple(run.shape)}, RECONSTRUCTION is {tuple(recon.shape)}")
        runs.append(run.compute())
    import numpy as np

    mask = meta.get("mask_bad")
    stored = _stored_mask(args.reconstruction)
    if stored is not None:  # the run's own mask (its --mask, accepted hot pixels ...), with what the file flags now
        if stored.shape != tuple(recon.shape[-2:]):
            raise InputFileError(args.reconstruction, f"its mask is {stored.shape[0]}x{stored.shape[1]} but its "
                                 f"frames are {recon.shape[-2]}x{recon.shape[-1]}: the file is inconsistent")
        mask = stored if mask is None or np.shape(mask) != stored.shape else (stored | np.asarray(mask, bool))
    metrics = evaluate(recon.compute(), data, probe, meta.get("pixel_size_nm"), _truth_from(args.truth),
                       movie.metadata.get("frame_interval_s") if movie.metadata.get("velocity_nm_s") else None,
                       mask=mask, runs=runs or None)
    if metrics.get("prtf_note") and not runs:
        metrics["prtf_note"] = "the PRTF needs reconstructions from independent random starts: give them with --runs FILE ..."
    _print_metrics(metrics)
    if args.json:
        from ..io.safe_write import write_json

        write_json(args.json, metrics, overwrite=True, protected=[args.reconstruction, args.movie, args.probe, args.truth])
    return 0
