from django.db import migrations

from pipeline.sqlfiles import read_sql


class Migration(migrations.Migration):
    """site_daily_refresh takes the window's bounds (stages.sql, re-applied)."""

    dependencies = [("pipeline", "0009_site_daily")]
    operations = [
        migrations.RunSQL(read_sql("functions/stages.sql"), migrations.RunSQL.noop),
    ]
