"""Ingestion benchmark: ``python -m pipeline.ingest.bench`` (``make bench-ingest``).

Generates (or reuses) a GA and a PSI JSON-array file, then ingests them into a
database of its own (``metriflow_bench``, created and migrated here) through
``manage.py ingest`` subprocesses: GA alone, PSI alone, both in parallel. Peak
RSS is sampled over each ingest's process tree. In the same run, on the same
rows, it times PostgreSQL's own server-side ``COPY FROM`` of an equivalent CSV
(exported from the raw partitions just written), so the ratio ours/COPY is
measured on this machine at this moment. Prints one table.

Then the Google formats (``loadgen --format ga4|psi``, the same records as the
contract files for the same seed): a GA4 ``runReport`` file of the same records as
the GA file, and a PageSpeed Insights v5 file of ``--psi-v5-records`` responses
(0.3-1 MB each), ingested with ``--format ga4`` / ``--format psi``; a second table
gives records/s and MB/s of each against the contract file of its source, and
peak RSS.
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
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]
# Dropped and re-created by every run; METRIFLOW_BENCH_DB names another one.
BENCH_DB = os.environ.get("METRIFLOW_BENCH_DB", "metriflow_bench")


def _server_of_env() -> tuple[str, str, str]:
    """(host, port, user) of the PostgreSQL server the benchmarks use (``PG*``)."""
    return (
        os.environ.get("PGHOST", "127.0.0.1"),
        os.environ.get("PGPORT", "5432"),
        os.environ.get("PGUSER", "postgres"),
    )


def conninfo(dbname: str = "postgres") -> str:
    """A libpq connection string to ``dbname`` on the benchmarks' server."""
    host, port, user = _server_of_env()
    return f"host={host} port={port} user={user} dbname={dbname}"


def database_url(dbname: str) -> str:
    """The ``DATABASE_URL`` of ``dbname`` on the benchmarks' server."""
    host, port, user = _server_of_env()
    return f"postgres://{user}@{host}:{port}/{dbname}"


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url(BENCH_DB),
        "DJANGO_SETTINGS_MODULE": "metriflow.settings.local",
        "DJANGO_DEBUG": "false",
    }


def prepare_database() -> None:
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        database = sql.Identifier(BENCH_DB)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(database))
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


def ensure_google_file(data_dir: Path, records: int, file_format: str) -> Path:
    """A GA4 or PSI v5 file (NDJSON) of ``records`` records, generated unless present."""
    out = data_dir / file_format
    name = {"ga4": "ga4.ndjson", "psi": "psi-v5.ndjson"}[file_format]
    manifest = out / "manifest.json"
    if manifest.exists() and (out / name).exists():
        written = json.loads(manifest.read_text())
        if written.get("records_per_source") == records:
            return out / name
    subprocess.run(
        [sys.executable, "-m", "loadgen", "--out", str(out), "--records", str(records),
         "--format", file_format, "--layout", "ndjson", "--no-progress"],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return out / name


def run_ingest(paths: list[Path], file_format: str = "auto") -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes) and output of one ``manage.py ingest``."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "ingest",
            "--force",
            "--no-progress",
            "--format",
            file_format,
            *map(str, paths),
        ],
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
    with psycopg.connect(conninfo(BENCH_DB), autocommit=True) as conn:
        for source in sources:
            copy = sql.Identifier(f"copy_{source}")
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(copy))
            conn.execute(
                sql.SQL("CREATE TABLE {} (LIKE {})").format(copy, sql.Identifier(f"raw_{source}"))
            )
    errors: list[BaseException] = []

    def load(source: str) -> None:
        try:
            with psycopg.connect(conninfo(BENCH_DB), autocommit=True) as conn:
                path = csv_dir / f"{source}.csv"
                conn.execute(
                    sql.SQL("COPY {} FROM {} WITH (FORMAT csv)").format(
                        sql.Identifier(f"copy_{source}"), sql.Literal(str(path))
                    )
                )
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
    with psycopg.connect(conninfo(BENCH_DB), autocommit=True) as conn:
        for source in ("ga", "psi"):
            batch = conn.execute(
                "SELECT max(id) FROM ingest_batch WHERE source = %s AND status = 'loaded'",
                (source,),
            ).fetchone()[0]
            path = csv_dir / f"{source}.csv"
            conn.execute(
                sql.SQL("COPY (SELECT * FROM {}) TO {} WITH (FORMAT csv)").format(
                    sql.Identifier(f"raw_{source}_b{batch}"), sql.Literal(str(path))
                )
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.ingest.bench", description=__doc__)
    parser.add_argument("--records", type=int, default=2_000_000, help="per source")
    parser.add_argument("--data-dir", default=str(REPO / "data" / "bench-ingest"))
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; medians shown")
    parser.add_argument(
        "--psi-v5-records",
        type=int,
        default=2_000,
        metavar="N",
        help="PageSpeed v5 responses of the Google-formats case (0.3-1 MB each; default 2000)",
    )
    parser.add_argument(
        "--no-google", dest="google", action="store_false", help="contract formats only"
    )
    parser.add_argument(
        "--only-google",
        action="store_true",
        help="the Google formats and their contract twins only (no COPY comparison)",
    )
    args = parser.parse_args(argv)

    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"bench-ingest: {args.records:,} records per source, {args.repeat} run(s) per case")
    ga, psi = ensure_files(data_dir, args.records)
    prepare_database()
    if args.only_google:
        google_formats(data_dir, {"ga": ga, "psi": psi}, args.records, args.psi_v5_records,
                       args.repeat)  # fmt: skip
        return 0

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
    if args.google:
        google_formats(data_dir, {"ga": ga, "psi": psi}, args.records, args.psi_v5_records,
                       args.repeat)  # fmt: skip
    return 0


