"""A forward-only JSON structure scanner for responses far larger than a record.

The contract's readers (``readers.py``) cut a file into records of at most
``METRIFLOW_INGEST_MAX_RECORD_BYTES``. Google's responses do not fit that
shape: a GA4 ``runReport`` response is one JSON object holding up to 250,000
rows (tens of MB), a PageSpeed Insights response is one object of 0.3-1 MB.
This scanner walks such values without holding them: it finds where a string,
an object or an array ends, and, inside an array, where each element ends,
in constant memory.

Finding the end of a container means counting brackets outside strings. That
is done a block at a time with numpy: escaped backslashes and quotes are
neutralised (``\\\\`` and ``\\"`` become two inert bytes, so every remaining
quote delimits a string), the running parity of quotes marks the bytes inside
strings, and the running sum of +1 (``{`` ``[``) / -1 (``}`` ``]``) over the
other bytes is the depth after each byte. A block ends before a run of
backslashes, so an escape is never split between two blocks.

The scanner checks the structure (brackets, strings, the end of the file);
whether a value is valid JSON is left to the decoder that reads it.
"""

from __future__ import annotations

import re
from typing import BinaryIO

import numpy as np

BLOCK_SIZE = 1 << 20
_WS = re.compile(rb"[^ \t\r\n]")
_STRING_BODY = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+', re.DOTALL)
_SCALAR_END = re.compile(rb"[\s,\]\[{}\"]")
_DELTA = np.zeros(256, np.int8)
_DELTA[ord("{")] = _DELTA[ord("[")] = 1
_DELTA[ord("}")] = _DELTA[ord("]")] = -1
_QUOTE, _COMMA, _BACKSLASH = 0x22, 0x2C, 0x5C


class StructureError(ValueError):
    """The bytes stop being JSON's structure (the end of the file inside a value...)."""


def _depths(segment: bytes, depth: int, in_string: bool) -> tuple[np.ndarray, np.ndarray, bool]:
    """(depth after each byte, whether each byte is inside a string, in a string at the end)."""
    clean = segment.replace(b"\\\\", b"__").replace(b'\\"', b"__")
    data = np.frombuffer(clean, np.uint8)
    parity = np.cumsum(data == _QUOTE, dtype=np.int32)
    if in_string:
        parity += 1
    inside = (parity & 1).astype(bool)
    delta = _DELTA[data]
    delta[inside] = 0
    depth_after = np.cumsum(delta, dtype=np.int32)
    depth_after += depth
    return depth_after, inside, bool(inside[-1])


