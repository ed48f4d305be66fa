"""Screenshots for the README, taken under Xvfb: ``xvfb-run -a python scripts/make_screenshots.py``.

Opens the simulated AuNP sample, reconstructs it from the reconstruction dock widget (a short
PID3Net-PO run on the CPU) and saves the whole window to ``docs/reconstruction_widget.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch  # noqa: F401  (before Qt)

import napari
from qtpy.QtCore import QThreadPool
from qtpy.QtWidgets import QApplication

from napari_cxdi.widgets.reconstruction_widget import ReconstructionWidget

DOCS = Path(__file__).resolve().parents[1] / "docs"


def wait(widget, app, timeout_s=1800):
    import time

    t0 = time.time()
    while widget.running and time.time() - t0 < timeout_s:
        app.processEvents()
        time.sleep(0.05)
    QThreadPool.globalInstance().waitForDone(10_000)
    for _ in range(20):
        app.processEvents()


def reconstruction_screenshot(epochs: int) -> Path:
    viewer = napari.Viewer(title="napari-cxdi", show=True)
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-cxdi", "aunp")
    widget = ReconstructionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="CXDI reconstruction (PID3Net)", area="right")
    widget.epochs.setValue(epochs)
    widget.width.setValue(4)
    widget.refine_steps.setValue(2)
    widget.refine_width.setValue(8)
    widget.device.setCurrentText("auto")
    widget.start()
    app = QApplication.instance()
    wait(widget, app)
    if widget.result is None or widget.result.objects is None:
        raise SystemExit(f"reconstruction did not finish: {widget.status.text()}")
    for layer in viewer.layers:
        layer.visible = layer.name in ("AuNP phase (PID3Net-PO)", "AuNP true tracks")
    phase = viewer.layers["AuNP phase (PID3Net-PO)"]
    phase.blending, phase.opacity = "translucent", 0.75  # the true tracks (below) show through
    viewer.dims.set_current_step(0, 32)
    viewer.reset_view()
    for _ in range(20):
        app.processEvents()
    DOCS.mkdir(exist_ok=True)
    out = DOCS / "reconstruction_widget.png"
    viewer.window.screenshot(str(out), canvas_only=False)
    viewer.close()
    return out


if __name__ == "__main__":
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    print(reconstruction_screenshot(epochs))
