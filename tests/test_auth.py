"""Access control and limits: API keys with scopes, rotation, 401/403/429/413, all before any handler runs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import yaml

from features.tables.store import read_table
from patron.config import CONFIG_DIR, load_settings
from serving.access.api_keys import SCOPES, KeyRing, create_key, parse_scopes, read_keys, revoke_key
from serving.access.auth import PUBLIC_PATHS, ROUTE_SCOPES, is_public, required_scope
from serving.access.limits import TokenBuckets
from tests.conftest import SMALL_CONFIG, Server, Workspace, purchases, start_patron_server, stop_server

RELOAD_WAIT_S = 10.0  # the server re-reads the keys file within auth.reload_check_s (2 s)


# --- units: the route map, scopes, token buckets, the keys file ------------------------------------------------


def test_every_route_maps_to_its_scope_and_unknown_routes_need_admin():
    assert {pattern: required_scope(pattern.replace("/*", "/x")) for pattern, _ in ROUTE_SCOPES} == {
        pattern: scope for pattern, scope in ROUTE_SCOPES
    }
    assert required_scope("/recommend/") == "storefront"
    assert required_scope("/admin/erase") == "admin" and required_scope("/dashboard/customer/C1") == "crm"
    for unknown in ("/no-such-route", "/recommendations", "/dashboard/../admin/erase", "//churn"):
        assert required_scope(unknown) == "admin"
    assert all(is_public(p.replace("/*", "/x.js")) for p in PUBLIC_PATHS)
    assert not is_public("/static_content/../status") and not is_public("/dashboard") and not is_public("/livez/x")


def test_scopes_are_validated_naming_the_bad_one():
    assert parse_scopes("crm, storefront,crm") == ("crm", "storefront")
    for bad in ("crm,root", "", " , "):
        with pytest.raises(ValueError, match="scopes"):
            parse_scopes(bad)


def test_token_bucket_allows_a_burst_then_says_when_to_retry():
    now = [0.0]
    buckets = TokenBuckets(clock=lambda: now[0])
    assert [buckets.take("k", rate=2.0, capacity=3.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k", rate=2.0, capacity=3.0) == pytest.approx(0.5)
    assert buckets.take("other", rate=2.0, capacity=3.0) == 0.0  # buckets are per key
    now[0] = 0.5
    assert buckets.take("k", rate=2.0, capacity=3.0) == 0.0


def test_keys_are_stored_hashed_and_the_ring_follows_the_file(tmp_path):
    path = tmp_path / "keys.json"
    ring = KeyRing(path, check_s=0.0)
    assert ring.keys() == []
    key = create_key(path, "shop", "storefront")
    assert key not in path.read_text() and path.stat().st_mode & 0o077 == 0
    assert ring.match(key).scopes == ("storefront",) and ring.match(key + "x") is None
    with pytest.raises(ValueError, match="exists already"):
        create_key(path, "shop", "crm")
    assert revoke_key(path, "shop") and not revoke_key(path, "shop")
    assert ring.match(key) is None
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a valid API keys file"):
        read_keys(path)


def test_production_profile_has_no_default_key(tmp_path, monkeypatch):
    monkeypatch.delenv("PATRON_API_KEYS_FILE", raising=False)
    monkeypatch.delenv("PATRON_HOME", raising=False)
    settings = load_settings(CONFIG_DIR / "production.yaml")
    assert settings.auth.keys_file is None and settings.api_keys_file == settings.workspace / "api_keys.json"
    for config in CONFIG_DIR.glob("*.yaml"):
        assert "patron_" not in config.read_text() and "sha256" not in config.read_text()
    assert read_keys(tmp_path / "absent.json") == []  # no file: no key, every non-health request is a 401
    monkeypatch.setenv("PATRON_API_KEYS_FILE", str(tmp_path / "k.json"))
    assert load_settings(CONFIG_DIR / "production.yaml").api_keys_file == tmp_path / "k.json"


def test_demo_issues_its_own_all_scope_key_but_leaves_operator_keys_alone(tmp_path):
    from patron.demo import curl_lines, demo_key

    settings = load_settings(workspace=str(tmp_path))
    first = demo_key(settings)
    ring = KeyRing(settings.api_keys_file, check_s=0.0)
    assert ring.match(first).scopes == SCOPES
    second = demo_key(settings)  # a new run prints a new key: only hashes are kept
    assert ring.match(second) and ring.match(first) is None
    lines = curl_lines(settings, 3000, second)
    assert lines[0].startswith(f"export PATRON_KEY={second}")
    assert all('-H "Authorization: Bearer $PATRON_KEY"' in line for line in lines if "-X POST" in line)
    create_key(settings.api_keys_file, "shop", "storefront")
    assert demo_key(settings) is None and ring.match(second)


# --- the real server ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(patron_server: Server) -> Iterator[dict[str, str]]:
    """One key per scope plus a slow one (1 request/s) named auth-<scope>, added to the running server's keys."""
    path = patron_server.workspace.settings.api_keys_file
    made = {scope: create_key(path, f"auth-{scope}", scope, replace=True) for scope in SCOPES}
    made["slow"] = create_key(path, "auth-slow", "crm", rate_per_s=1.0, replace=True)
    wait_until(patron_server, made["crm"], "/alerts", 200)
    yield made
    for name in made:
        revoke_key(path, f"auth-{name}")


