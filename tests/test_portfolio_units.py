"""The portfolio's pure parts, no Spark: a batch split into the rows the contract accepts and
the rows it refuses, each refusal the one /predict_arrow gives for that row alone; and the
closing line saying when an executor fell back from the compiled forest."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from scoring.core.arrow_rows import ArrowBodyError, batch_matrix, layout_for
from scoring.core.contract import FeatureSpec, ignore
from scoring.portfolio.job import Summary
from scoring.portfolio.row_refusals import split_refused

SPEC = FeatureSpec(
    names=("AMOUNT", "CHILDREN", "CAR", "JOB"),
    integer=frozenset({"CHILDREN"}),
    boolean=frozenset({"CAR"}),
    categories={"JOB": ("Laborers", "Managers")},
)


def batch(rows: list[dict]) -> pa.RecordBatch:
    schema = pa.schema(
        [("AMOUNT", pa.float64()), ("CHILDREN", pa.int64()), ("CAR", pa.bool_()),
         ("JOB", pa.string())]
    )  # fmt: skip
    return pa.RecordBatch.from_pylist(rows, schema=schema)


GOOD = {"AMOUNT": 1.5, "CHILDREN": 0, "CAR": True, "JOB": "Managers"}
BAD = [
    {**GOOD, "AMOUNT": math.inf},
    {**GOOD, "CHILDREN": None},
    {**GOOD, "CAR": None},
    {**GOOD, "JOB": "Astronaut"},
]


def test_a_clean_batch_is_converted_once_as_batch_matrix_converts_it():
    rows = batch([GOOD, {**GOOD, "AMOUNT": None}, {**GOOD, "JOB": None}])
    split = split_refused(rows, SPEC, "reject", layout_for(rows.schema, SPEC))
    assert split.refused == []
    assert split.accepted.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(split.matrix, batch_matrix(rows, SPEC, "reject", ignore))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_refused_row_carries_the_refusal_it_gets_alone_and_the_rest_are_scored(seed):
    rng = np.random.default_rng(seed)
    rows = [dict(GOOD, AMOUNT=float(i)) for i in range(40)]
    bad_at = sorted(rng.choice(40, size=len(BAD), replace=False).tolist())
    for index, bad in zip(bad_at, BAD, strict=True):
        rows[index] = bad
    whole = batch(rows)
    split = split_refused(whole, SPEC, "reject", layout_for(whole.schema, SPEC))
    assert [r.row for r in sorted(split.refused, key=lambda r: r.row)] == bad_at
    for refusal in split.refused:
        with pytest.raises(ArrowBodyError) as alone:
            batch_matrix(whole.slice(refusal.row, 1), SPEC, "reject", ignore)
        assert (refusal.field, refusal.message) == (alone.value.field, str(alone.value))
    good = [i for i in range(40) if i not in bad_at]
    assert split.accepted.tolist() == good
    expected = batch_matrix(batch([rows[i] for i in good]), SPEC, "reject", ignore)
    np.testing.assert_array_equal(split.matrix, expected)


def test_an_unseen_category_scored_as_missing_is_not_refused():
    rows = batch([GOOD, {**GOOD, "JOB": "Astronaut"}])
    split = split_refused(rows, SPEC, "missing", layout_for(rows.schema, SPEC))
    assert split.refused == []
    assert math.isnan(split.matrix[1, 3])


def test_the_closing_line_says_when_an_executor_fell_back_to_the_booster():
    summary = Summary(
        scored=90,
        quarantined=10,
        seconds=2.0,
        model="credit_scoring:v1",
        run_id="abc",
        predictors=(
            "compiled forest, lleaves 1.3.0",
            "lightgbm 4.6.0 Booster (a forest compiled for x86_64)",
        ),
    )
    line = summary.line()
    assert line.startswith("portfolio: scored 90 rows, quarantined 10, in 2.0 s (50 rows/s)")
    assert "model credit_scoring:v1, run_id abc" in line
    assert line.endswith("(an executor could not use the compiled forest)")


def test_the_direct_path_cuts_row_groups_into_bounded_splits_and_types_columns_as_spark(
    tmp_path, monkeypatch
):
    import pyarrow.parquet as pq
    from pyspark.sql import types as spark_types

    from scoring.portfolio import parquet_input

    table = pa.table(
        {"id": pa.array(range(10), pa.int64()), "JOB": pa.array(["a"] * 10).dictionary_encode()}
    )
    pq.write_table(table, tmp_path / "part-0.parquet", row_group_size=3)  # groups 3, 3, 3, 1
    (tmp_path / "_SUCCESS").write_text("")  # skipped, as Spark skips it
    monkeypatch.setattr(parquet_input, "SPLIT_ROWS", 6)
    opened = parquet_input.open_parquet(str(tmp_path), {"id", "JOB"})
    assert [(s.index, s.row_groups, s.rows) for s in opened.splits] == [
        (0, (0, 1), 6),
        (1, (2, 3), 4),
    ]
    assert opened.schema["JOB"].dataType == spark_types.StringType()  # dictionary text is text


def test_the_direct_reader_hands_dictionary_text_over_as_text_and_leaves_the_rest(tmp_path):
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from scoring.portfolio.direct import Reading, read_split
    from scoring.portfolio.parquet_input import Split

    table = pa.table(
        {
            "id": pa.array(range(5), pa.int64()),
            "AMOUNT": pa.array([0.5, None, 2.0, 3.0, 4.0]),
            "JOB": pa.array(["a", "b", None, "a", "b"]).dictionary_encode(),
        }
    )
    pq.write_table(table, tmp_path / "part-0.parquet")  # pandas categories are written so
    schema = pa.schema([("id", pa.int64()), ("JOB", pa.string()), ("AMOUNT", pa.float64())])
    split = Split(0, str(tmp_path / "part-0.parquet"), (0,), 5)
    (read,) = read_split(split, Reading(pafs.LocalFileSystem(), schema))
    assert read.schema == schema  # in the reading's order, typed as Spark's reader types them
    assert read.column("JOB").to_pylist() == ["a", "b", None, "a", "b"]
    assert read.column("AMOUNT").to_pylist() == [0.5, None, 2.0, 3.0, 4.0]


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda d: (d / "k=1").mkdir(), "sub-folders"),
        (lambda d: pq_write(d / "part-1.parquet", pa.array([1.5])), "columns differ"),
        (lambda d: pq_write(d / "part-1.parquet", pa.array([1], pa.uint8())), "its own type"),
    ],
)
def test_the_direct_path_leaves_to_spark_what_it_cannot_read_as_spark_does(tmp_path, make, why):
    from scoring.portfolio.parquet_input import NotDirect, open_parquet

    pq_write(tmp_path / "part-0.parquet", pa.array([1], pa.int64()))
    make(tmp_path)
    with pytest.raises(NotDirect, match=why):
        open_parquet(str(tmp_path), {"id"})
    with pytest.raises(NotDirect, match="pyarrow cannot open"):
        open_parquet("s3a://bucket/book", {"id"})


def pq_write(path, ids: pa.Array) -> None:
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ids}), path)


def test_reading_ahead_keeps_the_order_raises_in_order_and_stops_when_the_caller_does():
    import threading

    from scoring.portfolio.direct import read_ahead

    assert list(read_ahead(iter(range(5)))) == [0, 1, 2, 3, 4]
    assert list(read_ahead(iter([]))) == []

    def failing():
        yield 1
        raise OSError("disk gone")

    ahead = read_ahead(failing())
    assert next(ahead) == 1  # the error comes after the batches read before it
    with pytest.raises(OSError, match="disk gone"):
        next(ahead)

    produced, readers = [], set()

    def counted():
        for i in range(100):
            readers.add(threading.current_thread().name)
            produced.append(i)
            yield i

    ahead = read_ahead(counted())
    assert next(ahead) == 0
    ahead.close()
    assert produced == [0, 1]  # one batch read ahead, none after the caller stopped
    assert all(name.startswith("read-ahead") for name in readers)  # read off the caller's thread
