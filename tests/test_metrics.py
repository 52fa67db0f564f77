"""Prometheus metrics: the API's requests summed over real gunicorn workers, the
pipeline's and ingestion's state equal to independent counts of the same tables,
the lag of an old dirty mark, the dead_letter depth of a vhost of the test's own,
a real Celery worker's own task counts, the protection of ``/metrics`` and a
Grafana dashboard whose every query names a metric that is really exposed."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.db.models import Count, Sum
from django.test import override_settings
from kombu import Connection, Exchange, Producer
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from metriflow.celery import DEAD_LETTER_EXCHANGE, DEAD_LETTER_ROUTING_KEY, app, declare_dead_letter
from metriflow.celery import STAGES as QUEUE_STAGES
from pipeline import services, stages
from pipeline.ingest import ingest_files
from pipeline.models import (
    IngestBatch,
    IngestReject,
    PipelineDirty,
    PipelineLedger,
    PipelineRun,
    TaskFailure,
)

from .conftest import REPO_ROOT, database_url
from .contract import generate
from .processes import free_port, gunicorn, stop
from .rabbitmq import app_broker, fresh_vhost, queue_depth, queue_state

pytestmark = pytest.mark.usefixtures("pipeline_db")

TOKEN = "metrics-token-for-tests-0123456789abcdef"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "metriflow.json"
DAILY_GOOD = ("2024-01-01T00:00:00+00:00", "2024-02-01T00:00:00+00:00", "2024-03-01T00:00:00+00:00")
DAILY_BAD = ("2024-01-15T00:00:00+00:00", "2024-02-10T06:00:00+00:00")  # not on a month


# ----------------------------------------------------------------- reading an exposition


def parse(text: str) -> dict[str, dict[tuple, float]]:
    """Sample name -> {sorted label items: value}, by prometheus_client's parser."""
    out: dict[str, dict[tuple, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return out


def families(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def by(samples: dict[tuple, float], *labels: str) -> dict[tuple, float]:
    """Values summed by the given labels (a tuple key of their values)."""
    out: dict[tuple, float] = defaultdict(float)
    for key, value in samples.items():
        items = dict(key)
        out[tuple(items[label] for label in labels)] += value
    return dict(out)


def scrape(client) -> dict[str, dict[tuple, float]]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content[:500]
    return parse(response.content.decode())


def http_get(base: str, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One request on a connection of its own, redirects not followed."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


# ----------------------------------------------------------------- the API under gunicorn


def per_worker_requests(metrics_dir: Path) -> dict[int, Counter]:
    """(view, status) counts of metriflow_http_requests_total read from each worker's own
    file of the multiprocess directory, by pid."""
    out = {}
    for path in metrics_dir.glob("counter_*.db"):
        counts: Counter = Counter()
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, labels, _help = json.loads(key)
            if name == "metriflow_http_requests_total":
                counts[(labels["view"], labels["status"])] += value
        out[int(path.stem.removeprefix("counter_"))] = counts
    return out


@pytest.mark.slow
def test_request_counts_are_summed_over_gunicorn_workers_and_metrics_are_protected(
    tmp_path, test_database_env
):
    metrics_dir = tmp_path / "prometheus"
    env = {
        **test_database_env,
        "METRIFLOW_METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with gunicorn(env, workers=3) as base:
        status, _headers, body = http_get(base, "/metrics", auth)
        assert status == 200
        before = by(parse(body.decode())["metriflow_http_requests_total"], "view", "status")

        # Requests in parallel rounds until more than one worker has answered some.
        sent: Counter = Counter()
        paths = {"/favicon.ico": ("metriflow.urls.favicon", "301"),
                 "/no-such-page": ("unmatched", "404")}  # fmt: skip
        with ThreadPoolExecutor(max_workers=12) as pool:
            for _round in range(20):
                batch = [path for path in paths for _ in range(12)]
                statuses = list(pool.map(lambda path: http_get(base, path)[0], batch))
                assert sorted(statuses) == sorted(int(paths[p][1]) for p in batch)
                sent.update(paths[path] for path in batch)
                answering = [
                    pid
                    for pid, counts in per_worker_requests(metrics_dir).items()
                    if counts[paths["/favicon.ico"]]
                ]
                if len(answering) >= 2:
                    break
        assert len(answering) >= 2, "every request went to one worker"

        status, headers, body = http_get(base, "/metrics", auth)
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=")
        after = by(parse(body.decode())["metriflow_http_requests_total"], "view", "status")
        for key, count in sent.items():
            assert after.get(key, 0) - before.get(key, 0) == count, key
        # The sum over the workers' own files is what the scrape said.
        workers = per_worker_requests(metrics_dir)
        for key in sent:
            assert sum(counts[key] for counts in workers.values()) == after[key]
        # The scrapes themselves are not counted, nor timed.
        assert not any(view == "observability:metrics" for view, _ in after)
        duration = parse(body.decode())["metriflow_http_request_duration_seconds_count"]
        assert by(duration, "view")[("metriflow.urls.favicon",)] == after[paths["/favicon.ico"]]

        # Production protection: DEBUG is off, so even this machine needs the token.
        status, headers, _body = http_get(base, "/metrics")
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert http_get(base, "/metrics", {"Authorization": "Bearer wrong-token"})[0] == 403
        assert http_get(base, "/metrics", {"Authorization": f"Basic {TOKEN}"})[0] == 401
        # Never rate limited: a scrape after scrape still answers.
        assert {http_get(base, "/metrics", auth)[0] for _ in range(30)} == {200}


def test_allowed_addresses_and_debug_loopback(client):
    with override_settings(METRIFLOW_METRICS_TOKEN="", METRIFLOW_METRICS_ALLOWED_IPS=[]):
        assert client.get("/metrics").status_code == 403  # no way in configured
    with override_settings(METRIFLOW_METRICS_ALLOWED_IPS=["10.1.0.0/16", "2001:db8::/32"]):
        assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
        assert client.get("/metrics", REMOTE_ADDR="2001:db8::7").status_code == 200
        assert client.get("/metrics", REMOTE_ADDR="10.2.0.1").status_code == 403
        assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    with override_settings(DEBUG=True, METRIFLOW_METRICS_TOKEN=TOKEN):
        assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
        assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
        assert client.get("/metrics", REMOTE_ADDR="192.0.2.1").status_code == 401
    with override_settings(METRIFLOW_METRICS_TOKEN=TOKEN):
        assert client.get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}").status_code == 200
        assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


# ----------------------------------------------------------------- the pipeline's state


def ingest_and_run_part(tmp_path) -> list[Path]:
    """A small GA and PSI file with malformed records, ingested; the staged, page and
    interval stages drained, daily and later left dirty; one failed run and one task
    failure recorded the way the stages and the task signal record them."""
    generate(tmp_path, "--records", "480", "--pages", "8", "--start", "2024-01-30T00:00:00Z",
             "--malformed", "0.05")  # fmt: skip
    files = [tmp_path / "ga.json", tmp_path / "psi.json"]
    for path in files:
        [result] = ingest_files([str(path)], parallel=1, show_progress=False)
        assert result.status == "loaded", result.summary()
    runs = stages.drain(("staged", "page", "interval"))
    assert runs and not stages.failed_runs(runs)
    # A failed run of January's daily window (a check constraint refuses its rows).
    with connection.cursor() as cursor:
        cursor.execute(
            "ALTER TABLE agg_daily ADD CONSTRAINT metrics_no_january "
            "CHECK (period_start >= '2024-02-01')"
        )
    try:
        with pytest.raises(psycopg.errors.CheckViolation):
            stages.run_window("daily", datetime(2024, 1, 1, tzinfo=UTC))
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE agg_daily DROP CONSTRAINT metrics_no_january")
    services.record_task_failure(
        task_id="metrics-test-task", task_name="pipeline.stage.daily", args=[],
        kwargs={"window_start": DAILY_BAD[0]}, error=ValueError("bad window"), traceback=None,
    )  # fmt: skip
    return files


def assert_runs_match(samples) -> None:
    """Runs, their seconds and rows in the scrape equal those summed from the ORM."""
    runs = Counter()
    seconds = defaultdict(float)
    rows_in, rows_out = Counter(), Counter()
    for run in PipelineRun.objects.select_related("ledger"):
        runs[(run.ledger.stage, run.status)] += 1
        seconds[(run.ledger.stage, run.status)] += run.duration_ms / 1000
        rows_in[(run.ledger.stage,)] += run.rows_in or 0
        rows_out[(run.ledger.stage,)] += run.rows_out or 0
    assert by(samples["metriflow_pipeline_runs_total"], "stage", "outcome") == runs
    assert by(samples["metriflow_pipeline_run_seconds_total"], "stage", "outcome") == (
        pytest.approx(dict(seconds))
    )
    stage_keys = {(stage,) for stage in stages.STAGES}
    assert by(samples["metriflow_pipeline_rows_in_total"], "stage") == {
        key: rows_in[key] for key in stage_keys
    }
    assert by(samples["metriflow_pipeline_rows_out_total"], "stage") == {
        key: rows_out[key] for key in stage_keys
    }


@override_settings(METRIFLOW_METRICS_TOKEN=TOKEN)
def test_pipeline_and_ingest_metrics_equal_counts_of_the_tables(client, tmp_path):
    files = ingest_and_run_part(tmp_path)
    samples = scrape(client)
    assert samples["metriflow_database_up"] == {(): 1.0}

    windows = Counter()
    for row in PipelineLedger.objects.values("stage", "status").annotate(n=Count("id")):
        windows[(row["stage"], row["status"])] = row["n"]
    assert by(samples["metriflow_pipeline_windows"], "stage", "status") == windows
    assert windows[("staged", "done")] == 2 and windows[("daily", "failed")] == 1

    dirty = Counter(PipelineDirty.objects.values_list("stage", flat=True))
    assert dirty["daily"] > 0 and dirty["page"] == 0
    assert by(samples["metriflow_pipeline_dirty_keys"], "stage") == {
        (stage,): dirty[stage] for stage in stages.TIME_STAGES
    }

    assert_runs_match(samples)
    assert (
        samples["metriflow_pipeline_runs_total"][(("outcome", "failed"), ("stage", "daily"))] == 1
    )
    assert samples["metriflow_pipeline_rows_out_total"][(("stage", "page"),)] > 0

    failures = TaskFailure.objects.values("task_name").annotate(n=Sum("failures"))
    assert by(samples["metriflow_pipeline_task_failures_total"], "task") == {
        (f"pipeline.stage.{stage}",): 0 for stage in QUEUE_STAGES
    } | {(row["task_name"],): row["n"] for row in failures}

    batches = Counter(IngestBatch.objects.values_list("source", "status"))
    assert by(samples["metriflow_ingest_batches"], "source", "status") == batches
    rejects = Counter(IngestReject.objects.values_list("batch__source", flat=True))
    assert rejects["ga"] > 0 and rejects["psi"] > 0
    assert by(samples["metriflow_ingest_rejects_total"], "source") == {
        (source,): rejects[source] for source in ("ga", "psi")
    }
    with connection.cursor() as cursor:
        raw = {}
        for source in ("ga", "psi"):
            cursor.execute(f"SELECT count(*) FROM raw_{source}")
            raw[(source,)] = cursor.fetchone()[0]
    assert by(samples["metriflow_ingest_records_total"], "source") == raw
    assert by(samples["metriflow_ingest_bytes_total"], "source") == {
        (path.name.removesuffix(".json"),): path.stat().st_size for path in files
    }


@override_settings(METRIFLOW_METRICS_TOKEN=TOKEN)
def test_run_totals_over_old_and_new_history(client, tmp_path):
    """Runs older than a day are summed once per process, newer ones at every scrape:
    the totals stay those of the whole table as runs are added."""
    ingest_and_run_part(tmp_path)
    # History over three months, its runs on the edges of the 31-day chunks summed once.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pipeline_run SET started_at = now() - interval '31 days' * (id % 4), "
            "finished_at = now() - interval '31 days' * (id % 4)"
        )
        cursor.execute("SELECT count(DISTINCT id % 4) FROM pipeline_run")
        assert cursor.fetchone()[0] == 4
    assert_runs_match(scrape(client))
    runs = stages.drain(("daily", "monthly"))
    assert runs and not stages.failed_runs(runs)
    assert_runs_match(scrape(client))
    assert_runs_match(scrape(client))


def dirty_age(stage: str) -> float:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT extract(epoch FROM now() - min(marked_at)) FROM pipeline_dirty "
            "WHERE stage = %s",
            [stage],
        )
        return float(cursor.fetchone()[0])


@override_settings(METRIFLOW_METRICS_TOKEN=TOKEN)
def test_lag_is_the_age_of_the_oldest_dirty_mark_and_grows(client):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO pipeline_dirty (stage, period_start, page_id, marked_at) VALUES "
            "('monthly', '2024-01-01', 1, now() - interval '1 hour'), "
            "('monthly', '2024-02-01', 1, now() - interval '10 minutes'), "
            "('yearly', '2024-01-01', 1, now() - interval '5 minutes')"
        )
    lags = []
    for older in ("1 hour", "3 hours", "2 days"):
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE pipeline_dirty SET marked_at = now() - %s::interval "
                "WHERE stage = 'monthly' AND period_start = '2024-01-01'",
                [older],
            )
        low = dirty_age("monthly")
        lag = by(scrape(client)["metriflow_pipeline_lag_seconds"], "stage")
        high = dirty_age("monthly")
        assert low <= lag[("monthly",)] <= high
        assert 300 <= lag[("yearly",)] < 3600
        assert lag[("daily",)] == 0 and lag[("staged",)] == 0
        lags.append(lag[("monthly",)])
    assert lags[0] >= 3600 and lags[1] >= 3 * 3600 and lags[2] >= 2 * 86400


