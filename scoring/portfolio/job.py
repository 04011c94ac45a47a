"""The portfolio job on the driver: check everything that can be checked before any row is
read (the output, the settings, the model, the input's columns and types), ship the model,
score every partition through the service's Scorer in Spark's Python workers, and commit the
result and its quarantine together. The driver never collects a row: the counts come from one
aggregate, the predictors from an accumulator."""

from __future__ import annotations

import functools
import os
import sys
import time
import warnings
from dataclasses import dataclass

import bentoml
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, functions
from pyspark.sql import types as spark_types
from pyspark.sql.pandas.types import to_arrow_schema

from scoring.core.contract import FeatureSpec
from scoring.portfolio import shipping
from scoring.portfolio.accumulators import NamesParam
from scoring.portfolio.direct import Reading, Staging, finish, run_splits
from scoring.portfolio.executor import score_partition
from scoring.portfolio.inputs import (
    CORRUPT_COLUMN,
    InputRefused,
    feature_columns,
    input_format,
    read_input,
)
from scoring.portfolio.output import Target
from scoring.portfolio.parquet_input import NotDirect, ParquetInput, filesystem_of, open_parquet
from scoring.portfolio.plan import (
    ERROR_COLUMN,
    FIELD_COLUMN,
    REASONS_COLUMN,
    SCORED_COLUMNS,
    Plan,
)
from scoring.serving.edge.settings import Settings
from scoring.stored_model.provenance import Provenance

# mapInArrow hands Arrow batches to Python and back with no pandas conversion; pyspark still
# warns about pandas 3 when the plan is built, about a path this job never takes.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")


@dataclass(frozen=True)
class Options:
    input: str
    output: str
    model: str | None = None  # default: the service's SCORING_MODEL_TAG (credit_scoring:latest)
    ids: tuple[str, ...] = ()
    reasons: int = 0
    overwrite: bool = False
    input_format: str | None = None  # parquet or csv; default: from the input's name
    # Parquet: None reads it with pyarrow in each task where pyarrow can open it (else through
    # Spark, said in the closing line); "spark" always through Spark's DataFrame reader.
    reader: str | None = None


@dataclass(frozen=True)
class Summary:
    scored: int
    quarantined: int
    seconds: float
    model: str
    run_id: str
    predictors: tuple[str, ...]
    note: str = ""  # e.g. why a Parquet input was read by Spark's DataFrame reader

    def line(self) -> str:
        rows = self.scored + self.quarantined
        rate = rows / self.seconds if self.seconds > 0 else 0.0
        predictor = "; ".join(self.predictors) or "none (no rows)"
        if len(self.predictors) > 1:
            predictor += " (an executor could not use the compiled forest)"
        return (
            f"portfolio: scored {self.scored} rows, quarantined {self.quarantined}, "
            f"in {self.seconds:.1f} s ({rate:,.0f} rows/s); model {self.model}, "
            f"run_id {self.run_id}, predictor {predictor}" + (f"; {self.note}" if self.note else "")
        )


def session(master: str | None, app_name: str = "credit-portfolio") -> SparkSession:
    # The executors' Python must be the driver's (its pyarrow, lightgbm, lleaves), and Spark
    # reads it from the driver's environment when the session starts.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name).config("spark.ui.showConsoleProgress", "true")
    if master:
        builder = builder.master(master)
    return builder.getOrCreate()


def _output_schema(
    schema: spark_types.StructType, ids: tuple[str, ...], reasons: int
) -> spark_types.StructType:
    fields = [schema[name] for name in ids]
    fields += [
        spark_types.StructField("probability_of_default", spark_types.DoubleType()),
        spark_types.StructField("decision", spark_types.StringType()),
        spark_types.StructField("threshold", spark_types.DoubleType()),
        spark_types.StructField("model", spark_types.StringType()),
        spark_types.StructField("run_id", spark_types.StringType()),
    ]
    if reasons:
        fields.append(spark_types.StructField(REASONS_COLUMN, spark_types.StringType()))
    fields += [
        spark_types.StructField(ERROR_COLUMN, spark_types.StringType()),
        spark_types.StructField(FIELD_COLUMN, spark_types.StringType()),
    ]
    return spark_types.StructType(fields)


def _model(tag: str) -> bentoml.Model:
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise InputRefused(f"{tag}: no such model in the Bento store; import it first") from None


@dataclass(frozen=True)
class Planned:
    """The plan, and how the rows are read: `direct` (pyarrow in each task, for Parquet that
    pyarrow opens) or `frame` (Spark's DataFrame reader and mapInArrow)."""

    plan: Plan
    output: spark_types.StructType  # the scoring pass's rows, as Spark types them
    frame: DataFrame | None = None
    direct: ParquetInput | None = None
    reading: Reading | None = None
    staging: Staging | None = None
    note: str = ""  # why a Parquet input is read by Spark, for the closing line


def _direct(options: Options, spec: FeatureSpec, target: Target) -> tuple[ParquetInput, Staging]:
    parquet = open_parquet(options.input, {*spec.names, *options.ids})
    filesystem, root = filesystem_of(target.qualified_staging_uri)
    return parquet, Staging(filesystem, root)


