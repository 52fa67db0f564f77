"""Admin views of sites, ingestion, the pipeline ledger and its run history (read-only:
the pipeline owns the rows; staff edit a site's name and time zone). Lists keep to
columns that fit a 1280 px wide screen."""

import os
import zoneinfo

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from .models import (
    IngestBatch,
    IngestReject,
    Page,
    PipelineLedger,
    PipelineOutbox,
    PipelineRun,
    Site,
    TaskFailure,
)
from .stages import WINDOW_UNIT

RECENT_RUNS = 20  # runs of a window shown on its ledger page; the rest behind a link


def _hour(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment else "-"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Site)
class SiteAdmin(ReadOnlyAdmin):
    """Sites are created by ingestion; staff give them a display name and a time zone."""

    list_display = ("id", "host", "name", "time_zone", "created_at")
    search_fields = ("host", "name")
    fields = ("host", "name", "time_zone", "created_at")
    readonly_fields = ("host", "created_at")

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        # Both are text columns in SQL; a one-line name and a list of IANA zones.
        if db_field.name == "name":
            kwargs["widget"] = forms.TextInput(attrs={"size": 40})
        elif db_field.name == "time_zone":
            zones = sorted(zoneinfo.available_timezones())
            kwargs["widget"] = forms.Select(choices=[(zone, zone) for zone in zones])
        return super().formfield_for_dbfield(db_field, request, **kwargs)


@admin.register(Page)
class PageAdmin(ReadOnlyAdmin):
    list_display = ("id", "url", "site", "created_at")
    list_filter = ("site",)
    search_fields = ("url",)
    list_select_related = ("site",)


@admin.register(IngestBatch)
class IngestBatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "source_code", "file", "status", "accepted", "rejected", "hours")
    list_filter = ("source", "status", "file_layout")
    search_fields = ("file_name", "checksum")
    date_hierarchy = "started_at"

    @admin.display(description="source", ordering="source")
    def source_code(self, obj: IngestBatch) -> str:
        return obj.source

    @admin.display(description="file", ordering="file_name")
    def file(self, obj: IngestBatch) -> str:
        return format_html(
            '<span title="{}">{}</span>', obj.file_name, os.path.basename(obj.file_name)
        )

    @admin.display(description="accepted", ordering="records_accepted")
    def accepted(self, obj: IngestBatch) -> int:
        return obj.records_accepted

    @admin.display(description="rejected", ordering="records_rejected")
    def rejected(self, obj: IngestBatch) -> int:
        return obj.records_rejected

    @admin.display(description="hours covered (UTC)", ordering="first_hour")
    def hours(self, obj: IngestBatch) -> str:
        if obj.first_hour is None:
            return "-"
        return f"{_hour(obj.first_hour)} .. {_hour(obj.last_hour)}"


@admin.register(IngestReject)
class IngestRejectAdmin(ReadOnlyAdmin):
    list_display = ("id", "batch", "position", "reason")
    list_filter = ("batch__source",)
    search_fields = ("reason",)
    list_select_related = ("batch",)


def _window(ledger: PipelineLedger) -> str:
    """A window as short as lists need it: ``batch 7``, ``2024-12`` (a month), ``2024``."""
    if ledger.batch_id:
        return f"batch {ledger.batch_id}"
    return (
        f"{ledger.window_start:%Y}"
        if WINDOW_UNIT[ledger.stage] == "year"
        else (f"{ledger.window_start:%Y-%m}")
    )


