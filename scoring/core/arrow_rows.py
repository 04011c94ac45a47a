"""Arrow record batches read by the request contract: each model feature's column, by name, in
any order, checked and coded into the float64 matrix the model scores. The number columns are
checked as one float block, the few categorical and boolean ones with a few vectorised
operations each (1.0 ms for 500 x 189). Used by the service's Arrow route and by the
portfolio job on Spark's Arrow batches.

The contract is the JSON one (contract.py): float features take integer or floating columns
with null as missing, and no NaN or infinity; integer features whole numbers, no null; boolean
features a boolean column, no null; categorical features their categories as strings (plain or
dictionary-encoded), null as missing, an unseen category refused or scored as missing as
`SCORING_UNSEEN_CATEGORY` says, and counted. A column of Arrow's null type (what
`pa.Table.from_pylist` makes of one with no value) is all null, for every kind of feature. A
refusal names the column and, for a value, the row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scoring.core.contract import (
    FeatureSpec,
    RequestError,
    UnseenCategory,
    listed,
    model_order,
    shown,
)
from scoring.stored_model.feature_schema import Category

# What a float feature's column may hold: Arrow's integer and floating types, and its null type
# (a column with no value, as pa.Table.from_pylist types one that is all missing).
NUMBER_TYPES = frozenset(
    (
        *(pa.int8(), pa.int16(), pa.int32(), pa.int64()),
        *(pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()),
        *(pa.float16(), pa.float32(), pa.float64()),
        pa.null(),
    )
)


class ArrowBodyError(ValueError):
    """A body refused, with the part of the request it is about (a column name, or `body`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Layout:
    """Where each model feature sits in a body's columns, and what to check, for one schema: a
    bulk client sends the same columns request after request, so it is worked out once."""

    numeric: list[int]  # model positions of the number features
    numeric_sources: list[int]  # ... and their columns in the body
    numeric_names: list[str]
    required: list[int]  # indexes into numeric: integer features (no null)
    whole: list[int]  # ... integer features sent as a floating column (checked for fractions)
    typed: pa.Schema | None  # the number columns' types, null as float64, when any is null
    other: list[tuple[int, int, str]]  # (position, column, name): categorical and boolean


def column_names(schema: pa.Schema) -> list[str]:
    try:
        return schema.names
    except UnicodeDecodeError:  # Arrow allows any bytes; pyarrow decodes them as UTF-8
        raise ArrowBodyError("body", "column names must be UTF-8") from None


def _layout(schema: pa.Schema, spec: FeatureSpec) -> Layout:
    names = column_names(schema)
    try:
        order = model_order(names, spec)
    except RequestError as error:
        raise ArrowBodyError(error.field or "body", str(error)) from None
    types = schema.types
    numeric = [
        position
        for position, name in enumerate(spec.names)
        if name not in spec.categories and name not in spec.boolean
    ]
    for position in numeric:
        kind, name = types[order[position]], spec.names[position]
        if kind not in NUMBER_TYPES:
            raise ArrowBodyError(name, f"{name} must be a number column, got {kind}")
    names = [spec.names[p] for p in numeric]
    required = [i for i, name in enumerate(names) if name in spec.integer]
    kinds = [types[order[p]] for p in numeric]
    typed = None
    if pa.null() in kinds:  # Arrow converts no null-typed column to a tensor
        typed = pa.schema(
            pa.field(name, pa.float64() if kind == pa.null() else kind)
            for name, kind in zip(names, kinds, strict=True)
        )
    return Layout(
        numeric=numeric,
        numeric_sources=[order[p] for p in numeric],
        numeric_names=names,
        required=required,
        whole=[i for i in required if pa.types.is_floating(types[order[numeric[i]]])],
        typed=typed,
        other=[
            (position, order[position], name)
            for position, name in enumerate(spec.names)
            if name in spec.categories or name in spec.boolean
        ],
    )


def layout_for(schema: pa.Schema, spec: FeatureSpec) -> Layout:
    """Where each feature sits in batches of this schema, and what to check; refused when a
    feature is missing, unknown, repeated or of a type its kind cannot hold."""
    return _layout(schema, spec)


def batch_matrix(
    batch: pa.RecordBatch,
    spec: FeatureSpec,
    unseen: UnseenCategory,
    on_unseen: Callable[[str], None],
    layout: Layout | None = None,
) -> np.ndarray:
    """An Arrow record batch → the float64 matrix the model scores, columns in model order.
    `layout`: the batch's schema's layout, when the caller keeps one (see `layout_for`)."""
    if layout is None:
        layout = _layout(batch.schema, spec)
    matrix = np.empty((batch.num_rows, len(spec.names)), dtype=np.float64)
    block = _number_block(batch, layout)
    if block is not None:
        matrix[:, layout.numeric] = block
    else:  # a column to look at closely: each converted, or the cell it refuses named
        for position, source, name in zip(
            layout.numeric, layout.numeric_sources, layout.numeric_names, strict=True
        ):
            required = name in spec.integer
            matrix[:, position] = _numbers(batch.column(source), name, required=required)
    for position, source, name in layout.other:
        column = batch.column(source)
        if name in spec.categories:
            matrix[:, position] = _category_codes(column, name, spec, unseen, on_unseen)
            if name in spec.required and np.isnan(matrix[:, position]).any():
                row = _first(np.isnan(matrix[:, position]))
                raise ArrowBodyError(name, f"{name} in row {row} is missing; this model needs it")
        else:
            matrix[:, position] = _booleans(column, name)
    return matrix


def _number_block(batch: pa.RecordBatch, layout: Layout) -> np.ndarray | None:
    """All number columns at once, when they hold what the contract allows: one conversion to
    a float64 block (nulls as NaN) and one count of its non-finite values against the nulls,
    instead of a few calls per column. None when a column needs a closer look."""
    if not layout.numeric:
        return np.empty((batch.num_rows, 0))
    numbers = batch.select(layout.numeric_sources)
    if layout.typed is not None:
        numbers = numbers.cast(layout.typed)
    nulls = [column.null_count for column in numbers.columns]
    if any(nulls[i] for i in layout.required):
        return None  # an integer feature must be present
    try:
        block = np.asarray(numbers.to_tensor(null_to_nan=True, row_major=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None  # e.g. a float16 column: converted one by one
    # A null arrives as NaN: the block is clean when its non-finite values are its nulls.
    if np.count_nonzero(~np.isfinite(block)) != sum(nulls):
        return None
    # An integer column holds whole numbers by its type; a floating one is checked.
    if layout.whole:
        whole = block[:, layout.whole]
        if not np.array_equal(whole, np.round(whole)):
            return None
    return block


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _no_nulls(column: pa.Array, name: str, what: str) -> None:
    if column.null_count:
        row = _first(~column.is_valid().to_numpy(zero_copy_only=False))
        raise ArrowBodyError(name, f"{name} in row {row} is null; {what}")


def _numbers(column: pa.Array, name: str, required: bool) -> np.ndarray:
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
        raise ArrowBodyError(name, f"{name} must be a number column, got {kind}")
    if required:
        _no_nulls(column, name, "an integer feature must be present")
    if pa.types.is_null(kind):
        return np.full(len(column), np.nan)
    # Arrow gives a null as NaN here, so a column is clean when its non-finite values are
    # exactly its nulls: one count, and the row-by-row search only for a refusal.
    values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    finite = np.isfinite(values)
    if np.count_nonzero(~finite) != column.null_count:
        present = column.is_valid().to_numpy(zero_copy_only=False)
        row = _first(present & ~finite)
        raise ArrowBodyError(
            name, f"{name} in row {row} is {values[row]}: not a finite number (null = missing)"
        )
    if required and not (values == np.round(values)).all():
        row = _first(values != np.round(values))
        raise ArrowBodyError(name, f"{name} in row {row} must be an integer, got {values[row]}")
    return values


def _booleans(column: pa.Array, name: str) -> np.ndarray:
    # A null-typed column is all missing: refused below, as any null is.
    if not (pa.types.is_boolean(column.type) or pa.types.is_null(column.type)):
        raise ArrowBodyError(name, f"{name} must be a boolean column, got {column.type}")
    _no_nulls(column, name, "a boolean feature must be true or false")
    return column.to_numpy(zero_copy_only=False).astype(np.float64)


def _category_codes(
    column: pa.Array,
    name: str,
    spec: FeatureSpec,
    unseen: UnseenCategory,
    on_unseen: Callable[[str], None],
) -> np.ndarray:
    categories = spec.categories[name]
    # A dictionary's values are checked before it is decoded: decoding casts them to their
    # own type, which Arrow cannot do for some (a struct, a list).
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if pa.types.is_null(kind):  # no value at all: every category missing
        return np.full(len(column), np.nan)
    strings = not categories or isinstance(categories[0], str)
    fits = _is_text(kind) if strings else pa.types.is_integer(kind)
    if not fits:
        expected = "strings (plain or dictionary-encoded)" if strings else "integers"
        raise ArrowBodyError(name, f"{name} must hold its categories as {expected}, got {kind}")
    if strings and kind != pa.string():
        # Polars writes string_view by default, some writers large_string: compared as plain
        # strings, the one type the value set is built in (a body is far below 2 GB of text).
        # A dictionary's values are cast first: Arrow cannot decode string_view ones.
        if pa.types.is_dictionary(column.type):
            column = pa.DictionaryArray.from_arrays(
                column.indices, column.dictionary.cast(pa.string())
            )
        column = column.cast(pa.string())
    elif pa.types.is_dictionary(column.type):
        column = column.cast(kind)
    if not strings and kind != pa.int64():
        # Integer categories compared as int64: a narrow column (uint8) cannot hold the value
        # set when a category is past its range (300), and Arrow then refuses to build it.
        try:
            column = column.cast(pa.int64())
        except pa.ArrowInvalid:  # a uint64 past int64: no category is that large
            raise ArrowBodyError(name, f"{name} holds an integer past any category") from None
    codes = pc.index_in(column, value_set=_value_set(categories, column.type))
    unseen_rows: np.ndarray = np.empty(0, dtype=np.intp)
    # A null stays null and an unseen category becomes one: more nulls means something unseen.
    if codes.null_count != column.null_count:
        present = column.is_valid().to_numpy(zero_copy_only=False)
        coded = codes.is_valid().to_numpy(zero_copy_only=False)
        unseen_rows = np.flatnonzero(present & ~coded)
    for _ in unseen_rows:
        on_unseen(name)
    if unseen_rows.size and unseen == "reject":
        row = int(unseen_rows[0])
        value = column[row].as_py()
        known = listed(categories)
        raise ArrowBodyError(
            name, f"{name} in row {row}: unseen category {shown(value)} (known: {known})"
        )
    return codes.to_numpy(zero_copy_only=False).astype(np.float64)  # null (missing) → NaN


def _is_text(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


@functools.lru_cache(maxsize=1024)
def _value_set(categories: tuple[Category, ...], kind: pa.DataType) -> pa.Array:
    """A feature's training categories as an Arrow array of the column's type, built once:
    building it per request cost more than checking every other column."""
    return pa.array(list(categories), type=kind)
