"""The pictures of one run, chosen by its task and the shape of its data.

- classification, points or tables: data.png (test points coloured by class), loss.png,
  accuracy.png, predictions.png (coloured by predicted class, errors marked), and
  confusion.png with three or more classes; more than two features are drawn on their first
  two principal components;
- classification, signals (a table whose features are the points of one signal, MNIST-1D):
  data.png and predictions.png are grids of signals drawn as curves, labelled as images are;
- classification, images (N, C, H, W): data.png (a grid of training images with their
  labels), loss.png, accuracy.png, predictions.png (a grid of test images with their
  predicted labels, errors in red), and confusion.png with three or more classes;
- regression: data.png (test data coloured by the first target; one feature: the target
  against it), loss.png, mae.png, predictions.png (predicted against true, one panel per
  target), residuals.png (residual against predicted).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidl_cli.plots import confusion, curves, images, points, regression, signals
from minidl_cli.plots.canvas import default_style, numpy, save, subsample

if TYPE_CHECKING:

    from minidl_cli.data import Dataset
    from minidl_cli.tasks import Task


def draw_run_plots(
    plots_dir: str | os.PathLike,
    dataset: Dataset,
    task: Task | str | None,
    test_outputs: Any,
    metrics: curves.Metrics | str | os.PathLike,
    loss_name: str | None = None,
) -> list[Path]:
    """Write a run's pictures (the list in this module's docstring) into `plots_dir`.

    Shape: test_outputs (n_test, num_outputs), the network's outputs on dataset.x_test.
    `task.decode` turns them into class indices or values on the targets' own scale; with
    a task name (or None: dataset.task) instead of a Task they must be that already, or
    classification scores whose argmax is the class.
    `metrics` is a read_metrics dict or the path of a metrics.csv; `loss_name` (e.g. "mse")
    labels the loss axis. Returns the paths written, the loss and metric curves second
    and third (a language model's are loss.png and accuracy.png alone). Raises ValueError
    for a task other than classification, regression or language_model.
    """
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    if not isinstance(metrics, dict):
        metrics = curves.read_metrics(metrics)
    name = getattr(task, "name", task) or getattr(dataset, "task", "classification")
    if name == "language_model":  # the run's samples of text are its samples.txt
        return _curves(plots_dir, metrics, "accuracy", per_token(loss_name or "cross_entropy"))
    outputs = numpy(task.decode(test_outputs) if hasattr(task, "decode") else test_outputs)
    if name == "regression":
        targets = dataset.target_names or getattr(task, "target_names", None)
        return _regression(plots_dir, dataset, outputs, metrics, loss_name, targets)
    if name != "classification":
        raise ValueError(f"no pictures for task {name!r}; expected classification, regression "
                         "or language_model")
    return _classification(plots_dir, dataset, outputs, metrics, loss_name)


def per_token(loss_name: str) -> str:
    """A language model's loss label: its loss is the mean over predicted tokens, in nats."""
    return f"{loss_name}, nats per token"


def predicted_classes(outputs: Any) -> Any:
    """Class indices from scores (argmax over the last dimension) or from class indices.

    Shape: (n, num_classes) -> (n,); (n,) -> (n,).
    """
    outputs = numpy(outputs)
    return outputs.argmax(-1) if outputs.ndim == 2 else outputs.astype(int)


def _curves(plots_dir: Path, metrics: curves.Metrics, default_metric: str,
            loss_name: str | None) -> list[Path]:
    metric = curves.metric_of(metrics) or default_metric
    return [curves.plot_curves(metrics, "loss", plots_dir / "loss.png", loss_name),
            curves.plot_curves(metrics, metric, plots_dir / f"{metric}.png")]


def _classification(plots_dir: Path, dataset: Dataset, outputs: Any, metrics: curves.Metrics,
                     loss_name: str | None) -> list[Path]:
    names = getattr(dataset, "class_names", None)
    x, y = dataset.x_test, dataset.y_test
    predicted = predicted_classes(outputs)
    if x.ndim == 4:
        first = images.plot_image_data(dataset.x_train, dataset.y_train, plots_dir / "data.png",
                                       names)
        last = images.plot_image_predictions(x, y, predicted, plots_dir / "predictions.png",
                                             names)
    elif getattr(dataset, "signal", False):
        first = signals.plot_signal_data(dataset.x_train, dataset.y_train,
                                         plots_dir / "data.png", names)
        last = signals.plot_signal_predictions(x, y, predicted, plots_dir / "predictions.png",
                                               names)
    else:
        plane = points.Plane(dataset.x_train, getattr(dataset, "feature_names", None))
        first = points.plot_data(x, y, plots_dir / "data.png", "Test data", names, plane)
        last = points.plot_predictions(x, y, predicted, plots_dir / "predictions.png", names,
                                       plane)
    written = [first, *_curves(plots_dir, metrics, "accuracy", loss_name), last]
    num_classes = max(getattr(dataset, "num_classes", 0), int(numpy(y).max(initial=0)) + 1,
                      outputs.shape[-1] if outputs.ndim == 2 else 0)
    if num_classes >= 3:
        written.append(confusion.plot_confusion(y, predicted, plots_dir / "confusion.png",
                                                num_classes, names))
    return written


def _regression(plots_dir: Path, dataset: Dataset, outputs: Any, metrics: curves.Metrics,
                loss_name: str | None, targets: list[str] | None) -> list[Path]:
    y = numpy(dataset.y_test).astype(float).reshape(len(dataset.y_test), -1)
    predicted = outputs.astype(float).reshape(y.shape)
    first_target = targets[0] if targets else "target"
    if dataset.x_test.ndim == 4:
        rows = subsample(len(y), images.GRID_IMAGES)
        with default_style():
            fig = images.grid_figure(numpy(dataset.x_test)[rows],
                                     [f"{v:.3g}" for v in y[rows, 0]],
                                     f"Test images with their {first_target}")
            data = save(fig, plots_dir / "data.png")
    else:
        features = getattr(dataset, "feature_names", None) or ["feature 1"]
        plane = points.Plane(dataset.x_train, features)
        data = points.plot_targets(dataset.x_test, y[:, 0], plots_dir / "data.png", first_target,
                                   plane, features[0])
    return [
        data,
        *_curves(plots_dir, metrics, "mae", loss_name),
        regression.plot_predicted_vs_true(y, predicted, plots_dir / "predictions.png", targets),
        regression.plot_residuals(y, predicted, plots_dir / "residuals.png", targets),
    ]
