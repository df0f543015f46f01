"""The Dataset record, a seeded validation split and z-score standardisation."""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

TASKS = ("classification", "regression", "language_model")


@dataclass
class Dataset:
    """A data set's train and test parts, float64 features, and what they mean.

    Shape: x_train (n_train, *input_shape): (n, d) for tables and points, (n, C, H, W) for
    images, (n, T) int64 token ids for a language model; y_train (n_train,) int64 class
    indices in 0..C-1 for classification, (n_train, k) float64 targets for regression, and
    for a language model the int64 id of the next token (n_train,) or of the next token at
    every position (n_train, T); likewise x_test, y_test.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int  # 0 for regression
    feature_names: list[str]  # one per column of a 2-D x (tables, points); [] for images
    class_names: list[str] | None = None  # the original label of each class, when known
    task: str = "classification"  # "classification" | "regression"
    target_names: list[str] | None = None  # regression: one name per target column
    # every file the data set was read from: absolute path -> SHA-256 hex digest of its bytes
    data_files: dict[str, str] = field(default_factory=dict)
    # how raw table rows become x (column order, categories, fill values), as plain data
    # (str, numbers, lists, dicts) so a checkpoint holds it; None for synthetic and image sets
    preprocessing: dict[str, Any] | None = None
    # language_model: the token of each id (num_classes of them; lines of text: a character
    # each, the boundary token first), and how the text was cut, as plain data: "mode"
    # (lines, stream), "boundary" (the boundary token, lines mode), "start" (stream mode: the
    # first block_size characters of the training text, a default context for sampling)
    vocabulary: list[str] | None = None
    text: dict[str, Any] | None = None
    # the features are the points of one signal in order (MNIST-1D): drawn as curves
    signal: bool = False

    def __post_init__(self) -> None:
        assert self.task in TASKS, f"task must be one of {TASKS}"
        assert self.x_train.shape[1:] == self.x_test.shape[1:], "train and test inputs differ"
        if self.x_train.ndim == 2 and self.feature_names:
            assert self.x_train.shape[1] == len(self.feature_names), "one name per feature"
        assert len(self.y_train) == len(self.x_train), "one train target per row"
        assert len(self.y_test) == len(self.x_test), "one test target per row"
        if self.task == "classification":
            assert self.y_train.ndim == 1 and self.y_train.dtype == torch.int64
        elif self.task == "language_model":
            assert self.x_train.ndim == 2 and self.x_train.dtype == torch.int64, "token ids"
            assert self.y_train.dtype == torch.int64 and self.y_train.ndim in (1, 2)
            assert self.vocabulary and len(self.vocabulary) == self.num_classes
        else:
            assert self.y_train.ndim == 2 and self.y_train.is_floating_point()

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input without the batch dimension: (d,) or (C, H, W)."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_features(self) -> int:
        """d for (n, d) inputs; the flattened size C·H·W for images."""
        return math.prod(self.input_shape)

    @property
    def num_outputs(self) -> int:
        """The width the network must output: one per class, or one per regression target."""
        if self.task == "regression":
            return self.y_train.shape[1]
        return self.num_classes

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The shape the network must output for one input: (num_outputs,), or (T, V) for
        a language model predicting every position of its context."""
        if self.task == "language_model" and self.y_train.ndim == 2:
            return (self.y_train.shape[1], self.num_classes)
        return (self.num_outputs,)


