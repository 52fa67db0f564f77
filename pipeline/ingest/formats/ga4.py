"""GA4 Data API ``runReport`` responses as GA records (docs/sources.md, "GA4").

A file holds one response, a JSON array of them, or NDJSON of them. Each
row of a response is one GA record of the contract; its position is its
1-based number among all the rows of the file, in order.

A response is read twice, forward only, so that its rows are never held at
once: the first pass walks the response's top level with the structure
scanner, decoding every member but ``rows`` (headers and metadata, small) and
noting where ``rows`` starts and ends, with a cut about every MB of rows. The
API writes ``metadata`` (and so the time zone) after the rows, hence the
second pass: a second handle on the file reads the rows again, one block
between two cuts at a time, and msgspec decodes each block into typed rows.

Mapping (by header name, in any order):

=========================  ================================================
record field               from
=========================  ================================================
page                       ``pageLocation``, else ``https://`` + ``hostName``
                           + ``pagePath``; canonicalised like every page
hour                       ``dateHour`` (``YYYYMMDDHH``, local time in
                           ``metadata.timeZone``) as its UTC hour
users                      ``activeUsers``
sessions                   ``sessions``
views                      ``screenPageViews``
engagement_seconds         ``userEngagementDuration``
bounces                    ``sessions - engagedSessions``, else
                           ``round(bounceRate x sessions)`` (half up)
=========================  ================================================

The local hour of ``dateHour`` is converted with zoneinfo: in the hour a
daylight-saving change repeats (GA4 reports both as one ``dateHour``), the
first occurrence (``fold=0``) is taken; an hour the change skips wholly does
not exist, and a row naming one is rejected (a change of half an hour skips
only part of an hour: the hour starts at its first existing instant); in a
zone whose offset is not whole hours (Asia/Kolkata) the local hour starts
inside a UTC hour, which it is truncated to.
"""

from __future__ import annotations

import itertools
import math
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import BinaryIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import orjson

from ..readers import RAW_TEXT_LIMIT, Chunk, FileBreak, open_stream
from ..schemas import INT_MAX, Unreadable
from .scanner import Scanner, StructureError, top_level

PART_BYTES = 1 << 20  # any member of a response but ``rows`` (headers, metadata, totals)
AGGREGATED = {
    "(other)": "GA4 grouped rows it could not report separately (metadata.dataLossFromOtherRow)",
    "(not set)": "GA4 has no value for these hits",
}
# The report read as GA records (the table above); ``manage.py fetch`` asks for these.
DIMENSIONS = ("dateHour", "pageLocation")
HOST_PATH_DIMENSIONS = ("dateHour", "hostName", "pagePath")
KNOWN_DIMENSIONS = frozenset((*DIMENSIONS, *HOST_PATH_DIMENSIONS))
METRICS = {
    "activeUsers": "users",
    "sessions": "sessions",
    "screenPageViews": "views",
    "userEngagementDuration": "engagement_seconds",
}
ENGAGED_METRIC = "engagedSessions"  # bounces = sessions - engagedSessions
REPORT_METRICS = (*METRICS, ENGAGED_METRIC)


class _Value(msgspec.Struct, gc=False):
    value: str | None = None


class Ga4Row(msgspec.Struct, gc=False):
    dimensionValues: list[_Value]
    metricValues: list[_Value]


_ROWS = msgspec.json.Decoder(list[Ga4Row])
_RAWS = msgspec.json.Decoder(list[msgspec.Raw])
_ROW = msgspec.json.Decoder(Ga4Row)


class _Skip(msgspec.Struct, gc=False):
    """Any JSON object; its members are skipped (checked, not built)."""


_SKIP = msgspec.json.Decoder(list[_Skip])
WINDOW = 1 << 20  # bytes of rows between two cuts, about
_ROWS_END = re.compile(rb"\][ \t\r\n]*\}[ \t\r\n]*\]")
_BEFORE_ROW = re.compile(rb"\}[ \t\r\n]*(,)[ \t\r\n]*\{[ \t\r\n]*\Z")
_WS_BYTES = b" \t\r\n"


