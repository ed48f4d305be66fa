"""``napari-cxdi batch``: many movies on a Dask cluster (local by default), one task per movie.

    napari-cxdi batch 'scans/*.h5' -o results/ --workers 4 --epochs 20
    napari-cxdi batch 'scans/*.h5' -o results/ --scheduler tcp://head-node:8786
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    from .reconstruct import _add_training

    p = subparsers.add_parser(
        "batch", help="reconstruct, evaluate and track many movies on a Dask cluster (resumable)",
        description="One Dask task per movie: reconstruct -> evaluate -> track -> write <stem>_<method>.cxi and "
        "<stem>_tracks.h5 into the output folder, then summary.csv / summary.html. Finished movies (same "
        "configuration hash in their output) are skipped on a rerun; a failing movie is reported and the "
        "others go on. Quote glob patterns so that napari-cxdi expands them ('scans/*.h5', 'run*/**/*.cxi').",
    )
    p.add_argument("movies", nargs="+", help="movie files or quoted glob patterns")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if missing)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None,
                       help="local worker processes (default: one per CPU core, or one per GPU); 0 = no Dask, one "
                       "movie after the other in this process")
    where.add_argument("--scheduler", default=None, help="address of a running Dask scheduler, e.g. tcp://head:8786")
    p.add_argument("--dashboard-address", default=":8787", help="local cluster dashboard address (default :8787)")
    p.add_argument("--gpu-resources", action="store_true",
                   help="tasks ask for the worker resource GPU=1 (for clusters whose GPU workers declare it)")
    p.add_argument("--probe", type=Path, default=None, help="probe file for every movie (default: each movie's own)")
    p.add_argument("--dataset", default=None, help="HDF5 dataset holding the frames, if the files have several")
    p.add_argument("--method", default="PID3Net-PO", choices=["PID3Net-PO", "PID3Net-MAE", "PID3Net-NR", "mixed-state", "mf-PIE"])
    p.add_argument("--max-iter", type=int, default=None, help="iterative methods: iterations per batch (default 300)")
    p.add_argument("--stride", type=int, default=None, help="PID3Net inference window stride (default T)")
    p.add_argument("--no-track", action="store_true", help="reconstruct and evaluate only")
    k = p.add_argument_group("tracking (as napari-cxdi track)")
    k.add_argument("--track-threshold", type=float, default=None, help="detection: excess over the local background (rad)")
    k.add_argument("--max-displacement", type=float, default=None, help="linking: largest step between frames in nm")
    k.add_argument("--min-length", type=int, default=None, help="linking: shortest kept track (detections)")
    p.add_argument("--threads", type=int, default=1, help="PyTorch threads per task (default 1)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs made with another configuration (finished ones with this one are still skipped)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    _add_training(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..batch import BatchConfig, iter_batch
    from ..progress import drain
    from .reconstruct import _overrides

    options = _overrides(args)
    if args.max_iter is not None:
        options["max_iter"] = args.max_iter
    tracking = {k: v for k, v in (("max_displacement_nm", args.max_displacement), ("min_length", args.min_length))
                if v is not None}
    if args.track_threshold is not None:
        tracking["detection"] = {"threshold": args.track_threshold}
    cfg = BatchConfig(method=args.method, tracking=tracking, probe=str(args.probe) if args.probe else None, options=options,
                      inference_stride=args.stride, dataset=args.dataset, track=not args.no_track,
                      torch_threads=args.threads)

    def report(event: dict) -> None:
        if event["event"] == "start":
            link = event.get("dashboard_link")
            where = f"{event['workers']} Dask workers" if event["workers"] else "this process (no Dask)"
            print(f"{event['total']} movies on {where}" + (f"; dashboard: {link}" if link else ""), flush=True)
        elif event["event"] == "scan" and not args.quiet:
            row = event["row"]
            detail = f"R_f {row['rf']:.4g}" if isinstance(row.get("rf"), float) else ""
            if row["status"] == "failed":
                detail = f"{row['error_type']}: {str(row['error']).splitlines()[0]}"
            print(f"[{event['done']}/{event['total']}] {row['scan']}: {row['status']} {detail}", flush=True)

    result = drain(iter_batch(args.movies, args.output, cfg, workers=args.workers, scheduler=args.scheduler,
                              overwrite=args.overwrite, dashboard_address=args.dashboard_address,
                              gpu_resources=True if args.gpu_resources else None), report)
    print(f"{result.count('done')} done, {result.count('skipped')} skipped (already finished), "
          f"{result.count('failed')} failed in {result.elapsed_s:.1f} s")
    print(f"wrote {result.summary_csv} and {result.summary_html}")
    for row in result.failed:
        print(f"failed: {row['input']}: {row['error_type']}: {row['error']}", file=sys.stderr)
    return 1 if result.failed else 0
