"""Label columns into targets: class names fitted on the training rows, class indices or
regression targets for any rows, and the errors a label column can have."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from minidl_cli.data.table_io import MAX_LINES, NUMBER, TableFile

# A numeric label with more distinct values than this, fractional or one per two rows,
# is a quantity to regress, not a set of classes.
MAX_NUMERIC_CLASSES = 20


def fit_classes(tf: TableFile, name: str, labels: pa.ChunkedArray) -> list[str]:
    """The class names of a label column's training rows, as written in the file, sorted
    (by value when every label is a number: '2' before '10').

    Raises ValueError for one class, or for a numeric label that looks like a regression target.
    """
    texts = sorted(pc.unique(labels.drop_null()).to_pylist())
    numbers = _numbers(texts)
    if numbers is not None:
        by_value: dict[float, str] = {}
        for text, value in sorted(zip(texts, numbers, strict=True), key=lambda p: p[1]):
            by_value.setdefault(value, text)  # '1' and '1.0' are one class
        names = list(by_value.values())
        fractional = any(not v.is_integer() for v in by_value)
        if len(names) > MAX_NUMERIC_CLASSES and (fractional or len(names) > len(labels) / 2):
            raise ValueError(
                f"{tf.name}: label {name!r} has {len(names)} distinct values; for a numeric "
                "target set data.task: regression"
            )
    else:
        names = texts
    if len(names) < 2:
        only = f" ({names[0]!r})" if names else ""
        raise ValueError(
            f"{tf.name}: label {name!r} has one class{only} in the training rows; a classifier "
            "needs at least two: check data.label and the file's label column"
        )
    return names


def label_targets(tf: TableFile, table: pa.Table, origin: np.ndarray | None,
                  prep: dict[str, Any]) -> np.ndarray:
    """The rows' targets: class indices into prep["class_names"], or regression values.

    Shape: -> (n,) int64, or (n, k) float64 for k regression targets.
    Raises ValueError naming the label values (and rows) the training rows never had.
    """
    if prep["task"] == "regression":
        y = np.empty((table.num_rows, len(prep["label"])))
        for j, name in enumerate(prep["label"]):
            y[:, j] = table.column(name).to_numpy()
        return y
    name, classes = prep["label"][0], prep["class_names"]
    labels = table.column(name)
    numbers = _numbers(classes)
    if numbers is None:
        index = pc.index_in(labels, value_set=pa.array(classes, pa.string()))
    else:
        numeric = pc.match_substring_regex(labels, NUMBER, ignore_case=True)
        values = pc.cast(pc.if_else(numeric, labels, None), pa.float64())
        index = pc.index_in(values, value_set=pa.array(numbers, pa.float64()))
    unseen = pc.is_null(index).to_numpy(zero_copy_only=False)
    if unseen.any():
        _raise_unseen(tf, name, classes, labels, np.flatnonzero(unseen), origin)
    return index.to_numpy().astype(np.int64)


def _raise_unseen(tf: TableFile, name: str, classes: list[str], labels: pa.ChunkedArray,
                  rows: np.ndarray, origin: np.ndarray | None) -> None:
    values = pc.unique(labels.take(pa.array(rows))).to_pylist()
    shown = rows[:MAX_LINES] if origin is None else origin[rows[:MAX_LINES]]
    where = ", ".join(r.removeprefix("row ") for r in tf.rows([int(r) for r in shown]))
    more = f" and {len(rows) - len(shown)} more" if len(rows) > len(shown) else ""
    raise ValueError(
        f"{tf.name}: label {name!r} has value(s) {', '.join(repr(v) for v in values[:MAX_LINES])} "
        f"that the training rows never have ({'rows' if len(rows) > 1 else 'row'} {where}{more}); "
        f"the classes are "
        f"{', '.join(classes)}: remove those rows, or add examples of them to the training data"
    )


def _numbers(texts: list[str]) -> list[float] | None:
    """Each text as a finite float, or None when any is not a number."""
    try:
        values = [float(t) for t in texts]
    except ValueError:
        return None
    return values if all(np.isfinite(values)) else None
