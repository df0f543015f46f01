"""What differs between classification, regression and language models, one object per task.

The trainer, `evaluate`, `plot`, seed summaries and `predict` ask the task instead of
branching on it (scikit-learn keeps this in scorers and `predict` / `predict_proba`):

- `targets`: what the loss compares the network's output with;
- `metrics`: the metrics of network outputs against the true values (metrics.csv, the
  progress bar, seed summaries), `evaluation` adds what eval.json shows;
- `columns`: metrics.csv's header; `summary_keys`: a seed group's summary;
- `decode` / `prediction_columns`: what `predict` writes.

A task's fitted state (the target statistics of `standardize_target`) travels in the
checkpoint as plain data (`state_dict`). Metrics follow scikit-learn's definitions.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from minidl_cli.nn import CrossEntropyLoss, Loss
from minidl_cli.nn.losses import IGNORE_INDEX

PERCENT_METRICS = ("accuracy", "error")  # shown as percentages


def format_metric(name: str, value: float) -> str:
    """A metric for people: accuracy and error as percentages, the rest with 4 decimals
    (from 1e6 on, 5 significant digits with an exponent)."""
    if any(name.endswith(p) for p in PERCENT_METRICS):
        return f"{value:.2%}"
    if math.isfinite(value) and abs(value) >= 1e6:  # 1.2346e+199, never 200 digits
        return f"{value:.4e}"
    return f"{value:.4f}"


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> Tensor:
    """Counts of (true, predicted) pairs, as sklearn.metrics.confusion_matrix: entry [i, j]
    counts the rows of class i predicted j.

    Shape: y_true (n,), y_pred (n,) integer labels in 0..num_classes-1 (tensors, arrays or
    lists) -> (num_classes, num_classes) int64.
    """
    y_true = torch.as_tensor(y_true).reshape(-1).long().cpu()
    y_pred = torch.as_tensor(y_pred).reshape(-1).long().cpu()
    pairs = y_true * num_classes + y_pred
    return torch.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)


def regression_scores(y_true: Any, y_pred: Any) -> dict[str, Tensor]:
    """mae, rmse and r2 of each target column, as scikit-learn's mean_absolute_error,
    root_mean_squared_error and r2_score with multioutput='raw_values'.

    r2 = 1 − Σ(y − ŷ)² / Σ(y − ȳ)²; a constant target scores 1 when predicted exactly,
    else 0 (scikit-learn's force_finite).
    Shape: y_true (n, k) or (n,), y_pred likewise -> {name: (k,) float64}.
    """
    y_true = torch.as_tensor(y_true).double()
    y_true = y_true.reshape(len(y_true), -1)
    residual = torch.as_tensor(y_pred).double().reshape(y_true.shape) - y_true
    # Each column is divided by its largest magnitude before squaring and the sums scaled
    # back (as LAPACK's dnrm2): targets near 1e200 square to inf in float64 otherwise.
    deviation = y_true - y_true.mean(0)
    scale = torch.maximum(residual.abs().amax(0), deviation.abs().amax(0)) if len(y_true) \
        else torch.ones(y_true.shape[1:], dtype=torch.float64)
    scale = torch.where((scale > 0) & torch.isfinite(scale), scale, torch.ones_like(scale))
    ss_res = (residual / scale).square().sum(0)  # Σ(y − ŷ)² / scale²
    ss_tot = (deviation / scale).square().sum(0)  # Σ(y − ȳ)² / scale²
    r2 = torch.where(ss_tot > 0, 1 - ss_res / ss_tot.clamp_min(1e-300), (ss_res == 0).double())
    rmse = (residual / scale).square().mean(0).sqrt() * scale
    return {"mae": residual.abs().mean(0), "rmse": rmse, "r2": r2}


class Task:
    """Base class: what a task decides. Subclasses set `name` and `metric_names`."""

    name: str
    metric_names: tuple[str, ...]  # besides "loss": the metrics of each split, in column order
    summary_metrics: tuple[str, ...]  # of a seed group: final metrics per split, in order
    headline: str  # the one metric a seed's progress line shows, e.g. "test_error"
    group_keys: tuple[str, ...]  # the statistics printed for a seed group, in order

    def columns(self, splits: list[str]) -> list[str]:
        """metrics.csv's header: epoch, train_*, test_*, lr, elapsed_s, then val_* if any."""
        per_split = ("loss", *self.metric_names)
        main = [f"{s}_{m}" for s in ("train", "test") for m in per_split]
        extra = [f"{s}_{m}" for s in splits if s not in ("train", "test") for m in per_split]
        return ["epoch", *main, "lr", "elapsed_s", *extra]

    @classmethod
    def summary_keys(cls) -> list[str]:
        """The final-metrics columns of a seed group's summary.csv."""
        return [f"{s}_{m}" for s in ("train", "test") for m in cls.summary_metrics]

    def summary(self, row: dict[str, float]) -> dict[str, float]:
        """A seed's summary fields from its last metrics row (NaN when it has none)."""
        return {key: row.get(key, math.nan) for key in self.summary_keys()}

    def progress(self, row: dict[str, float]) -> str:
        """The progress bar's metrics for one metrics row."""
        raise NotImplementedError

    # --- what each task defines ---

    def targets(self, y: Tensor, loss: Loss, dtype: torch.dtype) -> Tensor:
        """What `loss` compares the network's outputs with, from the true values `y`."""
        raise NotImplementedError

    def decode(self, outputs: Tensor) -> Tensor:
        """Network outputs as class indices or values on the target's own scale."""
        raise NotImplementedError

    def metrics(self, outputs: Tensor, y: Tensor) -> dict[str, float]:
        """`metric_names` of outputs against the true values (metrics.csv, without loss)."""
        raise NotImplementedError

    def evaluation(self, outputs: Tensor, y: Tensor) -> dict[str, Any]:
        """What eval.json holds per split besides the loss."""
        raise NotImplementedError

    def predictions(self, outputs: Tensor) -> Any:
        """Predictor.predict's answer: class names or values, as numpy arrays."""
        raise NotImplementedError

    def probabilities(self, outputs: Tensor) -> Any:
        """Predictor.predict_proba's answer; ValueError where the task has none."""
        raise NotImplementedError

    def prediction_columns(self, outputs: Tensor) -> dict[str, list]:
        """The columns `minidl predict` writes, one value per row."""
        raise NotImplementedError

    def label_columns(self) -> list[str]:
        """The label columns of a labelled file when the run recorded no preprocessing."""
        raise NotImplementedError

    def check_loss(self, loss: Loss) -> str | None:
        """Why `loss` cannot train this task, or None."""
        return None

    def count(self, y: Tensor) -> int:
        """How many predictions the true values `y` hold: what a summed loss is divided by
        for the loss per prediction (rows; a language model's tokens)."""
        return len(y)

    def describe(self) -> dict[str, Any]:
        """What meta.json and eval.json say about the task: its name and what it predicts."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Classification(Task):
    """Class indices; the network outputs one score per class (logits or MSE targets).

    Shape: y (n,) int64 in 0..C-1; outputs (n, C).
    """

    name = "classification"
    metric_names = ("accuracy",)
    summary_metrics = ("loss", "accuracy", "error")
    headline = "test_error"
    group_keys = ("train_error", "test_error", "test_loss")

    def __init__(self, num_classes: int, class_names: list[str] | None = None):
        self.num_classes = num_classes
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])

    def progress(self, row: dict[str, float]) -> str:
        return (f"loss {row['train_loss']:.4f} acc {row['train_accuracy']:.1%} "
                f"test {row['test_accuracy']:.1%}")

    def summary(self, row: dict[str, float]) -> dict[str, float]:
        out = super().summary(row)
        for split in ("train", "test"):  # the error is 1 − accuracy, rounded for the file
            out[f"{split}_error"] = round(1 - row.get(f"{split}_accuracy", math.nan), 12)
        return out

    def targets(self, y: Tensor, loss: Loss, dtype: torch.dtype) -> Tensor:
        """The loss's encoding of the labels (cross-entropy: the labels; MSE: one-hot...)."""
        return loss.targets(y, self.num_classes, dtype)

    def decode(self, outputs: Tensor) -> Tensor:
        """Predicted class indices. Shape: outputs (n, C) -> (n,) int64."""
        return outputs.argmax(1)

    def metrics(self, outputs: Tensor, y: Tensor) -> dict[str, float]:
        """accuracy: the share of rows whose highest output is the true class."""
        return {"accuracy": (self.decode(outputs) == y).double().mean().item()}

    def evaluation(self, outputs: Tensor, y: Tensor) -> dict[str, Any]:
        """metrics, error (1 − accuracy) and the confusion matrix (rows: true, columns:
        predicted, as scikit-learn's confusion_matrix)."""
        accuracy = self.metrics(outputs, y)["accuracy"]
        confusion = confusion_matrix(y, self.decode(outputs), self.num_classes)
        return {"accuracy": accuracy, "error": 1.0 - accuracy, "confusion": confusion.tolist()}

    def predictions(self, outputs: Tensor) -> Any:
        """The class names of the highest outputs. Shape: (n, C) -> numpy str array (n,)."""
        import numpy as np

        return np.array([self.class_names[i] for i in self.decode(outputs).tolist()])

    def probabilities(self, outputs: Tensor) -> Any:
        """Softmax of the outputs. Shape: (n, C) -> float64 numpy array (n, C)."""
        return torch.softmax(outputs.double(), 1).cpu().numpy()

    def label_columns(self) -> list[str]:
        """The label column of a file of points without recorded preprocessing."""
        return ["label"]

    def prediction_columns(self, outputs: Tensor) -> dict[str, list]:
        """predict's columns: `prediction` (the class name), then `prob_<class>` (softmax)."""
        probs = torch.softmax(outputs.double(), 1)
        columns: dict[str, list] = {
            "prediction": [self.class_names[i] for i in self.decode(outputs).tolist()]}
        for i, name in enumerate(self.class_names):
            columns[f"prob_{name}"] = probs[:, i].tolist()
        return columns

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "classes": self.class_names}

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "class_names": self.class_names}


