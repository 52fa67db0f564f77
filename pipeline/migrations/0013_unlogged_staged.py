from django.db import migrations

from pipeline.sqlfiles import read_sql, run_sql_file


class Migration(migrations.Migration):
    """Unlogged staged tables, rebuilt from raw after a crash (staged_ensure in
    stages.sql, re-applied)."""

    dependencies = [("pipeline", "0012_drop_site_indexes")]
    operations = [
        run_sql_file("schema/0007_unlogged_staged.sql", "schema/0007_unlogged_staged.down.sql"),
        migrations.RunSQL(read_sql("functions/stages.sql"), migrations.RunSQL.noop),
    ]
