"""Records, or an Arrow table, to the float64 matrix LightGBM scores, the least a hand-written
server would do: the booster's own categories (`pandas_categorical`) give each category its
code, as LightGBM codes a pandas `category` column; a missing or unseen category is NaN. No
checks of any kind. For the baselines only."""

from __future__ import annotations

import math

import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
        # For Arrow tables: worked out once, as a hand-written server would.
        self._numeric = [name for name in self.names if name not in self.codes]
        self._numeric_positions = [self.names.index(name) for name in self._numeric]
        self._categories = [
            (name, self.names.index(name), pa.array(list(codes)))
            for name, codes in self.codes.items()
        ]

    def matrix(self, records: list[dict]) -> np.ndarray:
        codes, nan = self.codes, math.nan
        return np.array(
            [
                [codes[n].get(r[n], nan) if n in codes else r[n] for n in self.names]
                for r in records
            ],
            dtype=np.float64,
        )

    def arrow_matrix(self, table: pa.Table) -> np.ndarray:
        """The model's columns of `table` (by name, any order): the number columns in one
        conversion (a null as NaN), each category column coded by its training categories."""
        matrix = np.empty((table.num_rows, len(self.names)), dtype=np.float64)
        numbers = table.select(self._numeric).combine_chunks().to_batches()[0]
        block = numbers.to_tensor(null_to_nan=True, row_major=False)
        matrix[:, self._numeric_positions] = np.asarray(block)
        for name, position, value_set in self._categories:
            column = table.column(name).combine_chunks()
            if pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            codes = pc.index_in(column, value_set=value_set)  # unseen or null: null, then NaN
            matrix[:, position] = codes.to_numpy(zero_copy_only=False)
        return matrix
