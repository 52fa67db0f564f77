"""The settings that shape stored data, recorded in the database with the data.

Some settings decide what the stored rows mean rather than how Metriflow runs:
the interval length (``METRIFLOW_INTERVAL_HOURS``: where ``agg_interval``'s
periods start, how reports cut a range) and the histogram's buckets
(``pipeline.catalog.HISTOGRAM``: what a bucket number in every aggregate
histogram stands for). Rows built with one value read with another give wrong
reports without any error. So the values the data was built with are kept in
``pipeline_data_setting`` (sql/schema/0013_data_settings.sql), and every process
compares them with its own:

- ``migrate`` records the configured value of each declared setting that has no
  row yet (:func:`record_at_migrate`, a ``post_migrate`` handler: a fresh
  database, an existing one upgraded to schema 0013, whose data was built with
  the settings it runs with, or a setting declared later). A recorded value is
  never overwritten by ``migrate``: it warns instead.
- A Celery worker (``worker_init``, :func:`refuse_worker_start`) and the API
  (``metriflow/wsgi.py``) refuse to start when a value differs
  (:func:`verify_at_start`); a database that cannot be reached at start is not a
  reason to refuse, it is checked again by every stage window.
- Every time-stage window checks in its own transaction, before its SQL
  (``pipeline.stages.run_window``), with the rows locked ``FOR SHARE``, so that no
  window runs across a :func:`reshape`; ``manage.py pipeline run`` checks first.
- :func:`reshape` (``manage.py pipeline reshape --interval-hours N``) is how the
  data is rebuilt for new values: in one transaction it deletes every
  ``agg_interval`` row, marks every interval key dirty and records the configured
  values; the interval stage then recomputes every interval from ``page_hour`` and
  marks every daily key dirty, and so on up to yearly, so every aggregate level is
  rebuilt, histograms included.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .catalog import HISTOGRAM

logger = logging.getLogger(__name__)

# The interval lengths the interval stage accepts (stage_interval): they divide a day.
INTERVAL_HOURS_CHOICES = (1, 2, 3, 4, 6, 8, 12)
# Seconds a process waits for the database when it checks at start.
START_CONNECT_TIMEOUT = 5

RESHAPE_COMMAND = "manage.py pipeline reshape --interval-hours {interval_hours}"


@dataclass(frozen=True)
class DataSetting:
    """One setting that shapes stored data.

    ``name``: its row in ``pipeline_data_setting``. ``source``: where a process
    takes its value from, as the refusal names it. ``read``: the running value.
    ``restore``: how to configure the stored values again, from every stored value.
    ``before_rebuild``: what a rebuild for a new value needs done first.
    """

    name: str
    source: str
    read: Callable[[], int | float]
    restore: Callable[[dict[str, str]], str]
    before_rebuild: str = ""

    def configured(self) -> str:
        """The running value as stored: ``repr`` of the number (``4``, ``0.0001``, ``1.04``),
        which reads back to the same number."""
        return repr(self.read())


def _restore_interval(stored: dict[str, str]) -> str:
    value = stored["interval_hours"]
    return f"METRIFLOW_INTERVAL_HOURS={value} where the workers and the API read it"


_MIGRATE_HISTOGRAM = "run `manage.py migrate` (the SQL hist_bucket / hist_value follow it)"


def _restore_histogram(stored: dict[str, str]) -> str:
    return (
        f"HISTOGRAM = Histogram(base={stored.get('histogram_base', '?')}, "
        f"growth={stored.get('histogram_growth', '?')}) in pipeline/catalog.py, then "
        f"{_MIGRATE_HISTOGRAM}"
    )


DATA_SETTINGS: tuple[DataSetting, ...] = (
    DataSetting(
        "interval_hours",
        "METRIFLOW_INTERVAL_HOURS",
        lambda: settings.METRIFLOW_INTERVAL_HOURS,
        _restore_interval,
    ),
    DataSetting("histogram_base", "pipeline.catalog.HISTOGRAM.base", lambda: HISTOGRAM.base,
                _restore_histogram, _MIGRATE_HISTOGRAM),
    DataSetting("histogram_growth", "pipeline.catalog.HISTOGRAM.growth",
                lambda: HISTOGRAM.growth, _restore_histogram, _MIGRATE_HISTOGRAM),
)  # fmt: skip


def configured() -> dict[str, str]:
    """Each declared setting's running value, as text."""
    return {setting.name: setting.configured() for setting in DATA_SETTINGS}


