"""API benchmark: ``python -m reporting.bench`` (``make bench-api``).

Loads a data set of at least 2.6M records into a database of its own
(``metriflow_bench_api``; reused when it already holds that data set), starts
gunicorn on a free port, logs in, and drives it with wrk from a second process
on loopback. Prints requests/s and p50/p95/p99 latency per case: summary over
a whole year, over a whole month, over an arbitrary range cold (every request
a different range, so every one misses the cache) and cached, and top pages.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psycopg
from psycopg import sql

from pipeline.ingest.bench import conninfo, database_url

REPO = Path(__file__).resolve().parents[1]
DB = "metriflow_bench_api"

DONE_SCRIPT = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %f %f %f %f %d %d\\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout))
end
"""

COLD_SCRIPT = """
math.randomseed(os.time() * 1000 + %(seed)d)
local first, hours = %(first)d, %(hours)d
request = function()
  local a = math.random(0, hours - 48)
  local b = a + math.random(5, 24 * 40)
  if b > hours then b = hours end
  local path = string.format("/api/reports/summary?from=%%s&to=%%s",
    os.date("!%%Y-%%m-%%dT%%H:00:00Z", first + a * 3600),
    os.date("!%%Y-%%m-%%dT%%H:00:00Z", first + b * 3600))
  return wrk.format("GET", path)
end
"""


def env(**extra) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": database_url(DB),
        "DJANGO_SETTINGS_MODULE": "metriflow.settings.local",
        "DJANGO_DEBUG": "false",
        "METRIFLOW_PIPELINE_TRIGGER": "false",
        **extra,
    }


def manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env(), check=True)


def load_data(records: int, data_dir: Path) -> dict:
    """The data set's manifest; generates, ingests and aggregates it unless already there."""
    marker = f"records={records}"
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone()
    if exists:
        with psycopg.connect(conninfo(DB)) as conn:
            comment = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                (DB,),
            ).fetchone()[0]
        if comment == marker and (data_dir / "manifest.json").exists():
            manage("migrate", "--noinput", "-v0")  # a reused database gets new migrations
            return json.loads((data_dir / "manifest.json").read_text())
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    manage("migrate", "--noinput", "-v0")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "loadgen",
            "--out",
            str(data_dir),
            "--records",
            str(records),
            "--pages",
            "100",
            "--no-progress",
        ],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    manage("ingest", "--no-progress", str(data_dir / "ga.json"), str(data_dir / "psi.json"))
    manage("pipeline", "run")
    with psycopg.connect(conninfo(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(DB), sql.Literal(marker))
        )
    return json.loads((data_dir / "manifest.json").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        return {"status": exc.code}


def wrk(url: str, token: str, seconds: int, connections: int, script: str) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script + DONE_SCRIPT)
        path = handle.name
    try:
        output = subprocess.run(
            [
                "wrk",
                f"-t{min(2, connections)}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-H",
                f"Authorization: Bearer {token}",
                "-s",
                path,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(path)
    match = re.search(r"RESULT (\S+) (\S+) (\S+) (\S+) (\d+) (\d+)", output)
    rps, p50, p95, p99, total, errors = match.groups()
    return {
        "rps": float(rps),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "requests": int(total),
        "errors": int(errors),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reporting.bench", description=__doc__)
    parser.add_argument("--records", type=int, default=1_300_000, help="per source")
    parser.add_argument("--seconds", type=int, default=10, help="per case")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--data-dir", default=str(REPO / "data" / "bench-api"))
    args = parser.parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")

    manifest = load_data(args.records, Path(args.data_dir))
    first = manifest["hours"]["first"].replace("Z", "+00:00")
    from datetime import datetime

    start = datetime.fromisoformat(first)
    hours = manifest["hours"]["count"]
    year = start.year + 1 if start.month > 1 or start.day > 1 else start.year
    print(
        f"bench-api: {2 * args.records:,} records ({hours:,} hours from "
        f"{manifest['hours']['first']}), {args.seconds} s per case, {args.connections} "
        "connections, wrk -t2"
    )

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "metriflow.wsgi:application",
            "--config",
            "metriflow/gunicorn.conf.py",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env(
            GUNICORN_BIND=f"127.0.0.1:{port}",
            GUNICORN_ACCESS_LOG="/dev/null",
            METRIFLOW_RATE_REPORTS="100000000/m",
            METRIFLOW_RATE_AUTH="1000/m",
            JWT_ACCESS_MINUTES="120",
            CACHE_KEY_PREFIX=f"bench-{port}",
        ),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/health", timeout=2)
                break
            except OSError:
                time.sleep(0.25)
        post(f"{base}/api/auth/register", {"username": "bench", "password": "bench-Pass-2024x"})
        token = post(
            f"{base}/api/auth/token", {"username": "bench", "password": "bench-Pass-2024x"}
        )["access"]
        month = f"{year}-03-01"
        cold = COLD_SCRIPT % {"seed": port, "first": int(start.timestamp()), "hours": hours}
        cases = [
            (
                "summary, whole year",
                f"/api/reports/summary?from={year}-01-01&to={year + 1}-01-01",
                "",
            ),
            ("summary, whole month", f"/api/reports/summary?from={month}&to={year}-04-01", ""),
            ("summary, arbitrary, cold", "/", cold),
            ("  same, one connection", "/", cold),
            (
                "summary, arbitrary, cached",
                f"/api/reports/summary?from={year}-02-03T05:00:00Z&to={year}-05-17T19:00:00Z",
                "",
            ),
            ("top pages, month", f"/api/reports/pages?from={month}&to={year}-04-01&limit=20", ""),
        ]
        header = (
            f"{'case':<28}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
            f"{'requests':>10}{'errors':>8}"
        )
        # Every gunicorn worker serves requests for a few seconds before the
        # first measurement: the first requests of a process import and
        # connect lazily (the first case read 20-30% slower without this).
        wrk(base + cases[-1][1], token, 3, args.connections, "")
        print(header)
        print("-" * len(header))
        for name, path, script in cases:
            if not script:  # the first request of a fixed URL fills the cache
                warm = urllib.request.Request(
                    base + path, headers={"Authorization": f"Bearer {token}"}
                )
                urllib.request.urlopen(warm, timeout=60).read()
            connections = 1 if name.startswith("  same, one") else args.connections
            r = wrk(base + path, token, args.seconds, connections, script)
            print(
                f"{name:<28}{r['rps']:>9,.0f}{r['p50']:>9.1f}{r['p95']:>9.1f}{r['p99']:>9.1f}"
                f"{r['requests']:>10,}{r['errors']:>8,}"
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
