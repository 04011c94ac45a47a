"""Import the production LightGBM model from MLflow into the Bento model store.

Resolves one production model (by default the registered model's `production` alias), checks it
is complete and servable, and saves it with its lineage as labels. Anything ambiguous or broken
is refused with one line and a distinct exit code; the Bento store is then left untouched.

    python import_model.py                         # credit_scoring@production
    python import_model.py --run-id 1da4...        # a specific run
    python import_model.py --tag stage=production  # the one run tagged so
    python import_model.py --dry-run               # show what would be imported
    python import_model.py --run-id 1da4... --artifact model.txt   # a booster file of the run
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from scoring.importing.errors import ImportRefused, TrackingUnreachable, exit_code_help
from scoring.importing.redact import RedactingFilter, redact_text, secrets_of
from scoring.importing.request import (
    CHALLENGER,
    CHALLENGER_BENTO_NAME,
    CHAMPION,
    DEFAULT_MODEL_NAME,
    ROLES,
    ImportRequest,
)

DEFAULT_STORE = Path(__file__).resolve().parent / "mlflow-demo" / "mlflow.db"
DEFAULT_TRACKING_URI = f"sqlite:///{DEFAULT_STORE}"


def parse_args(argv: list[str] | None) -> ImportRequest:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=exit_code_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI),
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the demo store)",
    )
    parser.add_argument("--model-name", default=DEFAULT_MODEL_NAME, help="registered model name")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--alias", help="registered-model alias (default: production)")
    how.add_argument("--version", help="registered-model version number")
    how.add_argument("--run-id", help="an explicit MLflow run id")
    how.add_argument("--tag", metavar="KEY=VALUE", help="the one active run with this tag")
    how.add_argument("--best-by", metavar="METRIC", help="the complete run with the highest METRIC")
    parser.add_argument("--experiment", help="limit --tag / --best-by to this experiment")
    parser.add_argument("--threshold", type=float, help="decision threshold; overrides MLflow")
    parser.add_argument(
        "--bento-name",
        help=f"Bento model name (default: {DEFAULT_MODEL_NAME}, or "
        f"{CHALLENGER_BENTO_NAME} with --role challenger)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="MLflow request timeout, s")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also store the forest compiled to x86-64 machine code (lleaves; ~1 min for 968 "
        "trees): the service then scores ~4x faster, with the same probabilities",
    )
    parser.add_argument(
        "--reason-codes",
        type=Path,
        metavar="FILE",
        help="reason-code table (YAML) for rejections; default: the run's reason_codes.yaml "
        "artifact, else reasons fall back to feature names",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        metavar="FILE",
        help="drift reference: training rows with the model's features (CSV or Parquet); "
        "default: the run's reference_sample.parquet (or .csv) artifact",
    )
    parser.add_argument(
        "--artifact",
        metavar="PATH",
        help="import this file of the run (LightGBM text model, skops, pickle or joblib of an "
        "LGBMClassifier or Booster) instead of its MLflow model; the request contract is then "
        "the booster's own",
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load pickle, cloudpickle and joblib files; unpickling runs any code the file's "
        "writer put in it, so only for runs whose writers you trust",
    )
    parser.add_argument(
        "--schema-from-model",
        action="store_true",
        help="take the request contract from the booster (feature names, pandas categories) "
        "instead of the MLflow signature: for a model logged without one",
    )
    parser.add_argument(
        "--role",
        choices=ROLES,
        default=CHAMPION,
        help="challenger: a model scored in shadow beside the champion (SCORING_CHALLENGER), "
        f"stored as {CHALLENGER_BENTO_NAME} unless --bento-name says otherwise, and refused "
        "unless it can read the champion's requests",
    )
    parser.add_argument(
        "--champion",
        default=f"{DEFAULT_MODEL_NAME}:latest",
        metavar="TAG",
        help="with --role challenger: the Bento model it must stand beside (default: %(default)s)",
    )
    parser.add_argument("--dry-run", action="store_true", help="show candidates, write nothing")
    args = parser.parse_args(argv)
    if args.tag and "=" not in args.tag:
        parser.error("--tag takes KEY=VALUE, e.g. --tag stage=production")
    if args.experiment and not (args.tag or args.best_by):
        parser.error("--experiment applies only to --tag and --best-by")
    bento_name = args.bento_name or (
        CHALLENGER_BENTO_NAME if args.role == CHALLENGER else DEFAULT_MODEL_NAME
    )
    if args.role == CHALLENGER and bento_name == args.champion.split(":")[0]:
        # It would become the champion's `latest`, which the bentofile and the service serve.
        parser.error("a challenger needs a Bento name of its own, not the champion's")
    return ImportRequest(
        tracking_uri=args.tracking_uri,
        model_name=args.model_name,
        alias=args.alias,
        version=args.version,
        run_id=args.run_id,
        tag=tuple(args.tag.split("=", 1)) if args.tag else None,
        best_by=args.best_by,
        experiment=args.experiment,
        threshold=args.threshold,
        bento_name=bento_name,
        timeout_s=args.timeout,
        compile=args.compile,
        dry_run=args.dry_run,
        reason_codes=args.reason_codes,
        reference=args.reference,
        artifact=args.artifact,
        allow_pickle=args.allow_pickle,
        schema_from_model=args.schema_from_model,
        role=args.role,
        champion=args.champion,
    )


def check_local_store(tracking_uri: str) -> None:
    """A sqlite URI to a missing file would silently create an empty store: refuse instead."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.exists():
            hint = " (build it: python -m demo_store)" if path == DEFAULT_STORE else ""
            raise TrackingUnreachable(f"no MLflow store at {path}{hint}")


def main(argv: list[str] | None = None) -> int:
    request = parse_args(argv)
    secrets = secrets_of(request.tracking_uri)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(secrets))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        check_local_store(request.tracking_uri)
        # Imported here, not at the top: `--help` and usage errors stay instant.
        from scoring.importing.steps import import_model

        # MLflow sets its own loggers to INFO when imported ("Creating initial MLflow database
        # tables..." for every sqlite store): the CLI's output is its one line.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        outcome = import_model(request)
    except ImportRefused as refusal:
        if request.dry_run and refusal.considered:
            print(redact_text("\n".join(refusal.considered), secrets))
        message = f"import_model: refused ({type(refusal).__name__}): {refusal}"
        print(redact_text(message, secrets), file=sys.stderr)
        return refusal.exit_code
    for warning in outcome.warnings:
        print(redact_text(f"import_model: warning: {warning}", secrets), file=sys.stderr)
    report = "\n".join(outcome.considered) if request.dry_run else outcome.summary
    print(redact_text(report, secrets))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
