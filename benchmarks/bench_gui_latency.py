"""GUI responsiveness of the four docks, with their CPU defaults, on the bundled samples.

For each dock a 10 ms QTimer runs on the Qt main thread while the dock's worker runs; the gaps between
ticks are the event loop's latency (a frozen UI shows up as a long gap). Also measured: the time from
Reconstruct to the first preview and to the result with the dock's default preset (on a machine without
a GPU: the CPU preset) on the simulated AuNP sample (64 frames of 128 x 128), and each dock's minimum
height when docked. Run under Xvfb:

    xvfb-run -a python benchmarks/bench_gui_latency.py            # all docks
    xvfb-run -a python benchmarks/bench_gui_latency.py --docks reconstruction --preset "quick: mf-PIE baseline"
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

import napari
from qtpy.QtCore import QThreadPool, QTimer
from qtpy.QtWidgets import QApplication

from napari_cxdi.io.safe_write import write_json
from napari_cxdi.provenance import provenance
from napari_cxdi.sessions import PRESETS, default_preset
from napari_cxdi.widgets.molecule_widget import MoleculeWidget
from napari_cxdi.widgets.reconstruction_widget import ReconstructionWidget
from napari_cxdi.widgets.speckle_widget import SpeckleWidget
from napari_cxdi.widgets.tracking_widget import TrackingWidget

DOCKS = ("reconstruction", "tracking", "speckle", "molecules")


class Ticker:
    """Gaps (ms) between 10 ms timer ticks while ``active()`` is true."""

    def __init__(self, active):
        self.active, self.gaps, self.last = active, [], time.perf_counter()
        self.timer = QTimer()
        self.timer.timeout.connect(self.tick)
        self.timer.start(10)

    def tick(self):
        now = time.perf_counter()
        if self.active():
            self.gaps.append((now - self.last) * 1e3)
        self.last = now

    def stats(self) -> dict:
        self.timer.stop()
        g = np.asarray(self.gaps) if self.gaps else np.zeros(1)
        return {"ticks": int(len(self.gaps)), "latency_p50_ms": float(np.percentile(g, 50)),
                "latency_p99_ms": float(np.percentile(g, 99)), "latency_max_ms": float(g.max())}


def run_until_idle(app, widget, timeout_s=1800):
    t0 = time.perf_counter()
    while widget.running and time.perf_counter() - t0 < timeout_s:
        app.processEvents()
        time.sleep(0.002)
    QThreadPool.globalInstance().waitForDone(10_000)
    app.processEvents()
    return time.perf_counter() - t0


def bench_reconstruction(app, viewer, preset: str) -> dict:
    widget = ReconstructionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="reconstruction")
    widget.preset_combo.setCurrentText(preset)
    eta = widget.eta_label.text()
    estimate = widget.session.settings
    ticker = Ticker(lambda: widget.running)
    t0 = time.perf_counter()
    widget.start()
    click = time.perf_counter() - t0
    total = run_until_idle(app, widget)
    row = {"dock": "reconstruction", "preset": preset, "method": estimate.method, "eta_shown": eta,
           "start_click_ms": click * 1e3, "first_preview_s": widget.session.t_first_preview,
           "previews": widget.session.previews, "result_s": total, "status": widget.status.text(),
           "metrics": widget.metrics_label.text(), **ticker.stats()}
    return row


def bench_tracking(app, viewer) -> dict:
    widget = TrackingWidget(viewer)
    viewer.window.add_dock_widget(widget, name="tracking")
    phase = [layer.name for layer in viewer.layers if " phase (" in layer.name]
    widget.layer_combo.setCurrentText(phase[0] if phase else "AuNP true phase")
    ticker = Ticker(lambda: widget.running)
    t0 = time.perf_counter()
    widget.start()
    total = run_until_idle(app, widget)
    return {"dock": "tracking", "layer": widget.layer_combo.currentText(), "result_s": total,
            "status": widget.status.text(), **ticker.stats()}


def bench_speckle(app, viewer) -> dict:
    widget = SpeckleWidget(viewer)
    viewer.window.add_dock_widget(widget, name="speckle")
    ticker = Ticker(lambda: widget.running if hasattr(widget, "running") else widget.worker is not None)
    t0 = time.perf_counter()
    widget.generate_sample()
    while widget.worker is not None:
        app.processEvents()
        time.sleep(0.002)
    widget.classify()
    while widget.worker is not None:
        app.processEvents()
        time.sleep(0.002)
    total = time.perf_counter() - t0
    return {"dock": "speckle", "result_s": total, "status": widget.result_label.text().splitlines()[0],
            **ticker.stats()}


def bench_molecules(app, viewer) -> dict:
    widget = MoleculeWidget(viewer)
    viewer.window.add_dock_widget(widget, name="molecules")
    ticker = Ticker(lambda: widget.running)
    t0 = time.perf_counter()
    widget.load("deformed C60 trajectory (12 frames)")
    total = run_until_idle(app, widget)
    row = {"dock": "molecules", "result_s": total, "status": widget.status.text(), **ticker.stats()}
    widget.cleanup()
    return row


def minimum_heights() -> dict:
    viewer = napari.Viewer(show=True)
    heights = {}
    for name, cls in zip(DOCKS, (ReconstructionWidget, TrackingWidget, SpeckleWidget, MoleculeWidget)):
        widget = cls(viewer)
        dock = viewer.window.add_dock_widget(widget, name=name)
        heights[name] = int(dock.minimumSizeHint().height())
        if cls is MoleculeWidget:
            widget.cleanup()
    viewer.close()
    return heights


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docks", nargs="+", default=list(DOCKS), choices=DOCKS)
    ap.add_argument("--preset", default=None, choices=list(PRESETS), help="default: the dock's own default here")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the shared 2-core test machine: 1)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gui_latency.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    app = QApplication.instance() or QApplication([])
    preset = args.preset or default_preset()
    rows = []
    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-cxdi", "aunp")
    others = []

    def fresh():
        others.append(napari.Viewer(show=True))
        return others[-1]

    for dock in args.docks:
        fn = {"reconstruction": lambda: bench_reconstruction(app, viewer, preset),
              "tracking": lambda: bench_tracking(app, viewer),
              "speckle": lambda: bench_speckle(app, fresh()),
              "molecules": lambda: bench_molecules(app, fresh())}[dock]
        rows.append(fn())
        print(f"{rows[-1]['dock']}: {rows[-1]['status'][:110]}", flush=True)
    for v in [viewer, *others]:
        v.close()
    heights = minimum_heights()
    print(f"\n{'dock':16s}{'ticks':>7s}{'p50 ms':>8s}{'p99 ms':>8s}{'max ms':>8s}{'result s':>10s}{'1st preview s':>15s}"
          f"{'min height px':>15s}")
    for r in rows:
        fp = r.get("first_preview_s")
        print(f"{r['dock']:16s}{r['ticks']:>7d}{r['latency_p50_ms']:>8.1f}{r['latency_p99_ms']:>8.1f}"
              f"{r['latency_max_ms']:>8.1f}{r['result_s']:>10.1f}{(f'{fp:.1f}' if fp else '-'):>15s}"
              f"{heights[r['dock']]:>15d}")
    print(f"minimum heights (px): {heights}; limit 648 each, two largest {sum(sorted(heights.values())[-2:])} "
          f"(1080p column)")
    print("(timer interval 10 ms: p50 ~10 ms means the event loop never waits on the worker; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; software OpenGL under Xvfb)")
    config = {"docks": args.docks, "preset": preset, "torch_threads": args.threads, "load_average": os.getloadavg()[0],
              "cuda": torch.cuda.is_available(), "sample": "AuNP 64 x 128 x 128"}
    write_json(args.out, provenance(config, {"rows": rows, "minimum_heights_px": heights}), overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
