"""PageSpeed Insights v5 ``runPagespeed`` responses as PSI records (docs/sources.md, "PSI").

A file holds one response, a JSON array of them, or NDJSON of them; each
response is one PSI record of the contract, its position its 1-based number
in the file. A response is at most ``METRIFLOW_INGEST_MAX_PSI_RESPONSE_BYTES``
(a longer one is rejected, skipped without being held). msgspec decodes it
into Structs that declare only the fields below, so the rest of the response
(most of its bytes: screenshots, audit details) is skipped without building
anything.

=====================  ===========================================================
record field           from
=====================  ===========================================================
page                   ``lighthouseResult.finalUrl``, else ``.requestedUrl``, else ``id``
measured_at            ``lighthouseResult.fetchTime``, else ``analysisUTCTimestamp``
strategy               ``lighthouseResult.configSettings.formFactor``
performance_score      ``lighthouseResult.categories.performance.score`` x 100
lcp_ms                 ``audits["largest-contentful-paint"].numericValue``
fcp_ms                 ``audits["first-contentful-paint"].numericValue``
ttfb_ms                ``audits["server-response-time"].numericValue``
cls                    ``audits["cumulative-layout-shift"].numericValue``
inp_ms                 ``audits["interaction-to-next-paint"].numericValue``, else null
=====================  ===========================================================

A response with ``lighthouseResult.runtimeError`` or an ``error`` object is
rejected with its message. Every other rule is the contract's PSI rule
(``records.validate_psi``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any, BinaryIO

import msgspec

from ..readers import RAW_TEXT_LIMIT, Chunk, FileBreak
from ..records import Reject, validate_psi
from ..schemas import Unreadable
from .scanner import Scanner, StructureError, top_level

CHUNK_RESPONSES = 64


class _Audit(msgspec.Struct, gc=False):
    numericValue: float | None = None


class _Audits(msgspec.Struct, gc=False):
    lcp: _Audit | None = msgspec.field(default=None, name="largest-contentful-paint")
    fcp: _Audit | None = msgspec.field(default=None, name="first-contentful-paint")
    ttfb: _Audit | None = msgspec.field(default=None, name="server-response-time")
    cls: _Audit | None = msgspec.field(default=None, name="cumulative-layout-shift")
    inp: _Audit | None = msgspec.field(default=None, name="interaction-to-next-paint")


class _Category(msgspec.Struct, gc=False):
    score: float | None = None


class _Categories(msgspec.Struct, gc=False):
    performance: _Category | None = None


class _Config(msgspec.Struct, gc=False):
    formFactor: str | None = None


class _Problem(msgspec.Struct, gc=False):
    code: Any = None
    message: Any = None


class _Lighthouse(msgspec.Struct, gc=False):
    finalUrl: str | None = None
    requestedUrl: str | None = None
    fetchTime: str | None = None
    configSettings: _Config | None = None
    categories: _Categories | None = None
    audits: _Audits | None = None
    runtimeError: _Problem | None = None


class PsiResponse(msgspec.Struct, gc=False):
    id: str | None = None
    analysisUTCTimestamp: str | None = None
    lighthouseResult: _Lighthouse | None = None
    error: _Problem | None = None


class _Object(msgspec.Struct, gc=False):
    """Any JSON object; its members are skipped (checked, not built)."""


_DECODER = msgspec.json.Decoder(PsiResponse)
_OBJECT = msgspec.json.Decoder(_Object)
_WS = b" \t\r\n"


def _problem(kind: str, problem: _Problem) -> str:
    message = problem.message if isinstance(problem.message, str) else ""
    code = f" {problem.code}" if problem.code is not None else ""
    return f"{kind}{code}: {message[:300]}" if message else f"{kind}{code}"


def _value(audit: _Audit | None) -> float | None:
    return None if audit is None else audit.numericValue


def map_response(response: PsiResponse) -> tuple:
    """(page, measured_at, strategy, score, lcp, fcp, inp, ttfb, cls), or Reject."""
    if response.error is not None:
        raise Reject(_problem("PSI error", response.error))
    result = response.lighthouseResult
    if result is None:
        raise Reject("no lighthouseResult")
    if result.runtimeError is not None:
        raise Reject(_problem("Lighthouse runtimeError", result.runtimeError))
    page = result.finalUrl or result.requestedUrl or response.id
    if page is None:
        raise Reject("no page: lighthouseResult.finalUrl, .requestedUrl and id are all absent")
    measured_at = result.fetchTime or response.analysisUTCTimestamp
    if measured_at is None:
        raise Reject("no time: lighthouseResult.fetchTime and analysisUTCTimestamp are absent")
    strategy = result.configSettings.formFactor if result.configSettings else None
    if strategy is None:
        raise Reject("no strategy: lighthouseResult.configSettings.formFactor is absent")
    performance = result.categories.performance if result.categories else None
    if performance is None or performance.score is None:
        raise Reject("no score: lighthouseResult.categories.performance.score is absent or null")
    audits = result.audits or _Audits()
    record = {
        "page": page,
        "measured_at": measured_at,
        "strategy": strategy,
        "performance_score": performance.score * 100,
        "lcp_ms": _value(audits.lcp),
        "fcp_ms": _value(audits.fcp),
        "inp_ms": _value(audits.inp),
        "ttfb_ms": _value(audits.ttfb),
        "cls": _value(audits.cls),
    }
    return validate_psi(record)


def _record(response: object, text: bytes) -> object:
    """The record of one response, or the Unreadable that says why it is rejected."""
    raw = text[:RAW_TEXT_LIMIT]
    if isinstance(response, Unreadable):
        return response
    try:
        return map_response(response)  # type: ignore[arg-type]
    except Reject as exc:
        return Unreadable(str(exc), raw)


def _decode(text: bytes) -> object:
    try:
        return _DECODER.decode(text)
    except RecursionError:
        return Unreadable("response nested too deep", text[:RAW_TEXT_LIMIT])
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        return Unreadable(f"not a PSI v5 response: {exc}", text[:RAW_TEXT_LIMIT])


def _whole(text: bytes) -> bool:
    """Whether ``text`` is one whole JSON object (checked by msgspec, contents skipped)."""
    try:
        _OBJECT.decode(text)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return False
    return True


@lru_cache(maxsize=16)
def _closing(indent: int) -> re.Pattern:
    return re.compile(rb"\n" + b" " * indent + rb"\}")


def _next_response(scanner: Scanner, limit: int) -> tuple[object, bytes]:
    """(the decoded response or an Unreadable, its text) of the value at the scanner.

    The end of a response is guessed, then checked: an indented response ends at
    the first line holding only its closing brace at its own indentation; a
    response on one line (NDJSON) ends with its line. A guess that msgspec does
    not find to be one whole object, or a response laid out otherwise, is read
    by the structure scanner. A response longer than ``limit`` bytes is skipped.
    """
    if scanner.peek() != b"{":
        text, _ = scanner.value(limit)
        if text is None:
            return Unreadable(f"response longer than {limit:,} bytes"), b""
        return _decode(text), text
    start = scanner.i
    buf = scanner.buf
    line = buf.rfind(b"\n", 0, start) + 1
    # Indented: '{' ends its line and only spaces precede it on its line.
    indented = buf[start + 1 : start + 2] in (b"\n", b"\r") and not buf[line:start].strip(b" ")
    indent = start - line if indented and (line or scanner.base == 0) else None
    searched = start
    while True:
        buf = scanner.buf
        if indent is not None:
            found = _closing(indent).search(buf, max(start, searched - indent - 2))
            end = found.end() if found else -1
        else:
            end = buf.find(b"\n", searched)
        if end >= 0:
            text = buf[start:end]
            if indent is None:
                text = text.rstrip(_WS)
                text = text[:-1].rstrip(_WS) if text[-1:] in (b",", b"]") else text
            if len(text) <= limit and _whole(text):
                scanner.i = start + len(text)
                return _decode(text), text
            break
        if len(buf) - start > limit or scanner.eof:
            break
        searched = len(buf)
        scanner.i = start
        scanner._more(start)
        start = scanner.i
    scanner.i = start
    text, _ = scanner.container(keep=limit)
    if text is None:
        return Unreadable(f"response longer than {limit:,} bytes"), b""
    return _decode(text), text


def read_chunks(stream: BinaryIO, layout: str, max_bytes: int) -> Iterator[Chunk]:
    """The PSI records of a file of responses, in chunks; FileBreak where its layout breaks."""
    scanner = Scanner(stream)
    position = 1
    records: list = []
    try:
        for _ in top_level(scanner, layout):
            response, text = _next_response(scanner, max_bytes)
            records.append(_record(response, text))
            if len(records) >= CHUNK_RESPONSES:
                yield Chunk(position, records)
                position += len(records)
                records = []
    except StructureError as exc:
        if records:
            yield Chunk(position, records)
            position += len(records)
        raise FileBreak(position, str(exc)) from None
    if records:
        yield Chunk(position, records)
