"""CSV and Parquet files into typed Arrow tables, with minidl's error messages.

pyarrow parses (multi-threaded C++, no Python per row); this module asks it for exactly the
columns and types minidl needs, maps its errors to messages naming the file, column and row,
and reports every bad cell rather than the first. Rows are named as a user finds them: a
CSV's line number (the header is line 1), a Parquet file's 1-based row.
"""

from __future__ import annotations

import csv as csvlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

MAX_LINES = 10  # bad cells listed one per line, then "... and N more"
PARQUET_MAGIC = b"PAR1"
NULLS = pa_csv.ConvertOptions().null_values  # "", NA, NaN, null, N/A... (pandas' list too)
NUMBER = r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|inf(inity)?|nan)$"
BLOCK_SIZE = 8 << 20  # bytes per parse block: fewer, larger chunks than the 1 MiB default
ColumnType = Literal["float", "string"]


@dataclass
class TableFile:
    """Where a table comes from and its columns, before any data is parsed."""

    name: str  # the path as given, or "<table>": what messages call it
    kind: str  # "csv" | "parquet" | "table" (an in-memory pyarrow.Table)
    columns: list[str]  # names with surrounding spaces stripped, in file order
    raw_names: list[str]  # names as written in the file
    path: Path | None = None
    delimiter: str = ","
    table: pa.Table | None = None
    # per float column read: missing cells as spelled ('NaN', 'NA'; null where empty)
    spellings: dict[str, pa.ChunkedArray] = field(default_factory=dict)

    def rows(self, indices: list[int]) -> list[str]:
        """'row N' for 0-based data rows as read: N is a CSV line number, or a 1-based row."""
        if self.kind != "csv":
            return [f"row {i + 1}" for i in indices]
        lines = _line_numbers(self.path, self.delimiter, max(indices, default=0))
        return [f"row {lines[i]}" for i in indices]


def open_table(source: str | Path | pa.Table, delimiter: str = ",") -> TableFile:
    """Find a table's format and columns: Parquet by its magic bytes, otherwise CSV.

    Raises FileNotFoundError for a missing file, ValueError for an unreadable one or a
    header naming one column twice.
    """
    if isinstance(source, pa.Table):
        names = list(source.column_names)
        found = TableFile("<table>", "table", [n.strip() for n in names], names, table=source)
        return _unique_names(found)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"data file {path} not found (paths in a config file are relative to the config file)"
        )
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == PARQUET_MAGIC:
        names = _parquet_names(path)
        return _unique_names(TableFile(str(path), "parquet", [n.strip() for n in names], names,
                                       path=path))
    if path.suffix.lower() in (".parquet", ".pq"):
        raise ValueError(f"{path} is not a Parquet file (or it is damaged): no PAR1 header")
    names = _csv_header(path, delimiter)
    return _unique_names(TableFile(str(path), "csv", [n.strip() for n in names], names,
                                   path=path, delimiter=delimiter))


def read_columns(tf: TableFile, types: dict[str, ColumnType],
                 labels: list[str] | None = None, *,
                 trained_numbers: list[str] | None = None) -> pa.Table:
    """The columns named in `types` (stripped names), in that order: "float" ones as float64
    (NaN read as missing), "string" ones as trimmed text; missing cells are nulls.

    Raises ValueError listing every cell that is not a finite number (up to MAX_LINES, then a
    count), a column of text where numbers belong, or rows with the wrong number of fields.
    """
    raw = {tf.raw_names[tf.columns.index(name)]: name for name in types}
    if tf.kind == "csv":
        table = _read_csv(tf, raw, types)
    elif tf.kind == "parquet":
        table = _read_parquet(tf, list(raw))
    else:
        table = tf.table.select(list(raw))
    table = table.rename_columns(list(raw.values()))
    problems = BadCells(tf)
    problems.labels = set(labels or [])
    problems.trained_numbers = trained_numbers
    columns = {}
    for name, kind in types.items():
        column = table.column(name)
        columns[name] = _as_float(column, name, problems) if kind == "float" else _as_text(column)
    problems.raise_any()
    return pa.table(columns)


