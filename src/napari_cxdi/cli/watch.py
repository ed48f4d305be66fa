"""``napari-cxdi watch SOURCE``: reconstruct and track an acquisition while the detector is still writing."""

from __future__ import annotations

import sys
from pathlib import Path

from .detector_options import add_detector_options, detector_settings


def register(subparsers) -> None:
    w = subparsers.add_parser(
        "watch", help="follow a growing acquisition (SWMR HDF5, Dectris series, TIFF folder) and reconstruct it live",
        description="Follow SOURCE while it is written - an HDF5 file growing under SWMR, a Dectris *_master.h5 whose "
                    "*_data_NNNNNN.h5 files appear beside it, or a folder filling up with TIFFs - and reconstruct every "
                    "new complete frame (PID3Net over the last T frames with --model, else a baseline with --probe), "
                    "track particles incrementally, and append to an SWMR CXI output (flag complete=1 at the end). "
                    "Run it again with the same -o to resume where the output ends.")
    w.add_argument("source", type=Path, help="growing HDF5 file, *_master.h5, or a folder of TIFFs")
    w.add_argument("--model", type=Path, default=None, help="trained PID3Net checkpoint (inference over the last T frames)")
    w.add_argument("--probe", type=Path, default=None, help="probe file for the baseline (NPY/CXI/HDF5)")
    w.add_argument("--method", default="mixed-state", choices=["mixed-state", "mf-PIE"],
                   help="baseline when no --model is given (default mixed-state)")
    w.add_argument("--max-iter", type=int, default=50, help="baseline iterations per block (default 50)")
    w.add_argument("-o", "--output", type=Path, default=None, help="live CXI output (default <source>_live.cxi); resumed if it exists")
    w.add_argument("--overwrite", action="store_true", help="replace an existing output that is not a live output of SOURCE")
    w.add_argument("--idle-timeout", type=float, default=30.0, metavar="S",
                   help="finish after S seconds without new frames (default 30; 0 = follow until Ctrl-C)")
    w.add_argument("--block", type=int, default=8, help="frames read and reconstructed together (default 8)")
    w.add_argument("--settle", type=float, default=0.3, metavar="S",
                   help="a new file (or the last SWMR frame without per-frame chunks) must be unchanged this long (default 0.3)")
    w.add_argument("--dataset", default=None, help="the frames' dataset in an SWMR file, if it holds several")
    w.add_argument("--counter", default=None, help="an SWMR dataset where the writer counts the frames it completed, if any")
    w.add_argument("--no-track", action="store_true", help="do not detect and link particles")
    w.add_argument("--max-displacement-nm", type=float, default=150.0, help="tracking search radius per frame (default 150)")
    w.add_argument("--pixel-size-nm", type=float, default=None, help="object-plane pixel (default: from the geometry)")
    w.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    w.add_argument("--finetune-every", type=int, default=0, metavar="N",
                   help="with --model: fine-tune a copy of the model in the background every N new frames on the latest "
                        "--finetune-frames frames; it replaces the live model only if it predicts their held-out photons "
                        "better (default 0: off)")
    w.add_argument("--finetune-frames", type=int, default=32, help="frames a fine-tuning round trains on (default 32)")
    w.add_argument("--finetune-epochs", type=int, default=4, help="epochs per fine-tuning round (default 4)")
    w.add_argument("--quiet", action="store_true", help="only the summary")
    add_detector_options(w)
    w.set_defaults(func=run_watch)


def run_watch(args) -> int:
    import threading

    from ..errors import ConfigError
    from ..live import iter_live
    from ..io import default_output_path

    if args.idle_timeout < 0:
        raise ConfigError("--idle-timeout must be >= 0 seconds")
    source = args.source
    output = args.output or default_output_path(source if source.suffix else source.with_suffix(".h5"), suffix="live")
    cancel = threading.Event()
    gen = iter_live(
        source, model=args.model, probe=args.probe, method=args.method, output=output, overwrite=args.overwrite,
        detector=detector_settings(args), pixel_size_nm=args.pixel_size_nm, cancel=cancel,
        idle_timeout_s=args.idle_timeout or None, block_frames=args.block, settle_s=args.settle, max_iter=args.max_iter,
        dataset=args.dataset, counter=args.counter, track=not args.no_track, max_displacement_nm=args.max_displacement_nm,
        device=args.device, finetune_every=args.finetune_every, finetune_frames=args.finetune_frames,
        finetune_epochs=args.finetune_epochs,
    )
    summary = None
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                summary = stop.value
                break
            kind = ev.get("event")
            if kind == "started" and not args.quiet:
                how = f"resuming after frame {ev['resume_from']}" if ev["resume_from"] else "from the first frame"
                print(f"watching {ev['source']} ({ev['method']}, {how}) -> {ev['output']}", flush=True)
            elif kind == "warning":
                print(f"warning: {ev['message']}", file=sys.stderr)
            elif kind == "finetune_started" and not args.quiet:
                print(f"fine-tuning round {ev['round']} started on {ev['frames']} frames (at frame {ev['at_frame']})",
                      flush=True)
            elif kind == "finetuned" and not args.quiet:
                verdict = "adopted" if ev["adopted"] else "discarded (not better)"
                print(f"fine-tuning round {ev['round']}: {ev['steps']} steps, held-out deviance {ev['heldout_before']:.4g} -> "
                      f"{ev['heldout_after']:.4g}: {verdict}", flush=True)
            elif kind == "frames" and not args.quiet:
                n_tr = len(ev["tracks"])
                print(f"frames {ev['start']}-{ev['frames_done'] - 1}: {ev['frames_per_s']:.1f} frames/s, "
                      f"latency {ev['latency_s'] * 1e3:.0f} ms, {n_tr} detections", flush=True)
    except KeyboardInterrupt:
        gen.close()  # the output keeps every finished frame and is resumed by the same command
        print(f"interrupted; {output} holds every frame finished so far - run the same command to resume", file=sys.stderr)
        return 130
    lat = "n/a" if summary.latency_s_median is None else f"{summary.latency_s_median * 1e3:.0f} ms (p95 {summary.latency_s_p95 * 1e3:.0f} ms)"
    print(f"{summary.frames_new} new frames ({summary.frames_total} in the output), {summary.frames_per_s:.2f} frames/s, "
          f"latency {lat}, {summary.n_tracks} tracks; stopped: {summary.stopped}"
          + (f"; fine-tuning rounds {summary.finetune_rounds}, adopted {summary.finetune_adopted}"
             if args.finetune_every else ""))
    print(f"wrote {summary.output}")
    return 0
