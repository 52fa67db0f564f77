"""Validated generation options (independent of argparse)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction

from loadgen import timeutil

SOURCES = ("ga", "psi")
FAULTS = ("duplicates", "corrections", "late", "malformed")
FORMATS = ("contract", "seed", "ga4", "psi")
# The Google formats and the one source each writes (GA4 traffic, PageSpeed v5 runs).
GOOGLE_FORMATS = {"ga4": "ga", "psi": "psi"}
# File name stem per (format, source): the Google formats' files sit beside the contract's.
_STEMS = {("ga4", "ga"): "ga4", ("psi", "psi"): "psi-v5"}


@dataclass(frozen=True)
class Options:
    out: str = "data"
    records: int = 100_000
    pages: int = 200
    sites: int = 5
    start: str = "2024-01-01T00:00:00Z"
    seed: int = 1
    sources: tuple[str, ...] = SOURCES
    layout: str = "array"
    gzip: bool = False
    gzip_level: int = 1
    format: str = "contract"
    url_variants: float = 0.02
    tz_offsets: float = 0.02
    duplicates: float = 0.0
    corrections: float = 0.0
    late: float = 0.0
    malformed: float = 0.0
    truncate: float = 0.0
    time_zone: str = "Asia/Kolkata"  # GA4: the property's time zone (metadata.timeZone)
    ga4_page_rows: int = 10_000  # GA4: rows per runReport response
    chunk_records: int = 16_384
    jobs: int = 2
    progress: bool = True
    start_dt: dt.datetime = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def fail(msg: str) -> None:
            raise ValueError(msg)

        if self.records < 1:
            fail("--records must be at least 1")
        if self.pages < 1:
            fail("--pages must be at least 1")
        if self.sites < 1:
            fail("--sites must be at least 1")
        if self.seed < 0:
            fail("--seed must be >= 0")
        if not self.sources or any(s not in SOURCES for s in self.sources):
            fail(f"--sources must be a comma-separated subset of {','.join(SOURCES)}")
        if len(set(self.sources)) != len(self.sources):
            fail("--sources lists a source twice")
        if self.layout not in ("array", "ndjson"):
            fail("--layout must be array or ndjson")
        if self.format not in FORMATS:
            fail(f"--format must be one of {', '.join(FORMATS)}")
        if self.format in GOOGLE_FORMATS:
            only = GOOGLE_FORMATS[self.format]
            if self.sources == SOURCES:
                object.__setattr__(self, "sources", (only,))
            if self.sources != (only,):
                fail(f"--format {self.format} writes the {only} source only (--sources {only})")
            if self.malformed or self.truncate:
                fail(f"--malformed and --truncate do not apply to --format {self.format}")
            if not 1 <= self.ga4_page_rows <= 250_000:
                fail("--ga4-page-rows must be from 1 to 250000")
            from loadgen.google import check_time_zone

            check_time_zone(self.time_zone)
        if not 0 <= self.gzip_level <= 9:
            fail("--gzip-level must be between 0 and 9")
        if self.chunk_records < 1:
            fail("--chunk-records must be at least 1")
        if self.jobs < 1:
            fail("--jobs must be at least 1")
        for name in ("url_variants", "tz_offsets", *FAULTS):
            value = getattr(self, name)
            if not 0.0 <= value <= 0.5:
                fail(f"--{name.replace('_', '-')} must be between 0 and 0.5")
        if self.duplicates + self.corrections + self.late > 0.5:
            fail("--duplicates + --corrections + --late must not exceed 0.5")
        if self.late > 0 and self.pages < 2:
            fail("--late needs at least 2 pages (each hour keeps a record in the main file)")
        if not 0.0 <= self.truncate < 1.0:
            fail("--truncate must be in (0, 1), or 0 for no truncation")
        start = timeutil.parse_start(self.start)
        object.__setattr__(self, "start_dt", start)
        hours = -(-self.records // self.pages)
        last = start + (hours - 1) * timeutil.HOUR
        if last.year > 9999:
            fail("--start plus the hours needed by --records goes past year 9999")

    @property
    def hours(self) -> int:
        return -(-self.records // self.pages)

    def fraction(self, name: str) -> Fraction:
        """The exact decimal fraction given for a fault (0.29 is 29/100, not a binary float)."""
        return Fraction(repr(float(getattr(self, name))))

    def file_name(self, source: str, late: bool = False) -> str:
        ext = ".ndjson" if self.layout == "ndjson" else ".json"
        if self.gzip:
            ext += ".gz"
        stem = _STEMS.get((self.format, source), source)
        return f"{stem}{'_late' if late else ''}{ext}"

    def path(self, source: str, late: bool = False) -> str:
        return os.path.join(self.out, self.file_name(source, late))

    def arguments(self) -> dict:
        """The options that determine the output (for the manifest)."""
        data = asdict(self)
        for key in ("jobs", "progress", "start_dt"):
            data.pop(key, None)
        if self.format != "ga4":
            data.pop("time_zone")
            data.pop("ga4_page_rows")
        data["sources"] = list(self.sources)
        data["start"] = timeutil.iso_hour(self.start_dt)
        return data
