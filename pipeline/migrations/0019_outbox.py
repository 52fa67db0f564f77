from django.db import migrations, models

from pipeline.sqlfiles import read_sql, run_sql_file


class Migration(migrations.Migration):
    """The hand-off as a transactional outbox and the ledger's queued state (schema
    0011), and the functions that write them (functions/handoff.sql); the models are
    unmanaged, so the model operation only records it in Django's state."""

    dependencies = [
        ("pipeline", "0018_batch_quality"),
    ]

    operations = [
        run_sql_file("schema/0011_outbox.sql", "schema/0011_outbox.down.sql"),
        migrations.RunSQL(
            read_sql("functions/handoff.sql"), read_sql("functions/handoff.down.sql")
        ),
        migrations.CreateModel(
            name="PipelineOutbox",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("task_name", models.TextField()),
                ("batch_id", models.BigIntegerField(null=True)),
                ("window_start", models.DateTimeField(null=True)),
                ("created_at", models.DateTimeField()),
                ("published_at", models.DateTimeField(null=True)),
                ("attempts", models.IntegerField(default=0)),
                ("task_id", models.TextField(null=True)),
                ("error", models.TextField(null=True)),
            ],
            options={
                "verbose_name": "pipeline hand-off",
                "db_table": "pipeline_outbox",
                "ordering": ["-id"],
                "managed": False,
            },
        ),
    ]
