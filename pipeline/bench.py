"""Pipeline benchmark: ``python -m pipeline.bench`` (``make bench-pipeline``).

In a database of its own (``metriflow_bench``, created and migrated here):
generates GA and PSI files with 1% of the records held back in late files,
ingests the main files (GA and PSI in parallel), drains every stage in-process
and prints, per stage, windows, keys in, rows out, seconds and rows/s, then
the whole chain from files to yearly. Then ingests the late files and drains
again, and prints the late batch's cost as a fraction of the full run; then the
same for a batch that re-delivers the newest 1% of the hours with new values.

Between the full run and the late batches, DuckDB (in memory, 2 threads,
``pipeline/bench_duckdb.py``) reads the same main files and computes the daily
and monthly roll-ups with exact percentiles; its time is printed beside the
full run's, and its monthly users, views and vital counts are compared with
``agg_monthly``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _generated_already(out: Path, options: list[str]) -> bool:
    """Whether ``out`` holds the files loadgen writes for ``options`` (same seed, so
    the same bytes): regenerating 13M + 13M records takes minutes."""
    marker = out / "bench-arguments.json"
    try:
        return json.loads(marker.read_text()) == options and (out / "manifest.json").exists()
    except (OSError, ValueError):
        return False


class Writes:
    """What one phase of the benchmark wrote to the database: WAL bytes since ``start``,
    and per logged stage table (the catalog's, heap and primary key) the pages whose
    LSN is newer than the phase's start, read with pageinspect from at most
    ``SAMPLE`` pages evenly spread over the relation. Without pageinspect (it needs a
    superuser to create it) only the WAL is printed."""

    SAMPLE = 4096

    def __init__(self, cursor) -> None:
        self.cursor = cursor
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        self.start = cursor.fetchone()[0]

    @staticmethod
    def relations(cursor) -> list[str]:
        """The catalog's logged stage tables, each with its primary key: raw's tables are
        partitioned (relkind 'p') and staged's unlogged (no page LSNs), so neither counts."""
        from pipeline import catalog

        tables = [t for stage in catalog.STAGES for t in stage.tables]
        tables.append(catalog.SITE_DAILY_TABLE)
        cursor.execute(
            "SELECT c.relname, i.relname FROM pg_class c"
            " LEFT JOIN pg_index x ON x.indrelid = c.oid AND x.indisprimary"
            " LEFT JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE c.relname = ANY(%s) AND c.relpersistence = 'p' AND c.relkind = 'r'"
            " ORDER BY array_position(%s, c.relname::text)",
            (tables, tables),
        )
        return [name for row in cursor.fetchall() for name in row if name]

    def pages_written(self) -> list[tuple[str, float, int]] | None:
        """(relation, share of its pages written since the start, pages) or None."""
        from django.db import DatabaseError

        try:
            self.cursor.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        except DatabaseError:  # not a superuser, or the extension is not installed
            return None
        out = []
        for name in self.relations(self.cursor):
            self.cursor.execute(
                "WITH n AS (SELECT pg_relation_size(%(r)s::regclass) / 8192 AS pages),"
                " b AS (SELECT generate_series(0, n.pages - 1,"
                "  greatest(1, n.pages / %(sample)s)) AS block FROM n)"
                " SELECT count(*) FILTER (WHERE (page_header(get_raw_page(%(r)s, block::integer)))"
                "  .lsn > %(start)s::pg_lsn), count(*), (SELECT pages FROM n) FROM b",
                {"r": name, "sample": self.SAMPLE, "start": self.start},
            )
            written, sampled, pages = self.cursor.fetchone()
            out.append((name, written / sampled if sampled else 0.0, pages))
        return out

    def summary(self) -> str:
        self.cursor.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (self.start,)
        )
        wal = float(self.cursor.fetchone()[0])
        self.cursor.execute("SELECT pg_database_size(current_database())")
        size = self.cursor.fetchone()[0]
        text = f"  wrote {wal / 1e6:,.0f} MB of WAL (the database: {size / 1e6:,.0f} MB)"
        pages = self.pages_written()
        if pages is None:
            return text + "; pages rewritten: needs pageinspect (a superuser)"
        shares = ", ".join(f"{name} {share:.0%} of {n:,}" for name, share, n in pages)
        return f"{text}; pages rewritten: {shares}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench", description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000, help="per source")
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--data-dir", default=str(REPO / "data" / "bench-pipeline"))
    parser.add_argument(
        "--workers", type=int, default=None, help="windows run at once (METRIFLOW_DRAIN_WORKERS)"
    )
    args = parser.parse_args(argv)

    from pipeline.ingest.bench import BENCH_DB, database_url, prepare_database

    os.environ["DATABASE_URL"] = database_url(BENCH_DB)
    os.environ["METRIFLOW_PIPELINE_TRIGGER"] = "false"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "metriflow.settings.local")
    data = Path(args.data_dir)
    from django.conf import settings as django_settings

    workers = args.workers or django_settings.METRIFLOW_DRAIN_WORKERS
    print(
        f"bench-pipeline: {args.records:,} records per source, {args.pages} pages, 1% late, "
        f"{workers} windows at once"
    )
    # The newest 1% of the hours again, with new values (same seed: same pages,
    # values drawn afresh): a re-delivery that corrects recent data.
    hours = args.records // args.pages
    recent_hours = max(1, hours // 100)
    recent_start = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=hours - recent_hours)
    generated = [
        (data, ["--records", str(args.records), "--pages", str(args.pages), "--late", "0.01"]),
        (data / "recent", ["--records", str(recent_hours * args.pages), "--pages",
                           str(args.pages), "--start", recent_start.isoformat()]),
    ]  # fmt: skip
    for out, options in generated:
        if not _generated_already(out, options):  # the same files again: reused
            subprocess.run(
                [sys.executable, "-m", "loadgen", "--out", str(out), *options, "--no-progress"],
                cwd=REPO, check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            (out / "bench-arguments.json").write_text(json.dumps(options))
    prepare_database()

    import django

    django.setup()
    from pipeline import stages
    from pipeline.ingest import ingest_files

    def ingest(names: list[str]) -> float:
        started = time.perf_counter()
        results = ingest_files([str(data / n) for n in names], show_progress=False)
        assert all(r.status == "loaded" for r in results), [r.summary() for r in results]
        return time.perf_counter() - started

    def drain() -> tuple[dict, float]:
        """Each stage drained in turn; per stage: windows, keys in, rows out, wall seconds."""
        started = time.perf_counter()
        per_stage: dict = defaultdict(lambda: [0, 0, 0, 0.0])
        for stage in stages.STAGES:
            stage_started = time.perf_counter()
            for run in stages.drain((stage,), workers=args.workers):
                entry = per_stage[run.stage]
                entry[0] += 1
                entry[1] += run.rows_in
                entry[2] += run.rows_out
            per_stage[stage][3] = time.perf_counter() - stage_started
        return per_stage, time.perf_counter() - started

    from django.db import connection

    meter = Writes(connection.cursor())
    ingest_seconds = ingest(["ga.json", "psi.json"])
    per_stage, drain_seconds = drain()
    full = ingest_seconds + drain_seconds
    header = (
        f"{'stage':<10}{'windows':>9}{'keys in':>12}{'rows out':>12}{'seconds':>9}{'rows/s':>11}"
    )
    print(header)
    print("-" * len(header))
    records = 2 * args.records
    print(f"{'raw':<10}{2:>9}{records:>12,}{records:>12,}{ingest_seconds:>9.2f}"
          f"{records / ingest_seconds:>11,.0f}")  # fmt: skip
    for stage in stages.STAGES:
        windows, rows_in, rows_out, seconds = per_stage[stage]
        rate = rows_out / seconds if seconds else 0
        print(f"{stage:<10}{windows:>9,}{rows_in:>12,}{rows_out:>12,}{seconds:>9.2f}{rate:>11,.0f}")
    print(f"whole chain, files to yearly: {full:.2f} s ({records / full:,.0f} records/s)")
    print(meter.summary())
    compare_with_duckdb(data, full)

    def late_batch(label: str, names: list[str]) -> None:
        meter = Writes(connection.cursor())
        late_ingest = ingest(names)
        late_stages, late_drain = drain()
        late = late_ingest + late_drain
        late_rows = sum(v[2] for v in late_stages.values())
        by_stage = ", ".join(f"{stage} {late_stages[stage][3]:.2f}" for stage in stages.STAGES)
        print(
            f"{label}: {late:.2f} s = {late / full:.1%} of the full run "
            f"(ingest {late_ingest:.2f} s, stages {late_drain:.2f} s: {by_stage}; "
            f"{late_rows:,} rows rewritten)"
        )
        print(meter.summary())

    late_batch(
        "late batch (1% of the records, spread over the whole range)",
        ["ga_late.json", "psi_late.json"],
    )
    late_batch(
        f"recent batch (1% of the records: the newest {recent_hours:,} hours, corrected)",
        ["recent/ga.json", "recent/psi.json"],
    )
    return 0


def compare_with_duckdb(data: Path, full: float) -> None:
    """DuckDB over the same main files; its time against ``full``, its counts against ours."""
    from django.db import connection

    from pipeline import bench_duckdb

    duck = bench_duckdb.run(data / "ga.json", data / "psi.json", threads=2)
    try:
        print(
            f"DuckDB (in memory, {duck.threads} threads, files to daily+monthly with exact "
            f"percentiles): {duck.seconds:.2f} s; Metriflow files to yearly {full:.2f} s "
            f"= {full / duck.seconds:.1f}x DuckDB"
        )
        columns = bench_duckdb.AGREEMENT_COLUMNS
        with connection.cursor() as cursor:
            difference = bench_duckdb.first_difference(duck, cursor, "monthly", columns)
        page_months = duck.count("monthly")
    finally:
        duck.close()
    print(
        "DuckDB against agg_monthly (users, views and every vital's n per page-month): "
        + (f"agree ({page_months:,} page-months)" if difference is None else difference)
    )


if __name__ == "__main__":
    sys.exit(main())
