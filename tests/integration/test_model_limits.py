"""``[providers.X] max_output_tokens`` and ``no_reasoning``: what the provider receives
fits the model, in every client format, translated or not; requests asking for less go
through untouched."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import anthropic
import openai
import pytest

from tests.integration.providers import ANTHROPIC_BODIES
from tests.integration.upstreams import (
    CHAT_COMPLETION,
    FakeUpstream,
    json_response,
    shared_dir,
)


def config(openai_url: str, anthropic_url: str) -> str:
    return f'''
[providers.openai]
kind = "openai"
base_url = "{openai_url}"
api_key = "k"
max_output_tokens = {{ "gpt-4o*" = 16384, "*" = 32768 }}
no_reasoning = ["gpt-4.1*"]
[providers.anthropic]
kind = "anthropic"
base_url = "{anthropic_url}"
api_key = "k"
max_output_tokens = 8192
[[routes]]
match = "claude-*"
to = ["anthropic"]
[[routes]]
match = "*"
to = ["openai"]
'''


@pytest.fixture
def ups():
    o = FakeUpstream(script=lambda req: json_response(CHAT_COMPLETION)).start()
    a = FakeUpstream(script=lambda req: json_response(ANTHROPIC_BODIES["text"])).start()
    yield o, a
    o.stop()
    a.stop()


@pytest.fixture
def gw(make_gateway, ups):
    o, a = ups
    return make_gateway(config_text=config(o.base_url, a.base_url.removesuffix("/v1")))


def test_claude_code_sized_request_to_an_openai_model_is_capped(gw, ups):
    o, _ = ups
    c = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    # An explicit timeout: the SDK refuses big non-stream requests without one.
    msg = c.messages.create(model="gpt-4o", max_tokens=32000, timeout=30,
                            messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text
    sent = o.requests[-1].json()
    assert sent["max_completion_tokens"] == 16384
    c.messages.create(model="gpt-4.1", max_tokens=64000, timeout=30,
                      messages=[{"role": "user", "content": "hi"}])
    assert o.requests[-1].json()["max_completion_tokens"] == 32768  # the "*" entry


def test_chat_passthrough_capped_and_small_body_forwarded_as_sent(gw, ups):
    o, _ = ups
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    c.chat.completions.create(model="gpt-4o-mini", max_tokens=50000,
                              messages=[{"role": "user", "content": "hi"}])
    assert o.requests[-1].json()["max_tokens"] == 16384
    c.chat.completions.create(model="gpt-4o-mini", max_tokens=100,
                              messages=[{"role": "user", "content": "hi"}])
    assert o.requests[-1].json()["max_tokens"] == 100


def test_anthropic_passthrough_capped_with_its_thinking_budget(gw, ups):
    _, a = ups
    c = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    c.messages.create(model="claude-sonnet-4-6", max_tokens=32000, timeout=30,
                      thinking={"type": "enabled", "budget_tokens": 20000},
                      messages=[{"role": "user", "content": "hi"}])
    sent = a.requests[-1].json()
    assert sent["max_tokens"] == 8192
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 4096}


def test_responses_client_to_anthropic_capped(gw, ups):
    _, a = ups
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    r = c.responses.create(model="claude-haiku-4-5", input="hi", max_output_tokens=100000)
    assert r.output_text
    assert a.requests[-1].json()["max_tokens"] == 8192


def post_messages(url: str, body: dict) -> int:
    req = urllib.request.Request(url + "/v1/messages", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json", "x-api-key": "x",
                                          "anthropic-version": "2023-06-01"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def test_real_claude_code_turn_on_a_model_without_reasoning(gw, ups):
    # Claude Code's own first request: max_tokens 128000, adaptive thinking, an effort.
    path = shared_dir() / "conformance" / "captures" / "claude-code-2.1.332-default-turn1.json"
    data = json.loads(Path(path).read_text())
    body = dict(data.get("body", data), model="gpt-4.1", stream=False)
    assert body["max_tokens"] == 128000 and body["thinking"]["type"] == "adaptive"
    assert post_messages(gw.url, body) == 200
    o, _ = ups
    sent = o.requests[-1].json()
    assert "reasoning_effort" not in sent and "reasoning" not in sent
    assert sent["max_completion_tokens"] == 32768
    # A model with reasoning keeps it.
    assert post_messages(gw.url, dict(body, model="gpt-5")) == 200
    assert o.requests[-1].json().get("reasoning_effort") == "medium"