# ---------------------------------------------------------------- files


def _csv_header(path: Path, delimiter: str) -> list[str]:
    if len(delimiter) != 1:
        raise ValueError(f"the CSV delimiter (data.delimiter) must be one character, "
                         f"got {delimiter!r}")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = next(csvlib.reader(f, delimiter=delimiter), [])
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text; save it as UTF-8 CSV or as Parquet") from None
    except csvlib.Error as e:
        raise ValueError(f"{path}, row 1: {e}") from None
    if not header:
        raise ValueError(f"{path} is empty; it needs a header row of column names")
    return header


def _parquet_names(path: Path) -> list[str]:
    try:
        return list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{path} is not a readable Parquet file (damaged?): {_first(e)}") from None


def _unique_names(tf: TableFile) -> TableFile:
    seen = set()
    for name in tf.columns:
        if name in seen:
            raise ValueError(
                f"{tf.name}: the header names column {name!r} twice; rename one of them"
            )
        seen.add(name)
    return tf


def _read_csv(tf: TableFile, raw: dict[str, str], types: dict[str, ColumnType]) -> pa.Table:
    """Parse with the wanted types; on a conversion error re-read those columns as text, so
    that _as_float can report every bad cell instead of pyarrow's first.

    Only "" is a null to pyarrow: checking each cell against all of NULLS costs a fifth of
    the parse. A float column holding "NA" fails to convert and takes the text path, which
    knows NULLS; "nan" parses as NaN, which _as_float makes missing.
    """
    ragged: list[int] = []

    def on_ragged(row: pa_csv.InvalidRow) -> str:
        ragged.append(row.actual_columns)
        return "skip"

    def read(kinds: dict[str, ColumnType]) -> pa.Table:
        column_types = {r: pa.float64() if kinds[n] == "float" else TEXT for r, n in raw.items()}
        return pa_csv.read_csv(
            str(tf.path),
            read_options=pa_csv.ReadOptions(block_size=BLOCK_SIZE),
            parse_options=pa_csv.ParseOptions(
                delimiter=tf.delimiter, invalid_row_handler=on_ragged
            ),
            convert_options=pa_csv.ConvertOptions(
                include_columns=list(raw), column_types=column_types, null_values=[""],
                strings_can_be_null=True,  # the other NULLS: _as_text, _as_float
            ),
        )

    try:
        try:
            table = read(types)
        except pa.ArrowInvalid as e:
            if "conversion error" not in str(e):
                raise
            ragged.clear()
            table = read(dict.fromkeys(types, "string"))  # TEXT: _as_float decodes it
    except pa.ArrowInvalid as e:
        raise ValueError(f"{tf.name}: cannot be read as CSV: {_first(e)}") from None
    if ragged:
        _raise_ragged(tf)
    return table