class Regression(Task):
    """Float targets, one network output per target; metrics on the target's own scale.

    With `standardize_target` the network learns z-scored targets (training statistics);
    its outputs are turned back (`decode`) before any metric or prediction.
    Shape: y (n, k) float; outputs (n, k).
    """

    name = "regression"
    metric_names = ("mae", "rmse", "r2")
    summary_metrics = ("loss", "mae", "rmse", "r2")
    headline = "test_rmse"
    group_keys = ("train_rmse", "test_rmse", "test_mae", "test_r2", "test_loss")

    def __init__(self, target_names: list[str] | None = None, num_targets: int = 1):
        self.target_names = list(target_names or [f"y{i + 1}" for i in range(num_targets)])
        self.mean: Tensor | None = None  # set by fit() when standardize_target is on
        self.std: Tensor | None = None

    def progress(self, row: dict[str, float]) -> str:
        return (f"loss {row['train_loss']:.4f} mae {row['train_mae']:.4g} "
                f"test rmse {row['test_rmse']:.4g} r2 {row['test_r2']:.3f}")

    def fit(self, y_train: Tensor) -> None:
        """Keep the per-target mean and population std of the training targets
        (a constant target gets std 1). Shape: y_train (n, k)."""
        from minidl_cli.data import fit_standardizer

        self.mean, self.std = fit_standardizer(y_train.double())

    def check_loss(self, loss: Loss) -> str | None:
        if isinstance(loss, CrossEntropyLoss):
            return ("cross_entropy needs class labels, but the data's task is regression; "
                    "use loss: mse, l1 or huber")
        return None

    def targets(self, y: Tensor, loss: Loss, dtype: torch.dtype) -> Tensor:
        """The float targets, z-scored when fitted. Shape: (n, k) -> (n, k) of `dtype`."""
        if self.mean is not None:
            y = (y - self.mean.to(y.device)) / self.std.to(y.device)
        return y.to(dtype)

    def decode(self, outputs: Tensor) -> Tensor:
        """Outputs on the target's own scale, float64. Shape: (n, k) -> (n, k)."""
        values = outputs.double()
        if self.mean is not None:
            values = values * self.std.to(values.device) + self.mean.to(values.device)
        return values

    def metrics(self, outputs: Tensor, y: Tensor) -> dict[str, float]:
        """`regression_scores` averaged over the targets (scikit-learn's
        multioutput='uniform_average')."""
        return {name: value.mean().item()
                for name, value in self._per_target(outputs, y).items()}

    def _per_target(self, outputs: Tensor, y: Tensor) -> dict[str, Tensor]:
        """mae, rmse and r2 of each target. Shape: -> {name: (k,)}."""
        return regression_scores(y, self.decode(outputs))

    def evaluation(self, outputs: Tensor, y: Tensor) -> dict[str, Any]:
        """metrics (averaged over the targets); with several targets also `per_target`:
        {target name: {mae, rmse, r2}}."""
        result: dict[str, Any] = self.metrics(outputs, y)
        if y.shape[1] > 1:
            each = self._per_target(outputs, y)
            result["per_target"] = {
                name: {metric: values[i].item() for metric, values in each.items()}
                for i, name in enumerate(self.target_names)}
        return result

    def predictions(self, outputs: Tensor) -> Any:
        """Values on the target's scale. Shape: (n, k) -> float64 numpy array, (n,) when
        k = 1 (as scikit-learn's regressors), else (n, k)."""
        values = self.decode(outputs).cpu().numpy()
        return values[:, 0] if values.shape[1] == 1 else values

    def probabilities(self, outputs: Tensor) -> Any:
        raise ValueError("predict_proba: a regression has no class probabilities; use predict")

    def label_columns(self) -> list[str]:
        return list(self.target_names)

    def prediction_columns(self, outputs: Tensor) -> dict[str, list]:
        """predict's columns: `prediction` for one target, else one column per target name."""
        values = self.decode(outputs).cpu()
        if values.shape[1] == 1:
            return {"prediction": values[:, 0].tolist()}
        return {name: values[:, i].tolist() for i, name in enumerate(self.target_names)}

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "targets": self.target_names}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"name": self.name, "target_names": self.target_names}
        if self.mean is not None:
            state["target_mean"], state["target_std"] = self.mean, self.std
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.target_names = list(state.get("target_names", self.target_names))
        self.mean, self.std = state.get("target_mean"), state.get("target_std")


