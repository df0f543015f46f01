"""Pictures of runs: the data, the loss and accuracy (or MAE) per epoch, the predictions,
confusion matrices, image grids, several runs overlaid and a seed group's bands.

`draw_run_plots` draws one run's pictures (which ones: `minidl_cli.plots.run`);
`overlay_runs` and `plot_group` draw several runs. Importing this package does not import
matplotlib; pictures are drawn on the Agg canvas whatever MPLBACKEND says (`canvas`).
Every PNG is written atomically: a temporary file in the same folder, then `os.replace`.
"""

from __future__ import annotations

from minidl_cli.plots.confusion import plot_confusion
from minidl_cli.plots.curves import (
    Metrics,
    metric_of,
    plot_accuracy,
    plot_curves,
    plot_loss,
    read_metrics,
)
from minidl_cli.plots.images import plot_image_data, plot_image_predictions
from minidl_cli.plots.overlays import overlay_runs, plot_group, run_loss_name
from minidl_cli.plots.points import Plane, pca, plot_data, plot_predictions, plot_targets
from minidl_cli.plots.regression import plot_predicted_vs_true, plot_residuals
from minidl_cli.plots.run import draw_run_plots, predicted_classes

__all__ = [
    "Metrics",
    "Plane",
    "draw_run_plots",
    "metric_of",
    "overlay_runs",
    "pca",
    "plot_accuracy",
    "plot_confusion",
    "plot_curves",
    "plot_data",
    "plot_group",
    "plot_image_data",
    "plot_image_predictions",
    "plot_loss",
    "plot_predicted_vs_true",
    "plot_predictions",
    "plot_residuals",
    "plot_targets",
    "predicted_classes",
    "read_metrics",
    "run_loss_name",
]
