from django.db import migrations, models

from pipeline.sqlfiles import run_sql_file


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0007_dirty_model")]
    operations = [
        run_sql_file("schema/0004_dirty_hours.sql", "schema/0004_dirty_hours.down.sql"),
        # The model is unmanaged: this only records the column in Django's state.
        migrations.AddField(
            model_name="pipelinedirty",
            name="hours",
            field=models.IntegerField(default=16777215),
        ),
    ]
