"""CSV and Parquet files into typed Arrow tables, with minidl's error messages.

pyarrow parses (multi-threaded C++, no Python per row); this module asks it for exactly the
columns and types minidl needs, maps its errors to messages naming the file, column and row,
and reports every bad cell rather than the first. Rows are named as a user finds them: a
CSV's line number (the header is line 1), a Parquet file's 1-based row.

What a table is, is decided here once, for training, `predict` and `evaluate --data` alike:
its format by content (files.file_kind: Parquet, a CSV compressed or not), which columns a
saved row index is (an unnamed CSV column, pandas' `__index_level_0__`), which header names
clash (only a column minidl reads must be named once), which texts are missing cells, and
how booleans read (True/False as 1/0 numbers; as text, equal to 'true'/'false' whatever the
case: `value_key`).
"""

from __future__ import annotations

import csv as csvlib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from minidl_cli.data import files

MAX_LINES = 10  # bad cells listed one per line, then "... and N more"
PARQUET_MAGIC = b"PAR1"
NULLS = pa_csv.ConvertOptions().null_values  # "", NA, NaN, null, N/A... (pandas' list too)
PANDAS_INDEX = re.compile(r"^__index_level_\d+__$")  # to_parquet's saved unnamed index
BOOLEANS = {"true": True, "false": False}
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
    compression: str | None = None  # a CSV's, from its first bytes (files.COMPRESSIONS)
    index_columns: list[str] = field(default_factory=list)  # a saved row index (pandas')
    missing_values: list[str] = field(default_factory=lambda: list(NULLS))  # read as missing
    # per column read: missing cells as spelled ('NaN', 'NA'; null where empty)
    spellings: dict[str, pa.ChunkedArray] = field(default_factory=dict)

    def rows(self, indices: list[int]) -> list[str]:
        """'row N' for 0-based data rows as read: N is a CSV line number, or a 1-based row."""
        if self.kind != "csv":
            return [f"row {i + 1}" for i in indices]
        lines = _line_numbers(self, max(indices, default=0))
        return [f"row {lines[i][0]}" for i in indices]

    def text(self) -> io.TextIOWrapper:
        """A CSV file's text through its compression (for Python's csv module)."""
        return files.open_text(self.path)


def open_table(source: str | Path | pa.Table, delimiter: str = ",",
               missing_values: list[str] | None = None) -> TableFile:
    """Find a table's format (by its first bytes: Parquet, or CSV text, plain or compressed
    with gzip, bz2, xz or zstd) and its columns. `missing_values`: the texts read as missing
    (default: NULLS; an empty cell always is).

    Raises FileNotFoundError for a missing file, ValueError for an unreadable one or one that
    is no table (an image, a zip archive).
    """
    nulls = list(dict.fromkeys(["", *(NULLS if missing_values is None else missing_values)]))
    if isinstance(source, pa.Table):
        names = list(source.column_names)
        return TableFile("<table>", "table", [n.strip() for n in names], names, table=source,
                         index_columns=_pandas_index(names, source.schema.metadata),
                         missing_values=nulls)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"data file {path} not found (paths in a config file are relative to the config file)"
        )
    kind = files.file_kind(path)
    if kind == "parquet":
        schema = _parquet_schema(path)
        names = list(schema.names)
        return TableFile(str(path), "parquet", [n.strip() for n in names], names, path=path,
                         index_columns=_pandas_index(names, schema.metadata),
                         missing_values=nulls)
    if path.suffix.lower() in (".parquet", ".pq"):
        raise ValueError(f"{path} is not a Parquet file (or it is damaged): no PAR1 header")
    if kind is not None and kind not in files.COMPRESSIONS:
        what = {"zip": "a zip archive (an .npz?)", "idx": "an IDX (MNIST-format) file"}.get(
            kind, f"a {kind.upper()} image")
        raise ValueError(f"{path} is {what}, not a table; give a CSV or Parquet file")
    compression = kind
    names = _csv_header(path, delimiter)
    return TableFile(str(path), "csv", [n.strip() for n in names], names, path=path,
                     delimiter=delimiter, compression=compression, missing_values=nulls)


