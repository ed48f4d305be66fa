"""``napari-cxdi info FILE``: what a file holds, without reading its frames."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="describe a diffraction movie / reconstruction file")
    p.add_argument("files", type=Path, nargs="+", help="CXI, NeXus/HDF5, TIFF, NPY or NPZ files")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--dataset", default=None, help="HDF5 dataset or NPZ key holding the frames, if the file has several")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..io import movie_info

    infos = [movie_info(path, dataset=args.dataset) for path in args.files]
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
