from django.db import migrations

from pipeline.sqlfiles import run_sql_file


class Migration(migrations.Migration):
    """The quality flags of GA4 reports, per batch and response (schema 0010)."""

    dependencies = [
        ("pipeline", "0017_site_profile"),
    ]

    operations = [
        run_sql_file("schema/0010_batch_quality.sql", "schema/0010_batch_quality.down.sql"),
    ]
