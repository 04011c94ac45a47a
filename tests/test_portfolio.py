"""The portfolio job (`python -m scoring.portfolio`) on a real Spark engine, `local[2]`, one
session for the module: for the same rows its answers are the service's (in process, the
`client` fixture) to 1e-9, decisions and reasons byte for byte; rows the service would refuse
are quarantined with the service's message for that row; a whole-input problem fails the job
before any work with the service's message; output is never half written or overwritten
unasked. The categorical model's equality test is in test_portfolio_categorical.py."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loadtest.payloads import arrow_stream
from scoring.portfolio import cli
from scoring.serving.edge.arrow_route import PATH as ARROW_PATH
from scoring.serving.forms.arrow_stream import ARROW_STREAM
from tests.portfolio_spark import needs_java, read_output, shared_session, write_portfolio

pytestmark = [needs_java, pytest.mark.timeout(600)]

ID = "application_id"


@pytest.fixture(scope="module")
def spark():
    return shared_session()


def _refusal(client, table: pa.Table) -> dict:
    """What /predict_arrow answers for `table` as a body (the id column left out)."""
    body = arrow_stream(table.drop_columns([ID]) if ID in table.column_names else table)
    answer = client.post(ARROW_PATH, content=body, headers={"content-type": ARROW_STREAM})
    assert answer.status_code == 400, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def portfolio(tmp_path_factory, demo_rows) -> dict:
    """200 good rows and three the service refuses: an unseen category, an integer feature
    missing, a float that is NaN (not null)."""
    rows = [dict(row) for row in demo_rows[:203]]
    bad = {
        200: ("NAME_CONTRACT_TYPE", "Mortgage"),
        201: ("DAYS_BIRTH", None),
        202: ("AMT_CREDIT", math.nan),
    }
    for index, (name, value) in bad.items():
        rows[index][name] = value
    path = tmp_path_factory.mktemp("portfolio") / "book.parquet"
    ids = [1000 + i for i in range(len(rows))]
    write_portfolio(path, rows, ids)
    return {"path": path, "rows": rows[:200], "ids": ids, "bad": sorted(bad)}


@pytest.fixture(scope="module")
def scored(spark, portfolio, tmp_path_factory, production_model) -> dict:
    """The job run once on the portfolio, reasons asked for as the service gives them."""
    import service

    out = tmp_path_factory.mktemp("scored") / "out"
    args = ["--input", str(portfolio["path"]), "--output", str(out), "--id-column", ID]
    args += ["--reasons", str(service.SETTINGS.reason_count)]
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        code = cli.main(args, spark=spark)
    return {"code": code, "out": out, "stdout": capture.getvalue()}


def test_scored_rows_equal_the_services_predict_answers(scored, portfolio, client):
    assert scored["code"] == 0
    output = read_output(scored["out"])
    good = output[output[ID] < 1200]
    answers = client.post("/predict", json={"applications": portfolio["rows"]}).json()
    assert len(good) == len(answers) == 200
    for (_, row), answer in zip(good.iterrows(), answers, strict=True):
        assert row["probability_of_default"] == pytest.approx(
            answer["probability_of_default"], abs=1e-9
        )
        assert row["decision"] == answer["decision"]
        assert row["threshold"] == answer["threshold"]
        assert row["model"] == answer["model"]
    assert set(output["run_id"]) == {client.get("/version").json()["run_id"]}
    assert {"reject", "approve"} <= set(output["decision"])  # both decisions exercised


def test_reasons_are_byte_identical_to_the_services_file_reasons(
    scored, portfolio, client, tmp_path
):
    upload = tmp_path / "good.parquet"
    pq.write_table(pa.Table.from_pylist(portfolio["rows"]), upload)
    files = {"file": (upload.name, upload.read_bytes())}
    answer = client.post("/predict_file", files=files, data={"reasons": "true"})
    assert answer.status_code == 200, answer.text
    # As Arrow gives them: the text, or None (pandas would show a missing text as NaN).
    expected = pq.read_table(io.BytesIO(answer.content))["reasons"].to_pylist()
    output = pq.read_table(scored["out"]).sort_by(ID).to_pylist()
    found = [row["reasons"] for row in output if row[ID] < 1200]
    assert found == expected
    assert any(text is not None for text in found)
    assert None in found


def test_refused_rows_go_to_quarantine_with_the_services_message_for_each_row(
    scored, portfolio, client
):
    quarantine = pd.read_parquet(scored["out"] / "_quarantine").sort_values(ID, ignore_index=True)
    assert quarantine.columns.tolist() == [ID, "field", "error"]
    table = pq.read_table(portfolio["path"])
    expected = []
    for index in portfolio["bad"]:
        refusal = _refusal(client, table.slice(index, 1))
        expected.append((portfolio["ids"][index], refusal["field"], refusal["error"]))
    assert list(quarantine.itertuples(index=False, name=None)) == expected
    # No row vanished and none is in both.
    output = read_output(scored["out"])
    assert len(output) + len(quarantine) == len(portfolio["ids"])
    assert not set(output[ID]) & set(quarantine[ID])


def test_the_closing_line_counts_rows_and_names_the_model_run_and_predictor(scored, client):
    version = client.get("/version").json()
    (line,) = scored["stdout"].strip().splitlines()
    assert line.startswith("portfolio: scored 200 rows, quarantined 3, in ")
    assert "rows/s" in line
    assert f"model {version['model_tag']}, run_id {version['run_id']}" in line
    assert line.endswith(f"predictor {version['predictor']}")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda t: t.drop_columns(["EXT_SOURCE_2"]), id="missing-feature"),
        pytest.param(
            lambda t: t.set_column(
                t.column_names.index("AMT_CREDIT"), "AMT_CREDIT", t["AMT_CREDIT"].cast(pa.string())
            ),
            id="number-as-text",
        ),
    ],
)
def test_a_whole_input_problem_fails_before_any_work_with_the_services_message(
    spark, portfolio, client, tmp_path, capsys, change
):
    table = change(pq.read_table(portfolio["path"]).slice(0, 5))
    path = tmp_path / "broken.parquet"
    pq.write_table(table, path)
    out = tmp_path / "out"
    code = cli.main(["--input", str(path), "--output", str(out), "--id-column", ID], spark=spark)
    assert code == 2
    err = capsys.readouterr().err
    assert err == f"portfolio: cannot score: {_refusal(client, table)['error']}\n"
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["broken.parquet"]  # no staging left behind


def test_existing_output_is_refused_unless_overwrite_is_asked(spark, portfolio, tmp_path, capsys):
    small = tmp_path / "small.parquet"
    pq.write_table(pq.read_table(portfolio["path"]).slice(0, 10), small)
    out = tmp_path / "out"
    args = ["--input", str(small), "--output", str(out), "--id-column", ID]
    assert cli.main(args, spark=spark) == 0
    first = sorted(p.name for p in out.iterdir())
    assert "_SUCCESS" in first
    assert "_quarantine" in first
    capsys.readouterr()
    assert cli.main(args, spark=spark) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == first  # untouched
    assert cli.main([*args, "--overwrite"], spark=spark) == 0
    assert len(read_output(out)) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "small.parquet"]


def test_a_job_that_fails_midway_leaves_no_output(spark, portfolio, tmp_path, capsys):
    """Two files whose AMT_CREDIT types disagree: Spark plans with the first file's schema and
    the scan of the second fails inside the job, after the first was scored."""
    book = tmp_path / "book"
    book.mkdir()
    table = pq.read_table(portfolio["path"]).slice(0, 20)
    pq.write_table(table.slice(0, 10), book / "part-0.parquet")
    other = table.slice(10, 10)
    index = other.column_names.index("AMT_CREDIT")
    pq.write_table(other.set_column(index, "AMT_CREDIT", other["AMT_CREDIT"].cast(pa.string())),
                   book / "part-1.parquet")  # fmt: skip
    out = tmp_path / "out"
    code = cli.main(["--input", str(book), "--output", str(out), "--id-column", ID], spark=spark)
    assert code == 1
    assert "the job failed, nothing written" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book"]  # no output, no staging


def test_a_direct_path_job_whose_data_breaks_midway_leaves_no_output(
    spark, portfolio, tmp_path, capsys
):
    """The second of two files has a sound footer (the driver plans the direct path with it)
    and a broken data page: its task fails after the first file's task has written its parts."""
    book = tmp_path / "book"
    book.mkdir()
    table = pq.read_table(portfolio["path"]).slice(0, 20)
    pq.write_table(table.slice(0, 10), book / "part-0.parquet")
    broken = book / "part-1.parquet"
    pq.write_table(table.slice(10, 10), broken)
    data = bytearray(broken.read_bytes())
    data[4:68] = b"\xff" * 64  # the first page header, right after the magic bytes
    broken.write_bytes(bytes(data))
    assert pq.ParquetFile(broken).metadata.num_rows == 10  # the footer still reads
    out = tmp_path / "out"
    code = cli.main(["--input", str(book), "--output", str(out), "--id-column", ID], spark=spark)
    assert code == 1
    err = capsys.readouterr().err
    assert "the job failed, nothing written" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book"]  # no output, no staging


