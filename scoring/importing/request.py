"""What to import and how: the importer's one input, built by import_model.py's CLI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_NAME = "credit_scoring"
DEFAULT_ALIAS = "production"
CHALLENGER_BENTO_NAME = f"{DEFAULT_MODEL_NAME}_challenger"
CHAMPION, CHALLENGER = "champion", "challenger"
ROLES = (CHAMPION, CHALLENGER)


@dataclass(frozen=True)
class ImportRequest:
    tracking_uri: str
    """MLflow tracking URI; may carry credentials, which are never printed or stored."""
    model_name: str = DEFAULT_MODEL_NAME
    """Registered model to resolve --alias and --version in."""
    alias: str | None = None
    version: str | None = None
    run_id: str | None = None
    tag: tuple[str, str] | None = None
    """(key, value): the one active run tagged so."""
    best_by: str | None = None
    """Metric: the complete run with its highest value."""
    experiment: str | None = None
    """Limits `tag` and `best_by` to this experiment."""
    threshold: float | None = None
    """Overrides every threshold recorded in MLflow."""
    bento_name: str = DEFAULT_MODEL_NAME
    timeout_s: float = 10.0
    compile: bool = False
    """Also store the forest compiled to machine code."""
    dry_run: bool = False
    reason_codes: Path | None = None
    """Reason-code table file; wins over the run's reason_codes.yaml artifact."""
    reference: Path | None = None
    """Drift reference sample (CSV or Parquet); wins over the run's reference_sample artifact."""
    artifact: str | None = None
    """A model file in the run (run-relative path) to import instead of its MLflow model."""
    allow_pickle: bool = False
    """Unpickle pickle, cloudpickle and joblib files: runs whatever code their writer put in."""
    schema_from_model: bool = False
    """Take the request contract from the booster, not the MLflow signature."""
    role: str = CHAMPION
    """champion (decides) or challenger (scored in shadow only, checked against `champion`)."""
    champion: str = f"{DEFAULT_MODEL_NAME}:latest"
    """The Bento model a challenger must be able to stand beside."""
