"""The fence around BentoML's patches (scoring/bentoml_patches/): the version check, and one
canary per patch that fails the day upstream fixes what the patch works around, so the patch can
go. (That each patch is active in a real `bentoml serve` is in tests/test_service_server.py.)"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import inspect
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

import bentoml
import pytest
from _bentoml_impl.serde import JSONSerde, MultipartSerde, Payload
from _bentoml_impl.server import serving
from _bentoml_impl.server.app import ServiceAppFactory
from _bentoml_sdk.io_models import IODescriptor
from bentoml._internal import context as bentoml_context
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from scoring import bentoml_patches
from scoring.bentoml_patches import (
    batching_wait,
    bound_api_methods,
    bulk_bypass,
    form_body,
    json_body,
    malformed_http,
    refusal_logging,
    request_timeout,
    worker_sockets,
)
from scoring.bentoml_patches.bound_api_methods import UPSTREAM_GET


def test_the_installed_bentoml_is_one_the_patches_were_checked_against():
    bentoml_patches.check_version(bentoml.__version__)


def test_another_bentoml_release_is_refused_with_what_to_recheck():
    with pytest.raises(bentoml_patches.UnsupportedBentoML) as refused:
        bentoml_patches.check_version("1.5.0")
    assert "tests/test_bentoml_patches.py" in str(refused.value)
    assert "1.5.0" in str(refused.value)


def test_every_patch_reports_its_state():
    assert set(bentoml_patches.report()) == {
        "batching_wait",
        "bound_api_methods",
        "bulk_bypass",
        "form_body",
        "json_body",
        "json_response",
        "malformed_http",
        "refusal_logging",
        "request_metrics",
        "request_timeout",
        "response_headers",
        "worker_sockets",
    }


def test_canary_upstream_batching_wait_still_grows_without_bound():
    """BentoML's own optimizer, fed the long waits an overload leaves, keeps that wait as the
    target for every later request. When it no longer does, drop batching_wait.py."""
    upstream = batching_wait.UPSTREAM_OPTIMIZER(max_latency=0.2)
    for n in range(1, 51):
        upstream.o_stat.append((n % 8 + 1, 0.001 * (n % 8 + 1), 0.300))  # 300 ms waits
    upstream.trigger_refresh()
    assert upstream.wait > 0.1, "upstream bounds the batching wait now: remove batching_wait.py"


async def _bulk_waits_for_the_batch_in_flight(dispatcher_class: type) -> bool:
    """A one-row request is being scored (held until released) when a 500-row request arrives:
    True when the 500-row request is answered only after the one-row batch is released."""
    release, in_flight = asyncio.Event(), asyncio.Event()

    async def score(batches):
        if len(batches[0]) == 1:
            in_flight.set()
            await release.wait()
        return [len(batch) for batch in batches]

    dispatcher = dispatcher_class(
        max_latency_in_ms=10_000, max_batch_size=2048, fallback=lambda: None, get_batch_size=len
    )
    batched = dispatcher(score)
    single = asyncio.ensure_future(batched([0.5]))
    await in_flight.wait()
    bulk = asyncio.ensure_future(batched([0.5] * 500))
    done, _ = await asyncio.wait({bulk}, timeout=1.0)
    release.set()
    # Both answered, each with its own output.
    assert await single == 1
    assert await bulk == 500
    dispatcher.shutdown()
    return not done


class _Scorer:
    @bentoml.api
    def score(self, x: float) -> float:
        return x


def test_canary_upstream_api_methods_are_rebound_on_every_access():
    """BentoML's APIMethod builds a new wrapper (a signature, functools.wraps) per lookup, and
    the server looks each up twice per request. When two lookups give the same object, drop
    bound_api_methods.py."""
    instance = _Scorer()
    instance.__self_proxy__ = None  # as before the server sets the instance up
    method = _Scorer.__dict__["score"]
    first, second = UPSTREAM_GET(method, instance, _Scorer), UPSTREAM_GET(method, instance, _Scorer)
    assert first is not second, "upstream binds API methods once now: drop bound_api_methods.py"


def test_patched_api_methods_are_bound_once_after_the_server_set_the_instance_up():
    instance = _Scorer()
    assert bound_api_methods._get_once(_Scorer.__dict__["score"], instance, _Scorer) is not (
        bound_api_methods._get_once(_Scorer.__dict__["score"], instance, _Scorer)
    )  # before: nothing kept, the proxy does not exist yet
    instance.__self_proxy__ = SimpleNamespace(score=lambda x: x)  # BentoML's proxy, stood in for
    first = bound_api_methods._get_once(_Scorer.__dict__["score"], instance, _Scorer)
    assert vars(instance)["score"] is first
    assert first.local(2.0) == 2.0


def test_canary_upstream_dispatcher_still_queues_a_bulk_request_behind_the_batch_in_flight():
    """BentoML scores one batch at a time per API and queues every request behind it. When a
    500-row request no longer waits for a one-row batch, drop bulk_bypass.py."""
    waited = asyncio.run(_bulk_waits_for_the_batch_in_flight(bulk_bypass.UPSTREAM_DISPATCHER))
    assert waited, "upstream no longer queues bulk requests behind the batch: drop bulk_bypass.py"


def test_patched_dispatcher_scores_a_bulk_request_beside_the_batch_in_flight():
    bulk_bypass.BulkBypassDispatcher.bulk_rows = 64
    waited = asyncio.run(_bulk_waits_for_the_batch_in_flight(bulk_bypass.BulkBypassDispatcher))
    assert not waited


async def _ok(_):
    return PlainTextResponse("ok")


class UpstreamTimeoutMiddleware(TimeoutMiddleware):
    __call__ = request_timeout.UPSTREAM_CALL


def test_canary_upstream_timeout_middleware_still_leaves_a_timer_per_request():
    """BentoML's own TimeoutMiddleware, unpatched. When it stops leaking timers, drop
    request_timeout.py."""
    app = Starlette(
        routes=[Route("/", _ok)],
        middleware=[Middleware(UpstreamTimeoutMiddleware, timeout=30)],
    )
    with TestClient(app) as client:
        gc.collect()
        before = sum(isinstance(o, asyncio.TimerHandle) for o in gc.get_objects())
        for _ in range(200):
            assert client.get("/").text == "ok"
        gc.collect()
        after = sum(isinstance(o, asyncio.TimerHandle) for o in gc.get_objects())
    assert after - before >= 150, "upstream cancels its timer now: remove request_timeout.py"


def test_canary_upstream_still_gives_all_workers_one_shared_api_socket():
    """`bentoml serve` builds the API socket without SO_REUSEPORT and hands that one descriptor
    to every worker. When it gives each worker its own socket, drop worker_sockets.py."""
    assert serving.API_SERVER_NAME == worker_sockets.API_SOCKET_NAME
    source = inspect.getsource(serving.serve_http)
    start = source.index("name=API_SERVER_NAME")
    api_socket = source[source.rindex("CircusSocket(", 0, start) : source.index(")", start)]
    assert "reuseport" not in api_socket.lower(), "upstream uses SO_REUSEPORT now"
    # Every worker is started with `--fd` of that same socket.
    assert 'f"$(circus.sockets.{API_SERVER_NAME})"' in source, "workers no longer share its fd"


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    AMT_CREDIT: float | None
    CNT_CHILDREN: int
    ORGANIZATION_TYPE: str | None = None


def _score(self, rows: list[Row], top_k: Annotated[int, Field(ge=1, le=200)] = 5) -> None:
    """A stand-in API function: BentoML builds its input model from this signature."""


def test_canary_upstream_json_serde_still_keeps_the_last_value_of_a_repeated_key():
    """BentoML's own JSON parsing of a request body, unpatched. When it refuses a repeated key,
    drop the repeated-key half of json_body.py."""
    spec = json_body.UPSTREAM_FROM_INPUT(IODescriptor, _score, skip_self=True)
    body = b'{"rows": [{"AMT_CREDIT": 1000, "CNT_CHILDREN": 0, "AMT_CREDIT": 900000}]}'
    parsed = json_body.UPSTREAM_DESERIALIZE_MODEL(JSONSerde(), Payload((body,)), spec)
    assert parsed.rows[0].AMT_CREDIT == 900000, "upstream refuses repeated keys now"


def test_canary_upstream_input_models_still_ignore_unknown_fields():
    """The input model BentoML generates from an API's signature, unpatched. When it forbids
    unknown fields, drop the unknown-field half of json_body.py."""
    spec = json_body.UPSTREAM_FROM_INPUT(IODescriptor, _score, skip_self=True)
    parsed = spec.model_validate_json('{"rows": [], "top_k ": 3}')
    assert parsed.top_k == 5, "upstream refuses unknown top-level fields now"


def _input_spec() -> type[IODescriptor]:
    return json_body._from_input(IODescriptor, _score, skip_self=True)


def _deserialize(body: bytes) -> object:
    return json_body._deserialize_model(JSONSerde(), Payload((body,)), _input_spec())


def _score_marked(
    self,
    rows: Annotated[
        list[Row], json_body.WrittenKeys(lambda rows: sum(len(r.model_fields_set) for r in rows))
    ],
    top_k: int = 5,
) -> None:
    """The stand-in, its rows marked with the keys they held."""


@pytest.mark.parametrize(
    ("body", "cleared", "refused"),
    [
        (
            b'{"rows": [{"AMT_CREDIT": 1, "CNT_CHILDREN": 0},'
            b' {"AMT_CREDIT": null, "CNT_CHILDREN": 2}],'
            b' "top_k": 3}',
            1,
            [],
        ),
        (
            b'{"rows": [{"AMT_CREDIT": 1, "CNT_CHILDREN": 1, "ORGANIZATION_TYPE": "Trade: 3"}]}',
            1,
            [],
        ),
        (
            b'{"rows": [{"AMT_CREDIT": 1, "CNT_CHILDREN": 1, "ORGANIZATION_TYPE": "Trade : 3"}]}',
            0,
            [],
        ),
        (
            b'{"rows": [{"CNT_CHILDREN": 1, "AMT_CREDIT": 2, "CNT_CHILDREN": 1}]}',
            0,
            ["repeated_key"],
        ),
        (b'{"rows": [], "top_k": 3, "top_k": 4}', 0, ["repeated_key"]),
    ],
    ids=[
        "no repeat",
        "colon in a string",
        "colon after a space in a string",
        "repeat in a row",
        "repeat at the top",
    ],
)
def test_marked_fields_clear_a_body_by_its_key_count_and_nothing_else(body, cleared, refused):
    """The count only clears a body whose colons are all keys the model holds, colons inside
    strings set aside where they are told apart (after a letter); otherwise (after a space)
    the body is parsed again. A repeat is still found and named; a colon is never one."""
    spec = json_body._from_input(IODescriptor, _score_marked, skip_self=True)
    before = json_body.report()["bodies_cleared_by_key_count"]
    try:
        json_body._deserialize_model(JSONSerde(), Payload((body,)), spec)
        errors = []
    except ValidationError as error:
        errors = [e["type"] for e in error.errors()]
    assert errors == refused
    assert json_body.report()["bodies_cleared_by_key_count"] - before == cleared


def test_patched_input_models_refuse_unknown_fields_naming_them():
    with pytest.raises(ValidationError) as refused:
        _deserialize(b'{"rows": [], "top_k ": 3}')
    assert [(e["type"], e["loc"]) for e in refused.value.errors()] == [
        ("extra_forbidden", ("top_k ",))
    ]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"rows": [], "top_k": 3, "top_k": 4}', ("top_k",)),
        (
            b'{"rows": [{"CNT_CHILDREN": 1, "AMT_CREDIT": 2, "CNT_CHILDREN": 1}]}',
            ("rows", 0, "CNT_CHILDREN"),
        ),
        (
            b'{"rows": [{"AMT_CREDIT": 1, "CNT_CHILDREN" : 0, "CNT_CHILDREN"\n:\t0}]}',
            ("rows", 0, "CNT_CHILDREN"),
        ),
        (
            b'{"rows": [{"AMT_CREDIT": 1e400, "CNT_CHILDREN": 0, "AMT_CREDIT": 1}]}',
            ("rows", 0, "AMT_CREDIT"),
        ),
        (
            b'{"rows": [{"ORGANIZATION_TYPE": "Trade: 3", "ORGANIZATION_TYPE": "a"}]}',
            ("rows", 0, "ORGANIZATION_TYPE"),
        ),
        (
            b'{"rows": [{"AMT_CREDIT": 1, "AMT_CR\\u0045DIT": 2, "CNT_CHILDREN": 0}]}',
            ("rows", 0, "AMT_CREDIT"),
        ),
    ],
    ids=[
        "top level",
        "in a row",
        "odd whitespace",
        "beyond orjson",
        "colon in a string",
        "escaped",
    ],
)
def test_patched_json_serde_refuses_a_repeated_key_naming_where(body, where):
    with pytest.raises(ValidationError) as refused:
        _deserialize(body)
    errors = refused.value.errors()
    assert [(e["type"], e["loc"]) for e in errors] == [("repeated_key", where)]


@pytest.mark.parametrize(
    "body",
    [
        b'{"rows": [{"AMT_CREDIT": 1, "CNT_CHILDREN": 0}], "top_k": 3}',
        b'{"rows": [{"AMT_CREDIT": null, "CNT_CHILDREN": 2.0, "ORGANIZATION_TYPE": "Trade: 3"}]}',
        b'{"rows": [{"AMT_CREDIT": 1e400, "CNT_CHILDREN": 0}]}',
        b'{"rows": [{"AMT_CREDIT": NaN, "CNT_CHILDREN": 0}]}',
        b'{"rows": [{"AMT_CREDIT": 123456789012345678901234567890, "CNT_CHILDREN": 0}]}',
        b'{"rows": [{"AMT_CREDIT": true, "CNT_CHILDREN": "1"}]}',
        b'{"rows": [{"AMT_CREDIT": 1, "CNT_CHILDREN": 0, "SHOE_SIZE": 42}]}',
        b'{"rows": {"AMT_CREDIT": 1}}',
        b"[1, 2]",
        b"",
        b'{"rows": [',
        b'{"rows": []} trailing',
        b'{"rows": ["\xff"]}',
        b"[" * 300 + b"]" * 300,
    ],
)
def test_patched_json_serde_validates_bodies_without_repeats_exactly_as_upstream(body):
    """Same model or the same errors: the patch adds the repeated-key check and nothing else
    (numbers, NaN and infinity, malformed JSON and nesting limits included)."""
    spec = _input_spec()

    def outcome(deserialize):
        try:
            return repr(deserialize(JSONSerde(), Payload((body,)), spec))
        except ValidationError as error:
            return error.errors(include_url=False, include_input=False)

    assert outcome(json_body._deserialize_model) == outcome(json_body.UPSTREAM_DESERIALIZE_MODEL)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('ab:" \\\n{}[],\u00e9'), max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet='ab:" ', max_size=3), children, max_size=4)
    ),
    max_leaves=20,
)
SEPARATORS = st.sampled_from([(",", ":"), (", ", ": "), (" , ", " : "), (",\n", "\n:\t")])


def _write(value: object, separators: tuple[str, str], repeat: int | None = None) -> str:
    """JSON text of `value`; with `repeat`, that object (in document order) repeats its first
    key."""
    counter = [0]

    def write(node: object) -> str:
        item, key = separators
        if isinstance(node, dict):
            index = counter[0]
            counter[0] += 1
            pairs = [json.dumps(k) + key + write(v) for k, v in node.items()]
            if index == repeat and node:
                first = next(iter(node))
                pairs.append(json.dumps(first) + key + json.dumps("again"))
            return "{" + item.join(pairs) + "}"
        if isinstance(node, list):
            return "[" + item.join(write(v) for v in node) + "]"
        return json.dumps(node)

    return write(value)


@settings(max_examples=300, deadline=None)
@given(document=JSON_VALUES, separators=SEPARATORS)
def test_the_repeated_key_check_finds_none_where_there_is_none(document, separators):
    assert json_body.repeated_keys(_write(document, separators).encode()) == []


@settings(max_examples=300, deadline=None)
@given(document=JSON_VALUES, separators=SEPARATORS, data=st.data())
def test_the_repeated_key_check_finds_every_repeat(document, separators, data):
    objects = _objects_with_keys(document)
    if not objects:
        return
    repeat = data.draw(st.integers(0, len(objects) - 1))
    found = json_body.repeated_keys(_write(document, separators, objects[repeat]).encode())
    assert found, "a repeated key went unnoticed"
    assert len(found) == 1


def _objects_with_keys(document: object) -> list[int]:
    """Document-order indexes of the objects that have at least one key."""
    indexes, counter = [], [0]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node:
                indexes.append(counter[0])
            counter[0] += 1
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return indexes


def test_bodies_that_cannot_be_checked_are_refused_not_scored_unchecked(monkeypatch):
    monkeypatch.setattr(json_body, "repeated_keys", lambda body: None)
    with pytest.raises(ValidationError) as refused:
        _deserialize(b'{"rows": []}')
    assert refused.value.errors()[0]["type"] == "json_invalid"


def _upload(self, file: Path) -> None:
    """A stand-in file-upload API function."""


def _form(*parts: tuple[str, bytes], files: bool = True) -> bytes:
    """A multipart body: file parts, or with `files=False` text fields (no filename), as
    `curl -F name=value` sends them."""
    filename = b'; filename="x.csv"' if files else b""
    return (
        b"".join(
            b'--b\r\nContent-Disposition: form-data; name="%s"%s\r\n\r\n%s\r\n'
            % (name.encode(), filename, content)
            for name, content in parts
        )
        + b"--b--\r\n"
    )


def _request(body: bytes, content_type: str = "multipart/form-data; boundary=b") -> Request:
    """A request as BentoML's app receives it ("app" in the scope: Starlette then raises an
    HTTPException for a multipart body it cannot parse)."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    headers = [(b"content-type", content_type.encode())]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "app": None}
    return Request(scope, receive)


