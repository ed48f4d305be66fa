"""Screenshot of the molecule dock widget for the README: a deformed-C60 trajectory coloured by
SCANN GA scores (shipped qm9-homo model), one atom picked with its Voronoi neighbours.

    xvfb-run -a -s "-screen 0 1400x900x24" python scripts/make_molecule_screenshot.py [out.png]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

torch.set_num_threads(1)

import napari  # noqa: E402
from qtpy.QtCore import QThreadPool  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_cxdi.widgets.molecule_widget import show_molecule  # noqa: E402


def wait(app: QApplication, cond, timeout_s: float = 120.0) -> None:
    import time

    t0 = time.time()
    while not cond():
        app.processEvents()
        time.sleep(0.02)
        if time.time() - t0 > timeout_s:
            raise TimeoutError("prediction did not finish")


def main(out: str = "docs/molecule_widget.png") -> Path:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    widget = show_molecule(viewer, "deformed C60 trajectory (12 frames)", model="qm9-homo", colormap="viridis")
    app = QApplication.instance()
    wait(app, lambda: widget.results is not None and not widget.running)
    QThreadPool.globalInstance().waitForDone(5000)
    widget.resize(560, 860)
    widget.set_frame(3)
    widget.select_atom(int(widget.results[3].ga_scores.argmax()))
    for _ in range(20):
        app.processEvents()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    widget.grab().save(str(path))
    widget.cleanup()
    viewer.close()
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main(*sys.argv[1:2])
