"""A stand-in detector writer for the live-mode tests and benchmark (run as a separate process).

    python _live_writer.py swmr   OUT.h5     FRAMES.npy RATE_HZ [--hang-at K]
    python _live_writer.py series MASTER.h5  FRAMES.npy RATE_HZ --per-file N
    python _live_writer.py tiff   FOLDER     FRAMES.npy RATE_HZ

``swmr``: one dataset /entry/data/data [0 -> N, H, W] chunked per frame, appended under SWMR at RATE_HZ;
with ``--hang-at K`` the writer resizes for frame K, flushes, and then hangs before writing it (the test
kills it there: a frame that was announced but never written). ``series``: a Dectris-style master plus
``<stem>_data_NNNNNN.h5`` files of N frames, each written and closed in turn. ``tiff``: one TIFF per frame,
written through a hidden name and renamed, except every other one written in place slowly (to exercise
the stable-size rule). Writes ``<OUT>.times.npy`` (time.time() when each frame was complete) at the end.
"""

import sys
import time

import h5py
import numpy as np


def swmr(out, frames, rate, hang_at=None):
    times = []
    with h5py.File(out, "w", libver="latest") as f:
        d = f.create_dataset("entry/data/data", shape=(0, *frames.shape[1:]), maxshape=(None, *frames.shape[1:]),
                             dtype=frames.dtype, chunks=(1, *frames.shape[1:]))
        f.swmr_mode = True
        print("ready", flush=True)
        for i, frame in enumerate(frames):
            time.sleep(1.0 / rate)
            d.resize(i + 1, axis=0)
            if hang_at is not None and i == hang_at:
                d.flush()
                print("hanging", flush=True)
                time.sleep(3600)
            d[i] = frame
            d.flush()
            times.append(time.time())
    np.save(str(out) + ".times.npy", np.array(times))


def series(master, frames, rate, per_file):
    from pathlib import Path

    master = Path(master)
    stem = master.name[: -len("_master.h5")]
    with h5py.File(master, "w") as f:
        f.create_dataset("entry/instrument/detector/count_time", data=0.01)
    print("ready", flush=True)
    times = []
    for k, i0 in enumerate(range(0, len(frames), per_file)):
        path = master.parent / f"{stem}_data_{k + 1:06d}.h5"
        with h5py.File(path, "w") as f:
            d = f.create_dataset("entry/data/data", shape=(0, *frames.shape[1:]), maxshape=(None, *frames.shape[1:]),
                                 dtype=frames.dtype, chunks=(1, *frames.shape[1:]))
            for i in range(i0, min(i0 + per_file, len(frames))):
                time.sleep(1.0 / rate)
                d.resize(d.shape[0] + 1, axis=0)
                d[-1] = frames[i]
                f.flush()
        times.extend([time.time()] * (min(i0 + per_file, len(frames)) - i0))
    np.save(str(master) + ".times.npy", np.array(times))


def tiff(folder, frames, rate):
    import os
    from pathlib import Path

    import tifffile

    folder = Path(folder)
    print("ready", flush=True)
    times = []
    for i, frame in enumerate(frames):
        time.sleep(1.0 / rate)
        final = folder / f"frame_{i:05d}.tif"
        if i % 2:  # in place, in two halves, with a pause
            tifffile.imwrite(final, frame)
            raw = final.read_bytes()
            final.write_bytes(raw[: len(raw) // 2])
            time.sleep(0.05)
            final.write_bytes(raw)
        else:
            tmp = folder / f".frame_{i:05d}.tif.part"
            tifffile.imwrite(tmp, frame)
            os.replace(tmp, final)
        times.append(time.time())
    np.save(str(folder / "times.npy"), np.array(times))


if __name__ == "__main__":
    kind, out, frames_path, rate = sys.argv[1:5]
    frames = np.load(frames_path)
    rest = sys.argv[5:]
    opt = {rest[i].lstrip("-"): rest[i + 1] for i in range(0, len(rest), 2)}
    if kind == "swmr":
        swmr(out, frames, float(rate), int(opt["hang-at"]) if "hang-at" in opt else None)
    elif kind == "series":
        series(out, frames, float(rate), int(opt.get("per-file", 4)))
    else:
        tiff(out, frames, float(rate))