def _parse(parse, request: Request, api=_upload) -> object:
    """`parse` (BentoML's multipart parsing, or the patched one) run as in a request, for the
    API function `api`."""
    spec = json_body.UPSTREAM_FROM_INPUT(IODescriptor, api, skip_self=True)

    async def in_request() -> object:
        token = bentoml_context._request_var.set(request)
        try:
            return await parse(MultipartSerde(), request, spec)
        finally:
            bentoml_context._request_var.reset(token)

    return asyncio.run(in_request())


def test_canary_upstream_answers_an_unparsable_upload_with_a_server_error():
    """Starlette refuses a multipart body without a boundary with an HTTPException(400), and
    BentoML's endpoint wrapper turns anything but its own exceptions into a 500. When either
    changes, re-check form_body.py."""
    with pytest.raises(HTTPException):
        _parse(form_body.UPSTREAM_PARSE_REQUEST, _request(b"x", "multipart/form-data"))
    wrapper = inspect.getsource(ServiceAppFactory.api_endpoint_wrapper)
    assert "HTTPException" not in wrapper, "upstream answers HTTPException itself now"


def test_canary_upstream_fails_on_an_unknown_binary_form_field():
    """BentoML feeds a form field its API does not take to json.loads, whose
    UnicodeDecodeError escapes as a 500. When it does not, re-check form_body.py."""
    with pytest.raises(UnicodeDecodeError):
        _parse(form_body.UPSTREAM_PARSE_REQUEST, _request(_form(("sheet", b"\x00\x01garbage"))))


