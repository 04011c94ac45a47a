"""A batch of many applications split into the rows the contract accepts and the rows it refuses,
each refused row with the refusal the service gives when that row is sent alone to
/predict_arrow (`field`, and the message naming it as row 0). Used by the portfolio job, where
one bad row among millions must not stop the others from being scored.

`batch_matrix` stops at a batch's first bad value; the batch is halved until every refused
piece is a single row. Every check of the contract is per cell, so a piece is accepted exactly
when each of its rows is: a batch with k bad rows of n costs about 2k·log2(n) extra
conversions, and a clean batch (the usual case) costs the one conversion it always did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from scoring.core.arrow_rows import ArrowBodyError, Layout, batch_matrix
from scoring.core.contract import FeatureSpec, UnseenCategory, ignore


@dataclass(frozen=True)
class RowRefusal:
    row: int  # the row's index in the batch
    field: str
    message: str


@dataclass(frozen=True)
class SplitBatch:
    matrix: np.ndarray  # the accepted rows, model order, in batch order
    accepted: np.ndarray  # their indexes in the batch
    refused: list[RowRefusal]


def split_refused(
    batch: pa.RecordBatch, spec: FeatureSpec, unseen: UnseenCategory, layout: Layout
) -> SplitBatch:
    """`layout`: the batch's schema's, already checked (a whole-input problem is the caller's
    to refuse before any row is read)."""
    pieces: list[tuple[int, np.ndarray]] = []
    refused: list[RowRefusal] = []
    # Iterative, left piece first: accepted pieces come out in batch order.
    pending = [(0, batch.num_rows)]
    while pending:
        start, length = pending.pop()
        if length == 0:
            continue
        try:
            # No counting hook: a row is looked at several times while its batch is halved.
            pieces.append(
                (start, batch_matrix(batch.slice(start, length), spec, unseen, ignore, layout))
            )
        except ArrowBodyError as error:
            if length == 1:
                refused.append(RowRefusal(start, error.field, str(error)))
            else:
                half = length // 2
                pending += [(start + half, length - half), (start, half)]
    if len(pieces) == 1 and pieces[0][1].shape[0] == batch.num_rows:
        return SplitBatch(pieces[0][1], np.arange(batch.num_rows), [])
    width = len(spec.names)
    matrix = np.concatenate([m for _, m in pieces]) if pieces else np.empty((0, width))
    accepted = (
        np.concatenate([np.arange(s, s + m.shape[0]) for s, m in pieces])
        if pieces
        else np.empty(0, dtype=np.int64)
    )
    return SplitBatch(matrix, accepted, refused)
