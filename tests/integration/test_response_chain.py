"""``previous_response_id`` over providers that keep no responses (Chat, Anthropic):
the real openai SDK chains Responses through the gateway."""

from __future__ import annotations

import openai
import pytest

from proxy import response_store
from tests.integration.providers import provider_script
from tests.integration.upstreams import FakeUpstream


@pytest.fixture
def up():
    u = FakeUpstream(script=provider_script("text")).start()
    yield u
    u.stop()


def config(up: FakeUpstream, kind: str) -> str:
    host = f"http://127.0.0.1:{up.port}"
    if kind == "chat":
        return f'''
[providers.p]
kind = "openai"
base_url = "{host}/v1"
api_key = "k"
responses_api = false
[[routes]]
match = "*"
to = ["p"]
'''
    return f'''
[providers.p]
kind = "anthropic"
base_url = "{host}"
api_key = "k"
[[routes]]
match = "*"
to = ["p"]
'''


def client(gw, key: str = "x") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def history(up: FakeUpstream, kind: str) -> list[tuple[str, str]]:
    """(role, text) of the last request's conversation, whichever provider format."""
    body = up.requests[-1].json()
    out = []
    for m in body["messages"]:
        content = m["content"]
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        out.append((m["role"], content))
    return out


@pytest.mark.parametrize("kind", ["chat", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_chain_by_previous_response_id(make_gateway, up, kind, stream, loop_kind):
    gw = make_gateway(loop_kind=loop_kind, config_text=config(up, kind))
    c = client(gw)

    def ask(text: str, prev: str | None = None) -> tuple[str, str]:
        kw = {"previous_response_id": prev} if prev else {}
        if not stream:
            r = c.responses.create(model="m-1", input=text, **kw)
            return r.id, r.output_text
        with c.responses.stream(model="m-1", input=text, **kw) as s:
            final = s.get_final_response()
        return final.id, final.output_text

    first_id, first_text = ask("What is the capital of France?")
    assert first_text
    second_id, _ = ask("And of Italy?", first_id)
    assert history(up, kind) == [("user", "What is the capital of France?"),
                                 ("assistant", first_text),
                                 ("user", "And of Italy?")]
    ask("And of Spain?", second_id)
    assert [role for role, _ in history(up, kind)] == ["user", "assistant"] * 2 + ["user"]
    rows = gw.wait_rows(3)
    assert [r["status"] for r in rows] == [200, 200, 200]


def test_an_unknown_id_is_the_apis_400(make_gateway, up):
    gw = make_gateway(config_text=config(up, "chat"))
    with pytest.raises(openai.BadRequestError) as err:
        client(gw).responses.create(model="m-1", input="hi", previous_response_id="resp_nope")
    assert err.value.body["code"] == "previous_response_not_found"
    assert err.value.body["param"] == "previous_response_id"
    assert "resp_nope" in err.value.body["message"]
    assert up.requests == []
    assert gw.wait_rows(1)[0]["status"] == 400


def test_another_keys_response_is_not_found(make_gateway, up):
    gw = make_gateway(config_text=config(up, "chat"),
                      env={"TOKENWAY_API_KEYS": "key-one,key-two"})
    first = client(gw, "key-one").responses.create(model="m-1", input="secret plans")
    with pytest.raises(openai.BadRequestError) as err:
        client(gw, "key-two").responses.create(model="m-1", input="tell me",
                                               previous_response_id=first.id)
    assert err.value.body["code"] == "previous_response_not_found"
    assert len(up.requests) == 1
    client(gw, "key-one").responses.create(model="m-1", input="go on",
                                           previous_response_id=first.id)
    assert history(up, "chat")[0] == ("user", "secret plans")


def test_store_false_keeps_nothing_and_old_ones_expire(make_gateway, up):
    gw = make_gateway(config_text=config(up, "chat"))
    c = client(gw)
    unsaved = c.responses.create(model="m-1", input="hi", store=False)
    with pytest.raises(openai.BadRequestError):
        c.responses.create(model="m-1", input="again", previous_response_id=unsaved.id)
    store = gw.server.state.responses
    now = [1000.0]
    store.clock = lambda: now[0]
    kept = c.responses.create(model="m-1", input="hi")
    now[0] += response_store.MAX_AGE_S + 1
    with pytest.raises(openai.BadRequestError):
        c.responses.create(model="m-1", input="again", previous_response_id=kept.id)


def test_the_store_is_bounded() -> None:
    store = response_store.ResponseStore()
    big = [{"type": "message", "role": "user", "content": "x" * 1000}]
    for i in range(response_store.MAX_ENTRIES + 10):
        store.put("k", f"resp_{i}", big)
    assert store.stats()["conversations"] == response_store.MAX_ENTRIES
    assert store.get("k", "resp_0") is None and store.get("k", f"resp_{i}") == big
    huge = [{"content": "x" * response_store.MAX_ENTRY_BYTES}]
    assert not store.put("k", "resp_huge", huge) and store.get("k", "resp_huge") is None
    assert store.get("other-key", f"resp_{i}") is None
