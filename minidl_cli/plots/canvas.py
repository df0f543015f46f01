"""What every picture shares: matplotlib on the Agg canvas, a fixed style, atomic PNG files.

minidl never uses the caller's matplotlib backend: it imports matplotlib with MPLBACKEND
hidden (a notebook's `module://matplotlib_inline...` or a misspelt value would otherwise
stop the import), never imports pyplot, and gives each Figure its own FigureCanvasAgg. So
drawing opens no window, changes nobody's backend, and each figure is freed when dropped.
The pictures are drawn in matplotlib's default style whatever the caller's rcParams say.
Figures have fixed margins (no constrained layout, which costs about as much as the drawing)
and PNGs are written (by Pillow, through savefig) with light zlib compression.
"""

from __future__ import annotations

import functools
import io
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
# zlib level: the default 6 takes about 1.8x as long to encode a picture (33 vs 19 ms)
# for files ~30% smaller
PNG_COMPRESS_LEVEL = 1
ERROR_COLOR = "red"
# tab10 then tab20's light shades, without the reds: red marks errors
PALETTE = ["C0", "C1", "C2", "C4", "C5", "C6", "C7", "C8", "C9",
           "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
           "#dbdb8d", "#9edae5"]
MAX_POINTS = 5000  # scatter pictures draw at most this many points (an even subsample)

_style: dict[str, Any] | None = None


def import_matplotlib() -> Any:
    """The matplotlib module, imported without reading MPLBACKEND (see the module docstring)."""
    import sys

    if "matplotlib" not in sys.modules:
        hidden = os.environ.pop("MPLBACKEND", None)
        try:
            import matplotlib
        finally:
            if hidden is not None:
                os.environ["MPLBACKEND"] = hidden
    import matplotlib

    return matplotlib


@contextmanager
def default_style() -> Iterator[None]:
    """matplotlib's default rcParams (never the backend) while a picture is built and saved."""
    global _style
    mpl = import_matplotlib()
    if _style is None:
        _style = {k: v for k, v in mpl.rcParamsDefault.items() if k != "backend"}
    with mpl.rc_context(_style):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A Figure of `width` x `height` inches on its own Agg canvas, without a layout engine."""
    import_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="none")
    FigureCanvasAgg(fig)
    return fig


def margins(fig: Figure, left: float = 0.8, right: float = 0.25, bottom: float = 0.6,
            top: float = 0.45, wspace: float = 0.3) -> None:
    """Fixed subplot margins in inches (cheap, unlike a layout engine)."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=wspace)


def emptied_axes(fig: Figure) -> Axes:
    """The one axes of `fig`, without its lines, collections and legends (the figure's too),
    its data limits, colour cycle, aspect and grid reset: a picture drawn on it afterwards
    looks as it would on a new figure of the same size and margins, and costs less (the
    axes, their ticks and the canvas are the dearest part of a picture to build).

    A title given a fixed height (set_title(y=...)) keeps it, as matplotlib has no public
    way back to placing it itself: reuse a figure for a picture that lets matplotlib place
    its title (points) only before one that fixes it (curves).
    """
    ax = fig.axes[0]
    legend = ax.get_legend()
    for artist in [*ax.lines, *ax.collections, *fig.legends, *([legend] if legend else [])]:
        artist.remove()
    ax.relim()
    ax.set_prop_cycle(None)
    ax.set_aspect("auto")
    ax.grid(False)
    return ax


def legend_rows(entries: int, ncol: int) -> int:
    return math.ceil(entries / max(1, ncol))


def legend_columns(labels: Sequence[str], width: float, most: int = 4) -> int:
    """How many legend entries fit side by side in `width` inches (small font: about
    0.062 inch a character, 0.55 inch for the marker and spacing)."""
    entry = 0.55 + 0.062 * max((len(label) for label in labels), default=1)
    return max(1, min(most, len(labels), int(width / entry)))


LEGEND_ROW_IN = 0.24  # inches per row of a small legend


