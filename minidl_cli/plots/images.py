"""Image data: a grid of training samples with their labels, and of test images with their
predicted labels, the wrong ones framed and captioned in red.

The grid is one mosaic image (one imshow, one caption per tile) rather than one Axes per
image, which would cost ten times more to draw. Each image is min-max scaled on its own;
one channel is drawn in grey, three as RGB, any other count by its first channel in grey.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidl_cli.plots.canvas import (
    ERROR_COLOR,
    count,
    default_style,
    new_figure,
    numpy,
    save,
    shorten,
)

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

GRID_COLUMNS = 8
GRID_IMAGES = 40  # at most this many images per grid
CELL_IN = 0.9  # the width of one tile, in inches
RED = (1.0, 0.0, 0.0)
MIN_TILE_PX = 32  # smaller images are enlarged to about this many pixels a side


def to_rgb(images: Any) -> np.ndarray:
    """Each image min-max scaled to [0, 1] (a constant image is mid-grey), channels last.

    Shape: (n, C, H, W) -> (n, H, W, 3).
    """
    import numpy as np

    x = numpy(images).astype(float)
    x = x[:, :3] if x.shape[1] == 3 else x[:, :1]
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    span = x.max(axis=(1, 2, 3), keepdims=True) - lo
    x = np.where(span > 0, (x - lo) / np.where(span > 0, span, 1.0), 0.5)
    x = np.repeat(x, 3, axis=1) if x.shape[1] == 1 else x
    return x.transpose(0, 2, 3, 1)


def mosaic(images: Any, columns: int = GRID_COLUMNS, framed: Sequence[bool] | None = None
           ) -> tuple[np.ndarray, tuple[int, int], int]:
    """Tiles in rows of `columns` on white, each with a band above it for its caption and a
    frame, red where `framed` is true, inside a white margin (so two frames never touch).
    Small images are enlarged by repeating pixels, so that a frame stays thin beside them.

    Shape: images (n, C, H, W) -> (rows * cell_h, columns * cell_w, 3) floats in [0, 1];
    also returns (cell_h, cell_w) and the caption band's height, in pixels.
    """
    import numpy as np

    rgb = to_rgb(images)
    scale = max(1, math.ceil(MIN_TILE_PX / max(rgb.shape[1:3])))
    rgb = rgb.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, _ = rgb.shape
    border = max(1, round(max(h, w) / 16))
    band = math.ceil(0.35 * w)  # a caption's height: a third of a tile's width
    cell_h, cell_w = band + h + 4 * border, w + 4 * border
    rows = math.ceil(n / columns)
    out = np.ones((rows * cell_h, columns * cell_w, 3))
    for i in range(n):
        top, left = (i // columns) * cell_h + band + border, (i % columns) * cell_w + border
        if framed is not None and framed[i]:
            out[top:top + h + 2 * border, left:left + w + 2 * border] = RED
        out[top + border:top + border + h, left + border:left + border + w] = rgb[i]
    return out, (cell_h, cell_w), band


def grid_figure(images: Any, captions: Sequence[str], title: str,
                wrong: Sequence[bool] | None = None) -> Figure:
    """The images in a grid with a caption above each; `wrong` ones in red.

    Shape: images (n, C, H, W), n <= GRID_IMAGES is sensible; captions n strings.
    """
    n = len(images)
    columns = min(GRID_COLUMNS, max(1, n))
    tiles, (cell_h, cell_w), band = mosaic(images, columns, wrong)
    rows = math.ceil(n / columns)
    inch = CELL_IN / cell_w  # inches per pixel
    width = columns * CELL_IN + 0.3
    # the title wrapped to the figure's width (about 11 characters an inch at 10 pt)
    lines = textwrap.wrap(title, max(12, int(width * 11)), break_on_hyphens=False) or [""]
    top = 0.75 + 0.18 * (len(lines) - 1)  # inches above the grid: the title's lines
    height = rows * cell_h * inch + top
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    ax.imshow(tiles, interpolation="nearest", aspect="equal")
    ax.set_axis_off()
    size = 8 if max((len(c) for c in captions), default=0) <= 10 else 6.5
    for i, caption in enumerate(captions):
        bad = wrong is not None and wrong[i]
        ax.text((i % columns + 0.5) * cell_w - 0.5, (i // columns) * cell_h + band / 2 - 0.5,
                caption, ha="center", va="center", fontsize=size,
                color=ERROR_COLOR if bad else "black", fontweight="bold" if bad else "normal")
    fig.suptitle("\n".join(lines), fontsize="medium")
    return fig


def sample_rows(labels: Any, count: int = GRID_IMAGES) -> np.ndarray:
    """Up to `count` row indices taking each class in turn (the first rows of each class),
    so that every class appears; returned in data order. Shape: labels (n,) -> (m,)."""
    import numpy as np

    labels = numpy(labels).astype(int)
    queues = [np.flatnonzero(labels == c).tolist() for c in sorted(set(labels.tolist()))]
    picked: list[int] = []
    while len(picked) < min(count, len(labels)):
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    return np.array(sorted(picked), dtype=int)


def prediction_rows(wrong: Any, count: int = GRID_IMAGES) -> np.ndarray:
    """Up to `count` test rows: the first errors (at most half the grid), then the first
    right ones, in data order. Shape: wrong (n,) bool -> (m,)."""
    import numpy as np

    wrong = numpy(wrong).astype(bool)
    errors = np.flatnonzero(wrong)[: count // 2]
    right = np.flatnonzero(~wrong)[: count - len(errors)]
    return np.sort(np.concatenate([errors, right]))


def _caption(label: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= label < len(class_names):
        return shorten(str(class_names[label]), 12)
    return str(label)


def image_data_figure(x: Any, y: Any, class_names: Sequence[str] | None = None) -> Figure:
    """Training images, every class in turn, captioned with their labels.

    Shape: x (n, C, H, W), y (n,) integer labels.
    """
    rows = sample_rows(y)
    y = numpy(y).astype(int)
    captions = [_caption(int(y[i]), class_names) for i in rows]
    title = f"Training images with their labels ({len(rows)} of {len(y)})"
    return grid_figure(numpy(x)[rows], captions, title)


def image_predictions_figure(x: Any, y_true: Any, y_pred: Any,
                             class_names: Sequence[str] | None = None) -> Figure:
    """Test images captioned with the predicted label; errors in red with the true label.

    Shape: x (n, C, H, W), y_true (n,), y_pred (n,) integer labels.
    """
    y_true, y_pred = numpy(y_true).astype(int), numpy(y_pred).astype(int)
    wrong = y_true != y_pred
    rows = prediction_rows(wrong)
    captions = [_caption(int(y_pred[i]), class_names) + (
        f" ({_caption(int(y_true[i]), class_names)})" if wrong[i] else "") for i in rows]
    title = (f"Test predictions: {count(int(wrong.sum()), 'error')} of {len(wrong)}; "
             "red: predicted (true label)")
    return grid_figure(numpy(x)[rows], captions, title, wrong[rows].tolist())


def plot_image_data(x: Any, y: Any, path: str | os.PathLike,
                    class_names: Sequence[str] | None = None) -> Path:
    """Write `image_data_figure` as a PNG at `path`."""
    with default_style():
        return save(image_data_figure(x, y, class_names), path)


def plot_image_predictions(x: Any, y_true: Any, y_pred: Any, path: str | os.PathLike,
                           class_names: Sequence[str] | None = None) -> Path:
    """Write `image_predictions_figure` as a PNG at `path`."""
    with default_style():
        return save(image_predictions_figure(x, y_true, y_pred, class_names), path)
