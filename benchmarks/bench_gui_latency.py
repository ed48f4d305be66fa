"""Event-loop latency of napari while the reconstruction widget trains PID3Net in its worker.

A 10 ms QTimer runs on the Qt main thread during a run on the simulated AuNP sample; the gaps
between its ticks are the GUI's latency (a frozen UI shows up as a long gap). Run under Xvfb:

    xvfb-run -a python benchmarks/bench_gui_latency.py --epochs 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch  # noqa: F401  (before Qt)

import napari
from qtpy.QtCore import QThreadPool, QTimer
from qtpy.QtWidgets import QApplication

from napari_cxdi.provenance import provenance
from napari_cxdi.widgets.reconstruction_widget import ReconstructionWidget


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--method", default="PID3Net-PO")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gui_latency.json")
    args = ap.parse_args(argv)
    app = QApplication.instance() or QApplication([])
    viewer = napari.Viewer(show=True)
    viewer.open_sample("napari-cxdi", "aunp")
    widget = ReconstructionWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.method_combo.setCurrentText(args.method)
    widget.epochs.setValue(args.epochs)
    widget.width.setValue(4)
    widget.refine_steps.setValue(2)
    phases = {"training": [], "other": []}
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        training = bool(widget._losses) and widget.result is None
        phases["training" if training else "other"].append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    t0 = time.perf_counter()
    widget.start()
    click = time.perf_counter() - t0
    while widget.running:
        app.processEvents()
        time.sleep(0.002)
    QThreadPool.globalInstance().waitForDone(10_000)
    timer.stop()
    gaps = np.asarray(phases["training"]) * 1e3
    row = {
        "method": args.method, "epochs": args.epochs, "start_click_ms": click * 1e3, "ticks": int(gaps.size),
        "latency_p50_ms": float(np.percentile(gaps, 50)), "latency_p95_ms": float(np.percentile(gaps, 95)),
        "latency_max_ms": float(gaps.max()), "status": widget.status.text(),
    }
    print(f"{'method':12s}{'ticks':>7s}{'p50 ms':>8s}{'p95 ms':>8s}{'max ms':>8s}{'start ms':>9s}")
    print(f"{row['method']:12s}{row['ticks']:>7d}{row['latency_p50_ms']:>8.1f}{row['latency_p95_ms']:>8.1f}"
          f"{row['latency_max_ms']:>8.1f}{row['start_click_ms']:>9.0f}")
    print("(timer interval 10 ms: p50 ~10 ms means the event loop never waits on the worker)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(provenance({"epochs": args.epochs, "method": args.method}, row), indent=1))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