class Scanner:
    """Reads a stream of JSON text forward; ``offset`` is the position in the stream."""

    def __init__(self, stream: BinaryIO, block_size: int = BLOCK_SIZE) -> None:
        self._stream = stream
        self._block_size = block_size
        self.buf = b""
        self.i = 0
        self.base = stream.tell()  # stream offset of buf[0]
        self.eof = False

    @property
    def offset(self) -> int:
        return self.base + self.i

    def _more(self, keep_from: int) -> bool:
        """Appends the next block, dropping the bytes before ``keep_from``."""
        if self.eof:
            return False
        data = self._stream.read(self._block_size)
        if not data:
            self.eof = True
            return False
        self.buf = self.buf[keep_from:] + data
        self.base += keep_from
        self.i -= keep_from
        return True

    def peek(self) -> bytes:
        """The next non-blank byte (not consumed), b"" at the end of the stream."""
        while True:
            found = _WS.search(self.buf, self.i)
            if found:
                self.i = found.start()
                return self.buf[self.i : self.i + 1]
            self.i = len(self.buf)
            if not self._more(self.i):
                return b""

    def expect(self, char: bytes, what: str) -> None:
        got = self.peek()
        if got != char:
            shown = repr(got.decode("latin-1")) if got else "the end of the file"
            raise StructureError(f"expected {what}, got {shown}")
        self.i += 1

    def value(self, limit: int) -> tuple[bytes | None, int]:
        """The text of the next value and its depth; None when longer than ``limit`` bytes.

        A value too long is skipped without being kept in memory.
        """
        first = self.peek()
        if not first:
            raise StructureError("the file ends where a value was expected")
        if first in (b"{", b"["):
            return self.container(keep=limit)
        self.buf, self.base, self.i = self.buf[self.i :], self.base + self.i, 0
        if first == b'"':
            at = 1
            while True:
                end = _STRING_BODY.match(self.buf, at).end()
                if end < len(self.buf) and self.buf[end] == _QUOTE:
                    end += 1
                    break
                at = end
                if len(self.buf) > limit:
                    raise StructureError(f"a string longer than {limit:,} bytes")
                if not self._more(0):
                    raise StructureError("the file ends inside a string")
        else:
            while True:
                found = _SCALAR_END.search(self.buf, 1)
                if found:
                    end = found.start()
                    break
                if len(self.buf) > limit:
                    raise StructureError(f"a value longer than {limit:,} bytes")
                if not self._more(0):
                    end = len(self.buf)
                    break
        text = self.buf[:end]
        self.i = end
        return text, 0

    def container(
        self, keep: int = 0, cuts: list[int] | None = None, inside: bool = False
    ) -> tuple[bytes | None, int]:
        """Moves past the object or array at the current byte: (its text or None, its depth).

        The text is kept while it is at most ``keep`` bytes. With ``cuts``, the
        stream offset of the last element separator (a comma at the container's
        own level) in each block read is appended: the elements between two
        cuts can be read again as one block. ``inside``: the current byte is
        already inside the container, between two of its elements.
        """
        if not inside:
            self.peek()
        start = p = self.i
        depth, in_string, deepest = (1 if inside else 0), False, 0
        kept = keep > 0
        step = 4096  # most values are small: look at a few KB first, then more
        while True:
            end = min(len(self.buf), p + step)
            step = min(step * 16, 1 << 24)
            while end > p and self.buf[end - 1] == _BACKSLASH:
                end -= 1
            if end > p:
                segment = self.buf[p:end]
                after, inside, in_string_after = _depths(segment, depth, in_string)
                closed = np.flatnonzero(after <= 0)
                stop = int(closed[0]) + 1 if closed.size else len(segment)
                deepest = max(deepest, int(after[:stop].max()))
                if cuts is not None:
                    commas = np.flatnonzero(
                        (np.frombuffer(segment, np.uint8)[:stop] == _COMMA)
                        & (after[:stop] == 1)
                        & ~inside[:stop]
                    )
                    if commas.size:
                        cuts.append(self.base + p + int(commas[-1]))
                if closed.size:
                    self.i = p + stop
                    text = self.buf[start : self.i] if kept else None
                    if text is not None and len(text) > keep:
                        text = None
                    return text, deepest
                depth, in_string = int(after[-1]), in_string_after
                p = end
            if p < len(self.buf) and self.buf[p] != _BACKSLASH:
                continue  # the rest of the buffer first
            if kept and p - start > keep:
                kept = False
            keep_from = start if kept else p
            self.i = p
            if not self._more(keep_from):
                raise StructureError("the file ends inside a value (unclosed '{' or '[')")
            start -= keep_from
            p -= keep_from


def top_level(scanner: Scanner, layout: str):
    """Yields once before each top-level value (the scanner at its first byte).

    ``array``: the elements of the file's one array; ``ndjson``: the values one
    after another (one a line, or any whitespace between them). The caller
    consumes the value before asking for the next. Raises StructureError where
    the layout breaks.
    """
    if layout == "empty":
        return
    if layout == "array":
        scanner.expect(b"[", "'[' at the start of the array")
        if scanner.peek() == b"]":
            scanner.i += 1
        else:
            while True:
                yield
                got = scanner.peek()
                scanner.i += 1
                if got == b"]":
                    break
                if got != b",":
                    shown = repr(got.decode("latin-1")) if got else "the end of the file"
                    raise StructureError(f"expected ',' or ']' after a value, got {shown}")
        if scanner.peek():
            raise StructureError("data after the end of the JSON array")
        return
    while scanner.peek():
        yield
