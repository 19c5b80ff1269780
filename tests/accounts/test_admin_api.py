"""The admin API, /admin/v1, through a real socket: round trips with plain HTTP, and
the whole API held to docs/admin-openapi.yaml by schemathesis."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from proxy.accounts import worker as worker_module
from proxy.accounts.store import AccountStore
from tests.accounts.test_keys_and_limits import TEAM_CONFIG, chat, synced
from tests.conftest import RunningGateway
from tests.integration import rawhttp

REPO = Path(__file__).resolve().parents[2]
OPENAPI = REPO / "docs" / "admin-openapi.yaml"
MSG = [{"role": "user", "content": "hello"}]


class Admin:
    """A gateway with an admin user and key, and a client for its admin API."""

    def __init__(self, gw: Any, store: AccountStore, key: str, key_id: str) -> None:
        self.gw = gw
        self.store = store
        self.key = key
        self.key_id = key_id

    def __call__(self, method: str, path: str, body: Any = None, *,
                 key: str | None = "admin", headers: dict[str, str] | None = None
                 ) -> tuple[int, dict[str, str], Any]:
        hs = dict(headers or {})
        if key is not None:
            hs["authorization"] = f"Bearer {self.key if key == 'admin' else key}"
        st, h, raw = rawhttp.request(self.gw.url + "/admin/v1" + path, method, body,
                                     headers=hs)
        return st, h, json.loads(raw) if raw else None


@pytest.fixture
def admin(make_gateway, upstream, tmp_path) -> Admin:
    store = AccountStore(str(tmp_path / "ledger.db"))
    store.add_user("root", role="admin")
    key, secret = store.create_key(name="root-key", user="root")
    gw = make_gateway(config_text=TEAM_CONFIG.format(url=upstream.base_url))
    yield Admin(gw, store, secret, key.id)
    store.close()


def error_of(body: Any) -> dict[str, Any]:
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and "code" in err
    return err


def test_users_and_keys_round_trip_and_the_new_key_serves(admin):
    st, _, user = admin("POST", "/users", {"name": "alice", "email": "alice@example.com"})
    assert st == 201 and user["name"] == "alice" and user["role"] == "member"
    st, _, body = admin("POST", "/users", {"name": "alice"})
    assert st == 409 and error_of(body)["code"] == "conflict"
    st, _, body = admin("GET", "/users")
    assert st == 200 and [u["name"] for u in body["users"]] == ["root", "alice"]

    st, _, made = admin("POST", "/keys", {"name": "ci", "user": "alice", "rpm": 100,
                                          "models": ["gpt-4o*"]})
    assert st == 201 and made["key"].startswith("tw-") and made["user"] == "alice"
    assert made["rpm"] == 100 and made["models"] == ["gpt-4o*"] and made["state"] == "active"
    synced(admin.gw, admin.store)
    assert chat(admin.gw, made["key"]).status_code == 200
    st, _, shown = admin("GET", f"/keys/{made['id']}")
    assert st == 200 and "key" not in shown and shown["spend"]["total_usd"] >= 0
    st, _, listed = admin("GET", "/keys?user=alice")
    assert st == 200 and [k["id"] for k in listed["keys"]] == [made["id"]]
    assert made["key"] not in json.dumps(listed)

    st, _, patched = admin("PATCH", f"/keys/{made['id']}", {"name": "ci-2", "rpm": None,
                                                             "budget_usd": 5,
                                                             "budget_period": "month"})
    assert st == 200 and patched["name"] == "ci-2" and patched["rpm"] is None
    assert patched["models"] == ["gpt-4o*"] and patched["budget_usd"] == 5.0

    st, _, revoked = admin("POST", f"/keys/{made['id']}/revoke")
    assert st == 200 and revoked["state"] == "revoked"
    # Refused within a second of the answer (the sync period is 0.25 s).
    gone_by = time.monotonic() + 1.0
    while True:
        try:
            chat(admin.gw, made["key"])
        except openai.AuthenticationError as exc:
            assert "revoked" in str(exc)
            break
        assert time.monotonic() < gone_by, "a revoked key still worked after a second"
        time.sleep(0.05)
    st, _, body = admin("POST", f"/keys/{made['id']}/rotate")
    assert st == 409 and error_of(body)["type"] == "conflict_error"


def test_rotate_and_disable_through_the_api(admin):
    st, _, made = admin("POST", "/keys", {"name": "rot", "expires_in_s": 3600})
    assert st == 201 and made["expires"] == pytest.approx(made["created"] + 3600)
    st, _, rotated = admin("POST", f"/keys/{made['id']}/rotate", {})
    assert st == 200 and rotated["id"] == made["id"] and rotated["key"] != made["key"]
    synced(admin.gw, admin.store)
    assert chat(admin.gw, rotated["key"]).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        chat(admin.gw, made["key"])

    admin("POST", "/users", {"name": "bob"})
    st, _, bobs = admin("POST", "/keys", {"user": "bob"})
    assert st == 201
    st, _, bob = admin("PATCH", "/users/bob", {"disabled": True, "email": "bob@example.com",
                                               "tpm": 1000})
    assert st == 200 and bob["disabled"] and bob["email"] == "bob@example.com"
    assert bob["tpm"] == 1000
    synced(admin.gw, admin.store)
    with pytest.raises(openai.AuthenticationError, match="disabled"):
        chat(admin.gw, bobs["key"])
    st, _, bob = admin("GET", "/users/bob")
    assert st == 200 and bob["keys"] == [bobs["id"]] and bob["budget"] is None


def test_who_may_use_the_admin_api(admin):
    admin("POST", "/users", {"name": "member"})
    _, _, member = admin("POST", "/keys", {"user": "member"})
    _, _, userless = admin("POST", "/keys", {"name": "no-user"})
    synced(admin.gw, admin.store)
    st, _, body = admin("GET", "/users", key=None)
    assert st == 401 and error_of(body)["type"] == "authentication_error"
    st, _, body = admin("GET", "/users", key="tw-not-a-key")
    assert st == 401
    for secret in (member["key"], userless["key"]):
        st, _, body = admin("GET", "/users", key=secret)
        assert st == 403 and error_of(body)["code"] == "admin_required"
        # ...even for a path that does not exist: nothing is told before the key.
        st, _, _ = admin("GET", "/nothing-here", key=secret)
        assert st == 403
    st, _, _ = admin("GET", "/nothing-here", key=None)
    assert st == 401
    # The member's key still serves models.
    assert chat(admin.gw, member["key"]).status_code == 200
    # An admin whose user is disabled is refused like any disabled user.
    admin("POST", "/users", {"name": "root2", "role": "admin"})
    _, _, root2 = admin("POST", "/keys", {"user": "root2"})
    admin("PATCH", "/users/root2", {"disabled": True})
    synced(admin.gw, admin.store)
    st, _, _ = admin("GET", "/users", key=root2["key"])
    assert st == 401
    rows = admin.gw.wait_rows(9)
    admin_rows = [r for r in rows if (r["endpoint"] or "").startswith("/admin/")]
    assert all(r["client_protocol"] == "admin" for r in admin_rows)
    refused = [r for r in admin_rows if r["status"] == 403]
    assert {r["api_key_id"] for r in refused} == {member["id"], userless["id"]}


def test_no_admin_api_without_an_admin_key_even_on_open_loopback(make_gateway, tmp_path):
    # No key anywhere: the gateway serves loopback without authentication...
    gw = make_gateway()
    st, _, _ = rawhttp.request(gw.url + "/v1/chat/completions", "POST",
                               {"model": "loopback", "messages": MSG})
    assert st == 200
    # ...but never its admin API.
    for method, path in (("GET", "/admin/v1/users"), ("POST", "/admin/v1/users"),
                         ("GET", "/admin"), ("GET", "/admin/v1/routes")):
        st, _, body = rawhttp.request(gw.url + path, method,
                                      {"name": "x"} if method == "POST" else None)
        assert st == 401, (method, path)
        assert json.loads(body)["error"]["code"] == "invalid_api_key"
    with AccountStore(gw.db) as store:
        assert store.users() == []


def test_a_configured_key_is_not_an_admin_key(make_gateway, upstream):
    gw = make_gateway(env={"TOKENWAY_API_KEYS": "static-key-1",
                           "TOKENWAY_OPENAI_BASE_URL": upstream.base_url})
    st, _, body = rawhttp.request(gw.url + "/admin/v1/users", "GET",
                                  headers={"x-api-key": "static-key-1"})
    assert st == 403 and json.loads(body)["error"]["code"] == "admin_required"


def test_bad_requests_are_400_unknown_ids_404(admin):
    cases = [
        ("POST", "/users", b"{not json", "not valid JSON"),
        ("POST", "/users", b"[1, 2]", "object"),
        ("POST", "/users", {"name": "x", "shoe_size": 42}, "shoe_size"),
        ("POST", "/users", {"name": 7}, "name"),
        ("POST", "/users", {"email": "a@b.c"}, "name"),
        ("POST", "/users", {"name": "bad name"}, "user name"),
        ("POST", "/users", {"name": "x", "role": "root"}, "role"),
        ("POST", "/keys", {"rpm": "fast"}, "rpm"),
        ("POST", "/keys", {"rpm": True}, "rpm"),
        ("POST", "/keys", {"rpm": 0}, "rpm"),
        ("POST", "/keys", {"budget_usd": 5}, "budget_period"),
        ("POST", "/keys", {"models": "gpt-4o"}, "models"),
        ("POST", "/keys", {"expires_in_s": -1}, "expires_in_s"),
        ("POST", "/keys", {"user": "nobody-at-all"}, None),
        ("PATCH", "/users/root", {"disabled": "yes"}, "disabled"),
        ("PUT", "/prices/house-*", {"input": 1}, "output"),
        ("PUT", "/prices/house-*", {"input": -1, "output": 1}, "input"),
        ("GET", "/usage", None, "by"),
        ("GET", "/usage?by=planet", None, "by"),
        ("GET", "/usage?by=day&since=yesterday-ish", None, "since"),
        ("GET", "/users?page=2", None, "page"),
        ("POST", f"/keys/{admin.key_id}/revoke", {"now": True}, "no fields"),
    ]
    for method, path, body, words in cases:
        st, _, out = admin(method, path, body)
        if words is None:  # an unknown user named in a body
            assert st == 404, (method, path, body, out)
            continue
        assert st == 400, (method, path, body, out)
        assert words in error_of(out)["message"], (words, out)
    for method, path in (("GET", "/users/nobody"), ("PATCH", "/users/nobody"),
                         ("GET", "/keys/key_000000000000"),
                         ("POST", "/keys/key_000000000000/revoke"),
                         ("POST", "/keys/key_000000000000/rotate"),
                         ("DELETE", "/prices/never-set"), ("GET", "/keys?user=nobody"),
                         ("GET", "/no-such-thing")):
        st, _, out = admin(method, path, {} if method == "PATCH" else None)
        assert st == 404 and error_of(out)["type"] == "not_found_error", (method, path)
    st, h, out = admin("DELETE", "/users")
    assert st == 405 and h["allow"] == "GET, POST"
    st, _, out = admin("POST", "/users", b"name=x",
                       headers={"content-type": "application/x-www-form-urlencoded"})
    assert st == 415


def test_a_body_over_the_server_limit_is_refused(make_gateway, upstream, tmp_path):
    store = AccountStore(str(tmp_path / "ledger.db"))
    store.add_user("root", role="admin")
    _, secret = store.create_key(user="root")
    store.close()
    gw = make_gateway(config_text=TEAM_CONFIG.format(url=upstream.base_url),
                      env={"TOKENWAY_MAX_BODY_BYTES": "1024"})
    st, _, body = rawhttp.request(gw.url + "/admin/v1/users", "POST",
                                  {"name": "x", "email": "a@" + "b" * 2000},
                                  headers={"authorization": f"Bearer {secret}"})
    assert st == 413


def test_prices_usage_and_routes(admin):
    st, _, row = admin("PUT", "/prices/house-*", {"input": 0.2, "output": 0.6})
    assert st == 200 and row["pattern"] == "house-*" and row["cache_read"] is None
    st, _, listed = admin("GET", "/prices")
    ours = [p for p in listed["prices"] if p["pattern"] == "house-*"]
    assert st == 200 and ours[0]["source"] == "database" and ours[0]["cache_read"] == 0.2
    assert listed["bundled_date"]
    st, _, _ = admin("PUT", "/prices/accounts%2Ffw%2F*", {"input": 1, "output": 2,
                                                           "cache_read": 0.1})
    assert st == 200 and admin.store.prices()[0]["pattern"] == "accounts/fw/*"
    st, _, out = admin("DELETE", "/prices/house-*")
    assert st == 200 and out == {"pattern": "house-*", "deleted": True}

    st, _, made = admin("POST", "/keys", {"name": "u"})
    synced(admin.gw, admin.store)
    assert chat(admin.gw, made["key"]).status_code == 200
    admin.gw.ledger_flush()
    st, _, usage = admin("GET", "/usage?by=key&since=1h")
    assert st == 200 and usage["by"] == "key" and usage["since"] > time.time() - 3700
    groups = {g["group"]: g for g in usage["groups"]}
    assert groups[made["id"]]["requests"] == 1 and groups[made["id"]]["name"] == "u"
    # Admin requests are in the ledger under the admin key.
    assert groups[admin.key_id]["requests"] >= 4
    st, _, usage = admin("GET", "/usage?by=day")
    assert st == 200 and usage["since"] is None and len(usage["groups"]) == 1

    st, _, routes = admin("GET", "/routes")
    assert st == 200 and routes["loopback"] is False
    assert [r["match"] for r in routes["routes"]] == ["gpt-4o", "gpt-4o-mini",
                                                      "claude-haiku-4-5", "*"]
    assert routes["routes"][2]["targets"] == [{"provider": "openai", "model": "gpt-4o-mini",
                                               "weight": None}]


def test_slow_database_work_is_503_and_never_blocks_the_loop(admin, monkeypatch):
    release = threading.Event()
    real_users = AccountStore.users

    def slow_users(self: AccountStore) -> Any:
        release.wait(5)
        return real_users(self)

    monkeypatch.setattr(AccountStore, "users", slow_users)
    monkeypatch.setattr(worker_module, "ADMIN_DB_TIMEOUT_S", 0.3)
    started = time.monotonic()
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(admin("GET", "/users")))
    t.start()
    # Meanwhile the loop answers: the database work runs on the worker thread.
    time.sleep(0.05)
    st, _, _ = rawhttp.request(admin.gw.url + "/health", "GET")
    # (were the loop waiting on the database, /health would wait for release: 5 s)
    assert st == 200 and time.monotonic() - started < 2.0
    t.join(5)
    st, h, body = out[0]
    assert st == 503 and error_of(body)["code"] == "database_timeout" and h["retry-after"]
    release.set()
    monkeypatch.setattr(worker_module, "ADMIN_DB_TIMEOUT_S", 5.0)
    st, _, _ = admin("GET", "/keys")
    assert st == 200


# -- the whole API against its OpenAPI document -----------------------------------------

# Examples per operation: enough to reach every field, kept small so the run stays
# well under 30 s. Derandomized, so a run is repeatable; TOKENWAY_SCHEMA_EXAMPLES=500
# makes a longer run with fresh random examples.
SCHEMA_EXAMPLES = int(os.environ.get("TOKENWAY_SCHEMA_EXAMPLES", "30"))
SCHEMA_DERANDOMIZE = "TOKENWAY_SCHEMA_EXAMPLES" not in os.environ

schema = schemathesis.openapi.from_path(OPENAPI)


@pytest.fixture(scope="module")
def schema_gateway(tmp_path_factory):
    """One gateway for every operation's examples, with an admin key and a user."""
    tmp = tmp_path_factory.mktemp("admin-schema")
    with AccountStore(str(tmp / "ledger.db")) as store:
        store.add_user("root", role="admin")
        _, secret = store.create_key(name="root-key", user="root")
        store.add_user("alice")
    gw = RunningGateway(tmp, config_text=TEAM_CONFIG.format(url="http://127.0.0.1:9/v1"))
    gw.start()
    yield gw, secret
    gw.stop()
    assert not [e for e in gw.errors if "exception" in e], gw.errors


@schema.parametrize()
@settings(max_examples=SCHEMA_EXAMPLES, derandomize=SCHEMA_DERANDOMIZE, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_the_api_matches_its_openapi_document(case, schema_gateway):
    gw, secret = schema_gateway
    # "Authorization" as the document's security scheme names it: the auth checks take
    # it out (and put in wrong ones) to see that the API refuses such requests.
    case.call_and_validate(base_url=gw.url, headers={"Authorization": f"Bearer {secret}"})
