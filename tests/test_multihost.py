"""Stage workers on two hosts: the chain spreads over both, and one host dying mid-stage
leaves the other to finish its work, with every stage table equal to a clean run.

Two hosts on one machine: two network namespaces (tests/netns.py), each with a
hostname, an address and a link of its own. Each runs one Celery worker on
every stage queue, reaching PostgreSQL, RabbitMQ (a fresh vhost) and Redis
over its own link, through a relay on the link's far end. The files are
ingested here with the trigger on, so the chain runs on RabbitMQ.

Each wave holds the page stage mid-transaction with a table lock until each
host's worker is inside a window held by that lock (directly, or behind a page
window's transaction): a fact the relay proves, as it knows which host each
PostgreSQL backend's connection came from. A worker runs one window at a time
and prefetches no other, so once two windows are held (every wave has more
than two to run), each host holds one. The first wave is then let go, and the
run history shows windows run by each host, under its own hostname and by
pids of that host's namespace. In the second wave (the late files) every
process of one host is killed with SIGKILL while its worker is inside a
window; the other host finishes everything, that window included. The stage
tables then equal a clean in-process run (``stages.drain``) of the same
files, whole tables compared, and the independent computation of
tests/test_stages.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from datetime import UTC, datetime

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection
from kombu.utils.url import url_to_parts

from metriflow.celery import STAGES as QUEUES
from pipeline import stages

from . import netns
from .conftest import REPO_ROOT, admin_conninfo, reset_pipeline_tables, run_manage
from .contract import generate
from .rabbitmq import app_broker, fresh_vhost, queue_state
from .test_dead_letters import wait_for
from .test_stages import FAULTS, assert_every_stage_matches, ingest_in_order, query, snapshot
from .test_stages import STAGE_TABLES as CLEAN_RUN_TABLES

pytestmark = [pytest.mark.usefixtures("pipeline_db"), pytest.mark.slow]

HOSTNAMES = ("host-a", "host-b")
WORKER_PROCESSES = 1  # per host; with prefetch 1, one message at a time
# Every stage table, compared whole with a clean run.
STAGE_TABLES = (*CLEAN_RUN_TABLES, "agg_site_daily")


# ----------------------------------------------------------------- the hosts


def service_ports() -> dict[str, int]:
    """The machine's PostgreSQL, RabbitMQ and Redis ports on 127.0.0.1, from the settings."""
    _t, _h, broker_port, *_ = url_to_parts(django_settings.CELERY_BROKER_URL)
    return {
        "postgres": int(django_settings.DATABASES["default"].get("PORT") or 5432),
        "amqp": int(broker_port or 5672),
        "redis": urllib.parse.urlsplit(django_settings.REDIS_URL).port or 6379,
    }


def _with_netloc(url: str, host: str, port: int) -> str:
    parts = urllib.parse.urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    return parts._replace(netloc=f"{auth}@{host}:{port}" if auth else f"{host}:{port}").geturl()


def host_env(host: netns.Host, ports: dict[str, int], broker_url: str) -> dict[str, str]:
    """The services as ``host`` reaches them: at its gateway, on the relay's ports."""
    db = django_settings.DATABASES["default"]
    auth = db.get("USER") or "postgres"
    if db.get("PASSWORD"):
        auth += ":" + urllib.parse.quote(db["PASSWORD"], safe="")
    return {
        "DATABASE_URL": f"postgres://{auth}@{host.gateway}:{ports['postgres']}/"
        + connection.settings_dict["NAME"],
        "CELERY_BROKER_URL": _with_netloc(broker_url, host.gateway, ports["amqp"]),
        "REDIS_URL": _with_netloc(django_settings.REDIS_URL, host.gateway, ports["redis"]),
        "METRIFLOW_PIPELINE_TRIGGER": "true",
    }


