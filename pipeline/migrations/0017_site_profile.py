import django.db.models.functions.datetime
from django.db import migrations, models

import pipeline.models
from pipeline.sqlfiles import run_sql_file


class Migration(migrations.Migration):
    """A site's display name and time zone (schema 0009); the model is unmanaged, so
    the field operations only record them in Django's state."""

    dependencies = [
        ("pipeline", "0016_run_history"),
    ]

    operations = [
        run_sql_file("schema/0009_site_profile.sql", "schema/0009_site_profile.down.sql"),
        migrations.AddField(
            model_name="site",
            name="name",
            field=models.TextField(
                blank=True,
                default="",
                help_text="Display name; empty: the site is shown by its host.",
            ),
        ),
        migrations.AddField(
            model_name="site",
            name="time_zone",
            field=models.TextField(
                default="UTC",
                help_text="IANA time zone name, e.g. Europe/Paris. Stored; reports stay in UTC.",
                validators=[pipeline.models.validate_time_zone],
            ),
        ),
        migrations.AlterField(
            model_name="site",
            name="created_at",
            field=models.DateTimeField(db_default=django.db.models.functions.datetime.Now()),
        ),
    ]
