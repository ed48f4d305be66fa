"""``napari-cxdi simulate aunp|chart``: write a simulated diffraction movie with its ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate", help="write a simulated diffraction movie (CXI) with ground truth",
        description="Simulate the seed's dynamic samples and write counts, probe, true objects, "
        "trajectories and all metadata to a CXI file.",
    )
    p.add_argument("sample", choices=["aunp", "chart"], help="gold nanoparticles in solution, or the moving Ta test chart")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .cxi file")
    p.add_argument("--frames", type=int, default=64, help="number of frames (default 64)")
    p.add_argument("--size", type=int, default=128, help="frame size in pixels (default 128; 384 = the seed's detector)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--exposure", type=float, default=None, help="exposure per frame in s (default: the seed's)")
    p.add_argument("--flux", type=float, default=None, help="photons per second on the sample (default: the seed's)")
    p.add_argument("--match-fluence", action="store_true",
                   help="when the probe is shrunk to fit a small frame, scale the flux with its area (the seed's photons per um^2)")
    p.add_argument("--diameter", type=float, default=300.0, help="AuNP diameter in nm (default 300)")
    p.add_argument("--area-fraction", type=float, default=0.1, help="AuNP area fraction (default 0.1)")
    p.add_argument("--velocity", type=float, nargs=2, metavar=("VY", "VX"), default=None, help="drift in nm/s (default: AuNP 0 200, chart 0 340)")
    p.add_argument("--no-noise", action="store_true", help="write the expected intensity instead of Poisson counts")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import write_cxi
    from ..simulate import simulate_aunp, simulate_test_chart

    common = {"n_frames": args.frames, "size": args.size, "seed": args.seed, "noise": not args.no_noise,
              "match_fluence": args.match_fluence}
    if args.exposure is not None:
        common["exposure_s"] = args.exposure
    if args.flux is not None:
        common["flux_photons_s"] = args.flux
    if args.sample == "aunp":
        extra = {"diameter_nm": args.diameter, "area_fraction": args.area_fraction}
        if args.velocity:
            extra["drift_nm_s"] = tuple(args.velocity)
        movie = simulate_aunp(**common, **extra)
    else:
        extra = {"velocity_nm_s": tuple(args.velocity)} if args.velocity else {}
        movie = simulate_test_chart(**common, **extra)
    meta = {k: v for k, v in movie.metadata.items() if k != "config"}
    path = write_cxi(
        args.output, counts=movie.counts, probe=movie.probe, metadata=meta, config=movie.metadata["config"],
        ground_truth={"objects": movie.objects, "expected_intensity": movie.expected},
        tables={"trajectories": movie.trajectories} if len(movie.trajectories) else None,
        overwrite=args.overwrite,
    )
    print(f"wrote {path}: {args.frames} frames of {args.size}x{args.size}, pixel {movie.pixel_size_nm:.2f} nm, "
          f"{movie.counts.sum(axis=(1, 2)).mean():.3g} counts/frame")
    return 0
