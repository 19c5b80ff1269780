"""Codex CLI 0.171.0 (OpenAI Responses client) through the gateway, one tool loop.

``codex exec`` runs with a private CODEX_HOME whose only provider is the gateway's
``/v1`` (``wire_api = "responses"``); the gateway routes its model to a scripted fake
provider, which first asks for an ``exec_command`` call running
``touch created_by_tool.txt`` and, once the ``function_call_output`` comes back,
answers ``DONE``. Setup and checks live in conftest.py.
"""

from __future__ import annotations

import pytest

from tests.agents.conftest import (
    CODEX_MODEL,
    assert_client_succeeded,
    assert_ledger,
    assert_tool_loop,
    assert_upstream_auth,
    run_codex,
)

pytestmark = pytest.mark.agents

UPSTREAM_KEY = "sk-upstream-secret"


def test_codex_to_anthropic_upstream(agent_bins, make_gateway, scripted_upstream, tmp_path):
    """Translated: client /v1/responses -> provider /v1/messages."""
    up = scripted_upstream("anthropic")
    gw = make_gateway(env={"TOKENWAY_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{up.port}",
                           "TOKENWAY_ANTHROPIC_API_KEY": UPSTREAM_KEY,
                           "TOKENWAY_ROUTES": "*=>anthropic"})
    run = run_codex(agent_bins.codex, gw.url + "/v1", tmp_path)
    assert_client_succeeded(run)
    assert_tool_loop(up.scripted, "exec_command", run)
    assert {r.path.split("?")[0] for r in up.requests} == {"/v1/messages"}
    assert_upstream_auth(up, "x-api-key", UPSTREAM_KEY)
    rows = assert_ledger(gw, "/v1/responses", "anthropic")
    assert all(r["model"] == CODEX_MODEL for r in rows), rows


def test_codex_to_openai_responses_upstream(agent_bins, make_gateway, scripted_upstream,
                                            tmp_path):
    """Passthrough: client /v1/responses -> provider /v1/responses."""
    up = scripted_upstream("responses")
    gw = make_gateway(env={"TOKENWAY_OPENAI_BASE_URL": up.base_url,
                           "TOKENWAY_OPENAI_API_KEY": UPSTREAM_KEY,
                           "TOKENWAY_ROUTES": "*=>openai"})
    run = run_codex(agent_bins.codex, gw.url + "/v1", tmp_path)
    assert_client_succeeded(run)
    assert_tool_loop(up.scripted, "exec_command", run)
    assert {r.path for r in up.requests} == {"/v1/responses"}
    assert_upstream_auth(up, "authorization", f"Bearer {UPSTREAM_KEY}")
    rows = assert_ledger(gw, "/v1/responses", "openai")
    assert all(r["model"] == CODEX_MODEL for r in rows), rows


def test_codex_with_its_default_tools_on_an_anthropic_upstream(agent_bins, make_gateway,
                                                               scripted_upstream, tmp_path):
    """Codex with a model it knows (gpt-5.5) and its default tools, web search among
    them, which only OpenAI runs: on an Anthropic provider web_search becomes
    Anthropic's web search tool and the session completes (tool_search, which some
    Codex features add, is left out and counted: tests/protocols and
    tests/integration/test_builtin_tools.py)."""
    up = scripted_upstream("anthropic")
    gw = make_gateway(env={"TOKENWAY_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{up.port}",
                           "TOKENWAY_ANTHROPIC_API_KEY": UPSTREAM_KEY,
                           "TOKENWAY_ROUTES": "*=>anthropic"})
    run = run_codex(agent_bins.codex, gw.url + "/v1", tmp_path, model="gpt-5.5",
                    default_tools=True)
    assert_client_succeeded(run)
    assert_tool_loop(up.scripted, "exec_command", run)
    turns = [r.json() for r in up.requests if r.path.split("?")[0] == "/v1/messages"]
    kinds = {t.get("type", "function") for body in turns for t in body.get("tools", [])}
    assert "web_search_20250305" in kinds, kinds
    assert not {"tool_search", "web_search"} & kinds, kinds
    rows = assert_ledger(gw, "/v1/responses", "anthropic")
    # Whatever this Codex offered beyond web search (tool_search, with some of its
    # features) never reaches Anthropic; a row counts what was left out.
    assert all(r["dropped_tools"] in (None, 1) for r in rows), rows
