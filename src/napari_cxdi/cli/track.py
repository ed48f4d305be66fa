"""``napari-cxdi track``: detect, link and measure particles in a reconstructed (or simulated) phase movie."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "track", help="track particles in a reconstructed phase movie and write CSV/HDF5 tables",
        description="Input: a reconstruction .cxi (napari-cxdi reconstruct; phase = angle of entry_1/image_1/data), "
        "a simulated movie .cxi (napari-cxdi simulate; its true phase is tracked and scored against the true "
        "trajectories), or a .npy phase movie [T, H, W] (complex -> phase).",
    )
    p.add_argument("movie", type=Path, help="reconstruction .cxi, simulated .cxi or .npy phase movie")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="output .csv (one file per table: <stem>_features/_tracks/_per_track.csv) or .h5")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--pixel-size", type=float, default=None, help="object pixel size in nm (default: from the file)")
    p.add_argument("--frame-interval", type=float, default=None, help="time between frames in s (default: from the file)")
    p.add_argument("--amplitude", action="store_true", help="track the amplitude instead of the phase")
    d = p.add_argument_group("detection")
    d.add_argument("--method", choices=["adaptive", "trackpy"], default="adaptive")
    d.add_argument("--polarity", choices=["dark", "bright"], default=None,
                   help="dark: particles below the solution (phase of gold, default); bright (default for --amplitude: dark too)")
    d.add_argument("--threshold", type=float, default=0.15, help="excess over the local background (rad for phase)")
    d.add_argument("--block", type=float, default=1200.0, help="local background neighbourhood in nm")
    d.add_argument("--smooth", type=float, default=1.0, help="Gaussian pre-smoothing in pixels")
    d.add_argument("--diameter", type=float, default=300.0, help="expected diameter in nm (trackpy feature size)")
    d.add_argument("--min-diameter", type=float, default=100.0, help="smallest accepted diameter in nm")
    d.add_argument("--max-diameter", type=float, default=1000.0, help="largest accepted diameter in nm")
    k = p.add_argument_group("linking")
    k.add_argument("--max-displacement", type=float, default=150.0, help="largest step between frames in nm")
    k.add_argument("--memory", type=int, default=1, help="frames a particle may be missed")
    k.add_argument("--min-length", type=int, default=3, help="shortest kept track (detections)")
    p.add_argument("--velocity", action="store_true", help="also estimate the whole-image velocity by cross-correlation")
    p.add_argument("--json", type=Path, default=None, help="also write the statistics (and scores) as JSON here")
    p.set_defaults(func=run)


def load_phase_movie(path: Path, amplitude: bool = False) -> tuple:
    """(movie [T, H, W] float32, metadata dict, ground-truth trajectories or None) from a .cxi / .h5 / .npy file.

    Any problem with the file is an :class:`InputFileError` / :class:`DataValidationError`.
    """
    import numpy as np

    from ..errors import DataValidationError
    from ..io import typed_errors
    from ..io.validate import check_readable

    check_readable(path)
    movie, meta, truth = typed_errors(_load_phase_movie)(path, amplitude)
    if movie.ndim == 2:
        movie = movie[None]
    if movie.ndim != 3 or min(movie.shape[1:], default=0) < 2 or movie.shape[0] == 0:
        raise DataValidationError(f"{path}: expected a phase movie [frames, H, W], got shape {movie.shape}")
    if not np.isfinite(movie).all():
        t = int(np.argwhere(~np.isfinite(movie))[0][0])
        raise DataValidationError(f"{path}: frame {t} of the phase movie holds NaN or infinite values")
    return movie, meta, truth


def _load_phase_movie(path: Path, amplitude: bool = False) -> tuple:
    import numpy as np

    from ..errors import InputFileError
    from ..io import detect_format, read_hdf5_reconstruction

    if not path.exists():
        raise InputFileError(path, "file not found")
    kind = detect_format(path)
    convert = np.abs if amplitude else np.angle
    if kind == "numpy":
        data = np.load(path, allow_pickle=False)
        if hasattr(data, "files"):
            raise InputFileError(path, "expected a .npy phase movie [T, H, W], not an .npz archive")
        if not np.iscomplexobj(data) and amplitude:
            raise InputFileError(path, "--amplitude needs a complex movie")
        if not (np.issubdtype(data.dtype, np.number) and not np.issubdtype(data.dtype, np.timedelta64)):
            raise InputFileError(path, f"expected a numeric phase movie, got dtype {data.dtype}")
        return (convert(data) if np.iscomplexobj(data) else data).astype(np.float32), {}, None
    if kind != "hdf5":
        raise InputFileError(path, "expected a .cxi/.h5 reconstruction or simulated movie, or a .npy phase movie")
    import h5py

    from ..io.hdf5 import inspect_hdf5
    from ..io.writer import read_table

    meta = dict(inspect_hdf5(path).metadata) if _has_frames(path) else _metadata_only(path)
    recon = read_hdf5_reconstruction(path)
    truth = None
    with h5py.File(path, "r") as f:
        has_truth = "entry_1/napari_cxdi/ground_truth/objects" in f
        has_table = "entry_1/napari_cxdi/tables/trajectories" in f
        if recon is None and has_truth:
            objects = f["entry_1/napari_cxdi/ground_truth/objects"][()]
    if has_table:
        truth = read_table(path, "trajectories")
        meta.setdefault("config", _stored_config(path))
    if recon is not None:
        return convert(np.asarray(recon.compute())).astype(np.float32), meta, truth
    if has_truth:
        return convert(objects).astype(np.float32), meta, truth
    raise InputFileError(path, "holds neither a reconstruction (entry_1/image_1/data) nor ground-truth objects")


def _has_frames(path: Path) -> bool:
    from ..errors import InputFileError
    from ..io.hdf5 import inspect_hdf5

    try:
        return bool(inspect_hdf5(path).datasets)
    except InputFileError:
        return False


def _stored_config(path: Path) -> dict:
    """The simulation config recorded in the file's provenance (drift, diffusion), or {}."""
    import h5py

    with h5py.File(path, "r") as f:
        raw = f.get("entry_1/provenance")
        if raw is None:
            return {}
        value = raw[()]
    record = json.loads(value.decode() if isinstance(value, bytes) else value)
    return record.get("config") or {}


