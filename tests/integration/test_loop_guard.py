"""The loop guard through the gateway: warning injected at 3, loop stopped at 5."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from tests.integration.upstreams import CHAT_COMPLETION, json_response
from tests.protocols.test_loopguard import anthropic as anthropic_history
from tests.protocols.test_loopguard import chat as chat_history


@pytest.fixture
def ggw(make_gateway, upstream):
    upstream.script = lambda req: json_response(CHAT_COMPLETION)
    return make_gateway(env={"TOKENWAY_OPENAI_BASE_URL": upstream.base_url,
                             "TOKENWAY_ROUTES": "*=>openai"})


def test_warning_injected_then_loop_stopped_openai(ggw, upstream):
    c = openai.OpenAI(base_url=ggw.url + "/v1", api_key="x", max_retries=0)
    c.chat.completions.create(**chat_history(2))
    assert "Loop warning" not in upstream.requests[-1].body.decode()
    c.chat.completions.create(**chat_history(3))
    sent = upstream.requests[-1].json()["messages"][-1]
    assert sent["role"] == "system" and "called 3 times in a row" in sent["content"]
    with pytest.raises(openai.BadRequestError) as ei:
        c.chat.completions.create(**chat_history(5))
    assert ei.value.body["code"] == "tool_loop_detected"
    assert len(upstream.requests) == 2  # the stopped request never reached the provider
    rows = ggw.wait_rows(3)
    assert [r["tool_repeats"] for r in rows] == [2, 3, 5]
    assert rows[-1]["error_kind"] == "tool_loop" and rows[-1]["status"] == 400


def test_loop_stopped_in_anthropic_format(ggw):
    a = anthropic.Anthropic(base_url=ggw.url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as ei:
        a.messages.create(**anthropic_history(6))
    assert ei.value.body["error"]["type"] == "invalid_request_error"
    assert "tool loop" in json.dumps(ei.value.body)


def test_thresholds_configurable(make_gateway, upstream):
    upstream.script = lambda req: json_response(CHAT_COMPLETION)
    gw = make_gateway(env={"TOKENWAY_OPENAI_BASE_URL": upstream.base_url,
                           "TOKENWAY_ROUTES": "*=>openai"},
                      config_text="[agent_safety]\ntool_loop_warn = 0\ntool_loop_stop = 0\n")
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    c.chat.completions.create(**chat_history(9))
    assert "Loop warning" not in upstream.requests[-1].body.decode()
