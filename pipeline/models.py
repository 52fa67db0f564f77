"""Models of the tables the pipeline writes and the admin reads.

The tables themselves are created by SQL under ``sql/schema`` (loaded by
migration 0001), so every model here is unmanaged: Django reads and edits
rows, PostgreSQL owns the DDL. Ingestion and the stages write these tables
through psycopg and stored procedures, not through the ORM.
"""

import functools
import zoneinfo

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Now


class Source(models.TextChoices):
    GA = "ga", "GA (traffic)"
    PSI = "psi", "PSI (performance)"


def validate_time_zone(value: str) -> None:
    """An IANA time zone name, as zoneinfo knows them (``Europe/Paris``, ``UTC``)."""
    if value not in _time_zones():
        raise ValidationError(
            f"{value!r} is not an IANA time zone name (e.g. Europe/Paris, America/New_York, UTC)"
        )


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class Site(models.Model):
    """A site: the contract's host, created on first ingest, named and given a time
    zone by staff (the time zone is stored; reports stay in UTC)."""

    id = models.AutoField(primary_key=True)
    host = models.TextField(unique=True)
    name = models.TextField(
        blank=True, default="", help_text="Display name; empty: the site is shown by its host."
    )
    time_zone = models.TextField(
        default="UTC",
        validators=[validate_time_zone],
        help_text="IANA time zone name, e.g. Europe/Paris. Stored; reports stay in UTC.",
    )
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        managed = False
        db_table = "site"
        ordering = ["host"]

    def __str__(self) -> str:
        return self.host

    @property
    def display_name(self) -> str:
        return self.name or self.host


class Page(models.Model):
    id = models.AutoField(primary_key=True)
    site = models.ForeignKey(Site, on_delete=models.DO_NOTHING, related_name="pages")
    url = models.TextField(unique=True, help_text="Canonical URL.")
    path = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "page"
        ordering = ["url"]

    def __str__(self) -> str:
        return self.url


class IngestBatch(models.Model):
    """One file ingestion: the contract's ingest batch."""

    class Status(models.TextChoices):
        LOADING = "loading"
        LOADED = "loaded"
        BROKEN = "broken"
        FAILED = "failed"
        SKIPPED = "skipped"

    class Layout(models.TextChoices):
        ARRAY = "array", "JSON array"
        NDJSON = "ndjson", "NDJSON"
        SEED = "seed", "Seed (.NET) format"

    id = models.BigAutoField(primary_key=True)
    source = models.TextField(choices=Source.choices)
    file_name = models.TextField()
    file_layout = models.TextField(choices=Layout.choices)
    checksum = models.TextField()
    file_bytes = models.BigIntegerField(null=True)
    status = models.TextField(choices=Status.choices, default=Status.LOADING)
    forced = models.BooleanField(default=False)
    records_accepted = models.BigIntegerField(default=0)
    records_rejected = models.BigIntegerField(default=0)
    committed_position = models.BigIntegerField(default=0)
    first_hour = models.DateTimeField(null=True)
    last_hour = models.DateTimeField(null=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True)
    error = models.TextField(null=True)

    class Meta:
        managed = False
        db_table = "ingest_batch"
        ordering = ["-id"]
        verbose_name_plural = "ingest batches"

    def __str__(self) -> str:
        return f"#{self.id} {self.source} {self.file_name}"


class IngestReject(models.Model):
    """A record that broke a rule of the contract, kept with where and why."""

    id = models.BigAutoField(primary_key=True)
    batch = models.ForeignKey(IngestBatch, on_delete=models.CASCADE, related_name="rejects")
    position = models.BigIntegerField(help_text="1-based record position in the file.")
    reason = models.TextField()
    raw = models.TextField(null=True, help_text="First 1 KB of the record.")
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "ingest_reject"
        ordering = ["batch_id", "position"]

    def __str__(self) -> str:
        return f"batch {self.batch_id} #{self.position}: {self.reason}"


class Stage(models.TextChoices):
    STAGED = "staged"
    PAGE = "page"
    INTERVAL = "interval"
    DAILY = "daily"
    MONTHLY = "monthly"
    YEARLY = "yearly"


