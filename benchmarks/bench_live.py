"""Live-mode benchmark: end-to-end latency (frame written -> phase available) and sustained frames/s.

A writer thread appends frames to an SWMR HDF5 file (one chunk per frame, as a detector would) while
:func:`napari_cxdi.live.iter_live` follows it, reconstructs, tracks and appends to an SWMR CXI output.
For each frame size m (64, 128) and each reconstructor (a PID3Net of the default size, untrained: the
inference cost does not depend on the weights, over a causal window of T = 5 frames; and the mixed-state
baseline with a fixed number of iterations):

* **capacity** - all frames present at the start: the sustained frames/s of follower + reconstruction +
  tracking + writing; a writer faster than this makes live mode fall behind (its latency then grows
  without bound);
* **latency at a sustainable rate** - the writer at half that capacity: median / p95 latency from the
  moment the writer flushed a frame to the moment its phase is in the output (``done_s``), after the first
  T frames (those wait for the first full window; their maximum is reported separately).

    python benchmarks/bench_live.py              # CPU (torch threads: 1; the machine may be shared)
    python benchmarks/bench_live.py --frames 40  # more frames
    python benchmarks/bench_live.py --small-model  # PID3Net F = 4, refinement width 8, K = 2 (as bench_reconstruction --quick)

With CUDA available the same measurements are repeated on the GPU (goal: 100 frames/s at m = 128).
Writes ``benchmarks/results/live.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from napari_cxdi.live import iter_live, read_live_output
from napari_cxdi.progress import drain
from napari_cxdi.provenance import provenance


def movie(n: int, m: int, seed: int = 0):
    from napari_cxdi.physics.forward import diffraction_intensity

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:m, :m] - m / 2
    probe = np.clip(m / 3 - np.hypot(y, x), 0, 1).astype(np.complex64)[None]
    probe *= np.sqrt(1e6 / (np.abs(probe) ** 2).sum())
    objs = []
    for t in range(n):
        phase = sum(-0.8 * np.exp(-((y - cy - 0.5 * t) ** 2 + (x - cx) ** 2) / (m / 16) ** 2)
                    for cy, cx in ((-m / 8, -m / 8), (m / 10, m / 12)))
        objs.append(np.exp(1j * phase).astype(np.complex64))
    inten = diffraction_intensity(torch.as_tensor(probe), torch.as_tensor(np.stack(objs))).numpy()
    return rng.poisson(inten).astype(np.uint32), probe


def writer(path: Path, frames: np.ndarray, rate_hz: float | None, times: list, ready: threading.Event):
    with h5py.File(path, "w", libver="latest") as f:
        d = f.create_dataset("entry/data/data", shape=(0, *frames.shape[1:]), maxshape=(None, *frames.shape[1:]),
                             dtype=frames.dtype, chunks=(1, *frames.shape[1:]))
        f.swmr_mode = True
        if rate_hz is None:  # everything at once: capacity
            d.resize(len(frames), axis=0)
            d[:] = frames
            d.flush()
            times.extend([time.time()] * len(frames))
            ready.set()
            return
        ready.set()
        t0 = time.time()
        for i, frame in enumerate(frames):
            wait = t0 + i / rate_hz - time.time()
            if wait > 0:
                time.sleep(wait)
            d.resize(i + 1, axis=0)
            d[i] = frame
            d.flush()
            times.append(time.time())


def run(frames, probe, model, rate_hz, device, max_iter, block):
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "run.h5", Path(tmp) / "live.cxi"
        times: list[float] = []
        ready = threading.Event()
        th = threading.Thread(target=writer, args=(src, frames, rate_hz, times, ready))
        th.start()
        ready.wait()
        idle = 1.0 if rate_hz is None else max(1.0, 3.0 / rate_hz)
        t0 = time.perf_counter()
        summary = drain(iter_live(src, model=model, probe=None if model is not None else probe, method=None if model else "mixed-state",
                                  output=out, idle_timeout_s=idle, block_frames=block, max_iter=max_iter, settle_s=0.0,
                                  poll_s=0.005, device=device, pixel_size_nm=10.0))
        th.join()
        res = read_live_output(out)
        wall = time.perf_counter() - t0 - idle  # minus the final idle timeout
        lat = res["done_s"] - np.asarray(times)[res["source_frame"]]
        skip = model.config.frames if model is not None else 0
        steady = lat[skip:] if len(lat) > skip else lat  # PID3Net's first T frames wait for the first full window
        return {"steady_latency_median_s": float(np.median(steady)), "steady_latency_p95_s": float(np.percentile(steady, 95)),"frames": int(res["frames_complete"]), "frames_per_s": len(frames) / max(wall, 1e-9),
                "latency_median_s": float(np.median(lat)), "latency_p95_s": float(np.percentile(lat, 95)),
                "latency_max_s": float(lat.max()), "writer_rate_hz": rate_hz, "n_tracks": summary.n_tracks}


def bench(device: str, sizes, n_frames: int, max_iter: int, block: int, model_size: dict,
          max_steady_s: float = 120.0) -> list[dict]:
    from napari_cxdi.pid3net import PID3Net, PID3NetConfig

    rows = []
    for m in sizes:
        frames, probe = movie(n_frames, m)
        torch.manual_seed(0)
        model = PID3Net(PID3NetConfig.variant("PID3Net-PO", device=device, **model_size), probe).to(device).eval()
        for name, mdl in (("PID3Net-PO (T=5)", model), (f"mixed-state ({max_iter} it)", None)):
            if mdl is not None:  # warm-up: the first forward pass of a fresh model is slower
                with torch.no_grad():
                    mdl(torch.as_tensor(frames[None, :mdl.config.frames].astype(np.float32), device=device))
            cap = run(frames, probe, mdl, None, device, max_iter, block)
            rate = cap["frames_per_s"] / 2
            n_steady = max((mdl.config.frames if mdl is not None else 0) + 4, min(n_frames, int(60 * rate)))
            row = {"device": device, "m": m, "method": name, "model_size": model_size if mdl is not None else None,
                   "capacity_frames_per_s": cap["frames_per_s"], "falls_behind_above_hz": cap["frames_per_s"],
                   "rate_hz": rate, "frames": n_frames, "block_frames": block}
            if n_steady / rate > max_steady_s:
                row.update(latency_median_s=None, latency_p95_s=None, steady_skipped=f"would take {n_steady / rate:.0f} s")
                print(f"{device:5s} m={m:<4d} {name:22s} capacity {cap['frames_per_s']:7.2f} frames/s | latency run skipped "
                      f"({n_steady} frames at {rate:.2f} Hz would take {n_steady / rate:.0f} s)", flush=True)
                rows.append(row)
                continue
            steady = run(frames[:n_steady], probe, mdl, rate, device, max_iter, block)
            row.update(latency_median_s=steady["steady_latency_median_s"], latency_p95_s=steady["steady_latency_p95_s"],
                       latency_median_all_frames_s=steady["latency_median_s"], latency_max_all_frames_s=steady["latency_max_s"],
                       steady_frames=n_steady)
            rows.append(row)
            print(f"{device:5s} m={m:<4d} {name:22s} capacity {cap['frames_per_s']:7.2f} frames/s | at {rate:6.2f} Hz: "
                  f"latency median {steady['steady_latency_median_s'] * 1e3:7.0f} ms, p95 {steady['steady_latency_p95_s'] * 1e3:7.0f} ms "
                  f"(all frames incl. the first window: max {steady['latency_max_s'] * 1e3:.0f} ms)", flush=True)
    return rows


RUNNING = False  # while the Live dock follows (for profilers hooking in)
TICKS: list[float] = []  # perf_counter of each timer tick while following (for profilers)


def _writer_process(path: str, frames_path: str, rate_hz: float, ready, queue) -> None:
    """The detector in its own process (as at a beamline): SWMR appends at ``rate_hz``; flush times -> queue."""
    times: list[float] = []
    started = threading.Event()
    th = threading.Thread(target=writer, args=(Path(path), np.load(frames_path), rate_hz, times, started))
    th.start()
    started.wait()
    ready.set()
    th.join()
    queue.put(times)


def bench_gui(m: int, n_frames: int, rate_hz: float, max_iter: int, block: int) -> dict:
    """The Live dock in a napari viewer while a writer thread appends at ``rate_hz``: event-loop latency (gaps
    between 10 ms timer ticks while following; ``steady``: after the first round of layer updates, i.e.
    without the one-off cost of creating the five layers) and end-to-end latency frame written -> phase layer
    updated."""
    import napari
    from qtpy.QtCore import QThreadPool, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_cxdi.widgets.live_panel import LAYERS, LivePanel

    app = QApplication.instance() or QApplication([])
    frames, probe = movie(n_frames, m)
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "run.h5", Path(tmp) / "live.cxi"
        np.save(Path(tmp) / "probe.npy", probe)
        viewer = napari.Viewer(show=True)
        panel = LivePanel(viewer)
        viewer.window.add_dock_widget(panel, name="live")
        panel.source.setText(str(src))
        panel.probe.setText(str(Path(tmp) / "probe.npy"))
        panel.output.setText(str(out))
        panel.max_iter.setValue(max_iter)
        panel.block.setValue(block)
        panel.idle.setValue(2.0)
        shown: dict[int, float] = {}
        finish = panel._finish_round

        first_round = []

        def timed_finish():  # the end of a round of layer updates: these frames are now on screen
            finish()
            now = time.time()
            if not first_round:
                first_round.append(len(gaps))
            for i in range(len(viewer.layers[LAYERS[2]].data) if LAYERS[2] in viewer.layers else 0):
                shown.setdefault(i, now)

        panel._finish_round = timed_finish
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        np.save(Path(tmp) / "frames.npy", frames)
        ready, queue = ctx.Event(), ctx.Queue()
        proc = ctx.Process(target=_writer_process, args=(str(src), str(Path(tmp) / "frames.npy"), rate_hz, ready, queue))
        proc.start()
        ready.wait(60)
        gaps, last = [], [time.perf_counter()]

        def tick():
            now = time.perf_counter()
            if panel.running:
                gaps.append((now - last[0]) * 1e3)
                TICKS.append(now)
            last[0] = now

        timer = QTimer()
        timer.timeout.connect(tick)
        timer.start(10)
        t0 = time.perf_counter()
        global RUNNING
        RUNNING = True
        panel.live_button.setChecked(True)
        while panel.running and time.perf_counter() - t0 < 600:
            app.processEvents()
            time.sleep(0.002)
        timer.stop()
        RUNNING = False
        QThreadPool.globalInstance().waitForDone(10_000)
        times = queue.get(timeout=60)
        proc.join(10)
        app.processEvents()
        n = len(viewer.layers[LAYERS[2]].data) if LAYERS[2] in viewer.layers else 0
        lat = np.array([shown[i] - times[i] for i in range(min(n, len(times))) if i in shown]) * 1e3
        viewer.close()
    g = np.asarray(gaps) if gaps else np.zeros(1)
    steady = g[first_round[0]:] if first_round and len(g) > first_round[0] else g
    return {"event_loop_steady_p99_ms": float(np.percentile(steady, 99)),
            "event_loop_steady_max_ms": float(steady.max()), "steady_ticks": int(len(steady)),"m": m, "frames": n_frames, "frames_shown": n, "rate_hz": rate_hz, "method": f"mixed-state ({max_iter} it)",
            "block_frames": block, "ticks": len(gaps), "event_loop_p50_ms": float(np.percentile(g, 50)),
            "event_loop_p99_ms": float(np.percentile(g, 99)), "event_loop_max_ms": float(g.max()),
            "layer_latency_median_ms": float(np.median(lat)) if lat.size else None,
            "layer_latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else None,
            "error": None if panel.error is None else str(panel.error)}


def gui_floor(m: int, seconds: float = 15.0, refresh_s: float = 1.0) -> dict:
    """napari's own floor on this machine: a viewer with the Live dock's three image layers (one visible) whose
    data grow once per ``refresh_s`` with the view following, and no worker at all: event-loop p99."""
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    data = np.random.default_rng(0).random((int(seconds / refresh_s) * 4 + 8, m, m), dtype=np.float32)
    viewer = napari.Viewer(show=True)
    for i, name in enumerate(("diffraction", "amplitude", "phase")):
        viewer.add_image(data[:4], name=name, visible=i == 2)
    gaps, last = [], [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append((now - last[0]) * 1e3)
        last[0] = now

    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)
    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    t0, n, next_t = time.perf_counter(), 4, time.perf_counter() + refresh_s
    while time.perf_counter() - t0 < seconds:
        app.processEvents()
        time.sleep(0.002)
        if time.perf_counter() >= next_t:
            n, next_t = n + 4, next_t + refresh_s
            for layer in viewer.layers:
                layer.data = data[:n]
            viewer.dims.set_current_step(0, n - 1)
    timer.stop()
    viewer.close()
    g = np.asarray(gaps[5:])
    return {"m": m, "refresh_s": refresh_s, "ticks": len(g), "event_loop_p50_ms": float(np.percentile(g, 50)),
            "event_loop_p99_ms": float(np.percentile(g, 99)), "event_loop_max_ms": float(g.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--max-iter", type=int, default=20)
    ap.add_argument("--block", type=int, default=4)
    ap.add_argument("--small-model", action="store_true", help="PID3Net F = 4, refinement width 8, K = 2 (the size of bench_reconstruction --quick; default: the default model)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results") / "live.json")
    ap.add_argument("--gui", action="store_true", help="also the Live dock in napari (run under Xvfb): event-loop "
                    "latency (goal p99 < 50 ms) and frame written -> phase layer latency")
    ap.add_argument("--gui-only", action="store_true", help="only the Live dock measurement")
    ap.add_argument("--gui-rate", type=float, default=5.0, help="writer rate (frames/s) for the GUI measurement")
    ap.add_argument("--gui-frames", type=int, default=60)
    args = ap.parse_args()
    torch.set_num_threads(1)
    small = {"width": 4, "refine_width": 8, "refine_steps": 2} if args.small_model else {}
    gui_rows = []
    floor_rows = []
    if args.gui or args.gui_only:
        for m in args.sizes:
            f = gui_floor(m)
            floor_rows.append(f)
            print(f"GUI   m={m:<4d} napari alone (no worker; 3 layers grow once per second): event loop p50 "
                  f"{f['event_loop_p50_ms']:.1f} ms, p99 {f['event_loop_p99_ms']:.1f} ms, max {f['event_loop_max_ms']:.0f} ms "
                  "(the floor on this machine)", flush=True)
            r = bench_gui(m, args.gui_frames, args.gui_rate, args.max_iter, min(args.block, 2))
            gui_rows.append(r)
            print(f"GUI   m={m:<4d} {r['method']:22s} writer {r['rate_hz']:.1f} Hz, {r['frames_shown']}/{r['frames']} frames "
                  f"shown | event loop p50 {r['event_loop_p50_ms']:.1f} ms, p99 {r['event_loop_p99_ms']:.1f} ms, "
                  f"once the layers exist {r['event_loop_steady_p99_ms']:.1f} ms (goal < 50), max "
                  f"{r['event_loop_max_ms']:.0f} ms | written -> phase layer median "
                  f"{r['layer_latency_median_ms']:.0f} ms, p95 {r['layer_latency_p95_ms']:.0f} ms", flush=True)
    if args.gui_only:
        from napari_cxdi.io.safe_write import write_json

        out = args.out.with_name(args.out.stem + "_gui.json")
        write_json(out, {"gui_rows": gui_rows, "gui_floor_rows": floor_rows, "cpu_count": os.cpu_count(),
                         "provenance": provenance(vars(args) | {"out": str(out)})}, overwrite=True)
        print(f"wrote {out}")
        return
    rows = bench("cpu", args.sizes, args.frames, args.max_iter, args.block, small)
    if torch.cuda.is_available():
        rows += bench("cuda", args.sizes, max(args.frames, 200), args.max_iter, 16, {})
    else:
        print("no CUDA device: GPU figures not measured")
    from napari_cxdi.io.safe_write import write_json

    write_json(args.out, {"rows": rows, "gui_rows": gui_rows, "gui_floor_rows": floor_rows, "note": "CPU figures with torch.set_num_threads(1) on a machine shared with other "
                                                "jobs (2 cores, loaded): indicative only",
                          "cpu_count": os.cpu_count(), "provenance": provenance(vars(args) | {"out": str(args.out)})},
               overwrite=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
