"""The JSON forms' request schema: one strictly typed pydantic model per application (records)
and the compact table (columns once, then rows), each mapped to the matrix in model order
by the contract (scoring/core/contract.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    create_model,
)

from scoring.core.contract import (
    NUMBER_TYPES,
    FeatureSpec,
    RequestError,
    UnseenCategory,
    category_encoder,
    check_integer_columns,
    check_row_count,
    column_values,
    encoders,
    ignore,
    model_order,
    shown,
)

StrictFloat = Annotated[float, Strict()]


StrictStr = Annotated[str, Strict()]


StrictBool = Annotated[bool, Strict()]


WholeNumber = Annotated[float, Strict(), Field(multiple_of=1)]


def application_model(
    spec: FeatureSpec,
    example: Mapping[str, Any],
    unseen: UnseenCategory = "reject",
    on_unseen: Callable[[str], None] = ignore,
) -> type[BaseModel]:
    """A pydantic model with one strictly typed field per feature, in model order. A validated
    application holds what the model scores: categories are already their codes."""
    fields: dict[str, Any] = {}
    for name in spec.names:
        if name in spec.categories:
            required = name in spec.required
            encode = category_encoder(name, spec.codes(name), unseen, on_unseen, required)
            categories = [*spec.categories[name], *([] if required else [None])]
            kind: Any = Annotated[StrictStr | None, AfterValidator(encode)]
            if categories and isinstance(categories[0], int):
                kind = Annotated[Annotated[int, Strict()] | None, AfterValidator(encode)]
            description = "required category" if required else "category (null = missing)"
            extra: dict[str, Any] = {"enum": categories}
        elif name in spec.boolean:
            kind, description, extra = StrictBool, "required boolean", {}
        elif name in spec.integer:
            # Checked by pydantic-core itself (a per-cell Python validator cost a seventh of a
            # 500-row body's parsing): a whole number, 3 or 3.0, never a bool or a string.
            kind, description, extra = WholeNumber, "required integer", {}
        else:
            kind, description, extra = StrictFloat | None, "missing allowed (null)", {}
        fields[name] = (
            kind,
            Field(
                ...,
                description=description,
                examples=[example.get(name)],
                json_schema_extra=extra or None,
            ),
        )
    config = ConfigDict(
        extra="forbid", allow_inf_nan=False, json_schema_extra={"example": dict(example)}
    )
    return create_model("Application", __config__=config, **fields)


Cell = StrictFloat | StrictStr | StrictBool | None


class CompactTable(BaseModel):
    """Column names once, then rows of values: pandas' `split` orientation."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    columns: list[str] = Field(..., description="feature names, each exactly once, any order")
    data: list[list[Cell]] = Field(..., description="one row of values per application")


class NumericCompactTable(CompactTable):
    """The compact form for a model whose features are all numbers: parsed as such."""

    data: list[list[StrictFloat | None]] = Field(
        ..., description="one row of values per application"
    )


def compact_to_matrix(
    table: CompactTable,
    spec: FeatureSpec,
    max_rows: int,
    encode: Mapping[str, Callable[[Any], float | None]] | None = None,
) -> np.ndarray:
    """`encode`: each categorical feature's encoder (see `encoders`), built once by the caller;
    by default unseen categories are refused."""
    check_row_count(len(table.data), max_rows)
    try:
        order = model_order(table.columns, spec)
    except RequestError as error:
        raise RequestError(str(error), "table.columns") from None
    width = len(table.columns)
    for index, row in enumerate(table.data):
        if len(row) != width:
            message = f"data[{index}] has {len(row)} values for {width} columns"
            raise RequestError(message, f"table.data.{index}")
    if isinstance(table, NumericCompactTable):
        # Parsed as numbers already: straight to float64, no per-cell check on the request path.
        matrix = np.array(table.data, dtype=np.float64).reshape(len(table.data), width)[:, order]
    elif spec.numeric_only:
        cells = np.array(table.data, dtype=object).reshape(len(table.data), width)[:, order]
        _check_numbers(cells, spec, order, range(len(spec.names)))
        matrix = cells.astype(np.float64)
    else:
        matrix = _mixed_compact(
            table, spec, order, width, encode or encoders(spec, "reject", ignore)
        )
    check_integer_columns(matrix, spec)
    return matrix


def _check_numbers(
    cells: np.ndarray, spec: FeatureSpec, order: list[int], positions: Sequence[int]
) -> None:
    """Numeric columns hold numbers or null only: one pass over their cells' types."""
    if set(map(type, cells[:, positions].ravel().tolist())) <= NUMBER_TYPES:
        return
    for position in positions:
        for row, value in enumerate(cells[:, position].tolist()):
            if type(value) not in NUMBER_TYPES:
                name = spec.names[position]
                allowed = "a number" + ("" if name in spec.integer else " or null")
                path = f"table.data.{row}.{order[position]}"
                message = f"{path} ({name}) must be {allowed}, got {shown(value)}"
                raise RequestError(message, path)


def _mixed_compact(
    table: CompactTable,
    spec: FeatureSpec,
    order: list[int],
    width: int,
    encode: Mapping[str, Callable[[Any], float | None]],
) -> np.ndarray:
    """Numbers checked in one pass; the few boolean and categorical columns one by one."""
    cells = np.array(table.data, dtype=object).reshape(len(table.data), width)[:, order]
    special = [i for i, n in enumerate(spec.names) if n in spec.boolean or n in spec.categories]
    numeric = [i for i in range(len(spec.names)) if i not in set(special)]
    _check_numbers(cells, spec, order, numeric)
    for position in special:
        name, source = spec.names[position], order[position]
        cells[:, position] = column_values(
            cells[:, position].tolist(),
            name,
            spec,
            encode.get(name),
            where=lambda row, source=source: f"table.data.{row}.{source}",
            path=lambda row, source=source: f"table.data.{row}.{source}",
        )
    return cells.astype(np.float64)


def row_limit(max_rows: int) -> AfterValidator:
    """Refuse empty requests and requests over the per-request maximum."""

    def check(rows: list) -> list:
        check_row_count(len(rows), max_rows)
        return rows

    return AfterValidator(check)
