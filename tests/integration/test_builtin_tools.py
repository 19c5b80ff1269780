"""Another provider's built-in tools: Codex's web_search becomes Anthropic's web search
tool, the ones with no equivalent are left out (logged, counted in the row), or the
request is refused when [routing] builtin_tools = "refuse"."""

from __future__ import annotations

import openai
import pytest

from tests.integration.providers import provider_script
from tests.integration.upstreams import FakeUpstream

TOOLS = [{"type": "function", "name": "exec_command", "description": "run",
          "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
         {"type": "tool_search", "execution": "client"},
         {"type": "web_search", "filters": {"allowed_domains": ["docs.python.org"]}},
         {"type": "file_search", "vector_store_ids": ["vs_1"]}]


@pytest.fixture
def up():
    u = FakeUpstream(script=provider_script("text")).start()
    yield u
    u.stop()


def config(up: FakeUpstream, routing: str = "") -> str:
    return f'''
[routing]
{routing}
[providers.a]
kind = "anthropic"
base_url = "http://127.0.0.1:{up.port}"
api_key = "k"
[[routes]]
match = "*"
to = ["a"]
'''


def test_web_search_is_mapped_and_the_rest_left_out(make_gateway, up, caplog):
    gw = make_gateway(config_text=config(up))
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    r = c.responses.create(model="claude-x", input="hi", tools=TOOLS)
    assert r.output_text
    sent = up.requests[-1].json()["tools"]
    assert [t.get("name") for t in sent] == ["exec_command", "web_search"]
    assert sent[1] == {"type": "web_search_20250305", "name": "web_search", "max_uses": 5,
                       "allowed_domains": ["docs.python.org"]}
    row = gw.wait_rows(1)[0]
    assert (row["status"], row["dropped_tools"]) == (200, 2)
    assert any("tool_search, file_search" in r.getMessage() for r in caplog.records)


def test_builtin_tools_refuse_gets_a_400_naming_them(make_gateway, up):
    gw = make_gateway(config_text=config(up, 'builtin_tools = "refuse"'))
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(model="claude-x", input="hi", tools=TOOLS)
    body = err.value.body
    assert body["param"] == "tools" and "tool_search" in body["message"]
    assert up.requests == []
    row = gw.wait_rows(1)[0]
    assert (row["status"], row["error_kind"]) == (400, "bad_request")
