"""Reading an uploaded CSV or Parquet file of applications into the model's matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scoring.serving.features import (
    FeatureSpec,
    RequestError,
    check_integer_columns,
    check_row_count,
    model_order,
)

PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True)
class UploadedApplications:
    frame: pd.DataFrame
    matrix: np.ndarray
    suffix: str  # ".csv" or ".parquet": the scored file comes back in the same format


def read_applications_file(path: Path, spec: FeatureSpec, max_rows: int) -> UploadedApplications:
    is_parquet = path.suffix.lower() in PARQUET_SUFFIXES
    try:
        frame = pd.read_parquet(path) if is_parquet else pd.read_csv(path)
    except Exception as error:  # any parser failure means the caller's file is unusable
        kind = "Parquet" if is_parquet else "CSV"
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise RequestError(f"cannot read the file as {kind}: {reason}") from None
    check_row_count(len(frame), max_rows)
    model_order([str(c) for c in frame.columns], spec)
    features = frame[list(spec.names)]
    values = features.apply(pd.to_numeric, errors="coerce")
    non_numeric = values.isna() & features.notna()
    if non_numeric.any().any():
        raise RequestError(f"column {non_numeric.any().idxmax()} has non-numeric values")
    matrix = values.to_numpy(dtype=np.float64)
    if np.isinf(matrix).any():
        raise RequestError("infinite values are not allowed")
    check_integer_columns(matrix, spec)
    return UploadedApplications(frame, matrix, ".parquet" if is_parquet else ".csv")
