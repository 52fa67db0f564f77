from django.db import migrations

from pipeline.sqlfiles import read_sql


class Migration(migrations.Migration):
    """Stage writes and dirty marks in key order (stages.sql, re-applied): concurrent
    windows and batches then take row locks in one order."""

    dependencies = [("pipeline", "0010_site_daily_bounds")]
    operations = [
        migrations.RunSQL(read_sql("functions/stages.sql"), migrations.RunSQL.noop),
    ]
