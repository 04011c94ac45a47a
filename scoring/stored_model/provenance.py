"""The lineage a served model carries: written as Bento model labels by the import script,
read back by the service. One definition, so the two sides cannot drift apart."""

from __future__ import annotations

from dataclasses import asdict, dataclass

REQUIRED_LABELS = ("run_id", "threshold", "threshold_source", "experiment")


@dataclass(frozen=True)
class Provenance:
    run_id: str
    threshold: float
    threshold_source: str
    experiment: str
    stage: str = ""
    registered_model: str = ""
    model_version: str = ""
    model_alias: str = ""
    role: str = ""
    """champion (or empty: imported before roles) or challenger (scored in shadow only)."""
    model_source: str = ""
    """Where the model was read from: mlflow-lightgbm, mlflow-sklearn or artifact:PATH."""
    serialization: str = ""
    """How it was read: lightgbm-text, skops, or (with --allow-pickle) pickle, cloudpickle,
    joblib."""
    contract_source: str = ""
    """Where the request contract came from: the MLflow signature or the booster."""
    pipeline: str = ""
    """A scikit-learn Pipeline's top-level steps ("ColumnTransformer -> LGBMClassifier"), run
    in the service before the forest; empty for a model served on its own features."""

    def to_labels(self) -> dict[str, str]:
        labels = {key: str(value) for key, value in asdict(self).items()}
        labels["threshold"] = repr(self.threshold)
        return labels

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> Provenance:
        """Rebuild from Bento model labels; a missing or bad label is a ValueError."""
        missing = [key for key in REQUIRED_LABELS if not labels.get(key)]
        if missing:
            raise ValueError(f"model labels lack {', '.join(missing)}; re-import the model")
        threshold = float(labels["threshold"])
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"label threshold={threshold} is outside (0, 1)")
        fields = cls.__dataclass_fields__
        values = {key: labels.get(key, "") for key in fields if key != "threshold"}
        return cls(threshold=threshold, **values)
