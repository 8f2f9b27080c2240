"""The service against Schemathesis's own CLI, every check and phase, on a 2-worker server; malformed content types on
every POST route; client errors logged as one line, server faults with their traceback."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Iterator

import cloudpickle
import mlflow
import pytest

from benchmarks.fuzz import fuzz_api, write_fuzz_report
from tests.conftest import TEST_KEY_NAME, Server, start_patron_server, stop_server
from tests.test_faults import copy_workspace, in_stock_items, wait_for_workers

pytestmark = pytest.mark.integration

WORKERS = 2  # the production-like server: two workers behind one port
EXAMPLES = 5  # per operation (Schemathesis's --max-examples): about 600 requests in about 30 s
ERRORS = {"400", "401", "403", "404", "413", "415", "429", "500", "503"}
# Bodies a client may send by mistake: a multipart form without its boundary, a form, text, JSON in another charset.
MALFORMED = (
    "multipart/form-data",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/json; charset=latin-1",
)


def _register_value_models(settings) -> None:
    """A CLV model and a known-effects uplift model, so that every operation answers (none 503s for a model)."""
    from tests.test_retention_plan import KnownEffects
    from training.mlops import tracking
    from training.value.clv import train_clv

    clv = settings.clv.model_copy(update={"horizon_days": 120, "num_boost_round": 150, "folds": 3})
    train_clv(settings.model_copy(update={"clv": clv}))
    tracking.configure(settings)
    cloudpickle.register_pickle_by_value(sys.modules["tests.test_retention_plan"])
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model", python_model=KnownEffects(), registered_model_name=settings.tracking.uplift_model
        )


@pytest.fixture(scope="module")
def fuzz_server(trained_workspace, tmp_path_factory) -> Iterator[Server]:
    """A 2-worker server (SQLite online store) on a copy of the trained workspace, all four models registered."""
    root = tmp_path_factory.mktemp("fuzz")
    ws = copy_workspace(trained_workspace, root, {"backend": "sqlite"}, workers=WORKERS)
    _register_value_models(ws.settings)
    proc, server = start_patron_server(ws, root / "server.log")
    wait_for_workers(server, WORKERS)
    yield server
    stop_server(proc)


def test_the_openapi_document_declares_every_error_and_what_is_enforced(fuzz_server) -> None:
    with fuzz_server.client(timeout=30) as client:
        doc = client.get("/docs.json").json()
        refused = client.post("/recommend", json={"customer_id": "C1", "k": 0}, headers={"Authorization": ""})
    recommend = doc["paths"]["/recommend"]["post"]
    assert set(recommend["responses"]) >= ERRORS
    body = recommend["responses"]["400"]["content"]["application/json"]["schema"]
    assert [alt["type"] for alt in body["anyOf"]] == ["object", "array"]  # `{"error"}` or `[{"error"}]`
    assert recommend["requestBody"]["required"] is True
    assert recommend["requestBody"]["content"]["application/json"]["schema"]["properties"]["categories"]["nullable"]
    events = doc["paths"]["/events"]["post"]["requestBody"]
    assert events["required"] and len(events["content"]["application/json"]["schema"]["anyOf"]) == 3
    assert "required" not in doc["paths"]["/status"]["post"]["requestBody"]  # /status takes no body
    login = doc["paths"]["/dashboard/login"]["post"]["requestBody"]["content"]
    assert login["application/x-www-form-urlencoded"]["schema"]["required"] == ["api_key"]
    tier = next(p for p in doc["paths"]["/dashboard"]["get"]["parameters"] if p["name"] == "tier")
    assert set(tier["schema"]["enum"]) == {"", "high", "medium", "low"}
    assert set(doc["paths"]["/alerts"]["get"]["responses"]) >= ERRORS
    assert refused.status_code == 401 and "Authorization" in refused.json()["error"]


def test_alerts_since_must_be_a_date_time_and_may_be_out_of_range(fuzz_server) -> None:
    """Found by fuzzers: a number was taken as a Unix time; an aware `since` overflowing once in UTC was a 500."""
    with fuzz_server.client(timeout=30) as client:
        early = client.get("/alerts", params={"since": "0001-01-01T01:00:01+05:00", "limit": 1})
        late = client.get("/alerts", params={"since": "9999-12-31T23:00:00-05:00", "limit": 1})
        number = client.get("/alerts", params={"since": "0.5"})
        typo = client.get("/alerts", params={"limt": "5"})
        options = client.request("OPTIONS", "/dashboard/login")
    assert early.status_code == 200 and late.status_code == 200
    assert late.json() == {"alerts": []}
    assert number.status_code == 400 and number.json()["error"].startswith("since:")
    assert typo.status_code == 422 and typo.json()["detail"][0]["loc"] == ["query", "limt"]
    assert options.status_code == 405 and set(options.headers["allow"].split(", ")) == {"GET", "POST"}


def test_every_malformed_content_type_on_every_post_route_is_a_4xx(fuzz_server) -> None:
    with fuzz_server.client(timeout=30) as client:
        routes = [p for p, ops in client.get("/docs.json").json()["paths"].items() if "post" in ops]
        answers = {
            (route, media): client.post(
                route, content=json.dumps({"customer_ids": ["C1"]}).encode(), headers={"Content-Type": media}
            )
            for route in routes
            for media in MALFORMED
        }
    assert len(routes) >= 9 and "/dashboard/login" in routes
    bad = {k: (r.status_code, r.text[:200]) for k, r in answers.items() if not 400 <= r.status_code < 500}
    assert not bad
    for (route, media), answer in answers.items():
        if route != "/dashboard/login":  # every JSON API: a 415 naming the header
            assert answer.status_code == 415 and answer.json()["error"].startswith("Content-Type:"), (route, media)
    assert answers[("/dashboard/login", "multipart/form-data")].status_code == 400  # a form without its boundary


def _log_since(server: Server, offset: int) -> str:
    time.sleep(0.5)  # the workers' log lines reach the file through the server's pipe
    return server.log.read_text(errors="replace")[offset:]


def test_a_client_error_is_one_info_line_and_a_handler_fault_keeps_its_traceback(fuzz_server) -> None:
    start = len(fuzz_server.log.read_text(errors="replace"))
    with fuzz_server.client(timeout=30) as client:
        refused = client.post("/churn", json={"customer_ids": "C0000010"})  # a string, not a list
    assert refused.status_code == 400
    logged = _log_since(fuzz_server, start)
    line = next(x for x in logged.splitlines() if "client error: POST /churn 400" in x)
    assert "[INFO]" in line and "field=customer_ids" in line and f"key={TEST_KEY_NAME}" in line
    assert "C0000010" not in logged and "Traceback" not in logged and "[ERROR]" not in logged

    # A fault inside a handler: the online store's stock table is gone while POST /items/stock writes to it.
    db = fuzz_server.workspace.settings.online_db
    start = len(fuzz_server.log.read_text(errors="replace"))
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE stock RENAME TO stock_away")
    try:
        with fuzz_server.client(timeout=30) as client:
            item = in_stock_items(fuzz_server.workspace)[0]
            failed = client.post("/items/stock", json={"items": [{"item_id": item, "in_stock": True}]})
    finally:
        with sqlite3.connect(db) as conn:
            conn.execute("ALTER TABLE stock_away RENAME TO stock")
    assert failed.status_code == 500
    logged = _log_since(fuzz_server, start)
    assert "[ERROR]" in logged and "Exception on /items/stock [POST]" in logged and "Traceback" in logged
    assert "no such table: stock" in logged


def test_schemathesis_every_check_and_phase_finds_nothing(fuzz_server, tmp_path) -> None:
    report = fuzz_api(fuzz_server.url, fuzz_server.headers, examples=EXAMPLES, workers=1, out=tmp_path / "st")
    json_path, md_path = write_fuzz_report(report, tmp_path)
    found = {o.operation: (dict(o.failure_counts), o.failures) for o in report.operations if o.failure_counts}
    assert report.server_errors == 0, md_path.read_text()
    assert report.violations == 0, found
    assert report.error_count == 0, (report.errors, report.output_tail)
    assert report.phases["coverage"] == "success" and report.phases["fuzzing"] == "success", report.phases
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
        "GET /dashboard",
        "POST /dashboard/login",
        "POST /admin/erase",
    ):
        assert operations[label].requests >= EXAMPLES, label  # every operation was reached
        assert any(400 <= code < 500 for code in operations[label].statuses), label  # invalid input: a 4xx
    assert operations["POST /recommend"].statuses[415] >= 1  # the coverage phase's content-type mutations ran
    assert not report.unavailable  # every model is registered: no 503
    assert 200 in operations["POST /retention/plan"].statuses
    saved = json.loads(json_path.read_text())  # the benchmark report: totals in its summary, a row per operation
    assert saved["summary"]["requests"] == report.requests and saved["summary"]["schemathesis_errors"] == 0
    assert saved["fingerprint"] == report.schema_sha256 and len(saved["rows"]) == len(report.operations)
    assert "| POST /recommend |" in md_path.read_text()
