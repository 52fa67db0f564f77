"""The OpenAPI schema: valid without warnings, typed, and obeyed by every endpoint.

Schemathesis generates requests for every operation from the schema and runs
them in-process against the app, over a database holding real pipeline data
(a generated data set ingested and taken through the stages), with the JWT of a
real user; every answer must be no server error and conform to the schema
(status code, content type, headers, body).
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime

import hypothesis
import pytest
import schemathesis
import yaml
from django.contrib.auth import get_user_model
from django.db import connection
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts.models import Role
from metriflow.wsgi import application
from pipeline import stages
from pipeline.ingest import ingest_files
from pipeline.models import Site

from .conftest import run_manage
from .contract import generate
from .factories import ApiKeyFactory, MembershipFactory

START = datetime(2024, 12, 30, tzinfo=UTC)
PASSWORD = "correct-Horse-battery-9"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Bounds inside the data set: most generated bounds fall outside it or are refused.
SITES_OPERATIONS = {
    ("/api/sites", "get"),
    ("/api/sites/{host}", "get"),
    ("/api/sites/{host}/members", "get"),
    ("/api/sites/{host}/members", "post"),
    ("/api/sites/{host}/members/{username}", "delete"),
}
KEYS_OPERATIONS = {("/api/keys", "get"), ("/api/keys", "post"), ("/api/keys/{prefix}", "delete")}
REAL_RANGES = [
    {"from": "2024-12-30T05:00:00Z", "to": "2025-01-02T03:00:00Z"},
    {"from": "2024-12-01", "to": "2025-02-01"},
    {"from": "2025-01-01T00:00:00+00:00", "to": "2025-01-01T06:00:00Z"},
]


HEALTH_ANSWERING = ("GET /api/health", "GET /api/health/live")
# Readiness answers 503 while no worker runs (none does here): documented, so held to its
# schema like any answer rather than refused as a server error.
DOCUMENTED_503 = ("/api/health/ready",)


def test_schema_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    result = run_manage("spectacular", "--validate", "--fail-on-warn", "--file", str(out),
                        check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower(), result.stderr
    schema = yaml.safe_load(out.read_text())
    operations = {
        (path, method): op for path, item in schema["paths"].items() for method, op in item.items()
    }
    assert set(operations) >= SITES_OPERATIONS
    assert set(operations) >= KEYS_OPERATIONS
    assert schema["components"]["securitySchemes"]["apiKeyAuth"]["name"] == "Authorization"
    assert len(operations) >= 9 + len(SITES_OPERATIONS)
    for (path, method), op in operations.items():
        tag = {
            "reports": "reports",
            "auth": "auth",
            "health": "health",
            "sites": "sites",
            "keys": "keys",
        }[path.split("/")[2]]
        assert op["tags"] == [tag], path
        for code, response in op["responses"].items():
            for media_type, content in response.get("content", {}).items():
                if media_type != "application/json":
                    continue
                body = content["schema"]
                # Typed: a component with properties, or a map of field errors; never a bare
                # object (Swagger's additionalProp1).
                assert "$ref" in body or "additionalProperties" in body, (path, method, code)
    components = schema["components"]["schemas"]
    summary = components["Summary"]["properties"]
    assert {"from", "to", "traffic", "performance", "freshness"} <= set(summary)
    vital = components["Vital"]["properties"]
    assert set(vital) == {"p50", "p75", "p95", "samples", "good", "needs_improvement", "poor"}
    pages = {p["name"]: p for p in schema["paths"]["/api/reports/pages"]["get"]["parameters"]}
    assert pages["limit"]["schema"]["maximum"] == 500
    assert "-views" in pages["order_by"]["schema"]["enum"]
    assert pages["format"]["schema"]["enum"] == ["csv", "json"]
    assert "pattern" in pages["from"]["schema"]
    timeseries = schema["paths"]["/api/reports/timeseries"]["get"]
    granularity = {p["name"]: p for p in timeseries["parameters"]}["granularity"]
    assert granularity["schema"]["enum"] == ["hour", "interval", "day", "month", "year"]
    assert set(timeseries["responses"]) == {"200", "400", "401", "404", "429", "503"}
    site = components["Site"]["properties"]
    assert set(site) == {"id", "host", "name", "time_zone", "role", "first_hour", "last_hour",
                         "pages"}  # fmt: skip
    assert components["SiteRoleEnum"]["enum"] == ["viewer", "admin", "staff"]
    assert set(timeseries["responses"]["200"]["content"]) == {"application/json", "text/csv"}


@pytest.fixture
def dataset(tmp_path, pipeline_db):
    generate(tmp_path, "--records", "1500", "--pages", "6", "--sites", "2",
             "--start", START.isoformat())  # fmt: skip
    ingest_files([str(tmp_path / n) for n in ("ga.json", "psi.json")], parallel=1,
                 show_progress=False)  # fmt: skip
    stages.drain()


@pytest.fixture
def generous_limits(settings):
    """Rate limits far above the run's requests, counted from zero (a key prefix of its own)."""
    settings.METRIFLOW_RATE_REPORTS = "1000000/h"
    settings.METRIFLOW_RATE_AUTH = "1000000/h"
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"t-{uuid.uuid4().hex}"}
    }