@pytest.mark.parametrize(
    ("request_", "kind", "loc"),
    [
        (lambda: _request(b"x", "multipart/form-data"), "multipart_invalid", ()),
        (lambda: _request(_form(("sheet", b"\x00\x01garbage"))), "extra_forbidden", ("sheet",)),
        (
            lambda: _request(_form(("file", b"a,b\n1,2"), ("file", b"a,b\n3,4"))),
            "repeated_key",
            ("file",),
        ),
    ],
    ids=["no boundary", "unknown binary field", "file sent twice"],
)
def test_patched_multipart_parsing_refuses_a_bad_upload_as_a_validation_error(request_, kind, loc):
    with pytest.raises(ValidationError) as refused:
        _parse(form_body._parse_request, request_())
    assert [(e["type"], e["loc"]) for e in refused.value.errors()] == [(kind, loc)]


def _upload_flagged(self, file: Path, flag: bool = False) -> None:
    """A stand-in file-upload API function that takes a text field too."""


def _fetches(monkeypatch) -> list[str]:
    """The URLs an httpx.AsyncClient is asked to get from now on (none is actually fetched:
    each answers 404)."""
    import httpx

    fetched: list[str] = []

    async def get(client, url, *args, **kwargs):
        fetched.append(str(url))
        return httpx.Response(404)

    monkeypatch.setattr(httpx.AsyncClient, "get", get)
    return fetched


