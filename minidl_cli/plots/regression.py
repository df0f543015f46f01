"""Regression pictures: predicted against true values with the y = x line, and residuals.

One panel per target, up to MAX_TARGET_PANELS; each panel's title gives its R² or MAE.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidl_cli import tasks
from minidl_cli.plots.canvas import (
    color,
    default_style,
    legend_below,
    new_figure,
    numpy,
    save,
    subsample,
)

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_TARGET_PANELS = 4
PANEL_IN = 3.6  # the side of one square panel, in inches


def _columns(y: Any) -> np.ndarray:
    y = numpy(y).astype(float)
    return y.reshape(len(y), -1)


def _names(target_names: Sequence[str] | None, k: int) -> list[str]:
    names = list(target_names or [])
    if len(names) == k:
        return [str(n) for n in names]
    return ["target"] if k == 1 else [f"target {i + 1}" for i in range(k)]


def _panels(k: int, title: str) -> tuple[Figure, list[Axes]]:
    """Up to MAX_TARGET_PANELS square panels side by side (the legend goes below them)."""
    panels = min(k, MAX_TARGET_PANELS)
    fig = new_figure(1.2 + panels * (PANEL_IN + 0.75), PANEL_IN + 1.8)
    axes = [fig.add_subplot(1, panels, i + 1) for i in range(panels)]
    more = f" (first {panels} of {k} targets)" if k > panels else ""
    fig.suptitle(title + more, fontsize="medium")
    return fig, axes


def predicted_vs_true_figure(y_true: Any, y_pred: Any,
                             target_names: Sequence[str] | None = None) -> Figure:
    """Predicted against true values, one panel per target, with the y = x line.

    Shape: y_true (n, k) or (n,), y_pred likewise, on the target's own scale.
    """
    y_true, y_pred = _columns(y_true), _columns(y_pred)
    names = _names(target_names, y_true.shape[1])
    r2 = tasks.regression_scores(y_true, y_pred)["r2"].tolist()
    shown = subsample(len(y_true))
    fig, axes = _panels(y_true.shape[1], f"Predicted against true values ({len(y_true)} test "
                        "rows" + (f", {len(shown)} drawn)" if len(shown) < len(y_true) else ")"))
    for i, ax in enumerate(axes):
        t, p = y_true[:, i], y_pred[:, i]
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        pad = 0.04 * (hi - lo or 1.0)
        lo, hi = lo - pad, hi + pad
        ax.scatter(t[shown], p[shown], s=8, alpha=0.6, color=color(0), label="test rows")
        ax.plot([lo, hi], [lo, hi], "--", color="0.25", linewidth=1,
                label="y = x (perfect prediction)")
        ax.set_aspect("equal", adjustable="datalim")  # the y = x line spans both ranges
        ax.set_xlabel(f"true {names[i]}")
        ax.set_ylabel(f"predicted {names[i]}")
        ax.set_title(f"{names[i]}: R² = {r2[i]:.3f}", fontsize="medium")
    legend_below(fig, axes[0], ncols=2)
    return fig


def residuals_figure(y_true: Any, y_pred: Any,
                     target_names: Sequence[str] | None = None) -> Figure:
    """Residuals (true - predicted, as scikit-learn's PredictionErrorDisplay) against the
    predicted values, one panel per target, with the zero line.

    Shape: y_true (n, k) or (n,), y_pred likewise, on the target's own scale.
    """
    y_true, y_pred = _columns(y_true), _columns(y_pred)
    names = _names(target_names, y_true.shape[1])
    shown = subsample(len(y_true))
    mae = tasks.regression_scores(y_true, y_pred)["mae"].tolist()
    fig, axes = _panels(y_true.shape[1], f"Residuals on {len(y_true)} test rows")
    for i, ax in enumerate(axes):
        residual = y_true[:, i] - y_pred[:, i]
        ax.scatter(y_pred[shown, i], residual[shown], s=8, alpha=0.6, color=color(0),
                   label="test rows")
        ax.axhline(0.0, linestyle="--", color="0.25", linewidth=1, label="zero residual")
        ax.set_xlabel(f"predicted {names[i]}")
        ax.set_ylabel("residual (true − predicted)")
        ax.set_title(f"{names[i]}: MAE = {mae[i]:.4g}", fontsize="medium")
    legend_below(fig, axes[0], ncols=2)
    return fig


def plot_predicted_vs_true(y_true: Any, y_pred: Any, path: str | os.PathLike,
                           target_names: Sequence[str] | None = None) -> Path:
    """Write `predicted_vs_true_figure` as a PNG at `path`."""
    with default_style():
        return save(predicted_vs_true_figure(y_true, y_pred, target_names), path)


def plot_residuals(y_true: Any, y_pred: Any, path: str | os.PathLike,
                   target_names: Sequence[str] | None = None) -> Path:
    """Write `residuals_figure` as a PNG at `path`."""
    with default_style():
        return save(residuals_figure(y_true, y_pred, target_names), path)