@admin.register(PipelineLedger)
class PipelineLedgerAdmin(ReadOnlyAdmin):
    """The current state of each stage x window; its runs are on its page."""

    actions = ["rerun"]
    readonly_fields = ("error", "runs")
    # The time of each run is in the history (its page, "Pipeline runs"); the list keeps
    # to what fits at 1280 px beside the navigation and the filters.
    list_display = ("stage", "window", "status", "attempts", "rows", "worker", "updated")
    list_filter = ("stage", "status")  # queued and running show while they last
    search_fields = ("error",)
    date_hierarchy = "updated_at"

    @admin.display(description="rows in → out", ordering="rows_in")
    def rows(self, obj: PipelineLedger) -> str:
        return f"{obj.rows_in} → {obj.rows_out}" if obj.rows_in is not None else "-"

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, obj: PipelineLedger) -> str:
        return _hour(obj.updated_at)

    @admin.display(description="window", ordering="window_start")
    def window(self, obj: PipelineLedger) -> str:
        return _window(obj)

    @admin.display(description="runs (latest first)")
    def runs(self, obj: PipelineLedger) -> str:
        runs = list(obj.runs.order_by("-attempt")[:RECENT_RUNS])
        total = obj.runs.count()
        link = format_html(
            '<a href="{}?ledger__id__exact={}">all {} run(s) of this window</a>',
            reverse("admin:pipeline_pipelinerun_changelist"),
            obj.pk,
            total,
        )
        if not runs:
            return link
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr>",
            (
                (run.attempt, run.status, _hour(run.started_at), run.duration_ms,
                 run.rows_in if run.rows_in is not None else "-",
                 run.rows_out if run.rows_out is not None else "-",
                 run.worker, run.error or "")
                for run in runs
            ),
        )  # fmt: skip
        return format_html(
            "<table><thead><tr><th>attempt</th><th>status</th><th>started</th><th>ms</th>"
            "<th>rows in</th><th>rows out</th><th>worker</th><th>error</th></tr></thead>"
            "<tbody>{}</tbody></table>{}",
            rows,
            link,
        )

    @admin.action(description="Re-run the selected windows (queue them)", permissions=["rerun"])
    def rerun(self, request, queryset):
        from .services import enqueue_ledger_windows

        try:
            queued = enqueue_ledger_windows(list(queryset.values_list("pk", flat=True)))
        except Exception as exc:  # the broker or the database is down: say so, queue nothing more
            self.message_user(request, f"Nothing more queued: {exc}", level=messages.ERROR)
            return
        for item in queued:
            marked = "" if item.keys_marked is None else f", {item.keys_marked:,} keys marked dirty"
            self.message_user(
                request,
                f"Queued {item.stage} {item.window} on {item.queue} (task {item.task_id}{marked})",
                level=messages.SUCCESS,
            )

    def has_rerun_permission(self, request):
        return request.user.is_staff


@admin.register(PipelineRun)
class PipelineRunAdmin(ReadOnlyAdmin):
    """The history: one row per run of a stage x window, done or failed."""

    list_display = ("stage", "window", "attempt", "status", "rows_in", "rows_out", "ms", "started")
    list_filter = (("ledger__stage", admin.ChoicesFieldListFilter), "status")
    search_fields = ("error", "task_id", "worker")
    date_hierarchy = "started_at"
    list_select_related = ("ledger",)
    readonly_fields = ("error",)

    @admin.display(description="stage", ordering="ledger__stage")
    def stage(self, obj: PipelineRun) -> str:
        return obj.ledger.stage

    @admin.display(description="window", ordering="ledger__window_start")
    def window(self, obj: PipelineRun) -> str:
        return _window(obj.ledger)

    @admin.display(description="ms", ordering="duration_ms")
    def ms(self, obj: PipelineRun) -> int:
        return obj.duration_ms

    @admin.display(description="started", ordering="started_at")
    def started(self, obj: PipelineRun) -> str:
        return _hour(obj.started_at)


@admin.register(TaskFailure)
class TaskFailureAdmin(ReadOnlyAdmin):
    """Errors of tasks that failed for good; their messages are in dead_letter."""

    list_display = ("task_name", "task_id", "short_error", "failures", "failed_at")
    list_filter = ("task_name",)
    search_fields = ("task_id", "error")
    date_hierarchy = "failed_at"

    @admin.display(description="error")
    def short_error(self, obj: TaskFailure) -> str:
        return obj.error if len(obj.error) <= 120 else f"{obj.error[:117]}..."


class _Published(admin.SimpleListFilter):
    title = "published"
    parameter_name = "published"

    def lookups(self, request, model_admin):
        return (("yes", "Published"), ("no", "Waiting for the broker"))

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(published_at__isnull=self.value() == "no")
        return queryset


@admin.register(PipelineOutbox)
class PipelineOutboxAdmin(ReadOnlyAdmin):
    """Hand-offs to the stage tasks: written with what they follow, published after."""

    list_display = ("id", "task_name", "ledger", "created_at", "published_at", "attempts", "error")
    list_filter = (_Published, "task_name")
    search_fields = ("task_id", "error")
