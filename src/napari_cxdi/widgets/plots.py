"""A small matplotlib canvas for dock widgets (loss curves, PRTF/FRC, histograms)."""

from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure


class PlotCanvas(FigureCanvasQTAgg):
    """A Figure with ``n`` side-by-side axes, styled for napari's dark theme."""

    def __init__(self, n: int = 2, height: float = 2.4, parent=None):
        self.figure = Figure(figsize=(4.5, height), tight_layout=True)
        self.figure.patch.set_facecolor("#262930")
        super().__init__(self.figure)
        self.setParent(parent)
        self.axes = [self.figure.add_subplot(1, n, i + 1) for i in range(n)]
        for ax in self.axes:
            self.style(ax)

    @staticmethod
    def style(ax) -> None:
        ax.set_facecolor("#262930")
        ax.tick_params(colors="#d0d0d0", labelsize=7)
        for spine in ax.spines.values():
            spine.set_color("#808080")
        ax.xaxis.label.set_color("#d0d0d0")
        ax.yaxis.label.set_color("#d0d0d0")
        ax.title.set_color("#f0f0f0")

    def clear(self, i: int, title: str = "", xlabel: str = "", ylabel: str = ""):
        ax = self.axes[i]
        ax.clear()
        self.style(ax)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel(xlabel, fontsize=7)
        ax.set_ylabel(ylabel, fontsize=7)
        return ax
