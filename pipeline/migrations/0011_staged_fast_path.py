from django.db import migrations

from pipeline.sqlfiles import read_sql


class Migration(migrations.Migration):
    """stages.sql re-applied: stage writes and dirty marks in key order (concurrent
    windows and batches take row locks in one order), and the staged stage's fast
    path for batches whose keys are all new."""

    dependencies = [("pipeline", "0010_site_daily_bounds")]
    operations = [
        migrations.RunSQL(read_sql("functions/stages.sql"), migrations.RunSQL.noop),
    ]
