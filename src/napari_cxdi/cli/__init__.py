"""The ``napari-cxdi`` command line: one sub-command per module in this package.

Each sub-command module defines ``register(subparsers)`` which adds its parser and sets
``func(args) -> int`` as the parser default. Errors derived from :class:`CXDIError` are printed
as one clear line (exit status 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .._version import __version__
from ..errors import CXDIError

# Sub-command modules, in the order they appear in ``--help``.
SUBCOMMAND_MODULES = ("simulate", "info", "reconstruct", "batch", "watch", "track", "scann", "speckle", "gui")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-cxdi",
        description="Coherent X-ray diffraction imaging of moving nanoparticles, headless.",
    )
    parser.add_argument("--version", action="version", version=f"napari-cxdi {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except CXDIError as exc:
        print(f"napari-cxdi {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-cxdi {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