class DataSettingsMismatch(ImproperlyConfigured):
    """The data in the database was built with settings this process does not have."""


@dataclass(frozen=True)
class Mismatch:
    setting: DataSetting
    stored: str | None  # None: not recorded
    configured: str


def mismatches(stored: dict[str, str]) -> list[Mismatch]:
    """The declared settings whose stored value is missing or differs from the running one."""
    found = []
    for setting in DATA_SETTINGS:
        value = setting.configured()
        if stored.get(setting.name) != value:
            found.append(Mismatch(setting, stored.get(setting.name), value))
    return found


def describe(found: list[Mismatch], stored: dict[str, str]) -> str:
    """The refusal: each mismatch with both values, then how to go on."""
    lines = ["the data in the database was built with other settings than this process has:"]
    for item in found:
        was = "not recorded" if item.stored is None else f"built with {item.stored}"
        lines.append(f"  {item.setting.name}: {was}, configured {item.configured} "
                     f"({item.setting.source})")  # fmt: skip
    if any(item.stored is None for item in found):
        lines.append(
            "A setting not recorded: run `manage.py migrate`, which records the configured value."
        )
    recorded = [item for item in found if item.stored is not None]
    if recorded:
        restores = list(dict.fromkeys(item.setting.restore(stored) for item in recorded))
        command = RESHAPE_COMMAND.format(interval_hours=configured()["interval_hours"])
        steps = dict.fromkeys(item.setting.before_rebuild for item in recorded if
                              item.setting.before_rebuild)  # fmt: skip
        first = "".join(f"{step}, " for step in steps)
        lines.append(f"Either configure the values the data was built with again: "
                     f"{'; '.join(restores)}.")  # fmt: skip
        lines.append(
            f"Or rebuild the aggregates with the configured values: {first}stop the workers, "
            f"run `{command}` with these settings (it rebuilds every aggregate level from "
            "page_hour and records them), then start the workers and the API with the same "
            "settings."
        )
    return "\n".join(lines)


_READ = {
    None: "SELECT name, value FROM pipeline_data_setting",
    "share": "SELECT name, value FROM pipeline_data_setting ORDER BY name FOR SHARE",
    "update": "SELECT name, value FROM pipeline_data_setting ORDER BY name FOR UPDATE",
}


def stored(conn: psycopg.Connection, *, lock: str | None = None) -> dict[str, str] | None:
    """The recorded values by name; None when the table does not exist (a database not
    migrated to schema 0013). ``lock``: the rows read ``FOR SHARE`` (``share``) or
    ``FOR UPDATE`` (``update``)."""
    if conn.execute("SELECT to_regclass('pipeline_data_setting')").fetchone()[0] is None:
        return None
    return dict(conn.execute(_READ[lock]).fetchall())


def verify(conn: psycopg.Connection | None = None) -> None:
    """Raises :class:`DataSettingsMismatch` unless every declared setting is recorded with
    the running value. On ``conn`` (a stage's transaction) the rows are read ``FOR SHARE``:
    a :func:`reshape` waits for the transaction, and one that committed first is seen.
    Without ``conn``, on a connection of its own."""
    if conn is None:
        with _connect() as own:
            return verify(own)
    values = stored(conn, lock="share")
    if values is None:
        raise DataSettingsMismatch(
            "the database has no pipeline_data_setting table: run `manage.py migrate`"
        )
    found = mismatches(values)
    if found:
        raise DataSettingsMismatch(describe(found, values))


def _connect(**kwargs) -> psycopg.Connection:
    from .ingest.service import conninfo

    return psycopg.connect(conninfo(), **kwargs)


def verify_at_start(process: str) -> bool:
    """The check of a process at its start (``process`` names it in the log): raises
    :class:`DataSettingsMismatch` on a mismatch. A database that cannot be reached, or is
    not migrated yet, does not stop the start: that is logged and False returned (every
    stage window checks again). True when checked."""
    try:
        with _connect(connect_timeout=START_CONNECT_TIMEOUT, autocommit=True) as conn:
            values = stored(conn)
    except psycopg.OperationalError as exc:
        logger.warning("%s: the settings that shape data were not checked, the database is "
                       "unreachable: %s", process, str(exc).strip())  # fmt: skip
        return False
    if values is None:
        logger.warning("%s: the settings that shape data were not checked, the database is "
                       "not migrated (no pipeline_data_setting)", process)  # fmt: skip
        return False
    found = mismatches(values)
    if found:
        raise DataSettingsMismatch(f"{process} refuses to start: {describe(found, values)}")
    return True