def test_canary_upstream_fetches_a_file_field_sent_as_text(monkeypatch):
    """BentoML takes the text of a file field as a URL and downloads it (uncapped). When it
    no longer does, drop the file-field check of form_body.py."""
    fetched = _fetches(monkeypatch)
    with pytest.raises(ValueError, match="Failed to download"):
        _parse(
            form_body.UPSTREAM_PARSE_REQUEST, _request(_form(("file", b"http://x/a"), files=False))
        )
    assert fetched == ["http://x/a"]


def test_canary_upstream_fails_on_a_text_field_json_cannot_nest():
    """BentoML catches only JSONDecodeError from `json.loads` on a text field, so a deeply
    nested value escapes as a 500. When it does not, drop the value check of form_body.py."""
    with pytest.raises(RecursionError):
        _parse(
            form_body.UPSTREAM_PARSE_REQUEST, _request(_form(("flag", b"[" * 100_000), files=False))
        )


@pytest.mark.parametrize(
    ("parts", "kind", "loc"),
    [
        ((("file", b"http://x/a.csv"),), "file_expected", ("file",)),
        ((("file", b"https://example.invalid/a.csv"),), "file_expected", ("file",)),
        ((("file", b"hello"),), "file_expected", ("file",)),
        ((("flag", b"[" * 100_000),), "value_invalid", ("flag",)),
        ((("flag", b"1" * 5000),), "value_invalid", ("flag",)),
    ],
    ids=["url", "https url", "text", "deep nesting", "too many digits"],
)
def test_patched_multipart_parsing_refuses_a_text_file_field_or_unreadable_value_unfetched(
    monkeypatch, parts, kind, loc
):
    fetched = _fetches(monkeypatch)
    with pytest.raises(ValidationError) as refused:
        _parse(form_body._parse_request, _request(_form(*parts, files=False)), _upload_flagged)
    assert [(e["type"], e["loc"]) for e in refused.value.errors()] == [(kind, loc)]
    assert fetched == []


