"""Output files: JSON-array or NDJSON layout, plain or gzip, written atomically.

A file is written to ``<name>.part`` and renamed when complete, so a reader never
sees a half-written file under its final name. Gzip output uses zlib directly
(deterministic header, no timestamp) and compresses in a background thread so
that compression overlaps with the generation of the next chunk.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import zlib
from collections.abc import Callable, Iterator

_GZIP_WBITS = 31  # zlib container: gzip


class Sink:
    """Writes records to one file in the chosen layout."""

    def __init__(self, path: str, layout: str, gzip_level: int | None):
        self.path = path
        self.tmp_path = path + ".part"
        self.layout = layout
        self.records = 0
        self.raw_bytes = 0
        self._file = open(self.tmp_path, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._zlib = None
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        if gzip_level is not None:
            self._zlib = zlib.compressobj(gzip_level, zlib.DEFLATED, _GZIP_WBITS)
            self._queue = queue.Queue(maxsize=3)
            self._thread = threading.Thread(target=self._compress_loop, daemon=True)
            self._thread.start()

    def _compress_loop(self) -> None:
        assert self._queue is not None and self._zlib is not None
        while True:
            data = self._queue.get()
            if data is None:
                return
            if self._error is not None:
                continue
            try:
                self._file.write(self._zlib.compress(data))
            except BaseException as exc:  # reported by the writer thread
                self._error = exc

    def _put(self, data: bytes) -> None:
        self.raw_bytes += len(data)
        if self._queue is None:
            self._file.write(data)
            return
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def write(self, lines: list[bytes]) -> None:
        """Append records (formatted JSON objects, UTF-8) to the file."""
        if not lines:
            return
        if self.layout == "ndjson":
            lines.append(b"")
            body = b"\n".join(lines)
            lines.pop()
        else:
            if self.records == 0:
                self._put(b"[")
            else:
                self._put(b",\n")
            body = b",\n".join(lines)
        self.records += len(lines)
        self._put(body)

    def close(self) -> None:
        """Finish the layout, flush, and move the file to its final name."""
        if self.layout == "array":
            self._put(b"]\n" if self.records else b"[]\n")
        if self._queue is not None:
            self._queue.put(None)
            assert self._thread is not None
            self._thread.join()
            if self._error is not None:
                raise self._error
            assert self._zlib is not None
            self._file.write(self._zlib.flush())
        self._file.close()
        os.replace(self.tmp_path, self.path)

    def abort(self) -> None:
        if self._queue is not None and self._thread is not None and self._thread.is_alive():
            self._error = self._error or RuntimeError("aborted")
            self._queue.put(None)
            self._thread.join()
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.tmp_path)


def _read_plain(path: str, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(size):
            yield chunk


def _read_gzip(path: str, size: int = 1 << 20) -> Iterator[bytes]:
    d = zlib.decompressobj(_GZIP_WBITS)
    with open(path, "rb") as f:
        while chunk := f.read(size):
            out = d.decompress(chunk)
            if out:
                yield out
        tail = d.flush()
        if tail:
            yield tail


def _inside_record(buf: bytes, i: int) -> int:
    """An offset near ``i`` that lies strictly inside a record (objects are flat)."""
    opened = buf.rfind(b"{", 0, i)
    closed = buf.rfind(b"}", 0, i)
    if opened > closed:
        return i
    start = buf.find(b"{", i)
    if start == -1:  # nothing after: cut the last record before its closing brace
        return closed if closed > 0 else max(1, i)
    end = buf.find(b"}", start)
    if end == -1:
        return start + 1
    return (start + 1 + end) // 2


_WINDOW = 1 << 16


def _cut(chunks: Iterator[bytes], target: int, emit: Callable[[bytes], None]) -> tuple[int, int]:
    """Emit the stream's first bytes up to a cut near ``target`` inside a record.

    Returns (cut offset, newlines before it).
    """
    pos = 0  # stream offset of pending[0]
    pending = bytearray()
    newlines = 0
    for chunk in chunks:
        pending += chunk
        if pos + len(pending) >= target + _WINDOW:
            break
        safe = target - _WINDOW - pos
        if safe > 0:
            part = bytes(pending[:safe])
            newlines += part.count(b"\n")
            emit(part)
            del pending[:safe]
            pos += safe
    buf = bytes(pending)
    cut = _inside_record(buf, min(target - pos, len(buf)))
    part = buf[:cut]
    newlines += part.count(b"\n")
    emit(part)
    return pos + cut, newlines


def truncate(path: str, fraction: float, gzip_level: int | None, raw_bytes: int) -> dict:
    """Cut a finished file at ``fraction`` of its (uncompressed) bytes, inside a record.

    A gzip file is rewritten as a valid gzip stream of the truncated uncompressed
    bytes. Returns the truncation facts for the manifest.
    """
    target = max(1, int(raw_bytes * fraction))
    if gzip_level is None:
        offset, newlines = _cut(_read_plain(path), target, lambda _b: None)
        os.truncate(path, offset)
    else:
        tmp = path + ".part"
        comp = zlib.compressobj(gzip_level, zlib.DEFLATED, _GZIP_WBITS)
        with open(tmp, "wb") as out:
            offset, newlines = _cut(_read_gzip(path), target, lambda b: out.write(comp.compress(b)))
            out.write(comp.flush())
        os.replace(tmp, path)
    return {
        "fraction": fraction,
        "offset": offset,
        "uncompressed_bytes_before": raw_bytes,
        "complete_records": newlines,
    }
