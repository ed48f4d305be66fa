"""Detector options shared by ``info``, ``train`` and ``reconstruct``: mask, beam centre, crop, bin, geometry."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError


def _centre(text: str) -> tuple[float, float]:
    try:
        y, x = (float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected Y,X in detector pixels (e.g. 512.5,498), got {text!r}") from None
    return (y, x)


def add_detector_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("detector (real data)")
    g.add_argument("--mask", type=Path, default=None,
                   help="bad-pixel mask file (HDF5/NPY/TIFF, nonzero = bad), added to the file's own mask")
    g.add_argument("--no-file-mask", action="store_true", help="ignore the pixel mask stored in the movie file")
    g.add_argument("--mask-hot-pixels", action="store_true",
                   help="also mask the hot-pixel candidates `info` reports (isolated outliers of the summed pattern)")
    g.add_argument("--center", type=_centre, default=None, metavar="Y,X",
                   help="beam centre in detector pixels (default: from the file, else estimated from the data)")
    g.add_argument("--crop-size", type=int, default=None, metavar="M",
                   help="frame size after cropping around the centre (default: the probe's size, else the largest that fits)")
    g.add_argument("--bin", type=int, default=1, metavar="B", help="sum B x B detector pixels (default 1)")
    g.add_argument("--energy-kev", type=float, default=None, help="photon energy in keV, if the file lacks it")
    g.add_argument("--distance-m", type=float, default=None, help="sample-detector distance in m, if the file lacks it")
    g.add_argument("--pixel-size-um", type=float, default=None, help="detector pixel size in um, if the file lacks it")


def detector_settings(args):
    """The :class:`~napari_cxdi.api.DetectorSettings` of parsed options."""
    from ..api import DetectorSettings

    settings = DetectorSettings(
        mask=args.mask, use_file_mask=not args.no_file_mask, center=args.center, crop_size=args.crop_size,
        bin=args.bin, energy_kev=args.energy_kev, distance_m=args.distance_m, detector_pixel_um=args.pixel_size_um,
        mask_hot_pixels=args.mask_hot_pixels,
    )
    try:
        settings.validate()
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("crop_size", "--crop-size").replace("bin ", "--bin ")
                          .replace("detector_pixel_um", "--pixel-size-um").replace("energy_kev", "--energy-kev")
                          .replace("distance_m", "--distance-m")) from None
    return settings