def figure_legend(fig: Figure, handles: Sequence[Any], labels: Sequence[str], ncol: int) -> None:
    """A legend in the band at the bottom of the figure that `margins` left free for it."""
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.02), ncol=ncol,
               fontsize="small", markerscale=1.5, frameon=False, handletextpad=0.3,
               columnspacing=1.2)


def save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write `fig` as a PNG at `path` atomically (runs.atomic_write), with
    savefig at DPI and light zlib compression (PNG_COMPRESS_LEVEL); the figure is kept (a
    run's pictures are drawn on one figure, see emptied_axes).

    Encoding is Pillow's (about 15 ms a picture, of which most is its search over the five
    PNG row filters): a hand-written encoder measured 4 ms, but encoding images is a
    well-kept library's job, not minidl's.
    """
    from minidl_cli import runs  # the one atomic writer (its OSError names `path`)

    path = Path(path)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI, pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
    runs.atomic_write(path, png.getvalue())
    return path


def numpy(a: Any) -> np.ndarray:
    """A numpy array from a torch tensor, numpy array or (nested) list."""
    import numpy as np

    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def color(i: int) -> str:
    """The colour of class or run `i`; never red, which marks errors."""
    return PALETTE[i % len(PALETTE)]


def class_name(label: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= label < len(class_names):
        return str(class_names[label])
    return f"class {label}"


def count(n: int, noun: str) -> str:
    """'1 error', '3 errors'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def shorten(text: str, width: int = 18) -> str:
    """`text` cut to `width` characters with an ellipsis (tick labels, grid captions)."""
    return text if len(text) <= width else text[: width - 1] + "…"


def subsample(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Evenly spaced indices of at most `limit` of `n` rows (all of them when n <= limit)."""
    import numpy as np

    if n <= limit:
        return np.arange(n)
    return np.linspace(0, n - 1, limit).round().astype(int)


def in_view_locator(integer: bool = False) -> Any:
    """matplotlib's default major tick locator (AutoLocator: about 9 bins at most, steps of
    1, 2, 2.5 and 5 times a power of ten), whole numbers only with `integer`, that returns
    only the ticks inside the view: AutoLocator also returns one beyond each end, for which
    matplotlib builds a Tick (three lines, two texts) and a label it never draws."""
    return _in_view_locator_class()(nbins="auto", steps=[1, 2, 2.5, 5, 10], integer=integer)


def in_view_ticks(ax: Axes, integer_x: bool = False) -> None:
    """Both axes of `ax` ticked by `in_view_locator` (the same ticks as matplotlib's default)."""
    ax.xaxis.set_major_locator(in_view_locator(integer_x))
    ax.yaxis.set_major_locator(in_view_locator())


@functools.cache
def _in_view_locator_class() -> type:
    import_matplotlib()
    from matplotlib.ticker import MaxNLocator

    class InViewLocator(MaxNLocator):
        def __call__(self) -> Any:
            low, high = sorted(self.axis.get_view_interval())
            locs = self.tick_values(low, high)
            slack = (high - low) * 1e-10  # the tolerance with which matplotlib draws a tick
            return locs[(locs >= low - slack) & (locs <= high + slack)]

    return InViewLocator


# The height of a line of tick labels, in ems: matplotlib sets a line of text as high as
# the font's ascender plus descender, which in DejaVu Sans (the default font) make one em.
TICK_LABEL_LINE_EM = 1.0


def set_xlabel(ax: Axes, text: str) -> None:
    """ax.set_xlabel(text), the label placed now where matplotlib would put it under the
    tick labels (labelpad under one line of them), instead of measuring every tick label
    again at each draw to find that place."""
    mpl = import_matplotlib()
    from matplotlib.font_manager import FontProperties
    from matplotlib.transforms import offset_copy

    rc = mpl.rcParams
    line = FontProperties(size=rc["xtick.labelsize"]).get_size_in_points() * TICK_LABEL_LINE_EM
    down = rc["xtick.major.size"] + rc["xtick.major.pad"] + line + rc["axes.labelpad"]
    ax.set_xlabel(text)
    ax.xaxis.set_label_coords(0.5, 0.0, transform=offset_copy(
        ax.transAxes, fig=ax.get_figure(root=True), y=-down, units="points"))


def no_ticks(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
