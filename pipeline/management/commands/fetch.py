"""``manage.py fetch ga4|psi``: a GA4 report or PageSpeed runs, fetched, written, ingested."""

import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from pipeline.fetch import service
from pipeline.fetch.http import FetchError
from pipeline.fetch.psi import check_strategies
from pipeline.ingest import IngestError
from pipeline.tasks import trigger_staged


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"not a date (YYYY-MM-DD): {text!r}") from None


class Command(BaseCommand):
    help = (
        "Fetch from Google and ingest: `fetch ga4` pages through a GA4 Data API runReport "
        "(traffic per page and hour), `fetch psi` runs PageSpeed Insights for each URL and "
        "strategy. The responses are written to an NDJSON file (--output, default under "
        "METRIFLOW_DATA_DIR/fetch/), then ingested with --format ga4 or psi. 429s and 5xx "
        "are retried with backoff (docs/sources.md)."
    )

    def add_arguments(self, parser):
        apis = parser.add_subparsers(dest="api", required=True, metavar="{ga4,psi}")
        g = apis.add_parser("ga4", help="a GA4 property's traffic per page and hour")
        g.add_argument("--property", required=True, dest="property_id", metavar="ID")
        g.add_argument("--from", required=True, dest="start", metavar="DATE", help="first day")
        g.add_argument(
            "--to", required=True, dest="end", metavar="DATE", help="last day, inclusive"
        )
        g.add_argument(
            "--credentials",
            metavar="FILE",
            help="service-account key file (default: METRIFLOW_GA4_CREDENTIALS, "
            "GOOGLE_APPLICATION_CREDENTIALS)",
        )
        g.add_argument("--page-size", type=int, metavar="N", help="rows per page (limit)")
        g.add_argument(
            "--host-path",
            action="store_true",
            help="ask for hostName + pagePath instead of pageLocation",
        )
        p = apis.add_parser("psi", help="PageSpeed Insights runs of some URLs")
        p.add_argument("--url", required=True, nargs="+", dest="urls", metavar="URL")
        p.add_argument("--strategy", default="mobile,desktop", help="default: mobile,desktop")
        p.add_argument("--key", help="API key (default: METRIFLOW_PSI_API_KEY)")
        p.add_argument("--concurrency", type=int, metavar="N", help="runs at once")
        for sub in (g, p):
            sub.add_argument("--output", metavar="FILE", help="where the responses are written")
            sub.add_argument(
                "--no-ingest", dest="ingest", action="store_false", help="only write the file"
            )

    def handle(self, *args, api, **options):
        def log(line: str) -> None:
            self.stderr.write(line)

        common = {"output": options["output"], "ingest": options["ingest"], "log": log}
        try:
            if api == "ga4":
                outcome = service.fetch_ga4(
                    property_id=options["property_id"],
                    start=_date(options["start"]),
                    end=_date(options["end"]),
                    credentials=options["credentials"],
                    page_size=options["page_size"],
                    host_path=options["host_path"],
                    on_committed=trigger_staged,
                    **common,
                )
                r = outcome.fetched
                line = f"{r.path}: {r.pages} page(s), {r.rows:,} rows of {r.row_count:,}"
                if not r.rows and options["ingest"]:
                    line += "; no traffic in the range, nothing to ingest"
                self.stdout.write(line)
            else:
                outcome = service.fetch_psi(
                    urls=options["urls"],
                    strategies=check_strategies(options["strategy"]),
                    key=options["key"],
                    concurrency=options["concurrency"],
                    on_committed=trigger_staged,
                    **common,
                )
                r = outcome.fetched
                line = f"{r.path}: {r.succeeded} of {r.requested} runs fetched"
                if r.runtime_errors:
                    line += f" ({r.runtime_errors} with a Lighthouse runtime error)"
                self.stdout.write(line)
                for failure in r.failures:
                    self.stdout.write(f"  failed: {failure.reason}")
        except (ValueError, FetchError, IngestError) as exc:
            raise CommandError(str(exc)) from None
        problems = []
        ingested = outcome.ingested
        if ingested is not None:
            self.stdout.write(ingested.summary())
            if not ingested.ok:
                problems.append(f"{ingested.path}: {ingested.message or ingested.status}")
        if api == "psi" and outcome.fetched.failures:
            problems.append(
                f"{len(outcome.fetched.failures)} of {outcome.fetched.requested} runs failed"
            )
        if problems:
            raise CommandError("; ".join(problems))