# ----------------------------------------------------------------- the broker


def publish_dead_letters(url: str, count: int) -> None:
    """``count`` messages into dead_letter the way RabbitMQ dead-letters them (through
    metriflow.dlx), with publisher confirms."""
    with Connection(url, transport_options={"confirm_publish": True}) as conn:
        channel = conn.channel()
        declare_dead_letter(channel)
        producer = Producer(channel, exchange=Exchange(DEAD_LETTER_EXCHANGE.name, type="direct"))
        for n in range(count):
            producer.publish({"n": n}, routing_key=DEAD_LETTER_ROUTING_KEY)
        channel.close()


@override_settings(METRIFLOW_METRICS_TOKEN=TOKEN)
def test_dead_letters_are_the_queue_depth_and_a_broker_down_is_a_metric(client, settings):
    with fresh_vhost() as url:
        settings.CELERY_BROKER_URL = url
        samples = scrape(client)  # nothing declared yet in this vhost
        assert samples["metriflow_broker_up"] == {(): 1.0}
        assert samples["metriflow_dead_letters"] == {(): 0.0}
        assert queue_depth(url, "dead_letter") is None  # the scrape declared nothing

        publish_dead_letters(url, 3)
        assert queue_depth(url, "dead_letter") == 3
        samples = scrape(client)
        assert samples["metriflow_dead_letters"] == {(): 3.0}
        assert queue_depth(url, "dead_letter") == 3  # nothing consumed
        with Connection(url) as conn:
            channel = conn.channel()
            app.amqp.queues["daily"].bind(channel).declare()
            channel.close()
        messages = by(scrape(client)["metriflow_queue_messages"], "queue")
        assert messages[("daily",)] == queue_state(url, "daily")[0] == 0

    settings.CELERY_BROKER_URL = f"amqp://guest:guest@127.0.0.1:{free_port()}//"
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    samples = parse(response.content.decode())
    assert samples["metriflow_broker_up"] == {(): 0.0}
    assert "metriflow_dead_letters" not in samples
    assert samples["metriflow_database_up"] == {(): 1.0}


