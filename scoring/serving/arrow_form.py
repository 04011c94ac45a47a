"""POST /predict_arrow: the binary bulk form, an Arrow IPC stream of applications.

A 500-row body in the records form is 3 MB of JSON and ~18 ms of validation; the compact form
~1.3 MB and ~5 ms; the compiled forest scores those 500 rows in ~9 ms on one thread. In Arrow's
IPC stream format (`application/vnd.apache.arrow.stream`, what `pyarrow.ipc.new_stream`, Polars,
DuckDB and Spark write) the columns arrive typed: the number columns are checked as one float
block, the few categorical and boolean ones with a few vectorised operations each (1.0 ms for
500 x 189), and the body costs almost nothing to read.

The contract is the JSON one, column by column (features.py): every model feature exactly once,
by name, in any order, and nothing else; float features take integer or floating columns with
null as missing, and no NaN or infinity; integer features whole numbers, no null; boolean
features a boolean column, no null; categorical features their categories as strings (plain or
dictionary-encoded), null as missing, an unseen category refused or scored as missing as
`SCORING_UNSEEN_CATEGORY` says, and counted. A column of Arrow's null type (what
`pa.Table.from_pylist` makes of one with no value) is all null, for every kind of feature. A
refusal names the column and, for a value, the row. A stream's buffers may come compressed
(zstd, lz4), but unpacked they must fit the body limit, as if sent uncompressed: their sizes
are read from the buffers' headers first, so a few KB cannot unpack to gigabytes.

The route is served by a pure ASGI middleware ahead of BentoML's router (a body BentoML would
read as JSON): it checks its method, media type and size itself, answers refusals in the one
shape (refusals.py), and reads, checks, scores and answers each request in one trip to the bulk lane
(the form is for bulk clients; single applications belong on /predict), through the service's
own scoring, so the answers, metrics and drift counts are those of /predict.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scoring.serving.bulk_lane import in_bulk_lane
from scoring.serving.features import (
    FeatureSpec,
    RequestError,
    UnseenCategory,
    check_row_count,
    listed,
    model_order,
    shown,
)
from scoring.serving.request_guard import (
    Message,
    Receive,
    Response,
    Send,
    json_response,
    refused,
    send_response,
)
from scoring.serving.settings import Settings
from scoring.stored_model.feature_schema import Category

ARROW_STREAM = "application/vnd.apache.arrow.stream"
# The service's default body limit (SCORING_MAX_BODY_BYTES), for callers outside the route.
DEFAULT_MAX_BYTES: int = Settings.model_fields["max_body_bytes"].default
PATH = "/predict_arrow"

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

# The service's scoring: a float64 matrix in model order → the JSON answer, as /predict's.
Answer = Callable[[np.ndarray], bytes]


class ArrowBodyError(ValueError):
    """A body refused, with the part of the request it is about (a column name, or `body`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class _Layout:
    """Where each model feature sits in a body's columns, and what to check, for one schema: a
    bulk client sends the same columns request after request, so it is worked out once."""

    numeric: list[int]  # model positions of the number features
    numeric_sources: list[int]  # ... and their columns in the body
    numeric_names: list[str]
    required: list[int]  # indexes into numeric: integer features (no null)
    whole: list[int]  # ... integer features sent as a floating column (checked for fractions)
    typed: pa.Schema | None  # the number columns' types, null as float64, when any is null
    other: list[tuple[int, int, str]]  # (position, column, name): categorical and boolean


MAX_LAYOUTS = 64  # schemas remembered per process (a client with a new layout per request)


def _names(schema: pa.Schema) -> list[str]:
    try:
        return schema.names
    except UnicodeDecodeError:  # Arrow allows any bytes; pyarrow decodes them as UTF-8
        raise ArrowBodyError("body", "column names must be UTF-8") from None


def _layout(schema: pa.Schema, spec: FeatureSpec) -> _Layout:
    names = _names(schema)
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
    return _Layout(
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


def arrow_matrix(
    body: bytes,
    spec: FeatureSpec,
    max_rows: int,
    unseen: UnseenCategory,
    on_unseen: Callable[[str], None],
    layouts: dict[bytes, _Layout] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> np.ndarray:
    """An Arrow IPC stream → the float64 matrix the model scores, columns in model order.
    `layouts`: a cache of the layouts worked out so far, by schema message (see _Layout);
    `max_bytes`: what the stream's compressed buffers may unpack to, in all."""
    batch = _one_batch(body, max_rows, max_bytes)
    key = _schema_message(body)
    layout = None if layouts is None else layouts.get(key)
    if layout is None:
        layout = _layout(batch.schema, spec)
        if layouts is not None:
            if len(layouts) >= MAX_LAYOUTS:
                layouts.clear()
            layouts[key] = layout
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
        else:
            matrix[:, position] = _booleans(column, name)
    return matrix


# Bodies a client may send by mistake, told apart by their first bytes: reading them as a
# stream fails with "Expected to read 1330795073 metadata bytes", which says nothing.
_OTHER_FORMATS = (
    (b"ARROW1", "an Arrow IPC file (Feather v2)"),
    (b"PAR1", "a Parquet file (POST it to /predict_file)"),
)
_STREAM_HOW = "write it with pyarrow.ipc.new_stream (not new_file)"


def _one_batch(body: bytes, max_rows: int, max_bytes: int) -> pa.RecordBatch:
    """The stream's rows as one record batch: a client may write several (the checks and the
    matrix then see one); the row count is checked before any of them is decoded."""
    for magic, what in _OTHER_FORMATS:
        if body.startswith(magic):
            raise ArrowBodyError("body", f"this is {what}, not an Arrow IPC stream: {_STREAM_HOW}")
    try:
        _check_messages(body, max_rows, max_bytes)
        reader = pa.ipc.open_stream(body)
        batches = list(reader)
        for batch in batches:
            # Reading checks a batch's structure, not its contents: a string column whose
            # offsets point past its data would be read out of bounds by the checks below.
            batch.validate(full=True)
    except (pa.ArrowException, OSError) as error:
        raise ArrowBodyError("body", f"not an Arrow IPC stream: {error}") from None
    if len(batches) == 1:
        return batches[0]
    _names(reader.schema)  # combining decodes them
    try:
        # combine_chunks unifies dictionaries that differ from batch to batch, and cannot for
        # some value types (a struct): the body's fault, like a reading error.
        table = pa.Table.from_batches(batches, schema=reader.schema).combine_chunks()
    except pa.ArrowException as error:
        raise ArrowBodyError("body", f"batches that do not combine: {error}") from None
    return table.to_batches()[0]


def _check_messages(body: bytes, max_rows: int, max_bytes: int) -> None:
    """The stream's batches as declared, before any is decoded: decoding a compressed buffer
    allocates what its header claims (a few KB of zstd unpack to GBs, past the body limit), and
    a batch's declared row count is what decoding would materialise."""
    rows = unpacked = 0
    for message in pa.ipc.MessageReader.open_stream(body):
        if message.type not in ("record batch", "dictionary"):
            continue
        metadata = memoryview(message.metadata)
        length, buffers = _batch_header(metadata, message.type)
        if buffers is not None:
            try:
                unpacked += _unpacked_size(memoryview(message.body), buffers)
            except struct.error:
                raise ArrowBodyError(
                    "body", "not an Arrow IPC stream: a malformed buffer"
                ) from None
            if unpacked > max_bytes:
                raise ArrowBodyError(
                    "body",
                    f"the stream's compressed buffers unpack to over {max_bytes} bytes, the "
                    "body limit: split the applications",
                )
        if message.type == "record batch":
            rows += length
    try:
        check_row_count(rows, max_rows)
    except RequestError as error:
        raise ArrowBodyError("body", str(error)) from None


def _unpacked_size(body: memoryview, buffers: list[tuple[int, int]]) -> int:
    """What a compressed batch's buffers unpack to: Arrow prefixes each compressed buffer with
    its unpacked length (an int64; -1 for a buffer stored as it is)."""
    size = 0
    for offset, length in buffers:
        if length == 0:
            continue
        unpacked = _read("<q", body, offset) if length >= 8 else -2
        if unpacked < -1:
            raise struct.error(f"a compressed buffer of {length} bytes without its length")
        size += length - 8 if unpacked == -1 else unpacked
    return size


# Arrow's Message.fbs, the fields read here: Message.header (2), DictionaryBatch.data (1),
# RecordBatch.length (0), RecordBatch.buffers (2) and RecordBatch.compression (3).
_HEADER, _DICTIONARY_DATA, _LENGTH, _BUFFERS, _COMPRESSION = 2, 1, 0, 2, 3
_BUFFER = struct.Struct("<qq")  # Buffer: offset and length in the message body


def _batch_header(metadata: memoryview, kind: str) -> tuple[int, list[tuple[int, int]] | None]:
    """A record or dictionary batch's row count and, when its buffers are compressed, where
    each sits in the message body (None when not), read from the message's flatbuffer
    metadata: pyarrow tells neither without decoding the batch."""
    try:
        batch = _table_field(metadata, _read("<I", metadata, 0), _HEADER)
        if batch is not None and kind == "dictionary":
            batch = _table_field(metadata, batch, _DICTIONARY_DATA)
        if batch is None:
            raise ArrowBodyError("body", f"not an Arrow IPC stream: a {kind} without its header")
        length = _field_at(metadata, batch, _LENGTH)
        rows = 0 if length is None else _read("<q", metadata, length)
        if rows < 0:  # else it would take from the other batches' count
            raise struct.error(f"{rows} rows")
        if _field_at(metadata, batch, _COMPRESSION) is None:
            return rows, None
        vector = _table_field(metadata, batch, _BUFFERS)
        count = 0 if vector is None else _read("<I", metadata, vector)
        if vector is not None:
            _read("<B", metadata, vector + 4 + _BUFFER.size * count - 1)  # all in bounds
        buffers = [
            _BUFFER.unpack_from(metadata, vector + 4 + _BUFFER.size * i) for i in range(count)
        ]
        return rows, buffers
    except struct.error:
        raise ArrowBodyError("body", f"not an Arrow IPC stream: a malformed {kind}") from None


def _read(layout: str, buffer: memoryview, at: int) -> int:
    # struct reads a negative position from the end: an offset out of bounds either way.
    if not 0 <= at <= len(buffer) - struct.calcsize(layout):
        raise struct.error(f"offset {at} outside the message metadata")
    return struct.unpack_from(layout, buffer, at)[0]


def _field_at(buffer: memoryview, table: int, index: int) -> int | None:
    """Where a flatbuffer table's field `index` sits, None when absent: the table starts with
    a signed offset back to its vtable, which lists each field's offset in the table."""
    vtable = table - _read("<i", buffer, table)
    if 4 + 2 * index >= _read("<H", buffer, vtable):
        return None
    offset = _read("<H", buffer, vtable + 4 + 2 * index)
    return table + offset if offset else None


def _table_field(buffer: memoryview, table: int, index: int) -> int | None:
    """The table a field refers to (stored as an unsigned offset forward from the field)."""
    at = _field_at(buffer, table, index)
    return None if at is None else at + _read("<I", buffer, at)


_CONTINUATION = b"\xff\xff\xff\xff"


def _schema_message(body: bytes) -> bytes:
    """The stream's first message, its schema, as sent (called once the stream has been read,
    so the framing is sound): the layout cache's key. Arrow's IPC format frames a message as
    the continuation marker 0xFFFFFFFF (absent before Arrow 0.15), its length as a
    little-endian int32, then the metadata; equal bytes are an equal schema. Hashing these
    ~10 KB takes 3 µs, the parsed pa.Schema's hash 85-160 µs."""
    start = 8 if body[:4] == _CONTINUATION else 4
    length = int.from_bytes(body[start - 4 : start], "little", signed=True)
    return body[: start + max(length, 0)]


def _number_block(batch: pa.RecordBatch, layout: _Layout) -> np.ndarray | None:
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
    fits = (
        (pa.types.is_string(kind) or pa.types.is_large_string(kind))
        if strings
        else pa.types.is_integer(kind)
    )
    if not fits:
        expected = "strings (plain or dictionary-encoded)" if strings else "integers"
        raise ArrowBodyError(name, f"{name} must hold its categories as {expected}, got {kind}")
    if pa.types.is_dictionary(column.type):
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


@functools.lru_cache(maxsize=1024)
def _value_set(categories: tuple[Category, ...], kind: pa.DataType) -> pa.Array:
    """A feature's training categories as an Arrow array of the column's type, built once:
    building it per request cost more than checking every other column."""
    return pa.array(list(categories), type=kind)


class ArrowForm:
    """The route, bound to the service's scoring once the service has loaded its model. A pure
    ASGI app, served by `ArrowRoute` ahead of BentoML's router: a bulk request's body is read
    in ~100 chunks, and each Starlette layer it skips (request context, exception handling,
    router, mount, `Request`/`Response`) was paid per request on the event loop."""

    def __init__(
        self,
        spec: FeatureSpec,
        max_rows: int,
        max_body_bytes: int,
        unseen: UnseenCategory,
        on_unseen: Callable[[str], None],
    ) -> None:
        self.spec, self.max_rows, self.max_body_bytes = spec, max_rows, max_body_bytes
        self.unseen, self.on_unseen = unseen, on_unseen
        self.answer: Answer | None = None
        self.layouts: dict[bytes, _Layout] = {}  # used by the bulk lane's thread only

    def attach(self, answer: Answer) -> None:
        self.answer = answer

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        response = await self._response(scope, receive)
        if response is not None:  # None: the client left, nobody to answer
            await send_response(send, response)

    async def _response(self, scope: Message, receive: Receive) -> Response | None:
        if scope["method"] != "POST":
            message = f"{PATH} takes POST, not {scope['method']}"
            return refused(405, message, "method", "method_not_allowed")
        if self.answer is None:
            return refused(503, "model not loaded yet", "body", "service_unavailable")
        headers = dict(scope["headers"])
        media_type = (
            headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")
        )
        if media_type != ARROW_STREAM:
            message = f"send an Arrow IPC stream as {ARROW_STREAM}, not {media_type or 'nothing'}"
            return refused(415, message, "content-type", "unsupported_media_type")
        too_large = refused(
            413,
            f"body over {self.max_body_bytes} bytes: split the applications",
            "body",
            "request_entity_too_large",
        )
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return too_large
        try:
            body = await self._body(receive)
        except _ClientLeftError:
            return None
        if body is None:
            return too_large
        try:
            # Read, checked, scored and answered in one trip to the bulk lane: the event loop
            # only receives the body and sends the answer.
            content = await in_bulk_lane(self._answered, body, self.answer)
        except ArrowBodyError as problem:
            return refused(400, str(problem), problem.field, "value_error")
        return json_response(200, content)

    def _answered(self, body: bytes, answer: Answer) -> bytes:
        matrix = arrow_matrix(
            body,
            self.spec,
            self.max_rows,
            self.unseen,
            self.on_unseen,
            self.layouts,
            max_bytes=self.max_body_bytes,
        )
        return answer(matrix)

    async def _body(self, receive: Receive) -> bytes | None:
        """The body; None as soon as it passes the limit (counted as it streams in: a chunked
        upload has no length up front)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientLeftError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _ClientLeftError(Exception):
    """The client disconnected before its body had arrived."""


class ArrowRoute:
    """Pure ASGI middleware: POST /predict_arrow is answered by the form itself, anything else
    goes on to the service's app. Installed with the service's other middleware, so BentoML's
    request metrics (outside it) count the route like every other."""

    def __init__(self, app: Any, form: ArrowForm) -> None:
        self.app, self.form = app, form

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") == PATH:
            return await self.form(scope, receive, send)
        return await self.app(scope, receive, send)