def plan_job(spark: SparkSession, options: Options, settings: Settings, target: Target) -> Planned:
    """Everything decided and checked on the driver, before any row is scored: the plan, the
    read path, the input's columns to score, the Spark schema of what the scoring pass yields."""
    taken = set(SCORED_COLUMNS) | {REASONS_COLUMN, ERROR_COLUMN, FIELD_COLUMN}
    clash = [name for name in options.ids if name in taken]
    if clash:
        raise InputRefused(f"id column(s) named as an output column: {', '.join(clash)}")
    bento_model = _model(options.model or settings.model_tag)
    metadata = bento_model.info.metadata
    try:
        spec = FeatureSpec.from_metadata(metadata["features"])
        provenance = Provenance.from_labels(bento_model.info.labels)
    except (KeyError, TypeError, ValueError) as error:
        raise InputRefused(f"{bento_model.tag}: its metadata is unusable ({error})") from None
    kind = input_format(options.input, options.input_format)
    direct = staging = frame = None
    note = ""
    if kind == "parquet" and options.reader == "spark":
        note = "read by Spark's DataFrame reader (--reader spark)"
    elif kind == "parquet":
        try:
            direct, staging = _direct(options, spec, target)
        except NotDirect as why:
            note = f"read by Spark's DataFrame reader: {why}"
    if direct is None:
        frame = read_input(spark, options.input, kind, spec)
    schema = frame.schema if frame is not None else direct.schema
    features = feature_columns(schema, spec, options.ids)
    corrupt = CORRUPT_COLUMN if kind == "csv" else None
    selected = [*options.ids, *(f for f in features if f not in options.ids)]
    output = _output_schema(schema, options.ids, options.reasons)
    reading = None
    if frame is not None:
        frame = frame.select(*selected, *([corrupt] if corrupt else []))
    else:
        columns = spark_types.StructType([schema[name] for name in selected])
        reading = Reading(direct.filesystem, to_arrow_schema(columns))
    # As the service decides: SCORING_THRESHOLD when set, else the model's label.
    threshold = settings.threshold if settings.threshold is not None else provenance.threshold
    plan = Plan(
        tag=str(bento_model.tag),
        archive=shipping.ship(spark.sparkContext, bento_model),
        run_id=provenance.run_id,
        threshold=threshold,
        unseen=settings.unseen_category,
        reasons=options.reasons,
        ids=options.ids,
        features=features,
        corrupt_column=corrupt,
        output=to_arrow_schema(output),
    )
    return Planned(plan, output, frame, direct, reading, staging, note)


def _through_frame(
    spark: SparkSession, planned: Planned, target: Target
) -> tuple[int, int, frozenset[str]]:
    plan = planned.plan
    assert planned.frame is not None
    predictors = spark.sparkContext.accumulator(frozenset(), NamesParam())
    scored_all = planned.frame.mapInArrow(
        functools.partial(score_partition, plan=plan, predictors=predictors), planned.output
    )
    # One scoring pass feeds both writes: the output and its quarantine.
    scored_all = scored_all.persist(StorageLevel.MEMORY_AND_DISK)
    error = functions.col(ERROR_COLUMN)
    try:
        scored_all.where(error.isNull()).drop(ERROR_COLUMN, FIELD_COLUMN).write.parquet(
            target.staging_uri
        )
        scored_all.where(error.isNotNull()).select(
            *plan.ids, functions.col(FIELD_COLUMN).alias("field"), error.alias("error")
        ).write.parquet(target.quarantine_uri)
        # Two numbers from the cached pass (not the staged files: Spark's readers skip a
        # path whose name starts with "." or "_", as the staging folder's and quarantine's do).
        counts = dict(scored_all.groupBy(error.isNull().alias("scored")).count().collect())
    finally:
        scored_all.unpersist()
    return counts.get(True, 0), counts.get(False, 0), frozenset(predictors.value)


def _direct_pass(spark: SparkSession, planned: Planned) -> tuple[int, int, frozenset[str]]:
    assert planned.direct is not None
    assert planned.reading is not None
    assert planned.staging is not None
    results = run_splits(
        spark.sparkContext, planned.direct.splits, planned.plan, planned.reading, planned.staging
    )
    scored = sum(r.scored for r in results)
    quarantined = sum(r.quarantined for r in results)
    finish(planned.staging, planned.plan, scored, quarantined)
    return scored, quarantined, frozenset().union(*(r.predictors for r in results))


def run(spark: SparkSession, options: Options, settings: Settings | None = None) -> Summary:
    started = time.perf_counter()
    target = Target(spark, options.output)
    target.refuse_existing(options.overwrite)
    settings = settings or Settings.from_env()
    planned = plan_job(spark, options, settings, target)
    shipping.ship_code(spark.sparkContext)
    try:
        if planned.direct is not None:
            scored, quarantined, predictors = _direct_pass(spark, planned)
        else:
            scored, quarantined, predictors = _through_frame(spark, planned, target)
        target.commit(options.overwrite)
    except BaseException:
        target.discard()
        raise
    return Summary(
        scored=scored,
        quarantined=quarantined,
        seconds=time.perf_counter() - started,
        model=planned.plan.tag,
        run_id=planned.plan.run_id,
        predictors=tuple(sorted(predictors)),
        note=planned.note,
    )
