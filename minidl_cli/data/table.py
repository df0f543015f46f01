"""Tables into tensors: the preprocessing fitted on a table's training rows, and the one
function that applies it to any file with the same columns (training, `predict`,
`evaluate --data`).

The preprocessing is plain data, so a checkpoint holds it (Dataset.preprocessing):

    {"version": 1,
     "columns": ["length", "width", "color"],       # the file's feature columns, in order
     "categories": {"color": ["blue", "red"]},     # sorted, from the training rows
     "feature_names": ["length", "width", "color=blue", "color=red"],   # the columns of x
     "missing": "mean",                            # "error" | "drop" | "mean"
     "fill_values": [5.1, 2.3, 0.4, 0.6],          # "mean": training mean of each column of x
     "label": ["species"], "task": "classification",
     "class_names": ["setosa", "versicolor"],      # None for regression
     "delimiter": ","}

Categorical columns are one-hot encoded (scikit-learn's OneHotEncoder with sorted
categories); a missing categorical cell under "mean" becomes the training frequencies of
its categories. Standardisation is not here: the trainer fits it (fit_standardizer).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor

from minidl_cli.data import table_io
from minidl_cli.data.base import Dataset, random_split
from minidl_cli.data.files import hash_in_background
from minidl_cli.data.labels import fit_classes, label_targets
from minidl_cli.data.table_io import BadCells, TableFile, codes, present_codes

Source = str | Path | pa.Table  # a CSV or Parquet file, or a table already in memory
BLOCK_ROWS = 16384  # rows encoded at a time: 10 features of them (1.3 MB) stay in cache
UNNAMED = re.compile(r"^(|Unnamed: \d+)$")  # a saved row index: "" or pandas' "Unnamed: 0"


def load_table_dataset(
    train: str | Path,
    test: str | Path | None,
    test_fraction: float | None,
    *,
    task: str,
    label: str | list[str],
    features: list[str] | None,
    exclude: list[str] | None,
    categorical: list[str] | None,
    missing: str,
    delimiter: str,
    generator: torch.Generator,
) -> Dataset:
    """A Dataset from a training table and a test table or a seeded share of the training rows.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, column and
    rows and the fix, for anything the data cannot be trained on.
    """
    labels = _labels_option(label, task)
    if (test is None) == (test_fraction is None):
        raise ValueError(
            "give exactly one of data.test (a file of test rows) or data.test_fraction "
            "(the share of the training rows to hold out)"
        )
    tf = table_io.open_table(train, delimiter)
    columns = _choose_columns(tf, labels, features, exclude, categorical or [])
    prep = {"version": 1, "columns": columns, "categories": dict.fromkeys(categorical or []),
            "missing": missing, "label": labels, "task": task, "delimiter": delimiter}
    hashes = hash_in_background([Path(train)] + ([Path(test)] if test is not None else []))
    table, origin = _read(tf, prep, with_labels=True)
    split = None if test is not None else _split(tf, table.num_rows, test_fraction, generator)
    _fit(tf, prep, table, None if split is None else split == 0)
    y = label_targets(tf, table, origin, prep)
    parts = _encode(tf, table, origin, prep, split)
    del table  # the Arrow columns: x holds the numbers now
    _fit_fill_values(prep, parts[0])
    for x in parts:
        _fill(x, prep)
    if split is None:
        x_train, y_train = parts[0], y
        x_test, y_test = encode_labelled(test, prep, training=True)
    else:
        (x_train, x_test), y_train, y_test = parts, y[split == 0], y[split == 1]
    return Dataset(
        x_train=torch.from_numpy(x_train), y_train=torch.from_numpy(y_train),
        x_test=torch.as_tensor(x_test), y_test=torch.as_tensor(y_test),
        num_classes=len(prep["class_names"] or []), feature_names=list(prep["feature_names"]),
        class_names=prep["class_names"], task=task,
        target_names=list(labels) if task == "regression" else None,
        data_files=hashes.result(), preprocessing=prep,
    )


def encode_table(source: Source, preprocessing: dict[str, Any]) -> Tensor:
    """The model inputs x of any table with the run's feature columns (by name; other columns
    ignored), exactly as training encoded them, one row per input row in order.

    Shape: -> (n_rows, len(preprocessing["feature_names"])) float64.
    Raises ValueError naming a missing column, an unseen category, a bad cell, or a missing
    cell the run cannot fill (only missing: mean fills); FileNotFoundError for no file.
    """
    tf = _open_for_run(source, preprocessing)
    table, origin = _read(tf, preprocessing, with_labels=False, drop=False, applying=True)
    (x,) = _encode(tf, table, origin, preprocessing)
    _fill(x, preprocessing)
    return torch.from_numpy(x)


def encode_labelled(source: Source, preprocessing: dict[str, Any],
                    training: bool = False) -> tuple[Tensor, Tensor]:
    """x and the targets of a labelled table (a test file, `evaluate --data`); rows with a
    missing cell are left out when the run was trained with missing: drop. `training`: the
    file is the config's test file (errors advise config options, not fixes to the file).

    Shape: -> x (n, d) float64; y (n,) int64 class indices or (n, k) float64 targets.
    Raises ValueError as encode_table, and for a label value the training rows never had.
    """
    if training:  # the config's test file: config advice fits
        tf = table_io.open_table(source, preprocessing["delimiter"])
    else:
        tf = _open_for_run(source, preprocessing)
    table, origin = _read(tf, preprocessing, with_labels=True, applying=not training)
    y = label_targets(tf, table, origin, preprocessing)
    (x,) = _encode(tf, table, origin, preprocessing)
    _fill(x, preprocessing)
    return torch.from_numpy(x), torch.from_numpy(y)


def read_labels(source: Source, preprocessing: dict[str, Any]) -> Tensor:
    """The targets of a labelled table, the rows encode_labelled keeps.

    Shape: -> (n,) int64 class indices or (n, k) float64 targets.
    """
    return encode_labelled(source, preprocessing)[1]


# ---------------------------------------------------------------- columns and rows


def _labels_option(label: str | list[str], task: str) -> list[str]:
    labels = [label] if isinstance(label, str) else list(label)
    if not labels:
        raise ValueError("name the label column in data.label (for regression: one or more)")
    if len(set(labels)) != len(labels):
        raise ValueError(f"data.label lists a column twice: {labels}")
    if task == "classification" and len(labels) > 1:
        raise ValueError(
            f"classification takes one label column, but data.label lists {len(labels)}; "
            "several target columns need data.task: regression"
        )
    return labels


def _choose_columns(
    tf: TableFile, labels: list[str], features: list[str] | None, exclude: list[str] | None,
    categorical: list[str],
) -> list[str]:
    """The feature columns, in file order unless data.features gives an order."""

    def need(name: str, option: str) -> None:
        if name not in tf.columns:
            raise ValueError(
                f"{tf.name} has no column {name!r} (from data.{option}); "
                f"available columns: {', '.join(tf.columns)}"
            )

    for name in labels:
        need(name, "label")
    if features is not None and exclude is not None:
        raise ValueError("give data.features (the columns to use) or data.exclude (the columns "
                         "to leave out), not both")
    if features is not None:
        for name in features:
            need(name, "features")
            if name in labels:
                raise ValueError(f"the label column {name!r} cannot also be in data.features")
        columns = list(dict.fromkeys(features))
    else:
        for name in exclude or []:
            need(name, "exclude")
            if name in labels:
                raise ValueError(f"data.exclude lists the label column {name!r}: the label is "
                                 "never a feature already; remove it from data.exclude")
        left_out = set(labels) | set(exclude or [])
        columns = [c for c in tf.columns if c not in left_out]
        _refuse_unnamed(tf, columns)
    for name in categorical:
        if name not in columns:
            raise ValueError(f"{name!r} in data.categorical is not one of the feature columns "
                             f"({', '.join(columns)})")
    if not columns:
        raise ValueError(f"{tf.name} has no feature columns besides the label "
                         f"{', '.join(labels)}")
    return columns


def _refuse_unnamed(tf: TableFile, columns: list[str]) -> None:
    """A column without a name is a saved row index: never a silent feature."""
    for name in columns:
        if UNNAMED.match(name):
            position = tf.columns.index(name) + 1
            shown = '""' if name == "" else f'"{name}"'
            raise ValueError(
                f"{tf.name}: column {position} has no name ({shown}): a saved row index, as "
                f"pandas' to_csv writes by default, would leak the row order into training; "
                f"leave it out with data.exclude: [{shown}], or list the columns to use in "
                "data.features"
            )


def _delimiter_hint(tf: TableFile, prep: dict[str, Any]) -> str:
    """Why a file's columns are not found when it was written with another delimiter:
    its whole header then reads as one column."""
    delimiter = prep.get("delimiter") or ","
    header = tf.columns[0] if len(tf.columns) == 1 else ""
    if any(c in header for c in ",;\t|" if c != delimiter):
        return (f"; its header reads as the one column {header!r}: this run reads CSV files "
                f"with delimiter {delimiter!r} (its data.delimiter), so write the file with it")
    return ""


def _open_for_run(source: Source, prep: dict[str, Any]) -> TableFile:
    """A table to apply a trained run to (predict, evaluate --data): no config involved."""
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        raise ValueError(f"{source} is a folder; give a CSV or Parquet file")
    try:
        return table_io.open_table(source, prep["delimiter"])
    except FileNotFoundError:
        raise FileNotFoundError(f"file not found: {source}; check the path") from None


def _read(tf: TableFile, prep: dict[str, Any], *, with_labels: bool,
          drop: bool = True, applying: bool = False) -> tuple[pa.Table, np.ndarray | None]:
    """The typed columns the preprocessing uses, rows with missing cells handled by its
    policy; and `origin`, each kept row's index as read (None when every row is kept).
    `applying`: a trained run reads a new file, so errors advise fixing the file."""
    wanted = prep["columns"] + (prep["label"] if with_labels else [])
    for name in wanted:
        if name not in tf.columns:
            role = "label" if name in prep["label"] else "feature"
            raise ValueError(
                f"{tf.name} has no {role} column {name!r}; the run was trained on "
                f"{', '.join(prep['columns'])} (labels: {', '.join(prep['label'])})"
                + _delimiter_hint(tf, prep)
            )
    numeric = prep["task"] == "regression"
    types = {name: "string" if name in prep["categories"] else "float" for name in prep["columns"]}
    if with_labels:
        types |= dict.fromkeys(prep["label"], "float" if numeric else "string")
    labels = prep["label"] if with_labels and numeric else []
    numbers = [c for c in prep["columns"] if c not in prep["categories"]] if applying else None
    table = table_io.read_columns(tf, types, labels, trained_numbers=numbers)
    if with_labels and table.num_rows == 0:
        raise ValueError(f"{tf.name} has a header but no data rows")
    return _handle_missing(tf, table, prep, drop=drop, applying=applying)


def _handle_missing(tf: TableFile, table: pa.Table, prep: dict[str, Any],
                    drop: bool, applying: bool = False) -> tuple[pa.Table, np.ndarray | None]:
    empty = [name for name in table.column_names if table.column(name).null_count]
    if not empty:
        return table, None
    policy = prep["missing"]
    if policy == "drop" and drop:
        keep = ~np.logical_or.reduce([_null_mask(table.column(c)) for c in empty])
        if not keep.any():
            raise ValueError(f"{tf.name}: every row has a missing cell, so missing: drop "
                             "leaves no rows; fill them or use data.missing: mean")
        return table.filter(pa.array(keep)), np.flatnonzero(keep)
    must = [c for c in empty if policy != "mean" or c in prep["label"]]
    if not must:
        return table, None  # "mean" fills features after encoding
    fix = {"error": "fill them, or set data.missing: drop (leave those rows out) or mean (the "
                    "training column's mean; features only)",
           "drop": "fill them: predictions keep one output row per input row, so rows cannot "
                   "be dropped",
           "mean": "fill them, or set data.missing: drop; a label has no mean to fill in"}
    if applying:
        fix |= {"error": "fill them: the run was trained with missing: error, so it fills no "
                         "cells",
                "mean": "fill them: the run fills missing features with their training mean, "
                        "but a label has no mean"}
    bad = BadCells(tf, "cells are missing", fix[policy])
    for name in must:
        missing = _null_mask(table.column(name))
        spelling = tf.spellings.get(name)
        if spelling is None:
            bad.cells(name, missing, None, "empty")
            continue
        spelled = missing & pc.is_valid(spelling).to_numpy(zero_copy_only=False)
        bad.cells(name, missing & ~spelled, None, "empty")
        bad.cells(name, spelled, spelling, "(missing)")
    bad.raise_any()
    raise AssertionError("unreachable")


def _null_mask(column: pa.ChunkedArray) -> np.ndarray:
    return pc.is_null(column).to_numpy(zero_copy_only=False)


def _split(tf: TableFile, n: int, fraction: float, generator: torch.Generator) -> np.ndarray:
    """A seeded random share `fraction` of the rows for testing: 0 (train) or 1 (test) per row.

    Shape: -> (n,) int8.
    """
    n_test = round(fraction * n)
    if not 0 < fraction < 1 or not 1 <= n_test < n:
        raise ValueError(
            f"data.test_fraction {fraction} of the {n} rows of {tf.name} must leave at least "
            "one row for each of train and test; choose a value in (0, 1)"
        )
    part = np.zeros(n, dtype=np.int8)
    part[random_split(n, n_test, generator)[1].numpy()] = 1
    return part


# ---------------------------------------------------------------- fit and encode


def _fit(tf: TableFile, prep: dict[str, Any], table: pa.Table, train: np.ndarray | None) -> None:
    """Categories and class names from the training rows (mask `train`; None: all rows)."""
    names: list[str] = []
    for name in prep["columns"]:
        if name not in prep["categories"]:
            names.append(name)
            continue
        found, values = codes(table.column(name))
        categories = sorted(values[i] for i in present_codes(found, len(values), train))
        if not categories:
            raise ValueError(f"categorical column {name!r} has no values in the training rows; "
                             "leave it out with data.exclude")
        prep["categories"][name] = categories
        names += [f"{name}={value}" for value in categories]
    prep["feature_names"] = names
    prep["class_names"] = None
    if prep["task"] == "classification":
        prep["class_names"] = fit_classes(tf, prep["label"][0], table.column(prep["label"][0]),
                                          train)


def _encode(tf: TableFile, table: pa.Table, origin: np.ndarray | None, prep: dict[str, Any],
            part: np.ndarray | None = None) -> list[np.ndarray]:
    """x, with NaN where a cell is missing, split into parts by `part` (row i goes to part
    part[i], rows in order; None: one part). An unknown category is an error.

    One pass in blocks of rows, so that the columns' strided writes land in a few cached
    pages of each part rather than sweeping the whole array once per column.
    Shape: -> [(rows of part p, len(feature_names)) float64 for each part], C-contiguous.
    """
    n, d = table.num_rows, len(prep["feature_names"])
    counts = [n] if part is None else np.bincount(part, minlength=2).tolist()
    parts = [np.empty((count, d)) for count in counts]
    filled = [0] * len(parts)
    one_hot = _category_indices(tf, table, origin, prep)
    start = 0
    for batch in table.to_batches(max_chunksize=BLOCK_ROWS):
        m = batch.num_rows
        if part is None:
            where = [(parts[0][start:start + m], slice(None))]
        else:
            which = part[start:start + m]
            where = []
            for p, x in enumerate(parts):
                rows = np.flatnonzero(which == p)
                where.append((x[filled[p]:filled[p] + len(rows)], rows))
                filled[p] += len(rows)
        j = 0
        for name in prep["columns"]:
            if name not in one_hot:
                values = batch.column(name).to_numpy(zero_copy_only=False)
                for x, rows in where:
                    x[:, j] = values[rows]
                j += 1
                continue
            category, k = one_hot[name][start:start + m], len(prep["categories"][name])
            block = (category[:, None] == np.arange(k)).astype(np.float64)
            block[category < 0] = np.nan  # missing: filled by missing: mean
            for x, rows in where:
                x[:, j:j + k] = block[rows]
            j += k
        start += m
    return parts


def _category_indices(tf: TableFile, table: pa.Table, origin: np.ndarray | None,
                      prep: dict[str, Any]) -> dict[str, np.ndarray]:
    """Each categorical column's rows as indices into its categories (-1: missing).

    Raises ValueError listing the cells whose category the training rows never had.
    """
    unseen = BadCells(tf, "cells hold categories the training rows never have",
                      "remove those rows, or train on data that has them")
    indices = {}
    for name, categories in prep["categories"].items():
        column = table.column(name)
        found, values = codes(column)
        position = {c: i for i, c in enumerate(categories)}
        lut = np.array([position.get(v, -2) for v in values] + [-1])  # code -1 is missing
        indices[name] = lut[found]
        if (indices[name] == -2).any():
            unseen.cells(name, indices[name] == -2, column, f"is not one of {categories}", origin)
    unseen.raise_any()
    return indices


def _fit_fill_values(prep: dict[str, Any], x_train: np.ndarray) -> None:
    """missing: mean keeps each column of x's mean over the training rows."""
    if prep["missing"] != "mean":
        prep["fill_values"] = None
        return
    counts = (~np.isnan(x_train)).sum(0)
    for name, count in zip(prep["feature_names"], counts, strict=True):
        if count == 0:
            raise ValueError(f"feature column {name!r} has no values in the training rows, so "
                             "missing: mean has nothing to fill in; leave it out with "
                             "data.exclude")
    prep["fill_values"] = np.nanmean(x_train, axis=0).tolist()


def _fill(x: np.ndarray, prep: dict[str, Any]) -> None:
    """Replace NaN (a missing cell) by its column's training mean, in place."""
    if not prep.get("fill_values"):
        return
    holes = np.isnan(x)
    if holes.any():
        x[holes] = np.asarray(prep["fill_values"])[np.nonzero(holes)[1]]
