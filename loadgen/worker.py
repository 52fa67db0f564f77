"""Generation of one source: chunks of hours, faults, files."""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable, Iterator
from fractions import Fraction

import numpy as np

from loadgen import timeutil
from loadgen.catalog import build_catalog
from loadgen.google import GA4Writer, PSIWriter
from loadgen.model import PSI, TZ_OFFSETS, ChunkContext, Source, dumps, make_source
from loadgen.options import Options
from loadgen.rng import generator
from loadgen.sink import Sink, truncate
from loadgen.urls import TABLE_WIDTH

_ROLES = ("late", "duplicates", "corrections")


def plan_chunks(records: int, pages: int, chunk_records: int) -> Iterator[tuple[int, int, int]]:
    """(chunk index, first record, end record) over whole hours.

    Chunks hold ``max(1, chunk_records // pages)`` hours; a short remainder is
    merged into the previous chunk so every chunk is large enough for its faults.
    """
    step = max(1, chunk_records // pages) * pages
    count = -(-records // step)
    if count > 1 and records - (count - 1) * step < max(8, step // 4):
        count -= 1
    for c in range(count):
        start = c * step
        yield c, start, records if c == count - 1 else start + step


def _share(fraction: Fraction, start: int, end: int) -> int:
    """Records of ``[start, end)`` given a fault: floor(f*end) - floor(f*start)."""
    num, den = fraction.numerator, fraction.denominator
    return num * end // den - num * start // den


def _later_positions(rng: np.random.Generator, q: np.ndarray, m: int) -> np.ndarray:
    """For originals at main positions ``q``, an insertion point in ``[q + 1, m]``."""
    span = m - q
    return q + 1 + np.minimum((rng.random(len(q)) * span).astype(np.int64), span - 1)


class FileStats:
    def __init__(self, opts: Options, source: str, role: str):
        self.source = source
        self.role = role
        self.file = opts.file_name(source, role == "late")
        self.path = opts.path(source, role == "late")
        self.clean = 0
        self.duplicates = 0
        self.corrections = 0
        self.late_withheld = 0
        self.malformed: dict[str, int] = {}
        self.url_variants = 0
        self.offset_timestamps = 0
        self.first_hour: int | None = None
        self.last_hour: int | None = None

    def hours(self, first: int, last: int) -> None:
        self.first_hour = first if self.first_hour is None else min(self.first_hour, first)
        self.last_hour = last if self.last_hour is None else max(self.last_hour, last)

    def manifest(self, opts: Options, sink: Sink, truncation: dict | None) -> dict:
        def label(h: int | None) -> str | None:
            return None if h is None else timeutil.iso_hour(timeutil.hour_at(opts.start_dt, h))

        faults = {
            "duplicates": self.duplicates,
            "corrections": self.corrections,
            "malformed": sum(self.malformed.values()),
            "malformed_by_kind": dict(self.malformed),
        }
        if self.role == "main":
            faults["late_withheld"] = self.late_withheld
        return {
            "source": self.source,
            "role": self.role,
            "file": self.file,
            "path": self.path,
            "format": opts.format,
            "layout": opts.layout,
            "gzip": opts.gzip,
            "records": sink.records,
            **({"responses": sink.sink.records} if hasattr(sink, "sink") else {}),
            "clean_records": self.clean,
            "faults": faults,
            "url_variants": self.url_variants,
            "offset_timestamps": self.offset_timestamps,
            "bytes": os.path.getsize(self.path),
            "uncompressed_bytes": getattr(sink, "sink", sink).raw_bytes,
            "first_hour": label(self.first_hour),
            "last_hour": label(self.last_hour),
            "hours": 0 if self.first_hour is None else self.last_hour - self.first_hour + 1,
            "truncation": truncation,
        }


def _merge(main: list[bytes], at: np.ndarray, texts: list[bytes]) -> list[bytes]:
    """Insert ``texts[i]`` before ``main[at[i]]`` (``at == len(main)``: at the end)."""
    if not texts:
        return main
    order = np.argsort(at, kind="stable").tolist()
    at_list = at.tolist()
    out: list[bytes] = []
    prev = 0
    for j in order:
        a = at_list[j]
        if a > prev:
            out.extend(main[prev:a])
            prev = a
        out.append(texts[j])
    out.extend(main[prev:])
    return out


def _writer(opts: Options, name: str, path: str, gzip_level: int | None, role: str):
    """The file's writer: a Sink of contract lines, or a writer of the Google format that
    turns them into API responses (``loadgen.google``)."""
    sink = Sink(path, opts.layout, gzip_level)
    if opts.format == "ga4":
        n = opts.records
        late = _share(opts.fraction("late"), 0, n)
        if role == "late":
            rows = late
        else:
            extra = sum(_share(opts.fraction(k), 0, n) for k in ("duplicates", "corrections"))
            rows = n - late + extra
        return GA4Writer(sink, opts.time_zone, opts.ga4_page_rows, rows)
    if opts.format == "psi":
        return PSIWriter(sink)
    return sink


def generate_source(
    opts: Options, name: str, progress: Callable[[int], None] | None = None
) -> dict:
    """Write the main (and late) file of one source; returns manifest entries and stats."""
    started = time.perf_counter()
    seed_format = opts.format == "seed"
    catalog = build_catalog(opts.pages, opts.sites, opts.seed, seed_format)
    src: Source = make_source(name, catalog, seed_format)
    fractions = {k: opts.fraction(k) for k in (*_ROLES, "malformed")}
    gzip_level = opts.gzip_level if opts.gzip else None
    main_stats = FileStats(opts, name, "main")
    late_stats = FileStats(opts, name, "late")
    main_sink = _writer(opts, name, main_stats.path, gzip_level, "main")
    late_sink = _writer(opts, name, late_stats.path, gzip_level, "late") if opts.late > 0 else None
    carry = dict.fromkeys(_ROLES, 0)
    malformed_seen = 0
    kinds = src.kinds
    pages = opts.pages
    try:
        for c, start, end in plan_chunks(opts.records, pages, opts.chunk_records):
            n = end - start
            pos = np.arange(n)
            page = pos % pages
            hour = pos // pages
            ctx = ChunkContext.build(opts.start_dt, start // pages, int(hour[-1]) + 1)
            cols = src.sample(generator(opts.seed, name, "values", c), page, hour, ctx)
            rng_s = generator(opts.seed, name, "spelling", c)
            url_code = tz_code = None
            if not seed_format and opts.url_variants > 0:
                mask = rng_s.random(n) < opts.url_variants
                url_code = np.where(mask, rng_s.integers(1, TABLE_WIDTH, n), 0)
            if not seed_format and isinstance(src, PSI) and opts.tz_offsets > 0:
                mask = rng_s.random(n) < opts.tz_offsets
                tz_code = np.where(mask, rng_s.integers(1, len(TZ_OFFSETS) + 1, n), 0)
            lines = src.format(cols, page, hour, ctx, url_code, tz_code)

            # Roles: withheld (late), duplicated, corrected; disjoint sets of records.
            want = {k: _share(fractions[k], start, end) + carry[k] for k in _ROLES}
            late_pos = dup_pos = corr_pos = np.zeros(0, dtype=np.int64)
            rng_r = generator(opts.seed, name, "roles", c)
            if any(want.values()):
                perm = rng_r.permutation(n)
                # The first page of every hour stays in the main file, so the hours
                # of late records are always present there.
                late_pos = perm[perm % pages != 0][: want["late"]]
                taken = np.zeros(n, dtype=bool)
                taken[late_pos] = True
                rest = perm[~taken[perm]]
                dup_pos = rest[: want["duplicates"]]
                corr_pos = rest[want["duplicates"] : want["duplicates"] + want["corrections"]]
                for k, got in zip(_ROLES, (late_pos, dup_pos, corr_pos), strict=True):
                    carry[k] = want[k] - len(got)

            if len(late_pos):
                late_mask = np.zeros(n, dtype=bool)
                late_mask[late_pos] = True
                kept = np.flatnonzero(~late_mask).tolist()
                main = [lines[i] for i in kept]
                late_sorted = np.sort(late_pos)
                late_lines = [lines[i] for i in late_sorted.tolist()]
                main_index = np.cumsum(~late_mask) - 1
                assert late_sink is not None
                late_sink.write(late_lines)
                late_stats.clean += len(late_lines)
                late_stats.hours(
                    ctx.first_hour + int(hour[late_sorted[0]]),
                    ctx.first_hour + int(hour[late_sorted[-1]]),
                )
                main_stats.late_withheld += len(late_lines)
            else:
                late_mask = None
                main = lines
                main_index = pos
            m = len(main)
            if url_code is not None:
                variant = url_code != 0
                in_late = int(variant[late_mask].sum()) if late_mask is not None else 0
                late_stats.url_variants += in_late
                main_stats.url_variants += int(variant.sum()) - in_late
            if tz_code is not None:
                shifted = tz_code != 0
                in_late = int(shifted[late_mask].sum()) if late_mask is not None else 0
                late_stats.offset_timestamps += in_late
                main_stats.offset_timestamps += int(shifted.sum()) - in_late

            texts: list[bytes] = []
            at_parts: list[np.ndarray] = []
            if len(dup_pos):
                q = main_index[dup_pos]
                at_parts.append(_later_positions(rng_r, q, m))
                texts.extend(main[i] for i in q.tolist())
                main_stats.duplicates += len(dup_pos)
            if len(corr_pos):
                rng_c = generator(opts.seed, name, "corrections", c)
                strategy = cols["strategy"][corr_pos] if "strategy" in cols else None
                sub_page, sub_hour = page[corr_pos], hour[corr_pos]
                new = src.sample(rng_c, sub_page, sub_hour, ctx, strategy=strategy)
                old = src.value_columns({k: v[corr_pos] for k, v in cols.items()})
                same = np.all(
                    [a == b for a, b in zip(old, src.value_columns(new), strict=True)], axis=0
                )
                src.make_different(new, same)
                q = main_index[corr_pos]
                at_parts.append(_later_positions(rng_r, q, m))
                texts.extend(src.format(new, sub_page, sub_hour, ctx))
                main_stats.corrections += len(corr_pos)
            k_bad = _share(fractions["malformed"], start, end)
            if k_bad:
                rng_m = generator(opts.seed, name, "malformed", c)
                base = rng_m.choice(n, k_bad, replace=k_bad > n)
                for b in base.tolist():
                    kind = kinds[malformed_seen % len(kinds)]
                    malformed_seen += 1
                    texts.append(dumps(src.mutate(json.loads(lines[b]), kind, rng_m)))
                    main_stats.malformed[kind] = main_stats.malformed.get(kind, 0) + 1
                # Each one goes next to the record it was derived from (same hour).
                at_parts.append(np.minimum(main_index[base] + 1, m))
            if texts:
                main = _merge(main, np.concatenate(at_parts), texts)
            main_sink.write(main)
            main_stats.clean += m
            main_stats.hours(ctx.first_hour, ctx.first_hour + int(hour[-1]))
            if progress is not None:
                progress(n)
        if any(carry.values()):
            raise ValueError(
                "fault fractions too large for this data set: could not place "
                + ", ".join(f"{v} {k}" for k, v in carry.items() if v)
            )
        main_sink.close()
        if late_sink is not None:
            late_sink.close()
    except BaseException:
        main_sink.abort()
        if late_sink is not None:
            late_sink.abort()
        raise
    truncation = None
    if opts.truncate > 0:
        truncation = truncate(main_stats.path, opts.truncate, gzip_level, main_sink.raw_bytes)
    files = [main_stats.manifest(opts, main_sink, truncation)]
    if late_sink is not None:
        files.append(late_stats.manifest(opts, late_sink, None))
    elif os.path.exists(late_stats.path):
        os.remove(late_stats.path)  # stale late file of an earlier run: not part of this set
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "source": name,
        "files": files,
        "stats": {
            "seconds": time.perf_counter() - started,
            "records": sum(f["records"] for f in files),
            "bytes": sum(f["bytes"] for f in files),
            "uncompressed_bytes": sum(f["uncompressed_bytes"] for f in files),
            "max_rss_kb": ru.ru_maxrss,
            "pid": os.getpid(),
        },
    }
