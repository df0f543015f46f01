"""The Dataset record, a seeded validation split and z-score standardisation."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass
class Dataset:
    """A classification data set: float64 features and int64 labels in 0..C-1.

    Shape: x_train (n_train, d), y_train (n_train,), x_test (n_test, d), y_test (n_test,).
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    feature_names: list[str]
    class_names: list[str] | None = None  # the original label of each class, when known

    def __post_init__(self) -> None:
        assert self.x_train.ndim == 2 and self.x_test.ndim == 2, "features must be (n, d)"
        assert self.x_train.shape[1] == self.x_test.shape[1] == len(self.feature_names)
        assert self.y_train.shape == (len(self.x_train),), "one train label per row"
        assert self.y_test.shape == (len(self.x_test),), "one test label per row"

    @property
    def num_features(self) -> int:
        return self.x_train.shape[1]


def split_validation(
    ds: Dataset, fraction: float, generator: torch.Generator
) -> tuple[Dataset, Tensor | None, Tensor | None]:
    """Hold out a random `fraction` of the training set: (smaller dataset, x_val, y_val).

    fraction 0 returns the data set unchanged and (None, None) for the validation part.
    Shape: x_val (n_val, d), y_val (n_val,) with n_val = round(fraction * n_train), at least 1.
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
    perm = torch.randperm(n, generator=generator)
    val, train = perm[:n_val].sort().values, perm[n_val:].sort().values  # keep file order
    smaller = replace(ds, x_train=ds.x_train[train], y_train=ds.y_train[train])
    return smaller, ds.x_train[val], ds.y_train[val]


def fit_standardizer(x_train: Tensor) -> tuple[Tensor, Tensor]:
    """Per-feature mean and (population) std; constant columns get std 1.

    Shape: x_train (n, d) -> mean (d,), std (d,).
    """
    mean = x_train.mean(0)
    std = x_train.std(0, correction=0)
    constant = x_train.amax(0) == x_train.amin(0)  # std may be a rounding error, not 0
    return mean, torch.where(constant, torch.ones_like(std), std)


def apply_standardizer(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """z-score `x` with statistics from `fit_standardizer`.

    Shape: x (n, d), mean (d,), std (d,) -> (n, d).
    """
    return (x - mean) / std
