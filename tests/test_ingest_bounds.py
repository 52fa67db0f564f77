"""Every input of ingestion has a bound: a record that breaks one is a reject with its
position and reason, the records before and after it load, and the batch ends loaded or
failed (never ``loading``). Against the real PostgreSQL; memory measured on a real
``manage.py ingest`` process."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import zlib
from datetime import UTC, datetime

import pytest
from django.db import connection

from pipeline.ingest import ingest_files

from .conftest import REPO_ROOT

pytestmark = pytest.mark.usefixtures("pipeline_db")

MEMORY_BOUND = 400 << 20  # bytes of peak RSS for a whole ingest process


def ga(n: int, *, page: str | None = None, hour: str = "2024-05-01T10:00:00Z") -> dict:
    return {
        "page": page or f"https://shop.example/p{n}",
        "hour": hour,
        "users": n,
        "sessions": n + 1,
        "views": n + 2,
        "bounces": 0,
        "engagement_seconds": 1.5,
    }


def psi(n: int, measured_at: str = "2024-05-01T10:11:12Z") -> dict:
    return {
        "page": f"https://shop.example/p{n}",
        "measured_at": measured_at,
        "strategy": "mobile",
        "performance_score": 90,
        "lcp_ms": 1200,
    }


def line(record) -> bytes:
    return record if isinstance(record, bytes) else json.dumps(record).encode()


def ndjson(records) -> bytes:
    return b"\n".join(map(line, records)) + b"\n"


def array(records) -> bytes:
    return b"[" + b",\n".join(map(line, records)) + b"]\n"


def ingest(path, **options):
    [result] = ingest_files([str(path)], parallel=1, show_progress=False, **options)
    return result


def query(sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def loaded_users(table: str = "raw_ga", column: str = "users") -> dict[int, int]:
    return dict(query(f"SELECT position, {column} FROM {table} ORDER BY position"))


def rejects() -> dict[int, str]:
    return dict(query("SELECT position, reason FROM ingest_reject ORDER BY position"))


def batch_statuses() -> list[str]:
    return [status for (status,) in query("SELECT status FROM ingest_batch ORDER BY id")]


def assert_all_but(bad: dict[int, str], total: int, records_by_position: dict[int, dict]):
    """Exactly the positions in ``bad`` are rejected, with those reasons; all others loaded."""
    got = rejects()
    assert set(got) == set(bad)
    for position, words in bad.items():
        assert words in got[position], (position, got[position])
    expected = {p: r["users"] for p, r in records_by_position.items() if p not in bad}
    assert loaded_users() == expected
    assert len(expected) + len(bad) == total


def ingest_process_peak_rss(path, env: dict[str, str]) -> tuple[int, str]:
    """Runs ``manage.py ingest`` under a fresh parent; (the ingest's max RSS, its stdout)."""
    script = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stderr.write(done.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
        "print(done.stdout)\n"
    )
    argv = [sys.executable, "-c", script, sys.executable, str(REPO_ROOT / "manage.py")]
    argv += ["ingest", "--no-progress", str(path)]
    done = subprocess.run(
        argv, cwd=REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    peak, _, stdout = done.stdout.partition("\n")
    return int(peak), stdout


# --- leading whitespace ---------------------------------------------------------------


@pytest.mark.parametrize("layout", [ndjson, array])
def test_leading_whitespace_of_any_length_is_skipped(tmp_path, layout):
    records = [ga(n) for n in range(1, 6)]
    path = tmp_path / "ga.json"
    path.write_bytes(b" \t\r\n" * 50_000 + layout(records))  # 200 KB of whitespace
    result = ingest(path)
    assert (result.status, result.accepted, result.rejected) == ("loaded", 5, 0)
    assert loaded_users() == {p: r["users"] for p, r in enumerate(records, start=1)}
    assert batch_statuses() == ["loaded"]


# --- record size, gzip bombs, nesting ------------------------------------------------


@pytest.mark.parametrize("layout", [ndjson, array])
def test_a_record_longer_than_the_bound_is_rejected_and_the_rest_loads(tmp_path, layout):
    records = {p: ga(p) for p in range(1, 8)}
    big = ga(4)
    big["padding"] = "x" * 100_000  # 100 KB record, bound 64 KB
    body = [records[p] if p != 4 else big for p in range(1, 8)]
    path = tmp_path / "ga.json"
    path.write_bytes(layout(body))
    result = ingest(path)
    assert_all_but({4: "record longer than 65,536 bytes"}, 7, records)
    assert result.status == "loaded" and batch_statuses() == ["loaded"]


def write_gzip_bomb(path, head: bytes, fillers: list[bytes], size: int, tail: bytes) -> None:
    """``head``, ``size`` bytes of each filler byte in turn, ``tail``; gzip, streamed."""
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(head)
        for filler in fillers:
            block = filler * (1 << 20)
            for _ in range(size // len(block)):
                out.write(block)
        out.write(tail)


@pytest.mark.parametrize(
    ("layout", "head", "fillers", "tail"),
    [
        ("ndjson", ndjson([ga(1)]), [b"0", b"0"], b"\n" + ndjson([ga(3)])),  # a 200 MB line
        ("array", b"[" + line(ga(1)) + b',\n"', [b"0", b"0"], b'",\n' + line(ga(3)) + b"]"),
        ("array", b"[" + line(ga(1)) + b",\n", [b"[", b"]"], b",\n" + line(ga(3)) + b"]"),
    ],
    ids=["ndjson-line", "array-string", "array-nesting"],
)
def test_gzip_bomb_is_one_reject_in_bounded_memory(
    tmp_path, test_database_env, layout, head, fillers, tail
):
    path = tmp_path / "ga.json.gz"
    write_gzip_bomb(path, head, fillers, 100 << 20, tail)
    assert path.stat().st_size < 4 << 20  # small on disk, 200 MB inflated
    peak, stdout = ingest_process_peak_rss(path, test_database_env)
    assert peak < MEMORY_BOUND, f"peak RSS {peak / 2**20:.0f} MB"
    assert loaded_users() == {1: 1, 3: 3}, stdout
    [(position, reason)] = rejects().items()
    assert position == 2
    assert "record longer than 65,536 bytes" in reason or "nested deeper than 32" in reason
    assert batch_statuses() == ["loaded"]


@pytest.mark.parametrize("layout", [ndjson, array])
@pytest.mark.parametrize(
    "deep",
    [
        b"[" * 100_000 + b"]" * 100_000,  # 200 KB, an array 100,000 levels deep
        b'{"a":' * 5_000 + b"1" + b"}" * 5_000,  # an object 5,000 deep
        b'{"page":"https://shop.example/p","x":' + b"[" * 33 + b"]" * 33 + b"}",  # just over
    ],
    ids=["array-100000", "object-5000", "depth-34"],
)
def test_deep_nesting_is_rejected_and_the_rest_loads(tmp_path, layout, deep):
    records = {p: ga(p) for p in range(1, 6)}
    body = [records[p] if p != 3 else deep for p in range(1, 6)]
    path = tmp_path / "ga.json"
    path.write_bytes(layout(body))
    result = ingest(path)
    got = rejects()
    assert set(got) == {3}
    assert "nested deeper than 32 levels" in got[3] or "longer than 65,536" in got[3]
    assert loaded_users() == {p: r["users"] for p, r in records.items() if p != 3}
    assert result.status in ("loaded", "broken") and batch_statuses() == ["loaded"]


def test_deep_nesting_peak_memory_is_bounded(tmp_path, test_database_env):
    deep = b"[" * 100_000 + b"]" * 100_000
    path = tmp_path / "ga.json"
    path.write_bytes(array([ga(1), deep, ga(3)]))
    peak, stdout = ingest_process_peak_rss(path, test_database_env)
    assert peak < MEMORY_BOUND, f"peak RSS {peak / 2**20:.0f} MB"
    assert loaded_users() == {1: 1, 3: 3}, stdout


def test_nesting_within_the_bound_is_not_a_reject(tmp_path):
    ok = ga(2)
    nested: object = 1
    for _ in range(31):  # the record itself is level 1: 32 levels in all
        nested = [nested]
    ok["extra"] = nested
    path = tmp_path / "ga.json"
    path.write_bytes(array([ga(1), ok, ga(3)]))
    ingest(path)
    assert rejects() == {} and loaded_users() == {1: 1, 2: 2, 3: 3}


# --- URL length, and a batch that fails ---------------------------------------------


@pytest.mark.parametrize("layout", [ndjson, array])
def test_a_page_url_longer_than_the_bound_is_rejected(tmp_path, layout):
    records = {p: ga(p) for p in range(1, 6)}
    records[2] = ga(2, page="https://shop.example/" + "a" * 10_240)
    path = tmp_path / "ga.json"
    path.write_bytes(layout(records.values()))
    result = ingest(path)
    got = rejects()
    assert set(got) == {2} and "URL longer than 2,048 characters" in got[2]
    assert loaded_users() == {p: r["users"] for p, r in records.items() if p != 2}
    assert result.status == "loaded" and batch_statuses() == ["loaded"]


def test_a_batch_that_fails_is_marked_failed_and_a_rerun_after_the_fix_loads(tmp_path, settings):
    # Without the URL bound, PostgreSQL's page index refuses the 10 KB URL mid-file.
    records = {p: ga(p) for p in range(1, 6)}
    noise = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(320))
    records[4] = ga(4, page="https://shop.example/" + noise)  # 10 KB, incompressible
    path = tmp_path / "ga.json"
    path.write_bytes(ndjson(records.values()))
    settings.METRIFLOW_INGEST_MAX_URL_CHARS = 100_000
    failed = ingest(path)
    assert failed.status == "failed" and "index row" in failed.message
    [(status, error, accepted)] = query("SELECT status, error, records_accepted FROM ingest_batch")
    assert status == "failed" and "index row" in error and accepted == 0
    assert query("SELECT count(*) FROM raw_ga") == [(0,)]
    assert query("SELECT count(*) FROM pipeline_ledger") == [(0,)]

    settings.METRIFLOW_INGEST_MAX_URL_CHARS = 2_048  # the cause fixed
    again = ingest(path)
    assert again.status == "loaded" and again.batch_id != failed.batch_id
    assert batch_statuses() == ["failed", "loaded"]
    assert loaded_users() == {p: r["users"] for p, r in records.items() if p != 4}
    assert "URL longer than" in rejects()[4]


# --- timestamps ------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [ndjson, array])
def test_timestamps_outside_the_supported_range_are_rejected(tmp_path, layout):
    records = {p: ga(p) for p in range(1, 7)}
    records[2] = ga(2, hour="9999-12-31T23:00:00Z")
    records[4] = ga(4, hour="1989-12-31T23:59:59Z")
    records[5] = ga(5, hour="2099-12-31T23:00:00+00:00")  # the last supported hour
    path = tmp_path / "ga.json"
    path.write_bytes(layout(records.values()))
    ingest(path)
    got = rejects()
    assert set(got) == {2, 4}
    assert all("outside the supported range 1990-01-01 to 2100-01-01" in r for r in got.values())
    assert loaded_users() == {p: r["users"] for p, r in records.items() if p not in (2, 4)}
    [(first, last)] = query("SELECT first_hour, last_hour FROM ingest_batch")
    assert (first, last) == (
        datetime(2024, 5, 1, 10, tzinfo=UTC),
        datetime(2099, 12, 31, 23, tzinfo=UTC),
    )


def test_psi_timestamps_outside_the_range_are_rejected(tmp_path):
    records = [psi(1), psi(2, "9999-01-01T00:00:00Z"), psi(3), psi(4, "1970-01-01T00:00:00Z")]
    path = tmp_path / "psi.json"
    path.write_bytes(array(records))
    ingest(path)
    got = rejects()
    assert set(got) == {2, 4} and all("outside the supported range" in r for r in got.values())
    assert query("SELECT position FROM raw_psi ORDER BY position") == [(1,), (3,)]


# --- hosts -----------------------------------------------------------------------------


def test_hosts_are_one_site_per_name_in_a_labels(tmp_path):
    pages = [
        "https://bücher.example/a",
        "https://xn--bcher-kva.example/a",
        "https://BÜCHER.example/b",
        "https://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0ecom/x",  # full-width, UTS 46
        "https://Example.COM./x",
    ]
    path = tmp_path / "ga.json"
    path.write_bytes(ndjson([ga(n, page=page) for n, page in enumerate(pages, start=1)]))
    ingest(path)
    assert rejects() == {}
    assert [h for (h,) in query("SELECT host FROM site ORDER BY host")] == [
        "example.com",
        "xn--bcher-kva.example",
    ]
    assert [u for (u,) in query("SELECT url FROM page ORDER BY url")] == [
        "https://example.com/x",
        "https://xn--bcher-kva.example/a",
        "https://xn--bcher-kva.example/b",
    ]
    # positions 1 and 2 are the same page
    pages_by_position = dict(query("SELECT position, page_id FROM raw_ga"))
    assert pages_by_position[1] == pages_by_position[2]
    assert pages_by_position[4] == pages_by_position[5]


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("a\u200bb.example", "invisible"),
        ("a..b", "Empty Label"),
        ("-x-.com", "hyphen"),
        ("bad_host.example", "invalid host"),
    ],
)
def test_invalid_hosts_are_rejected(tmp_path, host, words):
    records = {1: ga(1), 2: ga(2, page=f"https://{host}/p"), 3: ga(3)}
    path = tmp_path / "ga.json"
    path.write_bytes(array(records.values()))
    ingest(path)
    got = rejects()
    assert set(got) == {2} and words in got[2] and got[2].startswith("page: ")
    assert loaded_users() == {1: 1, 3: 3}
    assert [h for (h,) in query("SELECT host FROM site")] == ["shop.example"]


