from django.db import migrations

from pipeline.sqlfiles import read_sql


class Migration(migrations.Migration):
    """The page and interval stages read the ranges of a key's dirty hours, not
    its whole day (stages.sql, re-applied)."""

    dependencies = [("pipeline", "0014_plain_insert_into_empty_windows")]
    operations = [
        migrations.RunSQL(read_sql("functions/stages.sql"), migrations.RunSQL.noop),
    ]
