from django.db import migrations

from pipeline.sqlfiles import read_sql


class Migration(migrations.Migration):
    """stages.sql, re-applied: the statements it assembled as text at run time are
    functions generated from the catalog (pipeline/stage_sql.py, created at migrate by
    pipeline/reference.py), and the staged stage's per-source statements are written
    out for each source."""

    dependencies = [
        ("pipeline", "0022_deltas"),
    ]

    operations = [
        migrations.RunSQL(read_sql("functions/stages.sql"), migrations.RunSQL.noop),
    ]
