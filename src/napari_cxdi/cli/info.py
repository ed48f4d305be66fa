"""``napari-cxdi info FILE``: what a file holds, its mask, beam centre and the crop a reconstruction would use."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .detector_options import add_detector_options


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="describe a diffraction movie / reconstruction file")
    p.add_argument("files", type=Path, nargs="+", help="CXI, NeXus/HDF5, TIFF, NPY or NPZ files")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--dataset", default=None, help="HDF5 dataset or NPZ key holding the frames, if the file has several")
    p.add_argument("--probe", type=Path, default=None, help="probe file: the crop is planned at its size")
    add_detector_options(p)
    p.set_defaults(func=run)


def file_info(path: Path, args: argparse.Namespace) -> dict:
    from ..io import movie_info, open_movie, read_probe
    from ..io.detector import detector_report

    info = movie_info(path, dataset=args.dataset)  # typed errors, experiment kind, reconstruction
    if not info.get("shape"):
        return info  # a reconstruction-only file
    movie = open_movie(path, dataset=args.dataset, validate=False, mask=args.mask, use_file_mask=not args.no_file_mask)
    for key, value in (("energy_kev", args.energy_kev), ("distance_m", args.distance_m), ("detector_pixel_um", args.pixel_size_um)):
        if value:
            movie.metadata[key] = value
    info.update(movie.describe())
    size = args.crop_size
    if size is None:
        probe = read_probe(args.probe) if args.probe else movie.probe
        size = None if probe is None else int(probe.shape[-1])
    info.update(detector_report(movie, size, args.bin, args.center))
    return info


def run(args: argparse.Namespace) -> int:
    infos = [file_info(path, args) for path in args.files]
    if args.json:
        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=1, default=str))
        return 0
    for info in infos:
        width = max(len(k) for k in info)
        for key, value in info.items():
            if isinstance(value, float):
                value = f"{value:.6g}"
            print(f"{key:<{width}}  {value}")
        print()
    return 0
