"""Find the model's reason-code table (`--reason-codes FILE`, else the run's `reason_codes.yaml`
artifact) and check it against the model's features before anything is written."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scoring.importing.errors import BrokenRun, ReasonTableProblem
from scoring.importing.run_artifacts import download_optional
from scoring.stored_model.reason_codes import REASON_CODES_FILE, ReasonTable, ReasonTableError

NO_TABLE_WARNING = (
    f"no reason-code table (run artifact {REASON_CODES_FILE} or --reason-codes FILE): rejections "
    "will be explained by feature names, and no feature is excluded from the reasons"
)


@dataclass(frozen=True)
class FoundTable:
    content: bytes
    """The file as the team wrote it: stored in the Bento model as it is."""
    source: str
    table: ReasonTable

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def find_reason_table(
    file: Path | None,
    run_id: str,
    tracking_uri: str,
    features: Sequence[str],
    scratch: Path,
) -> FoundTable | None:
    """The checked table, or None when neither the flag nor the run provides one. A table that
    does not fit the model is a ReasonTableProblem (exit 9) naming what to fix."""
    if file is not None:
        try:
            content = file.read_bytes()
        except OSError as error:
            raise ReasonTableProblem(
                f"cannot read --reason-codes {file}: {error.strerror or error}"
            ) from None
        source = f"file {file}"
    else:
        content = _run_artifact(run_id, tracking_uri, scratch)
        if content is None:
            return None
        source = f"run {run_id} artifact {REASON_CODES_FILE}"
    try:
        table = ReasonTable.parse(content, features)
    except ReasonTableError as error:
        raise ReasonTableProblem(f"reason-code table ({source}) {error}") from None
    return FoundTable(content, source, table)


def _run_artifact(run_id: str, tracking_uri: str, scratch: Path) -> bytes | None:
    local = download_optional(
        run_id,
        [REASON_CODES_FILE],
        tracking_uri,
        scratch / "reason-codes",
        BrokenRun,
        "retry, or pass --reason-codes FILE",
    )
    return None if local is None else local.read_bytes()


def warnings_for(found: FoundTable | None, features: Sequence[str]) -> list[str]:
    """What the operator should know about a table that imports."""
    if found is None:
        return [NO_TABLE_WARNING]
    uncoded = found.table.uncoded(features)
    if not uncoded:
        return []
    listed = ", ".join(uncoded[:8]) + (f", ... ({len(uncoded)} in all)" if len(uncoded) > 8 else "")
    return [
        f"reason-code table ({found.source}) does not list {len(uncoded)} feature(s), which "
        f"will be reported under their own name: {listed}"
    ]
