"""`python -m scoring.portfolio`: the portfolio job from the command line. A refusal (an existing
output, a missing model, a whole-input problem) is one line on stderr and exit code 2, before
any row is scored; a failed Spark job exit code 1, with nothing written."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pyspark.sql import SparkSession

from scoring.core.model import ModelCannotServe
from scoring.portfolio.inputs import InputRefused
from scoring.portfolio.job import Options, run, session
from scoring.portfolio.output import OutputExists
from scoring.serving.edge.settings import Settings, SettingsError

REFUSED_EXIT_CODE = 2
FAILED_EXIT_CODE = 1


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="python -m scoring.portfolio",
        description="Score a portfolio (Parquet or CSV) on Spark with the imported model, as "
        "the service would; refused rows go to OUTPUT/_quarantine.",
    )
    parse.add_argument("--input", required=True, help="Parquet file or folder, or a .csv")
    parse.add_argument("--output", required=True, help="Parquet folder to write")
    parse.add_argument("--model", help="Bento model tag (default: SCORING_MODEL_TAG or latest)")
    parse.add_argument("--master", help="Spark master URL (default: spark-submit's, or local)")
    parse.add_argument(
        "--id-column",
        action="append",
        default=[],
        dest="ids",
        help="column passed through to the output and quarantine (repeatable)",
    )
    parse.add_argument(
        "--reasons",
        type=int,
        default=0,
        metavar="N",
        help="a `reasons` column: each rejection's top N reasons as JSON (null when approved)",
    )
    parse.add_argument("--format", choices=["parquet", "csv"], help="default: from the name")
    parse.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parse.add_argument(
        "--reader",
        choices=["auto", "spark"],
        default="auto",
        help="Parquet: auto = each task reads its row groups with pyarrow where pyarrow can "
        "open the input and output (else Spark's reader, said in the closing line); spark = "
        "always Spark's DataFrame reader and mapInArrow",
    )
    return parse


def options_from(args: argparse.Namespace) -> Options:
    return Options(
        input=args.input,
        output=args.output,
        model=args.model,
        ids=tuple(args.ids),
        reasons=args.reasons,
        overwrite=args.overwrite,
        input_format=args.format,
        reader=None if args.reader == "auto" else args.reader,
    )


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    """`spark`: a session to run in (tests share one); by default one is started."""
    args = parser().parse_args(argv)
    if args.reasons < 0:
        parser().error("--reasons must be 0 or more")
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        return _refused(str(error))
    spark = spark or session(args.master)
    try:
        summary = run(spark, options_from(args), settings)
    except (InputRefused, OutputExists, ModelCannotServe) as error:
        return _refused(str(error))
    except Exception as error:  # the Spark job failed: its own log holds the detail
        first = str(error).strip().splitlines()[0][:300] if str(error) else type(error).__name__
        print(f"portfolio: the job failed, nothing written: {first}", file=sys.stderr, flush=True)
        return FAILED_EXIT_CODE
    print(summary.line(), flush=True)
    return 0


def _refused(message: str) -> int:
    print(f"portfolio: cannot score: {message}", file=sys.stderr, flush=True)
    return REFUSED_EXIT_CODE