def _read_parquet(tf: TableFile, columns: list[str]) -> pa.Table:
    try:
        return pq.read_table(tf.path, columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(
            f"{tf.name} is not a readable Parquet file (damaged?): {_first(e)}"
        ) from None


def _raise_ragged(tf: TableFile) -> None:
    width, bad = len(tf.columns), []
    with tf.path.open(newline="", encoding="utf-8-sig") as f:
        reader = csvlib.reader(f, delimiter=tf.delimiter)
        next(reader, None)
        start = reader.line_num + 1
        for row in reader:
            if row and len(row) != width:
                bad.append(f"  row {start}: {len(row)} fields, but the header has {width} columns")
            start = reader.line_num + 1
    head = f"{tf.name}: {len(bad)} rows do not have one field per column; fix or remove them:"
    raise ValueError("\n".join([head, *_capped(bad, len(bad))]))


def _line_numbers(path: Path, delimiter: str, last: int) -> list[int]:
    """The first line of each data row 0..last of a CSV file (blank lines skipped, as pyarrow
    does; a quoted field may span lines). Only for error messages: Python reads the file."""
    lines: list[int] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csvlib.reader(f, delimiter=delimiter)
        next(reader, None)
        start = reader.line_num + 1
        for row in reader:
            if row:
                lines.append(start)
                if len(lines) > last:
                    break
            start = reader.line_num + 1
    return lines


# ---------------------------------------------------------------- columns


TEXT = pa.dictionary(pa.int32(), pa.string())  # text columns: each distinct value parsed once


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Any column as dictionary-encoded text with one dictionary for all chunks, values
    trimmed, "" and NA-like values null (integers as written: 3 -> '3').

    The work is per distinct value, not per row: a 10^6-row label column costs milliseconds.
    """
    if not pa.types.is_dictionary(column.type):
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = pc.cast(column, pa.string())
        column = pc.dictionary_encode(column)
    column = pa.table({"c": column}).unify_dictionaries().column(0)
    if column.num_chunks == 0:
        return pa.chunked_array([], TEXT)
    raw = column.chunk(0).dictionary.cast(pa.string()).to_pylist()
    clean = [None if v is None or v.strip() in NULLS else v.strip() for v in raw]
    values = list(dict.fromkeys(v for v in clean if v is not None))
    if values == clean and column.type == TEXT:
        return column
    position = {v: i for i, v in enumerate(values)}
    lut = np.array([position.get(v, -1) for v in clean] + [-1], dtype=np.int32)  # [-1]: null
    dictionary = pa.array(values, pa.string())
    chunks = []
    for chunk in column.chunks:
        codes = lut[pc.fill_null(chunk.indices, -1).to_numpy()]
        indices = pa.array(codes, pa.int32(), mask=codes < 0)
        chunks.append(pa.DictionaryArray.from_arrays(indices, dictionary))
    return pa.chunked_array(chunks, TEXT)


def codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """A text column (from read_columns) as (codes, values): row i holds values[codes[i]],
    or is missing where codes[i] is -1.

    Shape: codes (n_rows,) int32.
    """
    if column.num_chunks == 0:
        return np.empty(0, np.int32), []
    values = column.chunk(0).dictionary.to_pylist()
    parts = [pc.fill_null(chunk.indices, -1).to_numpy() for chunk in column.chunks]
    return np.concatenate(parts), values


def present_codes(found: np.ndarray, size: int, rows: np.ndarray | None = None) -> np.ndarray:
    """The codes (0..size-1, from `codes`) that occur in the rows where the mask `rows` is
    true (None: all rows), sorted; missing cells (-1) do not count."""
    counts = np.bincount(found + 1, weights=rows, minlength=size + 1)
    return np.flatnonzero(counts[1:])


def _as_float(column: pa.ChunkedArray, name: str, problems: BadCells) -> pa.ChunkedArray | None:
    """A column as float64 with NaN as null; bad cells and text columns go to `problems`."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        written = pc.utf8_trim_whitespace(column)
        text = pc.if_else(pc.is_in(written, value_set=pa.array(NULLS)), None, written)
        number = pc.match_substring_regex(text, NUMBER, ignore_case=True)
        bad = pc.invert(pc.fill_null(number, True))
        if pc.any(bad).as_py():
            problems.not_numbers(name, text, bad)
            return None
        spelled = pc.and_(pc.is_null(text), pc.fill_null(pc.not_equal(written, ""), False))
        if pc.any(spelled).as_py():
            problems.tf.spellings[name] = pc.if_else(spelled, written, None)
        column = text
    elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
              or pa.types.is_decimal(kind) or pa.types.is_null(kind)):
        problems.column(name, f"holds {kind} values, not numbers; leave it out with data.exclude")
        return None
    values = pc.cast(column, pa.float64())
    if values.null_count == len(values) or pc.all(pc.is_finite(values)).as_py():
        return values  # one pass in the usual case
    infinite = pc.fill_null(pc.is_inf(values), False)
    if pc.any(infinite).as_py():
        problems.cells(name, infinite, pc.cast(values, pa.string()), "is not a finite number")
    nan = pc.is_nan(values)
    if pc.any(nan).as_py():
        none = pa.scalar(None, pa.string())
        problems.tf.spellings[name] = pc.if_else(nan, pa.scalar("NaN"), none)
    return pc.if_else(nan, None, values)  # NaN in a Parquet file: missing


