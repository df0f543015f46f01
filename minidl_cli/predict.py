"""A trained run used on new data: `load(run_dir)` gives a Predictor.

Everything comes from the checkpoint (weights, config, the task and its state, the feature
names, the data set's preprocessing, the input standardiser), never from the training
files, so a run predicts even when the data it was trained on is gone. Raw rows become
inputs as in training: the data set's preprocessing (columns by name), then the
standardiser. The CLI's `minidl predict` and `minidl evaluate --data` are thin shells over
`Predictor.predict_columns` and `Predictor.evaluate`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from minidl_cli import tasks
from minidl_cli.build import build_loss, build_model
from minidl_cli.nn import Sequential
from minidl_cli.runs import Run, RunError, load_checkpoint

TABLE_SUFFIXES = (".parquet", ".pq")  # read as Parquet; anything else as CSV


class Predictor:
    """A trained network with what turns raw rows into its inputs and its outputs into
    predictions.

    Attributes: `model` (the minidl Sequential, eval mode), `task` (tasks.Task),
    `features` (the input column names), `classes` (class names; None for regression),
    `checkpoint` (its path), `epoch`.
    """

    def __init__(self, state: dict[str, Any], checkpoint: Path, base: Path):
        self.checkpoint, self.epoch = Path(checkpoint), state["epoch"]
        self.config = state["config"]
        self.input_shape = tuple(state.get("input_shape") or [_first_width(self.config)])
        self.features: list[str] = list(state.get("features") or
                                        [f"x{i + 1}" for i in range(self.input_shape[0])])
        self.preprocessing = state.get("preprocessing")
        self.dtype = getattr(torch, self.config["train"]["dtype"])
        _import_plugins(self.config.get("plugins") or [], base)
        with torch.random.fork_rng(devices=[]):  # building draws initial weights: not ours
            self.model: Sequential = build_model(self.config["model"], self.input_shape)
        self.model.to(dtype=self.dtype)
        try:
            self.model.load_state_dict(state["model"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise RunError(f"{checkpoint} does not fit its own config's model ({e})") from None
        self.model.eval()
        self.task = tasks.from_state(state.get("task"), self.model_outputs())
        standardizer = state.get("standardizer")
        self.standardizer = (standardizer["mean"], standardizer["std"]) if standardizer else None

    @property
    def classes(self) -> list[str] | None:
        """The class names in output order, as in the training data; None for regression."""
        return getattr(self.task, "class_names", None)

    def model_outputs(self) -> int:
        """The network's output width. Shape: one input (1, *input_shape) -> (1, width)."""
        with torch.no_grad():
            return self.model(torch.zeros(1, *self.input_shape, dtype=self.dtype)).shape[1]

    # --- raw data -> inputs -> outputs ---

    def inputs(self, x: Any) -> Tensor:
        """Raw features as the network's float64 input before standardisation.

        x: a tensor or array of shape (n, *input_shape) (already numeric, columns in
        `features` order), a path to a CSV or Parquet file, a pyarrow Table or a pandas
        DataFrame (columns found by name). ValueError naming a missing column.
        """
        if isinstance(x, (str, os.PathLike)):
            return self.encode(read_table(Path(x)), str(x))
        if _is_table(x):
            return self.encode(_as_arrow(x))
        tensor = torch.as_tensor(x, dtype=torch.float64)
        if tensor.shape[1:] != self.input_shape:
            shape = ", ".join(map(str, self.input_shape))
            raise ValueError(f"predict: inputs of shape (n, {shape}) expected (columns "
                             f"{', '.join(self.features)}), got {tuple(tensor.shape)}")
        return tensor

    def encode(self, table: Any, source: str = "the input") -> Tensor:
        """A pyarrow Table's feature columns, by name, as float64 (n, d); other columns are
        ignored. ValueError naming the missing columns, or a cell that is not a number."""
        missing = [name for name in self.features if name not in table.column_names]
        if missing:
            raise ValueError(f"{source} has no column {', '.join(map(repr, missing))}, which the "
                             f"run was trained on; give it the columns {', '.join(self.features)}"
                             " (others are ignored)")
        return _float_columns(table, self.features, source)

    def outputs(self, x: Any) -> Tensor:
        """The network's outputs for raw inputs (see `inputs`), in eval mode.
        Shape: (n, num_outputs)."""
        inputs = self.inputs(x)
        if self.standardizer is not None:
            mean, std = self.standardizer
            inputs = (inputs - mean) / std
        with torch.no_grad():
            return self.model(inputs.to(self.dtype))

    def predict(self, x: Any) -> Any:
        """Class names (numpy array of str, shape (n,)) or values on the target's scale
        (float64 numpy array, (n,) for one target, (n, k) for several)."""
        import numpy as np

        outputs = self.outputs(x)
        if self.classes is not None:
            return np.array([self.classes[i] for i in self.task.decode(outputs).tolist()])
        values = self.task.decode(outputs).cpu().numpy()
        return values[:, 0] if values.shape[1] == 1 else values

    def predict_proba(self, x: Any) -> Any:
        """Softmax of the outputs, one column per class (scikit-learn's predict_proba).
        Shape: (n, num_classes) float64 numpy array."""
        if self.classes is None:
            raise ValueError("predict_proba: this run is a regression; use predict")
        return torch.softmax(self.outputs(x).double(), 1).cpu().numpy()

    def predict_columns(self, x: Any) -> dict[str, list]:
        """The columns `minidl predict` writes, one row per input row (the task's)."""
        return self.task.prediction_columns(self.outputs(x))

    def evaluate(self, path: Path) -> dict[str, Any]:
        """The loss and the task's evaluation on a labelled file (features and label)."""
        path = Path(path)
        table = read_table(path)
        x = self.encode(table, str(path))
        y = self.labels(table, str(path))
        outputs = self.outputs(x)
        loss_fn = build_loss(self.config["loss"])
        with torch.no_grad():
            loss = loss_fn(outputs, self.task.targets(y, loss_fn, self.dtype)).item()
        if loss_fn.reduction == "sum":
            loss /= len(x)
        return {"loss": loss, **self.task.evaluation(outputs, y)}

    def labels(self, table: Any, source: str) -> Tensor:
        """The true values of a labelled table: class indices (by class name) or float
        targets. ValueError naming the label column or an unknown class."""
        columns = self.label_columns()
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise ValueError(f"{source} has no label column {', '.join(map(repr, missing))}; "
                             "evaluating needs the true values of the run's label")
        if self.classes is None:
            return _float_columns(table, columns, source)
        index = {name: i for i, name in enumerate(self.classes)}
        values = [_class_name(v) for v in table.column(columns[0]).to_pylist()]
        unknown = sorted({v for v in values if v not in index})
        if unknown:
            raise ValueError(f"{source}, column {columns[0]!r}: {', '.join(map(repr, unknown[:5]))}"
                             f" {'is not a class' if len(unknown) == 1 else 'are not classes'} "
                             f"the run was trained on ({', '.join(self.classes)})")
        return torch.tensor([index[v] for v in values], dtype=torch.int64)

    def label_columns(self) -> list[str]:
        """The label column(s) of the training data (regression: the target names)."""
        if self.classes is None:
            return list(self.task.target_names)
        label = self.config["data"].get("label", "label")
        return [label] if isinstance(label, str) else list(label)

    # --- torch.nn ---

    def to_torch(self) -> torch.nn.Sequential:
        """The network as a torch.nn.Sequential of the torch.nn classes of the same names,
        loaded from `model`'s state dict: the same outputs for the same (standardised)
        inputs. ValueError naming a layer torch.nn has no class of the same name for."""
        layers = []
        for i, (layer, cfg) in enumerate(zip(self.model, self.config["model"], strict=True)):
            name = type(layer).__name__
            options = {k: v for k, v in (cfg.items() if isinstance(cfg, dict) else ())
                       if k != "type"}
            cls = getattr(torch.nn, name, None)
            try:
                layers.append(cls(**options))
            except TypeError as e:
                raise ValueError(f"model[{i}]: no torch.nn.{name} takes {name}'s options "
                                 f"({e}); to_torch maps layers to torch.nn classes of the "
                                 "same name") from None
        net = torch.nn.Sequential(*layers).to(self.dtype)
        net.load_state_dict(self.model.state_dict())
        return net.eval()


