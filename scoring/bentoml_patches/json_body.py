"""JSON request bodies that say one thing only: no repeated key, no unknown field.

BentoML 1.4 parses a JSON body with pydantic (`JSONSerde.deserialize_model`), which keeps the
last value of a repeated key without a word, as orjson, msgspec and the standard library do:
`{"AMT_CREDIT": 1000, "AMT_CREDIT": 900000}` was scored at 900000, while a gateway or an audit
log that reads the first value saw 1000. And the input model BentoML generates from an API's
signature (`IODescriptor.from_input`) ignores unknown top-level fields, so `{"applications":
[...], "top_k ": 3}` silently ran with the default top_k. Both are refused here, as 400s naming
the key and where it is, like every other validation error.

How, cheaply: pydantic validates the body exactly as before (its JSON mode: validating an
already parsed document in Python mode saves little, and changes error messages). Then the
colons in the raw bytes are counted: each key is followed by one, and other colons occur only
inside strings, so the count can only exceed the number of keys written. A repeated key leaves
one key fewer in what was parsed, so when the count equals the keys parsed, no object repeated
a key. Where the API's fields say how many keys their validated values held (`WrittenKeys`:
rows of required features), the validated model gives that number directly; otherwise the
body is parsed once more, with orjson, and its objects' keys counted. Colons inside strings ("Trade:
type 3") are told apart by what precedes them: a key's colon follows its closing quote or
whitespace. When the counts still differ (a repeat, or objects nested inside rows, which are
not counted), an exact, slower check (the standard library's parser, every object's pairs)
finds the repeated keys and their paths. loadtest/json_body_cost.py measures the cost.

Large bodies are parsed off the event loop (`install(offload, offload_bytes)`: the service's bulk
lane). Replacing `JSONSerde.parse_request` for that also drops one upstream behaviour on
purpose: for an API whose whole input is one file, BentoML fetched a URL sent as the JSON body;
no API here is one, and the service does not fetch URLs on a caller's behalf.
"""

from __future__ import annotations

import json
import re
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from _bentoml_impl.serde import JSONSerde, Payload
from _bentoml_sdk.io_models import IODescriptor
from pydantic import ValidationError
from pydantic_core import PydanticCustomError
from starlette.requests import Request

# BentoML's own methods, kept for the canary tests that check they still need this patch.
UPSTREAM_DESERIALIZE_MODEL = JSONSerde.deserialize_model
UPSTREAM_PARSE_REQUEST = JSONSerde.parse_request

Offload = Callable[..., Awaitable[Any]]


class _Offloading:
    """Bodies of at least `min_bytes` (a 500-row records body is ~3 MB and ~18 ms of validation)
    are parsed by `run` (the service's bulk lane), off the event loop, which meanwhile keeps
    answering single applications."""

    run: Offload | None = None
    min_bytes = 0
    count = 0  # bodies parsed off the loop in this process
    counted = 0  # bodies cleared of repeated keys by their colon count alone


_OFFLOADING = _Offloading()
UPSTREAM_FROM_INPUT = IODescriptor.from_input.__func__  # type: ignore[attr-defined]

# Input models this process built with unknown fields forbidden, for report().
_STRICT_INPUTS: weakref.WeakSet[type] = weakref.WeakSet()

KeyPath = tuple[str | int, ...]
# A colon after a character other than a quote or whitespace. (The pattern starts at the colon,
# so the regex engine jumps from colon to colon instead of trying every byte.)
_STRING_COLON = re.compile(rb':(?<=[^"\s]:)')


@dataclass(frozen=True)
class WrittenKeys:
    """Marks a field (in `Annotated[...]`) whose validated value tells how many object keys its
    JSON held: `count(value)`. Only for objects that admit no unknown key and omit none, e.g.
    rows whose every feature is required: rows x features. It lets a body skip the second
    parse: when its colons number exactly the keys the validated model holds, no key was
    written twice (a repeat writes a key, and its colon, that the model does not keep)."""

    count: Callable[[Any], int]


_SCALARS = (int, float, str, bool, type(None))
_FIELD_KEYS: weakref.WeakKeyDictionary[type, dict[str, WrittenKeys | None]] = (
    weakref.WeakKeyDictionary()
)


def keys_held(model: Any) -> int | None:
    """The object keys of the validated input `model`, or None when a field cannot tell."""
    cls = type(model)
    fields = _FIELD_KEYS.get(cls)
    if fields is None:
        fields = {
            name: next((m for m in info.metadata if isinstance(m, WrittenKeys)), None)
            for name, info in cls.model_fields.items()
        }
        _FIELD_KEYS[cls] = fields
    given = model.model_fields_set
    keys = len(given)
    for name in given:
        marker, value = fields.get(name), getattr(model, name)
        if marker is not None:
            keys += marker.count(value)
        elif not isinstance(value, _SCALARS):
            return None
    return keys


