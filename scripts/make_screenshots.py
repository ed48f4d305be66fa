"""Screenshots for the README, taken under Xvfb: ``xvfb-run -a python scripts/make_screenshots.py``.

Opens the simulated AuNP sample, reconstructs it from the reconstruction dock with its default preset (on a
machine without a GPU: the CPU preset, a few minutes), saves the window to ``docs/reconstruction_widget.png``,
then tracks the particles in the reconstructed phase from the tracking dock and saves
``docs/tracking_widget.png``. ``--preset NAME`` picks another preset.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import napari
from qtpy.QtCore import QThreadPool
from qtpy.QtWidgets import QApplication

from napari_cxdi.sessions import PRESETS, default_preset
from napari_cxdi.widgets.reconstruction_widget import ReconstructionWidget
from napari_cxdi.widgets.tracking_widget import TrackingWidget

DOCS = Path(__file__).resolve().parents[1] / "docs"


def settle(app, n=30):
    for _ in range(n):
        app.processEvents()
        time.sleep(0.01)


def wait(widget, app, timeout_s=1800):
    t0 = time.time()
    while widget.running and time.time() - t0 < timeout_s:
        app.processEvents()
        time.sleep(0.05)
    QThreadPool.globalInstance().waitForDone(10_000)
    settle(app)


def screenshots(preset: str) -> list[Path]:
    app = QApplication.instance() or QApplication([])
    viewer = napari.Viewer(title="napari-cxdi", show=True)
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-cxdi", "aunp")
    widget = ReconstructionWidget(viewer)
    dock = viewer.window.add_dock_widget(widget, name="CXDI reconstruction (PID3Net)", area="right")
    widget.preset_combo.setCurrentText(preset)
    widget.start()
    wait(widget, app)
    if widget.result is None or widget.result.objects is None:
        raise SystemExit(f"reconstruction did not finish: {widget.status.text()}")
    method = widget.result.method
    phase_name = f"AuNP phase ({method})"
    for layer in viewer.layers:
        layer.visible = layer.name in (phase_name, "AuNP true tracks")
    phase = viewer.layers[phase_name]
    phase.blending, phase.opacity = "translucent", 0.75  # the true tracks (below) show through
    viewer.dims.set_current_step(0, 32)
    viewer.reset_view()
    settle(app)
    DOCS.mkdir(exist_ok=True)
    out = [DOCS / "reconstruction_widget.png"]
    viewer.window.screenshot(str(out[0]), canvas_only=False)
    # tracking on the reconstructed phase, in a second dock tabbed with the first
    tracker = TrackingWidget(viewer)
    tdock = viewer.window.add_dock_widget(tracker, name="CXDI particle tracking", area="right", tabify=True)
    tracker.layer_combo.setCurrentText(phase_name)
    tracker.start()
    wait(tracker, app)
    for layer in viewer.layers:
        layer.visible = layer.name in (phase_name, f"{phase_name} particles", f"{phase_name} tracks")
    tdock.raise_()
    settle(app)
    out.append(DOCS / "tracking_widget.png")
    viewer.window.screenshot(str(out[1]), canvas_only=False)
    viewer.close()
    del dock
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default=None, choices=list(PRESETS))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for p in screenshots(args.preset or default_preset()):
        print(p)
