from django.db import migrations

from pipeline.sqlfiles import run_sql_file


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        run_sql_file("schema/0001_core.sql", "schema/0001_core.down.sql"),
    ]
