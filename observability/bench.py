"""Scrape-time benchmark: ``python -m observability.bench``.

In a database of its own (``metriflow_bench_metrics``, created and migrated
here), fills the tables the scrape reads to a size a year of hourly GA and PSI
ingestion gives (``--batches`` ingest batches with their staged windows,
monthly windows of every time stage over ten years, ``--runs`` rows of run
history, ``--dirty`` dirty keys, ``--failures`` task failures), then times the
database part of a scrape (``PipelineCollector``) and the broker part
(``BrokerCollector``: passive declarations only) ``--repeat`` times each and
prints the median, p95 and maximum, and the size of the exposition.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

from pipeline.catalog import TIME_STAGES
from pipeline.ingest.bench import conninfo, database_url

REPO = Path(__file__).resolve().parents[1]
BENCH_DB = "metriflow_bench_metrics"


def prepare(batches: int, runs: int, dirty: int, failures: int) -> None:
    year = 365 * 86400  # the starts of the runs, spread over the last year
    with psycopg.connect(conninfo("postgres"), autocommit=True) as conn:
        database = sql.Identifier(BENCH_DB)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(database))
    env = {**os.environ, "DATABASE_URL": database_url(BENCH_DB), "DJANGO_DEBUG": "false"}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
                   cwd=REPO, env=env, check=True)  # fmt: skip
    with psycopg.connect(conninfo(BENCH_DB), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ingest_batch (id, source, file_name, file_layout, checksum, "
            "file_bytes, status, records_accepted, records_rejected, finished_at) "
            "SELECT g, CASE WHEN g %% 2 = 0 THEN 'ga' ELSE 'psi' END, 'file-' || g, 'array', "
            "md5(g::text), 4000000, CASE WHEN g %% 500 = 0 THEN 'broken' ELSE 'loaded' END, "
            "20000, g %% 7, now() FROM generate_series(1, %s) g",
            (batches,),
        )
        conn.execute(
            "INSERT INTO pipeline_ledger (stage, batch_id, status, attempts, finished_at) "
            "SELECT 'staged', g, CASE WHEN g > %s - 4 THEN 'pending' ELSE 'done' END, 1, now() "
            "FROM generate_series(1, %s) g",
            (batches, batches),
        )
        conn.execute(
            "INSERT INTO pipeline_ledger (stage, window_start, window_end, status, attempts) "
            "SELECT s, timestamptz '2015-01-01' + make_interval(months => m), "
            "timestamptz '2015-01-01' + make_interval(months => m + 1), "
            "CASE WHEN m = 119 THEN 'failed' ELSE 'done' END, 1 "
            "FROM unnest(%s::text[]) s, generate_series(0, 119) m",
            (list(TIME_STAGES),),
        )
        [(windows,)] = conn.execute("SELECT count(*) FROM pipeline_ledger").fetchall()
        conn.execute(
            "INSERT INTO pipeline_run (ledger_id, attempt, status, started_at, finished_at, "
            "duration_ms, rows_in, rows_out, worker, task_id, error) "
            "SELECT 1 + g %% %s, 1 + g / %s, CASE WHEN g %% 100 = 0 THEN 'failed' ELSE 'done' END, "
            "now() - make_interval(secs => %s * (%s - g)), "
            "now() - make_interval(secs => %s * (%s - g)), "
            "1000 + g %% 5000, CASE WHEN g %% 100 = 0 THEN NULL ELSE 20000 END, "
            "CASE WHEN g %% 100 = 0 THEN NULL ELSE 19000 END, 'host:1', md5(g::text), "
            "CASE WHEN g %% 100 = 0 THEN 'OperationalError: gone' END "
            "FROM generate_series(0, %s - 1) g",
            (windows, windows, year / runs, runs, year / runs, runs, runs),
        )
        conn.execute(
            "INSERT INTO pipeline_dirty (stage, period_start, page_id, marked_at) "
            "SELECT (%s::text[])[1 + g %% 5], timestamptz '2024-01-01' + "
            "make_interval(days => (g / 5) / 1000), (g / 5) %% 1000, "
            "now() - make_interval(secs => g %% 600) "
            "FROM generate_series(0, %s - 1) g",
            (list(TIME_STAGES), dirty),
        )
        conn.execute(
            "INSERT INTO pipeline_task_failure (task_id, task_name, error, worker) "
            "SELECT 'task-' || g, 'pipeline.stage.' || (%s::text[])[1 + g %% 5], 'ValueError: x', "
            "'host:1' FROM generate_series(1, %s) g",
            (list(TIME_STAGES), failures),
        )
        conn.execute("VACUUM ANALYZE")


def timed(function, repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return seconds


def describe(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"{name}: median {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
        f"max {ordered[-1] * 1000:.1f} ms over {len(ordered)} scrapes"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observability.bench", description=__doc__)
    parser.add_argument("--batches", type=int, default=17_520, help="a year of hourly GA + PSI")
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--dirty", type=int, default=500_000)
    parser.add_argument("--failures", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    prepare(args.batches, args.runs, args.dirty, args.failures)
    print(
        f"bench-metrics: {args.batches:,} batches, {args.runs:,} runs, {args.dirty:,} dirty keys, "
        f"{args.failures:,} task failures (filled in {time.perf_counter() - started:.1f} s)"
    )
    os.environ["DATABASE_URL"] = database_url(BENCH_DB)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "metriflow.settings.local")
    import django

    django.setup()
    from observability.collectors import BrokerCollector, PipelineCollector
    from observability.exposition import scrape

    database, broker = PipelineCollector(), BrokerCollector()
    # The first scrape of a process sums the settled run history once.
    print(
        describe("database, first scrape of a process", timed(lambda: list(database.collect()), 1))
    )
    print(describe("database, later scrapes", timed(lambda: list(database.collect()), args.repeat)))
    print(describe("broker", timed(lambda: list(broker.collect()), args.repeat)))
    print(describe("whole /metrics body", timed(scrape, args.repeat)))
    print(f"exposition: {len(scrape()):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
