"""Ingestion end to end against the real PostgreSQL: the raw tables hold exactly
what an independent reading of the files says, whatever the layout, faults,
re-runs, concurrency or a kill in the middle."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import psycopg
import pytest
from django.db import connection

from pipeline.ingest import ingest_files

from .conftest import REPO_ROOT, admin_conninfo, run_manage
from .contract import (
    canonical,
    generate,
    hour_of,
    natural_key,
    parse_iso,
    read_records,
    ticks_to_dt,
    violations,
)

pytestmark = pytest.mark.usefixtures("pipeline_db")

FAULTS = ["--duplicates", "0.02", "--corrections", "0.02", "--malformed", "0.01"]


def ingest(*paths, **options):
    return ingest_files([str(p) for p in paths], parallel=1, show_progress=False, **options)


def query(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def expected_reading(path, source: str, fmt: str = "contract"):
    """(accepted rows by position, rejected positions) per the independent reading."""
    accepted, rejected = {}, set()
    for position, (_text, record) in enumerate(read_records(path), start=1):
        if violations(source, fmt, record):
            rejected.add(position)
            continue
        accepted[position] = expected_row(source, fmt, record)
    return accepted, rejected


def expected_row(source: str, fmt: str, record: dict) -> tuple:
    if fmt == "seed":
        url = f"https://seed.metriflow.local/page/{record['Page']}"
        at = ticks_to_dt(record["Date"])
        if source == "ga":
            counts = tuple(record.get(k, 0) for k in ("Users", "Sessions", "Views"))
            return (url, hour_of(at), *counts, 0, 0.0)
        return (url, at, "desktop", record["PerformanceScore"], record.get("LCP_MS"))
    if source == "ga":
        return (
            canonical(record["page"]),
            hour_of(parse_iso(record["hour"])),
            record["users"],
            record["sessions"],
            record["views"],
            record["bounces"],
            record["engagement_seconds"],
        )
    return (
        canonical(record["page"]),
        parse_iso(record["measured_at"]),
        record["strategy"],
        record["performance_score"],
        *(record.get(v) for v in ("lcp_ms", "fcp_ms", "inp_ms", "ttfb_ms", "cls")),
    )


def raw_rows(source: str, batch_id: int, seed: bool = False) -> dict[int, tuple]:
    if source == "ga":
        columns = "r.hour, r.users, r.sessions, r.views, r.bounces, r.engagement_seconds"
    elif seed:
        columns = "r.measured_at, r.strategy, r.performance_score, r.lcp_ms"
    else:
        columns = (
            "r.measured_at, r.strategy, r.performance_score, r.lcp_ms, r.fcp_ms, r.inp_ms, "
            "r.ttfb_ms, r.cls"
        )
    rows = query(
        f"SELECT r.position, p.url, {columns} FROM raw_{source} r "
        "JOIN page p ON p.id = r.page_id WHERE r.batch_id = %s",
        [batch_id],
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def rejected_positions(batch_id: int) -> set[int]:
    return {
        p for (p,) in query("SELECT position FROM ingest_reject WHERE batch_id = %s", [batch_id])
    }


@pytest.mark.parametrize(
    ("layout_args", "suffix", "fmt"),
    [
        ([], ".json", "contract"),
        (["--layout", "ndjson"], ".ndjson", "contract"),
        (["--gzip"], ".json.gz", "contract"),
        (["--layout", "ndjson", "--gzip"], ".ndjson.gz", "contract"),
        (["--format", "seed"], ".json", "seed"),
    ],
)
def test_raw_tables_hold_exactly_the_valid_records(tmp_path, layout_args, suffix, fmt):
    generate(tmp_path, "--records", "3000", "--pages", "25", "--url-variants", "0.1",
             *FAULTS, *layout_args)  # fmt: skip
    paths = [tmp_path / f"ga{suffix}", tmp_path / f"psi{suffix}"]
    results = ingest(*paths, file_format="seed" if fmt == "seed" else "auto")
    for path, result in zip(paths, results, strict=True):
        source = result.source
        expected, expected_rejects = expected_reading(path, source, fmt)
        assert result.status == "loaded", result.summary()
        assert (result.accepted, result.rejected) == (len(expected), len(expected_rejects))
        assert raw_rows(source, result.batch_id, seed=fmt == "seed") == expected
        assert rejected_positions(result.batch_id) == expected_rejects
    if fmt == "contract":
        assert query("SELECT count(*) FROM ingest_reject") != [(0,)]


def test_last_write_wins_in_effect_matches_file_order(tmp_path):
    generate(tmp_path, "--records", "2000", "--pages", "20", *FAULTS)
    [_result] = ingest(tmp_path / "ga.json")
    want = {}
    for _text, record in read_records(tmp_path / "ga.json"):
        if not violations("ga", "contract", record):
            want[natural_key("ga", "contract", record)] = record["users"]
    got = {
        (url, hour): users
        for url, hour, users in query(
            "SELECT DISTINCT ON (r.page_id, r.hour) p.url, r.hour, r.users FROM raw_ga r "
            "JOIN page p ON p.id = r.page_id ORDER BY r.page_id, r.hour, r.batch_id DESC, "
            "r.position DESC"
        )
    }
    assert got == want
    assert len(got) == 2000


def test_pages_and_sites_are_created_once_per_canonical_url(tmp_path):
    generate(
        tmp_path, "--records", "1000", "--pages", "30", "--sites", "3", "--url-variants", "0.3"
    )
    ingest(tmp_path / "ga.json", tmp_path / "psi.json")
    urls = {canonical(r["page"]) for _t, r in read_records(tmp_path / "ga.json")}
    assert {u for (u,) in query("SELECT url FROM page")} == urls
    assert query("SELECT count(*) FROM site") == [(3,)]
    assert query("SELECT count(*) FROM page p JOIN site s ON s.id = p.site_id "
                 "WHERE p.url LIKE '%%://' || s.host || '%%'") == [(30,)]  # fmt: skip


def test_truncated_file_keeps_records_before_the_break_and_exits_non_zero(
    tmp_path, test_database_env
):
    manifest = generate(tmp_path, "--records", "2000", "--pages", "20", "--truncate", "0.6")
    [entry] = [f for f in manifest["files"] if f["source"] == "ga"]
    complete = entry["truncation"]["complete_records"]
    result = run_manage("ingest", str(tmp_path / "ga.json"), "--no-progress",
                        env=test_database_env, check=False)  # fmt: skip
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "ga.json" in message and f"invalid JSON at record {complete + 1}" in message
    assert query("SELECT count(*), max(position) FROM raw_ga") == [(complete, complete)]
    [(status, committed)] = query("SELECT status, committed_position FROM ingest_batch")
    assert (status, committed) == ("broken", complete + 1)
    [(position, reason)] = query("SELECT position, reason FROM ingest_reject")
    assert position == complete + 1 and reason.startswith("invalid JSON")


def test_a_corrupt_record_mid_file_is_rejected_and_the_rest_loads(tmp_path):
    lines = [
        f'{{"page":"https://a.example/{i}","hour":"2024-01-01T00:00:00Z","users":1,'
        f'"sessions":1,"views":1,"bounces":0,"engagement_seconds":1.0}}'
        for i in range(10)
    ]
    lines[6] = lines[6].replace('"users":1', '"users":1 "x"')
    (tmp_path / "ga.json").write_text("[" + ",\n".join(lines) + "]")
    [result] = ingest(tmp_path / "ga.json")
    assert result.status == "broken" and "not valid JSON, the first at record 7" in result.message
    assert query("SELECT count(*) FROM raw_ga") == [(9,)]  # every record but the bad one
    assert query("SELECT position FROM ingest_reject") == [(7,)]


def test_ndjson_with_a_bad_line_loads_the_rest_and_says_where(tmp_path):
    good = ('{"page":"https://a.example/%d","hour":"2024-01-01T00:00:00Z","users":1,'
            '"sessions":1,"views":1,"bounces":0,"engagement_seconds":1.0}')  # fmt: skip
    text = "\n".join([good % 1, good % 2, "{oops", good % 3]) + "\n"
    (tmp_path / "ga.ndjson").write_text(text)
    [result] = ingest(tmp_path / "ga.ndjson")
    assert not result.ok and "record 3" in result.message
    assert query("SELECT count(*) FROM raw_ga") == [(3,)]
    assert query("SELECT position FROM ingest_reject") == [(3,)]


def test_same_content_is_skipped_unless_forced_and_forcing_changes_no_effect(tmp_path):
    generate(tmp_path, "--records", "1000", "--pages", "10", *FAULTS)
    [first] = ingest(tmp_path / "ga.json")
    copy = tmp_path / "ga_copy.json"
    copy.write_bytes((tmp_path / "ga.json").read_bytes())
    [again] = ingest(copy)
    assert again.status == "skipped" and f"batch {first.batch_id}" in again.message
    assert query("SELECT count(*) FROM raw_ga") == [(first.accepted,)]

    effect = "SELECT DISTINCT ON (page_id, hour) page_id, hour, users FROM raw_ga " \
             "ORDER BY page_id, hour, batch_id DESC, position DESC"  # fmt: skip
    before = query(effect)
    [forced] = ingest(copy, force=True)
    assert forced.status == "loaded" and forced.batch_id != first.batch_id
    assert query("SELECT count(*) FROM raw_ga") == [(2 * first.accepted,)]
    assert query(effect) == before


def test_source_comes_from_the_name_else_the_first_record(tmp_path):
    generate(tmp_path, "--records", "200", "--pages", "10")
    (tmp_path / "traffic.json").write_bytes((tmp_path / "ga.json").read_bytes())
    (tmp_path / "speed.json.gz").write_bytes(gzip.compress((tmp_path / "psi.json").read_bytes()))
    results = ingest(tmp_path / "traffic.json", tmp_path / "speed.json.gz")
    assert [r.source for r in results] == ["ga", "psi"]
    (tmp_path / "other.json").write_text('[{"x": 1}]')
    [unknown] = ingest(tmp_path / "other.json")
    assert unknown.status == "failed" and "--source" in unknown.message


def test_files_are_ingested_in_parallel_processes(tmp_path):
    generate(tmp_path, "--records", "5000", "--pages", "50")
    results = ingest_files(
        [str(tmp_path / "ga.json"), str(tmp_path / "psi.json")], parallel=2, show_progress=False
    )
    assert [(r.source, r.status, r.accepted) for r in results] == [
        ("ga", "loaded", 5000),
        ("psi", "loaded", 5000),
    ]
    # The hand-off: one pending staged-stage window per batch, committed with it.
    assert sorted(query("SELECT stage, batch_id, status FROM pipeline_ledger")) == sorted(
        ("staged", r.batch_id, "pending") for r in results
    )


def _spawn_ingest(env, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "ingest", "--no-progress", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_ingests_at_once_overlapping_and_identical(tmp_path, test_database_env):
    generate(tmp_path / "a", "--records", "20000", "--pages", "40", "--seed", "1")
    generate(tmp_path / "b", "--records", "20000", "--pages", "40", "--seed", "2")  # same keys
    first = _spawn_ingest(test_database_env, str(tmp_path / "a" / "ga.json"))
    second = _spawn_ingest(test_database_env, str(tmp_path / "b" / "ga.json"))
    same = _spawn_ingest(test_database_env, str(tmp_path / "a" / "ga.json"))
    outputs = [p.communicate(timeout=120)[0] for p in (first, second, same)]
    assert second.returncode == 0, outputs
    # Of the two ingests of identical content, one loads it; the other finds it
    # being ingested (and says so) or already ingested (and skips it).
    loaded = [out for out in (outputs[0], outputs[2]) if "accepted" in out]
    others = [out for out in (outputs[0], outputs[2]) if "accepted" not in out]
    assert len(loaded) == 1, outputs
    assert "being ingested by another process" in others[0] or "same content" in others[0]
    assert sorted(query("SELECT status FROM ingest_batch")).count(("loaded",)) == 2
    assert query("SELECT count(*) FROM raw_ga") == [(40000,)]
    # Last write wins by batch order: every key holds the later batch's values.
    [(later,)] = query("SELECT max(id) FROM ingest_batch WHERE status = 'loaded'")
    assert query(
        "SELECT count(*) FROM (SELECT DISTINCT ON (page_id, hour) batch_id FROM raw_ga "
        "ORDER BY page_id, hour, batch_id DESC, position DESC) w WHERE batch_id = %s",
        [later],
    ) == [(20000,)]


@pytest.mark.slow
def test_a_kill_mid_file_then_a_rerun_loads_every_record_exactly_once(tmp_path, test_database_env):
    generate(tmp_path, "--records", "300000", "--pages", "100", *FAULTS)
    path = str(tmp_path / "ga.json")
    process = _spawn_ingest(test_database_env, path, "--batch-size", "20000")
    deadline = time.monotonic() + 60
    with psycopg.connect(admin_conninfo(connection.settings_dict["NAME"]), autocommit=True) as c:
        while time.monotonic() < deadline:
            row = c.execute("SELECT committed_position FROM ingest_batch").fetchone()
            if row and row[0] > 0:
                break
            time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    [(status, committed)] = query("SELECT status, committed_position FROM ingest_batch")
    assert status == "loading" and 0 < committed < 300000 * 1.05

    rerun = run_manage("ingest", path, "--no-progress", "--batch-size", "20000",
                       env=test_database_env)  # fmt: skip
    assert f"resumed after record {committed:,}" in rerun.stdout
    expected, expected_rejects = expected_reading(path, "ga")
    [(batch_id, status)] = query("SELECT id, status FROM ingest_batch")
    assert status == "loaded"
    assert raw_rows("ga", batch_id) == expected  # every position once, with its values
    assert query("SELECT count(*) FROM raw_ga") == [(len(expected),)]
    assert rejected_positions(batch_id) == expected_rejects
    assert query("SELECT count(*) FROM ingest_reject") == [(len(expected_rejects),)]


@pytest.mark.slow
def test_async_ingest_goes_through_the_raw_queue_to_a_real_worker(tmp_path, test_database_env):
    generate(tmp_path, "--records", "2000", "--pages", "20")
    env = {**os.environ, **test_database_env}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "metriflow", "worker", "-Q", "raw",
         "-n", f"raw-test-{os.getpid()}@%h", "--concurrency", "1", "--pool", "solo",
         "--without-mingle", "--without-gossip"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        queued = run_manage("ingest", "--async", str(tmp_path / "ga.json"), env=test_database_env)
        assert "queued on 'raw'" in queued.stdout
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if query("SELECT status FROM ingest_batch") == [("loaded",)]:
                break
            time.sleep(0.2)
        assert query("SELECT status, records_accepted FROM ingest_batch") == [("loaded", 2000)]
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_raw_partition_rows_carry_their_batch(tmp_path):
    generate(tmp_path, "--records", "500", "--pages", "10")
    results = ingest(tmp_path / "ga.json", tmp_path / "psi.json")
    for result in results:
        partition = f"raw_{result.source}_b{result.batch_id}"
        assert query(f"SELECT count(*), min(batch_id), max(batch_id) FROM {partition}") == [
            (500, result.batch_id, result.batch_id)
        ]
    [(first, last)] = query("SELECT min(first_hour), max(last_hour) FROM ingest_batch")
    assert first == datetime(2024, 1, 1, tzinfo=UTC)
    assert last == datetime(2024, 1, 3, 1, tzinfo=UTC)  # 500 records / 10 pages = 50 hours
