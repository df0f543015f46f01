"""Points in the plane: the data coloured by label (or target) and the predictions, errors marked.

Two features are drawn as they are; more are drawn on the first two principal components of
the standardised training features (`pca`), so that any table gets a readable picture.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidl_cli.plots.canvas import (
    ERROR_COLOR,
    class_name,
    color,
    count,
    default_style,
    legend_below,
    new_figure,
    numpy,
    save,
    shorten,
    subsample,
)

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PCA_FIT_ROWS = 20000  # the components are fitted on at most this many (evenly spaced) rows


def pca(x: Any, k: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The first `k` principal components of the z-scored columns of `x`.

    Each column is centred and divided by its population std (1 for a constant column), so
    that features in different units weigh alike. With the SVD of that matrix, Z = U S Vᵀ,
    the components are the first k rows of Vᵀ and the explained variance ratio is
    Sᵢ² / Σⱼ Sⱼ² (Jolliffe, Principal Component Analysis, 2002, §1.1; scikit-learn's PCA).
    Each component's largest-magnitude loading is made positive (scikit-learn's svd_flip with
    u_based_decision=False), so the picture does not flip between runs.
    Shape: x (n, d) -> mean (d,), scale (d,), components (k, d) with orthonormal rows,
    explained variance ratio (k,). Project new rows with ((x - mean) / scale) @ components.T.
    """
    import numpy as np

    x = numpy(x).astype(float).reshape(len(x), -1)
    peak = np.abs(x).max(0) if len(x) else np.ones(x.shape[1])
    peak[peak == 0] = 1.0  # statistics of x / peak: squares of values near 1e200 overflow
    mean, scale = (x / peak).mean(0) * peak, (x / peak).std(0) * peak
    scale[scale == 0] = 1.0
    _, s, vt = np.linalg.svd((x - mean) / scale, full_matrices=False)
    components = vt[:k]
    biggest = np.abs(components).argmax(1)
    components = components * np.sign(components[np.arange(len(components)), biggest])[:, None]
    total = float((s**2).sum())
    ratio = s[:k] ** 2 / total if total > 0 else np.zeros(len(components))
    return mean, scale, components, ratio


class Plane:
    """Where points go in a 2-D picture: the two features, or the first two principal
    components fitted on `x_fit` (more than two features). One feature: along x, at y = 0.

    Shape: x_fit (n, d); project(x) (m, d) -> (m, 2).
    """

    def __init__(self, x_fit: Any, feature_names: Sequence[str] | None = None):
        x_fit = numpy(x_fit).reshape(len(x_fit), -1)
        self.num_features = x_fit.shape[1]
        names = list(feature_names or [])
        if len(names) != self.num_features:
            names = [f"feature {i + 1}" for i in range(self.num_features)]
        self.pca = None
        if self.num_features > 2:
            rows = subsample(len(x_fit), PCA_FIT_ROWS)
            self.pca = pca(x_fit[rows], 2)
            ratio = self.pca[3]
            self.labels = tuple(f"PC{i + 1} ({ratio[i]:.0%} var)" for i in range(2))
        else:
            self.labels = (names[0], names[1] if self.num_features == 2 else "")
        self.equal_aspect = self.pca is not None or _similar_ranges(x_fit)

    def project(self, x: Any) -> np.ndarray:
        import numpy as np

        x = numpy(x).astype(float).reshape(len(x), -1)
        if self.pca is not None:
            mean, scale, components, _ = self.pca
            return ((x - mean) / scale) @ components.T
        if self.num_features == 1:
            return np.column_stack([x[:, 0], np.zeros(len(x))])
        return x[:, :2]

    def frame(self, ax: Axes, title: str) -> None:
        if self.equal_aspect:
            ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel(self.labels[0])
        ax.set_ylabel(self.labels[1])
        if self.pca is not None:
            title += "\n(first two principal components of the standardised features)"
        ax.set_title(title, fontsize="medium")


def _similar_ranges(x: np.ndarray) -> bool:
    """Equal axis scales suit two features whose ranges differ by less than 3x."""
    if x.shape[1] != 2 or len(x) == 0:
        return False
    spans = x.max(0) - x.min(0)
    return bool(spans.min() > 0 and spans.max() / spans.min() < 3)


def _size(n: int) -> float:
    return 8.0 if n <= 2000 else 3.0


def _scatter_figure() -> tuple[Figure, Axes]:
    fig = new_figure(5.5, 6.2)
    return fig, fig.add_subplot()


