"""The service against Schemathesis: generated valid and invalid requests to every operation of its own OpenAPI
document get no 5xx and no answer outside the declared status codes, content types and schemas."""

from __future__ import annotations

import json

import pytest

from benchmarks.fuzz import fuzz_api, write_fuzz_report

pytestmark = pytest.mark.integration

EXAMPLES = 15  # per operation and mode: about 400 requests in about 20 s
ERRORS = {"400", "401", "403", "404", "413", "429", "500", "503"}


def test_the_openapi_document_declares_every_error_in_the_shape_it_is_sent(patron_server) -> None:
    with patron_server.client(timeout=30) as client:
        doc = client.get("/docs.json").json()
        refused = client.post("/recommend", json={"customer_id": "C1", "k": 0}, headers={"Authorization": ""})
    recommend = doc["paths"]["/recommend"]["post"]
    assert set(recommend["responses"]) >= ERRORS
    body = recommend["responses"]["400"]["content"]["application/json"]["schema"]
    assert [alt["type"] for alt in body["anyOf"]] == ["object", "array"]  # `{"error"}` or `[{"error"}]`
    assert recommend["requestBody"]["content"]["application/json"]["schema"]["properties"]["categories"]["nullable"]
    assert set(doc["paths"]["/alerts"]["get"]["responses"]) >= ERRORS
    assert refused.status_code == 401 and "Authorization" in refused.json()["error"]


def test_alerts_since_beyond_the_representable_range_is_not_a_server_error(patron_server) -> None:
    """Found by the fuzzer: an aware `since` that overflows once converted to UTC was a 500."""
    with patron_server.client(timeout=30) as client:
        early = client.get("/alerts", params={"since": "0001-01-01T01:00:01+05:00", "limit": 1})
        late = client.get("/alerts", params={"since": "9999-12-31T23:00:00-05:00", "limit": 1})
    assert early.status_code == 200 and late.status_code == 200
    assert late.json() == {"alerts": []}


def test_fuzzing_finds_no_server_error_and_no_schema_violation(patron_server, tmp_path) -> None:
    report = fuzz_api(patron_server.url, patron_server.headers, examples=EXAMPLES)
    json_path, md_path = write_fuzz_report(report, tmp_path)
    found = {o.operation: (dict(o.failure_counts), o.failures[:1]) for o in report.operations if o.failure_counts}
    assert report.server_errors == 0, md_path.read_text()
    assert report.violations == 0, found
    operations = {o.operation: o for o in report.operations}
    for label in (
        "POST /recommend",
        "POST /similar_items",
        "POST /churn",
        "POST /events",
        "POST /items/stock",
        "POST /retention/plan",
        "POST /status",
        "GET /alerts",
        "POST /admin/erase",
    ):
        assert operations[label].requests >= EXAMPLES, label  # every API was reached
        assert any(400 <= code < 500 for code in operations[label].statuses), label  # invalid input: a 4xx
    # A 503 only where a model may legitimately be missing (the plan's CLV and uplift models, not trained here).
    assert set(report.unavailable) <= {"POST /retention/plan"}
    assert json_path.exists() and "| POST /recommend |" in md_path.read_text()
    saved = json.loads(json_path.read_text())  # the benchmark report: totals in its summary, a row per operation
    assert saved["summary"]["requests"] == report.requests and saved["summary"]["server_errors"] == 0
    assert saved["fingerprint"] == report.schema_sha256 and len(saved["rows"]) == len(report.operations)