def _metadata_only(path: Path) -> dict:
    import h5py

    with h5py.File(path, "r") as f:
        raw = f.get("entry_1/napari_cxdi/metadata_json")
        if raw is None:
            return {}
        value = raw[()]
        return json.loads(value.decode() if isinstance(value, bytes) else value)


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..provenance import to_jsonable
    from ..tracking import DetectionConfig, TrackingConfig, evaluate_tracking, image_velocity, iter_track, write_tables
    movie, meta, truth = load_phase_movie(args.movie, args.amplitude)
    dx = args.pixel_size or meta.get("pixel_size_nm")
    dt = args.frame_interval or meta.get("frame_interval_s") or meta.get("exposure_s")
    if not dx:
        raise ConfigError(f"{args.movie}: no pixel size stored; pass --pixel-size (nm)")
    if not dt:
        raise ConfigError(f"{args.movie}: no frame interval stored; pass --frame-interval (s)")
    from ..checks import POSITIVE, check_number

    check_number(float(dx), "pixel size (nm)", POSITIVE, where=str(args.movie))
    check_number(float(dt), "frame interval (s)", POSITIVE, where=str(args.movie))
    polarity = args.polarity or "dark"
    cfg = TrackingConfig(
        DetectionConfig(method=args.method, polarity=polarity, threshold=args.threshold, block_nm=args.block,
                        smooth_px=args.smooth, diameter_nm=args.diameter, min_diameter_nm=args.min_diameter,
                        max_diameter_nm=args.max_diameter),
        max_displacement_nm=args.max_displacement, memory=args.memory, min_length=args.min_length,
    )
    from ..io.safe_write import check_output, write_json

    if args.output is not None:  # refuse early, before the work
        from ..tracking.export import table_paths

        for p in set(table_paths(args.output, ["features", "tracks", "per_track"]).values()):
            check_output(p, overwrite=args.overwrite, protected=[args.movie])
    if args.json is not None:
        check_output(args.json, overwrite=args.overwrite, protected=[args.movie])
    from ..progress import drain

    bar = _Progress()
    result = drain(iter_track(movie, cfg, float(dx), float(dt)), bar)
    bar.close()
    summary = result.summary()
    if args.velocity and len(movie) > 1:
        v = image_velocity(movie, float(dx), float(dt))
        summary.update(image_velocity_vy_nm_s=float(v["mean_nm_s"][0]), image_velocity_vx_nm_s=float(v["mean_nm_s"][1]),
                       image_velocity_std_nm_s=float(v["per_pair_speed_nm_s"].std()))
    scores = None
    if truth is not None and len(truth):
        cfg_meta = meta.get("config", {}) if isinstance(meta.get("config"), dict) else {}
        scores = evaluate_tracking(result.tracks, truth, float(dx), frame_shape=movie.shape[1:],
                                   true_drift_nm_s=cfg_meta.get("drift_nm_s"), true_diffusion_nm2_s=cfg_meta.get("diffusion_nm2_s"),
                                   msd=result.statistics["msd"])
    for key, value in summary.items():
        print(f"{key:<26} {_fmt(value)}")
    if scores:
        print("-- against the ground truth --")
        for key, value in scores.items():
            print(f"{key:<26} {_fmt(value)}")
    config = {"input": str(args.movie), "pixel_size_nm": dx, "frame_interval_s": dt, "amplitude": args.amplitude, **cfg.to_dict()}
    if args.output is not None:
        tables = {"features": result.features, "tracks": result.tracks, "per_track": result.per_track}
        for p in write_tables(args.output, tables, config, {**summary, **(scores or {})}, overwrite=args.overwrite,
                              protected=[args.movie]):
            print(f"wrote {p}")
    if args.json is not None:
        from ..provenance import provenance

        write_json(args.json, to_jsonable(provenance(config, {**summary, "scores": scores})),
                   overwrite=args.overwrite, protected=[args.movie])
    return 0


class _Progress:
    """Detection progress as a tqdm bar (frames), on top of the shared printer."""

    def __init__(self, quiet: bool = False):
        from .progress import ProgressPrinter

        self.printer = ProgressPrinter(quiet)

    def _bar(self, *args):
        return self.printer._bar(*args)

    def close(self) -> None:
        self.printer.close()

    def __call__(self, event: dict) -> None:
        if event.get("stage") == "detect":
            bar = self._bar("detect", event["total"], "frame")
            bar.update(event["done"] - bar.n)
        else:
            self.close()
