"""The `csv` and `parquet` data sets: a table file's feature columns and label column(s).

Both read with pyarrow (minidl_cli.data.table_io) and share one preprocessing
(minidl_cli.data.table); pyarrow is imported only when a table is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import torch

from minidl_cli.data.base import Dataset
from minidl_cli.registry import Range, register

Task = Literal["classification", "regression"]
Missing = Literal["error", "drop", "mean"]
Fraction = Annotated[float | None, Range(gt=0, lt=1)]


@register("dataset", "csv")
def csv(
    train: Path,
    test: Path | None = None,
    test_fraction: Fraction = None,
    task: Task = "classification",
    label: str | list[str] = "label",
    features: list[str] | None = None,
    exclude: list[str] | None = None,
    categorical: list[str] | None = None,
    missing: Missing = "error",
    delimiter: str = ",",
    missing_values: list[str] | None = None,
    *,
    generator: torch.Generator,
) -> Dataset:
    """Rows of a CSV file (plain, or compressed with gzip, bz2, xz or zstd) with a header:
    feature columns and a label column (or targets). `missing_values`: the cell texts that
    are missing (default: pyarrow's list: NA, N/A, NaN, null, ...; an empty cell always is);
    `['']` keeps 'NA' or 'null' as a category or class."""
    from minidl_cli.data.table import load_table_dataset

    return load_table_dataset(
        train, test, test_fraction, task=task, label=label, features=features, exclude=exclude,
        categorical=categorical, missing=missing, delimiter=delimiter, generator=generator,
        missing_values=missing_values,
    )


@register("dataset", "parquet")
def parquet(
    train: Path,
    test: Path | None = None,
    test_fraction: Fraction = None,
    task: Task = "classification",
    label: str | list[str] = "label",
    features: list[str] | None = None,
    exclude: list[str] | None = None,
    categorical: list[str] | None = None,
    missing: Missing = "error",
    missing_values: list[str] | None = None,
    *,
    generator: torch.Generator,
) -> Dataset:
    """Rows of a Parquet file: feature columns and a label column (or targets);
    `missing_values` as for csv (text cells; a null always is missing)."""
    from minidl_cli.data.table import load_table_dataset

    return load_table_dataset(
        train, test, test_fraction, task=task, label=label, features=features, exclude=exclude,
        categorical=categorical, missing=missing, delimiter=",", generator=generator,
        missing_values=missing_values,
    )
