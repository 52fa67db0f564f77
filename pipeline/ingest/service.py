"""Ingestion: one file into its raw partition, with bookkeeping and resume.

Per file, one producer/consumer pipeline: a reader thread parses, validates
and resolves pages, and hands chunks of rows through a bounded queue to the
writer (the calling thread), which streams them into the batch's raw
partition with binary ``COPY``. A slow database therefore slows the reader
instead of filling memory. Every ``batch_size`` records the writer commits the
rows together with the rejects and the batch's ``committed_position`` in one
transaction: a reported success means the rows are committed, and a killed
ingestion resumes after the last commit when the same file is ingested again.

Duplicates of content are found by checksum: a file whose content was
ingested before is skipped unless forced. The hand-off to the pipeline (the
staged stage's ledger row, queued with its outbox message when the chain is
triggered, else pending) is written in the batch's final transaction and
published only after it commits.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from itertools import repeat
from operator import itemgetter

import msgspec
import psycopg
from django.conf import settings
from psycopg import sql
from psycopg.types.json import Jsonb

from observability.logs import logged_ingest_file

from .canonical import InvalidUrl, canonicalize
from .formats import SOURCE_OF, ga4, psi
from .readers import (
    Chunk,
    FileBreak,
    Limits,
    bytes_read,
    detect_layout,
    open_stream,
    read_chunks,
)
from .records import (
    Reject,
    validate_ga,
    validate_psi,
    validate_seed_ga,
    validate_seed_psi,
)
from .schemas import GaRecord, Loose, PsiRecord, Unreadable, decoder_for, generic_decoder
from .timestamps import HourCache, InvalidTimestamp, TimeRange

logger = logging.getLogger(__name__)

GA_COLUMNS = (
    "batch_id",
    "position",
    "page_id",
    "hour",
    "users",
    "sessions",
    "views",
    "bounces",
    "engagement_seconds",
)
GA_TYPES = ("int8", "int8", "int4", "timestamptz", "int4", "int4", "int4", "int4", "float8")
PSI_COLUMNS = (
    "batch_id",
    "position",
    "page_id",
    "measured_at",
    "strategy",
    "performance_score",
    "lcp_ms",
    "fcp_ms",
    "inp_ms",
    "ttfb_ms",
    "cls",
)
PSI_TYPES = ("int8", "int8", "int4", "timestamptz", "text", *(["float8"] * 6))
_QUEUE_CHUNKS = 4  # chunks (about 1 MB of input each) between reader and writer
_ADVISORY_NAMESPACE = 0x4D46  # 'MF': advisory lock class for ingest batches


class IngestError(Exception):
    """The ingestion of a file could not be done (bad arguments, unreadable file...).

    ``reason`` is worded for a user; ``path``, when the error is about one file,
    is the path as given.
    """

    def __init__(self, reason: str, *, path: str | None = None) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason = reason
        self.path = path


@dataclass
class FileResult:
    path: str
    source: str | None = None
    batch_id: int | None = None
    # loaded | broken | skipped | busy | failed (not ingested, or too many rejects:
    # then the batch exists, its accepted records loaded)
    status: str = "failed"
    accepted: int = 0
    rejected: int = 0
    seconds: float = 0.0
    resumed_from: int = 0
    layout: str | None = None  # array | ndjson | seed, once the file was opened
    file_format: str | None = None  # seed | ga4 | psi when read as one (given or detected)
    message: str = ""
    # skipped as the same content as a batch whose file broke: its records after the
    # break were never loaded, so the skip is no success
    skipped_broken: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "loaded" or (self.status == "skipped" and not self.skipped_broken)

    @property
    def rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        """One line: the path as given, then what happened to it."""
        if self.status in ("skipped", "busy") or self.batch_id is None:
            return f"{self.path}: {self.message or self.status}"
        line = (
            f"{self.path}: {self.source} batch {self.batch_id} {self.status}, "
            f"{self.accepted:,} accepted, {self.rejected:,} rejected, {self.seconds:.1f} s"
        )
        if self.accepted and self.seconds:
            line += f" ({self.rate:,.0f} records/s)"
        if self.resumed_from:
            line += f", resumed after record {self.resumed_from:,}"
        if self.message:
            line += f"; {self.message}"
        return line


@dataclass
class _Work:
    rows: list
    rejects: list  # (position, reason, raw text)
    last_position: int
    bytes_read: int = 0  # of the file on disk, when the chunk had been read


@dataclass
class _End:
    bytes_read: int = 0
    broken: FileBreak | None = None
    unreadable: int = 0  # NDJSON lines that were not JSON
    first_unreadable: int = 0


@dataclass
class _Failure:
    error: BaseException


@dataclass
class Progress:
    """Counters a caller can poll from another thread (or process, via callback).

    ``bytes_read`` is how far into the file on disk the records written so far
    were read: for gzip, compressed bytes, so that it ends at the file's size.
    The callback gets the records and rejects added and the new ``bytes_read``.
    """

    records: int = 0
    rejected: int = 0
    bytes_read: int = 0
    callback: Callable[[int, int, int], None] | None = field(default=None, repr=False)

    def add(self, records: int, rejected: int, bytes_read: int) -> None:
        self.records += records
        self.rejected += rejected
        self.bytes_read = max(self.bytes_read, bytes_read)
        if self.callback:
            self.callback(records, rejected, self.bytes_read)


def conninfo() -> str:
    """libpq connection string of the default database (ingestion runs outside the ORM)."""
    db = settings.DATABASES["default"]
    parts = {
        "host": db.get("HOST") or "",
        "port": str(db.get("PORT") or ""),
        "user": db.get("USER") or "",
        "password": db.get("PASSWORD") or "",
        "dbname": db["NAME"],
        "application_name": "metriflow-ingest",
    }
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in parts.items() if v})


_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def unreadable_reason(path: str) -> str | None:
    """Why ``path`` cannot be ingested, worded for a user ("no such file"...); None if it can.

    The file is read twice (checksum, then records), so it must be a regular
    file; it is opened and its first byte read, which is the only test that
    holds whoever runs the command (root reads a file whatever its mode bits).
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except NotADirectoryError:
        return "no such file (a part of the path is not a directory)"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    if stat.S_ISDIR(info.st_mode):
        return "is a directory"
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a file")
        return f"not a regular file ({kind})"
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    return None


