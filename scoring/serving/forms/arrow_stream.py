"""The body of POST /predict_arrow: an Arrow IPC stream (`application/vnd.apache.arrow.stream`,
what `pyarrow.ipc.new_stream`, Polars, DuckDB and Spark write) read into one record batch
within the request's bounds, then into the matrix by the contract (scoring/core/arrow_rows.py).

A stream's buffers may come compressed (zstd, lz4), but unpacked they must fit the body limit,
as if sent uncompressed: their sizes are read from the buffers' headers first, so a few KB
cannot unpack to gigabytes; the declared row counts are checked before any batch is decoded.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from scoring.core.arrow_rows import ArrowBodyError, Layout, batch_matrix, column_names, layout_for
from scoring.core.contract import (
    FeatureSpec,
    RequestError,
    UnseenCategory,
    check_row_count,
)
from scoring.serving.forms.limits import DEFAULT_MAX_BODY_BYTES

ARROW_STREAM = "application/vnd.apache.arrow.stream"


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
    column_names(reader.schema)  # combining decodes them
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


# Schemas remembered per process (a client with a new layout per request).
MAX_LAYOUTS = 64


def arrow_matrix(
    body: bytes,
    spec: FeatureSpec,
    max_rows: int,
    unseen: UnseenCategory,
    on_unseen: Callable[[str], None],
    layouts: dict[bytes, Layout] | None = None,
    max_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> np.ndarray:
    """An Arrow IPC stream → the float64 matrix the model scores, columns in model order.
    `layouts`: a cache of the layouts worked out so far, by schema message (a bulk client sends
    the same columns request after request, so each is worked out once); `max_bytes`: what the
    stream's compressed buffers may unpack to, in all."""
    batch = _one_batch(body, max_rows, max_bytes)
    key = _schema_message(body)
    layout = None if layouts is None else layouts.get(key)
    if layout is None:
        layout = layout_for(batch.schema, spec)
        if layouts is not None:
            if len(layouts) >= MAX_LAYOUTS:
                layouts.clear()
            layouts[key] = layout
    return batch_matrix(batch, spec, unseen, on_unseen, layout)
