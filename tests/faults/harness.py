"""What every fault test does: ingest a small data set with the trigger on, run the
chain on real workers while the fault strikes, wait until the pipeline settles,
then compare every stage table, whole, with a clean run over the same data in the
same database.

The clean run is made afterwards: every table derived from the raw tables is
emptied, the ingest batches are handed to the staged stage again, and
``pipeline.stages.drain()`` (the in-process path) runs them; in a private
PostgreSQL, ``manage.py pipeline run`` calls the same function with
``DATABASE_URL`` pointing there. Float columns are compared bit for bit: the stages'
float sums are exact in any order (docs/architecture.md, "Order-independent
aggregates"). Interval and daily histograms are multisets (their buckets in any
order), so every histogram is compared normalised with ``hist_merge``.

A stage is held mid-stage with a lock: a connection takes ``LOCK TABLE <its table>
IN SHARE MODE``, so the stage's procedure waits on it inside its transaction (its
ledger row and advisory lock taken, nothing committed) until the lock goes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
from psycopg import sql

from metriflow.celery import STAGES
from pipeline.selectors import STAGE_TABLES

from ..conftest import REPO_ROOT
from ..contract import generate
from ..test_stages import FAULTS

# Every table a stage writes: the stages' own (pipeline/selectors.py) and the daily
# stage's per-site roll-up.
TABLES = (*(table for tables in STAGE_TABLES.values() for table in tables), "agg_site_daily")
# The tables a clean run rebuilds from raw (raw itself is the input of both runs).
DERIVED = tuple(t for t in TABLES if t not in STAGE_TABLES["raw"])
WORKER_QUEUES = STAGES[1:]  # the six stages after ingestion
SETTLE_SECONDS = 90


def make_dataset(out: Path) -> list[Path]:
    """A few hundred GA and PSI records (duplicates, corrections, malformed ones) over
    two months and a year boundary: every stage has more than one window (page,
    interval, daily: December and January; monthly, yearly: 2024 and 2025)."""
    generate(out, "--records", "400", "--pages", "8", "--sites", "2",
             "--start", "2024-12-30T12:00:00Z", *FAULTS)  # fmt: skip
    return [out / "ga.json", out / "psi.json"]


def query(conninfo: str, statement: str, params=()) -> list[tuple]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


# ------------------------------------------------------------------ snapshots


def snapshot(conninfo: str) -> dict[str, list[str]]:
    """Every stage table as sorted rows (each row's repr), histograms normalised."""
    out = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table in TABLES:
            columns = [
                sql.SQL("hist_merge({})").format(sql.Identifier(c))
                if c.endswith("_hist")
                else sql.Identifier(c)
                for (c,) in conn.execute(
                    "SELECT column_name::text FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = %s "
                    "ORDER BY ordinal_position",
                    [table],
                )
            ]
            statement = sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(columns), sql.Identifier(table)
            )
            out[table] = sorted(map(repr, conn.execute(statement).fetchall()))
    return out


def reset_to_ingested(conninfo: str) -> None:
    """Back to the state right after ingestion: the derived tables, dirty marks, run
    history and failures emptied, every batch handed to the staged stage again."""
    with psycopg.connect(conninfo) as conn:
        conn.execute(
            sql.SQL("TRUNCATE {}, pipeline_dirty, pipeline_run, pipeline_task_failure").format(
                sql.SQL(", ").join(map(sql.Identifier, DERIVED))
            )
        )
        # Empty staged tables are whole: the marker says so (sql/schema/0007).
        conn.execute("INSERT INTO staged_marker DEFAULT VALUES ON CONFLICT DO NOTHING")
        conn.execute("DELETE FROM pipeline_ledger WHERE stage <> 'staged'")
        conn.execute(
            "UPDATE pipeline_ledger SET status = 'pending', error = NULL WHERE stage = 'staged'"
        )


def clean_run(conninfo: str, drain) -> dict[str, list[str]]:
    """The tables of a clean run over the same ingested data, made by ``drain``
    (``stages.drain`` or ``manage.py pipeline run`` against ``conninfo``)."""
    reset_to_ingested(conninfo)
    drain()
    assert settled_state(conninfo)["open"] == 0, settled_state(conninfo)
    return snapshot(conninfo)


def assert_equal_to_a_clean_run(conninfo: str, drain) -> None:
    faulted = snapshot(conninfo)
    assert all(faulted[table] for table in TABLES), {t: len(r) for t, r in faulted.items()}
    clean = clean_run(conninfo, drain)
    for table in TABLES:
        missing = sorted(set(clean[table]) - set(faulted[table]))[:3]
        extra = sorted(set(faulted[table]) - set(clean[table]))[:3]
        assert faulted[table] == clean[table], (
            f"{table}: {len(faulted[table])} rows after the fault, {len(clean[table])} in a "
            f"clean run; missing {missing}; extra {extra}"
        )


# ------------------------------------------------------------------ the ledger


def settled_state(conninfo: str) -> dict[str, int]:
    """The work still open: dirty keys, pending deltas, open ledger rows, and the
    batches staged out of those ingested."""
    [(dirty, deltas, open_rows, staged, batches)] = query(
        conninfo,
        "SELECT (SELECT count(*) FROM pipeline_dirty), (SELECT count(*) FROM pipeline_delta), "
        "(SELECT count(*) FROM pipeline_ledger WHERE status <> 'done'), "
        "(SELECT count(*) FROM pipeline_ledger WHERE stage = 'staged' AND status = 'done'), "
        "(SELECT count(*) FROM ingest_batch WHERE status IN ('loaded', 'broken'))",
    )
    return {"dirty": dirty, "deltas": deltas, "open": open_rows, "staged": staged,
            "batches": batches}  # fmt: skip