# ----------------------------------------------------------------- a worker's own metrics


def read_worker_metrics(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return response.read().decode()
    except (urllib.error.URLError, OSError):
        return None


@pytest.fixture(scope="module")
def worker_exposition(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real worker on the daily queue of a fresh vhost, two pool processes, its metrics
    on a port of its own; three windows that succeed and two that fail for good sent to
    it. Yields (its exposition once all five ran, the vhost's dead_letter depth then)."""
    with django_db_blocker.unblock():
        name = connection.settings_dict["NAME"]
    port = free_port()
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with (
        fresh_vhost() as url,
        pytest.MonkeyPatch.context() as monkeypatch,
        app_broker(url, monkeypatch),
        open(log, "wb") as out,
    ):
        env = {**os.environ, "DATABASE_URL": database_url(name), "CELERY_BROKER_URL": url,
               "METRIFLOW_WORKER_METRICS_PORT": str(port)}  # fmt: skip
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "metriflow", "worker", "-Q", "daily",
             "-n", f"metrics-{os.getpid()}@%h", "--concurrency", "2", "--without-mingle",
             "--without-gossip", "--loglevel", "INFO"],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while (queue_state(url, "daily") or (0, 0))[1] < 1 or (
                read_worker_metrics(port) is None
            ):
                assert worker.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
            for window in (*DAILY_GOOD, *DAILY_BAD):
                app.send_task("pipeline.stage.daily", kwargs={"window_start": window})
            sent = len(DAILY_GOOD) + len(DAILY_BAD)
            deadline = time.monotonic() + 90
            while True:
                text = read_worker_metrics(port) or ""
                done = sum(parse(text)["metriflow_worker_tasks_total"].values())
                if done >= sent:
                    break
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
            yield text, queue_depth(url, "dead_letter")
        finally:
            stop(worker)
    with django_db_blocker.unblock():
        TaskFailure.objects.filter(task_name="pipeline.stage.daily").delete()


@pytest.mark.slow
def test_a_worker_exposes_its_task_counts(worker_exposition):
    text, dead_letters = worker_exposition
    samples = parse(text)
    assert by(samples["metriflow_worker_tasks_total"], "stage", "outcome") == {
        ("daily", "success"): len(DAILY_GOOD),
        ("daily", "failure"): len(DAILY_BAD),
    }
    assert by(samples["metriflow_worker_task_duration_seconds_count"], "stage", "outcome") == {
        ("daily", "success"): len(DAILY_GOOD),
        ("daily", "failure"): len(DAILY_BAD),
    }
    assert dead_letters == len(DAILY_BAD)  # what the broker says failed for good
    # Only the worker's own tasks: no request or pipeline families.
    assert families(text) == {
        "metriflow_worker_tasks",
        "metriflow_worker_task_duration_seconds",
    }


# ----------------------------------------------------------------- the Grafana dashboard


def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, expr) of every query of every panel, rows' panels included."""
    out = []
    panels = list(dashboard["panels"])
    while panels:
        panel = panels.pop(0)
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bmetriflow_[a-zA-Z0-9_]+", expr))


@pytest.mark.slow
@override_settings(METRIFLOW_METRICS_TOKEN=TOKEN)
def test_the_dashboard_queries_only_metrics_that_are_exposed(client, tmp_path, worker_exposition):
    ingest_and_run_part(tmp_path)
    client.get("/favicon.ico")
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    api_text = response.content.decode()
    worker_text, _ = worker_exposition
    exposed = set(parse(api_text)) | set(parse(worker_text))
    exposed_families = {
        name for name in families(api_text) | families(worker_text) if name.startswith("metriflow_")
    }

    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    queried = set()
    for title, expr in dashboard_exprs(dashboard):
        names = metric_names(expr)
        assert names, (title, expr)
        assert names <= exposed, (title, sorted(names - exposed))
        queried |= names
    for panel in dashboard["panels"]:
        if panel.get("type") != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    # Every family the endpoints expose has a panel.
    missing = {
        family
        for family in exposed_families
        if not any(name == family or name.startswith(family + "_") for name in queried)
    }
    assert not missing, sorted(missing)


def test_a_worker_sharing_the_apis_multiprocess_directory_leaves_its_files(tmp_path):
    """One ``.env`` gives gunicorn and a worker the same PROMETHEUS_MULTIPROC_DIR: the
    worker counts in a subdirectory of its own and never removes the API's files."""
    from observability.worker import prepare_directory

    api_file = tmp_path / "counter_1234.db"
    api_file.write_bytes(b"live")
    path, owned = prepare_directory(str(tmp_path))
    assert api_file.read_bytes() == b"live"
    assert os.path.dirname(path) == str(tmp_path) and path != str(tmp_path)
    assert owned  # removed at the worker's shutdown