def check_max_reject_rate(value: float) -> float:
    """The fraction, checked: a number from 0 to 1."""
    if not isinstance(value, int | float) or not 0 <= value <= 1:
        raise IngestError(f"max_reject_rate must be a fraction from 0 to 1, got {value!r}")
    return float(value)


def file_checksum(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def detect_source(path: str, first_record: object) -> str | None:
    """The source from the file name (ga*, psi*), else from the first record's keys."""
    name = os.path.basename(path).lower()
    if name.startswith("psi"):
        return "psi"
    if name.startswith("ga"):
        return "ga"
    if isinstance(first_record, dict):
        keys = first_record.keys()
        if {"measured_at", "strategy", "performance_score", "PerformanceScore"} & keys:
            return "psi"
        if {"hour", "users", "sessions", "Users", "Sessions", "Views"} & keys:
            return "ga"
    return None


def looks_like_seed(first_record: object) -> bool:
    return isinstance(first_record, dict) and "Date" in first_record and "Page" in first_record


# The members that only a Google response has at its top level (docs/sources.md).
_GA4_KEYS = frozenset({"dimensionHeaders", "metricHeaders"})
_PSI_KEYS = frozenset({"lighthouseResult", "loadingExperience", "originLoadingExperience"})
_PSI_KIND = "pagespeedonline#result"
HEAD_BYTES = 1 << 16  # how much of a file is sniffed when its first record is unreadable
_HEAD_MARKS = (
    ("ga4", (b'"dimensionHeaders"', b'"metricHeaders"')),
    ("psi", (b'"lighthouseResult"', b'"pagespeedonline#result"')),
)


def detect_google_format(first_record: object, head: bytes = b"") -> str | None:
    """'ga4' for a GA4 runReport response, 'psi' for a PageSpeed Insights v5 response,
    None for anything else: from the first record's top-level members, or, when the
    first record could not be decoded (e.g. larger than a record may be), from the
    names in the first ``HEAD_BYTES`` of the file (``head``)."""
    if isinstance(first_record, dict):
        keys = first_record.keys()
        if _GA4_KEYS & keys:
            return "ga4"
        if _PSI_KEYS & keys or first_record.get("kind") == _PSI_KIND:
            return "psi"
        return None
    if first_record is None or type(first_record) is Unreadable:
        for name, marks in _HEAD_MARKS:
            if any(mark in head for mark in marks):
                return name
    return None


def limits() -> Limits:
    """The bounds of one record, from the settings."""
    return Limits(
        record_bytes=settings.METRIFLOW_INGEST_MAX_RECORD_BYTES,
        depth=settings.METRIFLOW_INGEST_MAX_DEPTH,
    )


def time_range() -> TimeRange:
    """The supported instants of records, from the settings."""
    return TimeRange.from_text(
        settings.METRIFLOW_INGEST_TIME_FROM, settings.METRIFLOW_INGEST_TIME_UNTIL
    )


class PageResolver:
    """Raw page URL -> page id, cached; canonicalises and creates pages on a miss.

    A URL longer than ``max_url`` characters, or than ``max_url`` bytes in UTF-8
    (PostgreSQL's index on page.url holds at most 2,704 bytes), is refused.
    """

    def __init__(self, conn: psycopg.Connection, max_url: int | None = None) -> None:
        self._conn = conn
        self._max_url = max_url or settings.METRIFLOW_INGEST_MAX_URL_CHARS
        self._by_raw: dict[str, int] = {}
        self._by_canonical: dict[str, int] = {}

    def page_id(self, raw_url: str) -> int:
        try:
            return self._by_raw[raw_url]
        except KeyError:
            pass
        if len(raw_url) > self._max_url or len(raw_url.encode("utf-8", "replace")) > self._max_url:
            raise Reject(
                f"page: URL longer than {self._max_url:,} characters ({len(raw_url):,}) "
                f"or {self._max_url:,} bytes in UTF-8"
            )
        try:
            page = canonicalize(raw_url)
        except InvalidUrl as exc:
            raise Reject(f"page: {exc}") from None
        page_id = self._by_canonical.get(page.url)
        if page_id is None:
            row = self._conn.execute(
                "SELECT page_ensure(%s, %s, %s)", (page.url, page.host, page.path)
            ).fetchone()
            page_id = row[0]
            self._by_canonical[page.url] = page_id
        if len(self._by_raw) > 1_000_000:
            self._by_raw.clear()
        self._by_raw[raw_url] = page_id
        return page_id


def _plain(record: object) -> object:
    """A record the fast path did not take, as the Python validators expect it."""
    kind = type(record)
    if kind is Loose:
        return record.parsed()
    if kind is GaRecord or kind is PsiRecord:
        return msgspec.to_builtins(record)
    return record


def _rows_of(
    chunk: Chunk,
    source: str,
    seed: bool,
    batch_id: int,
    pages: PageResolver,
    hours: HourCache,
    skip_through: int,
    span: TimeRange | None = None,
    mapped: bool = False,
) -> tuple[list, list]:
    """The COPY rows and the rejects of one chunk (records <= skip_through are skipped).

    Typed records from the fast decoder need only the checks it cannot make
    (bounces <= sessions, the URL, the GA hour); every other record goes
    through the Python validators, which word the reason of a reject.
    ``mapped``: the records are values already validated by a format of
    ``formats/`` (or an Unreadable with its reason); only the page is left.
    """
    rows: list = []
    rejects: list = []
    span = span or hours.span
    append = rows.append
    page_id = pages.page_id
    hour_of = hours.hour
    position = chunk.first_position - 1
    start = 0
    if skip_through >= chunk.first_position:
        start = skip_through - chunk.first_position + 1
        position += start
    records = chunk.records
    if mapped:
        time_name = "hour" if source == "ga" else "measured_at"
        if chunk.valid and start == 0 and records:
            # Column by column: only the pages are resolved one by one.
            columns = list(zip(*records, strict=True))
            try:
                ids = list(map(page_id, columns[0]))
            except Reject:
                pass  # a page to reject: row by row, below
            else:
                positions = range(position + 1, position + 1 + len(records))
                rows = list(zip(repeat(batch_id), positions, ids, *columns[1:]))
                return _in_range(rows, rejects, chunk, span, time_name)
        for index in range(start, len(records)):
            position += 1
            r = records[index]
            try:
                if type(r) is Unreadable:
                    raise Reject(r.reason)
                append((batch_id, position, page_id(r[0]), *r[1:]))
            except Reject as exc:
                rejects.append((position, str(exc), chunk.raw_text(index)))
        return _in_range(rows, rejects, chunk, span, time_name)
    if seed:
        validate = validate_seed_ga if source == "ga" else validate_seed_psi
        for index in range(start, len(records)):
            position += 1
            try:
                values = validate(records[index])
                append((batch_id, position, page_id(values[0]), *values[1:]))
            except Reject as exc:
                rejects.append((position, str(exc), chunk.raw_text(index)))
        return _in_range(rows, rejects, chunk, span, "Date")
    if source == "ga":
        for index in range(start, len(records)):
            position += 1
            r = records[index]
            try:
                if type(r) is GaRecord and r.bounces <= r.sessions:
                    try:
                        hour = hour_of(r.hour)
                    except InvalidTimestamp as exc:
                        raise Reject(f"hour: {exc}") from None
                    append(
                        (batch_id, position, page_id(r.page), hour, r.users, r.sessions,
                         r.views, r.bounces, r.engagement_seconds)
                    )  # fmt: skip
                else:
                    page, hour, users, sessions, views, bounces, eng = validate_ga(_plain(r), hours)
                    append(
                        (batch_id, position, page_id(page), hour, users, sessions, views,
                         bounces, eng)
                    )  # fmt: skip
            except Reject as exc:
                rejects.append((position, str(exc), chunk.raw_text(index)))
        return rows, rejects
    for index in range(start, len(records)):
        position += 1
        r = records[index]
        try:
            if type(r) is PsiRecord:
                append(
                    (batch_id, position, page_id(r.page), r.measured_at, r.strategy,
                     r.performance_score, r.lcp_ms, r.fcp_ms, r.inp_ms, r.ttfb_ms, r.cls)
                )  # fmt: skip
            else:
                page, at, strategy, score, lcp, fcp, inp, ttfb, cls = validate_psi(_plain(r))
                append(
                    (batch_id, position, page_id(page), at, strategy, score, lcp, fcp, inp,
                     ttfb, cls)
                )  # fmt: skip
        except Reject as exc:
            rejects.append((position, str(exc), chunk.raw_text(index)))
    return _in_range(rows, rejects, chunk, span, "measured_at")


def _in_range(rows: list, rejects: list, chunk: Chunk, span: TimeRange, name: str):
    """(rows, rejects) with the rows whose instant is outside ``span`` moved to the rejects.

    Checked once per chunk (its earliest and latest instant), row by row only when
    one is outside. GA hours are checked by the hour cache already.
    """
    if not rows:
        return rows, rejects
    time_of = itemgetter(3)
    if span.low <= min(map(time_of, rows)) and max(map(time_of, rows)) < span.high:
        return rows, rejects
    kept = []
    for row in rows:
        try:
            span.check(name, row[3])
        except InvalidTimestamp as exc:
            position = row[1]
            rejects.append((position, str(exc), chunk.raw_text(position - chunk.first_position)))
            continue
        kept.append(row)
    rejects.sort(key=itemgetter(0))
    return kept, rejects


class _Batch:
    """The ingest_batch row of one file and the connection that writes it."""

    def __init__(self, conn: psycopg.Connection, batch_id: int, source: str) -> None:
        self.conn = conn
        self.id = batch_id
        self.source = source
        self.partition = sql.Identifier(f"raw_{source}_b{batch_id}")
        columns = GA_COLUMNS if source == "ga" else PSI_COLUMNS
        self.types = GA_TYPES if source == "ga" else PSI_TYPES
        self.copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            self.partition, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        self.time_column = 3  # hour / measured_at in a row

    def commit(
        self,
        rows_written: int,
        rejects: list,
        position: int,
        first: datetime | None,
        last: datetime | None,
    ) -> None:
        """Commits the open transaction: the COPYed rows, the rejects and the bookkeeping."""
        with self.conn.cursor() as cur:
            if rejects:
                with cur.copy(
                    "COPY ingest_reject (batch_id, position, reason, raw) FROM STDIN"
                ) as copy:
                    for pos, reason, raw in rejects:
                        copy.write_row((self.id, pos, reason, raw.replace("\x00", "")))
            cur.execute(
                "UPDATE ingest_batch SET records_accepted = records_accepted + %s, "
                "records_rejected = records_rejected + %s, committed_position = %s, "
                "first_hour = LEAST(first_hour, date_trunc('hour', %s::timestamptz)), "
                "last_hour = GREATEST(last_hour, date_trunc('hour', %s::timestamptz)) "
                "WHERE id = %s",
                (rows_written, len(rejects), position, first, last, self.id),
            )
        self.conn.commit()


def _claim_batch(
    conn: psycopg.Connection,
    *,
    path: str,
    source: str,
    layout: str,
    checksum: str,
    size: int,
    force: bool,
) -> tuple[str, int | None, int, str]:
    """Finds or creates the batch of this content: (action, batch id, resume position, note).

    action is 'new', 'resume', 'skip' or 'busy'. Runs under a transaction-level
    advisory lock on the checksum so that two ingests of the same content at
    once agree; the batch itself is then held with a session advisory lock for
    as long as this connection ingests it.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (checksum,))
        # Only a batch that loaded something is an ingest of this content: a failed
        # one, or a broken one that accepted nothing (e.g. read with the wrong
        # --format), is not, and the file is read again.
        rows = conn.execute(
            "SELECT id, status, committed_position, error FROM ingest_batch "
            "WHERE source = %s AND checksum = %s AND (status IN ('loading', 'loaded') "
            "OR (status = 'broken' AND records_accepted > 0)) "
            "ORDER BY id DESC",
            (source, checksum),
        ).fetchall()
        for batch_id, status, committed, error in rows:
            if status == "loading":
                locked = conn.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", (_ADVISORY_NAMESPACE, batch_id)
                ).fetchone()[0]
                if not locked:
                    return "busy", batch_id, 0, "being ingested by another process"
                return "resume", batch_id, committed, ""
            if not force:
                note = f"same content as batch {batch_id} ({status})"
                return "skip", batch_id, 0, note + (f", which said: {error}" if error else "")
        batch_id = conn.execute(
            "INSERT INTO ingest_batch (source, file_name, file_layout, checksum, file_bytes, "
            "forced) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (source, os.path.abspath(path), layout, checksum, size, bool(rows) and force),
        ).fetchone()[0]
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (_ADVISORY_NAMESPACE, batch_id))
        conn.execute("SELECT raw_partition_attach(%s, %s)", (source, batch_id))
        return "new", batch_id, 0, ""


def _record_skip(conn: psycopg.Connection, path, source, layout, checksum, size, note) -> int:
    with conn.transaction():
        return conn.execute(
            "INSERT INTO ingest_batch (source, file_name, file_layout, checksum, file_bytes, "
            "status, finished_at, error) VALUES (%s, %s, %s, %s, %s, 'skipped', now(), %s) "
            "RETURNING id",
            (source, os.path.abspath(path), layout, checksum, size, note),
        ).fetchone()[0]


@contextmanager
def _without_cyclic_gc():
    """Parsing creates millions of short-lived objects and no reference cycles; the cyclic
    collector would scan them again and again (about a quarter of the parse time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@logged_ingest_file
def ingest_file(
    path: str,
    *,
    source: str | None = None,
    file_format: str = "auto",
    force: bool = False,
    batch_size: int | None = None,
    max_reject_rate: float = 1.0,
    progress: Progress | None = None,
    on_committed: Callable[[int], None] | None = None,
    dsn: str | None = None,
) -> FileResult:
    """Ingests one file into its raw partition.

    Bad records and a file that stops being valid JSON are reported in the
    result; a file that cannot be read at all (or bad arguments) raises
    IngestError. A loaded file with more than ``max_reject_rate`` of its
    records rejected, or none accepted, has status ``failed``: its accepted
    records stay loaded. ``dsn`` is the database to write to (default: the
    settings' default database).
    """
    max_reject_rate = check_max_reject_rate(max_reject_rate)
    with _without_cyclic_gc():
        return _ingest_file(
            path,
            source=source,
            file_format=file_format,
            force=force,
            batch_size=batch_size,
            max_reject_rate=max_reject_rate,
            progress=progress,
            on_committed=on_committed,
            dsn=dsn or conninfo(),
        )


def _ingest_file(
    path: str,
    *,
    source: str | None,
    file_format: str,
    force: bool,
    batch_size: int | None,
    max_reject_rate: float,
    progress: Progress | None,
    on_committed: Callable[[int], None] | None,
    dsn: str,
) -> FileResult:
    started = time.perf_counter()
    result = FileResult(path=path)
    batch_size = batch_size or settings.METRIFLOW_INGEST_BATCH_SIZE
    progress = progress or Progress()
    if source not in (None, "ga", "psi"):
        raise IngestError(f"unknown source {source!r}: expected ga or psi")
    if file_format not in ("auto", "seed", *SOURCE_OF):
        raise IngestError(f"unknown format {file_format!r}: expected auto, seed, ga4 or psi")
    if file_format in SOURCE_OF and source not in (None, SOURCE_OF[file_format]):
        raise IngestError(
            f"--format {file_format} files hold {SOURCE_OF[file_format]} records, not {source}"
        )
    reason = unreadable_reason(path)
    if reason:
        raise IngestError(reason, path=path)
    try:
        checksum = file_checksum(path)
        size = os.path.getsize(path)
        stream = open_stream(path)
    except OSError as exc:  # removed or changed since it was checked
        raise IngestError((exc.strerror or str(exc)).lower(), path=path) from None
    try:
        layout = detect_layout(stream)
        given_source = source
        google = None  # the reader of a Google format (formats/), which keeps its quality
        first_chunk = pending_break = None
        if file_format == "auto":
            decoder, chunks, first_chunk, pending_break = _read_first_chunk(stream, layout)
            first_record = first_chunk.records[0] if first_chunk else None
            google_format = detect_google_format(first_record, _head(path, first_record))
            if google_format is not None:
                if source not in (None, SOURCE_OF[google_format]):
                    raise IngestError(
                        f"this looks like {_GOOGLE_NAMES[google_format]}, which holds "
                        f"{SOURCE_OF[google_format]} records, not {source}: use --format "
                        f"{google_format}",
                        path=path,
                    )
                # A Google response: read again from the start by its format's reader.
                file_format = google_format
                stream.close()
                stream = open_stream(path)
                layout = detect_layout(stream)
                first_chunk = pending_break = None
        if file_format in SOURCE_OF:
            source = detected = SOURCE_OF[file_format]
            seed = False
            google, chunks = _google_chunks(file_format, path, stream, layout)
            result.file_format = file_format
        else:
            if file_format == "seed":
                decoder, chunks, first_chunk, pending_break = _read_first_chunk(stream, layout)
                first_record = first_chunk.records[0] if first_chunk else None
            seed = file_format == "seed" or looks_like_seed(first_record)
            result.file_format = "seed" if seed else None
            detected = detect_source(path, first_record)
            source = source or detected
            if source is None:
                raise IngestError(
                    "cannot tell the source from the file name or the first record; "
                    "pass --source ga or --source psi",
                    path=path,
                )
            decoder[0] = decoder_for(source, seed)
        result.source = source
        batch_layout = "seed" if seed else ("ndjson" if layout == "ndjson" else "array")
        result.layout = batch_layout

        with (
            psycopg.connect(dsn) as conn,
            psycopg.connect(dsn, autocommit=True) as pages_conn,
        ):
            action, batch_id, resume_at, note = _claim_batch(
                conn,
                path=path,
                source=source,
                layout=batch_layout,
                checksum=checksum,
                size=size,
                force=force,
            )
            result.batch_id = batch_id
            if action in ("skip", "busy"):
                if action == "skip":
                    _record_skip(conn, path, source, batch_layout, checksum, size, note)
                result.status = "skipped" if action == "skip" else "busy"
                result.skipped_broken = action == "skip" and "(broken)" in note
                result.message = f"skipped: {note}" + (
                    " (use --force to ingest it again)" if action == "skip" else ""
                )
                result.seconds = time.perf_counter() - started
                return result
            if action == "resume":
                result.resumed_from = resume_at
                counts = conn.execute(
                    "SELECT records_accepted, records_rejected FROM ingest_batch WHERE id = %s",
                    (batch_id,),
                ).fetchone()
                conn.commit()
                result.accepted, result.rejected = counts

            batch = _Batch(conn, batch_id, source)
            try:
                end = _run_pipeline(
                    batch,
                    first_chunk,
                    chunks,
                    pending_break,
                    seed=seed,
                    mapped=file_format in SOURCE_OF,
                    pages=PageResolver(pages_conn),
                    resume_at=resume_at,
                    batch_size=batch_size,
                    progress=progress,
                    result=result,
                    offset=lambda: bytes_read(stream),
                )
                if google is not None:
                    _record_quality(conn, batch_id, getattr(google, "quality", []))
            except Exception as exc:  # any error fails the batch, then is reported
                result.message = _fail_batch(conn, batch, exc)
                result.status = "failed"
                result.accepted = 0
                result.seconds = time.perf_counter() - started
                return result
            status, error = "loaded", None
            if end.broken:
                status = "broken"
                error = f"{end.broken.kind} at record {end.broken.position}: {end.broken.reason}"
            elif end.unreadable:
                error = (
                    f"{end.unreadable} record(s) not valid JSON, the first at record "
                    f"{end.first_unreadable}; they are rejected, the other records loaded"
                )
            else:
                looks_like = detected if given_source and detected != source else None
                error = _too_many_rejects(conn, result, max_reject_rate, looks_like)
                if error and not result.accepted:
                    # Nothing loaded: the batch failed, holds nothing to stage, and
                    # does not count as this content's ingest (a rerun, e.g. with
                    # the right --source, reads the file again).
                    status = "failed"
            with conn.transaction():
                conn.execute(
                    "UPDATE ingest_batch SET status = %s, error = %s, finished_at = now() "
                    "WHERE id = %s",
                    (status, error, batch_id),
                )
                if status != "failed":
                    # The hand-off to the pipeline, committed with the batch's end:
                    # queued for the staged stage with its outbox message when the
                    # chain is triggered (published after the commit), else pending.
                    conn.execute(
                        "SELECT pipeline_hand_off_batch(%s, %s)",
                        (batch_id, settings.METRIFLOW_PIPELINE_TRIGGER),
                    )
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_ADVISORY_NAMESPACE, batch_id))
            if error is None:
                result.status = "loaded"
            elif end.broken or end.unreadable:
                result.status = "broken"
            else:
                result.status = "failed"  # too many rejects; the accepted records stay loaded
            result.message = error or ""
    finally:
        stream.close()
    result.seconds = time.perf_counter() - started
    if result.status in ("loaded", "broken", "failed"):
        from pipeline import dataversion

        dataversion.bump()  # reports over this batch's hours are now pending
    if on_committed:
        # A batch that failed whole holds nothing for the chain.
        on_committed(None if result.status == "failed" and not result.accepted else result.batch_id)
    return result


