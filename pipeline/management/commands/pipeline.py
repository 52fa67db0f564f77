"""``manage.py pipeline run|status|rebuild``: drive and inspect the aggregation stages."""

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from pipeline import stages
from pipeline.selectors import stage_states


def _utc(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"not an ISO date or datetime: {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Command(BaseCommand):
    help = "Drive and inspect the aggregation pipeline."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        run = sub.add_parser("run", help="Drain every pending batch and dirty window, in-process.")
        run.add_argument("--stage", action="append", choices=stages.STAGES, dest="only")
        sub.add_parser("status", help="Rows, ledger windows and dirty keys per stage.")
        rebuild = sub.add_parser("rebuild", help="Mark a range dirty and recompute it.")
        rebuild.add_argument("--from", dest="start", required=True, type=_utc)
        rebuild.add_argument("--to", dest="end", required=True, type=_utc)

    def handle(self, *args, action: str, **options):
        if action == "status":
            self._status()
        elif action == "run":
            self._run(tuple(options["only"] or stages.STAGES))
        elif action == "rebuild":
            if options["start"] >= options["end"]:
                raise CommandError("--from must be before --to")
            marked = stages.mark_range_dirty(options["start"], options["end"])
            self.stdout.write(f"{marked:,} page-days marked dirty")
            self._run(stages.TIME_STAGES)

    def _run(self, only: tuple[str, ...]) -> None:
        runs = stages.drain(only)
        totals: dict[str, list] = {}
        for run in runs:
            entry = totals.setdefault(run.stage, [0, 0, 0, 0.0, 0])
            entry[0] += 1
            entry[1] += run.rows_in
            entry[2] += run.rows_out
            entry[3] += run.seconds
            entry[4] += run.status == "busy"
        header = (
            f"{'stage':<9}{'windows':>9}{'keys in':>12}{'rows out':>12}{'seconds':>9}{'rows/s':>11}"
        )
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for stage in stages.STAGES:
            if stage not in totals:
                continue
            count, rows_in, rows_out, seconds, busy = totals[stage]
            rate = rows_out / seconds if seconds else 0
            note = f"  ({busy} busy elsewhere)" if busy else ""
            self.stdout.write(
                f"{stage:<9}{count:>9,}{rows_in:>12,}{rows_out:>12,}{seconds:>9.2f}{rate:>11,.0f}"
                f"{note}"
            )
        if not totals:
            self.stdout.write("nothing to do: no pending batch, no dirty window")

    def _status(self) -> None:
        header = f"{'stage':<9} {'rows':>12} {'dirty':>8}  ledger"
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for state in stage_states():
            ledger = ", ".join(f"{k}={v}" for k, v in sorted(state.ledger.items())) or "-"
            # None: a first load holds the table until it commits.
            counts = state.rows.values()
            rows = "loading" if None in counts else f"{sum(counts):,}"
            self.stdout.write(f"{state.stage:<9} {rows:>12} {state.dirty:>8,}  {ledger}")