def test_patched_multipart_parsing_still_takes_a_file_and_a_text_field():
    request = _request(
        _form(("file", b"a,b\n1,2")).replace(b"--b--\r\n", b"")
        + _form(("flag", b"true"), files=False)
    )
    try:
        parsed = _parse(form_body._parse_request, request, _upload_flagged)
        assert Path(parsed.file).read_bytes() == b"a,b\n1,2"
        assert parsed.flag is True
    finally:
        shutil.rmtree(request.state.temp_dir, ignore_errors=True)


def test_canary_upstream_takes_one_of_two_parts_with_the_same_name():
    """BentoML scores the first `file` part and ignores a second one. When it refuses the
    second, drop the repeated-field check of form_body.py."""
    twice = _request(_form(("file", b"a,b\n1,2"), ("file", b"a,b\n3,4")))
    try:
        parsed = _parse(form_body.UPSTREAM_PARSE_REQUEST, twice)
        assert Path(parsed.file).read_bytes() == b"a,b\n1,2"
    finally:
        shutil.rmtree(twice.state.temp_dir, ignore_errors=True)


# The upstream method's source when response_headers.py was written from it.
UPSTREAM_RESPONSE_HEADERS_SHA256 = (
    "5c3537e5a178f15685e23b6cfd70f69dcf97553b5de53f1e887f9b7f6316e45f"
)


