"""The SQL schema: built by migrations on an empty database, reversible, and
matching the models that read it."""

from datetime import UTC, datetime

import psycopg
import pytest
from django.apps import apps
from django.db import IntegrityError, connection, transaction

from pipeline.models import IngestBatch, Page, PipelineLedger, Site

from .conftest import admin_conninfo, database_url, run_manage

SQL_TABLES = {
    "site",
    "page",
    "ingest_batch",
    "ingest_reject",
    "raw_ga",
    "raw_psi",
    "staged_ga",
    "staged_psi",
    "page_hour",
    "agg_interval",
    "agg_daily",
    "agg_monthly",
    "agg_yearly",
    "pipeline_dirty",
    "pipeline_ledger",
}


def _tables(dbname: str) -> set[str]:
    with psycopg.connect(admin_conninfo(dbname)) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        ).fetchall()
    return {name for (name,) in rows}


def _functions(dbname: str) -> set[str]:
    with psycopg.connect(admin_conninfo(dbname)) as conn:
        rows = conn.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public'"
        ).fetchall()
    return {name for (name,) in rows}


@pytest.mark.slow
def test_migrate_builds_everything_on_an_empty_database_and_reverses(scratch_database):
    env = {"DATABASE_URL": database_url(scratch_database)}
    assert _tables(scratch_database) == set()

    run_manage("migrate", "--noinput", env=env)
    tables = _tables(scratch_database)
    assert tables >= SQL_TABLES
    assert {"auth_user", "token_blacklist_outstandingtoken"} <= tables
    assert {"raw_partition_attach", "raw_partition_drop"} <= _functions(scratch_database)

    run_manage("migrate", "reporting", "zero", "--noinput", env=env)
    run_manage("migrate", "pipeline", "zero", "--noinput", env=env)
    assert not (_tables(scratch_database) & SQL_TABLES)
    assert not ({"raw_partition_attach", "raw_partition_drop"} & _functions(scratch_database))

    # ... and forward again: the reverse leaves nothing behind that blocks it.
    run_manage("migrate", "--noinput", env=env)
    assert _tables(scratch_database) >= SQL_TABLES


def test_no_model_change_is_missing_a_migration():
    result = run_manage("makemigrations", "--check", "--dry-run", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model", [m for m in apps.get_models() if m._meta.app_label in {"pipeline", "reporting"}]
)
def test_every_model_maps_its_table_column_for_column(model):
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, model._meta.db_table)
    table_columns = {col.name for col in description}
    model_columns = {f.column for f in model._meta.concrete_fields if f.column}
    assert model_columns == table_columns
    # And the ORM can read it.
    assert list(model.objects.all()[:1]) is not None


def _make_batch(source: str = "ga") -> IngestBatch:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO ingest_batch (source, file_name, file_layout, checksum) "
            "VALUES (%s, 'ga.json', 'array', 'abc') RETURNING id",
            [source],
        )
        (batch_id,) = cursor.fetchone()
    return IngestBatch.objects.get(pk=batch_id)


@pytest.mark.django_db
def test_raw_partition_per_batch_takes_copy_and_prunes():
    first, second = _make_batch(), _make_batch()
    with connection.cursor() as cursor:
        for batch in (first, second):
            cursor.execute("SELECT raw_partition_attach('ga', %s)", [batch.id])
            assert cursor.fetchone() == (f"raw_ga_b{batch.id}",)
        # Attaching again is a no-op.
        cursor.execute("SELECT raw_partition_attach('ga', %s)", [first.id])

        hour = datetime(2024, 1, 1, 5, tzinfo=UTC)
        rows = [(first.id, pos, 1, hour, 10, 12, 30, 4, 55.5) for pos in range(1, 101)]
        partition = f"raw_ga_b{first.id}"
        with cursor.copy(
            f"COPY {partition} (batch_id, position, page_id, hour, users, sessions, views, "
            "bounces, engagement_seconds) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)

        cursor.execute("SELECT count(*), sum(users) FROM raw_ga WHERE batch_id = %s", [first.id])
        assert cursor.fetchone() == (100, 1000)
        cursor.execute("SELECT count(*) FROM raw_ga WHERE batch_id = %s", [second.id])
        assert cursor.fetchone() == (0,)

        # A row of another batch cannot land in this batch's partition.
        with pytest.raises(Exception, match="constraint"), transaction.atomic():
            cursor.execute(
                f"INSERT INTO {partition} VALUES (%s, 1, 1, %s, 1, 1, 1, 1, 1)",
                [second.id, hour],
            )

        cursor.execute(f"EXPLAIN SELECT * FROM raw_ga WHERE batch_id = {first.id}")
        plan = "\n".join(line for (line,) in cursor.fetchall())
        assert partition in plan
        assert f"raw_ga_b{second.id}" not in plan

        cursor.execute("SELECT raw_partition_drop('ga', %s)", [first.id])
        cursor.execute("SELECT to_regclass(%s)", [partition])
        assert cursor.fetchone() == (None,)


@pytest.mark.django_db
def test_raw_partition_rejects_unknown_source():
    with pytest.raises(Exception, match="unknown source"), connection.cursor() as cursor:
        cursor.execute("SELECT raw_partition_attach('xx; drop table site', 1)")


@pytest.mark.django_db
def test_ledger_windows_are_unique_and_well_formed():
    batch = _make_batch()
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO pipeline_ledger (stage, batch_id) VALUES ('staged', %s)", [batch.id]
        )
        cursor.execute(
            "INSERT INTO pipeline_ledger (stage, window_start, window_end) "
            "VALUES ('daily', %s, %s)",
            [start, end],
        )
        bad_rows = [
            ("staged", None, start, end),  # the staged stage works on a batch
            ("daily", batch.id, start, end),  # time stages have no batch
            ("daily", None, end, start),  # empty window
            ("daily", None, start, end),  # the same window twice
            ("staged", batch.id, None, None),  # the same batch twice
            ("nightly", None, start, end),  # unknown stage
        ]
        for row in bad_rows:
            with pytest.raises(IntegrityError), transaction.atomic():
                cursor.execute(
                    "INSERT INTO pipeline_ledger (stage, batch_id, window_start, window_end) "
                    "VALUES (%s, %s, %s, %s)",
                    row,
                )
    assert PipelineLedger.objects.filter(status="pending").count() == 2


@pytest.mark.django_db
def test_pages_belong_to_sites_with_unique_canonical_urls():
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO site (host) VALUES ('shop.example.com') RETURNING id")
        (site_id,) = cursor.fetchone()
        cursor.execute(
            "INSERT INTO page (site_id, url, path) VALUES (%s, 'https://shop.example.com/a', '/a')",
            [site_id],
        )
        with pytest.raises(IntegrityError), transaction.atomic():
            cursor.execute(
                "INSERT INTO page (site_id, url, path) "
                "VALUES (%s, 'https://shop.example.com/a', '/a')",
                [site_id],
            )
    page = Page.objects.select_related("site").get(url="https://shop.example.com/a")
    assert page.site == Site.objects.get(host="shop.example.com")
