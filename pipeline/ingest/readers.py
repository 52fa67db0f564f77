"""Streaming readers for the input files (CONTRACT section 1).

A file is opened as bytes (gzip detected from its magic bytes, not its name),
its layout detected from the first non-blank byte (``[``: JSON array, else
NDJSON), and its records read in chunks with memory that does not depend on
the file's size.

JSON arrays take a fast path: the file is read in blocks cut at the last
newline (a raw newline byte can only be whitespace in valid JSON, never inside
a string), and each block's records are decoded at once as ``[`` + block +
``]``. The commas at block edges are counted so that exactly one separates two
records across a cut. Anything the fast path does not expect (a record
spanning a cut, as in pretty-printed files, invalid JSON, a line longer than a
record may be, deep nesting) hands the rest of the file, from the start of
that block, to the record scanner (:func:`_scan_rest`), which follows the
array's structure byte-wise in constant memory and decodes each element on
its own: a bad element is one :class:`Unreadable` record, and only damage to
the array itself stops the file (:class:`FileBreak`).

NDJSON is parsed line by line. A line that is not valid JSON, or breaks a
bound, is one bad record: it is rejected and the lines after it still load.
"""

from __future__ import annotations

import gzip
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson

from .schemas import BlockSyntaxError, Loose, Unreadable, generic_decoder

BLOCK_SIZE = 1 << 20  # measured: as fast as 4 MB blocks, half the memory
MAX_LINE = 8 << 20  # a "line" longer than this is left to the record scanner
_WS = b" \t\r\n"  # JSON whitespace (bytes.strip() would also eat \x0b and \x0c)
_CHUNK_RECORDS = 10_000
RAW_TEXT_LIMIT = 1024


@dataclass(frozen=True)
class Limits:
    """The bounds of one record (settings ``METRIFLOW_INGEST_MAX_*``, docs/architecture.md)."""

    record_bytes: int = 64 << 10
    depth: int = 32


DEFAULT_LIMITS = Limits()


class FileBreak(Exception):
    """The file stops being valid JSON at ``position`` (1-based record position).

    ``kind`` words what broke: invalid JSON, or (formats/) a response that is not
    of its format, such as a GA4 report without a required header.
    """

    def __init__(
        self, position: int, reason: str, raw: bytes = b"", kind: str = "invalid JSON"
    ) -> None:
        super().__init__(f"{kind} at record {position}: {reason}")
        self.position = position
        self.reason = reason
        self.raw = raw
        self.kind = kind


@dataclass
class Chunk:
    """Consecutive records of a file, the first at ``first_position`` (1-based)."""

    first_position: int
    records: list
    text: bytes | None = None  # the block the records were parsed from
    _lines: list[bytes] | None = field(default=None, repr=False)
    # formats/: every record is the values of a valid record (no Unreadable)
    valid: bool = False

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
            raw = record.raw[:RAW_TEXT_LIMIT]
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
    """'array', 'ndjson' or 'empty', from the first non-blank byte.

    Leading whitespace, of any length, is consumed (in buffer-sized steps, so in
    constant memory); nothing after it is.
    """
    while True:
        head = stream.peek(1 << 16)  # type: ignore[attr-defined]
        if not head:
            return "empty"
        stripped = head.lstrip(_WS)
        if stripped:
            stream.read(len(head) - len(stripped))
            return "array" if stripped[:1] == b"[" else "ndjson"
        stream.read(len(head))


