"""What every executor needs to score its partitions, decided once on the driver and shipped
inside the task closure (small and picklable): which model, which threshold and policy, which
columns go in and come out."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from scoring.core.contract import UnseenCategory

# The scored output's columns after the id columns, in order.
SCORED_COLUMNS = ("probability_of_default", "decision", "threshold", "model", "run_id")
REASONS_COLUMN = "reasons"
# Internal columns of the one pass that scores and refuses: a refused row carries its refusal
# here and nothing in the scored columns; split into the output and its quarantine on writing.
ERROR_COLUMN, FIELD_COLUMN = "_portfolio_error", "_portfolio_field"


@dataclass(frozen=True)
class Plan:
    tag: str
    archive: str  # the file name the model folder travels under (SparkContext.addArchive)
    run_id: str
    threshold: float
    unseen: UnseenCategory
    reasons: int  # reasons per rejected row; 0 = no reasons column
    ids: tuple[str, ...]
    features: tuple[str, ...]  # the model's feature columns, in the input's order
    corrupt_column: str | None  # CSV: Spark's column for a line that does not parse
    output: pa.Schema  # what each partition yields: ids, scored columns, refusal columns
