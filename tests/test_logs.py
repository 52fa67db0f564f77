"""Structured logs: every line a command, a worker or the API logs is one JSON object
(``METRIFLOW_LOG_FORMAT=json``), each stage run is one ``stage_run`` line equal to its
``pipeline_run`` row, each ingested file one ``ingest_file`` line equal to its
``ingest_batch`` row; the console format is readable lines, not JSON.

The commands, the worker and gunicorn run as a user runs them (subprocesses); what they
logged is compared with the tables, read with SQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import datetime

import environ
import pytest
from django.core.exceptions import ImproperlyConfigured

from metriflow.celery import STAGES
from metriflow.settings.logs import log_format

from .conftest import REPO_ROOT, run_manage
from .processes import gunicorn, stop
from .rabbitmq import fresh_vhost, queue_state
from .test_dead_letters import wait_for
from .test_stages import FAULTS, query

pytestmark = pytest.mark.usefixtures("pipeline_db")

JSON_LOGS = {"METRIFLOW_LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}


def json_lines(text: str) -> list[dict]:
    """Every line of ``text`` as a JSON object; fails naming the first line that is not."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line[:300]!r}") from None
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= set(record), line
        records.append(record)
    return records


def command_output(text: str) -> tuple[list[dict], list[str]]:
    """A command's stderr: its log records (every line that is one JSON object) and the
    lines the command writes for its user (its ``CommandError``), in order."""
    records, own = [], []
    for line in text.splitlines():
        if line.startswith("{"):
            records.extend(json_lines(line))
        else:
            own.append(line)
    return records, own


def events(records: list[dict], name: str) -> list[dict]:
    return [r for r in records if r.get("event") == name]


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# ------------------------------------------------------------------ expectations (SQL)


def batch_rows() -> dict[int, dict]:
    rows = query(
        "SELECT id, source, file_name, file_layout, file_bytes, status, records_accepted, "
        "records_rejected, checksum FROM ingest_batch ORDER BY id"
    )
    keys = ("id", "source", "file_name", "format", "bytes", "status", "accepted", "rejected",
            "checksum")  # fmt: skip
    return {row[0]: dict(zip(keys, row, strict=True)) for row in rows}


def assert_ingest_lines_match_batches(lines: list[dict], batches: dict[int, dict]) -> None:
    """Each line's counts are its batch row's; a skipped file's line names the batch with
    the same content, and its own (skipped) row holds nothing."""
    for line in lines:
        if line["batch_id"] is None:  # not read at all: no batch
            assert line["status"] == "failed" and line["error"], line
            continue
        batch = batches[line["batch_id"]]
        fields = ("source", "format", "bytes")
        assert {k: line[k] for k in fields} == {k: batch[k] for k in fields}, line
        if line["status"] == "skipped":
            [skip] = [b for b in batches.values() if b["status"] == "skipped"
                      and b["checksum"] == batch["checksum"] and b["id"] > batch["id"]]  # fmt: skip
            assert (skip["accepted"], skip["rejected"]) == (line["accepted"], line["rejected"])
            assert (line["accepted"], line["rejected"]) == (0, 0)
        else:
            counts = ("status", "accepted", "rejected")
            assert {k: line[k] for k in counts} == {k: batch[k] for k in counts}, line


def run_rows() -> list[dict]:
    """Every pipeline_run row with its window, as a stage_run line would say it."""
    rows = query(
        "SELECT l.stage, l.batch_id, l.window_start, l.window_end, r.status, r.rows_in, "
        "r.rows_out, r.task_id, r.worker, r.duration_ms, r.error "
        "FROM pipeline_run r JOIN pipeline_ledger l ON l.id = r.ledger_id ORDER BY r.id"
    )
    return [
        {"stage": stage, "batch_id": batch_id, "window_start": iso(start),
         "window_end": iso(end), "outcome": status, "rows_in": rows_in, "rows_out": rows_out,
         "task_id": task_id, "worker": worker, "duration_ms": millis, "error": error}
        for (stage, batch_id, start, end, status, rows_in, rows_out, task_id, worker, millis,
             error) in rows
    ]  # fmt: skip