def test_a_csv_portfolio_scores_as_the_parquet_one_and_quarantines_a_line_that_does_not_parse(
    spark, portfolio, scored, tmp_path
):
    frame = pq.read_table(portfolio["path"]).slice(0, 30).to_pandas()
    frame[ID] = frame[ID].astype(str)
    frame["AMT_CREDIT"] = frame["AMT_CREDIT"].astype(object)
    frame.loc[5, "AMT_CREDIT"] = "12 000"  # not a number: the line is quarantined, not dropped
    path = tmp_path / "book.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "out"
    assert (
        cli.main(["--input", str(path), "--output", str(out), "--id-column", ID], spark=spark) == 0
    )
    output = pd.read_parquet(out).sort_values(ID, ignore_index=True)
    parquet = read_output(scored["out"])
    expected = parquet[parquet[ID].astype(str).isin(set(output[ID]))]
    assert len(output) == 29
    assert output["probability_of_default"].tolist() == pytest.approx(
        expected["probability_of_default"].tolist(), abs=1e-9
    )
    assert output["decision"].tolist() == expected["decision"].tolist()
    quarantine = pd.read_parquet(out / "_quarantine")
    assert quarantine[ID].tolist() == [frame.loc[5, ID]]
    assert quarantine["error"].iloc[0].startswith("the line does not parse: ")


