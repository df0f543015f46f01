"""1-D signals (MNIST-1D): a grid of training signals drawn as curves with their labels, and
of test signals with their predicted labels, the wrong ones in red. The rows are chosen as
for images (every class in turn; the first errors, then right ones).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidl_cli.plots.canvas import ERROR_COLOR, default_style, new_figure, numpy, save, shorten
from minidl_cli.plots.images import prediction_rows, sample_rows

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLUMNS = 8
SIGNALS = 32  # at most this many signals per grid
CELL_IN = (1.1, 0.8)  # a panel's width and height, in inches


def signal_grid(x: Any, captions: Sequence[str], title: str,
                wrong: Sequence[bool] | None = None) -> Figure:
    """One small panel per signal, its points joined by a line, the caption above it; the
    panels share their axes, so the signals compare by eye.

    Shape: x (n, L), n <= SIGNALS is sensible; captions n strings.
    """
    x = numpy(x)
    n = len(x)
    columns = min(COLUMNS, max(1, n))
    rows = math.ceil(n / columns)
    fig = new_figure(columns * CELL_IN[0], rows * CELL_IN[1] + 0.5)
    axes = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_axis_off()
            continue
        bad = wrong is not None and wrong[i]
        ax.plot(x[i], color=ERROR_COLOR if bad else "C0", linewidth=1)
        ax.set_title(captions[i], fontsize=7, color=ERROR_COLOR if bad else "black",
                     fontweight="bold" if bad else "normal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize="medium")
    return fig


def _caption(label: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= label < len(class_names):
        return shorten(str(class_names[label]), 12)
    return str(label)


def plot_signal_data(x: Any, y: Any, path: str | os.PathLike,
                     class_names: Sequence[str] | None = None) -> Path:
    """Training signals, every class in turn, captioned with their labels, as a PNG at `path`.

    Shape: x (n, L), y (n,) integer labels.
    """
    rows = sample_rows(y, SIGNALS)
    labels = numpy(y).astype(int)[rows]
    captions = [_caption(int(c), class_names) for c in labels]
    with default_style():
        return save(signal_grid(numpy(x)[rows], captions, "Training signals and their labels"),
                    path)


def plot_signal_predictions(x: Any, y_true: Any, y_pred: Any, path: str | os.PathLike,
                            class_names: Sequence[str] | None = None) -> Path:
    """Test signals captioned with their predicted labels (errors in red, "predicted (true)"),
    as a PNG at `path`. Shape: x (n, L), y_true and y_pred (n,) integer labels.
    """
    y_true, y_pred = numpy(y_true).astype(int), numpy(y_pred).astype(int)
    wrong = y_true != y_pred
    rows = prediction_rows(wrong, SIGNALS)
    captions = [_caption(int(p), class_names) if p == t else
                f"{_caption(int(p), class_names)} ({_caption(int(t), class_names)})"
                for p, t in zip(y_pred[rows], y_true[rows], strict=True)]
    title = (f"Test signals and their predicted labels: {int(wrong.sum())} of {len(wrong)} "
             "wrong (red: predicted (true))")
    with default_style():
        return save(signal_grid(numpy(x)[rows], captions, title, wrong[rows].tolist()), path)
