"""Pictures of a run: the data, loss and accuracy per epoch, and the test predictions.

matplotlib is imported inside the functions, so importing this module is cheap. Figures
are built with `matplotlib.figure.Figure` (the Agg canvas, no pyplot), so drawing never
opens a window or changes the caller's backend, and each figure is freed when dropped.
Every PNG is written atomically: a temporary file in the same folder, then `os.replace`.
"""

from __future__ import annotations

import csv
import math
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from minidl_cli.data import Dataset
    from minidl_cli.tasks import Task

Metrics = dict[str, list[float]]
SPLITS = ("train", "test", "val")
STYLES = {"train": "--", "test": "-", "val": ":"}  # line style per split in overlays
ERROR_COLOR = "red"
PALETTE = ["C0", "C1", "C2", "C4", "C5", "C6", "C7", "C8", "C9"]  # tab10 without red (C3)


# ---------------------------------------------------------------- metrics.csv


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


def _has(metrics: Metrics, key: str) -> bool:
    """Whether `key` has at least one real number (val columns are absent or all NaN)."""
    return any(not math.isnan(v) for v in metrics.get(key, []))


# ---------------------------------------------------------------- single pictures


def plot_data(
    x: Any,
    y: Any,
    path: str | os.PathLike,
    title: str = "Data",
    class_names: Sequence[str] | None = None,
) -> Path:
    """Scatter of points coloured by label (the first two features).

    Shape: x (n, d), y (n,) integer labels.
    """
    x, y = _points(x), _numpy(y).astype(int)
    fig, ax = _figure()
    for label in sorted(set(y.tolist())):
        mask = y == label
        ax.scatter(
            x[mask, 0], x[mask, 1], s=8, color=_color(label), label=_class_name(label, class_names)
        )
    _frame_points(ax, title)
    _legend_below(ax)
    return _save(fig, path)


