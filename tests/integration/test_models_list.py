"""GET /v1/models for glob routes: the providers' own lists, filtered by the glob,
fetched in the background, kept when a fetch fails, refreshed on reload."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest

from proxy.model_catalog import MAX_PAGE_BYTES, ListedModel, parse_model_page
from tests.integration import rawhttp
from tests.integration.upstreams import FakeUpstream, Recorded, json_response

OPENAI_LIST = {"object": "list", "data": [
    {"id": "gpt-4.1", "object": "model", "created": 1744316542, "owned_by": "system"},
    {"id": "gpt-4.1-mini", "object": "model", "created": 1744317547, "owned_by": "system"},
    {"id": "text-embedding-3-small", "object": "model", "created": 1705948997,
     "owned_by": "system"},
    {"id": "gpt bad name", "object": "model", "created": 1, "owned_by": "x"},
    {"id": "gpt-\u202eevil", "object": "model", "created": 1, "owned_by": "x"},
    {"id": 7, "object": "model"},
]}

ANTHROPIC_PAGES = {
    None: {"data": [{"type": "model", "id": "claude-sonnet-4-5-20250929",
                     "display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z"}],
           "has_more": True, "first_id": "claude-sonnet-4-5-20250929",
           "last_id": "claude-sonnet-4-5-20250929"},
    "claude-sonnet-4-5-20250929": {
        "data": [{"type": "model", "id": "claude-haiku-4-5-20251001",
                  "display_name": "Claude Haiku 4.5", "created_at": "2025-10-01T00:00:00Z"}],
        "has_more": False, "first_id": "claude-haiku-4-5-20251001",
        "last_id": "claude-haiku-4-5-20251001"},
}

GEMINI_PAGES = {
    None: {"models": [{"name": "models/gemini-2.5-pro", "displayName": "Gemini 2.5 Pro",
                       "supportedGenerationMethods": ["generateContent", "countTokens"]},
                      {"name": "models/text-embedding-004",
                       "supportedGenerationMethods": ["embedContent"]}],
           "nextPageToken": "p2"},
    "p2": {"models": [{"name": "models/gemini-2.5-flash",
                       "supportedGenerationMethods": ["generateContent"]}]},
}


def _query(path: str) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit

    return dict(parse_qsl(urlsplit(path).query))


class Lists:
    """Fake providers' model endpoints; ``openai_status`` makes the OpenAI one fail."""

    def __init__(self) -> None:
        self.openai: dict[str, Any] = OPENAI_LIST
        self.openai_status = 200

    def script(self, req: Recorded) -> list[tuple]:
        path = req.path.split("?")[0]
        if req.method == "GET" and path == "/v1/models":
            if "anthropic-version" in req.headers:
                assert req.headers.get("x-api-key") == "ka"
                return json_response(ANTHROPIC_PAGES[_query(req.path).get("after_id")])
            assert req.headers.get("authorization") == "Bearer ko"
            if self.openai_status != 200:
                return json_response({"error": {"message": "down"}}, self.openai_status)
            return json_response(self.openai)
        if req.method == "GET" and path == "/v1beta/models":
            assert req.headers.get("x-goog-api-key") == "kg"
            return json_response(GEMINI_PAGES[_query(req.path).get("pageToken")])
        return json_response({"error": {"message": "not found"}}, 404)


@pytest.fixture
def lists():
    return Lists()


@pytest.fixture
def up(lists):
    u = FakeUpstream(listing_script=lists.script).start()
    yield u
    u.stop()


def config(up: FakeUpstream, extra: str = "") -> str:
    host = f"http://127.0.0.1:{up.port}"
    return f'''
[providers.o]
kind = "openai"
base_url = "{host}/v1"
api_key = "ko"
[providers.a]
kind = "anthropic"
base_url = "{host}"
api_key = "ka"
[providers.g]
kind = "gemini"
base_url = "{host}"
api_key = "kg"
[[routes]]
match = "fast"
to = ["o:gpt-4.1-mini"]
[[routes]]
match = "gpt-4*"
to = ["o"]
[[routes]]
match = "claude-*"
to = ["a"]
[[routes]]
match = "gemini-*"
to = ["g"]
{extra}
'''


def models(gw, **headers: str) -> dict[str, Any]:
    st, _, body = rawhttp.request(gw.url + "/v1/models", headers=headers)
    assert st == 200, body
    return json.loads(body)


