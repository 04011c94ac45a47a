"""What runs in Spark's Python workers: Arrow batches in (`mapInArrow`), the service's scoring,
Arrow batches out. The model is loaded once per Python worker (Spark reuses its workers across
tasks, `spark.python.worker.reuse`), from the folder the driver shipped, and kept in a
module-level cache keyed by its tag; a batch only converts, scores and answers.

Every row comes out: scored, or refused with the refusal /predict_arrow gives for it alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import bentoml
import numpy as np
import pyarrow as pa
from pyspark import SparkFiles
from pyspark.accumulators import Accumulator

from scoring.core.arrow_rows import Layout, layout_for
from scoring.core.contract import FeatureSpec, shown
from scoring.core.model import ServedModel
from scoring.core.reasons import load_plan
from scoring.core.scorer import Scorer, reasons_text
from scoring.portfolio.plan import ERROR_COLUMN, FIELD_COLUMN, Plan
from scoring.portfolio.row_refusals import RowRefusal, split_refused
from scoring.serving.forms.records import application_model

# tag → (the loaded model with its feature spec and reason plan): one load per Python worker.
_LOADED: dict[str, tuple[ServedModel, FeatureSpec, Scorer]] = {}


def scorer_for(plan: Plan) -> Scorer:
    """The service's Scorer for the shipped model, as service.py builds it: the threshold the
    driver settled (label or SCORING_THRESHOLD), the stored reason plan. One LightGBM thread:
    Spark runs one task per core."""
    if plan.tag not in _LOADED:
        bento_model = bentoml.models.Model.from_path(SparkFiles.get(plan.archive))
        metadata = bento_model.info.metadata
        spec = FeatureSpec.from_metadata(metadata["features"])
        example = json.loads(metadata.get("input_example_json", "{}"))
        # The service's own self-test on load (the example through the request form).
        application = application_model(spec, example, plan.unseen)
        model = ServedModel.load(bento_model, spec, application, example)
        reason_plan = load_plan(Path(bento_model.path), model.metadata, spec.names)
        scorer = Scorer(model, spec, plan.threshold, 1, reason_plan, max(plan.reasons, 1))
        _LOADED[plan.tag] = (model, spec, scorer)
    _, _, scorer = _LOADED[plan.tag]
    if scorer.threshold != plan.threshold or scorer.reason_count != max(plan.reasons, 1):
        # Another job of the same application, other options: same model, new decisions.
        scorer = Scorer(
            scorer.model, scorer.spec, plan.threshold, 1, scorer.reason_plan, max(plan.reasons, 1)
        )
    return scorer


def score_partition(
    batches: Iterator[pa.RecordBatch], plan: Plan, predictors: Accumulator
) -> Iterator[pa.RecordBatch]:
    scorer: Scorer | None = None
    layouts: dict[pa.Schema, Layout] = {}
    for batch in batches:
        if batch.num_rows == 0:
            continue
        if scorer is None:
            scorer = scorer_for(plan)
            predictors.add(frozenset({scorer.model.predictor}))
        features = batch.select(list(plan.features))
        layout = layouts.get(features.schema)
        if layout is None:  # checked on the driver already: this only places the columns
            layout = layouts.setdefault(features.schema, layout_for(features.schema, scorer.spec))
        yield from score_batch(batch, features, plan, scorer, layout)


def score_batch(
    batch: pa.RecordBatch, features: pa.RecordBatch, plan: Plan, scorer: Scorer, layout: Layout
) -> Iterator[pa.RecordBatch]:
    candidates = np.arange(batch.num_rows)
    refused: list[RowRefusal] = []
    if plan.corrupt_column is not None:
        corrupt = batch.column(plan.corrupt_column)
        unparsed = corrupt.is_valid().to_numpy(zero_copy_only=False)
        refused += [
            RowRefusal(int(i), "body", f"the line does not parse: {shown(corrupt[i].as_py())}")
            for i in np.flatnonzero(unparsed)
        ]
        candidates = np.flatnonzero(~unparsed)
        features = features.take(candidates)
    split = split_refused(features, scorer.spec, plan.unseen, layout)
    refused += [RowRefusal(int(candidates[r.row]), r.field, r.message) for r in split.refused]
    accepted = candidates[split.accepted]
    if accepted.size:
        yield _scored(batch, accepted, split.matrix, plan, scorer)
    if refused:
        yield _refused(batch, refused, plan)


def _ids(batch: pa.RecordBatch, rows: np.ndarray, plan: Plan) -> list[pa.Array]:
    taken = batch.select(list(plan.ids)).take(pa.array(rows, pa.int64()))
    return [taken.column(i).cast(plan.output.field(i).type) for i in range(len(plan.ids))]


def _scored(
    batch: pa.RecordBatch, rows: np.ndarray, matrix: np.ndarray, plan: Plan, scorer: Scorer
) -> pa.RecordBatch:
    probabilities = scorer.probabilities(matrix)
    # The service's own answers (service.py's _decide): the decision is its text, byte for byte.
    answers = scorer.answers(probabilities)
    decisions = [answer["decision"] for answer in answers]
    n = len(rows)
    columns = [
        *_ids(batch, rows, plan),
        pa.array(probabilities, pa.float64()),
        pa.array(decisions, pa.string()),
        pa.array(np.full(n, scorer.threshold), pa.float64()),
        pa.array([scorer.tag] * n, pa.string()),
        pa.array([plan.run_id] * n, pa.string()),
    ]
    if plan.reasons:
        found = scorer.reasons_of_rejected(matrix, decisions)
        columns.append(pa.array([reasons_text(r) for r in found], pa.string()))
    columns += [pa.nulls(n, pa.string()), pa.nulls(n, pa.string())]
    return pa.RecordBatch.from_arrays(columns, schema=plan.output)


def _refused(batch: pa.RecordBatch, refused: list[RowRefusal], plan: Plan) -> pa.RecordBatch:
    rows = np.array([r.row for r in refused], dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    refused = [refused[i] for i in order]
    n = len(refused)
    columns = _ids(batch, rows[order], plan)
    for field in plan.output:
        if field.name in plan.ids:
            continue
        if field.name == ERROR_COLUMN:
            columns.append(pa.array([r.message for r in refused], pa.string()))
        elif field.name == FIELD_COLUMN:
            columns.append(pa.array([r.field for r in refused], pa.string()))
        else:
            columns.append(pa.nulls(n, field.type))
    return pa.RecordBatch.from_arrays(columns, schema=plan.output)
