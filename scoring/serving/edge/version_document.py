"""What GET /version says: which model, run and threshold decide, from which build, on which
libraries, and beside it the challenger, if one is in shadow."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import bentoml
import lightgbm as lgb

from scoring.core.scorer import Scorer
from scoring.serving.edge.build_info import build_info


def bento_tag() -> str:
    """The Bento being served, or "" when serving from source (BentoML says "not available")."""
    context = bentoml.server_context
    if not context.bento_version or context.bento_version == "not available":
        return ""
    return f"{context.bento_name}:{context.bento_version}"


def version_document(
    metadata: Mapping[str, Any],
    scoring: Scorer,
    threshold_origin: str,
    drift_monitoring: dict[str, Any],
    challenger: dict[str, Any] | None,
    workers: int,
) -> dict[str, Any]:
    provenance = scoring.model.provenance
    return {
        "service": build_info(),
        "bento": bento_tag(),
        "model_tag": scoring.tag,
        "run_id": provenance.run_id,
        "registered_model": provenance.registered_model,
        "model_version": provenance.model_version,
        "model_alias": provenance.model_alias,
        "experiment": provenance.experiment,
        "stage": provenance.stage,
        # How the import read the model (issue 23): where from, in which format, which contract.
        "model_source": provenance.model_source,
        "serialization": provenance.serialization,
        "contract_source": provenance.contract_source,
        "pipeline": provenance.pipeline or None,
        "threshold": scoring.threshold,
        "threshold_origin": threshold_origin,
        "threshold_source_in_mlflow": provenance.threshold_source,
        "mlflow_model_uri": metadata.get("mlflow_model_uri"),
        "tracking_uri": metadata.get("tracking_uri"),  # redacted at import
        "metrics": metadata.get("metrics", {}),
        "library_versions": {
            **metadata.get("library_versions", {}),
            "lightgbm_serving": lgb.__version__,
            "bentoml_serving": bentoml.__version__,
        },
        "lightgbm_threads": scoring.threads,
        "predictor": scoring.model.predictor,
        "features": len(scoring.spec.names),
        "reason_codes": scoring.reason_plan.describe(scoring.reason_count),
        "drift_monitoring": drift_monitoring,
        # Who decides, and who only shadows: the answers always name the champion.
        "models": [
            {
                "model_tag": scoring.tag,
                "run_id": provenance.run_id,
                "threshold": scoring.threshold,
                "role": "champion",
            },
            *([challenger] if challenger else []),
        ],
        # Which process answered: with several workers, each serves its own connections.
        "worker": {
            "index": bentoml.server_context.worker_index,
            "pid": os.getpid(),
            "of": workers,
        },
    }
