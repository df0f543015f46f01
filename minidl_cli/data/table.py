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
     "delimiter": ",",
     "missing_values": ["", "NA", "null", ...]}    # texts read as missing (absent: NULLS)

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
from minidl_cli.data.table_io import BadCells, TableFile, codes, present_codes, value_key

Source = str | Path | pa.Table  # a CSV or Parquet file, or a table already in memory
MAX_SHOWN = 5  # values named in one message
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
    missing_values: list[str] | None = None,
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
    tf = table_io.open_table(train, delimiter, missing_values)
    columns = _choose_columns(tf, labels, features, exclude, categorical or [])
    prep = {"version": 1, "columns": columns, "categories": dict.fromkeys(categorical or []),
            "missing": missing, "label": labels, "task": task, "delimiter": delimiter,
            "missing_values": tf.missing_values}
    hashes = hash_in_background([Path(train)] + ([Path(test)] if test is not None else []))
    x_train, y_train, x_test, y_test = _encoded_splits(tf, prep, test, test_fraction, generator)
    return Dataset(
        x_train=torch.from_numpy(x_train), y_train=torch.from_numpy(y_train),
        x_test=torch.as_tensor(x_test), y_test=torch.as_tensor(y_test),
        num_classes=len(prep["class_names"] or []), feature_names=list(prep["feature_names"]),
        class_names=prep["class_names"], task=task,
        target_names=list(labels) if task == "regression" else None,
        data_files=hashes.result(), preprocessing=prep,
    )


def _encoded_splits(tf: table_io.TableFile, prep: dict[str, Any], test: str | Path | None,
                    test_fraction: float | None, generator: torch.Generator) -> tuple:
    """The training table read, the preprocessing fitted on its training rows (categories,
    class names, fill values: `prep` completed), and x_train, y_train, x_test, y_test
    encoded with it: the test rows from the `test` file or a seeded `test_fraction` of the
    training table's."""
    table, origin = _read(tf, prep, with_labels=True)
    split = None if test is not None else _split(tf, table.num_rows, test_fraction, generator)
    _fit(tf, prep, table, None if split is None else split == 0)
    y = label_targets(tf, table, origin, prep, split, test_fraction)
    parts = _encode(tf, table, origin, prep, split, test_fraction)
    del table  # the Arrow columns: x holds the numbers now
    _fit_fill_values(prep, parts[0])
    for x in parts:
        _fill(x, prep)
    if split is None:
        return (parts[0], y, *encode_labelled(test, prep, training=True))
    return parts[0], y[split == 0], parts[1], y[split == 1]


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
        tf = table_io.open_table(source, preprocessing["delimiter"],
                                 preprocessing.get("missing_values"))
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
                f"available columns: {', '.join(_shown(c) for c in tf.columns)}"
                + _delimiter_hint(tf, tf.delimiter, training=True)
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
        columns = list(dict.fromkeys(c for c in tf.columns if c not in left_out))
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
    """A saved row index is never a silent feature: a column without a name (a CSV's), or
    one pandas marks as its index (a Parquet file's `__index_level_0__`)."""
    for name in columns:
        if name in tf.index_columns:
            raise ValueError(
                f"{tf.name}: column {name!r} is the row index pandas saved with the data "
                "(to_parquet keeps a non-default index unless index=False); it would leak the "
                f"row order into training: leave it out with data.exclude: [{name}], or list "
                "the columns to use in data.features"
            )
        if UNNAMED.match(name):
            position = tf.columns.index(name) + 1
            shown = '""' if name == "" else f'"{name}"'
            raise ValueError(
                f"{tf.name}: column {position} has no name ({shown}): a saved row index, as "
                f"pandas' to_csv writes by default, would leak the row order into training; "
                f"leave it out with data.exclude: [{shown}], or list the columns to use in "
                "data.features"
            )


def _shown(name: str) -> str:
    """A column name for a message: quoted when it holds a tab or another invisible
    separator, so a header read with the wrong delimiter shows as one name."""
    return repr(name) if any(c in name for c in "\t\r\n\v\f") else name


def _delimiter_hint(tf: TableFile, delimiter: str, training: bool = False) -> str:
    """Why a file's columns are not found when it was written with another delimiter:
    its whole header then reads as one column."""
    header = tf.columns[0] if len(tf.columns) == 1 else ""
    found = next((c for c in ",;\t|" if c != delimiter and c in header), None)
    if found is None:
        return ""
    yaml = '"\\t"' if found == "\t" else repr(found)
    if training:
        return (f"; its header reads as the one column {header!r}, so the file is not "
                f"separated by {delimiter!r}: set data.delimiter: {yaml} (on the command line "
                f"data.delimiter='{yaml}')")
    return (f"; its header reads as the one column {header!r}: this run reads CSV files "
            f"with delimiter {delimiter!r} (its data.delimiter), so write the file with it")


