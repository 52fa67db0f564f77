"""``manage.py ingest FILE [FILE ...]``: GA and PSI files into the raw tables."""

import argparse

from django.core.management.base import BaseCommand, CommandError

from pipeline.ingest import IngestError, ingest_files
from pipeline.ingest.service import unreadable_reason
from pipeline.tasks import trigger_staged


def fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction from 0 to 1, got {text!r}")
    return value


class Command(BaseCommand):
    help = (
        "Stream GA and PSI files (JSON array, NDJSON, gzip; seed, GA4 and PSI v5 formats) into "
        "the raw tables "
        "with COPY. Several files are ingested in parallel. One line per file says what "
        "happened; the command exits non-zero if any file failed (could not be read, stopped "
        "being valid JSON, had nothing accepted or too many rejects)."
    )

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", metavar="FILE")
        parser.add_argument("--source", choices=("ga", "psi"), help="default: from the file")
        parser.add_argument(
            "--format",
            dest="file_format",
            choices=("auto", "seed", "ga4", "psi"),
            default="auto",
            help="seed: the original .NET generator's records (auto detects them too); "
            "ga4: GA4 Data API runReport responses (source ga); psi: PageSpeed Insights v5 "
            "responses (source psi); see docs/sources.md",
        )
        parser.add_argument(
            "--force", action="store_true", help="ingest content that was ingested before"
        )
        parser.add_argument("--batch-size", type=int, help="records per committed COPY batch")
        parser.add_argument("--parallel", type=int, help="files at once (default: setting)")
        parser.add_argument(
            "--max-reject-rate",
            type=fraction,
            metavar="FRACTION",
            help="a file with more than this fraction of its records rejected fails (its "
            "accepted records stay loaded); default 1: only a file with nothing accepted fails",
        )
        parser.add_argument(
            "--async",
            dest="enqueue",
            action="store_true",
            help="enqueue one task per file on the raw queue instead of ingesting here",
        )
        parser.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            help="a progress bar on stderr (default: when stdout and stderr are terminals)",
        )

    def handle(self, *args, files, enqueue, progress, parallel, max_reject_rate, **options):
        options = {
            "source": options["source"],
            "file_format": options["file_format"],
            "force": options["force"],
            "batch_size": options["batch_size"],
        }
        if enqueue:
            if max_reject_rate is not None:
                raise CommandError("--max-reject-rate applies to ingesting here, not to --async")
            self._enqueue(files, options)
            return
        if max_reject_rate is not None:
            options["max_reject_rate"] = max_reject_rate
        try:
            results = ingest_files(
                files,
                parallel=parallel,
                show_progress=progress,
                on_committed=trigger_staged,
                **options,
            )
        except IngestError as exc:
            raise CommandError(str(exc)) from None
        for result in results:
            self.stdout.write(result.summary())
        failures = [r for r in results if not r.ok]
        if failures:
            raise CommandError(_verdict([(r.path, r.message or r.status) for r in failures]))

    def _enqueue(self, files: list[str], options: dict) -> None:
        from pipeline.services import enqueue_ingest

        failures = []
        for path in files:
            reason = unreadable_reason(path)
            if reason:
                self.stdout.write(f"{path}: {reason}")
                failures.append((path, reason))
                continue
            task_id = enqueue_ingest(path, **options)
            self.stdout.write(f"{path}: queued on 'raw' (task {task_id})")
        if failures:
            raise CommandError(_verdict(failures))


def _verdict(failures: list[tuple[str, str]]) -> str:
    """The error that ends the output: the failed file and why, or each of several."""
    if len(failures) == 1:
        path, why = failures[0]
        return f"{path}: {why}"
    lines = [f"{len(failures)} files failed:"]
    lines += [f"  {path}: {why}" for path, why in failures]
    return "\n".join(lines)