def _deserialize_model(self: JSONSerde, payload: Payload, cls: type[Any]) -> Any:
    body = b"".join(payload.data) or b"{}"
    try:
        model = UPSTREAM_DESERIALIZE_MODEL(self, Payload((body,), payload.metadata), cls)
    except ValidationError as error:
        repeated = repeated_keys(body)
        if repeated:  # the repeat is the first thing to fix: it may be why the rest failed
            raise capped(_repeated_key_error(cls.__name__, repeated)) from None
        raise capped(error) from None
    held = keys_held(model)
    if held is not None and _colons_are_keys(body, held):
        _OFFLOADING.counted += 1
        return model  # each colon is a key the model holds: none was repeated
    repeated = repeated_keys(body)
    if repeated:
        raise capped(_repeated_key_error(cls.__name__, repeated))
    if repeated is None:
        # Valid for pydantic, yet neither orjson nor the standard library could read it to
        # look for repeated keys: refused rather than scored unchecked.
        raise ValidationError.from_exception_data(
            cls.__name__,
            [
                {
                    "type": "json_invalid",
                    "loc": (),
                    "input": "",
                    "ctx": {"error": "the body could not be checked for repeated keys"},
                }
            ],
        )
    return model


async def _parse_request(self: JSONSerde, request: Request, cls: type[Any]) -> Any:
    payload = Payload((await request.body(),), metadata=request.headers)
    if _OFFLOADING.run is None or len(payload.data[0]) < _OFFLOADING.min_bytes:
        return self.deserialize_model(payload, cls)
    _OFFLOADING.count += 1
    return await _OFFLOADING.run(self.deserialize_model, payload, cls)


