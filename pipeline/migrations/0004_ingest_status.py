from django.db import migrations

from pipeline.sqlfiles import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0003_ingest_functions")]
    operations = [
        run_sql_file("schema/0002_ingest_status.sql", "schema/0002_ingest_status.down.sql"),
    ]