RUN_FIELDS = ("stage", "batch_id", "window_start", "window_end", "outcome", "rows_in",
              "rows_out", "task_id", "worker", "error")  # fmt: skip


def assert_stage_lines_match_runs(lines: list[dict]) -> list[dict]:
    """The done and failed lines are the pipeline_run rows, one each (a busy run has no
    row); each line's seconds covers its row's duration. Returns the rows."""
    runs = run_rows()
    recorded = [line for line in lines if line["outcome"] in ("done", "failed")]
    assert all(line["outcome"] == "busy" for line in lines if line not in recorded)

    def key(item: dict) -> tuple:
        return tuple(str(item[f]) for f in RUN_FIELDS)

    assert sorted(map(key, recorded)) == sorted(map(key, runs))
    by_key = {key(run): run for run in runs}
    for line in recorded:
        assert line["seconds"] * 1000 >= by_key[key(line)]["duration_ms"], line
        label = f"batch {line['batch_id']}" if line["stage"] == "staged" else line["window"]
        assert line["window"] == label
        if line["stage"] != "staged":
            start, end = line["window_start"][:10], line["window_end"][:10]
            assert line["window"] == f"{start}..{end}", line
    return runs


# ------------------------------------------------------------------ commands


def test_commands_log_one_json_line_per_file_and_per_stage_run(tmp_path, test_database_env):
    from .contract import generate

    generate(tmp_path, "--records", "600", "--pages", "6", "--start", "2024-12-29T20:00:00Z",
             *FAULTS)  # fmt: skip
    ga, psi, missing = tmp_path / "ga.json", tmp_path / "psi.json", tmp_path / "none.json"
    env = {**test_database_env, **JSON_LOGS}

    first = run_manage("ingest", "--no-progress", str(ga), str(psi), env=env)
    again = run_manage("ingest", "--no-progress", str(ga), str(missing), env=env, check=False)
    assert again.returncode == 1  # the missing file
    (records, own), (records_again, own_again) = map(command_output, (first.stderr, again.stderr))
    assert (own, own_again) == ([], [f"CommandError: {missing}: no such file"])
    logged = [records, records_again]
    lines = [events(records, "ingest_file") for records in logged]
    # One line per file, each naming its file; the user's lines stay on stdout. The
    # files are read in parallel: each line comes when its file is done, in any order.
    assert [sorted(line["path"] for line in group) for group in lines] == [
        sorted([str(ga), str(psi)]), sorted([str(ga), str(missing)])
    ]  # fmt: skip
    assert {line["path"]: line["status"] for line in lines[1]} == {
        str(ga): "skipped", str(missing): "failed"
    }  # fmt: skip
    assert sorted(line["message"] for line in lines[0]) == sorted(first.stdout.splitlines())
    batches = batch_rows()
    assert sorted(b["status"] for b in batches.values()) == ["loaded", "loaded", "skipped"]
    assert_ingest_lines_match_batches(lines[0] + lines[1], batches)
    assert all(line["rejected"] > 0 for line in lines[0])  # the malformed records

    # The daily window of January 2025 fails (a constraint of this test); the rest runs.
    query("ALTER TABLE agg_daily ADD CONSTRAINT logs_test_no_2025 "
          "CHECK (period_start < '2025-01-01') NOT VALID")  # fmt: skip
    try:
        run = run_manage("pipeline", "run", env=env, check=False)
    finally:
        query("ALTER TABLE agg_daily DROP CONSTRAINT logs_test_no_2025")
    assert run.returncode == 1, run.stderr[-2000:]
    records, own = command_output(run.stderr)
    # The command's own lines for its user: the failed window (its error may hold
    # several lines), then the verdict.
    assert own[0].startswith("failed: daily 2025-01-01..2025-02-01: CheckViolation"), own
    assert own[-1].startswith(
        "CommandError: 1 window(s) failed, the others are done: daily 2025-01-01..2025-02-01 "
    ), own
    stage_lines = events(records, "stage_run")
    runs = assert_stage_lines_match_runs(stage_lines)
    assert {run["stage"] for run in runs} == set(STAGES) - {"raw"}
    [failed] = [line for line in stage_lines if line["outcome"] == "failed"]
    assert (failed["stage"], failed["window"], failed["level"]) == (
        "daily", "2025-01-01..2025-02-01", "ERROR",
    )  # fmt: skip
    assert "logs_test_no_2025" in failed["error"] and failed["rows_in"] is None
    # The traceback of the failure is one JSON record too, its lines inside it.
    assert any("Traceback" in r.get("exc_info", "") for r in records)