def _read_first_chunk(stream, layout: str):
    """(decoder, chunks, first chunk, the break that ended it): the first block is read
    as plain dicts, to tell the source and the format from the first record; the rest
    with the decoder the caller then puts in ``decoder[0]`` (the typed fast one)."""
    decoder = [generic_decoder()]
    chunks = read_chunks(stream, layout, decode=lambda array: decoder[0](array), limits=limits())
    try:
        return decoder, chunks, next(chunks, None), None
    except FileBreak as exc:
        return decoder, chunks, None, exc


def _head(path: str, first_record: object) -> bytes:
    """The first ``HEAD_BYTES`` of the file, decompressed, when its first record is no
    dict (the only case ``detect_google_format`` reads them); else nothing."""
    if isinstance(first_record, dict):
        return b""
    with open_stream(path) as head:
        return head.read(HEAD_BYTES)


_GOOGLE_NAMES = {"ga4": "a GA4 runReport response", "psi": "a PageSpeed Insights v5 response"}


def _google_chunks(file_format: str, path: str, stream, layout: str):
    """(the reader, its chunks) for a file of Google responses (formats/, docs/sources.md)."""
    if file_format == "ga4":
        reader = ga4.Ga4Reader(path, stream, layout)
        return reader, reader.chunks()
    chunks = psi.read_chunks(
        stream,
        layout,
        max_bytes=settings.METRIFLOW_INGEST_MAX_PSI_RESPONSE_BYTES,
    )
    return psi, chunks


