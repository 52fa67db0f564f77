"""``manage.py pipeline status``: the state of every stage."""

from django.core.management.base import BaseCommand

from pipeline.selectors import stage_states


class Command(BaseCommand):
    help = "Inspect the aggregation pipeline."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status", help="Rows, ledger windows and dirty keys per stage.")

    def handle(self, *args, action: str, **options):
        if action == "status":
            self._status()

    def _status(self) -> None:
        header = f"{'stage':<9} {'rows':>12} {'dirty':>8}  ledger"
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for state in stage_states():
            ledger = ", ".join(f"{k}={v}" for k, v in sorted(state.ledger.items())) or "-"
            rows = sum(state.rows.values())
            self.stdout.write(f"{state.stage:<9} {rows:>12,} {state.dirty:>8,}  {ledger}")
