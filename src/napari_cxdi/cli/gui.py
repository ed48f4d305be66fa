"""``napari-cxdi gui``: start napari with the plugin, a sample movie and/or files open."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("gui", help="open napari with the napari-cxdi plugin")
    p.add_argument("files", nargs="*", help="files to open")
    p.add_argument("--sample", choices=["aunp", "test_chart", "none"], default="aunp",
                   help="sample data to open (default: the simulated AuNP movie)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import napari

    viewer = napari.Viewer(title="napari-cxdi")
    if args.sample != "none":
        viewer.open_sample("napari-cxdi", args.sample)
    for path in args.files:
        viewer.open(path, plugin="napari-cxdi")
    napari.run()
    return 0
