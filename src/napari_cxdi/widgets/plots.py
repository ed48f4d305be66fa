"""Small matplotlib canvases for dock widgets (loss curves, PRTF/FRC, histograms, colour bars) that follow
napari's theme (dark or light) and shrink with the dock."""

from __future__ import annotations

import time

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy

DARK = {"canvas": "#262930", "text": "#f0f1f2", "ticks": "#d0d0d0", "spines": "#808080"}


def theme_colors(theme_name: str | None = None) -> dict[str, str]:
    """Background/text colours of a napari theme ('dark', 'light', ...); the dark defaults without napari."""
    if not theme_name:
        return dict(DARK)
    try:
        from napari.utils.theme import get_theme

        t = get_theme(theme_name)
        return {"canvas": t.background.as_hex(), "text": t.text.as_hex(), "ticks": t.text.as_hex(),
                "spines": t.secondary.as_hex()}
    except Exception:  # unknown theme: keep the dark look
        return dict(DARK)


def viewer_theme(viewer) -> str | None:
    try:
        name = viewer.theme
        if name == "system":
            from napari.utils.theme import get_system_theme

            name = get_system_theme()
        return name
    except Exception:
        return None


#: margins around subplot axes, in pixels: room for tick labels, axis labels and a title
MARGINS_PX = {"left": 44, "right": 8, "bottom": 30, "top": 18, "gap": 46}


class ThemedCanvas(FigureCanvasQTAgg):
    """A figure canvas that restyles itself when the viewer's theme changes (``follow(viewer)``) and stays cheap
    on the Qt main thread while a worker streams updates:

    * redraws are coalesced: ``draw_idle`` at most once per ``min_interval_ms`` (a training run asks for one per
      step; rendering a figure costs tens of milliseconds of the event loop each time);
    * subplot margins are fixed in pixels and set on resize, instead of matplotlib's tight layout, which measures
      every tick label's text extent on every draw (more than half of the draw time).
    """

    min_interval_ms = 250

    def __init__(self, figure: Figure, min_height: int = 90):
        figure.set_layout_engine("none")
        super().__init__(figure)
        self.colors = dict(DARK)
        self.theme_name: str | None = None
        self.setMinimumHeight(min_height)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self._last_draw = 0.0
        self._pending = QTimer(self)
        self._pending.setSingleShot(True)
        self._pending.timeout.connect(self._draw_now)

    def draw_idle(self) -> None:
        """Schedule a redraw; repeated requests within ``min_interval_ms`` of the last draw make one draw. A hidden
        canvas (collapsed section, closed dock) is drawn when it is shown."""
        if not self.isVisible():
            self._stale = True
            return
        if self._pending.isActive():
            return
        wait_ms = self.min_interval_ms - (time.perf_counter() - self._last_draw) * 1e3
        self._pending.start(max(0, int(wait_ms)))

    def _draw_now(self) -> None:
        self._last_draw = time.perf_counter()
        try:
            super().draw_idle()
        except RuntimeError:  # the canvas was deleted with its dock
            pass

    def fit_margins(self) -> None:
        """Subplot margins for the current canvas size (pixels in ``MARGINS_PX``)."""
        w, h = max(self.width(), 60), max(self.height(), 40)
        subplots = [ax for ax in self.figure.axes if ax.get_subplotspec() is not None]
        if not subplots:
            return
        n = max(ax.get_subplotspec().get_gridspec().ncols for ax in subplots)
        m = MARGINS_PX
        inner = max(w - m["left"] - m["right"] - (n - 1) * m["gap"], 20)
        self.figure.subplots_adjust(left=m["left"] / w, right=1 - m["right"] / w, bottom=min(m["bottom"] / h, 0.45),
                                    top=max(1 - m["top"] / h, 0.55), wspace=m["gap"] / (inner / n))

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if getattr(self, "_stale", False):
            self._stale = False
            self.draw_idle()

    def resizeEvent(self, event) -> None:
        self.fit_margins()
        super().resizeEvent(event)

    def follow(self, viewer) -> None:
        if viewer is None:
            return
        self.apply_theme(viewer_theme(viewer))
        try:
            viewer.events.theme.connect(lambda e=None: self._on_theme(viewer))
        except AttributeError:
            pass

    def _on_theme(self, viewer) -> None:
        try:
            self.apply_theme(viewer_theme(viewer))
        except RuntimeError:  # the canvas was deleted with its dock
            pass

    def apply_theme(self, name: str | None) -> None:
        self.theme_name = name
        self.colors = theme_colors(name)
        self.figure.patch.set_facecolor(self.colors["canvas"])
        for ax in self.figure.axes:
            self.style(ax)
        self.draw_idle()

    @staticmethod
    def plain_labels(ax) -> None:
        """Tick labels as plain text ('0.01', '1e+04'): matplotlib's default log-axis labels are mathtext
        ('$10^{-2}$'), whose parsing is most of a small plot's render time."""
        from matplotlib.ticker import FuncFormatter, NullFormatter

        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
                axis.set_minor_formatter(NullFormatter())

    def draw(self) -> None:
        for ax in self.figure.axes:
            self.plain_labels(ax)
        super().draw()

    def style(self, ax) -> None:
        c = self.colors
        ax.set_facecolor(c["canvas"])
        ax.tick_params(colors=c["ticks"], labelsize=7)
        for spine in ax.spines.values():
            spine.set_color(c["spines"])
        ax.xaxis.label.set_color(c["ticks"])
        ax.yaxis.label.set_color(c["ticks"])
        ax.title.set_color(c["text"])

    def legend(self, ax) -> None:
        ax.legend(fontsize=6, facecolor=self.colors["canvas"], labelcolor=self.colors["ticks"],
                  edgecolor=self.colors["spines"])


