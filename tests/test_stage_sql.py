"""The SQL each stage executes, per stage and path, as snapshot files for review.

The stage procedures (sql/functions/stages.sql) call statements generated from the
catalog (pipeline/stage_sql.py, stored as functions at migrate), so the statements
they run are not all in one source file. This test runs every stage along each of its
paths through ``run_staged`` / ``run_window`` over a small generated data set,
records every statement the stage's database session executes with PostgreSQL's
auto_explain (``tests/statements.py``),
and compares them with ``tests/snapshots/stage_sql/<stage>-<path>.sql``: a change to
the SQL a stage runs shows in review as a change of those files.

Paths: the staged stage's ``first-load`` (an empty staged table and a batch without a
repeated key: the fast path) and ``dedup`` (a first batch that repeats a key, then a
later batch over keys staged already: the general path); each time stage's
``first-load`` (an empty window), ``upsert`` (a window that holds rows, its keys marked
dirty again) and ``late`` (late records into windows that hold rows).

A file holds, for each run of the path (a batch, a window), the statements of the
stage procedure in the order they finished (a statement that runs others, such as the
stage's own call, comes after them), each statement's text as the server executed it
with trailing spaces stripped and blank lines collapsed, consecutive repeats of one
statement written once with their count. The ledger's statements around a run are left
out. Plans are not recorded (they change with statistics), nor are the statements
auto_explain cannot see (utility statements such as LOCK or ALTER TABLE, and PL/pgSQL's
simple expressions; see tests/statements.py).

When the stages' SQL changes on purpose, rewrite the files and review their diff:

    METRIFLOW_UPDATE_SQL_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_stage_sql.py

Without it, the test fails with a unified diff of every file that differs from what ran.
The files are recorded with the default settings: the interval stage's SQL carries
``METRIFLOW_INTERVAL_HOURS`` (4).
"""

from __future__ import annotations

import difflib
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from pipeline import stages

from .conftest import REPO_ROOT, reset_pipeline_tables
from .contract import generate
from .statements import StatementLog, recording_stage_sessions
from .test_stages import ingest_in_order, query

pytestmark = pytest.mark.usefixtures("pipeline_db")

SNAPSHOTS = REPO_ROOT / "tests" / "snapshots" / "stage_sql"
UPDATE = os.environ.get("METRIFLOW_UPDATE_SQL_SNAPSHOTS") == "1"
PATHS = {
    "staged": ("first-load", "dedup"),
    **dict.fromkeys(stages.TIME_STAGES, ("first-load", "upsert", "late")),
}
DATA = ("--records", "480", "--pages", "8", "--start", "2025-01-06T00:00:00Z")
EVERYTHING = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
# The rows a time stage's window holds, by its bounds.
WINDOW_ROWS = {
    "page": "SELECT count(*) FROM page_hour WHERE hour >= %s AND hour < %s",
    "interval": "SELECT count(*) FROM agg_interval WHERE period_start >= %s AND period_start < %s",
    "daily": "SELECT count(*) FROM agg_daily WHERE period_start >= %s AND period_start < %s",
    "monthly": "SELECT count(*) FROM agg_monthly WHERE period_start >= %s AND period_start < %s",
    "yearly": "SELECT count(*) FROM agg_yearly WHERE period_start >= %s AND period_start < %s",
}
# Per source: (records of a batch, its distinct natural keys), and the rows staged.
BATCH_KEYS = {
    "ga": "SELECT count(*), count(DISTINCT (page_id, hour)) FROM raw_ga WHERE batch_id = %s",
    "psi": "SELECT count(*), count(DISTINCT (page_id, date_trunc('hour', measured_at, 'UTC'), "
    "strategy)) FROM raw_psi WHERE batch_id = %s",
}
STAGED_ROWS = {"ga": "SELECT count(*) FROM staged_ga", "psi": "SELECT count(*) FROM staged_psi"}


@dataclass
class Run:
    label: str
    statements: list[str]