def _open_for_run(source: Source, prep: dict[str, Any]) -> TableFile:
    """A table to apply a trained run to (predict, evaluate --data): no config involved."""
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        raise ValueError(f"{source} is a folder; give a CSV or Parquet file")
    try:
        return table_io.open_table(source, prep["delimiter"], prep.get("missing_values"))
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
                + _delimiter_hint(tf, prep.get("delimiter") or ",")
            )
    numeric = prep["task"] == "regression"
    types = {name: "string" if name in prep["categories"] else "float" for name in prep["columns"]}
    if with_labels:
        types |= dict.fromkeys(prep["label"], "float" if numeric else "string")
    labels = prep["label"] if with_labels and numeric else []
    numbers = [c for c in prep["columns"] if c not in prep["categories"]] if applying else None
    table, problems = table_io.read_columns(tf, types, labels, trained_numbers=numbers)
    if table.num_rows == 0:  # nothing to train on, evaluate or predict
        raise ValueError(f"{tf.name} has a header but no data rows")
    return _handle_missing(tf, table, prep, problems, drop=drop, applying=applying)


def _handle_missing(tf: TableFile, table: pa.Table, prep: dict[str, Any], problems: BadCells,
                    drop: bool, applying: bool = False) -> tuple[pa.Table, np.ndarray | None]:
    """Rows with missing cells handled by the preprocessing's policy; the missing cells it
    cannot fill are reported together with the file's bad cells (`problems`)."""
    empty = [name for name in table.column_names if table.column(name).null_count]
    if not empty:
        problems.raise_any()
        return table, None
    policy = prep["missing"]
    if policy == "drop" and drop and not problems:
        keep = ~np.logical_or.reduce([_null_mask(table.column(c)) for c in empty])
        if not keep.any():
            raise ValueError(f"{tf.name}: every row has a missing cell, so missing: drop "
                             "leaves no rows; fill them or use data.missing: mean")
        return table.filter(pa.array(keep)), np.flatnonzero(keep)
    must = [c for c in empty if policy != "mean" or c in prep["label"]]
    if policy == "drop" and drop:
        must = []  # dropped once the bad cells are fixed
    if not must:
        problems.raise_any()
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
    for name in must:
        text = pa.types.is_dictionary(table.column(name).type)
        problems.missing_cells(name, problems.missing(name, table.column(name)), fix[policy],
                               text)
    problems.raise_any()
    return table, None  # only bad cells' nulls, already reported


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
        present = sorted(values[i] for i in present_codes(found, len(values), train))
        by_key: dict[Any, str] = {}
        for value in present:  # one category however a file spells it ('True', 'true')
            by_key.setdefault(value_key(value), value)
        categories = list(by_key.values())
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
            part: np.ndarray | None = None, fraction: float | None = None) -> list[np.ndarray]:
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
    one_hot = _category_indices(tf, table, origin, prep, part, fraction)
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
                      prep: dict[str, Any], part: np.ndarray | None = None,
                      fraction: float | None = None) -> dict[str, np.ndarray]:
    """Each categorical column's rows as indices into its categories (-1: missing); a value
    matches its category however it is spelled (value_key: '1.0' is '1', 'true' is 'True').

    Raises ValueError listing the cells whose category the training rows never had; when
    `part` (the seeded test_fraction split of one file: 1 for a test row) put every row of
    such a value into the test part, the message says so and how to fix the split.
    """
    unseen = BadCells(tf, "cells hold categories the training rows never have",
                      "remove those rows, or train on data that has them")
    indices = {}
    for name, categories in prep["categories"].items():
        column = table.column(name)
        found, values = codes(column)
        position = {value_key(c): i for i, c in enumerate(categories)}
        lut = np.array([position.get(value_key(v), -2) for v in values] + [-1])  # -1: missing
        indices[name] = lut[found]
        if (indices[name] == -2).any():
            unseen.cells(name, indices[name] == -2, column, f"is not one of {categories}", origin)
            if part is not None:
                rare = pc.unique(column.filter(pa.array(indices[name] == -2))).to_pylist()
                unseen.fix = split_advice(f"column {name!r}", rare, fraction,
                                          indices[name] == -2)
    unseen.raise_any()
    return indices


def split_advice(what: str, values: list[str], fraction: float | None,
                 rows: np.ndarray) -> str:
    """The fix when the seeded data.test_fraction split of one file put every row holding
    some values into the test part: the file is fine, the split is not.

    Shape: rows (n,) bool: the rows holding the values (all of them test rows).
    """
    shown = ", ".join(repr(v) for v in values[:MAX_SHOWN])
    share = f" {fraction:g}" if fraction is not None else ""
    count = int(rows.sum())
    rows_with = "the only row" if count == 1 else f"all {count} rows"
    return (f"the file is fine, but the seeded data.test_fraction{share} split put "
            f"{rows_with} with {what} = {shown} into the test part, so training "
            f"never sees {'them' if len(values) > 1 else 'it'}; add rows with "
            f"{'those values' if len(values) > 1 else 'that value'}, train with another seed "
            "(seed=N), give the test rows in a file of their own (data.test), or leave the "
            "rare value's rows out")


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
