"""Streaming readers for the input files (CONTRACT section 1).

A file is opened as bytes (gzip detected from its magic bytes, not its name),
its layout detected from the first non-blank byte (``[``: JSON array, else
NDJSON), and its records read in chunks with memory that does not depend on
the file's size.

JSON arrays take a fast path that is exactly as strict as a streaming parser:
the file is read in blocks cut at the last newline (a raw newline byte can
only be whitespace in valid JSON, never inside a string), and each block's
records are parsed at once with orjson as ``[`` + block + ``]``. The commas at
block edges are counted so that exactly one separates two records across a
cut. Anything the fast path does not expect (a record spanning a cut, as in
pretty-printed files, or an error) hands the rest of the file, from the start
of that block, to ijson's C backend, which either reads it (valid but unusual
layout) or reports the exact position where the file stops being valid.

NDJSON is parsed line by line with orjson. A line that is not valid JSON is
one bad record: it is rejected and the lines after it still load (the file is
still reported as broken, see :class:`Unreadable`).
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import ijson
import orjson

from .schemas import BlockSyntaxError, Loose, Unreadable, generic_decoder

BLOCK_SIZE = 1 << 20  # measured: as fast as 4 MB blocks, half the memory
MAX_LINE = 64 << 20  # a "line" longer than this is left to ijson
_WS = b" \t\r\n"  # JSON whitespace (bytes.strip() would also eat \x0b and \x0c)
_IJSON_CHUNK = 10_000
RAW_TEXT_LIMIT = 1024


class FileBreak(Exception):
    """The file stops being valid JSON at ``position`` (1-based record position)."""

    def __init__(self, position: int, reason: str, raw: bytes = b"") -> None:
        super().__init__(f"invalid JSON at record {position}: {reason}")
        self.position = position
        self.reason = reason
        self.raw = raw


@dataclass
class Chunk:
    """Consecutive records of a file, the first at ``first_position`` (1-based)."""

    first_position: int
    records: list
    text: bytes | None = None  # the block the records were parsed from
    _lines: list[bytes] | None = field(default=None, repr=False)

    def raw_text(self, index: int) -> str:
        """The first KB of record ``index``'s text (for the rejects table).

        The record's own line when the block holds one record per line (the
        generator's and most producers' layout), else the record re-serialised.
        """
        if self.text is not None and self._lines is None:
            lines = [line.strip(_WS) for line in self.text.split(b"\n")]
            lines = [line for line in lines if line not in (b"", b"[", b"]")]
            self._lines = lines if len(lines) == len(self.records) else []
        record = self.records[index]
        if type(record) is Loose:
            raw = record.raw[:RAW_TEXT_LIMIT]
        elif self._lines:
            raw = self._lines[index]
            if raw.endswith(b","):
                raw = raw[:-1]
            if raw.startswith(b","):
                raw = raw[1:]
            if raw.startswith(b"["):
                raw = raw[1:]
            if raw.endswith(b"]") and not _parses(raw) and _parses(raw[:-1]):
                raw = raw[:-1].rstrip(_WS)  # the array's closing bracket
            raw = raw[:RAW_TEXT_LIMIT]
        elif isinstance(record, Unreadable):
            raw = b""
        else:
            try:
                raw = orjson.dumps(record)[:RAW_TEXT_LIMIT]
            except TypeError:
                raw = repr(record).encode()[:RAW_TEXT_LIMIT]
        return raw.decode("utf-8", errors="replace")


def _parses(text: bytes) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def open_stream(path: str) -> BinaryIO:
    """The file's bytes, decompressed when it starts with gzip's magic bytes."""
    raw = open(path, "rb")  # noqa: SIM115  (returned to the caller, who closes it)
    if raw.peek(2)[:2] == b"\x1f\x8b":
        return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), BLOCK_SIZE)
    return raw


def bytes_read(stream: BinaryIO) -> int:
    """How far into the file on disk ``stream`` has read: for gzip, the compressed bytes.

    Measured on the file itself, so that it ends at the file's size whatever the
    compression (the progress of an ingestion is this over the file's size).
    """
    inner = getattr(stream, "raw", None)
    if isinstance(inner, gzip.GzipFile):
        return inner.fileobj.tell()
    return stream.tell()


def detect_layout(stream: BinaryIO) -> str:
    """'array', 'ndjson' or 'empty', from the first non-blank byte (nothing consumed)."""
    size = 4096
    while True:
        head = stream.peek(size)[:size]  # type: ignore[attr-defined]
        stripped = head.lstrip(_WS)
        if stripped:
            return "array" if stripped[:1] == b"[" else "ndjson"
        if len(head) < size:
            return "empty"
        size *= 4
        if size > MAX_LINE:
            return "ndjson"


def read_chunks(
    stream: BinaryIO,
    layout: str,
    block_size: int = BLOCK_SIZE,
    decode: Callable[[bytes], list] | None = None,
) -> Iterator[Chunk]:
    """Every record of the stream, in chunks; raises FileBreak after the last good one.

    ``decode`` turns ``b"[" + records + b"]"`` into a list with one item per
    record, raising BlockSyntaxError for invalid JSON (default: dicts via orjson;
    ``schemas.typed_decoder`` for typed records).
    """
    decode = decode or generic_decoder()
    if layout == "array":
        return _array_chunks(stream, block_size, decode)
    if layout == "ndjson":
        return _ndjson_chunks(stream, block_size, decode)
    if layout == "empty":
        return iter(())
    raise ValueError(f"unknown layout {layout!r}")


class _Prefixed(io.RawIOBase):
    """A raw stream: some bytes first, then the rest of another stream."""

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        self._prefix = memoryview(prefix)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._prefix.nbytes:
            n = min(len(buffer), self._prefix.nbytes)
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _array_chunks(
    stream: BinaryIO, block_size: int, decode: Callable[[bytes], list]
) -> Iterator[Chunk]:
    position = 1  # of the next record
    opened = False  # the '[' has been read
    seen = False  # at least one record has been read
    commas = 0  # separators read since the last record
    carry = b""
    data = stream.read(block_size)
    while True:
        ahead = stream.read(block_size) if data else b""
        eof = not ahead
        buffer = carry + data if carry else data
        if eof:
            block, carry = buffer, b""
        else:
            cut = buffer.rfind(b"\n") + 1
            if cut == 0:
                if len(buffer) <= MAX_LINE:  # no newline yet: read on
                    carry, data = buffer, ahead
                    continue
                yield from _ijson_rest(buffer + ahead, stream, position, opened, seen, commas)
                return
            block, carry = buffer[:cut], buffer[cut:]

        body = block.strip(_WS)
        pending = commas
        ok = True
        if not opened and body:
            ok = body[:1] == b"["
            body = body[1:].lstrip(_WS)
        if ok and eof:
            ok = body[-1:] == b"]"
            body = body[:-1].rstrip(_WS)
        if ok and body[:1] == b",":
            pending += 1
            body = body[1:].lstrip(_WS)
        records: list = []
        if ok and body:
            ok = pending == (1 if seen else 0)
            pending = 0
            if body[-1:] == b",":
                pending = 1
                body = body[:-1].rstrip(_WS)
                ok = ok and bool(body)
            if ok:
                try:
                    records = decode(b"[" + body + b"]")
                except BlockSyntaxError:
                    ok = False
        ok = ok and pending <= 1 and not (eof and pending) and (seen or records or not pending)
        if not ok:
            yield from _ijson_rest(block + carry + ahead, stream, position, opened, seen, commas)
            return
        if block.strip(_WS):
            opened = True
        commas = pending
        if records:
            seen = True
            yield Chunk(position, records, block)
            position += len(records)
        if eof:
            return
        data = ahead


def _ijson_rest(
    rest: bytes, stream: BinaryIO, position: int, opened: bool, seen: bool, commas: int
) -> Iterator[Chunk]:
    """Reads ``rest`` + the remainder of ``stream`` with ijson, in array context.

    Records already read are stood for by one dummy element ``0`` so that ijson
    checks the separator before the next record exactly.
    """
    if not opened:
        prefix, skip = b"", 0
    elif seen:
        prefix, skip = b"[0" + b"," * commas, 1
    else:
        prefix, skip = b"[" + b"," * commas, 0
    source = io.BufferedReader(_Prefixed(prefix + rest, stream), 1 << 20)
    records: list = []
    try:
        for record in ijson.items(source, "item", use_float=True):
            if skip:
                skip = 0
                continue
            records.append(record)
            if len(records) >= _IJSON_CHUNK:
                yield Chunk(position, records)
                position += len(records)
                records = []
        # ijson stops at the closing ']': anything after it but whitespace is an error.
        trailing = source.read(1 << 16).strip(_WS)
        if trailing:
            if records:
                yield Chunk(position, records)
                position += len(records)
                records = []
            raise FileBreak(position, "data after the end of the JSON array", trailing[:256])
    except ijson.JSONError as exc:
        if records:
            yield Chunk(position, records)
            position += len(records)
        reason = " ".join(str(exc).split())[:200]
        raise FileBreak(position, reason) from None
    if records:
        yield Chunk(position, records)


def _ndjson_chunks(
    stream: BinaryIO, block_size: int, decode: Callable[[bytes], list]
) -> Iterator[Chunk]:
    position = 1
    carry = b""
    while True:
        data = stream.read(block_size)
        buffer = carry + data if carry else data
        if data:
            cut = buffer.rfind(b"\n") + 1
            block, carry = buffer[:cut], buffer[cut:]
        else:
            block, carry = buffer, b""
        lines = [line for line in block.split(b"\n") if line.strip(_WS)]
        if lines:
            # Line by line: joining lines into one array could realign records
            # across lines (a value split over two lines beside a line with two).
            records = [_ndjson_line(line, decode) for line in lines]
            yield Chunk(position, records, block)
            position += len(records)
        if not data:
            return


def _ndjson_line(line: bytes, decode: Callable[[bytes], list]) -> object:
    try:
        values = decode(b"[" + line + b"]")
    except BlockSyntaxError:
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            return Unreadable(f"invalid JSON: {exc}")
        return Unreadable("invalid JSON")
    if len(values) != 1:
        return Unreadable("invalid JSON: a line must hold exactly one JSON value")
    return values[0]