class Recorder:
    """Runs stages through ``pipeline.stages`` and keeps, per (stage, path), the
    statements each run's stage procedure executed."""

    def __init__(self, log: StatementLog):
        self.log = log
        self.runs: dict[tuple[str, str], list[Run]] = defaultdict(list)

    def _stage_statements(self, stage: str) -> list[str]:
        """The statements run under the client statement calling ``stage_<stage>(...)``:
        the stage procedure and what it executed, without the ledger's statements."""
        call = rf'\b"?stage_{stage}"?\s*\('
        calls = [c for c in self.log.clients() if re.search(call, c)]
        assert len(calls) == 1, (stage, self.log.clients())
        statements = self.log.run_by(call)
        assert len(statements) > 1 and re.search(call, statements[-1]), statements
        return statements  # what the procedure ran, then its call

    def batches(self, path: str, note: str, *, staged_empty: bool, repeats_a_key: bool):
        for batch_id in stages.pending_batches():
            [(source,)] = query("SELECT source FROM ingest_batch WHERE id = %s", [batch_id])
            [(records, keys)] = query(BATCH_KEYS[source], [batch_id])
            assert (records > keys) == repeats_a_key, (source, records, keys)
            assert (query(STAGED_ROWS[source]) == [(0,)]) == staged_empty, source
            self.log.clear()
            run = stages.run_staged(batch_id)
            assert run.status == "done", run
            self.runs[("staged", path)].append(
                Run(f"{source} batch, {note}", self._stage_statements("staged"))
            )

    def windows(self, path: str) -> None:
        """Every dirty window of every time stage, stage after stage. On the ``upsert``
        path each stage's keys are first marked dirty again, so that each stage
        recomputes them in a window that holds rows (the stage before hands it deltas,
        which the recomputed keys cover)."""
        for stage in stages.TIME_STAGES:
            if path == "upsert":
                stages.mark_window_dirty(stage, *EVERYTHING)
            starts = stages.dirty_windows(stage)
            assert starts, stage
            for start in starts:
                end = stages._window_end(start, stages.WINDOW_UNIT[stage])
                [(rows,)] = query(WINDOW_ROWS[stage], [start, end])
                assert (rows == 0) == (path == "first-load"), (stage, path, rows)
                self.log.clear()
                run = stages.run_window(stage, start)
                assert run.status == "done", run
                self.runs[(stage, path)].append(
                    Run(f"window {run.window}", self._stage_statements(stage))
                )


def normalised(text: str) -> str:
    """A statement's text with trailing spaces stripped and blank lines collapsed to one
    (none at either end); otherwise as executed."""
    text = re.sub(r"\n\s*\n", "\n\n", "\n".join(line.rstrip() for line in text.splitlines()))
    return text.strip("\n")


def terminated(text: str) -> str:
    """The statement with a ``;`` after it, on a line of its own after a line comment."""
    if "--" in text.rsplit("\n", 1)[-1]:
        return f"{text}\n;"
    return text if text.endswith(";") else f"{text};"


def snapshot_text(stage: str, path: str, runs: list[Run]) -> str:
    lines = [
        f"-- The SQL the {stage} stage executes on its {path} path, recorded by",
        "-- tests/test_stage_sql.py (which says how); rewrite with",
        "-- METRIFLOW_UPDATE_SQL_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_stage_sql.py",
        "-- Statements in the order they finished (a call after what it ran); utility",
        "-- statements (LOCK, TRUNCATE, ANALYZE, CREATE/ALTER TABLE) are not recorded.",
    ]
    for number, run in enumerate(runs, 1):
        lines += ["", f"-- ======== run {number} of {len(runs)}: {run.label}"]
        texts = [normalised(text) for text in run.statements]
        groups: list[list] = []  # [text, consecutive runs]
        for text in texts:
            if groups and groups[-1][0] == text:
                groups[-1][1] += 1
            else:
                groups.append([text, 1])
        for index, (text, count) in enumerate(groups, 1):
            repeat = f" (executed {count} times in a row)" if count > 1 else ""
            lines += ["", f"-- ---- statement {index}{repeat}", terminated(text)]
    return "\n".join(lines) + "\n"


PROBE = """CREATE FUNCTION pg_temp.probe(p oid) RETURNS integer LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM FROM pg_class WHERE oid = p;
    EXECUTE format('SELECT %s FROM pg_class WHERE oid = $1', 'relname') USING p;
    RETURN 1;
END
$fn$"""


def test_a_statement_is_recorded_with_the_client_statement_it_ran_under():
    with recording_stage_sessions() as log, stages.connect() as conn:  # a transaction block
        conn.execute(PROBE)
        conn.execute("SELECT %s::integer", (1,))  # logged as the next statement starts
        conn.execute("SELECT pg_temp.probe(%s::regclass)", ("pg_class",))
        conn.execute("SELECT %(a)s::integer + %(a)s::integer, '%%'", {"a": 2})
        conn.commit()
    assert [(s.client, s.text) for s in log.statements] == [
        ("SELECT %s::integer", "SELECT $1::integer"),
        ("SELECT pg_temp.probe(%s::regclass)", "SELECT FROM pg_class WHERE oid = p"),
        ("SELECT pg_temp.probe(%s::regclass)", "SELECT relname FROM pg_class WHERE oid = $1"),
        ("SELECT pg_temp.probe(%s::regclass)", "SELECT pg_temp.probe($1::regclass)"),
        ("SELECT %(a)s::integer + %(a)s::integer, '%%'", "SELECT $1::integer + $1::integer, '%'"),
    ]
    assert log.run_by(r"\bprobe\(") == [s.text for s in log.statements[1:4]]


