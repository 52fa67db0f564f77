from django.db import migrations

from pipeline.sqlfiles import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0005_stage_functions")]
    operations = [
        run_sql_file("schema/0003_staged_keys.sql", "schema/0003_staged_keys.down.sql"),
    ]
