"""Several runs in one picture: their curves overlaid, or a seed group's mean ± 1 std band.

Runs trained with different losses never share a loss axis: each loss gets its own panel,
its axis and every curve named by it. Classification and regression runs are refused
together (their second picture, accuracy or MAE, would mean different things).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from minidl_cli.plots.canvas import color, count, default_style, legend_below, new_figure, save
from minidl_cli.plots.curves import (
    SPLITS,
    Metrics,
    axis_label,
    epochs,
    frame_curves,
    has,
    metric_of,
    read_metrics,
    single_point_marker,
    split_name,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

STYLES = {"train": "--", "test": "-", "val": ":"}  # line style per split in overlays
KIND = {"accuracy": "classification", "mae": "regression"}
PANEL_WIDTH_IN = 6.0


def run_loss_name(run_dir: str | os.PathLike) -> str | None:
    """The loss a run was trained with (`loss` in its config.yaml; a text run's per token,
    in nats), None if unknown."""
    import yaml

    from minidl_cli.plots.run import per_token

    try:
        config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    loss = config.get("loss") if isinstance(config, dict) else None
    if isinstance(loss, dict):
        loss = loss.get("type")
    if not isinstance(loss, str):
        return None
    data = config.get("data")
    return per_token(loss) if isinstance(data, dict) and data.get("type") == "text" else loss


def _run_metrics(run_dir: Path) -> Metrics:
    return read_metrics(run_dir / "metrics.csv")


def _common_metric(runs: Sequence[Metrics], labels: Sequence[str]) -> str | None:
    """The metric all runs share; ValueError naming the runs when they mix kinds."""
    by_metric: dict[str, list[str]] = {}
    for metrics, label in zip(runs, labels, strict=True):
        metric = metric_of(metrics)
        if metric is not None:
            by_metric.setdefault(metric, []).append(label)
    if len(by_metric) > 1:
        kinds = "; ".join(f"{KIND.get(m, m)} runs: {', '.join(names)}"
                          for m, names in by_metric.items())
        raise ValueError(f"cannot overlay classification and regression runs ({kinds}): "
                         "their metrics differ; overlay each kind separately with "
                         "minidl plot RUN... --out DIR")
    return next(iter(by_metric), None)


def _check_one_task(run_dirs: Sequence[Path], labels: Sequence[str]) -> None:
    """ValueError naming the runs when they are of different tasks (meta.json's `task`): a
    language model's next-token accuracy is not a classifier's accuracy."""
    by_task: dict[str, list[str]] = {}
    for run_dir, label in zip(run_dirs, labels, strict=True):
        try:
            task = json.loads((run_dir / "meta.json").read_text()).get("task")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(task, str):
            by_task.setdefault(task, []).append(label)
    if len(by_task) > 1:
        kinds = "; ".join(f"{task}: {', '.join(names)}" for task, names in by_task.items())
        raise ValueError(f"cannot overlay runs of different tasks ({kinds}); overlay each "
                         "task's runs separately with minidl plot RUN... --out DIR")


def overlay_runs(
    run_dirs: Sequence[str | os.PathLike | Sequence[str | os.PathLike]],
    out_dir: str | os.PathLike,
    labels: Sequence[str] | None = None,
) -> list[Path]:
    """Overlay several runs' loss and accuracy (or MAE) curves, one colour per run, into
    out_dir: loss.png, then accuracy.png or mae.png.

    Test curves are solid, train dashed, validation dotted; each run over its own epochs.
    An item of `run_dirs` that is a list of run directories (a seed group's members) is
    drawn as their mean with a ±1 std band (group_metrics).
    `labels` name the runs in the legend (default: the run directories' names, a list's
    parent's). Runs with different losses (read from their config.yaml) get one loss panel
    each. Raises ValueError for a label count that differs from the runs, or for
    classification and regression runs together; FileNotFoundError for a run without
    metrics.csv.
    """
    items = [Path(d) if isinstance(d, (str, os.PathLike)) else [Path(m) for m in d]
             for d in run_dirs]
    run_dirs = [d if isinstance(d, Path) else d[0] for d in items]  # a group: its first member
    labels = list(labels) if labels is not None else [
        d.name if isinstance(d, Path) else d[0].parent.name for d in items]
    if len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} labels given for {len(run_dirs)} runs")
    runs = [_run_metrics(d) if isinstance(d, Path) else group_metrics(d) for d in items]
    _check_one_task(run_dirs, labels)
    metric = _common_metric(runs, labels)
    losses = [run_loss_name(d) for d in run_dirs]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with default_style():
        written = [save(loss_overlay_figure(runs, labels, losses), out_dir / "loss.png")]
        if metric is not None:
            written.append(save(overlay_figure(runs, labels, metric), out_dir / f"{metric}.png"))
    return written


def loss_overlay_figure(runs: list[Metrics], labels: list[str], losses: list[str | None]
                        ) -> Figure:
    """The runs' loss curves: one panel per loss (one panel when all share a loss), the
    axis and every curve named by the loss. `losses` has one name (or None) per run."""
    groups: dict[str | None, list[int]] = {}
    for i, loss in enumerate(losses):
        groups.setdefault(loss, []).append(i)
    if len(groups) == 1:
        return overlay_figure(runs, labels, "loss", losses[0])
    fig, axes = _panelled(len(groups))
    for ax, (loss, members) in zip(axes, groups.items(), strict=True):
        for i in members:
            _draw_run(ax, runs[i], "loss", f"{labels[i]}, {loss or 'loss'}", i)
        frame_curves(ax, "loss", f"{loss or 'unnamed'} loss of {count(len(members), 'run')}", loss,
                     legend=False)
    handles = [h for ax in axes for h in ax.get_legend_handles_labels()[0]]
    names = [n for ax in axes for n in ax.get_legend_handles_labels()[1]]
    entry_in = 0.6 + 0.07 * max(len(name) for name in names)  # as canvas.legend_below
    fits = max(1, int(fig.get_size_inches()[0] / entry_in))
    fig.legend(handles, names, loc="outside lower center", fontsize="small",
               ncols=min(3 * len(axes), len(names), fits), frameon=False)
    return fig


def overlay_figure(runs: list[Metrics], labels: list[str], quantity: str,
                   loss_name: str | None = None) -> Figure:
    """The runs' `quantity` curves on one axis, a colour per run, the legend below it."""
    named = [f"{label}, {loss_name}" if loss_name else label for label in labels]
    fig, (ax,) = _panelled(1)
    for i, (metrics, label) in enumerate(zip(runs, named, strict=True)):
        _draw_run(ax, metrics, quantity, label, i)
    title = f"{axis_label(quantity, loss_name).capitalize()} of {len(runs)} runs"
    frame_curves(ax, quantity, title, loss_name, legend=False)
    legend_below(fig, ax, ncols=3)
    return fig


def _panelled(panels: int) -> tuple[Figure, list[Axes]]:
    """`panels` curve axes side by side (the legend goes below them)."""
    fig = new_figure(PANEL_WIDTH_IN * panels + 1.0, 5.6)
    return fig, [fig.add_subplot(1, panels, p + 1) for p in range(panels)]


def _draw_run(ax: Axes, metrics: Metrics, quantity: str, label: str, index: int) -> None:
    """One run's curves of `quantity`; a group's (group_metrics) with their ±1 std band."""
    import numpy as np

    for split in SPLITS:
        key = f"{split}_{quantity}"
        if has(metrics, key):
            xs = epochs(metrics, key)
            ax.plot(xs, metrics[key], STYLES[split], color=color(index),
                    label=f"{label} ({split_name(split).lower()})", **single_point_marker(xs))
            if f"{key}_std" in metrics:
                mean, std = np.array(metrics[key]), np.array(metrics[f"{key}_std"])
                ax.fill_between(xs, mean - std, mean + std, color=color(index), alpha=0.2,
                                linewidth=0)


def group_metrics(run_dirs: Sequence[str | os.PathLike]) -> Metrics:
    """A seed group's curves as one run's: each column every member has, its mean over the
    members at the epochs common to all, and `<column>_std` beside it (sample std, n - 1;
    0 with one member). Raises ValueError without runs."""
    runs = [_run_metrics(Path(d)) for d in run_dirs]
    if not runs:
        raise ValueError("a seed group with no member that has trained an epoch")
    return _mean_std(runs)


def _mean_std(runs: list[Metrics]) -> Metrics:
    """group_metrics of runs' metrics already read (at least one)."""
    import numpy as np

    common = sorted(set.intersection(*(set(m.get("epoch", [])) for m in runs)))
    metrics: Metrics = {"epoch": common}
    for key in runs[0]:
        if key == "epoch" or not all(key in m for m in runs):
            continue
        curves = np.array([_at_epochs(m, key, common) for m in runs]).reshape(len(runs), -1)
        metrics[key] = curves.mean(0).tolist()
        metrics[f"{key}_std"] = (curves.std(0, ddof=1) if len(runs) > 1
                                 else np.zeros(len(common))).tolist()
    return metrics


def plot_group(run_dirs: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> list[Path]:
    """Mean curve and a ±1 std band across runs (epochs common to all) into out_dir:
    loss.png, then accuracy.png or mae.png.

    The std is the sample std (n - 1); with one run the band is empty.
    Raises ValueError without runs, or for classification and regression runs together.
    """
    import numpy as np

    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise ValueError("plot_group needs at least one run directory")
    runs = [_run_metrics(d) for d in run_dirs]
    metric = _common_metric(runs, [d.name for d in run_dirs])
    losses = {run_loss_name(d) for d in run_dirs}
    loss_name = losses.pop() if len(losses) == 1 else None
    group = _mean_std(runs)
    common = group["epoch"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with default_style():
        for quantity in ("loss", metric) if metric else ("loss",):
            fig = new_figure(7.0, 4.5)
            ax = fig.add_subplot()
            for i, split in enumerate(SPLITS):
                key = f"{split}_{quantity}"
                if common and all(has(m, key) for m in runs):
                    mean, std = np.array(group[key]), np.array(group[f"{key}_std"])
                    ax.plot(common, mean, color=color(i), label=f"{split_name(split)} (mean)",
                            **single_point_marker(common))
                    ax.fill_between(common, mean - std, mean + std, color=color(i), alpha=0.25,
                                    linewidth=0, label=f"{split_name(split)} ±1 std")
            name = axis_label(quantity, loss_name)
            frame_curves(ax, quantity, f"{name.capitalize()}: mean ± 1 std of {len(runs)} runs",
                         loss_name)
            written.append(save(fig, out_dir / f"{quantity}.png"))
    return written


def _at_epochs(metrics: Metrics, key: str, epoch_list: list[float]) -> list[float]:
    """The values of `key` at `epoch_list` (the last row wins if an epoch was logged twice)."""
    by_epoch = dict(zip(metrics["epoch"], metrics[key], strict=True))
    return [by_epoch[e] for e in epoch_list]