def test_the_sql_each_stage_executes_matches_its_snapshot(tmp_path):
    repeating, clean = tmp_path / "repeating", tmp_path / "clean"
    generate(repeating, *DATA, "--duplicates", "0.05")
    generate(clean, *DATA, "--late", "0.1")
    with recording_stage_sessions() as log:
        recorder = Recorder(log)
        # A first batch that repeats a key: the fast path fails and falls back.
        ingest_in_order([repeating / "ga.json", repeating / "psi.json"])
        recorder.batches(
            "dedup", "repeating a key, into an empty staged table",
            staged_empty=True, repeats_a_key=True,
        )  # fmt: skip
        reset_pipeline_tables()
        ingest_in_order([clean / "ga.json", clean / "psi.json"])
        recorder.batches(
            "first-load", "no key repeated, into an empty staged table",
            staged_empty=True, repeats_a_key=False,
        )  # fmt: skip
        recorder.windows("first-load")
        recorder.windows("upsert")
        ingest_in_order([clean / "ga_late.json", clean / "psi_late.json"])
        recorder.batches(
            "dedup", "late records, over keys staged already",
            staged_empty=False, repeats_a_key=False,
        )  # fmt: skip
        recorder.windows("late")

    expected = {
        SNAPSHOTS / f"{stage}-{path}.sql": snapshot_text(stage, path, recorder.runs[(stage, path)])
        for stage, paths in PATHS.items()
        for path in paths
    }
    assert set(recorder.runs) == {(stage, path) for stage, paths in PATHS.items() for path in paths}
    stale = sorted(set(SNAPSHOTS.glob("*.sql")) - set(expected))
    if UPDATE:
        SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        for path in stale:
            path.unlink()
        for path, text in expected.items():
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
        return
    problems = [f"{path.name}: no longer recorded (a stage or path was removed)" for path in stale]
    for path, text in expected.items():
        if not path.exists():
            problems.append(f"{path.name}: not recorded yet")
            continue
        recorded = path.read_text()
        if recorded != text:
            problems.append(
                "".join(
                    difflib.unified_diff(
                        recorded.splitlines(keepends=True),
                        text.splitlines(keepends=True),
                        fromfile=str(path.relative_to(REPO_ROOT)),
                        tofile="executed",
                    )
                )
            )
    if problems:
        pytest.fail(
            "the SQL the stages execute differs from tests/snapshots/stage_sql/ (if on purpose, "
            "rewrite the files with METRIFLOW_UPDATE_SQL_SNAPSHOTS=1 and review their diff):\n\n"
            + "\n".join(problems),
            pytrace=False,
        )


def test_no_function_of_the_schema_assembles_sql_as_text():
    """The stage SQL is plain SQL (docs/architecture.md): the statements whose column
    lists come from the catalog are generated functions of one static statement each,
    which the database holds as pipeline/stage_sql.py composes them."""
    from pipeline import stage_sql

    # The stage functions (ingestion's partition DDL names its partitions at run time).
    source = (REPO_ROOT / "sql" / "functions" / "stages.sql").read_text()
    names = set(re.findall(r"CREATE OR REPLACE FUNCTION (\w+)\(", source))
    assert {"stage_page", "stage_interval", "_stage_rollup", "stage_daily"} <= names
    dynamic = query(
        "SELECT p.proname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
        "WHERE p.pronamespace = 'public'::regnamespace AND l.lanname IN ('sql', 'plpgsql') "
        r"AND p.proname = ANY(%s) AND p.prosrc ~* '\mEXECUTE\M'",
        [sorted(names)],
    )
    assert dynamic == []
    found = query("SELECT count(DISTINCT proname) FROM pg_proc WHERE proname = ANY(%s)",
                  [sorted(names)])  # fmt: skip
    assert found == [(len(names),)]  # each of them is in the database
    for statement in stage_sql.statements():
        [(body,)] = query(
            "SELECT prosrc FROM pg_proc "
            "WHERE proname = %s AND pronamespace = 'public'::regnamespace",
            [statement.name],
        )
        assert body == statement.body, statement.name
        assert "EXECUTE" not in body
    # One function per statement, the stages' statements among them.
    generated = {s.name for s in stage_sql.statements()}
    assert len(generated) == len(stage_sql.statements())
    assert {"_interval_upsert", "_daily_first_load", "_agg_yearly_add_deltas",
            "_site_daily_add_deltas", "_page_deltas"} <= generated  # fmt: skip