def _record_quality(conn: psycopg.Connection, batch_id: int, quality: list) -> None:
    """The batch's responses that say they are incomplete (GA4 metadata), replacing any
    kept by an earlier attempt at the same batch (a resumed ingestion reads them again)."""
    with conn.transaction():
        conn.execute("DELETE FROM ingest_batch_quality WHERE batch_id = %s", (batch_id,))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ingest_batch_quality (batch_id, response, rows, first_hour, "
                "last_hour, data_loss_from_other_row, subject_to_thresholding, sampling) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (batch_id, q.response, q.rows, q.first_hour, q.last_hour,
                     q.data_loss_from_other_row, q.subject_to_thresholding,
                     None if q.sampling is None else Jsonb(q.sampling))
                    for q in quality
                ],
            )  # fmt: skip


def _fail_batch(conn: psycopg.Connection, batch: _Batch, exc: BaseException) -> str:
    """Marks the batch failed after an error while loading: never left ``loading``.

    Its rows are deleted (the batch has no hand-off, and a rerun of the file,
    once the cause is fixed, reads it again as a new batch); its rejects stay.
    """
    detail = " ".join(str(exc).split())[:300] or type(exc).__name__
    message = f"ingestion failed: {type(exc).__name__}: {detail}"
    logger.exception("batch %s failed", batch.id)
    conn.rollback()
    with conn.transaction():
        conn.execute(sql.SQL("DELETE FROM {}").format(batch.partition))
        conn.execute(
            "UPDATE ingest_batch SET status = 'failed', error = %s, records_accepted = 0, "
            "finished_at = now() WHERE id = %s",
            (message, batch.id),
        )
    conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_ADVISORY_NAMESPACE, batch.id))
    return message


