"""The Predictor: a checkpoint's network, its task and its standardiser, applied to raw data
(read by RunInputs) to give outputs, predictions, an evaluation or sampled text."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from minidl_cli import tasks
from minidl_cli.build import build_loss, build_model
from minidl_cli.config.plugins import import_plugins
from minidl_cli.nn import Sequential
from minidl_cli.nn.module import forward_in_slices
from minidl_cli.predict.inputs import RunInputs
from minidl_cli.runs import Run, RunError, default_checkpoint, load_checkpoint


class Predictor:
    """A trained network with what turns raw rows into its inputs (`reader`, a RunInputs)
    and its outputs into predictions.

    Attributes: `model` (the minidl Sequential, eval mode), `task` (tasks.Task),
    `features` and `feature_names_in_` (the input column names: a table's columns before
    one-hot encoding), `encoded_features` (the network's input columns, in order: what a
    tensor given to `predict` must hold, e.g. color=green; not yet standardised),
    `classes` (class names; None for regression), `checkpoint` (its path), `epoch`.
    """

    def __init__(self, state: dict[str, Any], checkpoint: Path, base: Path):
        self.checkpoint, self.epoch = Path(checkpoint), state["epoch"]
        self.config = state["config"]
        self.input_shape = tuple(state.get("input_shape") or [_first_width(self.config)])
        self.dtype = getattr(torch, self.config["train"]["dtype"])
        import_plugins(self.config.get("plugins") or [], base)
        self.model: Sequential = _trained_model(state, self.input_shape, self.dtype, checkpoint)
        # a language model's inputs are token ids (int64), everything else's are features
        self.takes_ids = (state.get("task") or {}).get("name") == "language_model"
        self.task = tasks.from_state(state.get("task"), self.model_outputs())
        standardizer = state.get("standardizer")
        self.standardizer = (standardizer["mean"], standardizer["std"]) if standardizer else None
        self.reader = RunInputs(state, self.input_shape, self.task)
        self.features, self.encoded_features = self.reader.features, self.reader.encoded_features
        self.feature_names_in_ = self.features  # scikit-learn's name for the input columns

    @property
    def classes(self) -> list[str] | None:
        """The class names in output order, as in the training data; None for regression."""
        return getattr(self.task, "class_names", None)

    @property
    def vocabulary(self) -> list[str] | None:
        """A language model's characters in token-id order (output i scores vocabulary[i]);
        None for other tasks."""
        return getattr(self.task, "vocabulary", None)

    def model_outputs(self) -> int:
        """The network's output width. Shape: one input (1, *input_shape) -> (1, width)."""
        dtype = torch.int64 if self.takes_ids else self.dtype
        with torch.no_grad():
            return self.model(torch.zeros(1, *self.input_shape, dtype=dtype)).shape[-1]

    def inputs(self, x: Any) -> Tensor:
        """Raw data as the network's input before standardisation (RunInputs.inputs)."""
        return self.reader.inputs(x)

    def read_images(self, path: str | os.PathLike) -> tuple[list[str] | None, Tensor]:
        """An image run's input images and their files (RunImages.read); ValueError for a
        run that does not take images. Shape: -> (n, *input_shape) float64."""
        if self.reader.images is None:
            raise ValueError(f"predict: this run takes inputs of shape {self.input_shape}, "
                             "not images")
        return self.reader.images.read(path)

    def label_columns(self) -> list[str]:
        """The label column(s) of the training data (regression: the target names)."""
        return self.reader.label_columns()

    def outputs(self, x: Any) -> Tensor:
        """The network's outputs for raw inputs (see `inputs`), in eval mode.
        Shape: (n, num_outputs)."""
        return self.network_outputs(self.inputs(x))

    def network_outputs(self, inputs: Tensor) -> Tensor:
        """The network's outputs for inputs as `inputs` gives them (encoded and, for a
        run that permuted its signals, permuted), standardised as in training, in eval mode.
        Shape: (n, *input_shape) -> (n, num_outputs)."""
        if self.standardizer is not None:
            mean, std = self.standardizer
            inputs = (inputs - mean) / std
        with torch.no_grad():
            if inputs.is_floating_point():
                inputs = inputs.to(self.dtype)
                check_finite(inputs, self.encoded_features)
            return forward_in_slices(self.model, inputs)  # a slice of rows at a time

    def predict(self, x: Any) -> Any:
        """Class names (numpy array of str, shape (n,)) or values on the target's scale
        (float64 numpy array, (n,) for one target, (n, k) for several)."""
        return self.task.predictions(self.outputs(x))

    def predict_proba(self, x: Any) -> Any:
        """Softmax of the outputs, one column per class (scikit-learn's predict_proba).
        Shape: (n, num_classes) float64 numpy array."""
        return self.task.probabilities(self.outputs(x))

    def predict_columns(self, x: Any) -> dict[str, list]:
        """The columns `minidl predict` writes, one row per input row (the task's)."""
        return self.task.prediction_columns(self.outputs(x))

    def evaluate(self, data: Any) -> dict[str, Any]:
        """The loss and the task's evaluation on labelled data (RunInputs.labelled: a table,
        labelled images, or a language model's text file)."""
        x, y = self.reader.labelled(data)
        outputs = self.network_outputs(x)
        loss_fn = build_loss(self.config["loss"])
        with torch.no_grad():
            loss = loss_fn(outputs, self.task.targets(y, loss_fn, self.dtype)).item()
        if loss_fn.reduction == "sum":
            loss /= self.task.count(y)
        return {"loss": loss, **self.task.evaluation(outputs, y)}

    def sample(self, num: int | None = None, max_tokens: int | None = None,
               temperature: float = 1.0, prompt: str = "", seed: int | None = None
               ) -> list[str]:
        """Text sampled from a language model (sampling.generate): `num` items of a `lines`
        run (each ends where the model draws the boundary token), or `num` texts of
        `max_tokens` tokens of a `stream` run, each starting with `prompt`. Raises
        ValueError for another task, a bad argument or a prompt character outside the
        vocabulary (naming both)."""
        from minidl_cli.sampling import generate

        if not self.takes_ids:
            raise ValueError(f"sample: this run's task is {self.task.name}; only a language "
                             "model (data type text) generates text")
        return generate(self.model, self.task, num, max_tokens, temperature, prompt, seed)

    def to_torch(self) -> torch.nn.Sequential:
        """The network as torch.nn, in eval mode: each layer's torch.nn twin (as the layer
        declares it, blocks included), loaded from `model`'s state dict, so the same
        (standardised) inputs give the same outputs. ValueError naming a layer without one."""
        try:
            return self.model.to_torch().eval()
        except ValueError as e:
            raise ValueError(f"model: {e}") from None


