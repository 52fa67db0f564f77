from django.db import migrations

from pipeline.sqlfiles import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0011_staged_fast_path")]
    operations = [
        run_sql_file("schema/0006_drop_site_indexes.sql", "schema/0006_drop_site_indexes.down.sql"),
    ]
