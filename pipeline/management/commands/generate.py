"""``manage.py generate``: the load generator (same options as ``python -m loadgen``)."""

import argparse

from django.core.management.base import BaseCommand, CommandError

from loadgen import cli


class Command(BaseCommand):
    help = "Write synthetic GA and PSI input files (see python -m loadgen --help)."

    def add_arguments(self, parser):
        cli.add_arguments(parser)

    def handle(self, *args, **options):
        try:
            manifest = cli.run(argparse.Namespace(**options))
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        for written in manifest["files"]:
            self.stdout.write(f"{written['path']}: {written['records']:,} records")