def check_unique(tf: TableFile, names: list[str], why: str = "") -> None:
    """ValueError when the header names one of `names` (columns minidl reads) twice; a
    repeated name among the other columns is no concern (they are never read)."""
    for name in names:
        if tf.columns.count(name) > 1:
            raise ValueError(f"{tf.name}: the header names column {name!r} twice{why}; rename "
                             "one of them")


def read_columns(tf: TableFile, types: dict[str, ColumnType],
                 labels: list[str] | None = None, *,
                 trained_numbers: list[str] | None = None) -> tuple[pa.Table, BadCells]:
    """The columns named in `types` (stripped names), in that order: "float" ones as float64
    (NaN read as missing; a column of only True/False as 1/0), "string" ones as trimmed text;
    missing cells are nulls.

    Returns the table and its BadCells: every cell that is not a finite number (a null in
    the table), a column of text where numbers belong; the caller adds the missing cells it
    cannot fill and raises them all at once (BadCells.raise_any). Raises ValueError at once
    for rows with the wrong number of fields, or a column read that the header names twice.
    """
    check_unique(tf, list(types))
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
        if kind == "float":
            columns[name] = _as_float(column, name, problems)
        else:
            columns[name] = _as_text(column, tf.missing_values, tf, name)
    return pa.table(columns), problems


def value_key(text: str) -> str | float | tuple[str, bool]:
    """What a label or category text stands for, so that one value matches however a file
    spells it: a number by its value ('1.0' is '1'), a boolean whatever its case (pyarrow
    writes a Parquet bool as 'true', pandas' CSV as 'True'; not the number 1), other text as
    it is."""
    lower = text.lower()
    if lower in BOOLEANS:
        return ("boolean", BOOLEANS[lower])  # True == 1.0 in Python: keep them apart
    try:
        number = float(text)
    except ValueError:
        return text
    return number if np.isfinite(number) else text


# ---------------------------------------------------------------- files


def _csv_header(path: Path, delimiter: str) -> list[str]:
    if len(delimiter) != 1:
        tab = (" (a tab is written delimiter: \"\\t\" in YAML, data.delimiter='\"\\t\"' "
               "on the command line)" if delimiter in ("\\t", "tab", "TAB") else "")
        raise ValueError(f"the CSV delimiter (data.delimiter) must be one character, "
                         f"got {delimiter!r}{tab}")
    try:
        with files.open_text(path) as f:
            header = next(csvlib.reader(f, delimiter=delimiter), [])
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text; save it as UTF-8 CSV or as Parquet") from None
    except (OSError, EOFError, ValueError) as e:  # a damaged compressed stream
        raise ValueError(f"{path} cannot be decompressed (damaged?): {_first(e)}") from None
    except csvlib.Error as e:
        raise ValueError(f"{path}, row 1: {e}") from None
    if not header:
        raise ValueError(f"{path} is empty; it needs a header row of column names")
    return header


def _parquet_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(f"{path} is not a readable Parquet file (damaged?): {_first(e)}") from None


def _pandas_index(names: list[str], metadata: dict | None) -> list[str]:
    """The columns that hold a row index pandas saved (`df.to_parquet` keeps a non-default
    index, as `__index_level_0__` or under the index's name, and lists it in its metadata)."""
    index = [n for n in names if PANDAS_INDEX.match(n.strip())]
    try:
        pandas = json.loads((metadata or {}).get(b"pandas", b"{}"))
        index += [c for c in pandas.get("index_columns", []) if isinstance(c, str) and c in names]
    except (ValueError, AttributeError):  # not pandas' metadata after all
        pass
    return list(dict.fromkeys(n.strip() for n in index))


def _read_csv(tf: TableFile, raw: dict[str, str], types: dict[str, ColumnType]) -> pa.Table:
    """Parse with the wanted types; on a conversion error re-read those columns as text, so
    that _as_float can report every bad cell instead of pyarrow's first.

    Only "" is a null to pyarrow: checking each cell against all of NULLS costs a fifth of
    the parse. A float column holding "NA" fails to convert and takes the text path, which
    knows NULLS; "nan" parses as NaN, which _as_float makes missing.

    pyarrow cuts a file into parse blocks at line ends, which splits a quoted value that
    spans lines when it straddles a block boundary; rows then seem ragged. Before reporting
    any, the file is parsed again with newlines_in_values (slower, quote-aware cutting).
    """
    ragged: list[int] = []  # the column counts of rows of another length than the header
    try:
        try:
            table = _parse_or_read_as_text(tf, raw, types, False, ragged)
        except pa.ArrowInvalid:
            table = None
        if table is None or ragged:
            table = _parse_or_read_as_text(tf, raw, types, True, ragged)
    except pa.ArrowInvalid as e:
        raise ValueError(f"{tf.name}: cannot be read as CSV: {_first(e)}") from None
    except (OSError, EOFError) as e:  # a damaged compressed stream
        raise ValueError(f"{tf.name} cannot be decompressed (damaged?): {_first(e)}") from None
    if ragged:
        _raise_ragged(tf)
    return table


