"""``manage.py ingest FILE [FILE ...]``: GA and PSI files into the raw tables."""

from django.core.management.base import BaseCommand, CommandError

from pipeline.ingest import IngestError, ingest_files
from pipeline.tasks import trigger_staged


class Command(BaseCommand):
    help = (
        "Stream GA and PSI files (JSON array, NDJSON, gzip, seed format) into the raw tables "
        "with COPY. Several files are ingested in parallel."
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("--source", choices=("ga", "psi"), help="default: from the file")
        parser.add_argument(
            "--format",
            dest="file_format",
            choices=("auto", "seed"),
            default="auto",
            help="seed: the original .NET generator's records (auto detects them too)",
        )
        parser.add_argument(
            "--force", action="store_true", help="ingest content that was ingested before"
        )
        parser.add_argument("--batch-size", type=int, help="records per committed COPY batch")
        parser.add_argument("--parallel", type=int, help="files at once (default: setting)")
        parser.add_argument(
            "--async",
            dest="enqueue",
            action="store_true",
            help="enqueue one task per file on the raw queue instead of ingesting here",
        )
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, files, enqueue, no_progress, parallel, **options):
        options = {
            "source": options["source"],
            "file_format": options["file_format"],
            "force": options["force"],
            "batch_size": options["batch_size"],
        }
        if enqueue:
            from pipeline.services import enqueue_ingest

            for path in files:
                task_id = enqueue_ingest(path, **options)
                self.stdout.write(f"{path}: queued on 'raw' (task {task_id})")
            return
        try:
            results = ingest_files(
                files,
                parallel=parallel,
                show_progress=False if no_progress else None,
                on_committed=trigger_staged,
                **options,
            )
        except IngestError as exc:
            raise CommandError(str(exc)) from None
        for result in results:
            self.stdout.write(result.summary())
        failures = [r for r in results if not r.ok]
        if failures:
            first = failures[0]
            raise CommandError(f"{first.path}: {first.message or first.status}")