def _too_many_rejects(
    conn: psycopg.Connection, result: FileResult, max_reject_rate: float, looks_like: str | None
) -> str | None:
    """Why a loaded file fails for its rejects (none accepted, or above the rate), or None.

    ``looks_like`` is the source the file's name or first record suggests when
    it differs from the one given.
    """
    total = result.accepted + result.rejected
    if not result.rejected:
        return None
    if result.accepted and result.rejected / total <= max_reject_rate:
        return None
    reason, count, first = conn.execute(
        "SELECT reason, count(*), min(position) FROM ingest_reject WHERE batch_id = %s "
        "GROUP BY reason ORDER BY count(*) DESC, min(position) LIMIT 1",
        (result.batch_id,),
    ).fetchone()
    conn.commit()
    if result.accepted:
        verdict = (
            f"{result.rejected / total:.1%} of the records rejected, more than "
            f"--max-reject-rate {max_reject_rate:g}"
        )
    else:
        verdict = f"nothing accepted, all {total:,} records rejected"
    message = f'{verdict}; most often "{reason}" ({count:,} times, first at record {first:,})'
    if looks_like:
        message += f"; the file looks like {looks_like} but was read as {result.source} (--source)"
    if result.accepted:
        message += f"; the {result.accepted:,} accepted records stay loaded"
    return message


