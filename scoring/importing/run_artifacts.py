"""Optional files a training run logs beside its model (the reason-code table, the drift
reference sample): found at the run's artifact root and downloaded, or None when the run logged
none. A store that cannot list or hand over a file it has is refused, not taken as "none"."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from scoring.importing.errors import ImportRefused


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


def download_optional(
    run_id: str,
    names: Sequence[str],
    tracking_uri: str,
    destination: Path,
    refusal: type[ImportRefused],
    what_to_do: str,
) -> Path | None:
    """The first of `names` the run logged, downloaded into `destination`; None when it logged
    none of them. `refusal(...)` is raised, ending with `what_to_do`, when the store fails."""
    try:
        logged = {item.path for item in MlflowClient(tracking_uri).list_artifacts(run_id)}
    except Exception as error:  # any transport or store error: the artifacts cannot be listed
        message = f"cannot list run {run_id}'s artifacts: {_first_line(error)}; {what_to_do}"
        raise refusal(message) from None
    name = next((name for name in names if name in logged), None)
    if name is None:
        return None
    destination.mkdir(parents=True, exist_ok=True)
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=name, dst_path=str(destination), tracking_uri=tracking_uri
        )
    except Exception as error:  # a dropped connection, a missing file: the artifact is unusable
        message = f"cannot download {name} of run {run_id}: {_first_line(error)}; {what_to_do}"
        raise refusal(message) from None
    return Path(local)
