"""metrics.csv and the curves of one run: loss, and accuracy (classification) or mean
absolute error (regression) per epoch, for train, test and validation."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidl_cli.plots.canvas import default_style, new_figure, save

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Metrics = dict[str, list[float]]
SPLITS = ("train", "test", "val")
# axis label of each quantity a metrics.csv may hold, and where its curves leave room
QUANTITIES = {
    "loss": "loss",
    "accuracy": "accuracy",
    "mae": "mean absolute error",
    "rmse": "root mean squared error",
    "r2": "R²",
}
RISING = {"accuracy", "r2"}  # curves that go up: their legend goes lower right
# the curve drawn beside the loss: the first of these a metrics.csv has
METRICS = ("accuracy", "mae")


def read_metrics(path: str | os.PathLike) -> Metrics:
    """The columns of a metrics.csv by name; a truncated last line is dropped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file {path}; is this a minidl run directory?")
    with path.open(newline="") as f:
        reader = csv.reader(f)
        rows = [(reader.line_num, row) for row in reader if row]
    if not rows:
        return {}
    header = [name.strip() for name in rows[0][1]]
    parsed = [(line, _parse_row(row, len(header))) for line, row in rows[1:]]
    if parsed and parsed[-1][1] is None:  # the writer was cut off mid-line
        parsed.pop()
    for line, values in parsed:
        if values is None:
            raise ValueError(f"{path}, line {line}: expected {len(header)} numbers")
    return {name: [values[i] for _, values in parsed] for i, name in enumerate(header)}


def _parse_row(row: list[str], width: int) -> list[float] | None:
    if len(row) != width:
        return None
    try:
        return [float(v) if v.strip() else math.nan for v in row]
    except ValueError:
        return None


def has(metrics: Metrics, key: str) -> bool:
    """Whether `key` has at least one real number (val columns are absent or all NaN)."""
    return any(not math.isnan(v) for v in metrics.get(key, []))


def metric_of(metrics: Metrics) -> str | None:
    """The quantity drawn beside the loss: "accuracy" (classification), "mae" (regression),
    or None when the metrics have neither."""
    for quantity in METRICS:
        if any(has(metrics, f"{split}_{quantity}") for split in SPLITS):
            return quantity
    return None


def epochs(metrics: Metrics, key: str) -> list[float]:
    """The epoch column, or 1, 2, ... when a metrics dict has none."""
    return metrics.get("epoch") or list(range(1, len(metrics[key]) + 1))


def split_name(split: str) -> str:
    return {"train": "Train", "test": "Test", "val": "Validation"}[split]


def axis_label(quantity: str, loss_name: str | None = None) -> str:
    """`loss (mse)` for a named loss, else the quantity's name."""
    if quantity == "loss" and loss_name:
        return f"loss ({loss_name})"
    return QUANTITIES.get(quantity, quantity)


def frame_curves(ax: Axes, quantity: str, title: str, loss_name: str | None = None,
                 legend: bool = True) -> None:
    """Epochs along x (whole numbers), the quantity's name up the y axis, a grid and the
    legend in the corner the curves leave free."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel(axis_label(quantity, loss_name))
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right" if quantity in RISING else "upper right", fontsize="small")


def single_point_marker(xs: Sequence[Any]) -> dict[str, Any]:
    """ax.plot options that make a curve of one point visible (a line needs two): a dot."""
    return {"marker": "o", "markersize": 4} if len(xs) == 1 else {}


def curve_figure(metrics: Metrics, quantity: str, loss_name: str | None = None) -> Figure:
    """Train / test (/ validation) `quantity` per epoch of one run."""
    fig = new_figure(7.0, 4.5)
    ax = fig.add_subplot()
    for split in SPLITS:
        key = f"{split}_{quantity}"
        if has(metrics, key):
            xs = epochs(metrics, key)
            ax.plot(xs, metrics[key], label=split_name(split), **single_point_marker(xs))
    name = QUANTITIES.get(quantity, quantity)
    what = f"{loss_name} loss" if quantity == "loss" and loss_name else name
    frame_curves(ax, quantity, f"Training and testing {what}", loss_name)
    return fig


def plot_curves(metrics: Metrics, quantity: str, path: str | os.PathLike,
                loss_name: str | None = None) -> Path:
    """Write one run's `quantity` curves (loss, accuracy, mae, rmse, r2) as a PNG at `path`."""
    with default_style():
        return save(curve_figure(metrics, quantity, loss_name), path)


def plot_loss(metrics: Metrics, path: str | os.PathLike, loss_name: str | None = None) -> Path:
    """Train / test (/ validation) loss per epoch; `loss_name` (e.g. mse) labels the axis."""
    return plot_curves(metrics, "loss", path, loss_name)


def plot_accuracy(metrics: Metrics, path: str | os.PathLike) -> Path:
    """Train / test (/ validation) accuracy per epoch."""
    return plot_curves(metrics, "accuracy", path)
