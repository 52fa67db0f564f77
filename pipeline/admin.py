"""Admin views of ingestion and the pipeline ledger (read-only: the pipeline owns the rows)."""

from django.contrib import admin, messages

from .models import IngestBatch, IngestReject, Page, PipelineLedger, Site


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Site)
class SiteAdmin(ReadOnlyAdmin):
    list_display = ("id", "host", "created_at")
    search_fields = ("host",)


@admin.register(Page)
class PageAdmin(ReadOnlyAdmin):
    list_display = ("id", "url", "site", "created_at")
    list_filter = ("site",)
    search_fields = ("url",)
    list_select_related = ("site",)


@admin.register(IngestBatch)
class IngestBatchAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "source",
        "file_name",
        "status",
        "records_accepted",
        "records_rejected",
        "started_at",
        "finished_at",
    )
    list_filter = ("source", "status", "file_layout")
    search_fields = ("file_name", "checksum")
    date_hierarchy = "started_at"


@admin.register(IngestReject)
class IngestRejectAdmin(ReadOnlyAdmin):
    list_display = ("id", "batch", "position", "reason")
    list_filter = ("batch__source",)
    search_fields = ("reason",)
    list_select_related = ("batch",)


@admin.register(PipelineLedger)
class PipelineLedgerAdmin(ReadOnlyAdmin):
    actions = ["rerun"]
    readonly_fields = ("error",)
    list_display = (
        "stage",
        "batch",
        "window_start",
        "window_end",
        "status",
        "attempts",
        "duration_ms",
        "rows_in",
        "rows_out",
        "updated_at",
    )
    list_filter = ("stage", "status")
    search_fields = ("error",)

    @admin.action(description="Re-run the selected windows now", permissions=["rerun"])
    def rerun(self, request, queryset):
        from .services import rerun_ledger_windows

        runs = rerun_ledger_windows(list(queryset.values_list("pk", flat=True)))
        for run in runs:
            self.message_user(
                request,
                f"{run.stage} {run.window}: {run.status}, {run.rows_out:,} rows in "
                f"{run.seconds:.2f} s",
                level=messages.SUCCESS if run.status != "failed" else messages.ERROR,
            )

    def has_rerun_permission(self, request):
        return request.user.is_staff
