"""count_tokens: answered locally, never billed, and cheap enough for agent bursts."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic

from tests.integration.upstreams import shared_dir


def capture_body() -> dict:
    path = shared_dir() / "conformance" / "captures" / "claude-code-2.1.332-default-turn1.json"
    data = json.loads(Path(path).read_text())
    body = data.get("body", data)
    return {k: body[k] for k in ("model", "messages", "system", "tools") if k in body}


def test_fifty_count_tokens_calls_all_answered_and_not_billed(make_gateway, upstream):
    gw = make_gateway(env={"TOKENWAY_OPENAI_BASE_URL": upstream.base_url,
                           "TOKENWAY_ROUTES": "*=>openai"})
    c = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    body = capture_body()  # a real Claude Code request: large system prompt and tools

    def one(_):
        return c.messages.count_tokens(**body).input_tokens

    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(one, range(50)))
    assert len(set(counts)) == 1 and counts[0] > 1000  # deterministic, counts system+tools
    assert upstream.requests == []  # answered locally: the OpenAI provider never saw them
    rows = gw.wait_rows(50)
    assert len(rows) == 50
    assert all(r["status"] == 200 and r["input_tokens"] is None and r["provider"] == "local"
               and r["client_protocol"] == "anthropic_count_tokens" for r in rows)


def test_count_tokens_counts_images_and_tools(make_gateway):
    gw = make_gateway()
    c = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    hi = [{"role": "user", "content": "hi"}]
    image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    plain = c.messages.count_tokens(model="loopback", messages=hi)
    with_image = c.messages.count_tokens(model="loopback", messages=[{"role": "user", "content": [
        {"type": "image", "source": image}, {"type": "text", "text": "hi"}]}])
    with_tool = c.messages.count_tokens(model="loopback", messages=hi,
                                        tools=[{"name": "get_weather", "description": "Weather",
                                                "input_schema": {"type": "object", "properties": {
                                                    "city": {"type": "string"}}}}])
    assert with_image.input_tokens > plain.input_tokens + 1000
    assert with_tool.input_tokens > plain.input_tokens


def test_count_tokens_uses_anthropic_provider_when_routed(make_gateway, upstream):
    from tests.integration.upstreams import json_response

    upstream.script = lambda req: json_response({"input_tokens": 4242})
    gw = make_gateway(env={"TOKENWAY_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{upstream.port}",
                           "TOKENWAY_ANTHROPIC_API_KEY": "k", "TOKENWAY_ROUTES": "*=>anthropic"})
    c = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    r = c.messages.count_tokens(model="claude-x", messages=[{"role": "user", "content": "hi"}])
    assert r.input_tokens == 4242
    assert upstream.requests[-1].path == "/v1/messages/count_tokens"
    assert gw.wait_rows(1)[0]["input_tokens"] is None