def test_canary_upstream_response_headers_are_unchanged_and_still_injected():
    """response_headers.py copies BentoML's `_add_response_headers` minus its `@inject`: when
    upstream changes that method (or drops the injection), re-read it and update the copy."""
    from scoring.bentoml_patches import response_headers

    upstream = response_headers.UPSTREAM_ADD_RESPONSE_HEADERS
    assert hasattr(upstream, "__wrapped__"), "upstream no longer wraps it with @inject"
    source = inspect.getsource(upstream.__wrapped__)
    assert "Provide[BentoMLContainer.logging_formatting]" in source
    assert hashlib.sha256(source.encode()).hexdigest() == UPSTREAM_RESPONSE_HEADERS_SHA256, (
        "upstream _add_response_headers changed: re-check bentoml_patches/response_headers.py"
    )


@pytest.mark.parametrize("request_id", [None, 0x1234ABCD])
def test_patched_response_headers_equal_upstreams(request_id):
    from types import SimpleNamespace

    from bentoml._internal.context import trace_context
    from starlette.responses import Response

    from scoring.bentoml_patches import response_headers

    factory = SimpleNamespace(service=SimpleNamespace(name="credit_scoring"))
    trace_context.request_id = request_id
    try:
        upstream, patched = Response(b"{}"), Response(b"{}")
        response_headers.UPSTREAM_ADD_RESPONSE_HEADERS(factory, upstream)
        response_headers._add_response_headers(factory, patched)
    finally:
        trace_context.request_id = None
    assert dict(patched.headers) == dict(upstream.headers)
    assert patched.headers["server"] == "BentoML Service/credit_scoring"
    assert ("x-bentoml-request-id" in patched.headers) == (request_id is not None)


def _list_answer(values: list) -> Any:
    """An API's list answer as BentoML builds it from the return annotation."""
    from typing import Literal

    from _bentoml_sdk.io_models import ensure_io_descriptor
    from pydantic import BaseModel

    class Answer(BaseModel):
        probability_of_default: float
        decision: Literal["approve", "reject"]
        note: str | int | None = None

    return ensure_io_descriptor(list[Answer])([Answer.model_construct(**v) for v in values])


ANSWERS = [
    {"probability_of_default": 0.1 + i / 7, "decision": "reject" if i % 2 else "approve"}
    for i in range(5)
] + [
    {"probability_of_default": 1e-05, "decision": "approve", "note": "Trade: type 3, «é»"},
    {"probability_of_default": 0.5, "decision": "reject", "note": None},
]


def test_canary_upstream_list_answers_are_still_written_by_the_standard_library():
    """json_response.py replaces `json.dumps` in BentoML's list answers: when upstream writes
    them another way (its separators are the standard library's), re-check the patch."""
    from scoring.bentoml_patches import json_response

    upstream = json_response.UPSTREAM_MODEL_DUMP_JSON(_list_answer(ANSWERS))
    assert upstream == json.dumps(_list_answer(ANSWERS).model_dump(mode="json"))
    assert '", "' in upstream, "upstream no longer writes with json.dumps' separators"


