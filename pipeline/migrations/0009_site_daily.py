from django.db import migrations

from pipeline.sqlfiles import read_sql, run_sql_file

# Site-days already aggregated before the table existed.
BACKFILL = (
    "CREATE TEMP TABLE _site_days ON COMMIT DROP AS "
    "SELECT DISTINCT period_start, site_id FROM agg_daily; "
    "SELECT site_daily_refresh()"
)


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0008_dirty_hours")]
    operations = [
        run_sql_file("schema/0005_site_daily.sql", "schema/0005_site_daily.down.sql"),
        # stages.sql gained site_daily_refresh and a new stage_daily: re-applied.
        migrations.RunSQL(read_sql("functions/stages.sql"), migrations.RunSQL.noop),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
    ]
