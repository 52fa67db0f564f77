"""The admin lists batches, rejects, pipeline windows and their runs, and queues re-runs."""

import json
from datetime import UTC, datetime, time

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from metriflow.celery import app
from pipeline import stages
from pipeline.ingest import ingest_files
from pipeline.models import PipelineLedger, PipelineRun
from pipeline.tasks import WINDOW_TASKS

from .contract import generate
from .rabbitmq import stage_broker, take_messages
from .test_stages import final_records, query

pytestmark = pytest.mark.usefixtures("pipeline_db")


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_user("ops", password="x", is_staff=True,
                                                is_superuser=True)  # fmt: skip
    client.force_login(user)
    return client


def test_admin_lists_batches_rejects_and_runs(tmp_path, staff_client):
    generate(tmp_path, "--records", "500", "--pages", "10", "--malformed", "0.02")
    ingest_files([str(tmp_path / "ga.json")], parallel=1, show_progress=False)
    stages.drain()
    for name in ("ingestbatch", "ingestreject", "pipelineledger", "pipelinerun", "taskfailure",
                 "page", "site"):  # fmt: skip
        response = staff_client.get(reverse(f"admin:pipeline_{name}_changelist"))
        assert response.status_code == 200, name
    page = staff_client.get(reverse("admin:pipeline_ingestreject_changelist")).content.decode()
    assert "must be" in page or "missing field" in page or "not an absolute" in page
    # A batch shows the hours it covers.
    [(first, last)] = query("SELECT first_hour, last_hour FROM ingest_batch")
    page = staff_client.get(reverse("admin:pipeline_ingestbatch_changelist")).content.decode()
    assert f"{first:%Y-%m-%d %H:%M} .. {last:%Y-%m-%d %H:%M}" in page


def test_the_run_history_is_listed_filtered_and_shown_on_its_window(tmp_path, staff_client):
    generate(tmp_path, "--records", "500", "--pages", "10", "--sources", "ga")
    ingest_files([str(tmp_path / "ga.json")], parallel=1, show_progress=False)
    stages.drain()
    window = PipelineLedger.objects.get(stage="daily")
    stages.mark_window_dirty("daily", window.window_start, window.window_end)
    stages.run_window("daily", window.window_start, task_id="second-daily-run")
    runs_url = reverse("admin:pipeline_pipelinerun_changelist")

    def listed(params: dict) -> set[int]:
        response = staff_client.get(runs_url, params)
        assert response.status_code == 200, params
        return set(response.context["cl"].result_list.values_list("pk", flat=True))

    every = set(PipelineRun.objects.values_list("pk", flat=True))
    assert len(every) == PipelineLedger.objects.count() + 1  # one window ran twice
    daily = set(PipelineRun.objects.filter(ledger__stage="daily").values_list("pk", flat=True))
    assert len(daily) == 2
    assert listed({}) == every
    assert listed({"ledger__stage__exact": "daily"}) == daily
    assert listed({"status__exact": "failed"}) == set()
    assert listed({"q": "second-daily-run"}) == {
        PipelineRun.objects.get(task_id="second-daily-run").pk
    }
    day = PipelineRun.objects.first().started_at
    assert listed({"started_at__year": day.year, "started_at__month": day.month}) == every

    # The window's page lists its runs, latest first, and links to all of them.
    page = staff_client.get(
        reverse("admin:pipeline_pipelineledger_change", args=[window.pk])
    ).content.decode()
    assert "attempt" in page and "all 2 run(s) of this window" in page
    assert listed({"ledger__id__exact": window.pk}) == daily


@pytest.fixture
def fresh_broker(monkeypatch):
    """This process's Celery app on a vhost of the test's own, its stage queues declared."""
    with stage_broker(monkeypatch) as url:
        yield url


def ledger_rows() -> list[tuple]:
    return query("SELECT * FROM pipeline_ledger ORDER BY id")


def test_staff_re_run_queues_exactly_the_selected_windows(tmp_path, staff_client, fresh_broker):
    # 50 hours from 31 Dec 2024: daily windows Dec 2024 and Jan 2025, yearly 2024 and 2025.
    generate(tmp_path, "--records", "500", "--pages", "10", "--start", "2024-12-31T00:00:00Z",
             "--sources", "ga")  # fmt: skip
    ga_path = tmp_path / "ga.json"
    ingest_files([str(ga_path)], parallel=1, show_progress=False)
    stages.drain()
    daily_before = query("SELECT * FROM agg_daily ORDER BY period_start, page_id")
    december = PipelineLedger.objects.get(stage="daily", window_start__month=12)
    year_2025 = PipelineLedger.objects.get(stage="monthly", window_start__year=2025)
    batch = PipelineLedger.objects.get(stage="staged")
    assert PipelineLedger.objects.filter(stage="daily").count() == 2  # one is left out
    query("DELETE FROM agg_daily WHERE period_start < '2025-01-01'")  # lost: to be redone
    before = ledger_rows()

    response = staff_client.post(
        reverse("admin:pipeline_pipelineledger_changelist"),
        {"action": "rerun", "_selected_action": [december.pk, year_2025.pk, batch.pk]},
        follow=True,
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Queued daily 2024-12-01..2025-01-01 on daily" in page
    assert "Queued monthly 2025-01-01..2026-01-01 on monthly" in page
    assert f"Queued staged batch {batch.batch_id} on staged" in page
    # Nothing ran in the request: the ledger is as it was.
    assert ledger_rows() == before

    # The selected time windows' own keys were marked dirty, from the records alone.
    ga, _psi = final_records([ga_path])
    page_ids = dict(query("SELECT url, id FROM page"))
    expected = {("daily", datetime.combine(hour.date(), time(), UTC), page_ids[url])
                for url, hour in ga if hour.year == 2024}  # fmt: skip
    expected |= {("monthly", datetime(2025, 1, 1, tzinfo=UTC), page_ids[url])
                 for url, hour in ga if hour.year == 2025}  # fmt: skip
    assert set(query("SELECT stage, period_start, page_id FROM pipeline_dirty")) == expected

    # Exactly one message per selected window, on its stage's queue.
    published = {queue.name: take_messages(fresh_broker, queue.name)
                 for queue in app.conf.task_queues}  # fmt: skip
    assert {name: len(messages) for name, messages in published.items()} == {
        "raw": 0, "staged": 1, "page": 0, "interval": 0, "daily": 1, "monthly": 1, "yearly": 0,
    }  # fmt: skip
    bodies = {}
    for name in ("staged", "daily", "monthly"):
        [message] = published[name]
        assert message.headers["task"] == f"pipeline.stage.{name}"
        _args, kwargs, _embed = json.loads(message.body)
        bodies[name] = kwargs
    assert bodies == {
        "staged": {"batch_id": batch.batch_id},
        "daily": {"window_start": "2024-12-01T00:00:00+00:00"},
        "monthly": {"window_start": "2025-01-01T00:00:00+00:00"},
    }

    # Run as a worker would, the queued daily window recomputes what was lost.
    WINDOW_TASKS["daily"].apply(kwargs=bodies["daily"]).get()
    assert query("SELECT * FROM agg_daily ORDER BY period_start, page_id") == daily_before
    december.refresh_from_db()
    assert (december.status, december.attempts) == ("done", 2)


def test_non_staff_cannot_reach_the_admin(client):
    user = get_user_model().objects.create_user("viewer", password="x")
    client.force_login(user)
    response = client.get(reverse("admin:pipeline_pipelineledger_changelist"))
    assert response.status_code == 302
