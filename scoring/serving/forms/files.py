"""Reading an uploaded CSV or Parquet file of applications into the model's matrix, as strictly
as a JSON request: a cell that does not parse as its column's type is refused, naming the
column and the row. CSV cells are text (an empty cell is a missing value); Parquet columns
carry their types, and a categorical column may be strings or a dictionary (pandas category).
Before a file is parsed, what its size says is checked: a CSV's row lengths and header, a
Parquet file's row count and unpacked size (its metadata), so a small upload cannot unpack to
a huge table."""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scoring.core.contract import (
    FeatureSpec,
    RequestError,
    UnseenCategory,
    check_integer_columns,
    check_row_count,
    column_values,
    encoders,
    model_order,
    named,
    shown,
)

PARQUET_SUFFIXES = (".parquet", ".pq")
BOOLEAN_TEXT = {"true": True, "false": False}
# A CSV number is plain ASCII decimal, as in JSON: Python's int() and float() would also take
# "1_000", non-ASCII digits ("١٢٣٤٥") and surrounding spaces.
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
NOT_FINITE = frozenset({"inf", "infinity", "nan"})


@dataclass(frozen=True)
class UploadedApplications:
    frame: pd.DataFrame
    matrix: np.ndarray
    suffix: str  # ".csv" or ".parquet": the scored file comes back in the same format


def _csv_cells(text: pd.Series, name: str, spec: FeatureSpec) -> list[Any]:
    """CSV text as the values a JSON request would carry: numbers, booleans or strings."""
    cells: list[Any] = [None if value == "" else value for value in text.tolist()]
    if name in spec.categories:
        if spec.categories[name] and isinstance(spec.categories[name][0], int):
            return [
                _number(cell, name, row) if cell is not None else None
                for row, cell in enumerate(cells)
            ]
        return cells
    if name in spec.boolean:
        return [BOOLEAN_TEXT.get(cell.lower(), cell) if cell else cell for cell in cells]
    return [None if cell is None else _number(cell, name, row) for row, cell in enumerate(cells)]


def _number(text: str, name: str, row: int) -> int | float:
    if NUMBER.fullmatch(text) is None:
        what = "a finite number" if text.lstrip("+-").lower() in NOT_FINITE else "a number"
        raise RequestError(f"column {name}, row {row}: {shown(text)} is not {what}")
    # A float first, so an integer too large for one (400 digits) is refused, not an overflow.
    value = float(text)
    if not np.isfinite(value):
        raise RequestError(f"column {name}, row {row}: {shown(text)} is not a finite number")
    return int(text) if INTEGER.fullmatch(text) else value


def _check_csv_shape(path: Path) -> None:
    """Each row must have one field per column, and no column may repeat. Pandas fills a short
    row's missing fields with empty text (read as missing values), takes one extra field on
    every row as an index column (shifting the values), and renames a repeated column
    (`AMT_CREDIT.1`): none of which it reports."""
    with path.open(newline="", encoding="utf-8-sig") as text:
        rows = csv.reader(text)
        header = next(rows, [])
        repeated = sorted(name for name, times in Counter(header).items() if times > 1)
        if repeated:
            raise RequestError(f"repeated column(s): {named(repeated)}")
        row = 0
        for fields in rows:
            if not fields:
                continue  # a blank line, skipped as pandas skips it
            if len(fields) != len(header):
                raise RequestError(f"row {row} has {len(fields)} fields for {len(header)} columns")
            row += 1


