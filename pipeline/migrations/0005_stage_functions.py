from django.db import migrations

from pipeline.sqlfiles import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0004_ingest_status")]
    operations = [
        run_sql_file("functions/stages.sql", "functions/stages.down.sql"),
    ]
