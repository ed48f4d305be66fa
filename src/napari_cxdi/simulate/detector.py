"""Detector-like files from a simulated movie: an EIGER-style master + bitshuffle data file.

The movie's centred ``m x m`` frames are placed on a larger uint32 detector with the beam off its
centre, module and chip gaps and dead pixels (``0xFFFFFFFF``, flagged in ``pixel_mask``), flagged and
unflagged hot pixels, and the geometry (energy, distance, pixel, beam centre, saturation) in the master,
as a Dectris EIGER writes them. Used by tests and ``benchmarks/bench_real_data.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

GAP = np.uint32(0xFFFFFFFF)


@dataclass
class DetectorLayout:
    """Where the movie lands on the detector and which pixels are bad.

    shape: detector (H, W); centre: beam centre (y, x) in pixels (the frames' pixel m // 2 lands there);
    gap_rows / gap_cols: slices of module/chip gaps; dead: list of (y, x); hot_flagged / hot_unflagged: (y, x).
    """

    shape: tuple[int, int] = (150, 140)
    centre: tuple[int, int] = (71, 62)
    gap_rows: tuple[tuple[int, int], ...] = ((70, 72),)
    gap_cols: tuple[tuple[int, int], ...] = ((100, 102),)
    dead: tuple[tuple[int, int], ...] = ((60, 50), (80, 75), (20, 20))
    hot_flagged: tuple[tuple[int, int], ...] = ((65, 70),)
    hot_unflagged: tuple[tuple[int, int], ...] = ()
    hot_counts: int = 50_000

    def pixel_mask(self) -> np.ndarray:
        """uint32 NeXus/Dectris pixel mask: bit 0 gap, bit 1 dead, bit 3 hot."""
        mask = np.zeros(self.shape, np.uint32)
        for a, b in self.gap_rows:
            mask[a:b, :] |= 1
        for a, b in self.gap_cols:
            mask[:, a:b] |= 1
        for y, x in self.dead:
            mask[y, x] |= 2
        for y, x in self.hot_flagged:
            mask[y, x] |= 8
        return mask


def place_on_detector(counts: np.ndarray, layout: DetectorLayout, seed: int = 0) -> np.ndarray:
    """uint32 detector frames [T, H, W] holding ``counts`` [T, m, m] around ``layout.centre``, with gaps,
    dead pixels (0xFFFFFFFF) and hot pixels. Detector pixels the movie does not reach count 0."""
    t, m, _ = counts.shape
    h, w = layout.shape
    frames = np.zeros((t, h, w), np.uint32)
    y0, x0 = layout.centre[0] - m // 2, layout.centre[1] - m // 2
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + m, h), min(x0 + m, w)
    frames[:, ys:ye, xs:xe] = np.rint(counts[:, ys - y0 : ye - y0, xs - x0 : xe - x0]).astype(np.uint32)
    rng = np.random.default_rng(seed)
    for y, x in (*layout.hot_flagged, *layout.hot_unflagged):
        frames[:, y, x] = rng.poisson(layout.hot_counts, size=t).astype(np.uint32)
    bad = layout.pixel_mask()
    frames[:, (bad & 3) != 0] = GAP
    return frames


def write_eiger_master(
    folder: str | Path,
    frames: np.ndarray,
    layout: DetectorLayout,
    energy_kev: float,
    distance_m: float,
    pixel_um: float,
    name: str = "series",
    frames_per_file: int = 100,
    beam_centre: bool = True,
    pixel_mask: bool = True,
    saturation: int | None = 1_000_000,
) -> Path:
    """Write ``<name>_master.h5`` + ``<name>_data_00000N.h5`` (bitshuffle/LZ4, one chunk per frame) as an EIGER does.

    frames: [T, H, W] uint32, or any object with ``shape``, ``dtype``, ``len`` and slicing (written 16 frames at a time).
    """
    import h5py
    import hdf5plugin

    folder = Path(folder)
    master = folder / f"{name}_master.h5"
    with h5py.File(master, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        for i, start in enumerate(range(0, len(frames), frames_per_file)):
            fname = f"{name}_data_{i + 1:06d}.h5"
            stop = min(start + frames_per_file, len(frames))
            with h5py.File(folder / fname, "w") as d:
                ds = d.create_dataset("entry/data/data", shape=(stop - start, *frames.shape[1:]), dtype=frames.dtype,
                                      chunks=(1, *frames.shape[1:]), **hdf5plugin.Bitshuffle(cname="lz4"))
                for s in range(start, stop, 16):  # in blocks: ``frames`` may be a lazy frame source
                    ds[s - start : min(s + 16, stop) - start] = frames[s : min(s + 16, stop)]
            data[f"data_{i + 1:06d}"] = h5py.ExternalLink(fname, "/entry/data/data")
        det = entry.create_group("instrument/detector")
        det.attrs["NX_class"] = "NXdetector"
        det.create_dataset("x_pixel_size", data=pixel_um * 1e-6).attrs["units"] = "m"
        det.create_dataset("y_pixel_size", data=pixel_um * 1e-6).attrs["units"] = "m"
        det.create_dataset("detector_distance", data=distance_m).attrs["units"] = "m"
        det.create_dataset("count_time", data=0.1).attrs["units"] = "s"
        if beam_centre:
            det.create_dataset("beam_center_x", data=float(layout.centre[1])).attrs["units"] = "pixel"
            det.create_dataset("beam_center_y", data=float(layout.centre[0])).attrs["units"] = "pixel"
        if saturation is not None:
            det.create_dataset("saturation_value", data=np.uint32(saturation))
        spec = det.create_group("detectorSpecific")
        if pixel_mask:
            spec.create_dataset("pixel_mask", data=layout.pixel_mask(), **hdf5plugin.Bitshuffle(cname="lz4"))
        if saturation is not None:
            spec.create_dataset("countrate_correction_count_cutoff", data=np.uint32(saturation))
        entry.create_dataset("instrument/beam/incident_wavelength", data=12.398419843320026 / energy_kev).attrs["units"] = "angstrom"
    return master
