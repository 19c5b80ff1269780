"""The built-in loopback model through the real gateway with the openai SDK."""

from __future__ import annotations

import json

import openai
import pytest

from tests.integration import rawhttp


@pytest.fixture
def lgw(make_gateway, loop_kind, parser):
    return make_gateway(loop_kind=loop_kind, parser=parser)


def client(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=10)


def test_loopback_non_stream_and_stream(lgw):
    c = client(lgw)
    r = c.chat.completions.create(model="loopback",
                                  messages=[{"role": "user", "content": "hello there"}])
    text = r.choices[0].message.content
    assert "hello there" in text
    chunks = list(c.chat.completions.create(
        model="loopback", messages=[{"role": "user", "content": "hello there"}], stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == text
    assert len(chunks) >= 3
    rows = lgw.wait_rows(2)
    assert [r["stream"] for r in rows] == [False, True]
    assert all(r["provider"] == "loopback" and r["input_tokens"] for r in rows)


def test_loopback_models_and_health(lgw):
    c = client(lgw)
    assert "loopback" in [m.id for m in c.models.list()]
    status, _, body = rawhttp.request(lgw.url + "/health")
    h = json.loads(body)
    assert h["status"] == "ok" and "dropped" in h["ledger"]


def test_loopback_embeddings_base64_and_float(lgw):
    c = client(lgw)
    a = c.embeddings.create(model="loopback", input="abc", dimensions=8).data[0].embedding
    b = c.embeddings.create(model="loopback", input="abc", dimensions=8,
                            encoding_format="float").data[0].embedding
    assert len(a) == 8 and a == pytest.approx(b, abs=1e-6)


def test_bad_json_and_missing_model(lgw):
    status, _, body = rawhttp.request(lgw.url + "/v1/chat/completions", "POST", b"{nope",
                                      {"content-type": "application/json"})
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"
    status, _, body = rawhttp.request(lgw.url + "/v1/chat/completions", "POST", {"messages": []})
    assert status == 400 and json.loads(body)["error"]["param"] == "model"
    rows = lgw.wait_rows(2)
    assert [x["status"] for x in rows] == [400, 400]