@dataclass
class Quality:
    """What a response says about its own completeness (kept with the batch)."""

    response: int  # 1-based, in the file
    data_loss_from_other_row: bool
    subject_to_thresholding: bool
    sampling: list | None  # metadata.samplingMetadatas as sent
    rows: int = 0
    first_hour: datetime | None = None
    last_hour: datetime | None = None

    @property
    def flagged(self) -> bool:
        return self.data_loss_from_other_row or self.subject_to_thresholding or bool(self.sampling)


class _RowReject(Exception):
    pass


@dataclass
class _Layout:
    """Where each needed value is in a row of one response."""

    hour: int
    location: int | None
    host: int | None
    path: int | None
    dimensions: int
    metrics: int
    users: int
    sessions: int
    views: int
    engagement: int
    engaged: int | None
    bounce_rate: int | None
    zone: ZoneInfo
    zone_name: str
    hours: dict = field(default_factory=dict)
    hour_bytes: dict = field(default_factory=dict)


def _names(headers: object, what: str) -> list[str]:
    if not isinstance(headers, list) or not all(
        isinstance(h, dict) and isinstance(h.get("name"), str) for h in headers
    ):
        raise ValueError(f"{what} must be a list of objects with a 'name'")
    return [h["name"] for h in headers]


def layout_of(parts: dict) -> _Layout:
    """The row layout from a response's headers and metadata, or ValueError (file level)."""
    if "dimensionHeaders" not in parts or "metricHeaders" not in parts:
        missing = [k for k in ("dimensionHeaders", "metricHeaders") if k not in parts]
        raise ValueError(f"no {' or '.join(missing)}: not a runReport response")
    dimensions = _names(parts["dimensionHeaders"], "dimensionHeaders")
    metrics = _names(parts["metricHeaders"], "metricHeaders")
    if "dateHour" not in dimensions:
        raise ValueError("dimensionHeaders lack 'dateHour'")
    if "pageLocation" not in dimensions and not {"hostName", "pagePath"} <= set(dimensions):
        raise ValueError("dimensionHeaders lack 'pageLocation' (or both 'hostName' and 'pagePath')")
    extra = [d for d in dimensions if d not in KNOWN_DIMENSIONS]
    if extra:
        raise ValueError(
            f"dimension(s) {', '.join(map(repr, extra))} would split a page's hour into "
            "several rows; ask for dateHour with pageLocation or hostName and pagePath only"
        )
    missing = [m for m in METRICS if m not in metrics]
    if ENGAGED_METRIC not in metrics and "bounceRate" not in metrics:
        missing.append("engagedSessions (or bounceRate)")
    if missing:
        raise ValueError(f"metricHeaders lack {', '.join(map(repr, missing))}")
    metadata = parts.get("metadata")
    zone_name = metadata.get("timeZone") if isinstance(metadata, dict) else None
    if not isinstance(zone_name, str) or not zone_name:
        raise ValueError("no metadata.timeZone")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"metadata.timeZone {zone_name[:60]!r} is not an IANA time zone") from None

    def at(names: list[str], name: str) -> int | None:
        return names.index(name) if name in names else None

    return _Layout(
        hour=dimensions.index("dateHour"),
        location=at(dimensions, "pageLocation"),
        host=at(dimensions, "hostName"),
        path=at(dimensions, "pagePath"),
        dimensions=len(dimensions),
        metrics=len(metrics),
        users=metrics.index("activeUsers"),
        sessions=metrics.index("sessions"),
        views=metrics.index("screenPageViews"),
        engagement=metrics.index("userEngagementDuration"),
        engaged=at(metrics, "engagedSessions"),
        bounce_rate=at(metrics, "bounceRate"),
        zone=zone,
        zone_name=zone_name,
    )


