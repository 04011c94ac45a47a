"""Records to the float64 matrix LightGBM scores, the least a hand-written server would do: the
booster's own categories (`pandas_categorical`) give each category its code, as LightGBM codes a
pandas `category` column; a missing or unseen category is NaN. For the baselines only."""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np

from scoring.importing.categorical import booster_categorical


class RowEncoder:
    def __init__(self, booster: lgb.Booster) -> None:
        self.names = booster.feature_name()
        categories = booster.pandas_categorical or []
        positions = sorted(booster_categorical(booster))[: len(categories)]
        self.codes = {
            self.names[position]: {category: float(code) for code, category in enumerate(values)}
            for position, values in zip(positions, categories, strict=True)
        }

    def matrix(self, records: list[dict]) -> np.ndarray:
        codes, nan = self.codes, math.nan
        return np.array(
            [
                [codes[n].get(r[n], nan) if n in codes else r[n] for n in self.names]
                for r in records
            ],
            dtype=np.float64,
        )
