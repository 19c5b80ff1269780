"""A gateway bug is answered in the client's own protocol, with a ledger row: in a
handler (synchronous) and in an exchange's task (connecting to the provider)."""

from __future__ import annotations

import json

import pytest

from proxy.endpoints import models
from proxy.upstream import UpstreamPool
from tests.integration import rawhttp

MESSAGES = {"model": "claude-x", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gw(make_gateway, upstream):
    return make_gateway(env={"TOKENWAY_OPENAI_BASE_URL": upstream.base_url,
                             "TOKENWAY_ROUTES": "*=>openai"})


def test_handler_crash_answers_in_the_clients_protocol(gw, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("bug in the loop guard")

    monkeypatch.setattr(models, "loop_guard", broken)
    st, _, body = rawhttp.request(gw.url + "/v1/messages", "POST", MESSAGES)
    assert st == 500
    obj = json.loads(body)
    assert obj["type"] == "error" and obj["error"]["type"] == "api_error"
    assert "bug" not in body.decode()  # nothing of the failure leaks
    [row] = gw.wait_rows(1)
    assert row["status"] == 500 and row["error_kind"] == "internal"
    assert row["client_protocol"] == "anthropic_messages"
    # The gateway carries on.
    monkeypatch.undo()
    body = {"model": "loopback", "messages": [{"role": "user", "content": "x"}]}
    st, _, _ = rawhttp.request(gw.url + "/v1/chat/completions", "POST", body)
    assert st == 200
    gw.errors.clear()  # the crash was logged on purpose


def test_crash_in_an_exchange_task_answers_in_the_clients_protocol(gw, monkeypatch):
    async def broken(self, key, timeout_s):
        raise RuntimeError("bug while connecting")

    monkeypatch.setattr(UpstreamPool, "connect", broken)
    st, _, body = rawhttp.request(
        gw.url + "/v1beta/models/gemini-x:generateContent", "POST",
        {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert st == 500
    err = json.loads(body)["error"]
    assert err["code"] == 500 and err["status"] == "INTERNAL"
    [row] = gw.wait_rows(1)
    assert row["status"] == 500 and row["error_kind"] == "internal"
    gw.errors.clear()