def wait_for(gw, want: set[str], **headers: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        got = models(gw, **headers)
        ids = {m["id"] for m in got["data"]}
        if want <= ids or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def test_glob_routes_list_what_the_providers_serve(make_gateway, up):
    gw = make_gateway(config_text=config(up))
    want = {"fast", "gpt-4.1-mini", "gpt-4.1", "claude-sonnet-4-5-20250929",
            "claude-haiku-4-5-20251001", "gemini-2.5-pro", "gemini-2.5-flash"}
    body = wait_for(gw, want)
    ids = [m["id"] for m in body["data"]]
    # Exact names first, in config order; then each provider's list filtered by
    # its glob: no embedding model, no names a client could not send back.
    assert set(ids) == want | {"loopback"} or set(ids) == want, ids
    assert len(ids) == len(set(ids))
    by_id = {m["id"]: m for m in body["data"]}
    assert by_id["gpt-4.1"] == {"id": "gpt-4.1", "object": "model", "created": 1744316542,
                                "owned_by": "o"}
    assert by_id["claude-haiku-4-5-20251001"]["owned_by"] == "a"
    # The SDK reads it, and a listed model can be called.
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    assert "gemini-2.5-flash" in {m.id for m in client.models.list()}
    # Anthropic's shape carries the provider's display names and dates.
    anth = models(gw, **{"anthropic-version": "2023-06-01"})
    sonnet = next(m for m in anth["data"] if m["id"] == "claude-sonnet-4-5-20250929")
    assert sonnet == {"type": "model", "id": "claude-sonnet-4-5-20250929",
                      "display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z"}
    # Each page asked once, with the provider's own key; nothing went to the ledger.
    assert up.requests == []
    gets = [r.path for r in up.listings]
    assert sorted(gets) == sorted([
        "/v1/models", "/v1/models?limit=1000",
        "/v1/models?limit=1000&after_id=claude-sonnet-4-5-20250929",
        "/v1beta/models?pageSize=1000", "/v1beta/models?pageSize=1000&pageToken=p2"])
    assert gw.rows() == []
    health = json.loads(rawhttp.request(gw.url + "/health")[2])
    assert health["model_lists"] == {"o": "ok: 2 model(s)", "a": "ok: 2 model(s)",
                                     "g": "ok: 2 model(s)"}


def test_a_failed_fetch_keeps_the_last_list_and_reload_fetches_again(make_gateway, up, lists):
    gw = make_gateway(config_text=config(up))
    wait_for(gw, {"gpt-4.1"})
    lists.openai_status = 503
    assert gw.reload(config(up))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        health = json.loads(rawhttp.request(gw.url + "/health")[2])
        if health["model_lists"]["o"].startswith("error"):
            break
        time.sleep(0.02)
    assert "answered 503" in health["model_lists"]["o"]
    assert "gpt-4.1" in {m["id"] for m in models(gw)["data"]}
    # Back up with a new model: a reload lists it.
    lists.openai_status = 200
    lists.openai = {"object": "list", "data": [
        {"id": "gpt-4.5-preview", "object": "model", "created": 1, "owned_by": "system"}]}
    assert gw.reload(config(up))
    ids = {m["id"] for m in wait_for(gw, {"gpt-4.5-preview"})["data"]}
    assert "gpt-4.5-preview" in ids
    deadline = time.monotonic() + 10
    while "gpt-4.1" in ids and time.monotonic() < deadline:
        ids = {m["id"] for m in models(gw)["data"]}
    assert "gpt-4.1" not in ids  # the provider no longer lists it


def test_a_route_removed_by_reload_drops_its_models(make_gateway, up):
    gw = make_gateway(config_text=config(up))
    wait_for(gw, {"gemini-2.5-pro"})
    text = config(up).replace('match = "gemini-*"\nto = ["g"]',
                              'match = "gemini-2.5-pro"\nto = ["g"]')
    assert gw.reload(text)
    ids = {m["id"] for m in models(gw)["data"]}
    assert "gemini-2.5-pro" in ids and "gemini-2.5-flash" not in ids


def test_a_keys_allow_list_filters_the_listed_models(make_gateway, up, tmp_path):
    from proxy.accounts.model import Limits
    from proxy.accounts.store import AccountStore

    gw = make_gateway(config_text=config(up))
    wait_for(gw, {"claude-haiku-4-5-20251001"})
    with AccountStore(gw.db) as store:
        store.add_user("ann")
        _, key = store.create_key(user="ann", limits=Limits(models=("claude-*",)))
    deadline = time.monotonic() + 10
    ids: set[str] = set()
    while time.monotonic() < deadline:
        st, _, body = rawhttp.request(gw.url + "/v1/models", headers={"x-api-key": key})
        if st == 200:
            ids = {m["id"] for m in json.loads(body)["data"]}
            if "gpt-4.1" not in ids:  # the new key is in force
                break
        time.sleep(0.02)
    assert ids == {"claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"}


def test_an_oversized_or_malformed_list_is_refused(make_gateway):
    big = {"object": "list", "data": [{"id": "gpt-4x" + str(i), "object": "model"}
                                      for i in range(MAX_PAGE_BYTES // 30)]}
    answers = {"/v1/models": big}

    def script(req: Recorded) -> list[tuple]:
        return json_response(answers[req.path])

    u = FakeUpstream(listing_script=script).start()
    try:
        text = f'''
[providers.o]
kind = "openai"
base_url = "{u.base_url}"
api_key = "ko"
[[routes]]
match = "gpt-4*"
to = ["o"]
'''
        gw = make_gateway(config_text=text)
        deadline = time.monotonic() + 10
        status = ""
        while time.monotonic() < deadline and not status:
            health = json.loads(rawhttp.request(gw.url + "/health")[2])
            status = health["model_lists"].get("o", "")
            time.sleep(0.02)
        assert status == f"error: a page of the model list is over {MAX_PAGE_BYTES} bytes"
        assert not [m for m in models(gw)["data"] if m["id"].startswith("gpt-4x")]
    finally:
        u.stop()


def test_page_parsing_skips_what_is_not_a_model() -> None:
    page, nxt = parse_model_page("openai", "o", OPENAI_LIST)
    assert [m.id for m in page] == ["gpt-4.1", "gpt-4.1-mini", "text-embedding-3-small"]
    assert nxt is None
    page, nxt = parse_model_page("anthropic", "a", ANTHROPIC_PAGES[None])
    assert page == [ListedModel("claude-sonnet-4-5-20250929", "a", 1759104000,
                                "Claude Sonnet 4.5")]
    assert nxt == "claude-sonnet-4-5-20250929"
    page, nxt = parse_model_page("gemini", "g", GEMINI_PAGES[None])
    assert [m.id for m in page] == ["gemini-2.5-pro"] and nxt == "p2"
    for junk in ([], "x", {"data": "x"}, {"data": None}):
        with pytest.raises(Exception, match="model list"):
            parse_model_page("openai", "o", junk)
    assert parse_model_page("gemini", "g", {"models": [None, {"name": 3}]}) == ([], None)