def random_split(n: int, n_held: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """minidl's one seeded split of n rows: (kept, held out) row indices, each in the rows'
    original order; the held-out rows are the first n_held of torch.randperm(n, generator).

    Shape: -> (n - n_held,), (n_held,) int64.
    """
    perm = torch.randperm(n, generator=generator)
    return perm[n_held:].sort().values, perm[:n_held].sort().values


def split_validation(
    ds: Dataset, fraction: float, generator: torch.Generator
) -> tuple[Dataset, Tensor | None, Tensor | None]:
    """Hold out a random `fraction` of the training set: (smaller dataset, x_val, y_val).

    fraction 0 returns the data set unchanged and (None, None) for the validation part.
    Shape: x_val (n_val, *input_shape), y_val (n_val, ...);
    n_val = round(fraction * n_train), at least 1.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return ds, None, None
    n = len(ds.x_train)
    n_val = max(1, round(fraction * n))
    if n_val >= n:
        raise ValueError(
            f"validation fraction {fraction} of {n} training points leaves none to train on; "
            "lower train.val_fraction or use more training data"
        )
    train, val = random_split(n, n_val, generator)
    smaller = replace(ds, x_train=ds.x_train[train], y_train=ds.y_train[train])
    return smaller, ds.x_train[val], ds.y_train[val]


def fit_standardizer(x_train: Tensor) -> tuple[Tensor, Tensor]:
    """Per-feature (tables) or per-channel (images) mean and population std; constant
    features or channels get std 1.

    Each column is divided by its largest magnitude before the squares are summed, and the
    statistics scaled back: the std of values near 1e200 is then finite (squaring them
    first overflows float64, and a std of inf would zero the column), as in LAPACK's dnrm2.
    Shape: x_train (n, d) -> mean (d,), std (d,); x_train (n, C, H, W) -> (C, 1, 1) each,
    so that both broadcast against one input.
    """
    dims = (0,) if x_train.ndim == 2 else (0, *range(2, x_train.ndim))
    scale = x_train.abs().amax(dims, keepdim=True)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    scaled = x_train / scale  # in [-1, 1]: its square cannot overflow
    mean = (scaled.mean(dims, keepdim=True) * scale)[0]
    std = (scaled.std(dims, correction=0, keepdim=True) * scale)[0]
    constant = x_train.amax(dims, keepdim=True)[0] == x_train.amin(dims, keepdim=True)[0]
    return mean, torch.where(constant, torch.ones_like(std), std)  # std may be a rounding error


def check_network_data(split: str, x: Tensor, targets: Tensor, dataset: Dataset,
                       config: dict[str, Any]) -> None:
    """ValueError when what the network receives is damaged in the dtype it receives it:
    a feature (after standardisation) beyond the range of train.dtype (float32 holds up to
    3.4e38), or so large (|x| > sqrt(finfo.max) / number of input values) that the first
    layer's products, squares and gradients overflow it, or a regression target whose
    squared error overflows it, so the loss is inf or nan and no learning rate can help.
    The message names the column and its largest value, and the option that fixes it.

    Shape: x (n, *input_shape) and targets (n, k) as the network gets them (train.dtype);
    `dataset` holds the raw float64 values; `config` the resolved run config.
    """
    if not x.is_floating_point():  # token ids: integers, as the data set made them
        return
    standardized = bool((config.get("data") or {}).get("standardize"))
    _check_finite_inputs(split, x, dataset, standardized)
    _check_bounded_inputs(split, x, dataset, standardized)
    loss = config.get("loss") or ""
    loss = loss.get("type", "") if isinstance(loss, dict) else loss
    if str(loss).lower() in ("mse", "mseloss"):
        _check_squared_targets(split, targets, dataset, x.dtype)


def _check_finite_inputs(split: str, x: Tensor, dataset: Dataset, standardized: bool) -> None:
    """ValueError naming the first input column that holds a value beyond x's dtype."""
    if bool(torch.isfinite(x).all()):
        return
    column = int((~torch.isfinite(x.reshape(len(x), -1)).all(0)).nonzero()[0])
    what, peak = _column(split, x, dataset, column)
    if what == "the inputs":  # images, sequences: the largest raw value of any
        raw = getattr(dataset, f"x_{split}" if split != "val" else "x_train")
        peak = raw.abs().max().item() if len(raw) else math.inf
    fix = ("rescale the column (change its unit), or set train.dtype: float64" if standardized
           else "set data.standardize: true (z-scores with the training statistics), or "
           "train.dtype: float64")
    name, largest = str(x.dtype).removeprefix("torch."), torch.finfo(x.dtype).max
    raise ValueError(f"data: {what} of the {split} rows reaches {peak:.3g}, beyond what "
                     f"{name} (train.dtype) holds ({largest:.3g}), so the network would "
                     f"get inf; {fix}")


def _check_bounded_inputs(split: str, x: Tensor, dataset: Dataset, standardized: bool) -> None:
    """ValueError naming the first input column with a value so large (|x| > sqrt(finfo.max)
    / number of input values) that the first layer's products and squares overflow."""
    flat = x.reshape(len(x), -1)
    largest = torch.finfo(x.dtype).max
    bound = math.sqrt(largest) / max(flat.shape[1], 1)
    over = (flat.abs().amax(0) > bound) if len(flat) else torch.zeros(flat.shape[1], dtype=bool)
    if not bool(over.any()):
        return
    what, peak = _column(split, x, dataset, int(over.nonzero()[0]))
    fix = ("rescale the column (change its unit), or set train.dtype: float64" if standardized
           else "set data.standardize: true (z-scores with the training statistics)")
    name = str(x.dtype).removeprefix("torch.")
    raise ValueError(f"data: {what} of the {split} rows reaches {peak:.3g}: the first "
                     f"layer's products and squares of values this large overflow {name} "
                     f"(train.dtype; up to {largest:.3g}), so training would reach nan "
                     f"whatever the learning rate; {fix}")


def _check_squared_targets(split: str, targets: Tensor, dataset: Dataset,
                           dtype: torch.dtype) -> None:
    """ValueError naming the first regression target whose squared error overflows `dtype`
    (|y| > sqrt(finfo.max)), so an mse loss is inf before the first step."""
    if not targets.is_floating_point() or dataset.task != "regression":
        return
    largest = torch.finfo(dtype).max
    peak = targets.abs().amax(0) if len(targets) else torch.zeros(targets.shape[1:])
    over = (peak.double() > math.sqrt(largest)) | ~torch.isfinite(peak)
    if not bool(over.any()):
        return
    column = int(over.nonzero()[0])
    names = dataset.target_names or [f"y{i + 1}" for i in range(len(peak))]
    raw = getattr(dataset, f"y_{split}" if split != "val" else "y_train")
    value = raw[:, column].abs().max().item() if len(raw) else math.inf
    fix = ("set data.standardize_target: true (the network learns z-scored targets; "
           "metrics stay on the target's scale)"
           + (", or train.dtype: float64" if dtype != torch.float64 and value < 1e150 else ""))
    raise ValueError(
        f"data: target {names[column]!r} of the {split} rows reaches {value:.3g}: its "
        f"squared error overflows {str(dtype).removeprefix('torch.')} (train.dtype; up to "
        f"{largest:.3g}), so the mse loss is inf before the first step and no learning rate "
        f"can help; {fix}")


def _column(split: str, x: Tensor, dataset: Dataset, column: int) -> tuple[str, float]:
    """What a message calls input value `column` (a feature's name, or 'the inputs') and
    its largest magnitude in the split's raw (float64) data."""
    raw = getattr(dataset, f"x_{split}" if split != "val" else "x_train")
    raw = raw.reshape(len(raw), -1)
    peak = raw[:, column].abs().max().item() if len(raw) else math.inf
    if x.ndim == 2 and dataset.feature_names:
        return f"feature {dataset.feature_names[column]!r}", peak
    return "the inputs", peak


def apply_standardizer(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """z-score `x` with statistics from `fit_standardizer`.

    Shape: x (n, *input_shape), mean and std broadcastable to input_shape -> x's shape.
    """
    return (x - mean) / std


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file's bytes, read in 1 MiB blocks (for Dataset.data_files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