def _parse_or_read_as_text(tf: TableFile, raw: dict[str, str], types: dict[str, ColumnType],
                           newlines: bool, ragged: list[int]) -> pa.Table:
    """The file parsed with the wanted types or, on a conversion error, with every column
    as text (_as_float decodes it); `ragged` gets only this parse's ragged rows."""
    ragged.clear()
    try:
        return _parse_csv(tf, raw, types, newlines, ragged)
    except pa.ArrowInvalid as e:
        if "conversion error" not in str(e):
            raise
        ragged.clear()
        return _parse_csv(tf, raw, dict.fromkeys(types, "string"), newlines, ragged)


def _parse_csv(tf: TableFile, raw: dict[str, str], kinds: dict[str, ColumnType],
               newlines: bool, ragged: list[int]) -> pa.Table:
    """One pyarrow parse of the columns `raw` (as written -> their names) as `kinds` says
    (float64, else text), "" as null; a row of another length is skipped and its column
    count appended to `ragged`. `newlines`: quote-aware block cutting (newlines_in_values)."""
    def on_ragged(row: pa_csv.InvalidRow) -> str:
        ragged.append(row.actual_columns)
        return "skip"

    column_types = {r: pa.float64() if kinds[n] == "float" else TEXT for r, n in raw.items()}
    return pa_csv.read_csv(
        _csv_source(tf),
        read_options=pa_csv.ReadOptions(block_size=BLOCK_SIZE),
        parse_options=pa_csv.ParseOptions(
            delimiter=tf.delimiter, invalid_row_handler=on_ragged,
            newlines_in_values=newlines,
        ),
        convert_options=pa_csv.ConvertOptions(
            include_columns=list(raw), column_types=column_types, null_values=[""],
            strings_can_be_null=True,  # the other NULLS: _as_text, _as_float
        ),
    )


def _csv_source(tf: TableFile) -> object:
    """What pyarrow reads a CSV from: its path, or a stream decompressing it by content (a
    path would make pyarrow guess the compression from the file's suffix)."""
    if tf.compression is None and tf.path.suffix.lower() not in (".gz", ".bz2", ".zst", ".lz4",
                                                                  ".zstd", ".br"):
        return str(tf.path)  # the fastest: pyarrow reads the file itself
    return files.open_binary(tf.path)


