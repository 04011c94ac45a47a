"""The request contract, generated from the model's own columns: which features, of which kind,
and how a cell of each kind is checked and coded into the float64 matrix LightGBM scores
(columns in the booster's order). Shared by every request form, the service's and the
portfolio job's.

The contract never guesses. Float features take numbers, and null as a missing value (LightGBM
routes NaN down its learned default branch); integer features take whole numbers and must be
present; boolean features take true/false. Categorical features take their category as a
string (null = missing) and are scored by its code, as LightGBM codes a pandas `category`
column. A boolean is not a number, a numeric string is not a number, a number is not a
category, and NaN and infinity literals are refused everywhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from scoring.stored_model.feature_schema import (
    BOOLEAN_TYPES,
    INTEGER_TYPES,
    Category,
    columns_from_metadata,
)

UnseenCategory = Literal["reject", "missing"]


class RequestError(ValueError):
    """A request that validates structurally but not against the model's features. `field`:
    the refused part, when the check that refused it knows one: a path into the JSON body
    (`table.data.3.7`, which the JSON routes then name as the refusal's field) or a column."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class FeatureSpec:
    """Feature names in model order, with the kind of each marked: integer (no missing value),
    boolean, or categorical with its categories in training order."""

    names: tuple[str, ...]
    integer: frozenset[str]
    boolean: frozenset[str] = frozenset()
    categories: Mapping[str, tuple[Category, ...]] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    """Categorical features that may not be missing (a Pipeline's encoder cannot take it)."""

    @classmethod
    def from_metadata(cls, features: Sequence[Mapping[str, Any]]) -> FeatureSpec:
        columns = columns_from_metadata(features)
        return cls(
            names=tuple(c.name for c in columns),
            integer=frozenset(
                c.name for c in columns if c.type in INTEGER_TYPES and c.categories is None
            ),
            boolean=frozenset(c.name for c in columns if c.type in BOOLEAN_TYPES),
            categories={c.name: c.categories for c in columns if c.categories is not None},
            required=frozenset(c.name for c in columns if c.required and c.categories is not None),
        )

    @property
    def numeric_only(self) -> bool:
        """Every feature arrives as a number: the fast paths apply."""
        return not (self.boolean or self.categories)

    def codes(self, name: str) -> dict[Category, int]:
        return self._codes[name]

    @property
    def _codes(self) -> dict[str, dict[Category, int]]:
        # Built once per spec: a request must not rebuild a category table.
        cached = self.__dict__.get("_codes_cache")
        if cached is None:
            cached = {
                name: {category: code for code, category in enumerate(categories)}
                for name, categories in self.categories.items()
            }
            object.__setattr__(self, "_codes_cache", cached)
        return cached

    def value_of(self, name: str, scored: float) -> float | str | int | bool | None:
        """What a request carried, from the value scored: a category for its code."""
        if np.isnan(scored):
            return None
        if name in self.categories:
            return self.categories[name][int(scored)]
        if name in self.boolean:
            return bool(scored)
        return float(scored)


def shown(value: Any, most: int = 80) -> str:
    """A value a body sent, as a message quotes it: its repr, cut short (a 4 MB category was
    echoed whole, twice, in its refusal)."""
    text = repr(value)
    return text if len(text) <= most else f"{text[:most]}... ({len(text)} characters)"


def named(names: Sequence[str], most: int = 10) -> str:
    """The first few names of a list a body chose (unknown or repeated columns): a message
    stays short however many the body sent."""
    more = len(names) - most
    return ", ".join(names[:most]) + (f" and {more} more" if more > 0 else "")


def listed(categories: Sequence[Category], most: int = 10) -> str:
    """The first few categories, for a message naming what an unseen category could have been."""
    shown = ", ".join(repr(c) for c in categories[:most])
    return shown + (", ..." if len(categories) > most else "")


def category_encoder(
    name: str,
    codes: Mapping[Category, int],
    unseen: UnseenCategory,
    on_unseen: Callable[[str], None],
    required: bool = False,
) -> Callable[[Category | None], float | None]:
    """Category → its code (a float, as LightGBM scores it); an unseen category is refused, or
    scored as missing exactly as LightGBM does, and counted either way. A `required` category
    is never missing: null, and an unseen category, are refused."""

    def encode(value: Category | None) -> float | None:
        if value is None:
            if required:
                raise ValueError(f"{name} is required: this model cannot score it missing")
            return None
        code = codes.get(value)
        if code is not None:
            return float(code)
        on_unseen(name)
        if unseen == "missing" and not required:
            return None
        known = listed(list(codes))
        raise ValueError(f"unseen category {shown(value)} for {name} (known: {known})")

    return encode


def ignore(_: str) -> None:
    return None


def model_order(columns: Sequence[str], spec: FeatureSpec) -> list[int]:
    """Positions of the model's features among `columns`; each must appear exactly once."""
    given = set(columns)
    unknown = sorted(given - set(spec.names))
    # Each refusal's field is the first column it names.
    if unknown:
        raise RequestError(f"unknown feature(s): {named(unknown)}", unknown[0])
    missing = [name for name in spec.names if name not in given]
    if missing:
        # The model's names: bounded, so listed whole.
        raise RequestError(f"missing feature(s): {', '.join(missing)}", missing[0])
    if len(given) != len(columns):
        # Counted in one pass: a body may repeat a name hundreds of thousands of times.
        repeated = sorted(name for name, times in Counter(columns).items() if times > 1)
        raise RequestError(f"repeated column(s): {named(repeated)}", repeated[0])
    position = {name: i for i, name in enumerate(columns)}
    return [position[name] for name in spec.names]


NUMBER_TYPES = frozenset({float, int, type(None)})


def column_values(
    values: Sequence[Any],
    name: str,
    spec: FeatureSpec,
    encode: Callable[[Any], float | None] | None,
    where: Callable[[int], str],
    path: Callable[[int], str] | None = None,
) -> list[Any]:
    """One column of cells (compact rows, a file's column) checked against its feature's kind,
    categories encoded; `where(row)` names a refused cell for the caller's format, `path(row)`
    its path in a JSON body."""

    def at(row: int) -> str | None:
        return None if path is None else path(row)

    def refuse(row: int, what: str) -> RequestError:
        message = f"{where(row)} ({name}) {what}, got {shown(values[row])}"
        return RequestError(message, at(row))

    if encode is not None:
        strings = isinstance(spec.categories[name][0], str) if spec.categories[name] else True
        for row, value in enumerate(values):
            if value is None:
                continue
            if strings and not isinstance(value, str):
                raise refuse(row, "must be a category (a string) or null")
            if not strings and (isinstance(value, bool) or not isinstance(value, int)):
                raise refuse(row, "must be a category (an integer) or null")
        encoded = []
        for row, value in enumerate(values):
            try:
                encoded.append(encode(value))
            except ValueError as error:
                raise RequestError(f"{where(row)}: {error}", at(row)) from None
        return encoded
    if name in spec.boolean:
        for row, value in enumerate(values):
            if not isinstance(value, bool):
                raise refuse(row, "must be true or false")
        return list(values)
    if not set(map(type, values)) <= NUMBER_TYPES:
        row = next(i for i, v in enumerate(values) if type(v) not in NUMBER_TYPES)
        raise refuse(row, "must be a number" + ("" if name in spec.integer else " or null"))
    return list(values)


def encoders(
    spec: FeatureSpec, unseen: UnseenCategory, on_unseen: Callable[[str], None]
) -> dict[str, Callable[[Any], float | None]]:
    return {
        name: category_encoder(name, spec.codes(name), unseen, on_unseen, name in spec.required)
        for name in spec.categories
    }


def check_integer_columns(matrix: np.ndarray, spec: FeatureSpec) -> None:
    """Integer features must be present and whole (compact rows arrive as floats)."""
    for column, name in enumerate(spec.names):
        if name not in spec.integer:
            continue
        values = matrix[:, column]
        bad = np.flatnonzero(np.isnan(values) | (values != np.round(values)))
        if bad.size:
            raise RequestError(f"{name} in row {bad[0]} must be an integer, got {values[bad[0]]}")


def check_row_count(n_rows: int, max_rows: int) -> None:
    if n_rows == 0:
        raise RequestError("at least one application is required")
    if n_rows > max_rows:
        raise RequestError(f"{n_rows} applications exceed the per-request maximum {max_rows}")


def records_to_matrix(records: Sequence[BaseModel]) -> np.ndarray:
    """Validated Application models to rows; field order is model order by construction."""
    # numpy turns None (a missing value) into NaN for a float64 array, and booleans into 0/1.
    return np.array([tuple(record.__dict__.values()) for record in records], dtype=np.float64)
