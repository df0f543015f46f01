"""A data set read from CSV files with a header row (the stdlib csv module, no pandas)."""

from __future__ import annotations

import csv as csvlib
import math
from pathlib import Path
from typing import Annotated

import torch

from minidl_cli.data.base import Dataset
from minidl_cli.registry import Range, register

Row = tuple[int, list[str]]  # (line number in the file, its fields)


@register("dataset", "csv")
def csv(
    train: Path,
    test: Path | None = None,
    test_fraction: Annotated[float | None, Range(gt=0, lt=1)] = None,
    label: str = "label",
    features: list[str] | None = None,
    *,
    generator: torch.Generator,
) -> Dataset:
    """Rows of a CSV file: numeric feature columns and a label column (ints or strings)."""
    if (test is None) == (test_fraction is None):
        raise ValueError(
            "csv dataset: give exactly one of data.test (a CSV file of test rows) "
            "or data.test_fraction (the share of the training rows to hold out)"
        )
    names, x_train, labels_train = _load(Path(train), label, features)
    if test is not None:
        _, x_test, labels_test = _load(Path(test), label, names)
    else:
        train_idx, test_idx = _split(Path(train), len(x_train), test_fraction, generator)
        x_test, labels_test = x_train[test_idx], [labels_train[i] for i in test_idx.tolist()]
        x_train, labels_train = x_train[train_idx], [labels_train[i] for i in train_idx.tolist()]
    classes, index = _label_mapping(labels_train + labels_test)
    return Dataset(
        x_train=x_train,
        y_train=torch.tensor([index[v] for v in labels_train], dtype=torch.int64),
        x_test=x_test,
        y_test=torch.tensor([index[v] for v in labels_test], dtype=torch.int64),
        num_classes=len(classes),
        feature_names=names,
        class_names=classes,
    )


def _load(
    path: Path, label: str, features: list[str] | None
) -> tuple[list[str], torch.Tensor, list[str]]:
    """Feature names, feature matrix and raw label strings of one CSV file.

    Shape: -> (n_rows, n_features) float64.
    """
    header, rows = _read(path)
    feature_indices, label_index = _columns(path, header, label, features)
    values, labels = [], []
    for line, row in rows:
        if len(row) != len(header):
            raise ValueError(
                f"csv dataset: {path}, row {line}: {len(row)} fields, but the header has "
                f"{len(header)} columns"
            )
        values.append([_number(path, line, header[i], row[i]) for i in feature_indices])
        labels.append(row[label_index].strip())
        if not labels[-1]:
            raise ValueError(f"csv dataset: {path}, row {line}: the label {label!r} is empty")
    names = [header[i] for i in feature_indices]
    return names, torch.tensor(values, dtype=torch.float64), labels


def _read(path: Path) -> tuple[list[str], list[Row]]:
    """The header and the non-blank rows of a CSV file."""
    if not path.is_file():
        raise FileNotFoundError(
            f"csv dataset: file {path} not found (paths are relative to the config file)"
        )
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csvlib.reader(f)
        header = [name.strip() for name in next(reader, [])]
        rows = [(reader.line_num, row) for row in reader if any(v.strip() for v in row)]
    if not header:
        raise ValueError(f"csv dataset: {path} is empty; it needs a header row of column names")
    if not rows:
        raise ValueError(f"csv dataset: {path} has a header but no data rows")
    return header, rows


def _columns(
    path: Path, header: list[str], label: str, features: list[str] | None
) -> tuple[list[int], int]:
    """Indices of the feature columns and of the label column in `header`."""

    def index(name: str, option: str) -> int:
        if name not in header:
            raise ValueError(
                f"csv dataset: {path} has no column {name!r} (from data.{option}); "
                f"available columns: {', '.join(header)}"
            )
        return header.index(name)

    label_index = index(label, "label")
    if features is None:
        feature_indices = [i for i, name in enumerate(header) if i != label_index]
    else:
        if label in features:
            raise ValueError(f"csv dataset: the label column {label!r} cannot also be a feature")
        feature_indices = [index(name, "features") for name in features]
    if not feature_indices:
        raise ValueError(f"csv dataset: {path} has no feature columns besides {label!r}")
    return feature_indices, label_index


def _split(
    path: Path, n: int, fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random (train, test) row indices, each in file order."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise ValueError(f"csv dataset: test_fraction must be a number, got {fraction!r}")
    n_test = round(fraction * n)
    if not 0 < fraction < 1 or not 1 <= n_test < n:
        raise ValueError(
            f"csv dataset: test_fraction {fraction} of the {n} rows of {path} must leave "
            "at least one row for each of train and test; choose a value in (0, 1)"
        )
    perm = torch.randperm(n, generator=generator)
    return perm[n_test:].sort().values, perm[:n_test].sort().values


def _number(path: Path, line: int, column: str, text: str) -> float:
    """`text` as a finite float, or a ValueError naming the file, row and column."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        what = "is empty" if not text.strip() else f"{text.strip()!r} is not a finite number"
        raise ValueError(
            f"csv dataset: {path}, row {line}, column {column!r}: the value {what}; "
            "fix the value, or leave the column out of data.features"
        )
    return value


def _label_mapping(labels: list[str]) -> tuple[list[str], dict[str, int]]:
    """Class names (distinct labels, sorted numerically when all are numbers) and label -> index."""
    distinct = sorted(set(labels))
    numbers = [_finite_or_none(v) for v in distinct]
    if None in numbers:  # some label is not a number: classes are the sorted strings
        return distinct, {v: i for i, v in enumerate(distinct)}
    values = sorted(set(numbers))  # '1' and '1.0' are one class
    names = [str(int(x)) if x.is_integer() else repr(x) for x in values]
    position = {x: i for i, x in enumerate(values)}
    return names, {v: position[x] for v, x in zip(distinct, numbers, strict=True)}


def _finite_or_none(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
