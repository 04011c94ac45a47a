"""The portfolio as Spark reads it, checked against the model's contract before any row is
scored: a missing feature, an unknown or missing id column, or a feature column of a type its
kind cannot hold fails the whole job with the one-line message the service gives for such a
body (scoring/core/arrow_rows.py's `layout_for`, on the Arrow schema Spark hands the workers).

Parquet carries its types. A CSV is read with the types the model's features take (numbers as
double, so a whole number written 3.0 is checked as the service checks it), other columns as
text; a line whose cell does not parse is kept whole in a column of its own and refused row by
row, never dropped (Spark's PERMISSIVE mode)."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as spark_types
from pyspark.sql.pandas.types import to_arrow_schema

from scoring.core.arrow_rows import ArrowBodyError, layout_for
from scoring.core.contract import FeatureSpec, named

CSV_SUFFIXES = (".csv", ".csv.gz")
CORRUPT_COLUMN = "_portfolio_unparsed_line"


class InputRefused(ValueError):  # noqa: N818 - what the operator reads
    """The input as a whole cannot be scored; the message is the service's for such a body."""


def input_format(path: str, given: str | None) -> str:
    if given:
        return given
    return "csv" if path.lower().rstrip("/").endswith(CSV_SUFFIXES) else "parquet"


def _csv_type(name: str, spec: FeatureSpec) -> spark_types.DataType:
    if name in spec.boolean:
        return spark_types.BooleanType()
    if name in spec.categories:
        integers = spec.categories[name] and isinstance(spec.categories[name][0], int)
        return spark_types.LongType() if integers else spark_types.StringType()
    if name in spec.names:
        return spark_types.DoubleType()
    return spark_types.StringType()


def read_input(spark: SparkSession, path: str, kind: str, spec: FeatureSpec) -> DataFrame:
    if kind == "parquet":
        return spark.read.parquet(path)
    # The header first (a one-line read), then the file with each column's type in its place.
    header = spark.read.option("header", True).csv(path).columns
    schema = spark_types.StructType(
        [spark_types.StructField(name, _csv_type(name, spec)) for name in header]
        + [spark_types.StructField(CORRUPT_COLUMN, spark_types.StringType())]
    )
    return (
        spark.read.option("header", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT_COLUMN)
        # As the service reads a CSV: only an empty cell is missing ("NA" may be a category).
        .option("nullValue", "")
        .option("emptyValue", "")
        .schema(schema)
        .csv(path)
    )


def feature_columns(
    schema: spark_types.StructType, spec: FeatureSpec, ids: tuple[str, ...]
) -> tuple[str, ...]:
    """The model's features as the input orders them, checked as the service checks a body's
    columns and types; other columns (a lake table's) are ignored, the id columns required.
    `schema`: the input as Spark types it (a DataFrame's, or the direct path's Parquet schema
    through the same mapping), so both read paths refuse with the same words."""
    columns = schema.names
    missing_ids = [name for name in ids if name not in columns]
    if missing_ids:
        raise InputRefused(f"missing id column(s): {named(missing_ids)}")
    features = tuple(name for name in columns if name in spec.names)
    try:
        arrow = to_arrow_schema(spark_types.StructType([schema[name] for name in features]))
    except (TypeError, ValueError) as error:  # a Spark type Arrow cannot carry
        raise InputRefused(str(error).splitlines()[0][:200]) from None
    try:
        layout_for(arrow, spec)
    except ArrowBodyError as error:
        raise InputRefused(str(error)) from None
    return features