def test_patched_list_answers_are_the_same_document_as_upstreams():
    from scoring.bentoml_patches import json_response

    answer = _list_answer(ANSWERS)
    patched = json_response._model_dump_json(answer)
    assert json.loads(patched) == json.loads(json_response.UPSTREAM_MODEL_DUMP_JSON(answer))
    assert json.loads(patched)[5]["note"] == "Trade: type 3, «é»"
    assert '", "' not in patched  # written by orjson, not the standard library


def test_a_value_orjson_cannot_write_is_written_by_the_standard_library():
    from scoring.bentoml_patches import json_response

    before = json_response.report()["by_the_standard_library"]
    huge = [{"probability_of_default": 0.5, "decision": "approve", "note": 2**70}]
    written = json_response._model_dump_json(_list_answer(huge))
    assert json.loads(written)[0]["note"] == 2**70
    assert json_response.report()["by_the_standard_library"] == before + 1


def test_canary_upstream_metrics_middleware_still_labels_each_metric_on_every_request():
    """request_metrics.py caches the `.labels(...)` lookups BentoML's metrics middleware makes
    per request: when upstream stops making them (or renames the metrics), re-check it."""
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    from scoring.bentoml_patches import request_metrics

    source = inspect.getsource(RunnerTrafficMetricsMiddleware.__call__)
    for name in request_metrics.PER_REQUEST:
        assert f"self.{name}.labels(" in source, f"upstream no longer labels {name} per request"
    setup = inspect.getsource(request_metrics.UPSTREAM_SETUP.__wrapped__)
    for name in request_metrics.PER_REQUEST:
        assert f"self.{name} = " in setup, f"upstream _setup no longer creates {name}"


def test_remembered_label_sets_are_prometheus_own_children_counted_the_same():
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    from scoring.bentoml_patches import request_metrics

    registry = CollectorRegistry()
    names = ["endpoint", "http_response_code"]
    metrics = {
        "metrics_last_request_timestamp": Gauge("t", "t", ["service_name"], registry=registry),
        "metrics_request_in_progress": Gauge("p", "p", ["endpoint"], registry=registry),
        "metrics_request_total": Counter("n", "n", names, registry=registry),
        "metrics_request_duration": Histogram("d", "d", names, registry=registry),
    }
    middleware = SimpleNamespace(**metrics)
    request_metrics.remember_label_sets(middleware, ["/predict"])
    total = middleware.metrics_request_total
    for _ in range(3):
        total.labels(endpoint="/predict", http_response_code=200).inc()
    total.labels(endpoint="/predict", http_response_code=400).inc()
    upstream_child = Counter.labels(total, endpoint="/predict", http_response_code=200)
    assert total.labels(endpoint="/predict", http_response_code=200) is upstream_child

    def count(endpoint: str, code: str) -> float | None:
        labels = {"endpoint": endpoint, "http_response_code": code}
        return registry.get_sample_value("n_total", labels)

    assert count("/predict", "200") == 3
    assert count("/predict", "400") == 1
    middleware.metrics_last_request_timestamp.labels(service_name="s").set(1)  # no endpoint
    assert registry.get_sample_value("t", {"service_name": "s"}) == 1


def test_paths_that_are_not_routes_are_counted_under_one_endpoint_label():
    """A scan of random paths must not add a series per path (BentoML labels the raw path)."""
    from types import SimpleNamespace

    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    from scoring.bentoml_patches import request_metrics

    registry = CollectorRegistry()
    names = ["endpoint", "http_response_code"]
    middleware = SimpleNamespace(
        metrics_last_request_timestamp=Gauge("t", "t", registry=registry),
        metrics_request_in_progress=Gauge("p", "p", ["endpoint"], registry=registry),
        metrics_request_total=Counter("n", "n", names, registry=registry),
        metrics_request_duration=Histogram("d", "d", names, registry=registry),
    )
    request_metrics.remember_label_sets(middleware, ["/predict", "/version"])
    for path in range(request_metrics.LABEL_SETS * 2):
        middleware.metrics_request_total.labels(
            endpoint=f"/scan-{path}", http_response_code=404
        ).inc()
        middleware.metrics_request_in_progress.labels(endpoint=f"/scan-{path}").inc()
    middleware.metrics_request_total.labels(endpoint="/version", http_response_code=200).inc()
    endpoints = {
        sample.labels["endpoint"]
        for metric in registry.collect()
        for sample in metric.samples
        if "endpoint" in sample.labels
    }
    assert endpoints == {request_metrics.OTHER_ENDPOINT, "/version"}
    other = {"endpoint": request_metrics.OTHER_ENDPOINT, "http_response_code": "404"}
    assert registry.get_sample_value("n_total", other) == request_metrics.LABEL_SETS * 2