def test_console_format_is_readable_lines(tmp_path, test_database_env):
    from .contract import generate

    generate(tmp_path, "--records", "200", "--pages", "4", "--sources", "ga")
    env = {**test_database_env, "METRIFLOW_LOG_FORMAT": "console", "LOG_LEVEL": "INFO"}
    ingest = run_manage("ingest", "--no-progress", str(tmp_path / "ga.json"), env=env)
    run = run_manage("pipeline", "run", env=env)
    lines = ingest.stderr.splitlines() + run.stderr.splitlines()
    [batch_id] = [row[0] for row in query("SELECT id FROM ingest_batch")]
    assert lines, "nothing logged"
    for line in lines:
        with pytest.raises(ValueError):
            json.loads(line)
    [file_line] = [line for line in lines if "event=ingest_file" in line]
    assert " INFO metriflow.pipeline.ingest " in file_line
    assert f"batch_id={batch_id} status=loaded accepted=200 rejected=0" in file_line
    stage_lines = [line for line in lines if "event=stage_run" in line]
    assert len(stage_lines) == len(query("SELECT id FROM pipeline_run"))
    assert any(f"stage=staged window='batch {batch_id}'" in line for line in stage_lines)
    assert all("outcome=done" in line for line in stage_lines)


def test_the_format_follows_debug_unless_set(monkeypatch):
    env = environ.Env()
    monkeypatch.delenv("METRIFLOW_LOG_FORMAT", raising=False)
    assert (log_format(env, debug=True), log_format(env, debug=False)) == ("console", "json")
    monkeypatch.setenv("METRIFLOW_LOG_FORMAT", "json")
    assert log_format(env, debug=True) == "json"
    monkeypatch.setenv("METRIFLOW_LOG_FORMAT", "xml")
    with pytest.raises(ImproperlyConfigured, match="must be json or console, not 'xml'"):
        log_format(env, debug=False)


# ------------------------------------------------------------------ the API


def test_the_api_logs_json_records(tmp_path, test_database_env):
    """The API under gunicorn: every line is JSON, Django's records and gunicorn's own
    (start, stop and the access log) alike."""
    path = tmp_path / "api.log"
    env = {**test_database_env, **JSON_LOGS}
    with (
        open(path, "wb") as log,
        gunicorn(env, workers=1, log=log) as base,
        pytest.raises(urllib.error.HTTPError) as refused,
    ):
        urllib.request.urlopen(f"{base}/api/health/ready", timeout=30)
    assert refused.value.code == 503  # no worker runs for this test's API
    records = json_lines(path.read_text())
    loggers = {r["logger"] for r in records}
    assert {"gunicorn.error", "gunicorn.access"} <= loggers, loggers
    access = [r["message"] for r in records if r["logger"] == "gunicorn.access"]
    assert any('"GET /api/health/ready HTTP/1.1" 503' in line for line in access), access
    unavailable = [r for r in records if r["logger"] == "django.request"]
    assert [(r["level"], r["message"], r["status_code"]) for r in unavailable] == [
        ("ERROR", "Service Unavailable: /api/health/ready", 503)
    ]


# ------------------------------------------------------------------ a worker