def google_formats(
    data_dir: Path, contract: dict[str, Path], ga_records: int, psi_records: int, repeat: int
) -> None:
    """GA4 and PSI v5 files against the contract file of their source, each Google run
    right after a run of its contract twin (so that both see the same machine)."""
    print(
        f"\nGoogle formats: GA4 runReport responses ({ga_records:,} rows: the GA file's "
        f"records), PageSpeed v5 responses ({psi_records:,}); each after its contract file"
    )
    cases = [
        ("ga4", "ga", "ga4", ga_records, 0.5),
        ("psi v5", "psi", "psi", psi_records, 0.2),
    ]
    header = (
        f"{'case':<13}{'records':>11}{'MB':>8}{'seconds':>9}{'records/s':>11}{'MB/s':>7}"
        f"{'peak RSS':>10}{'rec/s ratio':>13}{'MB/s ratio':>12}{'target':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, source, file_format, records, target in cases:
        path = ensure_google_file(data_dir, records, file_format)
        twin = contract[source]
        runs: dict[str, list[float]] = {"contract": [], "google": []}
        peaks = {"contract": 0, "google": 0}
        for _ in range(repeat):
            for kind, file, fmt in (("contract", twin, "auto"), ("google", path, file_format)):
                seconds, rss, _ = run_ingest([file], fmt)
                runs[kind].append(seconds)
                peaks[kind] = max(peaks[kind], rss)
        c_seconds = statistics.median(runs["contract"])
        seconds = statistics.median(runs["google"])
        size, c_size = path.stat().st_size, twin.stat().st_size
        c_records = _records_of(twin)
        rate, mbps = records / seconds, size / 2**20 / seconds
        c_rate, c_mbps = c_records / c_seconds, c_size / 2**20 / c_seconds
        print(
            f"{source + ' contract':<13}{c_records:>11,}{c_size / 2**20:>8,.0f}{c_seconds:>9.2f}"
            f"{c_rate:>11,.0f}{c_mbps:>7.0f}{peaks['contract'] / 2**20:>8.0f}MB"
        )
        print(
            f"{name:<13}{records:>11,}{size / 2**20:>8,.0f}{seconds:>9.2f}{rate:>11,.0f}"
            f"{mbps:>7.0f}{peaks['google'] / 2**20:>8.0f}MB{rate / c_rate:>12.3g}x"
            f"{mbps / c_mbps:>11.2f}x{target:>7.1f}x"
        )
    print(
        "ratio: the Google file's records/s (MB/s) over its contract twin's, medians of runs "
        "made one after the other; target: of records/s. A PSI v5 response is 0.3-1 MB "
        "against ~200 bytes for a contract record: its records/s ratio is bounded by the "
        "bytes a reader must at least scan, which MB/s shows"
    )


def _records_of(path: Path) -> int:
    manifest = json.loads((path.parent / "manifest.json").read_text())
    return sum(f["records"] for f in manifest["files"] if f["path"].endswith(path.name))


if __name__ == "__main__":
    sys.exit(main())