def is_settled(conninfo: str) -> bool:
    state = settled_state(conninfo)
    return (state["dirty"], state["deltas"], state["open"]) == (0, 0, 0) and (
        state["staged"] == state["batches"] > 0
    )


def wait_until_settled(conninfo: str, *workers: Worker, timeout: float = SETTLE_SECONDS,
                       live: tuple[Worker, ...] = ()) -> None:  # fmt: skip
    """Until every batch is staged, no key is dirty and no ledger row is open; fails at
    once if a worker of ``live`` (those the chain relies on to finish) has ended."""
    deadline = time.monotonic() + timeout
    while not is_settled(conninfo):
        ended = [w for w in live if w.process.poll() is not None]
        if ended or time.monotonic() > deadline:
            why = (
                f"worker {ended[0].name} {ended[0].state()} before the pipeline settled"
                if ended
                else f"the pipeline did not settle within {timeout:g} s"
            )
            ledger = query(
                conninfo,
                "SELECT stage, status, count(*) FROM pipeline_ledger GROUP BY 1, 2 ORDER BY 1, 2",
            )
            dirty = query(conninfo, "SELECT stage, count(*) FROM pipeline_dirty GROUP BY 1")
            logs = "\n".join(f"--- {w.name} ({w.state()})\n{w.log_tail()}" for w in workers)
            raise AssertionError(f"{why}: ledger {ledger}, dirty {dirty}\n{logs}")
        time.sleep(0.5)


def wait_for(condition, what: str, timeout: float = 60, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- mid-stage


@contextmanager
def held(conninfo: str, table: str) -> Iterator[psycopg.Connection]:
    """Holds every stage that writes ``table`` mid-stage until the block ends (or the
    yielded connection is rolled back)."""
    blocker = psycopg.connect(conninfo)
    blocker.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(table)))
    try:
        yield blocker
    finally:
        try:
            blocker.rollback()
            blocker.close()
        except psycopg.Error:  # the server went away under it
            pass


def waiting_stage_backends(conninfo: str, stage: str) -> set[int]:
    """PostgreSQL backends of ``stage``'s procedure waiting on a lock, in this database."""
    rows = query(
        conninfo,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query LIKE %s",
        [f'%"stage_{stage}"(%'],  # the call, as pipeline/stages.py quotes it
    )
    return {pid for (pid,) in rows}


def stage_backends(conninfo: str, stage: str) -> set[int]:
    rows = query(
        conninfo,
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND state <> 'idle' AND query LIKE %s AND pid <> pg_backend_pid()",
        [f'%"stage_{stage}"(%'],  # the call, as pipeline/stages.py quotes it
    )
    return {pid for (pid,) in rows}


# ----------------------------------------------------------------- processes


def ingest(paths, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``manage.py ingest`` with the trigger on: each committed batch hands itself to
    the staged queue, as in production."""
    result = subprocess.run(
        [sys.executable, "manage.py", "ingest", "--no-progress", *map(str, paths)],
        cwd=REPO_ROOT, env={**os.environ, **env, "METRIFLOW_PIPELINE_TRIGGER": "true"},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result


class Worker:
    """``celery -A metriflow worker`` on some stage queues, in a process group of its
    own (so that SIGKILL takes its pool processes too, as when a host or container
    dies), its log in ``log_dir``."""

    def __init__(self, env: dict[str, str], log_dir: Path, name: str,
                 queues: tuple[str, ...] = WORKER_QUEUES,
                 concurrency: int = 2) -> None:  # fmt: skip
        self.name = name
        self.queues = queues
        self.log_path = log_dir / f"worker-{name}.log"
        self.hostname = f"faults-{name}-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
        # Readable lines at INFO: a test reads what the worker received.
        env = {"LOG_LEVEL": "INFO", "METRIFLOW_LOG_FORMAT": "console", **env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "metriflow", "worker",
                 "-Q", ",".join(queues), "-n", self.hostname, "--concurrency", str(concurrency),
                 "--without-mingle", "--without-gossip", "--loglevel", "INFO"],
                cwd=REPO_ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.process.pid

    def state(self) -> str:
        code = self.process.poll()
        return "running" if code is None else f"exited with {code}"

    def received(self, task_id: str) -> bool:
        """Whether its log says it received the task ``task_id``."""
        return any(task_id in line and "received" in line.lower()
                   for line in self.log().splitlines())  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_ready(self, timeout: float = 60) -> None:
        """Until it answers a ping: its consumer steps run in order, the remote-control
        one after the one consuming the task queues. This process's Celery app must
        point at the worker's broker."""
        from metriflow.celery import app

        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"worker {self.name} ended: {self.log_tail()}")
            try:
                return app.control.ping(destination=[self.hostname], timeout=0.5)
            except errors:  # this process's own connection was cut: connect afresh
                app.close()
                app.__dict__.pop("amqp", None)
                with suppress(AttributeError):
                    del app.control.mailbox.producer_pool
                return False

        with app.connection() as conn:
            errors = conn.connection_errors + conn.channel_errors

        wait_for(ready, f"worker {self.name} ready", timeout)

    def pool_pids(self) -> set[int]:
        """Its pool processes (the children of its main process)."""
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return set()
        return {int(pid) for pid in text.split()}

    def kill(self) -> None:
        """SIGKILL to the whole process group: no task finishes, nothing is acked."""
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def warm_shutdown(self) -> None:
        """SIGTERM: Celery's warm shutdown (stop consuming, finish what runs)."""
        self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 60) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        if self.process.poll() is None or _group_alive(self.pid):
            with suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


@contextmanager
def workers(*started: Worker) -> Iterator[tuple[Worker, ...]]:
    """Stops every worker at the end, whatever happened."""
    try:
        yield started
    finally:
        for worker in started:
            worker.stop()