def _check_parquet_size(path: Path, max_rows: int, max_bytes: int) -> None:
    """From the file's metadata, before any data is read: a Parquet file is compressed and
    encoded, so a small upload can hold a table many thousand times its size. Its data, once
    uncompressed, must fit the upload limit: the same rows as CSV, about twice that size, would
    not fit it either."""
    file = pq.ParquetFile(path)
    metadata = file.metadata
    check_row_count(metadata.num_rows, max_rows)
    unpacked = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    if unpacked <= max_bytes:
        # The metadata counts a dictionary-encoded text column's dictionary once; read as a
        # table every row holds its value: one 10 KB string on 100,000 rows is 1 GB. Those
        # columns are read as dictionaries first (nothing expanded) to see what they unpack to.
        texts = [
            field.name
            for field in file.schema_arrow
            if pa.types.is_string(field.type)
            or pa.types.is_large_string(field.type)
            or pa.types.is_binary(field.type)
            or pa.types.is_large_binary(field.type)
        ]
        if texts:
            table = pq.ParquetFile(path, read_dictionary=texts).read(columns=texts)
            unpacked += sum(_expanded_bytes(table.column(name)) for name in texts)
    if unpacked > max_bytes:
        raise RequestError(
            f"the file's data unpacks to {unpacked} bytes, over the upload limit of {max_bytes}"
        )


def _expanded_bytes(column: pa.ChunkedArray) -> int:
    """The bytes a dictionary-encoded text column holds once each row has its own value."""
    total = 0
    for chunk in column.chunks:
        if not pa.types.is_dictionary(chunk.type):
            continue  # read plain: its size is in the metadata's count already
        lengths = pc.binary_length(chunk.dictionary).fill_null(0)
        taken = lengths.take(chunk.indices.fill_null(0)) if len(lengths) else lengths
        total += int(pc.sum(taken).as_py() or 0)
    return total


def _parquet_cells(column: pd.Series, name: str) -> list[Any]:
    """Parquet values as Python scalars, a missing value (NaN, None, NA) as None; a nested value
    (a list, a struct, a map) is refused naming its cell."""
    values = column.astype(object).tolist()
    if column.dtype == object:  # only these can hold nested values (a number column cannot)
        for row, value in enumerate(values):
            if isinstance(value, list | tuple | dict | np.ndarray):
                kind = type(value).__name__
                raise RequestError(
                    f"column {name}, row {row}: a {kind} is not a number or a category"
                )
    return [
        None if value is None or value is pd.NA or value != value else value for value in values
    ]


def read_applications_file(
    path: Path,
    spec: FeatureSpec,
    max_rows: int,
    max_bytes: int,
    unseen: UnseenCategory = "reject",
    on_unseen: Callable[[str], None] = lambda _: None,
) -> UploadedApplications:
    is_parquet = path.suffix.lower() in PARQUET_SUFFIXES
    try:
        if is_parquet:
            _check_parquet_size(path, max_rows, max_bytes)
            frame = pd.read_parquet(path)
        else:
            _check_csv_shape(path)
            # Text as it is: only an empty cell is missing ("NA" may be a category).
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except RequestError:
        raise
    except Exception as error:  # any parser failure means the caller's file is unusable
        kind = "Parquet" if is_parquet else "CSV"
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise RequestError(f"cannot read the file as {kind}: {reason}") from None
    check_row_count(len(frame), max_rows)
    model_order([str(c) for c in frame.columns], spec)
    encode = encoders(spec, unseen, on_unseen)
    columns = []
    for name in spec.names:
        if is_parquet and frame[name].dtype.kind in "mM":
            # NaT would be read as a missing value: a time is no feature's type.
            raise RequestError(f"column {name} must hold numbers or categories, got a time type")
        cells = (
            _parquet_cells(frame[name], name) if is_parquet else _csv_cells(frame[name], name, spec)
        )
        where = lambda row, name=name: f"column {name}, row {row}"  # noqa: E731
        columns.append(column_values(cells, name, spec, encode.get(name), where))
    matrix = np.array(columns, dtype=np.float64).T.copy()
    if np.isinf(matrix).any():
        raise RequestError("infinite values are not allowed")
    check_integer_columns(matrix, spec)
    return UploadedApplications(frame, matrix, ".parquet" if is_parquet else ".csv")