class LanguageModel(Task):
    """The next token of a text, from the block_size tokens before it: a classification
    over the vocabulary at one position (target next) or at every position of the context
    (target sequence, class axis last). The loss is the mean cross-entropy in nats per
    predicted token; `accuracy` the share of positions whose highest output is the true
    next token.

    Shape: y (n,) or (n, T) int64 ids; outputs (n, V) or (n, T, V) logits. The vocabulary
    and how the text was cut (`mode`, `boundary`, `start`) travel in the checkpoint, so a
    run samples and predicts without its text file.
    """

    name = "language_model"
    metric_names = ("accuracy",)
    summary_metrics = ("loss", "accuracy")
    headline = "test_loss"
    group_keys = ("train_loss", "test_loss", "test_accuracy")

    def __init__(self, vocabulary: list[str], text: dict[str, Any] | None = None,
                 block_size: int = 1, target: str = "next"):
        self.vocabulary = list(vocabulary)
        text = text or {}
        self.mode = text.get("mode", "stream")
        self.boundary = text.get("boundary")  # lines mode's boundary token (id 0)
        self.start = text.get("start")  # stream mode: a default context for sampling
        self.block_size, self.target = block_size, target

    def progress(self, row: dict[str, float]) -> str:
        return (f"loss {row['train_loss']:.4f} acc {row['train_accuracy']:.1%} "
                f"test loss {row['test_loss']:.4f}")

    def check_loss(self, loss: Loss) -> str | None:
        if not isinstance(loss, CrossEntropyLoss):
            return (f"{type(loss).__name__} cannot train a language model, whose targets are "
                    "token ids; use loss: cross_entropy")
        return None

    def targets(self, y: Tensor, loss: Loss, dtype: torch.dtype) -> Tensor:
        """The token ids themselves (cross-entropy's labels)."""
        return y

    def count(self, y: Tensor) -> int:
        """The tokens predicted: n, or n·T with target sequence, less the padding positions
        (IGNORE_INDEX) of a lines text."""
        return int((y != IGNORE_INDEX).sum())

    def decode(self, outputs: Tensor) -> Tensor:
        """The most likely next token ids. Shape: (n, V) -> (n,); (n, T, V) -> (n, T)."""
        return outputs.argmax(-1)

    def metrics(self, outputs: Tensor, y: Tensor) -> dict[str, float]:
        """accuracy: the share of predicted positions whose highest output is the true token
        (padding positions, IGNORE_INDEX, are no prediction)."""
        counted = y != IGNORE_INDEX
        return {"accuracy": (self.decode(outputs)[counted] == y[counted]).double().mean().item()}

    def evaluation(self, outputs: Tensor, y: Tensor) -> dict[str, Any]:
        """The metrics (eval.json adds the loss)."""
        return self.metrics(outputs, y)

    def predictions(self, outputs: Tensor) -> Any:
        """The most likely next token after each context (the last position's, with target
        sequence). Shape: (n, V) or (n, T, V) -> numpy str array (n,)."""
        import numpy as np

        last = outputs[:, -1] if outputs.dim() == 3 else outputs
        return np.array([self.vocabulary[i] for i in self.decode(last).tolist()])

    def probabilities(self, outputs: Tensor) -> Any:
        """Softmax over the vocabulary of the next token after each context.
        Shape: (n, V) or (n, T, V) -> float64 numpy array (n, V)."""
        last = outputs[:, -1] if outputs.dim() == 3 else outputs
        return torch.softmax(last.double(), -1).cpu().numpy()

    def prediction_columns(self, outputs: Tensor) -> dict[str, list]:
        """predict's column: `prediction`, the most likely next token after each context, a
        character that does not print as its Python escape (the line end, a lines run's
        boundary token, as \\n): one prediction, one line of CSV."""
        return {"prediction": [c if c.isprintable() else c.encode("unicode_escape").decode()
                               for c in self.predictions(outputs).tolist()]}

    def label_columns(self) -> list[str]:
        raise ValueError("a language model's data is text, not labelled table rows; give a "
                         "text (minidl sample RUN --prompt TEXT)")

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "vocabulary": self.vocabulary, "mode": self.mode,
                "block_size": self.block_size, "target": self.target}

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vocabulary": self.vocabulary, "mode": self.mode,
                "boundary": self.boundary, "start": self.start,
                "block_size": self.block_size, "target": self.target}