class PipelineLedger(models.Model):
    """One stage x window: its state, attempts, timings and row counts."""

    class Status(models.TextChoices):
        PENDING = "pending"
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    id = models.BigAutoField(primary_key=True)
    stage = models.TextField(choices=Stage.choices)
    batch = models.ForeignKey(
        IngestBatch, null=True, on_delete=models.CASCADE, related_name="ledger"
    )
    window_start = models.DateTimeField(null=True)
    window_end = models.DateTimeField(null=True)
    status = models.TextField(choices=Status.choices, default=Status.PENDING)
    attempts = models.IntegerField(default=0)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    queued_at = models.DateTimeField(null=True, help_text="When it was last queued.")
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    duration_ms = models.BigIntegerField(null=True)
    rows_in = models.BigIntegerField(null=True)
    rows_out = models.BigIntegerField(null=True)
    worker = models.TextField(null=True)
    error = models.TextField(null=True)

    class Meta:
        managed = False
        db_table = "pipeline_ledger"
        ordering = ["-updated_at"]
        verbose_name = "pipeline window"

    def __str__(self) -> str:
        return f"{self.stage} {self.window} ({self.status})"

    @property
    def window(self) -> str:
        if self.batch_id:
            return f"batch {self.batch_id}"
        return f"{self.window_start:%Y-%m-%d}..{self.window_end:%Y-%m-%d}"


class PipelineRun(models.Model):
    """One run of a stage x window: the ledger row's history, one row per attempt."""

    class Status(models.TextChoices):
        DONE = "done"
        FAILED = "failed"

    id = models.BigAutoField(primary_key=True)
    ledger = models.ForeignKey(PipelineLedger, on_delete=models.CASCADE, related_name="runs")
    attempt = models.IntegerField()
    status = models.TextField(choices=Status.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    duration_ms = models.BigIntegerField()
    rows_in = models.BigIntegerField(null=True)
    rows_out = models.BigIntegerField(null=True)
    worker = models.TextField(help_text="host:pid of the process that ran it.")
    task_id = models.TextField(null=True, help_text="Celery task id; empty when run in-process.")
    error = models.TextField(null=True)

    class Meta:
        managed = False
        db_table = "pipeline_run"
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.ledger.stage} {self.ledger.window} #{self.attempt} ({self.status})"


class PipelineOutbox(models.Model):
    """A hand-off to a stage task, written with the transaction it follows and
    published after it commits (empty ``published_at``: not yet on the broker)."""

    id = models.BigAutoField(primary_key=True)
    ledger = models.ForeignKey(PipelineLedger, on_delete=models.CASCADE, related_name="outbox")
    task_name = models.TextField()
    batch_id = models.BigIntegerField(null=True)
    window_start = models.DateTimeField(null=True)
    created_at = models.DateTimeField()
    published_at = models.DateTimeField(null=True)
    attempts = models.IntegerField(default=0)
    task_id = models.TextField(null=True)
    error = models.TextField(null=True)

    class Meta:
        managed = False
        db_table = "pipeline_outbox"
        ordering = ["-id"]
        verbose_name = "pipeline hand-off"

    def __str__(self) -> str:
        return f"{self.task_name} for ledger {self.ledger_id}"


class TaskFailure(models.Model):
    """The error of a Celery task that failed for good (its message is dead-lettered)."""

    task_id = models.TextField(primary_key=True)
    task_name = models.TextField()
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    error = models.TextField()
    traceback = models.TextField(null=True)
    worker = models.TextField()
    failures = models.IntegerField(default=1)
    failed_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "pipeline_task_failure"
        ordering = ["-failed_at"]

    def __str__(self) -> str:
        return f"{self.task_name}[{self.task_id}]"


ALL_HOURS = (1 << 24) - 1  # an hour mask holding the whole day


class PipelineDirty(models.Model):
    """A (page, period) key a stage must recompute."""

    pk = models.CompositePrimaryKey("stage", "period_start", "page_id")
    stage = models.TextField(choices=Stage.choices)
    period_start = models.DateTimeField()
    page_id = models.IntegerField()
    marked_at = models.DateTimeField()
    # Page and interval keys: the dirty hours of the day, bit n = hour n (UTC).
    hours = models.IntegerField(default=ALL_HOURS)

    class Meta:
        managed = False
        db_table = "pipeline_dirty"

    def __str__(self) -> str:
        return f"{self.stage} page {self.page_id} @ {self.period_start:%Y-%m-%d}"
