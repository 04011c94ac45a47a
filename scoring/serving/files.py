"""Reading an uploaded CSV or Parquet file of applications into the model's matrix, as strictly
as a JSON request: a cell that does not parse as its column's type is refused, naming the
column and the row. CSV cells are text (an empty cell is a missing value); Parquet columns
carry their types, and a categorical column may be strings or a dictionary (pandas category)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring.serving.features import (
    FeatureSpec,
    RequestError,
    UnseenCategory,
    check_integer_columns,
    check_row_count,
    column_values,
    encoders,
    model_order,
)

PARQUET_SUFFIXES = (".parquet", ".pq")
BOOLEAN_TEXT = {"true": True, "false": False}


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
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise RequestError(f"column {name}, row {row}: {text!r} is not a number") from None
    if not np.isfinite(value):
        raise RequestError(f"column {name}, row {row}: {text!r} is not a finite number")
    return value


def _parquet_cells(column: pd.Series) -> list[Any]:
    """Parquet values as Python scalars, a missing value (NaN, None, NA) as None."""
    values = column.astype(object).tolist()
    return [
        None if value is None or value is pd.NA or value != value else value for value in values
    ]


def read_applications_file(
    path: Path,
    spec: FeatureSpec,
    max_rows: int,
    unseen: UnseenCategory = "reject",
    on_unseen: Callable[[str], None] = lambda _: None,
) -> UploadedApplications:
    is_parquet = path.suffix.lower() in PARQUET_SUFFIXES
    try:
        if is_parquet:
            frame = pd.read_parquet(path)
        else:
            # Text as it is: only an empty cell is missing ("NA" may be a category).
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as error:  # any parser failure means the caller's file is unusable
        kind = "Parquet" if is_parquet else "CSV"
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise RequestError(f"cannot read the file as {kind}: {reason}") from None
    check_row_count(len(frame), max_rows)
    model_order([str(c) for c in frame.columns], spec)
    encode = encoders(spec, unseen, on_unseen)
    columns = []
    for name in spec.names:
        cells = _parquet_cells(frame[name]) if is_parquet else _csv_cells(frame[name], name, spec)
        where = lambda row, name=name: f"column {name}, row {row}"  # noqa: E731
        columns.append(column_values(cells, name, spec, encode.get(name), where))
    matrix = np.array(columns, dtype=np.float64).T.copy()
    if np.isinf(matrix).any():
        raise RequestError("infinite values are not allowed")
    check_integer_columns(matrix, spec)
    return UploadedApplications(frame, matrix, ".parquet" if is_parquet else ".csv")
