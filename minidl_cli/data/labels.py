"""Label columns into targets: class names fitted on the training rows, class indices or
regression targets for any rows, and the errors a label column can have."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from minidl_cli.data.table_io import MAX_LINES, TableFile, codes, present_codes, value_key

# A numeric label with more distinct values than this, fractional or one per two rows,
# is a quantity to regress, not a set of classes.
MAX_NUMERIC_CLASSES = 20


def fit_classes(tf: TableFile, name: str, labels: pa.ChunkedArray,
                train: np.ndarray | None = None) -> list[str]:
    """The class names of a label column's training rows (mask `train`, or all), as in the
    file, sorted (by value when every label is a number: '2' before '10').

    Raises ValueError for one class, or for a numeric label that looks like a regression target.
    """
    found, values = codes(labels)
    texts = sorted(values[i] for i in present_codes(found, len(values), train))
    numbers = _numbers(texts)
    if numbers is not None:
        by_value: dict[float, str] = {}
        for text, value in sorted(zip(texts, numbers, strict=True), key=lambda p: p[1]):
            by_value.setdefault(value, text)  # '1' and '1.0' are one class
        names = list(by_value.values())
        fractional = any(not v.is_integer() for v in by_value)
        n_rows = len(found) if train is None else int(train.sum())
        if len(names) > MAX_NUMERIC_CLASSES and (fractional or len(names) > n_rows / 2):
            raise ValueError(
                f"{tf.name}: label {name!r} has {len(names)} distinct values; for a numeric "
                "target set data.task: regression"
            )
    else:
        by_key: dict[object, str] = {}
        for text in texts:  # one class however a file spells it ('True', 'true')
            by_key.setdefault(value_key(text), text)
        names = list(by_key.values())
    if len(names) < 2:
        only = f" ({names[0]!r})" if names else ""
        raise ValueError(
            f"{tf.name}: label {name!r} has one class{only} in the training rows; a classifier "
            "needs at least two: check data.label and the file's label column"
        )
    return names


def label_targets(tf: TableFile, table: pa.Table, origin: np.ndarray | None,
                  prep: dict[str, Any], part: np.ndarray | None = None,
                  fraction: float | None = None) -> np.ndarray:
    """The rows' targets: class indices into prep["class_names"], or regression values. A
    label matches its class however it is spelled (value_key: '1.0' is class '1', 'true'
    is 'True').

    Shape: -> (n,) int64, or (n, k) float64 for k regression targets.
    Raises ValueError naming the label values (and rows) the training rows never had; when
    `part` (one file's seeded test_fraction split: 1 for a test row) put all of them into
    the test part, it says that the split, not the file, is the cause.
    """
    if prep["task"] == "regression":
        y = np.empty((table.num_rows, len(prep["label"])))
        for j, name in enumerate(prep["label"]):
            y[:, j] = table.column(name).to_numpy()
        return y
    name, classes = prep["label"][0], prep["class_names"]
    found, values = codes(table.column(name))
    position = {value_key(c): i for i, c in enumerate(classes)}
    lut = [position.get(value_key(v), -1) for v in values]
    y = np.array(lut + [-1], dtype=np.int64)[found]  # missing labels were refused before
    if (y < 0).any():
        fix = "remove those rows, or add examples of them to the training data"
        if part is not None:
            from minidl_cli.data.table import split_advice

            rows = y < 0
            values = pc.unique(table.column(name).filter(pa.array(rows))).to_pylist()
            fix = split_advice(f"label {name!r}", values, fraction, rows)
        _raise_unseen(tf, name, classes, table.column(name), np.flatnonzero(y < 0), origin, fix)
    return y


def _raise_unseen(tf: TableFile, name: str, classes: list[str], labels: pa.ChunkedArray,
                  rows: np.ndarray, origin: np.ndarray | None, fix: str) -> None:
    values = pc.unique(labels.take(pa.array(rows))).to_pylist()
    shown = rows[:MAX_LINES] if origin is None else origin[rows[:MAX_LINES]]
    where = ", ".join(r.removeprefix("row ") for r in tf.rows([int(r) for r in shown]))
    more = f" and {len(rows) - len(shown)} more" if len(rows) > len(shown) else ""
    raise ValueError(
        f"{tf.name}: label {name!r} has value(s) {', '.join(repr(v) for v in values[:MAX_LINES])} "
        f"that the training rows never have ({'rows' if len(rows) > 1 else 'row'} {where}{more}); "
        f"the classes are {', '.join(classes)}: {fix}"
    )


def _numbers(texts: list[str]) -> list[float] | None:
    """Each text as a finite float, or None when any is not a number."""
    try:
        values = [float(t) for t in texts]
    except ValueError:
        return None
    return values if all(np.isfinite(values)) else None