def data_figure(x: Any, y: Any, title: str = "Data", class_names: Sequence[str] | None = None,
                plane: Plane | None = None) -> Figure:
    """Points coloured by class. Shape: x (n, d), y (n,) integer labels."""
    plane = plane or Plane(x)
    shown = subsample(len(x))
    xy, y = plane.project(numpy(x)[shown]), numpy(y).astype(int)[shown]
    fig, ax = _scatter_figure()
    for label in sorted(set(y.tolist())):
        ax.scatter(*xy[y == label].T, s=_size(len(xy)), color=color(label),
                   label=shorten(class_name(label, class_names), 28))
    plane.frame(ax, title + (f" ({len(shown)} of {len(x)} drawn)" if len(shown) < len(x) else ""))
    legend_below(fig, ax)
    return fig


def predictions_figure(x: Any, y_true: Any, y_pred: Any,
                       class_names: Sequence[str] | None = None,
                       plane: Plane | None = None) -> Figure:
    """Points coloured by predicted class, misclassified ones marked with a red x.

    Shape: x (n, d), y_true (n,), y_pred (n,) integer labels.
    """
    plane = plane or Plane(x)
    y_true, y_pred = numpy(y_true).astype(int), numpy(y_pred).astype(int)
    errors = int((y_true != y_pred).sum())
    shown = subsample(len(x))
    xy, y_true, y_pred = plane.project(numpy(x)[shown]), y_true[shown], y_pred[shown]
    wrong = y_true != y_pred
    fig, ax = _scatter_figure()
    for label in sorted(set(y_pred.tolist())):
        ax.scatter(*xy[y_pred == label].T, s=_size(len(xy)), color=color(label),
                   label=f"predicted {shorten(class_name(label, class_names), 28)}")
    if wrong.any():  # no legend entry for marks not drawn
        ax.scatter(*xy[wrong].T, s=40, marker="x", color=ERROR_COLOR, linewidths=1.5,
                   label="error")
    drawn = f" ({len(shown)} drawn)" if len(shown) < len(x) else ""
    plane.frame(ax, f"Predictions: {count(errors, 'error')} of {len(x)} points{drawn}")
    legend_below(fig, ax)
    return fig


def targets_figure(x: Any, y: Any, target_name: str = "target",
                   plane: Plane | None = None, feature_name: str = "feature 1") -> Figure:
    """Regression data: one feature against the target, or the points in the plane coloured
    by the target's value. Shape: x (n, d), y (n,) float targets.
    """
    shown = subsample(len(x))
    x, y = numpy(x).reshape(len(x), -1)[shown], numpy(y).astype(float).reshape(-1)[shown]
    suffix = f" ({len(shown)} points drawn)" if len(shown) < len(y) else ""
    fig = new_figure(6.2 if x.shape[1] > 1 else 6.0, 5.6)
    if x.shape[1] == 1:
        ax = fig.add_subplot()
        ax.scatter(x[:, 0], y, s=_size(len(y)), color=color(0))
        ax.set_xlabel(feature_name)
        ax.set_ylabel(target_name)
        ax.set_title(f"Test data: {target_name} against {feature_name}{suffix}", fontsize="medium")
        return fig
    plane = plane or Plane(x)
    ax = fig.add_subplot()
    xy = plane.project(x)
    dots = ax.scatter(xy[:, 0], xy[:, 1], s=_size(len(y)), c=y, cmap="viridis")
    plane.frame(ax, f"Test data coloured by {target_name}{suffix}")
    fig.colorbar(dots, ax=ax, label=target_name)
    return fig


def plot_data(x: Any, y: Any, path: str | os.PathLike, title: str = "Data",
              class_names: Sequence[str] | None = None, plane: Plane | None = None) -> Path:
    """Write the points coloured by class (`data_figure`) as a PNG at `path`."""
    with default_style():
        return save(data_figure(x, y, title, class_names, plane), path)


def plot_predictions(x: Any, y_true: Any, y_pred: Any, path: str | os.PathLike,
                     class_names: Sequence[str] | None = None,
                     plane: Plane | None = None) -> Path:
    """Write the predictions with errors marked (`predictions_figure`) as a PNG at `path`."""
    with default_style():
        return save(predictions_figure(x, y_true, y_pred, class_names, plane), path)


def plot_targets(x: Any, y: Any, path: str | os.PathLike, target_name: str = "target",
                 plane: Plane | None = None, feature_name: str = "feature 1") -> Path:
    """Write the regression data picture (`targets_figure`) as a PNG at `path`."""
    with default_style():
        return save(targets_figure(x, y, target_name, plane, feature_name), path)