def utc_hour(date_hour: str, zone: ZoneInfo, zone_name: str = "") -> datetime:
    """The UTC hour of a GA4 ``dateHour`` in ``zone`` (see the module's docstring)."""
    if len(date_hour) != 10 or not date_hour.isdigit():
        raise _RowReject(f"dateHour must be YYYYMMDDHH, got {date_hour[:40]!r}")
    try:
        local = datetime(
            int(date_hour[:4]), int(date_hour[4:6]), int(date_hour[6:8]), int(date_hour[8:])
        )
    except ValueError as exc:
        raise _RowReject(f"dateHour {date_hour!r}: {exc}") from None
    # The first instant the local clock is in that hour: its start, or, when a
    # change of less than an hour skips the start (Australia/Lord_Howe), the
    # first quarter of the hour that exists.
    for minute in (0, 15, 30, 45):
        wall = local.replace(minute=minute)
        instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall:
            return instant.replace(minute=0, second=0, microsecond=0)
    raise _RowReject(
        f"dateHour {date_hour!r} does not exist in {zone_name or zone.key} "
        "(the hour a daylight-saving change skips)"
    )


def _count(text: str | None, name: str) -> int:
    try:
        value = int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _RowReject(f"{name} must be an integer, got {text!r:.40}") from None
    if not 0 <= value <= INT_MAX:
        raise _RowReject(f"{name} must be between 0 and {INT_MAX}, got {value}")
    return value


def _number(text: str | None, name: str) -> float:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _RowReject(f"{name} must be a number, got {text!r:.40}") from None
    if not (math.isfinite(value) and value >= 0):
        raise _RowReject(f"{name} must be a number >= 0, got {text!r:.40}")
    return value


def map_row(row: Ga4Row, layout: _Layout) -> tuple:
    """(page, hour, users, sessions, views, bounces, engagement_seconds), or _RowReject."""
    dims, mets = row.dimensionValues, row.metricValues
    if len(dims) != layout.dimensions or len(mets) != layout.metrics:
        raise _RowReject(
            f"row has {len(dims)} dimension and {len(mets)} metric values, the headers name "
            f"{layout.dimensions} and {layout.metrics}"
        )
    if layout.location is not None:
        page = dims[layout.location].value
        names = (page,)
    else:
        host, path = dims[layout.host].value, dims[layout.path].value  # type: ignore[index]
        names = (host, path)
        page = None if host is None or path is None else f"https://{host}{path}"
    for name in names:
        if name in AGGREGATED:
            raise _RowReject(f"page is {name!r}: {AGGREGATED[name]}")
    if page is None:
        raise _RowReject("page: no value")
    date_hour = dims[layout.hour].value
    hour = layout.hours.get(date_hour)
    if hour is None:
        if date_hour in AGGREGATED:
            raise _RowReject(f"dateHour is {date_hour!r}: {AGGREGATED[date_hour]}")
        if type(date_hour) is not str:
            raise _RowReject("dateHour: no value")
        hour = utc_hour(date_hour, layout.zone, layout.zone_name)
        if len(layout.hours) < 100_000:
            layout.hours[date_hour] = hour
    sessions = _count(mets[layout.sessions].value, "sessions")
    if layout.engaged is not None:
        engaged = _count(mets[layout.engaged].value, "engagedSessions")
        bounces = sessions - engaged
        if bounces < 0:
            raise _RowReject(f"engagedSessions ({engaged}) must be <= sessions ({sessions})")
    else:
        rate = _number(mets[layout.bounce_rate].value, "bounceRate")  # type: ignore[index]
        if rate > 1:
            raise _RowReject(f"bounceRate must be between 0 and 1, got {rate}")
        bounces = math.floor(rate * sessions + 0.5)
    return (
        page,
        hour,
        _count(mets[layout.users].value, "activeUsers"),
        sessions,
        _count(mets[layout.views].value, "screenPageViews"),
        bounces,
        _number(mets[layout.engagement].value, "userEngagementDuration"),
    )


