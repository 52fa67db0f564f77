"""page_hour's one index, its (page, hour) primary key: every read of the table by
hour can use it, and the migration that made it keeps every row both ways."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.db import connection, transaction

from pipeline.models import Page
from reporting import selectors
from reporting.ranges import Piece
from reporting.selectors import Filters

from .conftest import admin_conninfo, database_url, run_manage
from .factories import PageFactory, SiteFactory

pytestmark = pytest.mark.usefixtures("pipeline_db")

START = datetime(2025, 3, 3, 5, tzinfo=UTC)
PIECE = Piece("hour", START, START + timedelta(hours=12))


def _indexes(cursor) -> list[tuple[str, str]]:
    cursor.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
        "WHERE indrelid = 'page_hour'::regclass ORDER BY 1"
    )
    return cursor.fetchall()


@pytest.fixture
def pages() -> list[Page]:
    sites = [SiteFactory(), SiteFactory()]
    return [
        PageFactory(site=site, path=path) for site in sites for path in ("/", "/blog/a", "/blog/b")
    ]


def _page_hour_scans(statement: str, params=()) -> list[dict]:
    """The plan's scans of page_hour, with sequential scans priced out (one still shows
    when no index serves): each one's node type, index and index condition."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, params)
        (plan,) = cursor.fetchone()
    if isinstance(plan, str):
        plan = json.loads(plan)
    scans, nodes = [], [plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("Plans", []))
        if node.get("Relation Name") == "page_hour" or node.get("Index Name") == "page_hour_pkey":
            scans.append(node)
    return scans


def _read_by_page(scans: list[dict]) -> bool:
    """Every read of page_hour is a range of its key within one page."""
    index_scans = [s for s in scans if s.get("Index Name")]
    return (
        bool(index_scans)
        and all(
            s.get("Index Name") == "page_hour_pkey"
            and re.match(r"\(+page_id = ", s.get("Index Cond", ""))
            for s in index_scans
        )
        and not any(s["Node Type"] == "Seq Scan" for s in scans)
    )


def _queryset_scans(queryset) -> list[dict]:
    statement, params = queryset.query.sql_with_params()
    return _page_hour_scans(statement, params)


def test_page_hour_has_one_index_its_page_hour_key():
    with connection.cursor() as cursor:
        assert _indexes(cursor) == [
            (
                "page_hour_pkey",
                "CREATE UNIQUE INDEX page_hour_pkey ON public.page_hour "
                "USING btree (page_id, hour)",
            )
        ]


@pytest.mark.parametrize(
    "filters_of",
    [
        lambda site, other, page: Filters(site=site),
        lambda site, other, page: Filters(sites=frozenset({site, other})),
        lambda site, other, page: Filters(site=site, path_prefix="/blog"),
        lambda site, other, page: Filters(),
        lambda site, other, page: Filters(page=page),
    ],
    ids=["site", "visible-sites", "path-prefix", "every-site", "page"],
)
def test_an_hour_report_piece_reads_page_hour_by_its_key(filters_of, pages):
    filters = filters_of(pages[0].site_id, pages[-1].site_id, pages[1].id)
    scans = _queryset_scans(selectors._queryset(PIECE, filters).values("users"))
    assert _read_by_page(scans), scans


def test_the_site_coverage_reads_page_hour_by_its_key(pages):
    scans = _queryset_scans(selectors.site_coverage_rows([pages[0].site_id]))
    assert len(scans) == 2 and _read_by_page(scans), scans  # the first and the last hour


def test_the_page_stage_finds_a_first_load_by_the_key():
    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc FROM pg_proc WHERE proname = 'stage_page'")
        (source,) = cursor.fetchone()
    test = re.search(r"IF NOT EXISTS \((.*?)\) THEN", source, re.S).group(1)
    assert "LATERAL" in test
    statement = test.replace("p_from", "%s").replace("p_to", "%s")
    assert _read_by_page(_page_hour_scans(statement, [PIECE.start, PIECE.end]))
    # The old test, by hour alone, is what the check above refuses.
    by_hour = "SELECT FROM page_hour WHERE hour >= %s AND hour < %s"
    assert not _read_by_page(_page_hour_scans(by_hour, [PIECE.start, PIECE.end]))


def _rows(dbname: str) -> list[tuple]:
    with psycopg.connect(admin_conninfo(dbname)) as conn:
        return conn.execute("SELECT * FROM page_hour ORDER BY page_id, hour").fetchall()


def _index_defs(dbname: str) -> list[str]:
    with psycopg.connect(admin_conninfo(dbname)) as conn:
        rows = conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = 'page_hour'::regclass ORDER BY 1"
        ).fetchall()
    return [definition.replace("public.", "") for (definition,) in rows]


@pytest.mark.slow
def test_the_key_migration_keeps_every_row_forward_and_back(scratch_database):
    env = {"DATABASE_URL": database_url(scratch_database)}
    run_manage("migrate", "pipeline", "0023_plain_stage_sql", "--noinput", env=env)
    with psycopg.connect(admin_conninfo(scratch_database)) as conn:
        conn.execute("INSERT INTO site (id, host) VALUES (1, 'a.example'), (2, 'b.example')")
        conn.execute(
            "INSERT INTO page (id, site_id, url, path) "
            "SELECT i, 1 + i % 2, 'https://x.example/' || i, '/' || i FROM generate_series(1, 7) i"
        )
        # Rows in hour order, the order the old (hour, page) key was written in.
        conn.execute(
            "INSERT INTO page_hour (hour, page_id, site_id, users, views, mobile_lcp_ms) "
            "SELECT timestamptz '2025-01-01 00:00+00' + h * interval '1 hour', p, 1 + p % 2, "
            "h * p, h + p, CASE WHEN h % 3 = 0 THEN NULL ELSE h * 10.5 END "
            "FROM generate_series(0, 49) h, generate_series(1, 7) p ORDER BY h, p"
        )
    before = _rows(scratch_database)
    assert len(before) == 350
    assert _index_defs(scratch_database) == [
        "CREATE INDEX page_hour_page ON page_hour USING btree (page_id, hour)",
        "CREATE UNIQUE INDEX page_hour_pkey ON page_hour USING btree (hour, page_id)",
    ]

    run_manage("migrate", "--noinput", env=env)
    assert _index_defs(scratch_database) == [
        "CREATE UNIQUE INDEX page_hour_pkey ON page_hour USING btree (page_id, hour)"
    ]
    assert _rows(scratch_database) == before
    with (
        psycopg.connect(admin_conninfo(scratch_database)) as conn,
        pytest.raises(psycopg.errors.UniqueViolation),
    ):
        conn.execute(
            "INSERT INTO page_hour (hour, page_id, site_id) VALUES ('2025-01-01 03:00+00', 4, 1)"
        )

    run_manage("migrate", "pipeline", "0023_plain_stage_sql", "--noinput", env=env)
    assert _index_defs(scratch_database) == [
        "CREATE INDEX page_hour_page ON page_hour USING btree (page_id, hour)",
        "CREATE UNIQUE INDEX page_hour_pkey ON page_hour USING btree (hour, page_id)",
    ]
    assert _rows(scratch_database) == before
