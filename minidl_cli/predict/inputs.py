"""Raw data given to a trained run, turned into its network's inputs as training did: table
rows by column name through the data set's preprocessing, tensors as they are, texts as
token ids of the run's vocabulary, images as the run read its own."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from minidl_cli import tasks
from minidl_cli.predict.images import RunImages


class RunInputs:
    """What a checkpoint records about its inputs, and the reading of raw data with it.

    Attributes: `input_shape` (one input, without the batch), `preprocessing` (a table's
    preprocessing of raw rows; None for other data), `features` (the input column names: a
    table's columns before one-hot encoding), `encoded_features` (the network's input
    columns, in order, e.g. color=green), `images` (a RunImages for an image run, else None),
    `takes_ids` (a language model: its inputs are token ids), `permutation` (a signal data
    set whose points the run permuted, MNIST-1D's shuffle_sequence: input point i is point
    permutation[i] of the natural signal; None for others).
    """

    def __init__(self, state: dict[str, Any], input_shape: tuple[int, ...], task: tasks.Task):
        self.input_shape, self.task = input_shape, task
        recorded = state.get("preprocessing") or {}
        self.preprocessing = recorded if "columns" in recorded else None
        if "features" in state:  # [] for images
            self.encoded_features: list[str] = list(state["features"])
        else:  # a checkpoint from before features were recorded: synthetic points
            self.encoded_features = [f"x{i + 1}" for i in range(input_shape[0])]
        if self.preprocessing is not None:
            self.encoded_features = list(self.preprocessing["feature_names"])
            self.features: list[str] = list(self.preprocessing["columns"])
        else:
            self.features = list(self.encoded_features)
        self.images = (RunImages(input_shape, state["config"].get("data") or {},
                                 recorded.get("pixels"))
                       if len(input_shape) == 3 else None)
        self.takes_ids = task.name == "language_model"
        self.permutation: list[int] | None = recorded.get("permutation") or _old_permutation(
            state["config"].get("data") or {})

    def inputs(self, x: Any) -> Tensor:
        """Raw features as the network's float64 input before standardisation.

        x: a tensor or array of shape (n, *input_shape) (numeric, already encoded: columns
        in the order of the training data's feature_names), or a table: a path to a CSV or
        Parquet file, a pyarrow Table or a pandas DataFrame, whose columns are found by name
        and encoded as in training. ValueError naming a missing column or a bad cell.
        A language model takes text: a str, a list of them, or a path (os.PathLike) to a
        UTF-8 file of one text per line (a blank line is the empty text: one output per line,
        the newline ending the file opening none), or int64 ids (n, block_size); each text becomes a
        context of token ids (sampling.contexts; ValueError naming a character outside the
        vocabulary). An image run takes a path to images (RunImages.read). Signals of a
        run that permuted their points (`permutation`) are given in their natural order, a
        table's or a tensor's alike, and permuted here as training permuted them.
        """
        if self.takes_ids:
            return self._contexts(x)
        if isinstance(x, (str, os.PathLike)) and self.images is not None:
            return self.images.read(x)[1]
        if isinstance(x, (str, os.PathLike)) or _is_table(x):
            from minidl_cli.data.table import encode_table

            return self.permuted(encode_table(_source(x), self.table_preprocessing()))
        return self.permuted(self._tensor(x))

    def permuted(self, x: Tensor) -> Tensor:
        """Signals in their natural order as the run's network takes them: their points
        permuted by the run's `permutation` (unchanged when it has none).
        Shape: (n, d) -> (n, d)."""
        return x if self.permutation is None else x[:, self.permutation]

    def _tensor(self, x: Any) -> Tensor:
        """A tensor or array of inputs as float64, checked against the input shape;
        ValueError naming what it takes for anything else (texts, ragged lists)."""
        shape = ", ".join(map(str, self.input_shape))
        try:
            tensor = torch.as_tensor(x, dtype=torch.float64)
        except (ValueError, TypeError) as e:
            raise ValueError(f"predict: this run takes numbers of shape (n, {shape}) (a tensor, "
                             "an array or equal-length lists) or a table (a CSV or Parquet "
                             f"path, a pyarrow Table, a pandas DataFrame); got {type(x).__name__}"
                             f" that is neither ({e})") from None
        if tensor.shape[1:] != self.input_shape:
            columns = ""
            if len(self.input_shape) == 1 and self.encoded_features:
                columns = (f" (the encoded columns {', '.join(self.encoded_features)}, as "
                           "in training, before standardisation)")
            raise ValueError(f"predict: inputs of shape (n, {shape}) expected{columns}, got "
                             f"{tuple(tensor.shape)}")
        return tensor

    def labelled(self, data: Any) -> tuple[Tensor, Tensor]:
        """Inputs and targets of labelled data: a table (a path, a pyarrow Table or a pandas
        DataFrame with the feature and label columns), or for an image run a folder of class
        folders or an .npz with x and y (RunImages.read_labelled), or for a language model a
        text file, all of it cut as the run cut its text. Shape: -> x (n, ...), y (n, ...)."""
        from minidl_cli.data.table import encode_labelled

        if self.takes_ids:
            return self._text_examples(data)
        if self.images is not None and isinstance(data, (str, os.PathLike)):
            return self.images.read_labelled(data, getattr(self.task, "class_names", None) or [])
        x, y = encode_labelled(_source(data), self.table_preprocessing())
        return self.permuted(x), y

    def table_preprocessing(self) -> dict[str, Any]:
        """The data set's preprocessing of table rows; for data sets that have none
        (synthetic points), the plain one: the feature columns by name, as numbers."""
        if self.preprocessing is not None:
            return self.preprocessing
        if len(self.input_shape) != 1 or not self.features:
            shape = ", ".join(map(str, self.input_shape))
            raise ValueError(f"this run's inputs are not table rows: it takes inputs of shape "
                             f"(n, {shape}), which no CSV or Parquet columns name; in Python, "
                             "give predict and evaluate a tensor of that shape")
        return {"version": 1, "columns": self.features, "categories": {},
                "feature_names": self.features, "missing": "error", "fill_values": None,
                "label": self.label_columns(), "task": self.task.name,
                "class_names": getattr(self.task, "class_names", None), "delimiter": ","}

    def label_columns(self) -> list[str]:
        """The label column(s) of the training data (regression: the target names)."""
        if self.preprocessing is not None:
            return list(self.preprocessing["label"])
        return self.task.label_columns()  # synthetic points: written as x1, x2, label

    def _contexts(self, x: Any) -> Tensor:
        """A language model's input for texts (see `inputs`). Shape: -> (n, block_size)."""
        from minidl_cli.data.text import read_text
        from minidl_cli.sampling import contexts

        if isinstance(x, Tensor) and x.dtype == torch.int64 and x.shape[1:] == self.input_shape:
            size = len(self.task.vocabulary)
            outside = x[(x < 0) | (x >= size)]
            if len(outside):
                raise ValueError(f"predict: token id {int(outside[0])} is outside the "
                                 f"vocabulary's ids 0..{size - 1}")
            return x  # token ids already
        if isinstance(x, Tensor):
            raise ValueError(f"predict: token ids are an int64 tensor of shape (n, "
                             f"{self.input_shape[0]}) (n contexts of the run's block_size); "
                             f"got {str(x.dtype).removeprefix('torch.')} of shape "
                             f"{tuple(x.shape)}")
        if isinstance(x, os.PathLike):  # one text per line; errors name the line
            text = read_text(Path(x), blank=True, where="predict")  # a space is a character
            lines = text.removesuffix("\n").split("\n")  # a blank line is the empty context
            return contexts(self.task, lines, [f"{x} line {n}" for n in range(1, len(lines) + 1)])
        if isinstance(x, str):
            x = [x]
        if not isinstance(x, (list, tuple)) or not all(isinstance(t, str) for t in x):
            got = (f"a list holding {type(next(t for t in x if not isinstance(t, str))).__name__}"
                   if isinstance(x, (list, tuple)) else type(x).__name__)
            raise ValueError("predict: a language model takes text: a string, a list of "
                             "strings, a path to a text file or token ids (an int64 tensor "
                             f"(n, {self.input_shape[0]})); got {got}")
        return contexts(self.task, list(x))

    def _text_examples(self, data: Any) -> tuple[Tensor, Tensor]:
        """Every example of a text file, cut as the run cuts its data (mode, block_size,
        target) with its vocabulary. Shape: -> x (N, T), y (N,) or (N, T)."""
        from minidl_cli.data.text import read_text, text_examples

        path, task = Path(data), self.task
        return text_examples(read_text(path), task.vocabulary, task.mode, task.block_size,
                             task.target, f"evaluate: {path}")


def _old_permutation(data: dict[str, Any]) -> list[int] | None:
    """The permutation of a shuffle_sequence MNIST-1D run whose checkpoint predates its
    recording (it is the data set's one fixed permutation); None for other data."""
    if data.get("type") == "mnist1d" and data.get("shuffle_sequence"):
        from minidl_cli.data.mnist1d import SHUFFLE

        return list(SHUFFLE)
    return None


def _source(x: Any) -> Any:
    """A path or a pyarrow Table (a pandas DataFrame is converted) for the table reader."""
    if isinstance(x, (str, os.PathLike)):
        return Path(x)
    if type(x).__module__.startswith("pandas"):
        import pyarrow as pa

        return pa.Table.from_pandas(x, preserve_index=False)
    return x


def _is_table(x: Any) -> bool:
    """Whether `x` is a pyarrow Table or a pandas DataFrame."""
    module = type(x).__module__
    return module.startswith("pyarrow") or module.startswith("pandas")