class _Replay:
    """A second, forward-only handle on the file: reads the byte ranges of the rows again."""

    def __init__(self, path: str) -> None:
        self._stream = open_stream(path)
        self._at = 0

    def read(self, start: int, end: int) -> bytes:
        if start != self._at:
            self._stream.seek(start)
        self._at = end
        return self._stream.read(end - start)

    def close(self) -> None:
        self._stream.close()


class Ga4Reader:
    """The chunks of GA records of a file of runReport responses; ``quality`` after reading."""

    def __init__(self, path: str, stream: BinaryIO, layout: str) -> None:
        self._path = path
        self._stream = stream
        self._layout = layout
        self.quality: list[Quality] = []
        self.responses = 0

    def chunks(self) -> Iterator[Chunk]:
        scanner = Scanner(self._stream)
        replay = _Replay(self._path)
        position = 1  # of the next row
        try:
            for _ in top_level(scanner, self._layout):
                self.responses += 1
                number = self.responses
                try:
                    parts, rows = _walk(scanner)
                    layout = layout_of(parts)
                except StructureError as exc:
                    raise FileBreak(position, f"response {number}: {exc}") from None
                except ValueError as exc:
                    raise FileBreak(
                        position, f"response {number}: {exc}", kind="not a GA4 runReport response"
                    ) from None
                quality = _quality(number, parts.get("metadata"))
                if rows is not None:
                    for chunk in _row_chunks(replay, rows, layout, position, quality):
                        position += len(chunk.records)
                        yield chunk
                if quality.flagged:
                    self.quality.append(quality)
        except StructureError as exc:
            raise FileBreak(position, str(exc)) from None
        finally:
            replay.close()


def _walk(scanner: Scanner) -> tuple[dict, list[int] | None]:
    """A response's members but ``rows``, and the cuts of ``rows`` (see the module docstring)."""
    scanner.expect(b"{", "a runReport response (a JSON object)")
    parts: dict = {}
    rows = None
    if scanner.peek() == b"}":
        scanner.i += 1
        return parts, rows
    while True:
        key_text, _ = scanner.value(PART_BYTES)
        try:
            key = orjson.loads(key_text)
        except orjson.JSONDecodeError:
            key = None
        if type(key) is not str:
            raise StructureError("expected a member name (a string)")
        scanner.expect(b":", "':' after a member name")
        if key == "rows" and scanner.peek() == b"[":
            rows = _skip_rows(scanner)
        else:
            text, _ = scanner.value(PART_BYTES)
            if text is None:
                raise StructureError(f"member {key!r} longer than {PART_BYTES:,} bytes")
            try:
                parts[key] = orjson.loads(text)
            except (orjson.JSONDecodeError, RecursionError) as exc:
                raise StructureError(f"member {key!r} is not valid JSON: {exc}") from None
        got = scanner.peek()
        scanner.i += 1
        if got == b"}":
            return parts, rows
        if got != b",":
            raise StructureError("expected ',' or '}' after a member")


def _quality(number: int, metadata: object) -> Quality:
    metadata = metadata if isinstance(metadata, dict) else {}
    sampling = metadata.get("samplingMetadatas")
    return Quality(
        response=number,
        data_loss_from_other_row=metadata.get("dataLossFromOtherRow") is True,
        subject_to_thresholding=metadata.get("subjectToThresholding") is True,
        sampling=sampling if isinstance(sampling, list) and sampling else None,
    )


def _valid(body: bytes) -> bool:
    """Whether ``body`` is JSON objects separated by commas (msgspec skips their content)."""
    try:
        _SKIP.decode(b"[" + body + b"]")
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return False
    return True


def _last_row_start(buf: bytes, low: int, high: int) -> int | None:
    """The index of the comma before the last row that starts in ``buf[low:high]``."""
    for key in (b'"dimensionValues"', b'"metricValues"'):
        at = high
        for _ in range(8):
            at = buf.rfind(key, low, at)
            if at < 0:
                break
            found = _BEFORE_ROW.search(buf, max(low, at - 256), at)
            if found:
                return found.start(1)
    return None


