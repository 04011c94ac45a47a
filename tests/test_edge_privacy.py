"""The edge's small parts, in process: the tokens file, the private log records, the names a
refusal line may carry. (Against a real `bentoml serve`: tests/test_privacy_server.py.)"""

from __future__ import annotations

import json
import logging
import os

import pytest
from pydantic import BaseModel, ValidationError

from scoring.serving.edge import log_privacy, tokens
from scoring.serving.edge.front_door import UNLISTED, safe_field
from scoring.serving.edge.tokens import TokenFile, TokensError, read_tokens


def test_tokens_are_one_a_line_without_blanks_comments_or_surrounding_space(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("# callers\n\n  alpha  \n\t# old one, removed\nbeta\n\n")
    assert read_tokens(path) == ["alpha", "beta"]


def test_a_token_file_accepts_its_tokens_only(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("alpha\nbeta\n")
    file = TokenFile(path)
    assert [file.accepts(t) for t in (b"alpha", b"beta", b"alph", b"alphaa", b"")] == [
        True,
        True,
        False,
        False,
        False,
    ]


@pytest.mark.parametrize(
    "content", [None, "", "# only a comment\n\n"], ids=["missing", "empty", "comments"]
)
def test_a_tokens_file_without_a_token_stops_the_start(tmp_path, content):
    path = tmp_path / "tokens"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TokensError, match="tokens"):
        TokenFile(path)


def test_a_changed_file_is_read_again_and_a_vanished_one_accepts_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(tokens, "RECHECK_S", 0.0)
    path = tmp_path / "tokens"
    path.write_text("alpha\n")
    file = TokenFile(path)
    path.write_text("alpha\nbeta-longer\n")  # size changes
    assert file.accepts(b"beta-longer")
    replacement = tmp_path / "new"
    replacement.write_text("gamma\n")
    os.replace(replacement, path)  # another inode
    assert (file.accepts(b"alpha"), file.accepts(b"gamma")) == (False, True)
    path.unlink()
    assert not file.accepts(b"gamma"), "a vanished tokens file must not open the service"


def test_tokens_are_kept_as_digests_not_as_text(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("secret-token-value\n")
    file = TokenFile(path)
    assert b"secret-token-value" not in repr(vars(file)).encode()


def _refused() -> ValidationError:
    class Row(BaseModel):
        amount: float

    value = "-".join(("APPLICANT", "VALUE", "99"))  # not in any source line of the traceback
    try:
        Row.model_validate({"amount": value})
    except ValidationError as error:
        return error
    raise AssertionError("not refused")


def _formatted(logger: logging.Logger, formatter: logging.Formatter) -> str:
    """What `logger.exception` writes for a refusal, through `formatter`."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError(" ".join(("scoring", "failed"))) from _refused()
        except RuntimeError as error:
            logger.exception("failed: %s", error)
    finally:
        logger.removeHandler(handler)
    return "\n".join(formatter.format(record) for record in records)


@pytest.fixture
def private_records():
    upstream = logging.getLogRecordFactory()
    log_privacy._STATE["factory"] = None
    log_privacy.install()
    yield
    logging.setLogRecordFactory(upstream)
    log_privacy._STATE["factory"] = None


def test_a_logged_traceback_keeps_its_frames_but_no_message(private_records):
    logger = logging.getLogger("test.privacy.info")
    logger.setLevel(logging.INFO)
    text = _formatted(logger, logging.Formatter())
    assert "APPLICANT-VALUE-99" not in text
    assert "scoring failed" not in text  # an exception argument is written as its type only
    assert "Traceback (most recent call last)" in text
    assert "test_edge_privacy.py" in text  # the frames are kept
    assert "pydantic_core._pydantic_core.ValidationError: (message withheld" in text


def test_at_debug_the_full_traceback_is_kept(private_records):
    logger = logging.getLogger("test.privacy.debug")
    logger.setLevel(logging.DEBUG)
    assert "APPLICANT-VALUE-99" in _formatted(logger, logging.Formatter())


def test_json_lines_are_one_object_with_the_structured_fields(private_records):
    logger = logging.getLogger("test.privacy.json")
    logger.setLevel(logging.INFO)
    text = _formatted(logger, log_privacy.JsonLines())
    assert len(text.splitlines()) == 1
    entry = json.loads(text)
    assert entry["level"] == "ERROR"
    assert "APPLICANT-VALUE-99" not in text
    assert "ValidationError" in entry["traceback"]


@pytest.mark.parametrize(
    ("field", "logged"),
    [
        ("applications.3.AMT_CREDIT", "applications.3.AMT_CREDIT"),
        ("applications.0.SHOE_SIZE", f"applications.0.{UNLISTED}"),
        ("table.data.0.0", "table.data.0.0"),
        ("data[12]", "data[12]"),
        ("Mk-marker value", UNLISTED),
        ("body", "body"),
    ],
)
def test_a_refused_field_is_logged_only_by_names_the_service_knows(field, logged):
    names = frozenset({"applications", "AMT_CREDIT", "table", "data", "body"})
    assert safe_field(field, names) == logged
