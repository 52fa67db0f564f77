"""docker-compose.yml describes the whole platform with the local path's commands."""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from metriflow.celery import STAGES

from .conftest import REPO_ROOT


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def _makefile_recipe(target: str) -> str:
    text = (REPO_ROOT / "Makefile").read_text()
    match = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert match, f"no Makefile target {target}"
    return match.group(1).strip().splitlines()[-1]


def test_every_stage_queue_has_its_worker_running_the_local_command(compose):
    recipe = _makefile_recipe("worker")  # $(VENV)/bin/celery ... -Q $(QUEUE) ...
    recipe = recipe.replace("$(CONCURRENCY)", "2")  # the Makefile's default
    for stage in STAGES:
        service = compose["services"][f"worker-{stage}"]
        expected = recipe.replace("$(VENV)/bin/", "").replace("$(QUEUE)", stage).split()
        assert service["command"] == expected


@pytest.mark.parametrize(
    ("service", "target"), [("api", "api"), ("beat", "beat"), ("flower", "flower")]
)
def test_processes_run_the_local_path_commands(compose, service, target):
    command = _makefile_recipe(target).replace("$(VENV)/bin/", "").split()
    if service == "beat":  # the schedule file lives in the image's var/
        command = [part.replace("var/", "/app/var/") for part in command]
    assert compose["services"][service]["command"] == command


def test_services_have_health_checks_and_start_in_order(compose):
    services = compose["services"]
    for name in ("postgres", "rabbitmq", "redis", "api", "flower"):
        assert "healthcheck" in services[name], name
    assert services["api"]["ports"] == ["8080:8080"]
    assert services["flower"]["ports"] == ["5555:5555"]
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, (name, dependency)
            assert rule["condition"] in {"service_healthy", "service_completed_successfully"}
    assert services["worker-daily"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )


def test_only_the_api_and_flower_are_published(compose):
    published = {name for name, service in compose["services"].items() if service.get("ports")}
    assert published == {"api", "flower"}


def test_backing_services_take_credentials_from_the_environment(compose):
    services = compose["services"]
    env = services["api"]["environment"]
    assert "${REDIS_PASSWORD:?" in env["REDIS_URL"]
    assert "${RABBITMQ_PASSWORD:?" in env["CELERY_BROKER_URL"]
    assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]
    assert "--requirepass" in " ".join(services["redis"]["command"])
    assert services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"].startswith(
        "${RABBITMQ_PASSWORD:?"
    )
    assert services["rabbitmq"]["image"].endswith("-management")  # Flower's broker API
    flower = services["flower"]["environment"]
    assert flower["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")


@pytest.mark.skipif(
    not (shutil.which("docker-compose") or shutil.which("docker")),
    reason="no compose client on this machine",
)
def test_compose_client_accepts_the_file():
    env = {
        **os.environ,
        "DJANGO_SECRET_KEY": "x" * 60,
        "POSTGRES_PASSWORD": "p",
        "RABBITMQ_PASSWORD": "r",
        "REDIS_PASSWORD": "s",
        "FLOWER_BASIC_AUTH": "admin:f",
    }
    if shutil.which("docker-compose"):
        command = ["docker-compose", "config", "-q"]
    else:
        command = ["docker", "compose", "config", "-q"]
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if plugin.returncode != 0:
            pytest.skip("docker client without the compose plugin")
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
