"""Opening large movies lazily: time and memory to open, to read one frame, and to build napari layers.

Writes an EIGER-like master file with external links to bitshuffle/LZ4 data files (and a plain
chunked HDF5 and an NPY file) of ``--gigabytes`` each, then measures ``open_movie`` and the napari
reader function. Target (issue 2): a multi-GB file opens in about a second with the memory of a few frames.

    python benchmarks/bench_io.py --gigabytes 2
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

from napari_cxdi._napari.reader import read_layers
from napari_cxdi.io import open_movie
from napari_cxdi.provenance import provenance


def write_files(folder: Path, n_frames: int, size: int) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    block = rng.poisson(3.0, size=(16, size, size)).astype(np.uint32)
    per_file = n_frames // 2
    master = folder / "big_master.h5"
    plain = folder / "big_plain.h5"
    with h5py.File(master, "w") as f, h5py.File(plain, "w") as p:
        dplain = p.create_dataset("entry/data/data", shape=(n_frames, size, size), dtype=np.uint32, chunks=(1, size, size))
        p["entry"].attrs["NX_class"] = "NXentry"
        for i in range(2):
            name = f"big_data_{i + 1:06d}.h5"
            with h5py.File(folder / name, "w") as d:
                dset = d.create_dataset("entry/data/data", shape=(per_file, size, size), dtype=np.uint32,
                                        chunks=(1, size, size), **hdf5plugin.Bitshuffle(cname="lz4"))
                for s in range(0, per_file, 16):
                    dset[s : s + 16] = block[: min(16, per_file - s)]
                    dplain[i * per_file + s : i * per_file + s + 16] = block[: min(16, per_file - s)]
            f[f"entry/data/data_{i + 1:06d}"] = h5py.ExternalLink(name, "/entry/data/data")
        f.create_dataset("entry/instrument/detector/x_pixel_size", data=75e-6)
        f.create_dataset("entry/instrument/detector/detector_distance", data=3.14)
        f.create_dataset("entry/instrument/beam/incident_wavelength", data=2.4797)
    npy = folder / "big.npy"
    mm = np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint32, shape=(n_frames, size, size))
    for s in range(0, n_frames, 16):
        mm[s : s + 16] = block[: min(16, n_frames - s)]
    mm.flush()
    del mm
    eiger = [master] + [folder / f"big_data_{i + 1:06d}.h5" for i in range(2)]
    return {"EIGER master (bitshuffle/LZ4, 2 linked files)": (master, eiger), "plain chunked HDF5": (plain, [plain]),
            "NPY (memory-mapped)": (npy, [npy])}


def rss_mb() -> float:
    """Current resident memory of this process (MB), from /proc."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 1e6


def measure(path: Path) -> dict:
    """Run in a fresh process (see ``--measure``) so memory figures are this file's alone."""
    rss0 = rss_mb()
    tracemalloc.start()
    t0 = time.perf_counter()
    movie = open_movie(path)
    t_open = time.perf_counter() - t0
    _, peak_open = tracemalloc.get_traced_memory()
    rss_open = rss_mb() - rss0
    t0 = time.perf_counter()
    frame = movie.frames(movie.n_frames // 3, movie.n_frames // 3 + 1)
    t_frame = time.perf_counter() - t0
    t0 = time.perf_counter()
    layers = read_layers(str(path))
    t_layers = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"shape": list(movie.shape), "lazy": movie.is_lazy, "open_s": t_open, "open_peak_MB": peak_open / 1e6,
            "open_rss_MB": rss_open, "rss_after_layers_MB": rss_mb() - rss0,
            "read_frame_s": t_frame, "reader_layers_s": t_layers, "peak_MB": peak / 1e6,
            "frame_MB": frame.nbytes / 1e6, "layers": len(layers)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gigabytes", type=float, default=2.0, help="uncompressed size of each test movie (default 2)")
    ap.add_argument("--size", type=int, default=1024, help="frame size (default 1024, an EIGER 1M-like frame)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "io.json")
    ap.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return 0
    n_frames = max(4, int(args.gigabytes * 1e9 / (args.size * args.size * 4)) // 32 * 32)
    folder = Path(tempfile.mkdtemp(prefix="napari-cxdi-io-"))
    try:
        t0 = time.perf_counter()
        files = write_files(folder, n_frames, args.size)
        print(f"wrote {n_frames} frames of {args.size}x{args.size} uint32 ({n_frames * args.size**2 * 4 / 1e9:.2f} GB each) "
              f"in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        rows = []
        for name, (path, parts) in files.items():
            on_disk = sum(p.stat().st_size for p in parts)
            out = subprocess.run([sys.executable, __file__, "--measure", str(path)], capture_output=True, text=True, check=True)
            rows.append({"file": name, "on_disk_GB": on_disk / 1e9, **json.loads(out.stdout.strip().splitlines()[-1])})
        print(f"{'file':46s}{'disk GB':>8s}{'open s':>8s}{'open RSS MB':>12s}{'1 frame s':>10s}{'layers s':>9s}"
              f"{'RSS MB':>8s}{'frame MB':>9s}")
        for r in rows:
            print(f"{r['file']:46s}{r['on_disk_GB']:>8.2f}{r['open_s']:>8.2f}{r['open_rss_MB']:>12.1f}"
                  f"{r['read_frame_s']:>10.3f}{r['reader_layers_s']:>9.2f}{r['rss_after_layers_MB']:>8.1f}{r['frame_MB']:>9.1f}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(provenance({"gigabytes": args.gigabytes, "size": args.size, "frames": n_frames}, rows), indent=1))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