def call(
    server: Server, method: str, path: str, body: dict | None = None, key: str | None = None, **headers: str
) -> httpx.Response:
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    with httpx.Client(base_url=server.url, timeout=30) as http:  # deliberately not server.client(): no test key
        return http.request(method, path, json=body, headers=headers)


def wait_until(server: Server, key: str, path: str, status: int) -> None:
    deadline = time.monotonic() + RELOAD_WAIT_S
    while (r := call(server, "GET", path, key=key)).status_code != status:
        assert time.monotonic() < deadline, f"GET {path} still {r.status_code} {r.text}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def routes(patron_server: Server) -> list[tuple[str, str, dict | None, str]]:
    """(method, path, body, scope) for every route; bodies valid, so an allowed call reaches the handler."""
    settings = patron_server.workspace.settings
    customer = purchases(settings)["customer_id"].iloc[0]
    item = read_table(settings.tables_dir, "products")["item_id"].iloc[0]
    event = {
        "event_id": f"auth-{uuid.uuid4().hex}",
        "customer_id": "auth-visitor",
        "item_id": item,
        "ts": "2026-06-01T10:00:00Z",
        "type": "view",
    }
    return [
        ("POST", "/recommend", {"customer_id": customer, "k": 3}, "storefront"),
        ("POST", "/similar_items", {"item_id": item, "k": 3}, "storefront"),
        ("POST", "/events", {"events": [event]}, "storefront"),
        ("POST", "/churn", {"customer_ids": [customer]}, "crm"),
        ("POST", "/retention/plan", {"budget": 10}, "crm"),
        ("GET", "/alerts", None, "crm"),
        ("POST", "/campaigns", {"budget": -1.0}, "crm"),  # a 400 past the key check: nothing created
        ("GET", "/campaigns/auth-no-such-campaign", None, "crm"),  # a 404 past the key check
        ("GET", "/dashboard", None, "crm"),
        ("POST", "/items/stock", {"items": [{"item_id": "auth-no-such-item", "in_stock": True}]}, "admin"),
        ("POST", "/status", {}, "admin"),
        ("POST", "/admin/erase", {"customer_ids": []}, "admin"),  # a 400 past the key check: nothing erased
        ("GET", "/no-such-route", None, "admin"),
    ]


@pytest.mark.integration
def test_health_and_docs_are_open(patron_server):
    for path in ("/livez", "/readyz", "/docs.json"):
        assert call(patron_server, "GET", path).status_code == 200, path


@pytest.mark.integration
def test_each_scope_reaches_its_routes_and_gets_403_elsewhere(patron_server, keys, routes):
    for method, path, body, scope in routes:
        for key_scope in SCOPES:
            r = call(patron_server, method, path, body, key=keys[key_scope])
            if key_scope == scope:
                assert r.status_code not in (401, 403, 413, 429), (key_scope, path, r.text)
                assert r.status_code < 500 or path == "/retention/plan", (path, r.text)  # 503: no CLV model here
            else:
                assert r.status_code == 403, (key_scope, path, r.text)
                assert r.json()["error"] == (
                    f"API key 'auth-{key_scope}' lacks the scope '{scope}' needed for "
                    f"{method} {path} (it has: {key_scope})"
                )
    assert call(patron_server, "POST", "/recommend", routes[0][2], key=keys["storefront"]).json()["items"]


@pytest.mark.integration
def test_missing_wrong_or_malformed_key_is_a_401_saying_what_to_send(patron_server, keys):
    body = {"customer_id": "C0000001"}
    missing = call(patron_server, "POST", "/recommend", body)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.json()["error"].startswith("missing API key: send it as 'Authorization: Bearer <key>'")
    wrong = call(patron_server, "POST", "/recommend", body, key="patron_not-a-key")
    assert wrong.status_code == 401 and wrong.json()["error"].startswith("invalid API key (unknown or revoked)")
    basic = call(patron_server, "POST", "/recommend", body, Authorization="Basic dXNlcjpwYXNz")
    assert basic.status_code == 401 and "malformed Authorization header" in basic.json()["error"]
    # the other two ways to send a key
    assert call(patron_server, "POST", "/recommend", body, **{"X-API-Key": keys["storefront"]}).status_code == 200
    with httpx.Client(base_url=patron_server.url, cookies={"patron_api_key": keys["storefront"]}) as http:
        assert http.post("/recommend", json=body).status_code == 200


