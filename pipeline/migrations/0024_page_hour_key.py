from django.db import migrations

from pipeline.sqlfiles import read_sql, run_sql_file


class Migration(migrations.Migration):
    """page_hour keyed by (page, hour) alone (schema 0015), and stages.sql re-applied:
    the page stage finds a window's first load through the pages."""

    dependencies = [
        ("pipeline", "0023_plain_stage_sql"),
    ]

    operations = [
        run_sql_file("schema/0015_page_hour_key.sql", "schema/0015_page_hour_key.down.sql"),
        migrations.RunSQL(read_sql("functions/stages.sql"), migrations.RunSQL.noop),
    ]