def by_name(name: str) -> type[Task]:
    """The Task class of a task name ('classification', 'regression', 'language_model')."""
    return {"classification": Classification, "regression": Regression,
            "language_model": LanguageModel}[name]


def for_dataset(dataset: Any) -> Task:
    """The task of a Dataset (its `task` field), sized from its classes or targets."""
    task = getattr(dataset, "task", "classification")
    if task == "regression":
        return Regression(dataset.target_names, dataset.num_outputs)
    if task == "language_model":
        y = dataset.y_train
        return LanguageModel(dataset.vocabulary, dataset.text, dataset.x_train.shape[1],
                             "sequence" if y.ndim == 2 else "next")
    return Classification(dataset.num_classes, dataset.class_names)


def from_state(state: dict[str, Any] | None, num_outputs: int) -> Task:
    """The task a checkpoint recorded (`Task.state_dict()`); None: classification
    (checkpoints written before tasks existed)."""
    state = state or {"name": "classification"}
    if state["name"] == "regression":
        task: Task = Regression(state.get("target_names"), num_outputs)
    elif state["name"] == "language_model":
        task = LanguageModel(state["vocabulary"], state, state["block_size"], state["target"])
    else:
        task = Classification(num_outputs, state.get("class_names"))
    task.load_state_dict(state)
    return task
