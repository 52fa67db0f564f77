from django.db import migrations

from pipeline.sqlfiles import read_sql


class Migration(migrations.Migration):
    """Stages insert into a window that holds no rows yet without ON CONFLICT
    (stages.sql, re-applied)."""

    dependencies = [("pipeline", "0013_unlogged_staged")]
    operations = [
        migrations.RunSQL(read_sql("functions/stages.sql"), migrations.RunSQL.noop),
    ]