def test_the_direct_parquet_path_writes_what_the_dataframe_path_writes(
    spark, portfolio, scored, tmp_path
):
    """The module's run read the Parquet directly (pyarrow in each task); Spark's DataFrame
    reader and mapInArrow on the same input give the same columns, types, rows and quarantine."""
    out = tmp_path / "out"
    args = ["--input", str(portfolio["path"]), "--output", str(out), "--id-column", ID]
    import service

    args += ["--reasons", str(service.SETTINGS.reason_count), "--reader", "spark"]
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        assert cli.main(args, spark=spark) == 0
    assert capture.getvalue().strip().endswith("(--reader spark)")
    assert "read by Spark" not in scored["stdout"]  # the module's run took the direct path
    for folder in ("", "_quarantine"):
        direct = pq.read_table(scored["out"] / folder).sort_by(ID)
        through_spark = pq.read_table(out / folder).sort_by(ID)
        assert direct.schema.equals(through_spark.schema, check_metadata=False)
        assert direct.to_pylist() == through_spark.to_pylist()
        assert (scored["out"] / folder / "_SUCCESS").exists()


def test_a_retried_split_replaces_its_first_attempts_files_instead_of_adding_rows(
    spark, portfolio, tmp_path
):
    from scoring.portfolio import direct
    from scoring.portfolio.job import Options, plan_job
    from scoring.portfolio.output import Target
    from scoring.serving.edge.settings import Settings

    target = Target(spark, str(tmp_path / "out"))
    options = Options(str(portfolio["path"]), str(tmp_path / "out"), ids=(ID,))
    planned = plan_job(spark, options, Settings.from_env(), target)
    assert planned.direct is not None
    (split,) = planned.direct.splits
    plan, reading, staging = planned.plan, planned.reading, planned.staging

    def two_attempts(split):  # the first attempt's files are written, then the retry runs
        return [direct.score_split(split, plan, reading, staging, f"attempt-{n}") for n in (0, 1)]

    staging.filesystem.create_dir(staging.quarantine, recursive=True)
    crashed = staging.temporary("attempt-9")  # an attempt that died mid-write
    staging.filesystem.create_dir(crashed, recursive=True)
    (Path(crashed) / "part-00000.parquet").write_bytes(b"PAR")  # a local staging folder
    results = spark.sparkContext.parallelize([split], 1).map(two_attempts).collect()[0]
    assert [(r.scored, r.quarantined) for r in results] == [(200, 3), (200, 3)]
    direct.finish(staging, plan, 200, 3)
    target.commit(False)
    output = pq.read_table(tmp_path / "out")
    quarantine = pq.read_table(tmp_path / "out" / "_quarantine")
    assert sorted(output[ID].to_pylist() + quarantine[ID].to_pylist()) == portfolio["ids"]
    assert not (tmp_path / "out" / "_temporary").exists()
