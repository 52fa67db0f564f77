from django.db import migrations

from pipeline.sqlfiles import run_sql_file


class Migration(migrations.Migration):
    """Files queued for ingestion on the raw queue (schema 0012), so that the backlog
    and the lag see them before a worker takes them."""

    dependencies = [
        ("pipeline", "0019_outbox"),
    ]

    operations = [
        run_sql_file("schema/0012_ingest_request.sql", "schema/0012_ingest_request.down.sql"),
    ]
