from django.db import migrations

from pipeline.sqlfiles import read_sql


class Migration(migrations.Migration):
    """stages.sql, re-applied: first-load windows read page by page, dirty hours
    read as ranges, the staged primary key built after a first load's rows, and
    float sums of rounded values instead of numeric casts."""

    dependencies = [("pipeline", "0014_plain_insert_into_empty_windows")]
    operations = [
        migrations.RunSQL(read_sql("functions/stages.sql"), migrations.RunSQL.noop),
    ]