def _skip_rows(scanner: Scanner) -> list[int]:
    """Moves past the ``rows`` array at the scanner; returns its cuts.

    The cuts are the stream offsets of the '[', of some element separators
    (about one a ``WINDOW``) and of the ']'. A cut is taken at the last row
    start in the next ``WINDOW`` bytes (or the array's end, ``]}]``) and kept
    when msgspec finds the bytes before it to be whole JSON objects: a guess
    inside a string or inside a row cannot pass that test (its brackets or
    quotes are unbalanced). When no guess passes, the structure scanner
    finds the cuts, byte by byte.
    """
    cuts = [scanner.offset]
    scanner.i += 1
    if scanner.peek() == b"]":
        cuts.append(scanner.offset)
        scanner.i += 1
        return cuts
    start = scanner.i
    while True:
        while len(scanner.buf) - start < WINDOW and not scanner.eof:
            scanner.i = start
            scanner._more(start)
            start = scanner.i
        buf = scanner.buf
        high = min(len(buf), start + WINDOW)
        end = _ROWS_END.search(buf, start, high)
        if end and _valid(buf[start : end.end() - 1]):
            cuts.append(scanner.base + end.end() - 1)
            scanner.i = end.end()
            return cuts
        comma = _last_row_start(buf, start, high) if high < len(buf) else None
        if comma is not None and _valid(buf[start:comma]):
            cuts.append(scanner.base + comma)
            start = comma + 1
            continue
        scanner.i = start
        scanner.container(cuts=cuts, inside=True)
        cuts.append(scanner.offset - 1)
        return cuts


@lru_cache(maxsize=64)
def _row_pattern(dimensions: int, metrics: int) -> re.Pattern:
    """A row of the API's shape, each value captured (values without escapes)."""
    ws = rb"\s*+"
    value = rb"\{" + ws + rb'"value"' + ws + rb":" + ws + rb'"([^"\\]*+)"' + ws + rb"\}"
    sep = ws + rb"," + ws

    def values(count: int) -> bytes:
        return rb"\[" + ws + sep.join([value] * count) + ws + rb"\]"

    return re.compile(
        rb"\{" + ws + rb'"dimensionValues"' + ws + rb":" + ws + values(dimensions) + sep
        + rb'"metricValues"' + ws + rb":" + ws + values(metrics) + ws + rb"\}"
    )  # fmt: skip


def _split_rows(block: bytes, layout: _Layout) -> list[bytes] | None:
    """The values of every row of ``block`` (row after row), or None if a row is not plain."""
    parts = _row_pattern(layout.dimensions, layout.metrics).split(block)
    seps = parts[:: layout.dimensions + layout.metrics + 1]
    if seps[0].strip(_WS_BYTES) or seps[-1].strip(_WS_BYTES):
        return None
    middle = seps[1:-1]
    if b"".join(middle) == b"," * len(middle) or all(
        sep.strip(_WS_BYTES) == b"," for sep in middle
    ):
        return parts
    return None


