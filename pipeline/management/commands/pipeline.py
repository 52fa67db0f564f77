"""``manage.py pipeline run|status|wait|rebuild|reshape|dead-letters``: drive and
inspect the aggregation stages."""

import json
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from pipeline import datasettings, progress, stages
from pipeline.selectors import dead_letters, stage_states
from pipeline.services import requeue_dead_letters

DATE_FORMAT = "YYYY-MM-DD or an ISO 8601 datetime such as 2024-01-01T00:00:00Z (UTC if no offset)"


def _utc(option: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option} {text!r} is not a date: expected {DATE_FORMAT}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _arguments(letter) -> str:
    parts = [json.dumps(arg, default=str) for arg in letter.args]
    parts += [f"{key}={json.dumps(value, default=str)}" for key, value in letter.kwargs.items()]
    return ", ".join(parts)


class Command(BaseCommand):
    help = "Drive and inspect the aggregation pipeline."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        run = sub.add_parser("run", help="Drain every pending batch and dirty window, in-process.")
        run.add_argument("--stage", action="append", choices=stages.STAGES, dest="only")
        sub.add_parser("status", help="Rows, ledger windows and dirty keys per stage.")
        wait = sub.add_parser(
            "wait",
            help="Wait, showing progress, until the workers have nothing pending "
            "(exit 1 on timeout or when a window failed).",
        )
        wait.add_argument("--timeout", type=float, default=600, help="seconds (default 600)")
        rebuild = sub.add_parser("rebuild", help="Mark a range dirty and recompute it.")
        rebuild.add_argument("--from", dest="start", required=True, metavar="DATE")
        rebuild.add_argument("--to", dest="end", required=True, metavar="DATE")
        reshape = sub.add_parser(
            "reshape",
            help="Rebuild every aggregate level for the configured settings that shape data "
            "(interval length, histogram constants), record them, and recompute.",
        )
        reshape.add_argument(
            "--interval-hours",
            type=int,
            required=True,
            metavar="N",
            help="The configured METRIFLOW_INTERVAL_HOURS, stated to confirm it.",
        )
        dead = sub.add_parser(
            "dead-letters",
            help="List the tasks that failed for good (the dead_letter queue), or requeue them.",
        )
        dead.add_argument(
            "--requeue",
            action="store_true",
            help="Send every dead letter back to the queue it came from.",
        )
        dead.add_argument("--limit", type=int, default=100, help="List at most N (default 100).")

    def handle(self, *args, action: str, **options):
        if action == "status":
            self._status()
        elif action == "wait":
            self._wait(options["timeout"])
        elif action == "run":
            self._run(tuple(options["only"] or stages.STAGES))
        elif action == "rebuild":
            start, end = _utc("--from", options["start"]), _utc("--to", options["end"])
            if start >= end:
                raise CommandError(
                    f"--from ({start:%Y-%m-%d %H:%M}) must be before --to ({end:%Y-%m-%d %H:%M})"
                )
            marked = stages.mark_range_dirty(start, end)
            self.stdout.write(f"{marked:,} page-days marked dirty")
            self._run(stages.TIME_STAGES)
        elif action == "reshape":
            self._reshape(options["interval_hours"])
        elif action == "dead-letters":
            if options["requeue"]:
                self._requeue()
            else:
                self._dead_letters(options["limit"])

    def _wait(self, timeout: float) -> None:
        if timeout <= 0:
            raise CommandError("--timeout must be a positive number of seconds")

        def report(elapsed: float, backlog: progress.Backlog) -> None:
            self.stdout.write(f"  {elapsed:6.1f} s  {backlog.describe()}")

        backlog = progress.wait_until_settled(timeout, report)
        for stage, window, error in backlog.failed:
            self.stderr.write(f"failed: {stage} {window}: {error}")
        if backlog.failed:
            raise CommandError(
                f"{len(backlog.failed)} window(s) failed; the admin's pipeline windows and "
                "`pipeline dead-letters` show them"
            )
        if not backlog.settled:
            raise CommandError(
                f"still pending after {timeout:g} s: {backlog.describe()} "
                "(are the workers running? `pipeline status` shows each stage)"
            )
        self.stdout.write("nothing pending: every stage is up to date")

    def _dead_letters(self, limit: int) -> None:
        count, letters = dead_letters(limit=max(limit, 0))
        self.stdout.write(f"{count:,} dead letter(s) in dead_letter")
        for letter in letters:
            died = f"{letter.died_at:%Y-%m-%d %H:%M:%S}" if letter.died_at else "?"
            self.stdout.write(
                f"- {letter.task_name}({_arguments(letter)})\n"
                f"    task id {letter.task_id}, from queue {letter.queue} "
                f"({letter.reason} at {died} UTC, {letter.deaths} death(s))\n"
                f"    error: {letter.error or 'not recorded'}"
            )
        if count > len(letters):
            self.stdout.write(f"... and {count - len(letters):,} more (--limit)")

    def _requeue(self) -> None:
        done = requeue_dead_letters()
        for item in done:
            letter = item.letter
            name = f"{letter.task_name}[{letter.task_id}]({_arguments(letter)})"
            if item.queue:
                self.stdout.write(f"requeued {name} -> {item.queue}")
            else:
                self.stdout.write(f"left {name}: its queue {letter.queue!r} is not a stage queue")
        moved = sum(1 for item in done if item.queue)
        self.stdout.write(f"{moved:,} dead letter(s) requeued, {len(done) - moved:,} left")

    def _reshape(self, interval_hours: int) -> None:
        try:
            done = datasettings.reshape(interval_hours)
        except (ValueError, datasettings.DataSettingsMismatch) as exc:
            raise CommandError(str(exc)) from None
        changes = [f"{name} {done.previous.get(name, 'not recorded')} -> {value}"
                   for name, value in done.recorded.items()
                   if done.previous.get(name) != value]  # fmt: skip
        self.stdout.write(
            f"recorded: {', '.join(changes) or 'the same values'}; {done.deleted:,} interval "
            f"rows deleted, {done.marked:,} interval keys marked dirty"
        )
        self._run(stages.TIME_STAGES)

    def _run(self, only: tuple[str, ...]) -> None:
        try:
            datasettings.verify()
        except datasettings.DataSettingsMismatch as exc:
            raise CommandError(str(exc)) from None
        runs = stages.drain(only)
        totals: dict[str, list] = {}
        for run in runs:
            entry = totals.setdefault(run.stage, [0, 0, 0, 0.0, 0, 0])
            entry[0] += 1
            entry[1] += run.rows_in
            entry[2] += run.rows_out
            entry[3] += run.seconds
            entry[4] += run.status == "busy"
            entry[5] += run.status == "failed"
        header = (
            f"{'stage':<9}{'windows':>9}{'keys in':>12}{'rows out':>12}{'seconds':>9}{'rows/s':>11}"
        )
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for stage in stages.STAGES:
            if stage not in totals:
                continue
            count, rows_in, rows_out, seconds, busy, failures = totals[stage]
            rate = rows_out / seconds if seconds else 0
            notes = [f"{busy} busy elsewhere"] if busy else []
            notes += [f"{failures} failed"] if failures else []
            note = f"  ({', '.join(notes)})" if notes else ""
            self.stdout.write(
                f"{stage:<9}{count:>9,}{rows_in:>12,}{rows_out:>12,}{seconds:>9.2f}{rate:>11,.0f}"
                f"{note}"
            )
        if not totals:
            self.stdout.write("nothing to do: no pending batch, no dirty window")
        failed = stages.failed_runs(runs)
        for run in failed:
            self.stderr.write(f"failed: {run.stage} {run.window}: {run.error}")
        if failed:
            names = ", ".join(f"{run.stage} {run.window}" for run in failed)
            raise CommandError(
                f"{len(failed)} window(s) failed, the others are done: {names} "
                "(their keys stay dirty; `pipeline status` and the admin's pipeline "
                "windows show them)"
            )

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
