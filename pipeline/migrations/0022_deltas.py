from django.db import migrations

from pipeline.sqlfiles import read_sql, run_sql_file


class Migration(migrations.Migration):
    """Late data by deltas: the delta table and exact decimal float sums (schema 0014),
    then the stage and hand-off functions that write and read them, re-applied."""

    dependencies = [
        ("pipeline", "0021_data_settings"),
    ]

    operations = [
        run_sql_file("schema/0014_deltas.sql", "schema/0014_deltas.down.sql"),
        migrations.RunSQL(read_sql("functions/stages.sql"), migrations.RunSQL.noop),
        migrations.RunSQL(read_sql("functions/handoff.sql"), migrations.RunSQL.noop),
    ]
