"""State read at scrape time: the pipeline and ingestion from PostgreSQL, the queues
from RabbitMQ.

Each scrape runs a handful of aggregate queries over small or indexed tables
(the ledger, the dirty keys, the run history, the task failures, the batches) in
one read-only snapshot with a statement timeout
(``METRIFLOW_METRICS_STATEMENT_TIMEOUT_MS``), and passive declarations of the
queues on a connection with a bounded timeout
(``METRIFLOW_METRICS_BROKER_TIMEOUT_SECONDS``). A database or broker that does
not answer gives ``metriflow_database_up 0`` or ``metriflow_broker_up 0`` and the
rest of the scrape, never an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from amqp.exceptions import ChannelError
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from kombu import Connection
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from metriflow.celery import DEAD_LETTER_QUEUE, STAGES
from pipeline.catalog import CHAIN, LEDGER_STAGES, TIME_STAGES
from pipeline.selectors import pipeline_lag

logger = logging.getLogger(__name__)

# Every query of one scrape, in one snapshot. Windows by ledger status are grouped
# generically, so a new status shows up without a change here.
LEDGER_SQL = "SELECT stage, status, count(*) FROM pipeline_ledger GROUP BY 1, 2"
# Pending work per time stage: dirty keys to recompute and deltas to add.
DIRTY_SQL = (
    "SELECT stage, count(*) FROM (SELECT stage FROM pipeline_dirty "
    "UNION ALL SELECT stage FROM pipeline_delta) AS pending GROUP BY 1"
)
# The run history grows without end (a row per run): its totals are kept per process.
# A run's row is written when the run ends, so runs that started more than
# RUN_SETTLED_AFTER ago are all there (no run lasts that long: the task time limit
# is 20 minutes); they are summed once, in chunks of RUN_FOLD_DAYS along the index
# on started_at, and each scrape reads only the runs started since.
RUN_SETTLED_AFTER = timedelta(days=1)
RUN_FOLD_DAYS = timedelta(days=31)
RUNS_SQL = (
    "SELECT l.stage, r.status, count(*), coalesce(sum(r.duration_ms), 0), "
    "coalesce(sum(r.rows_in), 0), coalesce(sum(r.rows_out), 0) "
    "FROM pipeline_run r JOIN pipeline_ledger l ON l.id = r.ledger_id "
    "WHERE r.started_at >= %s AND r.started_at < %s GROUP BY 1, 2"
)
RUNS_EXTENT_SQL = (
    "SELECT pg_relation_filenode('pipeline_run'), now() - %s, "
    "(SELECT min(started_at) FROM pipeline_run)"
)
FAILURES_SQL = "SELECT task_name, sum(failures) FROM pipeline_task_failure GROUP BY 1"
BATCHES_SQL = (
    "SELECT source, status, count(*), sum(records_accepted), sum(records_rejected), "
    "coalesce(sum(file_bytes) FILTER (WHERE status IN ('loaded', 'broken')), 0) "
    "FROM ingest_batch GROUP BY 1, 2"
)
SOURCES = ("ga", "psi")


def _gauge(name: str, documentation: str, labels=()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


def _counter(name: str, documentation: str, labels=()) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, labels=list(labels))


class _ServiceCollector(Collector):
    """What one service holds, read at scrape time: ``metriflow_<service>_up`` (0 when the
    read failed: the rest of the scrape is still served), the read's seconds, then the
    families of what was read (none when it failed)."""

    service: str  # "database", "broker": in the names of the first two families
    product: str  # the service's product, in the up family's help
    failures: tuple[type[BaseException], ...]  # the errors that mean "did not answer"

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        try:
            state = self._read()
        except self.failures as exc:
            logger.warning("metrics: the %s did not answer: %s", self.service, exc)
            state = None
        up = _gauge(
            f"metriflow_{self.service}_up", f"1 when this scrape read {self.product}, else 0."
        )
        up.add_metric([], 0 if state is None else 1)
        yield up
        seconds = _gauge(
            f"metriflow_{self.service}_scrape_seconds",
            f"Seconds this scrape spent reading the {self.service}.",
        )
        seconds.add_metric([], time.perf_counter() - started)
        yield seconds
        if state is not None:
            yield from self._families(state)

    def _read(self):
        raise NotImplementedError

    def _families(self, state) -> Iterator[Metric]:
        raise NotImplementedError


@dataclass
class _SettledRuns:
    """Totals of the runs that started before ``until``, in the table ``filenode``
    (a TRUNCATE gives the table a new one: the totals start again)."""

    filenode: int | None = None
    until: datetime | None = None
    totals: dict[tuple[str, str], list[int]] = field(default_factory=dict)


_SETTLED_RUNS = [_SettledRuns()]


def _add_runs(totals: dict, rows) -> None:
    for stage, status, *values in rows:
        current = totals.setdefault((stage, status), [0, 0, 0, 0])
        for i, value in enumerate(values):
            current[i] += int(value)


def _run_totals(cursor) -> tuple[_SettledRuns, list[tuple]]:
    """(the settled totals brought up to date, every total as rows of RUNS_SQL)."""
    cursor.execute(RUNS_EXTENT_SQL, [RUN_SETTLED_AFTER])
    filenode, cutoff, oldest = cursor.fetchone()
    previous = _SETTLED_RUNS[0]
    if previous.filenode == filenode and previous.until is not None:
        start, totals = previous.until, {k: list(v) for k, v in previous.totals.items()}
    else:
        start, totals = oldest, {}
    while start is not None and start < cutoff:
        end = min(start + RUN_FOLD_DAYS, cutoff)
        cursor.execute(RUNS_SQL, [start, end])
        _add_runs(totals, cursor.fetchall())
        start = end
    settled = _SettledRuns(filenode, cutoff, totals)
    everything = {k: list(v) for k, v in totals.items()}
    cursor.execute(RUNS_SQL, [cutoff, "infinity"])
    _add_runs(everything, cursor.fetchall())
    return settled, [(stage, status, *values) for (stage, status), values in everything.items()]


class PipelineCollector(_ServiceCollector):
    """The pipeline's and ingestion's state per stage, from PostgreSQL."""

    service, product, failures = "database", "PostgreSQL", (DatabaseError,)

    def _read(self):
        timeout = int(settings.METRIFLOW_METRICS_STATEMENT_TIMEOUT_MS)
        outermost = not connection.in_atomic_block
        with transaction.atomic(), connection.cursor() as cursor:
            if outermost:  # one snapshot for every count (the transaction's first statement)
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(timeout)])
            results = []
            for query in (LEDGER_SQL, DIRTY_SQL):
                cursor.execute(query)
                results.append(cursor.fetchall())
            results.append(pipeline_lag(cursor))
            settled, runs = _run_totals(cursor)
            results.append(runs)
            for query in (FAILURES_SQL, BATCHES_SQL):
                cursor.execute(query)
                results.append(cursor.fetchall())
        _SETTLED_RUNS[0] = settled  # only once the whole read succeeded
        return results

    def _families(self, state) -> Iterator[Metric]:
        ledger, dirty, lag, runs, failures, batches = state
        windows = _gauge(
            "metriflow_pipeline_windows",
            "Windows in the pipeline ledger by stage and status (pending, running, done, "
            "failed, ...); the staged stage's window is an ingest batch.",
            ["stage", "status"],
        )
        for stage, status, count in sorted(ledger):
            windows.add_metric([stage, status], count)
        yield windows

        keys = _gauge(
            "metriflow_pipeline_dirty_keys",
            "Work a stage still has to do: (page, period) keys to recompute (pipeline_dirty) "
            "and changes to add (pipeline_delta).",
            ["stage"],
        )
        dirty_by_stage = dict(dirty)
        for stage in TIME_STAGES:
            keys.add_metric([stage], dirty_by_stage.get(stage, 0))
        yield keys

        lag_seconds = _gauge(
            "metriflow_pipeline_lag_seconds",
            "Age of the stage's oldest pending work: its oldest dirty key's mark, its oldest "
            "batch loaded and not yet staged, or its oldest unfinished window's last change, "
            "whichever is older; 0 when nothing waits.",
            ["stage"],
        )
        for stage in LEDGER_STAGES:
            lag_seconds.add_metric([stage], lag.stages.get(stage, 0.0))
        yield lag_seconds

        run_count = _counter(
            "metriflow_pipeline_runs",
            "Runs of a stage window in the run history, by stage and outcome (done, failed).",
            ["stage", "outcome"],
        )
        run_seconds = _counter(
            "metriflow_pipeline_run_seconds",
            "Seconds spent in the runs of the run history, by stage and outcome.",
            ["stage", "outcome"],
        )
        rows_in = _counter(
            "metriflow_pipeline_rows_in",
            "Rows (dirty keys, raw records) read by the stage's finished runs.",
            ["stage"],
        )
        rows_out = _counter(
            "metriflow_pipeline_rows_out",
            "Rows written by the stage's finished runs; rate() gives rows/s.",
            ["stage"],
        )
        totals = {stage: [0, 0] for stage in LEDGER_STAGES}
        for stage, status, count, millis, read, written in sorted(runs):
            run_count.add_metric([stage, status], count)
            run_seconds.add_metric([stage, status], millis / 1000)
            totals.setdefault(stage, [0, 0])
            totals[stage][0] += read
            totals[stage][1] += written
        for stage, (read, written) in totals.items():
            rows_in.add_metric([stage], read)
            rows_out.add_metric([stage], written)
        yield from (run_count, run_seconds, rows_in, rows_out)

        task_failures = _counter(
            "metriflow_pipeline_task_failures",
            "Failures for good (dead-lettered) of the Celery tasks recorded in "
            "pipeline_task_failure, by task name.",
            ["task"],
        )
        # Every stage task from 0, so a panel shows 0 rather than "No data".
        counts = {f"pipeline.stage.{stage}": 0 for stage in CHAIN} | dict(failures)
        for task, count in sorted(counts.items()):
            task_failures.add_metric([task], count)
        yield task_failures

        batch_count = _gauge(
            "metriflow_ingest_batches",
            "Ingest batches (one per file ingestion) by source and status.",
            ["source", "status"],
        )
        records = _counter(
            "metriflow_ingest_records", "Records accepted by ingestion (committed).", ["source"]
        )
        rejects = _counter(
            "metriflow_ingest_rejects", "Records ingestion rejected (ingest_reject).", ["source"]
        )
        size = _counter(
            "metriflow_ingest_bytes",
            "Bytes of the files ingested to the end (batches loaded or broken).",
            ["source"],
        )
        sums = {source: [0, 0, 0] for source in SOURCES}
        for source, status, count, accepted, rejected, nbytes in sorted(batches):
            batch_count.add_metric([source, status], count)
            total = sums.setdefault(source, [0, 0, 0])
            total[0] += accepted
            total[1] += rejected
            total[2] += nbytes
        for source, (accepted, rejected, nbytes) in sums.items():
            records.add_metric([source], accepted)
            rejects.add_metric([source], rejected)
            size.add_metric([source], nbytes)
        yield from (batch_count, records, rejects, size)


class BrokerCollector(_ServiceCollector):
    """Depths of the ``dead_letter`` and stage queues, from RabbitMQ (passive
    declarations: nothing is created, consumed or changed)."""

    # Any failure of the broker is a down broker, not a 500.
    service, product, failures = "broker", "RabbitMQ", (Exception,)

    def _families(self, depths: dict[str, tuple[int, int]]) -> Iterator[Metric]:
        dead = _gauge(
            "metriflow_dead_letters",
            "Messages in the dead_letter queue: tasks that failed for good "
            "(manage.py pipeline dead-letters lists them).",
        )
        dead.add_metric([], depths.pop(DEAD_LETTER_QUEUE.name, (0, 0))[0])
        yield dead
        messages = _gauge(
            "metriflow_queue_messages", "Messages ready in a stage's queue.", ["queue"]
        )
        consumers = _gauge(
            "metriflow_queue_consumers",
            "Consumers (worker processes) of a stage's queue.",
            ["queue"],
        )
        for queue in STAGES:
            ready, consuming = depths.get(queue, (0, 0))
            messages.add_metric([queue], ready)
            consumers.add_metric([queue], consuming)
        yield messages
        yield consumers

    def _read(self) -> dict[str, tuple[int, int]]:
        """(messages ready, consumers) per queue; a queue not declared yet is absent."""
        timeout = float(settings.METRIFLOW_METRICS_BROKER_TIMEOUT_SECONDS)
        depths = {}
        with Connection(
            settings.CELERY_BROKER_URL,
            connect_timeout=timeout,
            transport_options={"read_timeout": timeout, "write_timeout": timeout},
        ) as conn:
            conn.connect()
            channel = conn.channel()
            try:
                for queue in (DEAD_LETTER_QUEUE.name, *STAGES):
                    try:
                        _name, ready, consuming = channel.queue_declare(queue, passive=True)
                    except ChannelError as exc:
                        if getattr(exc, "code", None) != 404:
                            raise
                        channel = conn.channel()  # NOT_FOUND closed the channel
                        continue
                    depths[queue] = (ready, consuming)
            finally:
                channel.close()
        return depths