def repeated_keys(body: bytes) -> list[tuple[KeyPath, int]] | None:
    """Each key that appears more than once in one object, as (path to the key, times); [] when
    there is none, None when the body is not JSON that can be read here."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson refuses some JSON pydantic takes (1e400, which pydantic reads as infinity).
        return _exactly(body)
    if _colons_are_keys(body, _keys_counted(document)):
        return []
    return _exactly(body)


def _colons_are_keys(body: bytes, keys: int) -> bool:
    """Whether the body's colons number exactly `keys` once those inside strings ("Trade: type
    3") are set aside: a key's colon follows its closing quote or whitespace, so a colon that
    follows anything else is inside a string and not a key's. The count can only exceed the
    keys written, so equality means none was lost to a repeat."""
    colons = body.count(b":")
    return colons == keys or colons - len(_STRING_COLON.findall(body)) == keys


def _keys_counted(document: Any) -> int:
    """Keys of the objects in `document`, counted without visiting every value: the keys of each
    object reached through objects, and of each object in a list of objects (the rows), but not
    of objects nested inside a row or inside a list of lists. Never more than the document's
    keys, so it equals the raw count only when no key was lost to a repeat."""
    counted = 0
    pending = [document]
    while pending:
        node = pending.pop()
        if type(node) is dict:
            counted += len(node)
            pending.extend(v for v in node.values() if type(v) is dict or type(v) is list)
        elif type(node) is list and set(map(type, node)) == {dict}:
            counted += sum(map(len, node))
    return counted


class _Repeats(dict):
    """An object in which some keys appeared more than once: `times` says how often."""

    times: dict[str, int]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    repeats = _Repeats(obj)
    repeats.times = {key: n for key, n in Counter(key for key, _ in pairs).items() if n > 1}
    return repeats


def _exactly(body: bytes) -> list[tuple[KeyPath, int]] | None:
    try:
        document = json.loads(body.decode("utf-8"), object_pairs_hook=_object)
    except (ValueError, RecursionError):
        return None
    return list(_repeats_in(document))


# A node's place in the document: (its parent's place, its key or index); None is the root.
# Linked, not a tuple of the whole path per node: a deeply nested body (depth ~1000, 4 M
# leaves in 8 MB) would otherwise hold a path as long as the nesting for every node (an 82 KB
# body took 212 MB). A path is spelled out only for a repeat.
_Place = tuple[Any, "str | int"] | None


def _repeats_in(document: Any) -> Iterator[tuple[KeyPath, int]]:
    """The repeats in document order (iteratively: a body may nest deeper than Python recurses)."""
    pending: list[tuple[_Place, Any]] = [(None, document)]
    while pending:
        place, node = pending.pop()
        if isinstance(node, dict):
            if isinstance(node, _Repeats):
                path = _path(place)
                yield from (((*path, key), times) for key, times in node.times.items())
            children = [((place, key), v) for key, v in node.items() if isinstance(v, dict | list)]
        else:  # a list: only objects can repeat a key, so scalars are not visited
            children = [((place, i), v) for i, v in enumerate(node) if isinstance(v, dict | list)]
        pending.extend(reversed(children))


def _path(place: _Place) -> KeyPath:
    keys: list[str | int] = []
    while place is not None:
        place, key = place
        keys.append(key)
    return tuple(reversed(keys))


# Problems listed in one refusal. pydantic reports every bad cell (three per cell of the compact
# form's union): a 30 KB body of empty lists was a 4.9 MB answer and a 5.6 MB log line, and an
# 8 MB body would be gigabytes. The first few say what to fix.
MAX_PROBLEMS = 20


def capped(error: ValidationError) -> ValidationError:
    """`error` with its first MAX_PROBLEMS problems and one more saying how many were left out;
    a problem raised by a check that knows the refused part's path deeper than pydantic's
    location (the compact form's cells: `table.data.3.7`, not `table`) located there."""
    count = error.error_count()
    problems = error.errors(include_url=False)[:MAX_PROBLEMS]
    deeper = [_path_of(problem) for problem in problems]
    if count <= MAX_PROBLEMS and not any(deeper):
        return error
    kept: list[Any] = [
        {
            # No context given: the message is kept as written, braces and all.
            "type": PydanticCustomError(problem["type"], problem["msg"]),
            "loc": path or problem["loc"],
            "input": problem["input"],
        }
        for problem, path in zip(problems, deeper, strict=True)
    ]
    if count <= MAX_PROBLEMS:
        return ValidationError.from_exception_data(error.title, kept)
    left_out = count - MAX_PROBLEMS
    kept.append(
        {
            "type": PydanticCustomError(
                "too_many_problems",
                "{left_out} more problems not listed: fix these first",
                {"left_out": left_out},
            ),
            "loc": (),
            "input": "",
        }
    )
    return ValidationError.from_exception_data(error.title, kept)


def _path_of(problem: Any) -> KeyPath:
    """The path a validator's error names (its `field` attribute, `table.data.3.7`), if any."""
    field = getattr((problem.get("ctx") or {}).get("error"), "field", None)
    if not isinstance(field, str) or not field:
        return ()
    return tuple(int(part) if part.isdigit() else part for part in field.split("."))


def _repeated_key_error(title: str, repeated: list[tuple[KeyPath, int]]) -> ValidationError:
    return ValidationError.from_exception_data(
        title,
        [
            {
                "type": PydanticCustomError(
                    "repeated_key",
                    "key repeated {times} times in one object; send each key once, since "
                    "readers disagree on which value counts",
                    {"times": times},
                ),
                "loc": path,
                "input": path[-1],
            }
            for path, times in repeated
        ],
    )


def _from_input(cls: type[IODescriptor], *args: Any, **kwargs: Any) -> type[IODescriptor]:
    spec = UPSTREAM_FROM_INPUT(cls, *args, **kwargs)
    # A single positional-only argument is the whole body (a root model): no fields to forbid.
    if not getattr(spec, "__root_input__", False) and spec.model_config.get("extra") is None:
        spec.model_config = {**spec.model_config, "extra": "forbid"}
        spec.model_rebuild(force=True)
        _STRICT_INPUTS.add(spec)
    return spec


def install(offload: Offload | None = None, offload_bytes: int = 0) -> None:
    """`offload(function, *args)` parses bodies of `offload_bytes` or more off the event loop."""
    _OFFLOADING.run, _OFFLOADING.min_bytes = offload, offload_bytes
    JSONSerde.deserialize_model = _deserialize_model  # type: ignore[method-assign]
    JSONSerde.parse_request = _parse_request  # type: ignore[method-assign]
    IODescriptor.from_input = classmethod(_from_input)  # type: ignore[method-assign,assignment]


def report() -> dict[str, object]:
    """Whether JSON bodies are checked for repeated keys here, and how many API input models
    this process built with unknown fields forbidden."""
    return {
        "active": JSONSerde.deserialize_model is _deserialize_model
        and JSONSerde.parse_request is _parse_request
        and IODescriptor.from_input.__func__ is _from_input,  # type: ignore[attr-defined]
        "inputs_refusing_unknown_fields": len(_STRICT_INPUTS),
        "offload_body_bytes": _OFFLOADING.min_bytes if _OFFLOADING.run else None,
        "bodies_parsed_off_the_event_loop": _OFFLOADING.count,
        "bodies_cleared_by_key_count": _OFFLOADING.counted,
    }
