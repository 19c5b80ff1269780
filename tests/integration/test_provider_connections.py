"""[providers.X] max_connections: at most that many connections to the provider;
requests beyond it wait for one, within the connect timeout, then get a 503."""

from __future__ import annotations

import threading

import anthropic
import openai
import pytest

from tests.integration.upstreams import CHAT_COMPLETION, FakeUpstream, json_response


def provider(url: str, extra: str) -> str:
    return f'''
[providers.p]
kind = "openai"
base_url = "{url}"
api_key = "k"
{extra}
[[routes]]
match = "*"
to = ["p"]
'''


@pytest.fixture
def slow():
    up = FakeUpstream(script=lambda req: [("sleep", 0.3), *json_response(CHAT_COMPLETION)]).start()
    yield up
    up.stop()


def test_requests_share_the_capped_connections(make_gateway, slow, parser):
    gw = make_gateway(parser=parser, config_text=provider(slow.base_url, "max_connections = 2"))
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    results: list[str] = []

    def one() -> None:
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        results.append(r.choices[0].message.content)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 6
    assert slow.max_open_connections <= 2 and slow.connections <= 2


def test_no_connection_in_time_is_a_503_in_the_clients_protocol(make_gateway, parser):
    up = FakeUpstream(script=lambda req: [("sleep", 3.0), *json_response(CHAT_COMPLETION)]).start()
    try:
        gw = make_gateway(parser=parser, config_text=provider(
            up.base_url, 'max_connections = 1\nconnect_timeout = "200ms"'))
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        anth = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
        first = threading.Thread(target=lambda: client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]))
        first.start()
        held = threading.Event()
        for _ in range(2000):  # until the first request holds the only connection
            if up.requests:
                break
            held.wait(0.005)
        with pytest.raises(anthropic.APIStatusError) as info:
            anth.messages.create(model="m", max_tokens=5,
                                 messages=[{"role": "user", "content": "x"}])
        assert info.value.status_code == 503
        assert info.value.body["error"]["type"] == "overloaded_error"
        assert "max_connections" in info.value.body["error"]["message"]
        first.join(30)
        rows = gw.wait_rows(2)
        refused = [r for r in rows if r["status"] == 503]
        assert len(refused) == 1 and refused[0]["error_kind"] == "overloaded"
        assert up.connections == 1
    finally:
        up.stop()