def test_the_exact_repeated_key_check_holds_memory_in_proportion_to_the_body():
    """Each node's path was a tuple of the whole nesting: a body of 60,000 leaves under 900
    levels held 212 MB for an 82 KB body. Paths are now links, spelled out only for a repeat,
    which is still found and named (orjson reads this depth; the exact check runs because the
    object inside a list of lists is not in the quick count)."""
    import tracemalloc

    depth, leaves = 900, 60_000
    nested = b"[" * depth + b",".join([b"1"] * leaves) + b"]" * depth
    body = b'{"rows": [[{"a": 1, "a": 2}]], "deep": ' + nested + b"}"
    tracemalloc.start()
    try:
        found = json_body.repeated_keys(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == [(("rows", 0, 0, "a"), 2)]
    assert peak < 40 * len(body), f"{peak / 1e6:.1f} MB for a {len(body) / 1e3:.0f} KB body"


class _Transport:
    """What uvicorn's protocol writes to: kept, so the answer on the wire can be read."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def _httptools_protocol() -> SimpleNamespace:
    return SimpleNamespace(server_state=SimpleNamespace(default_headers=[]), transport=_Transport())


def _h11_protocol() -> SimpleNamespace:
    import h11

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"GARBAGE\r\n\r\n")
    with pytest.raises(h11.RemoteProtocolError):
        conn.next_event()
    return SimpleNamespace(conn=conn, transport=_Transport())


@pytest.mark.parametrize(
    ("upstream", "protocol"),
    [
        (malformed_http.UPSTREAM_HTTPTOOLS_400, _httptools_protocol),
        (malformed_http.UPSTREAM_H11_400, _h11_protocol),
    ],
    ids=["httptools", "h11"],
)
def test_canary_upstream_uvicorn_answers_malformed_http_in_plain_text(upstream, protocol):
    """When uvicorn answers a request its parser cannot read in JSON (or lets the app answer),
    drop malformed_http.py."""
    found = protocol()
    upstream(found, "Invalid HTTP request received.")
    assert b"content-type: text/plain" in found.transport.written.lower()
    assert found.transport.closed


@pytest.mark.parametrize(
    ("patched", "protocol"),
    [
        (malformed_http._httptools_400, _httptools_protocol),
        (malformed_http._h11_400, _h11_protocol),
    ],
    ids=["httptools", "h11"],
)
def test_patched_uvicorn_answers_malformed_http_with_the_json_refusal_and_closes(
    patched, protocol, monkeypatch
):
    body = json.dumps({"error": "e", "field": "body", "detail": []}).encode()
    monkeypatch.setitem(malformed_http._STATE, "body", body)
    found = protocol()
    patched(found, "Invalid HTTP request received.")
    head, _, sent = found.transport.written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert b"content-type: application/json" in head.lower()
    assert sent == body
    assert found.transport.closed


def _validation_error() -> ValidationError:
    class Row(BaseModel):
        amount: float

    try:
        Row.model_validate({"amount": "SECRET-4711"})
    except ValidationError as error:
        return error
    raise AssertionError("not refused")


def _api_request(path: str = "/predict") -> Request:
    return Request(
        {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}
    )


def test_canary_upstream_logs_a_refused_request_with_a_traceback_quoting_its_value(caplog):
    """BentoML logs every exception its API wrapper answers, a caller's 400 too, and pydantic's
    text quotes the value. When it no longer does, drop refusal_logging.py."""
    assert "log_exception" in ServiceAppFactory.api_endpoint_wrapper.__code__.co_names
    with caplog.at_level("ERROR"):
        try:
            raise _validation_error()
        except ValidationError:
            refusal_logging.UPSTREAM_LOG_EXCEPTION(_api_request())
    assert "SECRET-4711" in caplog.text


def test_patched_log_exception_logs_no_refusal_and_a_failure_once(caplog):
    with caplog.at_level("DEBUG"):
        try:
            raise _validation_error()
        except ValidationError:
            refusal_logging._log_exception(_api_request())
        assert caplog.records == []
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            refusal_logging._log_exception(_api_request())
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert caplog.records[0].exc_info is not None or caplog.records[0].exc_text
