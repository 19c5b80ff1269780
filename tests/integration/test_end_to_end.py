"""The real ``openai`` SDK through a real gateway to a fake provider, on both
loops and both HTTP/1 parsers."""

from __future__ import annotations

import openai
import pytest

from tests.integration import rawhttp
from tests.integration.upstreams import (
    json_response,
    sse_response,
    transcript,
)


def client(gw, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=kw.pop("api_key", "unused"),
                         max_retries=0, timeout=10, **kw)


def test_non_stream_proxied(gateway, upstream):
    c = client(gateway)
    r = c.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "Hello from upstream!"
    assert r.usage.prompt_tokens == 19
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-upstream-secret"
    assert sent.json()["model"] == "gpt-4.1"
    [row] = gateway.wait_rows(1)
    assert row["status"] == 200 and row["error_kind"] is None
    assert row["provider"] == "openai" and row["model"] == "gpt-4.1"
    assert row["served_model"] == "gpt-4.1-2025-04-14"
    assert (row["input_tokens"], row["output_tokens"], row["cached_tokens"],
            row["reasoning_tokens"]) == (19, 10, 4, 2)
    assert row["stream"] is False and row["bytes_in"] > 0 and row["bytes_out"] > 0
    assert row["latency_ms"] >= row["ttfb_ms"] >= 0


@pytest.mark.parametrize("pieces", [1, 5, 400])
def test_stream_passthrough_strips_forced_usage(gateway, upstream, pieces):
    data = transcript("openai_chat_stream_include_usage.sse")
    upstream.script = lambda req: sse_response(data, pieces)
    c = client(gateway)
    chunks = list(c.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text.startswith("The capital")
    # the client did not ask for usage: the chunk the gateway forced is gone
    assert all(ch.choices for ch in chunks)
    assert upstream.requests[-1].json()["stream_options"] == {"include_usage": True}
    [row] = gateway.wait_rows(1)
    assert row["stream"] is True and row["status"] == 200 and row["error_kind"] is None
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0
    assert row["cached_tokens"] is not None


def test_stream_passthrough_is_byte_exact_when_usage_requested(gateway, upstream):
    data = transcript("openai_chat_stream_include_usage.sse")
    upstream.script = lambda req: sse_response(data, 9)
    status, headers, got = rawhttp.request(gateway.url + "/v1/chat/completions", "POST", {
        "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
        "stream": True, "stream_options": {"include_usage": True}})
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert got == data
    [row] = gateway.wait_rows(1)
    assert row["input_tokens"] is not None


def test_upstream_4xx_relayed(gateway, upstream):
    err = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                     "param": None, "code": "invalid_api_key"}}
    upstream.script = lambda req: json_response(err, 401)
    c = client(gateway)
    with pytest.raises(openai.AuthenticationError) as ei:
        c.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "x"}])
    assert ei.value.body["code"] == "invalid_api_key"
    [row] = gateway.wait_rows(1)
    assert row["status"] == 401 and row["error_kind"] == "upstream_error"


def test_upstream_dies_mid_stream_gives_error_event(gateway, upstream):
    data = transcript("openai_chat_stream_include_usage.sse")
    upstream.script = lambda req: sse_response(data[:700], 2)[:-1] + [("close",)]
    c = client(gateway)
    with pytest.raises(openai.APIError):
        for _ in c.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], stream=True):
            pass
    [row] = gateway.wait_rows(1)
    assert row["status"] == 200 and row["error_kind"] == "stream_cut"


def test_embeddings_proxied(gateway, upstream):
    c = client(gateway)
    r = c.embeddings.create(model="text-embedding-3-small", input="hello",
                            encoding_format="float")
    assert r.data[0].embedding == [0.1, 0.2, 0.3]
    [row] = gateway.wait_rows(1)
    assert row["client_protocol"] == "openai_embeddings" and row["input_tokens"] == 3


def test_unknown_model_404(gateway):
    c = client(gateway)
    with pytest.raises(openai.NotFoundError) as ei:
        c.chat.completions.create(model="nope-1", messages=[{"role": "user", "content": "x"}])
    assert ei.value.body["code"] == "model_not_found"
    [row] = gateway.wait_rows(1)
    assert row["status"] == 404 and row["error_kind"] == "not_found"


def test_keepalive_reuses_upstream_connection(gateway, upstream):
    c = client(gateway)
    for _ in range(5):
        c.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "x"}])
    assert upstream.connections == 1
    assert len(gateway.wait_rows(5)) == 5