class PlotCanvas(ThemedCanvas):
    """A Figure with ``n`` side-by-side axes."""

    def __init__(self, n: int = 2, height: float = 2.4, parent=None, min_height: int = 110):
        figure = Figure(figsize=(4.5, height))
        super().__init__(figure, min_height)
        self.figure = figure
        self.figure.patch.set_facecolor(self.colors["canvas"])
        self.setParent(parent)
        self.axes = [self.figure.add_subplot(1, n, i + 1) for i in range(n)]
        for ax in self.axes:
            self.style(ax)
        self.fit_margins()

    def clear(self, i: int, title: str = "", xlabel: str = "", ylabel: str = ""):
        ax = self.axes[i]
        ax.clear()
        self.style(ax)

        ax.set_title(title, fontsize=8)
        ax.set_xlabel(xlabel, fontsize=7)
        ax.set_ylabel(ylabel, fontsize=7)
        return ax

    def clear_all(self, titles=()) -> None:
        """Empty every axis (a new run starts with empty plots)."""
        for i in range(len(self.axes)):
            self.clear(i, titles[i] if i < len(titles) else "")
        self.draw_idle()


class ColorBar(ThemedCanvas):
    """A thin horizontal colour bar with a title and a unit."""

    def __init__(self, height_px: int = 56):
        figure = Figure(figsize=(4.0, 0.6))
        super().__init__(figure, height_px)
        self.figure = figure
        self.ax = self.figure.add_axes((0.05, 0.42, 0.9, 0.24))
        self.setFixedHeight(height_px)
        self.title = ""
        self.apply_theme(None)

    def show_scale(self, cmap: str | None, limits=(0.0, 1.0), label: str = "", unit: str = "") -> None:
        import matplotlib
        from matplotlib.colorbar import ColorbarBase
        from matplotlib.colors import Normalize

        self.ax.clear()
        self.title = f"{label} ({unit})" if unit else label
        if cmap is None:
            self.ax.set_axis_off()
        else:
            self.ax.set_axis_on()
            ColorbarBase(self.ax, cmap=matplotlib.colormaps[cmap], norm=Normalize(*limits), orientation="horizontal")
            self.ax.tick_params(colors=self.colors["ticks"], labelsize=7)
            self.ax.set_title(self.title, fontsize=7, color=self.colors["text"], pad=2)
        self.draw_idle()

    def style(self, ax) -> None:  # the bar keeps its colours; only text follows the theme
        ax.tick_params(colors=self.colors["ticks"], labelsize=7)
        ax.title.set_color(self.colors["text"])