def start_stage_worker(host: netns.Host, env: dict[str, str], log_path) -> subprocess.Popen:
    """One worker on every stage queue, on ``host``, as the README starts them; named
    ``stage@<hostname>``, its log in ``log_path``."""
    with open(log_path, "wb") as log:  # the worker writes to its own copy
        return host.popen(
            [sys.executable, "-m", "celery", "-A", "metriflow", "worker", "-Q", ",".join(QUEUES),
             "-n", "stage@%h", "--concurrency", str(WORKER_PROCESSES), "--without-mingle",
             "--without-gossip", "--loglevel", "INFO"],
            cwd=REPO_ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.fixture
def blocker():
    """A connection of the test's own that can hold a stage table; closed (its lock
    released) whatever happens."""
    conn = psycopg.connect(admin_conninfo(connection.settings_dict["NAME"]))
    yield conn
    conn.close()


@pytest.fixture
def two_hosts():
    """Two hosts and the relay to the machine's services; removed afterwards, even on
    failure. Skipped only where network namespaces cannot be made."""
    try:
        netns.check_permitted()
    except netns.NotPermitted as exc:
        pytest.skip(f"two hosts need network namespaces, not permitted here: {exc}")
    with netns.hosts(*HOSTNAMES) as hosts, netns.relay(service_ports()) as relay:
        yield hosts, relay


# ----------------------------------------------------------------- observation


def windows_held(client_ports: list[int] | None = None) -> set[tuple[str, object]]:
    """(stage, batch id or window start) of the window locks held by the test
    database's backends: by those with one of ``client_ports`` that are waiting on a
    lock, or by any backend when ``client_ports`` is None. ``stages`` locks a batch
    by its id and a time window by the number of its first hour."""
    stage_of = {stages._lock_key(stage, 0)[0]: stage for stage in stages.STAGES}
    rows = query(
        "SELECT l.classid::int, l.objid::bigint FROM pg_stat_activity a "
        "JOIN pg_locks l ON l.pid = a.pid WHERE a.datname = current_database() "
        "AND l.locktype = 'advisory' AND l.granted AND l.classid::int = ANY(%s) "
        "AND (%s::int[] IS NULL OR a.client_port = ANY(%s) AND a.wait_event_type = 'Lock')",
        [list(stage_of), client_ports, client_ports],
    )
    return {
        (stage_of[cls], key if stage_of[cls] == "staged" else
         datetime.fromtimestamp(key * 3600, UTC))
        for cls, key in rows
    }  # fmt: skip


def windows_inside(relay: netns.Relay, host: netns.Host) -> set[tuple[str, object]]:
    """The windows ``host``'s workers are inside, held mid-transaction by a lock: those
    of its PostgreSQL backends, found by the client ports of the relay's connections
    for the host."""
    ports = sorted(relay.upstream_ports(host.hostname, "postgres"))
    return windows_held(ports) if ports else set()


def backends() -> list[tuple]:
    """What each backend of the test database is doing, and its locks: for failures."""
    return query(
        "SELECT a.client_port, a.wait_event_type, a.wait_event, a.state, left(a.query, 60), "
        "array_agg(l.locktype || ':' || coalesce(l.classid::text, '') || ':' "
        "|| coalesce(l.objid::text, '') || ':' || l.granted) "
        "FROM pg_stat_activity a LEFT JOIN pg_locks l ON l.pid = a.pid "
        "WHERE a.datname = current_database() GROUP BY 1, 2, 3, 4, 5"
    )


def wait_until_settled(batches: int, timeout: float = 90) -> None:
    """Every batch staged, no open ledger row, no dirty key, the yearly table written."""

    def settled() -> bool:
        [(staged, unfinished, dirty, yearly)] = query(
            "SELECT (SELECT count(*) FROM pipeline_ledger WHERE stage = 'staged' "
            "        AND status = 'done'), "
            "(SELECT count(*) FROM pipeline_ledger WHERE status <> 'done'), "
            "(SELECT count(*) FROM pipeline_dirty), (SELECT count(*) FROM agg_yearly)"
        )
        return staged == batches and not unfinished and not dirty and yearly > 0

    try:
        wait_for(settled, f"{batches} batches through every stage", timeout)
    except AssertionError:
        raise AssertionError(
            "not settled: ledger "
            f"{query('SELECT stage, status, count(*) FROM pipeline_ledger GROUP BY 1, 2')}, "
            f"dirty {query('SELECT stage, count(*) FROM pipeline_dirty GROUP BY 1')}"
        ) from None


def runs_by_host(since: datetime | None = None) -> dict[str, set[tuple[str, int]]]:
    """hostname -> {(stage, pid)} of the done runs in the history (started after
    ``since``), as ``stages.worker_name()`` recorded them."""
    out: dict[str, set[tuple[str, int]]] = {}
    for stage, worker in query(
        "SELECT l.stage, r.worker FROM pipeline_run r JOIN pipeline_ledger l "
        "ON l.id = r.ledger_id WHERE r.status = 'done' AND r.started_at > %s",
        [since or datetime.min.replace(tzinfo=UTC)],
    ):
        hostname, _, pid = worker.rpartition(":")
        out.setdefault(hostname, set()).add((stage, int(pid)))
    return out


def ledger_worker(stage: str, window) -> tuple[str, str]:
    """(status, worker) of a window's ledger row: a batch id for staged, else a start."""
    key = "batch_id" if stage == "staged" else "window_start"
    [row] = query(f"SELECT status, worker FROM pipeline_ledger WHERE stage = %s AND {key} = %s",
                  [stage, window])  # fmt: skip
    return row


# ----------------------------------------------------------------- the test


@pytest.fixture
def files(tmp_path):
    """Five months over a year boundary (five page windows, two yearly ones), faults,
    and late files touching every month."""
    generate(tmp_path, "--records", "6000", "--pages", "2", "--sites", "2",
             "--start", "2024-10-15T00:00:00Z", "--late", "0.05", *FAULTS)  # fmt: skip
    return [tmp_path / name for name in ("ga.json", "psi.json", "ga_late.json", "psi_late.json")]


def test_two_hosts_share_the_chain_and_one_dying_mid_stage_leaves_the_other_to_finish(
    two_hosts, blocker, files, tmp_path, monkeypatch, test_database_env
):
    (host_a, host_b), relay = two_hosts

    def hold_page_stage() -> None:
        blocker.execute("LOCK TABLE page_hour IN SHARE MODE")

    def until_every_worker_is_inside_a_window() -> dict[str, set[tuple[str, object]]]:
        """Until each host's worker is inside a window held by the lock; returns those
        windows by host."""
        inside: dict[str, set[tuple[str, object]]] = {}

        def full() -> bool:
            inside.update({h.hostname: windows_inside(relay, h) for h in (host_a, host_b)})
            return all(len(windows) == WORKER_PROCESSES for windows in inside.values())

        try:
            wait_for(full, "every worker process inside a window")
        except AssertionError:
            raise AssertionError(f"inside {inside}; backends {backends()}") from None
        return inside

    with fresh_vhost() as url, app_broker(url, monkeypatch):
        # Ingestion, here, starts the chain for each batch it commits; one file at a
        # time, so that batches (last write wins) and pages are numbered in file order.
        ingest_env = {**test_database_env, "CELERY_BROKER_URL": url,
                      "METRIFLOW_PIPELINE_TRIGGER": "true"}  # fmt: skip

        def ingest(paths) -> None:
            run_manage("ingest", "--parallel", "1", "--no-progress", *map(str, paths),
                       env=ingest_env)  # fmt: skip

        for host in (host_a, host_b):
            start_stage_worker(host, host_env(host, relay.serve(host), url),
                               tmp_path / f"{host.hostname}.log")  # fmt: skip
        wait_for(
            lambda: all((queue_state(url, q) or (0, 0))[1] == 2 for q in QUEUES),
            "a consumer of each host on every stage queue",
        )

        # Wave 1: both hosts take part.
        hold_page_stage()
        ingest(files[:2])
        first = until_every_worker_is_inside_a_window()
        blocker.rollback()
        wait_until_settled(2)
        pids = {host.hostname: host.pids() for host in (host_a, host_b)}
        wave_1 = runs_by_host()
        assert set(wave_1) == set(HOSTNAMES), wave_1
        for hostname, runs in wave_1.items():
            # Each host's runs were made by processes of its own namespace ...
            assert {pid for _stage, pid in runs} <= pids[hostname], (hostname, runs)
            # ... including the windows it was seen inside.
            assert {stage for stage, _window in first[hostname]} <= {stage for stage, _ in runs}
        assert first[host_a.hostname].isdisjoint(first[host_b.hostname])

        # Wave 2: host A dies while its worker is inside a window.
        hold_page_stage()
        ingest(files[2:])
        inside = until_every_worker_is_inside_a_window()
        # Everyone sees it in the ledger: running, by host A's worker.
        running = {window: ledger_worker(*window) for window in inside[host_a.hostname]}
        killed_at = datetime.now(UTC)
        killed = host_a.kill()
        assert killed >= pids[host_a.hostname]  # the worker and its pool processes
        for window, (status, worker) in running.items():
            hostname, _, pid = worker.rpartition(":")
            assert (status, hostname) == ("running", host_a.hostname), window
            assert int(pid) in killed, (window, worker)
        # Its connections drop; PostgreSQL ends their backends, releasing its windows.
        wait_for(lambda: not relay.upstream_ports(host_a.hostname, "postgres"),
                 "host A's connections closed")  # fmt: skip
        try:
            wait_for(lambda: windows_held().isdisjoint(inside[host_a.hostname]),
                     "host A's windows released", timeout=120)  # fmt: skip
        except AssertionError as e:
            still = windows_held() & inside[host_a.hostname]
            raise AssertionError(f"{e}: still held {still}; backends {backends()}") from None
        wait_for(
            lambda: all((queue_state(url, q) or (0, 0))[1] == 1 for q in QUEUES),
            "host A gone from every stage queue",
        )
        blocker.rollback()
        wait_until_settled(4)
        survivors = host_b.pids()

        after = runs_by_host(since=killed_at)
        assert set(after) == {host_b.hostname}, after
        assert {pid for _stage, pid in after[host_b.hostname]} <= survivors
        # The windows host A was inside when it died were run again, and done, by host B.
        for stage, window in inside[host_a.hostname]:
            assert ledger_worker(stage, window)[0] == "done"
            key = "l.batch_id" if stage == "staged" else "l.window_start"
            workers = query(
                "SELECT r.worker FROM pipeline_run r JOIN pipeline_ledger l "
                f"ON l.id = r.ledger_id WHERE l.stage = %s AND {key} = %s "
                "AND r.status = 'done' AND r.started_at > %s AND r.rows_in > 0",
                [stage, window, killed_at],
            )
            assert workers, (stage, window)
            assert all(w.startswith(f"{host_b.hostname}:") for (w,) in workers), workers
        host_b.kill()

    # Every stage table equals a clean in-process run of the same files ...
    distributed = snapshot(STAGE_TABLES)
    reset_pipeline_tables()
    ingest_in_order(files)
    assert stages.failed_runs(stages.drain()) == []
    clean = snapshot(STAGE_TABLES)
    for table in STAGE_TABLES:
        assert distributed[table] == clean[table], table
        assert clean[table], table  # and holds rows
    # ... which equals the independent computation.
    assert_every_stage_matches(files)