def plot_predictions(
    x: Any,
    y_true: Any,
    y_pred: Any,
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Points coloured by predicted class, misclassified ones marked with a red x.

    Shape: x (n, d), y_true (n,), y_pred (n,) integer labels.
    """
    x, y_true, y_pred = _points(x), _numpy(y_true).astype(int), _numpy(y_pred).astype(int)
    wrong = y_true != y_pred
    fig, ax = _figure()
    for label in sorted(set(y_pred.tolist())):
        mask = y_pred == label
        ax.scatter(
            x[mask, 0],
            x[mask, 1],
            s=8,
            color=_color(label),
            label=f"predicted {_class_name(label, class_names)}",
        )
    ax.scatter(
        x[wrong, 0], x[wrong, 1], s=40, marker="x", color=ERROR_COLOR, linewidths=1.5, label="error"
    )
    _frame_points(ax, f"Predictions: {int(wrong.sum())} errors of {len(wrong)} points")
    _legend_below(ax)
    return _save(fig, path)


def plot_loss(metrics: Metrics, path: str | os.PathLike) -> Path:
    """Train / test (/ validation) loss per epoch."""
    return _plot_curves(metrics, "loss", path)


def plot_accuracy(metrics: Metrics, path: str | os.PathLike) -> Path:
    """Train / test (/ validation) accuracy per epoch."""
    return _plot_curves(metrics, "accuracy", path)


def _plot_curves(metrics: Metrics, quantity: str, path: str | os.PathLike) -> Path:
    fig, ax = _figure(wide=True)
    for split in SPLITS:
        key = f"{split}_{quantity}"
        if _has(metrics, key):
            ax.plot(_epochs(metrics, key), metrics[key], label=_split_name(split))
    _frame_curves(ax, quantity, f"Training and testing {quantity}")
    return _save(fig, path)


def draw_run_plots(
    plots_dir: str | os.PathLike,
    dataset: Dataset,
    task: Task,
    test_outputs: Any,
    metrics: Metrics | str | os.PathLike,
) -> list[Path]:
    """Write data.png, loss.png, accuracy.png and predictions.png into `plots_dir`.

    Shape: test_outputs (n_test, num_outputs), the network's outputs for dataset.x_test;
    `task.decode` turns them into class labels (or values).
    `metrics` is a read_metrics dict or the path of a metrics.csv.
    """
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    if not isinstance(metrics, dict):
        metrics = read_metrics(metrics)
    test_predictions = task.decode(test_outputs)
    if dataset.task == "regression":  # pictures of regression: to come
        return [plot_loss(metrics, plots_dir / "loss.png")]
    names = getattr(dataset, "class_names", None)
    x, y = dataset.x_test, dataset.y_test
    return [
        plot_data(x, y, plots_dir / "data.png", title="Test data", class_names=names),
        plot_loss(metrics, plots_dir / "loss.png"),
        plot_accuracy(metrics, plots_dir / "accuracy.png"),
        plot_predictions(x, y, test_predictions, plots_dir / "predictions.png", names),
    ]


# ---------------------------------------------------------------- several runs


def overlay_runs(
    run_dirs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    labels: Sequence[str] | None = None,
) -> list[Path]:
    """Overlay several runs' loss and accuracy curves, one colour per run, into out_dir.

    Test curves are solid, train dashed, validation dotted; each run over its own epochs.
    `labels` name the runs in the legend (default: the run directories' names).
    """
    run_dirs = [Path(d) for d in run_dirs]
    labels = list(labels) if labels is not None else [d.name for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} labels given for {len(run_dirs)} runs")
    runs = [_run_metrics(d) for d in run_dirs]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for quantity in ("loss", "accuracy"):
        fig, ax = _figure(wide=True)
        for i, (metrics, label) in enumerate(zip(runs, labels, strict=True)):
            for split in SPLITS:
                key = f"{split}_{quantity}"
                if _has(metrics, key):
                    ax.plot(
                        _epochs(metrics, key),
                        metrics[key],
                        STYLES[split],
                        color=_color(i),
                        label=f"{label} ({_split_name(split).lower()})",
                    )
        _frame_curves(ax, quantity, f"{quantity.capitalize()} of {len(runs)} runs")
        written.append(_save(fig, out_dir / f"{quantity}.png"))
    return written


def plot_group(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> list[Path]:
    """Mean curve and a ±1 std band across runs (epochs common to all) into out_dir.

    The std is the sample std (n - 1); with one run the band is empty.
    """
    import numpy as np

    runs = [_run_metrics(Path(d)) for d in run_dirs]
    if not runs:
        raise ValueError("plot_group needs at least one run directory")
    common = sorted(set.intersection(*(set(m.get("epoch", [])) for m in runs)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for quantity in ("loss", "accuracy"):
        fig, ax = _figure(wide=True)
        for i, split in enumerate(SPLITS):
            key = f"{split}_{quantity}"
            if common and all(_has(m, key) for m in runs):
                curves = np.array([_at_epochs(m, key, common) for m in runs])
                mean = curves.mean(0)
                std = curves.std(0, ddof=1) if len(runs) > 1 else np.zeros_like(mean)
                ax.plot(common, mean, color=_color(i), label=f"{_split_name(split)} (mean)")
                ax.fill_between(
                    common,
                    mean - std,
                    mean + std,
                    color=_color(i),
                    alpha=0.25,
                    linewidth=0,
                    label=f"{_split_name(split)} ±1 std",
                )
        _frame_curves(ax, quantity, f"{quantity.capitalize()}: mean ± 1 std of {len(runs)} runs")
        written.append(_save(fig, out_dir / f"{quantity}.png"))
    return written


def _epochs(metrics: Metrics, key: str) -> list[float]:
    """The epoch column, or 1, 2, ... when a metrics dict has none."""
    return metrics.get("epoch") or list(range(1, len(metrics[key]) + 1))


def _run_metrics(run_dir: Path) -> Metrics:
    return read_metrics(run_dir / "metrics.csv")


def _at_epochs(metrics: Metrics, key: str, epochs: list[float]) -> list[float]:
    """The values of `key` at `epochs` (the last row wins if an epoch was logged twice)."""
    by_epoch = dict(zip(metrics["epoch"], metrics[key], strict=True))
    return [by_epoch[e] for e in epochs]


# ---------------------------------------------------------------- helpers


def _numpy(a: Any) -> np.ndarray:
    """A numpy array from a torch tensor, numpy array or (nested) list."""
    import numpy as np

    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _points(x: Any) -> np.ndarray:
    """The first two coordinates of each point (a zero second one for 1-D data).

    Shape: (n, d) -> (n, 2).
    """
    import numpy as np

    x = _numpy(x).astype(float).reshape(len(x), -1)
    return x[:, :2] if x.shape[1] >= 2 else np.column_stack([x[:, 0], np.zeros(len(x))])


def _color(i: int) -> str:
    """A tab10 colour; classes and runs skip red, which marks errors."""
    return PALETTE[i % len(PALETTE)]


def _class_name(label: int, class_names: Sequence[str] | None) -> str:
    if class_names is not None and 0 <= label < len(class_names):
        return str(class_names[label])
    return f"class {label}"


def _split_name(split: str) -> str:
    return {"train": "Train", "test": "Test", "val": "Validation"}[split]


def _figure(wide: bool = False) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5) if wide else (5.5, 6), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _frame_points(ax: Axes, title: str) -> None:
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("feature 1")
    ax.set_ylabel("feature 2")
    ax.set_title(title)


def _legend_below(ax: Axes) -> None:
    """A legend under the axes, so that it hides no points."""
    ncol = min(4, len(ax.get_legend_handles_labels()[0]))
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        ncol=ncol,
        fontsize="small",
        markerscale=1.5,
        frameon=False,
    )


def _frame_curves(ax: Axes, quantity: str, title: str) -> None:
    ax.set_xlabel("epoch")
    ax.set_ylabel(quantity)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write `fig` as a PNG at `path` atomically and release it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("xb") as f:  # honours the umask, unlike tempfile.mkstemp (0600)
            fig.savefig(f, format="png")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        fig.clear()
    return path