def _strategy(
    operation,
    page_ids: list[int],
    refresh_tokens: dict[str, list[str]],
    hosts: list[str],
    key_prefixes: list[str] = (),
):
    """Cases of the operation as schemathesis generates them, and some with real values
    (bounds inside the data, a real page id, a real refresh token) that reach the answers."""
    strategies = [operation.as_strategy()]
    if operation.path.startswith("/api/reports/"):
        path_parameters = {"page_id": page_ids[0]} if "{page_id}" in operation.path else None
        strategies += [
            operation.as_strategy(query=dict(bounds), path_parameters=path_parameters)
            for bounds in REAL_RANGES
        ]
    if "{host}" in operation.path:  # the reader's sites: one administered, one viewed
        for host in hosts:
            path_parameters = {"host": host}
            if "{username}" in operation.path:
                path_parameters["username"] = "reader"
            strategies.append(operation.as_strategy(path_parameters=path_parameters))
    if operation.path == "/api/keys" and operation.method == "post":
        strategies.append(
            operation.as_strategy(
                body={"name": "k", "sites": hosts[:1]}, media_type="application/json"
            )
        )
    if operation.path == "/api/keys/{prefix}":  # the reader's own keys
        strategies += [operation.as_strategy(path_parameters={"prefix": p}) for p in key_prefixes]
    if operation.path in ("/api/auth/token/refresh", "/api/auth/logout"):
        strategies += [
            operation.as_strategy(body={"refresh": t}, media_type="application/json")
            for t in refresh_tokens.get(operation.path, ())
        ]
    if operation.path == "/api/auth/token":
        strategies.append(
            operation.as_strategy(
                body={"username": "reader", "password": PASSWORD}, media_type="application/json"
            )
        )
    return st.one_of(strategies)


def _exercise(strategy, headers: dict, codes: Counter):
    """A Hypothesis test of at most 40 cases of one operation, the same cases every run."""

    @hypothesis.settings(
        max_examples=40,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    @hypothesis.given(case=strategy)
    def run(case):
        # The test transport sets no client address; servers (gunicorn) always do.
        checks = CHECKS[1:] if case.operation.path in DOCUMENTED_503 else CHECKS
        response = case.call_and_validate(
            headers=headers, checks=checks, environ_base={"REMOTE_ADDR": "127.0.0.1"}
        )
        codes[response.status_code] += 1

    return run


def test_every_operation_answers_as_its_schema_says(dataset, generous_limits):
    reader = get_user_model().objects.create_user("reader", password=PASSWORD)
    first, second = Site.objects.order_by("id")[:2]
    MembershipFactory(user=reader, site=first, role=Role.ADMIN)
    MembershipFactory(user=reader, site=second, role=Role.VIEWER)
    api_key = ApiKeyFactory(user=reader, sites=[first])
    revocable = [ApiKeyFactory(user=reader).prefix for _ in range(2)]
    client = APIClient()
    pairs = [
        client.post("/api/auth/token", {"username": "reader", "password": PASSWORD}).json()
        for _ in range(5)
    ]
    headers = {"Authorization": f"Bearer {pairs[0]['access']}"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM page ORDER BY id")
        page_ids = [row[0] for row in cursor.fetchall()]
    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    seen: dict[str, Counter] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.path, op.method) for op in operations} >= SITES_OPERATIONS
    for operation in operations:
        codes = seen.setdefault(operation.label, Counter())
        refresh = {  # tokens of their own: a logout blacklists its token for a refresh
            "/api/auth/token/refresh": [p["refresh"] for p in pairs[1:3]],
            "/api/auth/logout": [p["refresh"] for p in pairs[3:5]],
        }
        strategy = _strategy(operation, page_ids, refresh, [first.host, second.host], revocable)
        _exercise(strategy, headers, codes)()
        if operation.path.startswith(("/api/reports/", "/api/keys")):  # again with a key
            codes = seen.setdefault(f"{operation.label} (api key)", Counter())
            strategy = _strategy(operation, page_ids, refresh, [first.host, second.host])
            _exercise(strategy, {"Authorization": f"Api-Key {api_key.secret}"}, codes)()
    registered = get_user_model().objects.exclude(username="reader").count()
    assert registered <= 40  # bounded: at most one account per example
    for label, codes in seen.items():
        # Health has no input: one case.
        cases = 1 if label.startswith("GET /api/health") else 20
        assert sum(codes.values()) >= cases, (label, codes)
        # Readiness needs workers, which this test does not start: 503, typed as well.
        if label.startswith("GET /api/reports") or label in HEALTH_ANSWERING:
            assert codes[200] >= 1, (label, codes)  # real answers, not only refusals
    assert set(seen["GET /api/health/ready"]) <= {200, 503}
    assert seen["GET /api/reports/summary"][400] >= 1
    assert seen["GET /api/sites"][200] >= 1 and seen["GET /api/sites/{host}"][404] >= 1
    assert seen["GET /api/sites/{host}/members"][200] >= 1
    assert seen["GET /api/sites/{host}/members"][403] >= 1  # the site the reader views
    assert seen["POST /api/auth/token"][200] >= 1 and seen["POST /api/auth/token"][401] >= 1
    assert seen["POST /api/auth/token/refresh"][200] >= 1
    assert seen["POST /api/auth/logout"][205] >= 1
    assert seen["POST /api/keys"][201] >= 1 and seen["GET /api/keys"][200] >= 1
    assert seen["DELETE /api/keys/{prefix}"][204] >= 1
    assert seen["DELETE /api/keys/{prefix}"][404] >= 1
    assert seen["GET /api/reports/summary (api key)"][200] >= 1
    assert seen["GET /api/reports/summary (api key)"][404] >= 1  # a site the key may not read
    for label in ("GET /api/keys", "POST /api/keys", "DELETE /api/keys/{prefix}"):
        assert set(seen[f"{label} (api key)"]) == {403}, label  # keys cannot manage keys
