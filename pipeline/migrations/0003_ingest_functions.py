from django.db import migrations

from pipeline.sqlfiles import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0002_models")]
    operations = [
        run_sql_file("functions/ingest.sql", "functions/ingest.down.sql"),
    ]