def start_logging_worker(env: dict, out, err) -> subprocess.Popen:
    """One worker on every queue, as the Makefile's ``worker-all`` starts one."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "metriflow", "worker", "-Q", ",".join(STAGES),
         "-n", f"logs-{os.getpid()}@%h", "--concurrency", "2", "--without-mingle",
         "--without-gossip", "--loglevel", "INFO"],
        cwd=REPO_ROOT, env={**os.environ, **env}, stdout=out, stderr=err,
    )  # fmt: skip


def settled() -> bool:
    [(open_windows, dirty, loading)] = query(
        "SELECT (SELECT count(*) FROM pipeline_ledger WHERE status <> 'done'), "
        "(SELECT count(*) FROM pipeline_dirty), "
        "(SELECT count(*) FROM ingest_batch WHERE status = 'loading')"
    )
    return (open_windows, dirty, loading) == (0, 0, 0)


def test_a_worker_logs_only_json_one_line_per_task_run(tmp_path, test_database_env):
    from .contract import generate

    generate(tmp_path, "--records", "400", "--pages", "5", "--start", "2024-12-30T12:00:00Z",
             *FAULTS)  # fmt: skip
    files = [str(tmp_path / "ga.json"), str(tmp_path / "psi.json")]
    with fresh_vhost() as url:
        env = {**test_database_env, **JSON_LOGS, "CELERY_BROKER_URL": url,
               "METRIFLOW_PIPELINE_TRIGGER": "true"}  # fmt: skip
        with open(tmp_path / "out.log", "wb") as out, open(tmp_path / "err.log", "wb") as err:
            worker = start_logging_worker(env, out, err)
            try:
                wait_for(lambda: all((queue_state(url, q) or (0, 0))[1] >= 1 for q in STAGES),
                         "the worker on every queue")  # fmt: skip
                queued = run_manage("ingest", "--async", *files, env=env)
                assert queued.stdout.count("queued on 'raw'") == 2
                wait_for(lambda: len(query("SELECT id FROM ingest_batch")) == 2 and settled(),
                         "the chain to finish", timeout=180)  # fmt: skip
            finally:
                stop(worker)
    assert worker.returncode == 0
    stdout = (tmp_path / "out.log").read_text()
    records = json_lines(stdout) + json_lines((tmp_path / "err.log").read_text())
    assert any(r["message"].endswith(" ready.") for r in records)  # Celery's own lines too

    file_lines = events(records, "ingest_file")
    assert sorted(line["path"] for line in file_lines) == sorted(files)
    assert_ingest_lines_match_batches(file_lines, batch_rows())

    stage_lines = events(records, "stage_run")
    runs = assert_stage_lines_match_runs(stage_lines)
    assert {run["stage"] for run in runs} == set(STAGES) - {"raw"}
    assert all(run["task_id"] for run in runs)  # each ran as a Celery task
    assert all(line["outcome"] != "failed" for line in stage_lines)


def test_a_worker_given_a_logfile_writes_its_json_records_there(tmp_path):
    """``--logfile`` (what ``--detach`` needs, as ``scripts/processes.sh`` starts them)."""
    logfile = tmp_path / "worker.log"
    with fresh_vhost() as url, open(tmp_path / "streams", "wb") as streams:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "metriflow", "worker", "-Q", "yearly",
             "-n", f"logfile-{os.getpid()}@%h", "--concurrency", "1", "--without-mingle",
             "--without-gossip", "--logfile", str(logfile)],
            cwd=REPO_ROOT, env={**os.environ, **JSON_LOGS, "CELERY_BROKER_URL": url},
            stdout=streams, stderr=streams,
        )  # fmt: skip
        try:
            wait_for(lambda: (queue_state(url, "yearly") or (0, 0))[1] >= 1, "the worker")
            wait_for(lambda: logfile.exists() and " ready." in logfile.read_text(), "ready")
        finally:
            stop(worker)
    assert (tmp_path / "streams").read_text() == ""
    records = json_lines(logfile.read_text())
    assert any(r["logger"] == "celery.apps.worker" and r["message"].endswith(" ready.")
               for r in records)  # fmt: skip
