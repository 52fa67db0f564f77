"""Command line of the load generator (``python -m loadgen``)."""

from __future__ import annotations

import argparse
import sys

from loadgen.options import FORMATS, SOURCES, Options
from loadgen.runner import generate

_DESCRIPTION = """\
Write synthetic GA (traffic) and PSI (performance) input files for Metriflow,
in the formats of the contract (section 1), plus DIR/manifest.json describing
what was written. The same arguments give byte-identical files."""

_EPILOG = """\
files: DIR/ga.json and DIR/psi.json (.ndjson with --layout ndjson, +.gz with
--gzip); with --late also DIR/ga_late.json and DIR/psi_late.json.
fault fractions are fractions of --records; each fault count is exactly
floor(F x records)."""


def _sources(text: str) -> tuple[str, ...]:
    items = tuple(s.strip().lower() for s in text.split(",") if s.strip())
    bad = [s for s in items if s not in SOURCES]
    if not items or bad:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(SOURCES)}"
        )
    return items


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError("must be a fraction in [0, 1)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadgen",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The generator's options, added to ``p`` (shared with ``manage.py generate``)."""
    d = Options()
    g = p.add_argument_group("data set")
    g.add_argument(
        "--out", default="data/", metavar="DIR", help="output directory (default: data/)"
    )
    g.add_argument(
        "--records",
        type=int,
        default=d.records,
        metavar="N",
        help="clean records (unique natural keys) per source, main + late files "
        f"(default: {d.records})",
    )
    g.add_argument("--pages", type=int, default=d.pages, metavar="P", help="pages (default: 200)")
    g.add_argument(
        "--sites",
        type=int,
        default=d.sites,
        metavar="S",
        help="sites the pages are spread over (default: 5)",
    )
    g.add_argument(
        "--start",
        default=d.start,
        help="first hour, ISO date or datetime, UTC unless an offset is given; "
        "truncated to the hour (default: 2024-01-01T00:00:00Z)",
    )
    g.add_argument("--seed", type=int, default=d.seed, metavar="K", help="random seed (default: 1)")
    g.add_argument(
        "--sources",
        type=_sources,
        default=d.sources,
        metavar="LIST",
        help="sources to write: ga,psi (default: both)",
    )
    f = p.add_argument_group("output format")
    f.add_argument(
        "--layout",
        choices=("array", "ndjson"),
        default=d.layout,
        help="JSON array (default, records separated by ',\\n') or one object per line",
    )
    f.add_argument("--gzip", action="store_true", help="write gzip-compressed files (.gz)")
    f.add_argument(
        "--gzip-level", type=int, default=d.gzip_level, metavar="L", help="zlib level (default: 1)"
    )
    f.add_argument(
        "--format",
        choices=FORMATS,
        default=d.format,
        help="contract records (default), the original .NET generator's records (Date in "
        ".NET ticks, numeric Page), GA4 Data API runReport responses (ga4: the GA source "
        "only, DIR/ga4.*) or PageSpeed Insights v5 responses of 0.3-1 MB (psi: the PSI "
        "source only, DIR/psi-v5.*); the Google formats hold the same records as the "
        "contract format for the same arguments",
    )
    f.add_argument(
        "--time-zone",
        default=d.time_zone,
        metavar="TZ",
        help="ga4: the property's IANA time zone, in which dateHour is written "
        f"(default: {d.time_zone})",
    )
    f.add_argument(
        "--ga4-page-rows",
        type=int,
        default=d.ga4_page_rows,
        metavar="R",
        help=f"ga4: rows per runReport response (default: {d.ga4_page_rows})",
    )
    f.add_argument(
        "--url-variants",
        type=_fraction,
        default=d.url_variants,
        metavar="F",
        help="fraction of records whose page URL uses an equivalent non-canonical "
        "spelling (upper-case host, :443, trailing slash, query, fragment; default: 0.02)",
    )
    f.add_argument(
        "--tz-offsets",
        type=_fraction,
        default=d.tz_offsets,
        metavar="F",
        help="fraction of PSI measured_at written with a UTC offset such as +02:00 "
        "(same UTC hour; default: 0.02)",
    )
    x = p.add_argument_group("faults (fractions of --records)")
    x.add_argument(
        "--duplicates",
        type=_fraction,
        default=0.0,
        metavar="F",
        help="exact repeats of earlier records, placed later in the file",
    )
    x.add_argument(
        "--corrections",
        type=_fraction,
        default=0.0,
        metavar="F",
        help="records with the natural key of an earlier record and new values "
        "(last one wins gives the corrected value)",
    )
    x.add_argument(
        "--late",
        type=_fraction,
        default=0.0,
        metavar="F",
        help="clean records withheld from the main file and written to the late file",
    )
    x.add_argument(
        "--malformed",
        type=_fraction,
        default=0.0,
        metavar="F",
        help="additional records that each break exactly one contract rule",
    )
    x.add_argument(
        "--truncate",
        type=_fraction,
        default=0.0,
        metavar="F",
        help="cut the main file at fraction F of its bytes, inside a record; with --gzip "
        "the uncompressed stream is cut and written as a valid gzip file",
    )
    r = p.add_argument_group("execution")
    r.add_argument(
        "--jobs",
        type=int,
        default=d.jobs,
        metavar="J",
        help="processes; each source is written by its own process (default: 2)",
    )
    r.add_argument(
        "--chunk-records",
        type=int,
        default=d.chunk_records,
        metavar="R",
        help="records generated at a time (rounded to whole hours; part of the seeding, "
        f"default: {d.chunk_records})",
    )
    r.add_argument("--no-progress", action="store_true", help="no progress bar")


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(
        out=args.out,
        records=args.records,
        pages=args.pages,
        sites=args.sites,
        start=args.start,
        seed=args.seed,
        sources=tuple(args.sources),
        layout=args.layout,
        gzip=args.gzip,
        gzip_level=args.gzip_level,
        format=args.format,
        url_variants=args.url_variants,
        tz_offsets=args.tz_offsets,
        duplicates=args.duplicates,
        corrections=args.corrections,
        late=args.late,
        malformed=args.malformed,
        truncate=args.truncate,
        time_zone=args.time_zone,
        ga4_page_rows=args.ga4_page_rows,
        chunk_records=args.chunk_records,
        jobs=args.jobs,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> dict:
    """Generate the files described by parsed arguments; returns the manifest.

    Raises ValueError when the options are inconsistent (the message names the option).
    """
    manifest, _stats = generate(options_from_args(args))
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        manifest = run(args)
    except ValueError as exc:
        print(f"loadgen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("loadgen: interrupted; partial files removed", file=sys.stderr)
        return 130
    for f in manifest["files"]:
        cut = f" (truncated at byte {f['truncation']['offset']})" if f["truncation"] else ""
        print(f"{f['path']}: {f['records']} records, {f['bytes']} bytes{cut}")
    return 0
