"""PostgreSQL restarted mid-pipeline, on a private server (tests/instances.py) with
Metriflow's schema loaded by ``manage.py migrate``: a clean shutdown and a crash
(``immediate``: crash recovery empties the unlogged staged tables). The running
stage loses its connection; the task retries (transient errors only) and the chain
goes on. The clean run is ``manage.py pipeline run`` against the same server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..conftest import run_manage
from ..instances import PrivatePostgres
from .harness import (
    assert_equal_to_a_clean_run,
    held,
    ingest,
    query,
    reset_to_ingested,
    wait_for,
    wait_until_settled,
    waiting_stage_backends,
)
from .test_workers import assert_nothing_failed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[tuple[PrivatePostgres, str]]:
    with PrivatePostgres() as server:
        server.create_database("metriflow")
        server.migrate("metriflow")
        yield server, "metriflow"


@pytest.fixture
def private_db(private_postgres) -> Iterator[tuple[PrivatePostgres, str, dict[str, str]]]:
    """The private server's database, its pipeline tables empty."""
    server, name = private_postgres
    conninfo = server.conninfo(name)
    env = {"DATABASE_URL": server.url(name)}
    empty(conninfo)
    yield server, conninfo, env
    empty(conninfo)


def empty(conninfo: str) -> None:
    for (partition,) in query(
        conninfo,
        "SELECT inhrelid::regclass::text FROM pg_inherits "
        "WHERE inhparent IN ('raw_ga'::regclass, 'raw_psi'::regclass)",
    ):
        query(conninfo, f'DROP TABLE "{partition}"')
    query(conninfo, "TRUNCATE site, page, ingest_batch, ingest_reject, pipeline_ledger "
                    "RESTART IDENTITY CASCADE")  # fmt: skip
    reset_to_ingested(conninfo)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgresql_restarted_mid_pipeline_only_delays_the_result(
    dataset, private_db, shared_broker, spawn, mode
):
    server, conninfo, db_env = private_db
    env = {**db_env, "CELERY_BROKER_URL": shared_broker}
    worker = spawn(env, f"pg-{mode}")
    worker.wait_ready()
    with held(conninfo, "agg_daily"):
        ingest(dataset, env)
        wait_for(lambda: waiting_stage_backends(conninfo, "daily"), "the daily stage held")
        marker = query(conninfo, "SELECT xmin::text FROM staged_marker")
        server.restart(mode=mode)  # the holding connection goes with it
    wait_until_settled(conninfo, worker, live=(worker,))
    worker.stop()
    assert_nothing_failed(conninfo, shared_broker)
    after = query(conninfo, "SELECT xmin::text FROM staged_marker")
    if mode == "fast":
        assert after == marker  # a clean shutdown keeps the unlogged tables
    elif after:
        # Crash recovery emptied the unlogged staged tables and their marker, and a
        # staged or page stage that ran after it (the chain's stages below the held
        # one may still be waiting on its window) rebuilt them from raw first
        # (staged_ensure): the marker is a new row.
        assert after != marker
    else:
        # Emptied, and no stage has needed them since: the next one rebuilds them.
        assert query(conninfo, "SELECT count(*) FROM staged_ga") == [(0,)]
        assert query(conninfo, "SELECT staged_ensure()") == [(True,)]
    assert_equal_to_a_clean_run(conninfo, lambda: run_manage("pipeline", "run", env=db_env))