@pytest.mark.integration
def test_refusals_are_identical_for_known_and_unknown_customers(patron_server, keys):
    known = purchases(patron_server.workspace.settings)["customer_id"].iloc[0]
    for key in (None, "patron_wrong", keys["storefront"]):
        answers = [call(patron_server, "POST", "/churn", {"customer_ids": [c]}, key=key) for c in (known, "nobody-x")]
        assert answers[0].status_code == answers[1].status_code in (401, 403)
        assert answers[0].content == answers[1].content


@pytest.mark.integration
def test_rotation_takes_effect_without_restart(patron_server, keys):
    path = patron_server.workspace.settings.api_keys_file
    name = f"auth-rotated-{uuid.uuid4().hex[:6]}"
    new = create_key(path, name, "crm")
    wait_until(patron_server, new, "/alerts", 200)
    revoke_key(path, name)
    wait_until(patron_server, new, "/alerts", 401)
    assert call(patron_server, "GET", "/alerts", key=keys["crm"]).status_code == 200  # the others still work
    saved = path.read_bytes()
    try:  # no key at all: every non-health request is a 401 that says how to create one
        path.write_text('{"keys": []}')
        wait_until(patron_server, keys["crm"], "/alerts", 401)
        r = call(patron_server, "GET", "/alerts", key=keys["crm"])
        assert r.json()["error"].startswith("no API keys are configured") and "patron keys create" in r.text
        assert call(patron_server, "GET", "/readyz").status_code == 200
    finally:
        path.write_bytes(saved)
    wait_until(patron_server, keys["crm"], "/alerts", 200)


@pytest.mark.integration
def test_rate_limit_gives_429_with_retry_after(patron_server, keys):
    answers = [call(patron_server, "GET", "/alerts", key=keys["slow"]) for _ in range(6)]
    codes = [r.status_code for r in answers]
    assert codes[0] == 200 and 429 in codes, codes  # 1 request/s, a burst of 2
    limited = next(r for r in answers if r.status_code == 429)
    retry = int(limited.headers["Retry-After"])
    assert retry >= 1 and "rate limit of 1 requests/s" in limited.json()["error"]
    time.sleep(retry)
    assert call(patron_server, "GET", "/alerts", key=keys["slow"]).status_code == 200
    assert call(patron_server, "GET", "/alerts", key=keys["crm"]).status_code == 200  # other keys unaffected


@pytest.mark.integration
def test_oversized_body_is_a_413_before_the_handler(patron_server, keys):
    limit = patron_server.workspace.settings.auth.max_body_bytes
    big = b'{"events": [], "pad": "' + b"x" * limit + b'"}'
    headers = {"Authorization": f"Bearer {keys['storefront']}", "Content-Type": "application/json"}
    with httpx.Client(base_url=patron_server.url, timeout=30) as http:
        r = http.post("/events", content=big, headers=headers)
        assert r.status_code == 413 and f"at most {limit} bytes" in r.json()["error"]
        chunked = http.post("/events", content=iter([big[: limit // 2], big[limit // 2 :]]), headers=headers)
        assert chunked.status_code == 413 and "max_body_bytes" in chunked.json()["error"]
        assert http.post("/events", content=big).status_code == 401  # the key is checked first
        small = http.post("/events", content=iter([b'{"events": []}']), headers=headers)
        assert small.status_code == 400 and "events" in small.text  # a chunked body within the limit goes through


@pytest.fixture(scope="module")
def short_timeout_server(tmp_path_factory) -> Iterator[Server]:
    """A server over an empty workspace (quick to start, never ready) whose requests time out after a second."""
    root = tmp_path_factory.mktemp("short_timeout")
    config = root / "patron.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                **SMALL_CONFIG,
                "workspace": str(root / "workspace"),
                "serving": {"request_timeout_s": 1, "champion_retry_s": 60},
            }
        )
    )
    ws = Workspace(settings=load_settings(config), config=config)
    proc, server = start_patron_server(ws, root / "server.log", wait_ready=False)
    yield server
    stop_server(proc)


@pytest.mark.integration
def test_a_slow_request_times_out_and_does_not_hold_the_worker(short_timeout_server):
    """A client dripping its body is cut off at request_timeout_s (504) while other requests are answered."""
    server = short_timeout_server
    answered: list[int] = []

    def drip() -> Iterator[bytes]:
        yield b'{"events": ['
        for _ in range(6):  # 3 s in all, three times the timeout
            time.sleep(0.5)
            with server.client(timeout=5) as other:
                answered.append(other.post("/recommend", json={"customer_id": "slow-test"}).status_code)  # 503
            yield b" "
        yield b"]}"

    with server.client(timeout=30) as http:
        r = http.post("/events", content=drip(), headers={"Content-Type": "application/json"})
    assert r.status_code == 504 and "1.0 seconds" in r.json()["error"], r.text
    assert len(answered) == 6 and set(answered) == {503}  # the handler answered at once: not ready