# --- tokens JSON does not allow, inside an array -----------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        b'{"page":"https://shop.example/x","users":NaN}',
        b'{"page":"https://shop.example/x","users":Infinity}',
        b'{"page":"https://shop.example/\xff","users":1}',  # not UTF-8
        b'{"page":"https://shop.example/x","users":01}',
        b'{"page":"https://shop.example/x", "users": "open string\n}',  # a line break
    ],
    ids=["nan", "infinity", "bad-byte", "leading-zero", "line-break-in-string"],
)
@pytest.mark.parametrize("where", [1, 4, 8])
def test_a_bad_token_rejects_one_record_and_the_array_goes_on(tmp_path, bad, where):
    records = {p: ga(p) for p in range(1, 9)}
    body = [records[p] if p != where else bad for p in range(1, 9)]
    path = tmp_path / "ga.json"
    path.write_bytes(array(body))
    result = ingest(path)
    assert_all_but({where: "invalid JSON"}, 8, records)
    assert result.status == "broken"  # reported, like NDJSON lines that are not JSON
    assert f"1 record(s) not valid JSON, the first at record {where}" in result.message
    assert batch_statuses() == ["loaded"]
    assert query("SELECT count(*) FROM pipeline_ledger") == [(1,)]


def test_a_broken_array_structure_still_breaks_after_the_records_before_it(tmp_path):
    path = tmp_path / "ga.json"
    path.write_bytes(b"[" + line(ga(1)) + b",\n" + line(ga(2)) + b"\n" + line(ga(3)) + b"]")
    result = ingest(path)
    assert result.status == "broken" and "invalid JSON at record 3" in result.message
    assert loaded_users() == {1: 1, 2: 2}
    assert batch_statuses() == ["broken"]


def test_gzip_helper_builds_what_it_says(tmp_path):
    # The bomb is what the memory tests assume: small on disk, large inflated.
    path = tmp_path / "b.gz"
    write_gzip_bomb(path, b"[", [b"0"], 8 << 20, b"]")
    assert os.path.getsize(path) < 1 << 20
    inflated = zlib.decompressobj(wbits=31).decompress(path.read_bytes())
    assert inflated[:1] == b"[" and len(inflated) == 2 + (8 << 20)
