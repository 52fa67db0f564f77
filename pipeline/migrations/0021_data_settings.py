from django.db import migrations

from pipeline.sqlfiles import run_sql_file


class Migration(migrations.Migration):
    """The settings that shape stored data (schema 0013). The values are recorded
    after migrate, by the post_migrate handler of pipeline/apps.py
    (pipeline/datasettings.py record_absent), not here: a migration is frozen
    history, while the declared settings may grow."""

    dependencies = [
        ("pipeline", "0020_ingest_request"),
    ]

    operations = [
        run_sql_file("schema/0013_data_settings.sql", "schema/0013_data_settings.down.sql"),
    ]
