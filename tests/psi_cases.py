"""The data recipe behind tests/fixtures/psi_evidently.json: PSI of our bins computed by
Evidently, kept as a fixture so Evidently is never a dependency of this project.

Regenerate (once, in a throwaway environment; Evidently 0.7.23 needs pandas < 2.3):

    python -m uv venv -p 3.11 .build/evidently-venv
    python -m uv pip install --python .build/evidently-venv/bin/python \
        evidently==0.7.23 "pandas<2.3"
    .build/evidently-venv/bin/python tests/psi_cases.py > tests/fixtures/psi_evidently.json

Each case bins a reference and a current sample with our own bins (drift_reference.py), then
hands Evidently's `psi` stattest the bin labels as a categorical column, so both tools compute
PSI over the same bins: what is compared is the formula and the empty-bin epsilon."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# After the path: run as a script, the project is not on it.
from scoring.stored_model.drift_reference import (
    Bins,
    categorical_bins,
    numeric_bins,
)

SEED = 20261201
CATEGORIES = ("a", "b", "c", "d")
RECIPE = (
    "numpy.random.default_rng(SEED + i) for the i-th sample drawn (reference first, then each "
    "case's current sample). numeric: normal(loc, scale, n) with a share set to NaN (missing); "
    "categorical: codes drawn with the given probabilities over CATEGORIES, an extra code 4 "
    "being a category the reference never had, a share set to NaN. Reference: 5000 rows; "
    "current: 4000. Bins: ours, from the reference (numeric deciles + missing; categories + "
    "missing). Evidently: psi stattest on the two label columns, as categorical."
)


def _numeric(rng: np.random.Generator, n: int, loc: float, scale: float, missing: float):
    values = rng.normal(loc, scale, n)
    values[rng.random(n) < missing] = np.nan
    return values


def _categorical(
    rng: np.random.Generator, n: int, probabilities: tuple[float, ...], missing: float
):
    codes = rng.choice(len(probabilities), size=n, p=probabilities).astype(float)
    codes[rng.random(n) < missing] = np.nan
    return codes


def cases() -> dict[str, tuple[Bins, np.ndarray, np.ndarray]]:
    """name -> (our bins from the reference, reference values, current values)."""
    draws = iter(range(100))

    def rng() -> np.random.Generator:
        return np.random.default_rng(SEED + next(draws))

    numeric_ref = _numeric(rng(), 5000, 0.0, 1.0, 0.05)
    categorical_ref = _categorical(rng(), 5000, (0.4, 0.3, 0.2, 0.1), 0.02)
    numeric_bins_ = numeric_bins("x", numeric_ref)
    categorical_bins_ = categorical_bins("c", categorical_ref, CATEGORIES)
    return {
        "numeric_same_distribution": (
            numeric_bins_,
            numeric_ref,
            _numeric(rng(), 4000, 0.0, 1.0, 0.05),
        ),
        "numeric_shifted": (numeric_bins_, numeric_ref, _numeric(rng(), 4000, 0.5, 1.3, 0.15)),
        "categorical_same_distribution": (
            categorical_bins_,
            categorical_ref,
            _categorical(rng(), 4000, (0.4, 0.3, 0.2, 0.1), 0.02),
        ),
        "categorical_shifted_with_a_new_category": (
            categorical_bins_,
            categorical_ref,
            # code 4 is out of range: it falls in `missing`, as an unseen category is scored
            _categorical(rng(), 4000, (0.1, 0.2, 0.3, 0.3, 0.1), 0.02),
        ),
        # `d` and `missing` never occur: two empty bins, where the epsilon decides the figure
        "categorical_with_empty_bins": (
            categorical_bins_,
            categorical_ref,
            _categorical(rng(), 4000, (0.5, 0.3, 0.2, 0.0), 0.0),
        ),
    }


def labels(bins: Bins, values: np.ndarray) -> list[str]:
    return [bins.labels[i] for i in bins.indices(values)]


def main() -> None:
    import evidently
    import pandas as pd
    from evidently.legacy.calculations.stattests.psi import psi_stat_test
    from evidently.legacy.core import ColumnType

    figures = {}
    for name, (bins, reference, current) in cases().items():
        ref, cur = pd.Series(labels(bins, reference)), pd.Series(labels(bins, current))
        result = psi_stat_test.func(ref, cur, ColumnType.Categorical, 0.1)
        figures[name] = {
            "evidently_psi": float(result[0]),
            "reference_counts": {k: int(v) for k, v in ref.value_counts().sort_index().items()},
            "current_counts": {k: int(v) for k, v in cur.value_counts().sort_index().items()},
        }
    json.dump(
        {
            "tool": f"evidently {evidently.__version__}",
            "function": "evidently.legacy.calculations.stattests.psi.psi_stat_test",
            "numpy": np.__version__,
            "seed": SEED,
            "recipe": RECIPE,
            "cases": figures,
        },
        sys.stdout,
        indent=2,
    )
    print()


if __name__ == "__main__":
    main()