def _run_pipeline(
    batch: _Batch,
    first_chunk: Chunk | None,
    chunks,
    pending_break: FileBreak | None,
    *,
    seed: bool,
    mapped: bool = False,
    pages: PageResolver,
    resume_at: int,
    batch_size: int,
    progress: Progress,
    result: FileResult,
    offset: Callable[[], int],
) -> _End:
    """Reader thread -> bounded queue -> COPY writer (this thread)."""
    handoff: queue.Queue = queue.Queue(maxsize=_QUEUE_CHUNKS)
    stop = threading.Event()
    hours = HourCache(time_range())

    def put(item) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        end = _End()
        try:
            try:
                for chunk in _chain(first_chunk, chunks, pending_break):
                    rows, rejects = _rows_of(
                        chunk, batch.source, seed, batch.id, pages, hours, resume_at, mapped=mapped
                    )
                    for position, reason, _raw in rejects:
                        if reason.startswith("invalid JSON"):
                            end.unreadable += 1
                            end.first_unreadable = end.first_unreadable or position
                    last = chunk.first_position + len(chunk.records) - 1
                    if last > resume_at and not put(_Work(rows, rejects, last, offset())):
                        return
            except FileBreak as exc:
                end.broken = exc
                if exc.position > resume_at:
                    raw = exc.raw.decode("utf-8", errors="replace")
                    reject = (exc.position, f"{exc.kind}: {exc.reason}", raw)
                    if not put(_Work([], [reject], exc.position, offset())):
                        return
            end.bytes_read = offset()
            put(end)
        except BaseException as exc:
            put(_Failure(exc))

    reader = threading.Thread(target=read, name=f"ingest-reader-{batch.id}", daemon=True)
    reader.start()
    conn = batch.conn
    time_of = itemgetter(batch.time_column)
    try:
        while True:
            rows_in_tx = 0
            rejects_in_tx: list = []
            first = last = None
            position = 0
            with conn.cursor() as cur, cur.copy(batch.copy_sql) as copy:
                copy.set_types(batch.types)
                write_row = copy.write_row
                while rows_in_tx < batch_size:
                    item = handoff.get()
                    if not isinstance(item, _Work):
                        break
                    rows = item.rows
                    for row in rows:
                        write_row(row)
                    if rows:
                        low, high = min(map(time_of, rows)), max(map(time_of, rows))
                        first = low if first is None or low < first else first
                        last = high if last is None or high > last else last
                    rows_in_tx += len(rows)
                    rejects_in_tx.extend(item.rejects)
                    position = item.last_position
                    progress.add(len(rows), len(item.rejects), item.bytes_read)
            if position:
                batch.commit(rows_in_tx, rejects_in_tx, position, first, last)
                result.accepted += rows_in_tx
                result.rejected += len(rejects_in_tx)
            else:
                conn.rollback()
            if isinstance(item, _Failure):
                raise item.error
            if isinstance(item, _End):
                progress.add(0, 0, item.bytes_read)
                return item
    finally:
        stop.set()
        reader.join(timeout=10)


def _chain(first: Chunk | None, rest, pending_break: FileBreak | None):
    if first is not None:
        yield first
    if pending_break is not None:
        raise pending_break
    yield from rest