class BadCells:
    """Bad cells and columns of one file, gathered so that one error lists them all."""

    def __init__(self, tf: TableFile, what: str = "cells are not finite numbers",
                 fix: str = "fix them"):
        self.tf, self.what, self.fix = tf, what, fix
        self.lines: list[str] = []
        self.found: list[tuple[int, str, str]] = []  # (row, column, text) of the first few
        self.count = 0
        self.text_columns = False
        self.labels: set[str] = set()  # numeric label columns (regression targets)
        self.trained_numbers: list[str] | None = None  # a trained run's numeric columns

    def column(self, name: str, what: str) -> None:
        self.lines.append(f"column {name!r} {what}")

    def not_numbers(self, name: str, text: pa.ChunkedArray, bad: pa.ChunkedArray) -> None:
        if pc.sum(bad).as_py() == len(text) - text.null_count:  # no number at all: a text column
            sample = ", ".join(repr(v) for v in pc.unique(text.drop_null())[:3].to_pylist())
            if name in self.labels:
                self.lines.append(f"label {name!r} holds text ({sample}, ...); a regression "
                                  "target must be numbers (or use data.task: classification)")
                return
            if self.trained_numbers is not None:
                self.column(name, f"holds text ({sample}, ...), but the run was trained with "
                                  "it as numbers; fix the column")
                return
            self.column(name, f"holds text ({sample}, ...); add it to data.categorical to "
                              "one-hot encode it, or to data.exclude")
        else:
            self.text_columns = True
            self.cells(name, bad, text, "is not a number")

    def cells(self, name: str, mask: pa.ChunkedArray | np.ndarray, text: pa.ChunkedArray | None,
              what: str, origin: np.ndarray | None = None) -> None:
        """Note the cells of column `name` where `mask` is true; `origin` maps rows of a
        filtered table back to the rows as read."""
        if not isinstance(mask, np.ndarray):
            mask = mask.to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(mask)
        self.count += len(rows)
        shown = rows[:MAX_LINES]
        values = [None] * len(shown) if text is None else text.take(pa.array(shown)).to_pylist()
        at = shown if origin is None else origin[shown]
        self.found += [(int(r), name, what if text is None else f"{v!r} {what}")
                       for r, v in zip(at, values, strict=True)]

    def raise_any(self) -> None:
        if not self.lines and not self.found:
            return
        lines = [f"{self.tf.name}: {line}" for line in self.lines]
        if self.found:
            found = sorted(self.found)[:MAX_LINES]
            where = self.tf.rows([r for r, _, _ in found])
            fix = self.fix + (", or list text columns in data.categorical or data.exclude"
                              if self.text_columns and self.trained_numbers is None else "")
            if self.text_columns and self.trained_numbers is not None:
                fix = (f"{self.fix}: the run was trained with numbers in columns "
                       f"{', '.join(self.trained_numbers)}")
            cells = [f"{w}, column {c!r}: {what}" for w, (_, c, what) in zip(where, found,
                                                                             strict=True)]
            if self.count == 1:
                lines.append(f"{self.tf.name}, {cells[0]}; {fix}")
            else:
                lines.append(f"{self.tf.name}: {self.count} {self.what}; {fix}:")
                lines += _capped([f"  {c}" for c in cells], self.count)
        raise ValueError("\n".join(lines))


def _capped(lines: list[str], total: int) -> list[str]:
    """At most MAX_LINES of `lines`, then '... and N more' for the rest of `total`."""
    shown = lines[:MAX_LINES]
    return shown + ([f"  ... and {total - len(shown)} more"] if total > len(shown) else [])


def _first(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