def read_chunks(
    stream: BinaryIO,
    layout: str,
    block_size: int = BLOCK_SIZE,
    decode: Callable[[bytes], list] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Iterator[Chunk]:
    """Every record of the stream, in chunks; raises FileBreak after the last good one.

    ``decode`` turns ``b"[" + records + b"]"`` into a list with one item per
    record, raising BlockSyntaxError for invalid JSON (default: dicts via orjson;
    ``schemas.typed_decoder`` for typed records). A record that breaks one of
    ``limits`` or is not valid JSON on its own is an :class:`Unreadable` item.
    """
    decode = decode or generic_decoder()
    if layout == "array":
        return _array_chunks(stream, block_size, decode, limits)
    if layout == "ndjson":
        return _ndjson_chunks(stream, block_size, decode, limits)
    if layout == "empty":
        return iter(())
    raise ValueError(f"unknown layout {layout!r}")


def _array_chunks(
    stream: BinaryIO, block_size: int, decode: Callable[[bytes], list], limits: Limits
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
                yield from _scan_rest(
                    buffer + ahead, stream, position, opened, seen, commas, decode, limits
                )
                return
            block, carry = buffer[:cut], buffer[cut:]

        body = block.strip(_WS)
        pending = commas
        # A line longer than a record may be is left to the scanner, which rejects it.
        ok = _lines_within(body, limits.record_bytes)
        if ok and not opened and body:
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
                # Flat records hold one bracket each: only a block with more can nest
                # too deep (or has brackets in strings); its depth is then measured.
                if ok and body.count(b"{") + body.count(b"[") > len(records):
                    ok = _nesting(body) <= limits.depth
        ok = ok and pending <= 1 and not (eof and pending) and (seen or records or not pending)
        if not ok:
            yield from _scan_rest(
                block + carry + ahead, stream, position, opened, seen, commas, decode, limits
            )
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


_STRUCTURE = re.compile(rb'[\[\]{}"]')
# Possessive (no backtracking state kept): constant memory however long the string.
_STRING_BODY = re.compile(rb'[^"\\\n]*+(?:\\[^\n][^"\\\n]*+)*+')
_SCALAR_END = re.compile(rb'[\s,\]\[{}"]')
_NOT_WS = re.compile(rb"[^ \t\r\n]")


def _scan_rest(
    rest: bytes,
    stream: BinaryIO,
    position: int,
    opened: bool,
    seen: bool,
    commas: int,
    decode: Callable[[bytes], list],
    limits: Limits,
) -> Iterator[Chunk]:
    """Reads ``rest`` + the remainder of ``stream`` record by record, in constant memory.

    The array's structure (brackets, commas, strings) is followed byte-wise;
    each top-level element is decoded on its own, so a record holding a token
    JSON does not allow (``NaN``, a byte that is not UTF-8) is one
    :class:`Unreadable` record and the next element is read after the next
    top-level comma. A raw line break cannot be inside a JSON string: a string
    still open at one makes its record unreadable and ends there. A record
    longer than ``limits.record_bytes`` or nested deeper than ``limits.depth``
    is unreadable too, skipped without being kept in memory. What breaks the
    array itself (a missing or doubled comma, data after ``]``, the end of the
    file inside the array) raises FileBreak after the records before it.
    """
    buf = rest
    i = 0
    eof = False
    records: list = []

    def more(keep_from: int) -> bool:
        """Appends the next block, dropping the bytes before ``keep_from``."""
        nonlocal buf, i, eof
        if eof:
            return False
        data = stream.read(BLOCK_SIZE)
        if not data:
            eof = True
            return False
        buf = buf[keep_from:] + data
        i -= keep_from
        return True

    def flush() -> Iterator[Chunk]:
        nonlocal position, records
        if records:
            yield Chunk(position, records)
            position += len(records)
            records = []

    def skip_ws() -> bool:
        """Moves ``i`` to the next non-blank byte; False at the end of the file."""
        nonlocal i
        while True:
            found = _NOT_WS.search(buf, i)
            if found:
                i = found.start()
                return True
            i = len(buf)
            if not more(i):
                return False

    def fail(reason: str, raw: bytes = b"") -> FileBreak:
        return FileBreak(position + len(records), reason, raw)

    if not opened:
        if not skip_ws() or buf[i : i + 1] != b"[":
            raise fail("expected '[' at the start of the array")
        i += 1
    want_value = not seen or commas == 1
    if commas > 1 or (commas and not seen):
        raise fail("expected a value, got ','")
    while True:
        if not skip_ws():
            yield from flush()
            raise fail("the file ends inside the array (no closing ']')")
        c = buf[i : i + 1]
        if c == b"]":
            if want_value and seen:
                yield from flush()
                raise fail("expected a value after ',', got ']'")
            i += 1
            yield from flush()
            if skip_ws():
                raise FileBreak(position, "data after the end of the JSON array", buf[i : i + 256])
            return
        if c == b",":
            if want_value:
                yield from flush()
                raise fail("expected a value, got ','")
            want_value = True
            i += 1
            continue
        if not want_value:
            yield from flush()
            raise fail(f"expected ',' or ']', got {c.decode('latin-1')!r}", buf[i : i + 256])
        # One element, from buf[i].
        start = i
        kept = True  # its bytes are all still in buf[start:]
        depth = 0
        problem = ""
        in_string = False
        scalar = c not in (b"{", b"[", b'"')
        while True:
            if scalar:
                end = _SCALAR_END.search(buf, max(i, start + 1) if kept else i)
                if end is not None:
                    i = end.start()
                    break
                i = len(buf)
            elif in_string:
                j = _STRING_BODY.match(buf, i).end()
                if j < len(buf) and not (buf[j] == 0x5C and j + 1 == len(buf)):
                    in_string = False
                    if buf[j] == 0x22:  # '"'
                        i = j + 1
                    else:  # a raw line break inside the string
                        problem = problem or "invalid JSON: a line break inside a string"
                        i = j + (2 if buf[j] == 0x5C else 1)
                    if depth == 0:
                        break
                    continue
                i = j  # the string goes on past the buffer
            else:
                if problem and kept is False:
                    # Rejected already: skip bracket runs in bulk up to the next string,
                    # as long as they cannot close the element.
                    quote = buf.find(b'"', i)
                    stop = len(buf) if quote < 0 else quote
                    run = buf[i:stop]
                    closes = run.count(b"]") + run.count(b"}")
                    if closes < depth:
                        depth += run.count(b"[") + run.count(b"{") - closes
                        i = stop
                        if quote < 0:
                            found = None
                        else:
                            in_string, i = True, quote + 1
                            continue
                found = _STRUCTURE.search(buf, i) if i < len(buf) else None
                if found is None:
                    i = len(buf)
                else:
                    i = found.start() + 1
                    char = buf[i - 1]
                    if char == 0x22:  # '"'
                        in_string = True
                    elif char in (0x7B, 0x5B):  # '{' '['
                        depth += 1
                        if depth > limits.depth and not problem:
                            problem = f"record nested deeper than {limits.depth} levels"
                    else:
                        depth -= 1
                        if depth <= 0:
                            break
                    continue
            # More bytes needed; an element already too long is no longer kept.
            if kept and len(buf) - start > limits.record_bytes:
                kept = False
                problem = problem or f"record longer than {limits.record_bytes:,} bytes"
            keep_from = start if kept else i
            if not more(keep_from):
                yield from flush()
                raise fail("the file ends inside a record")
            start = 0 if kept else start - keep_from
        text = buf[start:i] if kept else b""
        if kept and len(text) > limits.record_bytes:
            problem = problem or f"record longer than {limits.record_bytes:,} bytes"
        seen = True
        want_value = False
        raw = text[:RAW_TEXT_LIMIT] if text else buf[max(0, i - RAW_TEXT_LIMIT) : i]
        if problem:
            records.append(Unreadable(problem, raw))
        else:
            try:
                values = decode(b"[" + text + b"]")
            except BlockSyntaxError as exc:
                reason = " ".join(str(exc).split())[:200]
                values = [Unreadable(f"invalid JSON: {reason}", raw)]
            if len(values) != 1:
                values = [Unreadable("invalid JSON: not one JSON value", raw)]
            records.append(values[0])
        if len(records) >= _CHUNK_RECORDS:
            yield from flush()
        if i > BLOCK_SIZE:
            buf, i = buf[i:], 0


def _ndjson_chunks(
    stream: BinaryIO, block_size: int, decode: Callable[[bytes], list], limits: Limits
) -> Iterator[Chunk]:
    position = 1
    carry = b""
    skipping = False  # inside a line already longer than a record may be
    too_long = f"record longer than {limits.record_bytes:,} bytes"
    while True:
        data = stream.read(block_size)
        buffer = carry + data if carry else data
        if data:
            cut = buffer.rfind(b"\n") + 1
            if cut == 0 and len(buffer) > limits.record_bytes:
                if not skipping:  # the line is one reject, read on to its end
                    skipping = True
                    yield Chunk(position, [Unreadable(too_long, buffer[:RAW_TEXT_LIMIT])])
                    position += 1
                carry = b""
                continue
            block, carry = buffer[:cut], buffer[cut:]
        else:
            block, carry = buffer, b""
        if skipping:  # the rest of the long line, up to its newline
            newline = block.find(b"\n")
            if newline < 0 and data:
                continue
            block = block[newline + 1 :] if newline >= 0 else b""
            skipping = False
        lines = [line for line in block.split(b"\n") if line.strip(_WS)]
        if lines:
            # Line by line: joining lines into one array could realign records
            # across lines (a value split over two lines beside a line with two).
            records = [_ndjson_line(line, decode, limits) for line in lines]
            if block.count(b"{") + block.count(b"[") > len(lines):  # see _array_chunks
                for index, text in enumerate(lines):
                    if text.count(b"{") + text.count(b"[") > 1 and _nesting(text) > limits.depth:
                        reason = f"record nested deeper than {limits.depth} levels"
                        records[index] = Unreadable(reason, text[:RAW_TEXT_LIMIT])
            yield Chunk(position, records, block)
            position += len(records)
        if not data:
            return


def _ndjson_line(line: bytes, decode: Callable[[bytes], list], limits: Limits) -> object:
    if len(line) > limits.record_bytes:
        reason = f"record longer than {limits.record_bytes:,} bytes"
        return Unreadable(reason, line[:RAW_TEXT_LIMIT])
    try:
        values = decode(b"[" + line + b"]")
    except BlockSyntaxError:
        if _nesting(line) > limits.depth:
            return Unreadable(f"record nested deeper than {limits.depth} levels")
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            return Unreadable(f"invalid JSON: {exc}")
        except RecursionError:
            pass
        if _nesting(line) > limits.depth:
            return Unreadable(f"record nested deeper than {limits.depth} levels")
        return Unreadable("invalid JSON")
    if len(values) != 1:
        return Unreadable("invalid JSON: a line must hold exactly one JSON value")
    return values[0]


def _nesting(text: bytes) -> int:
    """How deep brackets nest in ``text``, outside strings (for the reason of a reject)."""
    depth = deepest = 0
    i = 0
    while True:
        found = _STRUCTURE.search(text, i)
        if found is None:
            return deepest
        i = found.end()
        char = text[i - 1]
        if char == 0x22:
            i = _STRING_BODY.match(text, i).end() + 1
        elif char in (0x7B, 0x5B):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1


def _lines_within(body: bytes, limit: int) -> bool:
    """Whether no line of ``body`` is longer than ``limit`` bytes.

    A line longer than ``limit`` covers a whole aligned window of ``limit // 2``
    bytes, so when every window holds a newline no line is too long (a few
    ``find`` calls per block); otherwise the lines are measured.
    """
    if len(body) <= limit:
        return True
    window = max(1, limit // 2)
    find = body.find
    for start in range(0, len(body) - window + 1, window):
        if find(b"\n", start, start + window) < 0:
            return max(map(len, body.split(b"\n"))) <= limit
    return True