def refuse_worker_start(**_) -> None:
    """``worker_init``: a worker stops, exit status 1, before it consumes a message when the
    data was built with other settings. (Celery logs and ignores an exception raised by a
    signal handler, so the refusal is logged and the process exits.)"""
    try:
        verify_at_start("the Celery worker")
    except DataSettingsMismatch as exc:
        logger.critical("%s", exc)
        raise SystemExit(1) from exc


def record_at_migrate(*, using: str = "default", verbosity: int = 1, stdout=None, **_) -> None:
    """``post_migrate`` of the pipeline app: records the running value of each declared
    setting that has no row (nothing while the table does not exist, e.g. migrating back),
    and warns about a recorded value that differs.

    A handler rather than a data migration: it runs at every ``migrate`` (the first, on a
    database built before schema 0013, after a migration back and forth, and for a setting
    declared later), from the settings that ``migrate`` runs with, while a migration is
    frozen history that runs once."""
    from django.db import connections

    with connections[using].cursor() as cursor:
        cursor.execute("SELECT to_regclass('pipeline_data_setting') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return
        values = configured()
        cursor.execute(
            "INSERT INTO pipeline_data_setting (name, value) "
            "SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT (name) DO NOTHING "
            "RETURNING name, value",
            [list(values), list(values.values())],
        )
        recorded = cursor.fetchall()
        cursor.execute("SELECT name, value FROM pipeline_data_setting")
        values_stored = dict(cursor.fetchall())
    out = stdout or sys.stdout
    if verbosity >= 1 and recorded:
        listed = ", ".join(f"{name}={value}" for name, value in sorted(recorded))
        out.write(f"  Recorded the settings that shape data: {listed}\n")
    found = mismatches(values_stored)
    if verbosity >= 1 and found:
        out.write(f"  Warning: {describe(found, values_stored)}\n")


@dataclass(frozen=True)
class Reshaped:
    previous: dict[str, str]  # the values recorded before
    recorded: dict[str, str]  # the values recorded now (the configured ones)
    deleted: int  # agg_interval rows deleted
    marked: int  # interval keys marked dirty


def reshape(interval_hours: int) -> Reshaped:
    """Rebuilds the aggregates for the configured settings, in one transaction: every
    ``agg_interval`` row deleted, every interval key of ``page_hour`` marked dirty
    (``mark_window_dirty``, the whole time range) and every declared setting recorded with
    its running value. The next runs of the stages (``pipeline run``, or the workers'
    chain through the sweep) recompute every interval, then every later level.

    ``interval_hours`` must be the configured ``METRIFLOW_INTERVAL_HOURS``: the workers and
    the API must be configured first, and the recompute runs with that value. Windows that
    run meanwhile are waited for (they hold the settings' rows ``FOR SHARE``)."""
    if interval_hours not in INTERVAL_HOURS_CHOICES:
        raise ValueError(
            f"--interval-hours {interval_hours} does not divide a day into equal intervals: "
            f"one of {', '.join(map(str, INTERVAL_HOURS_CHOICES))}"
        )
    if interval_hours != settings.METRIFLOW_INTERVAL_HOURS:
        raise ValueError(
            f"--interval-hours {interval_hours} is not the configured METRIFLOW_INTERVAL_HOURS "
            f"({settings.METRIFLOW_INTERVAL_HOURS}): set METRIFLOW_INTERVAL_HOURS="
            f"{interval_hours} where the workers, the API and this command read it (.env), "
            "then run this again"
        )
    from . import dataversion, stages

    values = configured()
    with stages.connect() as conn, conn.transaction():
        previous = stored(conn, lock="update")
        if previous is None:
            raise DataSettingsMismatch(
                "the database has no pipeline_data_setting table: run `manage.py migrate`"
            )
        deleted = conn.execute("DELETE FROM agg_interval").rowcount
        marked = conn.execute(
            "SELECT mark_window_dirty('interval', '-infinity', 'infinity')"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO pipeline_data_setting AS s (name, value) "
            "SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT (name) DO UPDATE "
            "SET value = EXCLUDED.value, recorded_at = now() WHERE s.value <> EXCLUDED.value",
            (list(values), list(values.values())),
        )
    dataversion.bump()  # reports cached over the deleted intervals are not served again
    logger.info("reshaped: %s -> %s, %s agg_interval rows deleted, %s interval keys marked",
                previous, values, deleted, marked)  # fmt: skip
    return Reshaped(previous, values, deleted, marked)