def _fast_records(block: bytes, layout: _Layout) -> tuple | None:
    """(records, first hour, last hour) of a block of plain rows, all valid; None: the
    block needs the row path.

    Column by column (C loops): every check of ``map_row`` is made on whole
    columns, and any doubt (a value that does not parse, a reject to word)
    hands the block to ``map_row``, which decides row by row.
    """
    if b"\x0b" in block or b"\x0c" in block:  # \s, not JSON whitespace
        return None
    parts = _split_rows(block, layout)
    if parts is None:
        return None
    stride = layout.dimensions + layout.metrics + 1
    if len(parts) == 1:
        return [], None, None

    def column(index: int) -> list[bytes]:
        return parts[1 + index :: stride]

    def metric(index: int) -> list[bytes]:
        return column(layout.dimensions + index)

    try:
        hour_texts = column(layout.hour)
        cache = layout.hour_bytes
        distinct = set(hour_texts)
        missing = distinct.difference(cache)
        if missing:
            if len(cache) > 100_000:
                return None
            for text in missing:
                cache[text] = utc_hour(text.decode("ascii"), layout.zone, layout.zone_name)
        hours = list(map(cache.__getitem__, hour_texts))
        if layout.location is not None:
            locations = column(layout.location)
            if b"(other)" in locations or b"(not set)" in locations:
                return None
            pages = list(map(bytes.decode, locations))
        else:
            hosts, paths = column(layout.host), column(layout.path)  # type: ignore[arg-type]
            for aggregated in (b"(other)", b"(not set)"):
                if aggregated in hosts or aggregated in paths:
                    return None
            pages = [
                f"https://{host.decode()}{path.decode()}"
                for host, path in zip(hosts, paths, strict=True)
            ]
        counts = []
        for index in (layout.users, layout.sessions, layout.views):
            values = list(map(int, metric(index)))
            if not (min(values) >= 0 and max(values) <= INT_MAX):
                return None
            counts.append(values)
        users, sessions, views = counts
        engagement = list(map(float, metric(layout.engagement)))
        if not (min(engagement) >= 0 and math.isfinite(sum(engagement))):
            return None
        if layout.engaged is not None:
            engaged = list(map(int, metric(layout.engaged)))
            bounces = list(map(operator.sub, sessions, engaged))
            if min(bounces) < 0 or min(engaged) < 0:
                return None
        else:
            rates = list(map(float, metric(layout.bounce_rate)))  # type: ignore[arg-type]
            if not (min(rates) >= 0 and max(rates) <= 1):
                return None
            floor = math.floor
            bounces = [
                floor(rate * count + 0.5) for rate, count in zip(rates, sessions, strict=True)
            ]
    except (ValueError, UnicodeDecodeError, _RowReject):
        return None
    records = list(zip(pages, hours, users, sessions, views, bounces, engagement, strict=True))
    span = [cache[text] for text in distinct]
    return records, min(span), max(span)


def _row_chunks(
    replay: _Replay, cuts: list[int], layout: _Layout, position: int, quality: Quality
) -> Iterator[Chunk]:
    """The rows between ``cuts`` (offsets of '[', separators, ']'), a block at a time."""
    for start, end in itertools.pairwise(cuts):
        block = replay.read(start + 1, end)
        fast = _fast_records(block, layout)
        if fast is None:
            records = _slow_records(block, layout, position)
            hours = [record[1] for record in records if type(record) is tuple]
            low, high = (min(hours), max(hours)) if hours else (None, None)
            accepted = len(hours)
        else:
            records, low, high = fast
            accepted = len(records)
        if low is not None:
            if quality.first_hour is None or low < quality.first_hour:
                quality.first_hour = low
            if quality.last_hour is None or high > quality.last_hour:
                quality.last_hour = high
        quality.rows += accepted
        if records:
            yield Chunk(position, records, valid=fast is not None)
            position += len(records)


def _slow_records(block: bytes, layout: _Layout, position: int) -> list:
    """The records of a block row by row, with the reason of each reject."""
    try:
        rows = _ROWS.decode(b"[" + block + b"]")
        raws = None
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        try:
            raws = _RAWS.decode(b"[" + block + b"]")
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
            raise FileBreak(position, f"rows: {exc}") from None
        rows = [_decode_one(raw) for raw in raws]
    records: list = []
    append = records.append
    for index, row in enumerate(rows):
        try:
            if type(row) is not Ga4Row:
                raise _RowReject(row)
            append(map_row(row, layout))
        except _RowReject as exc:
            if raws is None:
                raws = _RAWS.decode(b"[" + block + b"]")
            append(Unreadable(str(exc), bytes(raws[index])[:RAW_TEXT_LIMIT]))
    return records


def _decode_one(raw: msgspec.Raw) -> Ga4Row | str:
    try:
        return _ROW.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
        return f"not a runReport row: {exc}"
