"""A challenger scored on the champion's requests: the champion's matrix (its features in its
order, categories as its codes) turned into the challenger's, column by column.

A challenger may read the champion's columns or a subset of them, each of the same kind, and a
categorical one must know every category the champion accepts (its codes may differ: they are
translated). Anything else would mean scoring the challenger on values its own contract never
saw, so it is refused, naming the first difference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scoring.core.contract import FeatureSpec, named


class ContractMismatch(ValueError):  # noqa: N818 - what the operator reads
    """The challenger cannot read the champion's requests; the message names the difference."""


def _kind(spec: FeatureSpec, name: str) -> str:
    if name in spec.categories:
        return "categorical"
    if name in spec.boolean:
        return "boolean"
    return "integer" if name in spec.integer else "float"


@dataclass(frozen=True)
class RowMap:
    """Where each challenger feature sits in the champion's matrix, and for its categorical
    features the champion's code → the challenger's code."""

    positions: np.ndarray
    translations: tuple[tuple[int, np.ndarray], ...]  # (challenger position, lookup by code)

    def rows(self, champion_rows: np.ndarray) -> np.ndarray:
        rows = champion_rows[:, self.positions]  # a copy: the champion's rows stay as they were
        for position, lookup in self.translations:
            column = rows[:, position]
            present = ~np.isnan(column)
            column[present] = lookup[column[present].astype(np.intp)]
        return rows


def row_map(champion: FeatureSpec, challenger: FeatureSpec) -> RowMap:
    """The champion's rows as the challenger reads them, or ContractMismatch."""
    unknown = [name for name in challenger.names if name not in champion.names]
    if unknown:
        raise ContractMismatch(
            f"the challenger reads feature(s) the champion's requests do not carry: "
            f"{named(unknown)}"
        )
    for name in challenger.names:
        ours, theirs = _kind(champion, name), _kind(challenger, name)
        if ours != theirs:
            raise ContractMismatch(
                f"{name} is {theirs} for the challenger, {ours} for the champion"
            )
    translations = []
    for position, name in enumerate(challenger.names):
        if name not in challenger.categories:
            continue
        codes = challenger.codes(name)
        missing = [c for c in champion.categories[name] if c not in codes]
        if missing:
            raise ContractMismatch(
                f"{name}: the challenger does not know these of the champion's categories: "
                f"{named([str(c) for c in missing])}"
            )
        lookup = np.array([codes[c] for c in champion.categories[name]], dtype=np.float64)
        translations.append((position, lookup))
    where = {name: i for i, name in enumerate(champion.names)}
    positions = np.array([where[name] for name in challenger.names], dtype=np.intp)
    return RowMap(positions, tuple(translations))