def _read_parquet(tf: TableFile, columns: list[str]) -> pa.Table:
    try:
        return pq.read_table(tf.path, columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise ValueError(
            f"{tf.name} is not a readable Parquet file (damaged?): {_first(e)}"
        ) from None


def _raise_ragged(tf: TableFile) -> None:
    """One-line ValueError: how many rows do not have one field per header column, and the
    first of them by its line in the file (where its first field starts) and field count."""
    width, bad = len(tf.columns), []
    with tf.text() as f:
        reader = csvlib.reader(f, delimiter=tf.delimiter)
        next(reader, None)
        start = reader.line_num + 1
        for row in reader:
            if row and len(row) != width:
                bad.append((start, len(row)))
            start = reader.line_num + 1
    if not bad:  # pyarrow's reading and Python's differ: quoting
        raise ValueError(f"{tf.name}: a row does not have one field per column (Python's csv "
                         "reader finds none: check the quotes of fields that span lines); fix "
                         "or remove it")
    line, fields = bad[0]
    first = f"line {line} ({fields} field{'s' * (fields != 1)}, the header has {width})"
    if len(bad) == 1:
        raise ValueError(f"{tf.name}: 1 row does not have one field per column: {first}; "
                         "fix or remove it")
    raise ValueError(f"{tf.name}: {len(bad)} rows do not have one field per column, the first "
                     f"at {first}; fix or remove them")


def _line_numbers(tf: TableFile, last: int) -> list[tuple[int, list[str]]]:
    """The first line and the fields of each data row 0..last of a CSV file (blank lines
    skipped, as pyarrow does; a quoted field may span lines). Only for error messages:
    Python reads the file."""
    lines: list[tuple[int, list[str]]] = []
    with tf.text() as f:
        reader = csvlib.reader(f, delimiter=tf.delimiter)
        next(reader, None)
        start = reader.line_num + 1
        for row in reader:
            if row:
                lines.append((start, row))
                if len(lines) > last:
                    break
            start = reader.line_num + 1
    return lines


# ---------------------------------------------------------------- columns


TEXT = pa.dictionary(pa.int32(), pa.string())  # text columns: each distinct value parsed once


def _as_text(column: pa.ChunkedArray, nulls: list[str], tf: TableFile | None = None,
             name: str = "") -> pa.ChunkedArray:
    """Any column as dictionary-encoded text with one dictionary for all chunks, values
    trimmed, "" and the texts in `nulls` null (integers as written: 3 -> '3'; booleans as
    pyarrow writes them, 'true'). A missing cell spelled out ('NA') is kept in
    tf.spellings[name] for error messages.

    The work is per distinct value, not per row: a 10^6-row label column costs milliseconds.
    """
    if not pa.types.is_dictionary(column.type):
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = pc.cast(column, pa.string())
        column = pc.dictionary_encode(column)
    column = pa.table({"c": column}).unify_dictionaries().column(0)
    if column.num_chunks == 0:
        return pa.chunked_array([], TEXT)
    null_set = set(nulls)
    raw = column.chunk(0).dictionary.cast(pa.string()).to_pylist()
    clean = [None if v is None or v.strip() in null_set else v.strip() for v in raw]
    spelled = [v.strip() if v is not None and v.strip() and c is None else None
               for v, c in zip(raw, clean, strict=True)]
    if tf is not None and any(spelled):
        spelling = pa.array(spelled + [None], pa.string())
        tf.spellings[name] = pa.chunked_array(
            [spelling.take(pc.fill_null(chunk.indices, len(raw))) for chunk in column.chunks],
            pa.string())
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


def _as_float(column: pa.ChunkedArray, name: str, problems: BadCells) -> pa.ChunkedArray:
    """A column as float64 with NaN as null; a column of only True/False (any case), or of
    True/False beside 0/1, as 1/0, like a Parquet bool. Bad cells and text columns go to
    `problems`, and are nulls here (problems.masks says which nulls are bad rather than
    missing)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _text_as_float(column, name, problems)
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind) or pa.types.is_null(kind)):
        problems.column(name, f"holds {kind} values, not numbers; leave it out with data.exclude")
        problems.masks[name] = np.ones(len(column), dtype=bool)
        return pa.chunked_array([pa.nulls(len(column), pa.float64())])
    return _finite_floats(column, name, problems)


def _text_as_float(column: pa.ChunkedArray, name: str, problems: BadCells) -> pa.ChunkedArray:
    """A text column as float64 (see _as_float): missing spellings as null, True/False as
    1/0, cells that are no number reported to `problems` and null."""
    tf = problems.tf
    written = pc.utf8_trim_whitespace(column)
    text = pc.if_else(pc.is_in(written, value_set=pa.array(tf.missing_values)), None, written)
    text = _booleans_beside_zero_one(text)
    lower = pc.utf8_lower(text)
    boolean = pc.is_in(lower, value_set=pa.array(list(BOOLEANS)))
    if text.null_count < len(text) and pc.all(pc.fill_null(boolean, True)).as_py():
        text = pc.cast(pc.equal(lower, "true"), pa.float64())  # True/False: 1/0
        number = pc.is_valid(text)
    else:
        number = pc.match_substring_regex(text, NUMBER, ignore_case=True)
    bad = pc.invert(pc.fill_null(number, True))
    spelled = pc.and_(pc.is_null(text), pc.fill_null(pc.not_equal(written, ""), False))
    if pc.any(spelled).as_py():
        tf.spellings[name] = pc.if_else(spelled, written, None)
    if pc.any(bad).as_py():
        problems.not_numbers(name, text, bad)
        return pc.cast(pc.if_else(bad, None, text), pa.float64())
    return _finite_floats(text, name, problems)


def _booleans_beside_zero_one(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column of True/False (any case) beside 0/1 and nothing else, with True/False
    written as 1/0, the same values as either alone gives; any other column as it is."""
    lower = pc.utf8_lower(text)
    boolean = pc.is_in(lower, value_set=pa.array(list(BOOLEANS)))
    if not pc.any(boolean).as_py() or pc.all(pc.fill_null(boolean, True)).as_py():
        return text
    numeric = pc.match_substring_regex(text, NUMBER, ignore_case=True)
    value = pc.cast(pc.if_else(pc.fill_null(numeric, False), text, None), pa.float64())
    zero_one = pc.fill_null(pc.is_in(value, value_set=pa.array([0.0, 1.0])), False)
    if not pc.all(pc.fill_null(pc.or_(boolean, zero_one), True)).as_py():
        return text
    return pc.if_else(boolean, pc.if_else(pc.equal(lower, "true"), "1", "0"), text)


def _finite_floats(column: pa.ChunkedArray, name: str, problems: BadCells) -> pa.ChunkedArray:
    """A numeric (or numeric text) column as float64: infinities reported to `problems` and
    null, NaN null (missing; a CSV spelling it is remembered)."""
    tf = problems.tf
    values = pc.cast(column, pa.float64())
    if values.null_count == len(values) or pc.all(pc.is_finite(values)).as_py():
        return values  # one pass in the usual case
    infinite = pc.fill_null(pc.is_inf(values), False)
    if pc.any(infinite).as_py():
        problems.cells(name, infinite, pc.cast(values, pa.string()), "is not a finite number",
                       written=True)
        problems.masks[name] = infinite.to_numpy(zero_copy_only=False)
    nan = pc.is_nan(values)
    if pc.any(nan).as_py():
        none = pa.scalar(None, pa.string())
        tf.spellings[name] = pc.if_else(nan, pa.scalar("NaN"), none)
        problems.nan_written.add(name)  # a CSV spells it: 'nan', 'NaN', 'NAN'
    return pc.if_else(pc.or_(nan, infinite), None, values)  # NaN in a Parquet file: missing


MISSING = "(read as missing)"


class BadCells:
    """Bad cells and columns of one file, gathered so that one error lists them all: cells
    that cannot be read (not finite numbers, unknown categories) and missing cells that the
    run cannot fill, each as written in the file."""

    def __init__(self, tf: TableFile, what: str = "cells are not finite numbers",
                 fix: str = "fix them"):
        self.tf, self.what, self.fix = tf, what, fix
        self.lines: list[str] = []
        # (row, column, what, value as read, whether to quote the file's text instead)
        self.found: list[tuple[int, str, str, object, bool]] = []
        self.counts = {"bad": 0, "missing": 0}
        self.missing_fix = ""
        self.text_columns = False
        self.spelled_text = False  # a missing cell in a text column spelled out ('NA')
        self.labels: set[str] = set()  # numeric label columns (regression targets)
        self.trained_numbers: list[str] | None = None  # a trained run's numeric columns
        self.masks: dict[str, np.ndarray] = {}  # per column: its cells that are bad, not missing
        self.nan_written: set[str] = set()  # float columns whose NaN a CSV spells its own way

    def column(self, name: str, what: str) -> None:
        self.lines.append(f"column {name!r} {what}")

    def not_numbers(self, name: str, text: pa.ChunkedArray, bad: pa.ChunkedArray) -> None:
        self.masks[name] = bad.to_numpy(zero_copy_only=False)
        if pc.sum(bad).as_py() == len(text) - text.null_count:  # no number at all: a text column
            self.masks[name] = np.ones(len(text), dtype=bool)
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

    def missing(self, name: str, column: pa.ChunkedArray) -> np.ndarray:
        """The rows where `column` (of this file, as read) has a missing cell: a null that is
        not a bad cell. Shape: -> (n_rows,) bool."""
        mask = pc.is_null(column).to_numpy(zero_copy_only=False)
        return mask & ~self.masks[name] if name in self.masks else mask

    def missing_cells(self, name: str, mask: np.ndarray, fix: str, text_column: bool,
                      origin: np.ndarray | None = None) -> None:
        """Note the missing cells of column `name` where `mask` is true, as written in the
        file ('NA', 'nan', or empty); `fix`: what to do about missing cells."""
        self.missing_fix = fix
        spelling = self.tf.spellings.get(name)
        if spelling is not None and origin is not None:
            spelling = spelling.take(pa.array(origin))
        if spelling is None:
            self.cells(name, mask, None, "empty", origin, kind="missing")
            return
        spelled = mask & pc.is_valid(spelling).to_numpy(zero_copy_only=False)
        self.cells(name, mask & ~spelled, None, "empty", origin, kind="missing")
        self.cells(name, spelled, spelling, MISSING, origin, kind="missing",
                   written=name in self.nan_written)
        self.spelled_text |= text_column and bool(spelled.any())

    def cells(self, name: str, mask: pa.ChunkedArray | np.ndarray, text: pa.ChunkedArray | None,
              what: str, origin: np.ndarray | None = None, kind: str = "bad",
              written: bool = False) -> None:
        """Note the cells of column `name` where `mask` is true; `origin` maps rows of a
        filtered table back to the rows as read; `written`: quote the cell as the CSV file
        writes it (pyarrow reads 'nan' and 'NaN' alike)."""
        if not isinstance(mask, np.ndarray):
            mask = mask.to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(mask)
        self.counts[kind] += len(rows)
        shown = rows[:MAX_LINES]
        values = [None] * len(shown) if text is None else text.take(pa.array(shown)).to_pylist()
        at = shown if origin is None else origin[shown]
        self.found += [(int(r), name, what, v, written and text is not None)
                       for r, v in zip(at, values, strict=True)]

    def __bool__(self) -> bool:
        return bool(self.lines or self.found)

    def raise_any(self) -> None:
        if not self:
            return
        lines = [f"{self.tf.name}: {line}" for line in self.lines]
        if self.found:
            found = sorted(self.found, key=lambda f: f[:2])[:MAX_LINES]
            cells = self._describe(found)
            count = sum(self.counts.values())
            lines += ([f"{self.tf.name}, {cells[0]}; {self._fix()}"] if count == 1 else
                      [f"{self.tf.name}: {count} {self._what()}; {self._fix()}:",
                       *_capped([f"  {c}" for c in cells], count)])
        raise ValueError("\n".join(lines))

    def _what(self) -> str:
        if not self.counts["missing"]:
            return self.what
        return (f"{self.what} or are missing" if self.counts["bad"] else "cells are missing")

    def _fix(self) -> str:
        fix = self.fix + (", or list text columns in data.categorical or data.exclude"
                          if self.text_columns and self.trained_numbers is None else "")
        if self.text_columns and self.trained_numbers is not None:
            fix = (f"{self.fix}: the run was trained with numbers in columns "
                   f"{', '.join(self.trained_numbers)}")
        if self.spelled_text:
            fix_missing = (f"{self.missing_fix}; or, where such a text is a value (the code "
                           "'NA'), list only the texts that mean missing in data.missing_values "
                           "(e.g. data.missing_values: [''] keeps 'NA' and 'null' as values)")
        else:
            fix_missing = self.missing_fix
        if not self.counts["missing"]:
            return fix
        if not self.counts["bad"]:
            return fix_missing
        return f"{fix}; missing cells: {fix_missing}"

    def _describe(self, found: list[tuple[int, str, str, object, bool]]) -> list[str]:
        """'row N, column 'c': what' for each cell, rows and texts as written in the file."""
        rows = [r for r, *_ in found]
        if self.tf.kind == "csv":
            read = _line_numbers(self.tf, max(rows))
            where = [f"row {read[r][0]}" for r in rows]
        else:
            read, where = None, [f"row {r + 1}" for r in rows]
        cells = []
        for at, (r, column, what, value, written) in zip(where, found, strict=True):
            if written and read is not None:
                fields, index = read[r][1], self.tf.columns.index(column)
                value = fields[index].strip() if index < len(fields) else ""
            cells.append(f"{at}, column {column!r}: "
                         + (what if value is None else f"{value!r} {what}"))
        return cells


def _capped(lines: list[str], total: int) -> list[str]:
    """At most MAX_LINES of `lines`, then '... and N more' for the rest of `total`."""
    shown = lines[:MAX_LINES]
    return shown + ([f"  ... and {total - len(shown)} more"] if total > len(shown) else [])


def _first(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
