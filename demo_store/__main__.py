"""Build the embedded default: a local MLflow store (sqlite + artifact folder) holding a
credit-scoring team's experiments and one production model registered as
`credit_scoring@production`.

    python -m demo_store            # small model, well under a minute
    python -m demo_store --full     # the documents' model: 189 features, 968 trees
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from demo_store.mlflow_runs import FULL, SMALL, build_demo_store

DEFAULT_STORE = Path(__file__).resolve().parent.parent / "mlflow-demo"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE, help="store folder")
    parser.add_argument("--full", action="store_true", help="full-size model for benchmarks")
    parser.add_argument("--force", action="store_true", help="replace an existing store")
    args = parser.parse_args(argv)
    args.store = args.store.resolve()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    database = args.store / "mlflow.db"
    if database.exists() and not args.force:
        print(f"{database} exists; keeping it (use --force to rebuild)")
        return 0
    shutil.rmtree(args.store, ignore_errors=True)
    args.store.mkdir(parents=True)
    size = FULL if args.full else SMALL
    build_demo_store(f"sqlite:///{database}", size, artifact_root=args.store / "artifacts")
    print(f"demo store ready: MLFLOW_TRACKING_URI=sqlite:///{database}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
