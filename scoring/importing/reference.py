"""The drift reference: the training sample a run logged (or `--reference FILE`), turned into
the bins and shares the service monitors live traffic against (stored_model/drift_reference).

A run logs it as the artifact `reference_sample.parquet` (or `.csv`) at the run's root: a few
thousand training rows with the model's feature columns, categories as their strings. No
sample is not a refusal (monitoring is then off, with a warning); a sample that cannot be read
or lacks a model feature is (ReferenceProblem, one line saying what to fix)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scoring.importing.errors import ReferenceProblem
from scoring.importing.run_artifacts import download_optional
from scoring.stored_model.drift_reference import DriftReference, build_reference
from scoring.stored_model.feature_schema import FeatureColumn
from scoring.stored_model.layout import file_sha256

# The conventional artifact names, in order of preference, at the run's artifact root.
REFERENCE_ARTIFACTS = ("reference_sample.parquet", "reference_sample.csv")
NO_REFERENCE = (
    "no drift reference: the run logged no reference_sample.parquet (or .csv) and no "
    "--reference was given; the model is imported with monitoring off"
)


def run_reference_sample(run_id: str, tracking_uri: str, destination: Path) -> Path | None:
    """The run's logged reference sample, downloaded, or None when it logged none."""
    return download_optional(
        run_id,
        REFERENCE_ARTIFACTS,
        tracking_uri,
        destination,
        ReferenceProblem,
        "retry, re-log the sample, or pass --reference FILE",
    )


def read_sample(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ReferenceProblem(
            f"reference sample {path} does not exist; give a CSV or Parquet file"
        )
    try:
        parquet = path.suffix.lower() == ".parquet"
        frame = pd.read_parquet(path) if parquet else pd.read_csv(path)
    except Exception as error:  # pyarrow and pandas raise many types for a bad file
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise ReferenceProblem(
            f"reference sample {path.name} is not a readable CSV or Parquet file ({reason}); "
            "give one with the model's feature columns"
        ) from None
    if frame.empty:
        raise ReferenceProblem(f"reference sample {path.name} has no rows; log training rows")
    return frame


def sample_matrix(frame: pd.DataFrame, columns: list[FeatureColumn], label: str) -> np.ndarray:
    """The sample as the service scores a request: model column order, categories as codes."""
    missing = [column.name for column in columns if column.name not in frame.columns]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ReferenceProblem(
            f"reference sample {label} lacks {len(missing)} of the model's features ({shown}); "
            "log a sample of the training rows with every feature column"
        )
    matrix = np.empty((len(frame), len(columns)), dtype=np.float64)
    for i, column in enumerate(columns):
        values = frame[column.name]
        if column.categories is not None:
            codes = {category: code for code, category in enumerate(column.categories)}
            present = values.dropna().astype(object)
            unknown = sorted({repr(v) for v in present if v not in codes})
            if unknown:
                raise ReferenceProblem(
                    f"reference sample {label}: {column.name} holds categories the model never "
                    f"saw ({', '.join(unknown[:5])}); log this model's own training rows"
                )
            matrix[:, i] = values.astype(object).map(codes).astype(np.float64).to_numpy()
            if column.required and np.isnan(matrix[:, i]).any():
                raise ReferenceProblem(
                    f"reference sample {label}: {column.name} is missing in some rows, and the "
                    "model cannot score it missing; log the rows as the model was trained on them"
                )
        else:
            try:
                matrix[:, i] = pd.to_numeric(values.astype(object), errors="raise").astype(
                    np.float64
                )
            except (TypeError, ValueError):
                raise ReferenceProblem(
                    f"reference sample {label}: {column.name} is not numeric; log the feature "
                    "as the model was trained on it"
                ) from None
    return matrix


def drift_reference(
    sample: Path,
    source: str,
    predictor: Any,
    columns: list[FeatureColumn],
    threshold: float,
) -> DriftReference:
    """Bins, shares and reject rate of the sample (on the model's input columns), scored by the
    model being imported: its booster, or a pipeline's steps then its booster."""
    frame = read_sample(sample)
    matrix = sample_matrix(frame, columns, sample.name)
    probabilities = predictor.predict(matrix)
    return build_reference(
        matrix,
        probabilities,
        [column.name for column in columns],
        {c.name: c.categories for c in columns if c.categories is not None},
        threshold,
        source,
        file_sha256(sample),
    )
