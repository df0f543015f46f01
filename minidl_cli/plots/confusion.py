"""The confusion matrix picture, drawn as scikit-learn's ConfusionMatrixDisplay draws it:
rows are the true classes, columns the predicted ones, the count in each cell."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidl_cli import tasks
from minidl_cli.plots.canvas import class_name, default_style, new_figure, numpy, save, shorten

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

MAX_COUNTED_CLASSES = 30  # with more classes the cells are too small for their counts


def confusion_figure(matrix: Any, class_names: Sequence[str] | None = None,
                     title: str = "Confusion matrix (test)") -> Figure:
    """The counts as a heat map with the class names on both axes.

    Shape: matrix (k, k), rows true classes, columns predicted classes.
    """
    matrix = numpy(matrix)
    k = len(matrix)
    names = [shorten(class_name(i, class_names), 14) for i in range(k)]
    longest = max(len(n) for n in names)
    label_in = min(1.3, 0.075 * longest + 0.15)  # room for the tick labels, in inches
    side = max(3.0, k * (0.5 if k <= 10 else max(0.2, 5.0 / k)))
    fig = new_figure(side + label_in + 1.8, side + 0.75 * label_in + 1.3)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest", vmin=0)
    if k <= MAX_COUNTED_CLASSES:
        threshold = matrix.max() / 2
        size = "medium" if k <= 10 else "x-small"
        for (i, j), count in _cells(matrix):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=size,
                    color="white" if count > threshold else "black")
    ax.set_xticks(range(k), names, rotation=45 if longest > 2 else 0, ha="right" if longest > 2
                  else "center", rotation_mode="anchor")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    total, right_ = int(matrix.sum()), int(matrix.trace())
    accuracy = f" ({right_ / total:.1%})" if total else ""
    ax.set_title(f"{title}: {right_} of {total} right{accuracy}", fontsize="medium")
    fig.colorbar(image, ax=ax)
    return fig


def _cells(matrix: np.ndarray) -> list[tuple[tuple[int, int], int]]:
    return [((i, j), int(matrix[i, j])) for i in range(len(matrix)) for j in range(len(matrix))]


def plot_confusion(y_true: Any, y_pred: Any, path: str | os.PathLike, num_classes: int,
                   class_names: Sequence[str] | None = None) -> Path:
    """Write the test confusion matrix (`confusion_figure`) as a PNG at `path`.

    Shape: y_true (n,), y_pred (n,) integer labels.
    """
    with default_style():
        matrix = tasks.confusion_matrix(numpy(y_true), numpy(y_pred), num_classes).numpy()
        return save(confusion_figure(matrix, class_names), path)