def load(run_dir: str | os.PathLike, checkpoint: str | None = None) -> Predictor:
    """The Predictor of a run's checkpoint ('last', 'best', an epoch number or a path;
    None: runs.default_checkpoint, best.pt for a run trained with early stopping).

    RunError (a ValueError) for a missing run or checkpoint.
    """
    run = Run.open(Path(run_dir))
    checkpoint = default_checkpoint(run.path) if checkpoint is None else checkpoint
    path = run.checkpoint_path(str(checkpoint))
    if checkpoint == "best" and not path.exists():
        raise RunError(f"{run.path} has no best.pt: it is kept only when train.val_fraction > 0; "
                       "use --checkpoint last")
    state = load_checkpoint(path)
    if "config" not in state:
        raise RunError(f"{path} holds no config; use a checkpoint minidl train wrote")
    return Predictor(state, path, run.path)


def write_csv(columns: dict[str, list]) -> str:
    """Columns of equal length as CSV text with a header row."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(zip(*columns.values(), strict=True))
    return buffer.getvalue()


def check_finite(inputs: Tensor, names: list[str]) -> None:
    """ValueError naming the first data row (counted from 1, the header not counted) and
    column (by `names` for rows of features) whose value (after standardisation) the
    inputs' dtype cannot hold: the network would give NaN for it. Training refuses the
    same values (data.check_network_data). Shape: inputs (n, *input_shape)."""
    flat = inputs.flatten(1)  # (n, values): n may be 0
    bad = ~torch.isfinite(flat)
    if not bool(bad.any()):
        return
    row, column = (int(i) for i in bad.nonzero()[0])
    what = (f"column {names[column]!r}" if inputs.dim() == 2 and column < len(names)
            else f"input value {column}")
    name = str(inputs.dtype).removeprefix("torch.")
    raise ValueError(
        f"predict: data row {row + 1}, {what}: the value (after the run's standardisation) "
        f"is beyond what {name} (the run's train.dtype) holds "
        f"({torch.finfo(inputs.dtype).max:.3g}), so the network would give NaN; fix the "
        "value (or its unit), or train a run with train.dtype: float64")


def _trained_model(state: dict[str, Any], input_shape: tuple[int, ...], dtype: torch.dtype,
                   checkpoint: Path) -> Sequential:
    """The checkpoint's network, built from its config for `input_shape`, cast to `dtype`,
    loaded with its weights, in eval mode. RunError when the weights do not fit."""
    with torch.random.fork_rng(devices=[]):  # building draws initial weights: not ours
        model = build_model(state["config"]["model"], input_shape)
    model.to(dtype=dtype)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise RunError(f"{checkpoint} does not fit its own config's model ({e})") from None
    return model.eval()


def _first_width(config: dict[str, Any]) -> int:
    """The input width of a checkpoint that predates recorded input shapes."""
    first = config["model"][0]
    if isinstance(first, dict) and first.get("in_features"):
        return first["in_features"]
    raise RunError("this checkpoint does not record its input shape; retrain the run")
