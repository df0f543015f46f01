"""What every picture shares: matplotlib on the Agg canvas, a fixed style, atomic PNG files.

minidl never uses the caller's matplotlib backend: it imports matplotlib with MPLBACKEND
hidden (a notebook's `module://matplotlib_inline...` or a misspelt value would otherwise
stop the import), never imports pyplot, and gives each Figure its own FigureCanvasAgg. So
drawing opens no window, changes nobody's backend, and each figure is freed when dropped.
The pictures are drawn in matplotlib's default style whatever the caller's rcParams say, one
figure per picture, laid out by constrained layout (titles, labels, legends and colour bars
inside the figure); PNGs are written (the Agg canvas's pixels, encoded by Pillow) with
light zlib compression, atomically.
"""

from __future__ import annotations

import io
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
    """The matplotlib module, imported without reading MPLBACKEND (see the module docstring),
    with the parts drawing uses (Figure, the Agg canvas, image encoding)."""
    import sys

    if "matplotlib" not in sys.modules:
        hidden = os.environ.pop("MPLBACKEND", None)
        try:
            import matplotlib
        finally:
            if hidden is not None:
                os.environ["MPLBACKEND"] = hidden
    import matplotlib
    import matplotlib.backends.backend_agg
    import matplotlib.figure
    import matplotlib.image  # noqa: F401

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
    """A Figure of `width` x `height` inches on its own Agg canvas, with constrained layout."""
    import_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def legend_below(fig: Figure, ax: Axes, ncols: int = 4) -> None:
    """The legend of `ax`'s labelled artists under the axes, inside the figure (constrained
    layout makes room for it), in at most `ncols` columns and as many as the figure's width
    holds (a small font's character is about 0.07 inch); nothing when none is labelled."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        entry_in = 0.6 + 0.07 * max(len(label) for label in labels)
        fits = int(fig.get_size_inches()[0] / entry_in)
        fig.legend(handles, labels, loc="outside lower center", fontsize="small",
                   ncols=max(1, min(ncols, len(labels), fits)), frameon=False)


def save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write `fig` as a PNG at `path` atomically (runs.atomic_write), at DPI with light zlib
    compression (PNG_COMPRESS_LEVEL).

    The figure is drawn once on its Agg canvas (constrained layout runs inside that draw)
    and the canvas's pixels are encoded by Pillow through matplotlib.image.imsave: what
    `fig.savefig(png, dpi=DPI)` writes, pixel for pixel, in about 80% of its time, since
    savefig draws a figure with a layout engine twice (once with rendering switched off to
    lay it out, then again to render; benchmarks/README.md). Encoding takes about 15 ms a
    picture, most of it Pillow's search over the five PNG row filters.
    """
    import matplotlib.image
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from minidl_cli import runs  # the one atomic writer (its OSError names `path`)

    path = Path(path)
    if not isinstance(fig.canvas, FigureCanvasAgg):  # a Figure made elsewhere, as savefig
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    png = io.BytesIO()
    matplotlib.image.imsave(png, fig.canvas.buffer_rgba(), format="png", origin="upper",
                            dpi=fig.dpi, pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
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


def no_ticks(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