def load(run_dir: str | os.PathLike, checkpoint: str = "last") -> Predictor:
    """The Predictor of a run's checkpoint ('last', 'best', an epoch number or a path).

    RunError (a ValueError) for a missing run or checkpoint.
    """
    run = Run.open(Path(run_dir))
    path = run.checkpoint_path(str(checkpoint))
    if checkpoint == "best" and not path.exists():
        raise RunError(f"{run.path} has no best.pt: it is kept only when train.val_fraction > 0; "
                       "use --checkpoint last")
    state = load_checkpoint(path)
    if "config" not in state:
        raise RunError(f"{path} holds no config; use a checkpoint minidl train wrote")
    return Predictor(state, path, run.path)


def read_table(path: Path) -> Any:
    """A CSV or Parquet file (by suffix) as a pyarrow Table; FileNotFoundError or
    ValueError naming the file."""
    import pyarrow as pa

    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    try:
        if path.suffix.lower() in TABLE_SUFFIXES:
            import pyarrow.parquet as pq

            return pq.read_table(path)
        import pyarrow.csv as pcsv

        return pcsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as e:
        reason = (str(e).splitlines() or [""])[0][:200]
        raise ValueError(f"cannot read {path}: {reason}") from None


def write_csv(columns: dict[str, list]) -> str:
    """Columns of equal length as CSV text with a header row."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values(), strict=True))
    return buffer.getvalue()


def _float_columns(table: Any, names: list[str], source: str) -> Tensor:
    """Columns of a pyarrow Table as one float64 tensor (n, len(names))."""
    import numpy as np
    import pyarrow as pa

    arrays = []
    for name in names:
        column = table.column(name)
        try:
            values = column.cast(pa.float64()).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise ValueError(f"{source}, column {name!r}: holds values that are not numbers "
                             f"(type {column.type})") from None
        if column.null_count or not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values))[0]) + 1
            raise ValueError(f"{source}, column {name!r}, data row {row}: empty or not a "
                             "finite number")
        arrays.append(values)
    return torch.from_numpy(np.stack(arrays, 1) if arrays else np.zeros((table.num_rows, 0)))


def _class_name(value: Any) -> str:
    """A label cell as the training data names its class: integers without '.0'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _is_table(x: Any) -> bool:
    module = type(x).__module__
    return module.startswith("pyarrow") or module.startswith("pandas")


def _as_arrow(x: Any) -> Any:
    import pyarrow as pa

    if type(x).__module__.startswith("pandas"):
        return pa.Table.from_pandas(x, preserve_index=False)
    return x


def _first_width(config: dict[str, Any]) -> int:
    """The input width of a checkpoint that predates recorded input shapes."""
    first = config["model"][0]
    if isinstance(first, dict) and first.get("in_features"):
        return first["in_features"]
    raise RunError("this checkpoint does not record its input shape; retrain the run")


def _import_plugins(modules: list[str], base: Path) -> None:
    """Import the run's plugins (from the working directory or the run's folder)."""
    from minidl_cli.config import ConfigError
    from minidl_cli.config.validate import _Checker

    problems: list[str] = []
    _Checker(problems, base).plugins(modules)
    if problems:
        raise ConfigError(problems)
