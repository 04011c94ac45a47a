"""Property tests: requests map to the model's matrix exactly, whatever their shape."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from scoring.core.contract import FeatureSpec, RequestError, records_to_matrix
from scoring.serving.forms.records import (
    CompactTable,
    application_model,
    compact_to_matrix,
)

SPEC = FeatureSpec(names=("AMT_CREDIT", "CNT_CHILDREN", "EXT_SOURCE_1", "DAYS_BIRTH"),
                   integer=frozenset({"CNT_CHILDREN", "DAYS_BIRTH"}))  # fmt: skip
Application = application_model(SPEC, {})

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
integers = st.integers(min_value=-(2**52), max_value=2**52)  # exact in float64


@st.composite
def records(draw) -> dict:
    return {
        name: draw(integers) if name in SPEC.integer else draw(st.one_of(st.none(), finite))
        for name in SPEC.names
    }


def expected_row(record: dict) -> list[float]:
    return [math.nan if record[n] is None else float(record[n]) for n in SPEC.names]


@settings(max_examples=200, deadline=None)
@given(st.lists(records(), min_size=1, max_size=20))
def test_records_map_to_model_ordered_rows_with_nan_for_missing(rows):
    matrix = records_to_matrix([Application.model_validate(r) for r in rows])
    assert matrix.dtype == np.float64
    np.testing.assert_array_equal(matrix, np.array([expected_row(r) for r in rows]))


@settings(max_examples=200, deadline=None)
@given(st.lists(records(), min_size=1, max_size=20), st.permutations(SPEC.names))
def test_compact_rows_in_any_column_order_match_records(rows, columns):
    table = CompactTable(columns=list(columns), data=[[r[c] for c in columns] for r in rows])
    from_records = records_to_matrix([Application.model_validate(r) for r in rows])
    np.testing.assert_array_equal(compact_to_matrix(table, SPEC, max_rows=100), from_records)


@given(records(), st.sampled_from(sorted(SPEC.names)))
def test_a_record_missing_any_feature_is_refused_naming_it(record, dropped):
    del record[dropped]
    with pytest.raises(ValidationError, match=dropped):
        Application.model_validate(record)


@given(records(), st.sampled_from([math.nan, math.inf, -math.inf]))
def test_nan_and_infinity_are_refused_for_every_float_feature(record, bad):
    record["AMT_CREDIT"] = bad
    with pytest.raises(ValidationError, match="AMT_CREDIT"):
        Application.model_validate(record)


@given(st.lists(records(), min_size=1, max_size=5))
def test_compact_null_in_an_integer_column_is_refused_naming_it(rows):
    rows[-1]["CNT_CHILDREN"] = None
    table = CompactTable(columns=list(SPEC.names), data=[[r[c] for c in SPEC.names] for r in rows])
    with pytest.raises(RequestError, match="CNT_CHILDREN"):
        compact_to_matrix(table, SPEC, max_rows=100)
