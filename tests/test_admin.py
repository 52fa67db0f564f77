"""The admin lists batches, rejects and pipeline runs, and re-runs a failed window."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.urls import reverse

from pipeline import stages
from pipeline.ingest import ingest_files
from pipeline.models import PipelineLedger

from .contract import generate

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
    for name in ("ingestbatch", "ingestreject", "pipelineledger", "page", "site"):
        response = staff_client.get(reverse(f"admin:pipeline_{name}_changelist"))
        assert response.status_code == 200, name
    page = staff_client.get(reverse("admin:pipeline_ingestreject_changelist")).content.decode()
    assert "must be" in page or "missing field" in page or "not an absolute" in page


def test_staff_re_run_a_failed_window(tmp_path, staff_client):
    generate(tmp_path, "--records", "500", "--pages", "10")
    ingest_files([str(tmp_path / "ga.json")], parallel=1, show_progress=False)
    stages.drain()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM agg_daily")
        cursor.execute("UPDATE pipeline_ledger SET status = 'failed', error = 'boom' "
                       "WHERE stage = 'daily'")  # fmt: skip
    failed = PipelineLedger.objects.get(stage="daily")
    response = staff_client.post(
        reverse("admin:pipeline_pipelineledger_changelist"),
        {"action": "rerun", "_selected_action": [failed.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "daily" in response.content.decode()
    failed.refresh_from_db()
    assert failed.status == "done"
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM agg_daily")
        assert cursor.fetchone()[0] > 0


def test_non_staff_cannot_reach_the_admin(client):
    user = get_user_model().objects.create_user("viewer", password="x")
    client.force_login(user)
    response = client.get(reverse("admin:pipeline_pipelineledger_changelist"))
    assert response.status_code == 302
