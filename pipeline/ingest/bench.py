"""Ingestion benchmark: ``python -m pipeline.ingest.bench`` (``make bench-ingest``).

Generates (or reuses) a GA and a PSI JSON-array file, then ingests them into a
database of its own (``metriflow_bench``, created and migrated here) through
``manage.py ingest`` subprocesses: GA alone, PSI alone, both in parallel. Peak
RSS is sampled over each ingest's process tree. In the same run, on the same
rows, it times PostgreSQL's own server-side ``COPY FROM`` of an equivalent CSV
(exported from the raw partitions just written), so the ratio ours/COPY is
measured on this machine at this moment. Prints one table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import psycopg

REPO = Path(__file__).resolve().parents[2]
BENCH_DB = "metriflow_bench"


def _server(dbname: str = "postgres") -> str:
    host = os.environ.get("PGHOST", "127.0.0.1")
    port = os.environ.get("PGPORT", "5432")
    user = os.environ.get("PGUSER", "postgres")
    return f"host={host} port={port} user={user} dbname={dbname}"


def _database_url(dbname: str) -> str:
    host = os.environ.get("PGHOST", "127.0.0.1")
    port = os.environ.get("PGPORT", "5432")
    user = os.environ.get("PGUSER", "postgres")
    return f"postgres://{user}@{host}:{port}/{dbname}"


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": _database_url(BENCH_DB),
        "DJANGO_SETTINGS_MODULE": "metriflow.settings.local",
        "DJANGO_DEBUG": "false",
    }


def prepare_database() -> None:
    with psycopg.connect(_server(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=REPO,
        env=_env(),
        check=True,
    )


def ensure_files(data_dir: Path, records: int) -> tuple[Path, Path]:
    manifest = data_dir / "manifest.json"
    if manifest.exists():
        written = json.loads(manifest.read_text())
        if written.get("records_per_source") == records and not any(
            written["arguments"].get(f) for f in ("duplicates", "corrections", "late", "malformed")
        ):
            return data_dir / "ga.json", data_dir / "psi.json"
    subprocess.run(
        [sys.executable, "-m", "loadgen", "--out", str(data_dir), "--records", str(records),
         "--no-progress"],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return data_dir / "ga.json", data_dir / "psi.json"


class PeakRss:
    """Samples the RSS of a process and its children; keeps the peak of any one process."""

    def __init__(self, pid: int) -> None:
        self._root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                processes = [self._root, *self._root.children(recursive=True)]
                for process in processes:
                    with contextlib.suppress(psutil.Error):
                        self.peak = max(self.peak, process.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_ingest(paths: list[Path]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes) and output of one ``manage.py ingest``."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "ingest", "--force", "--no-progress", *map(str, paths)],
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    sampler = PeakRss(process.pid)
    output, _ = process.communicate()
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    if process.returncode != 0:
        raise SystemExit(f"ingest failed:\n{output}")
    return seconds, peak, output


def server_copy(csv_dir: Path, sources: list[str]) -> float:
    """Seconds for the server-side COPY FROM of the exported CSVs (in parallel when several)."""
    with psycopg.connect(_server(BENCH_DB), autocommit=True) as conn:
        for source in sources:
            conn.execute(f"DROP TABLE IF EXISTS copy_{source}")
            conn.execute(f"CREATE TABLE copy_{source} (LIKE raw_{source})")
    errors: list[BaseException] = []

    def load(source: str) -> None:
        try:
            with psycopg.connect(_server(BENCH_DB), autocommit=True) as conn:
                path = csv_dir / f"{source}.csv"
                conn.execute(f"COPY copy_{source} FROM '{path}' WITH (FORMAT csv)")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(s,)) for s in sources]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise errors[0]
    return seconds


def export_csv(csv_dir: Path) -> None:
    """The rows just ingested, as CSV files the server can read."""
    csv_dir.chmod(0o777)
    with psycopg.connect(_server(BENCH_DB), autocommit=True) as conn:
        for source in ("ga", "psi"):
            batch = conn.execute(
                "SELECT max(id) FROM ingest_batch WHERE source = %s AND status = 'loaded'",
                (source,),
            ).fetchone()[0]
            path = csv_dir / f"{source}.csv"
            conn.execute(
                f"COPY (SELECT * FROM raw_{source}_b{batch}) TO '{path}' WITH (FORMAT csv)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.ingest.bench", description=__doc__)
    parser.add_argument("--records", type=int, default=2_000_000, help="per source")
    parser.add_argument("--data-dir", default=str(REPO / "data" / "bench-ingest"))
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; medians shown")
    args = parser.parse_args(argv)

    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"bench-ingest: {args.records:,} records per source, {args.repeat} run(s) per case")
    ga, psi = ensure_files(data_dir, args.records)
    prepare_database()

    cases = [
        ("ga", [ga], ["ga"]),
        ("psi", [psi], ["psi"]),
        ("ga+psi parallel", [ga, psi], ["ga", "psi"]),
    ]
    ours: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    peaks: dict[str, int] = {}
    for _ in range(args.repeat):
        for name, paths, _sources in cases:
            seconds, peak, _ = run_ingest(paths)
            ours[name].append(seconds)
            peaks[name] = max(peaks.get(name, 0), peak)

    copy_times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    with tempfile.TemporaryDirectory(prefix="metriflow-bench-") as tmp:
        csv_dir = Path(tmp)
        export_csv(csv_dir)
        for _ in range(args.repeat):
            for name, _paths, sources in cases:
                copy_times[name].append(server_copy(csv_dir, sources))

    header = (
        f"{'case':<17}{'records':>12}{'seconds':>9}{'records/s':>12}{'peak RSS':>10}"
        f"{'COPY s':>9}{'COPY rec/s':>12}{'ours/COPY':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, _paths, sources in cases:
        records = args.records * len(sources)
        seconds = statistics.median(ours[name])
        copy_seconds = statistics.median(copy_times[name])
        rate, copy_rate = records / seconds, records / copy_seconds
        print(
            f"{name:<17}{records:>12,}{seconds:>9.2f}{rate:>12,.0f}"
            f"{peaks[name] / 2**20:>8.0f}MB{copy_seconds:>9.2f}{copy_rate:>12,.0f}"
            f"{rate / copy_rate:>10.2f}"
        )
    print(
        "seconds: wall time of `manage.py ingest` (process start, checksum, parse, COPY, "
        "commit); COPY: server-side COPY FROM of the same rows as CSV; peak RSS: the largest "
        "single process of the ingest"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
