"""Claude Code 2.1.332 (Anthropic Messages client) through the gateway, one tool loop.

Claude Code runs headless (``claude -p``) against ``ANTHROPIC_BASE_URL=<gateway>``;
the gateway routes its model to a scripted fake provider, which first asks for a
``Bash`` call running ``touch created_by_tool.txt`` and, once the tool result comes
back, answers ``DONE``. Setup and checks live in conftest.py.
"""

from __future__ import annotations

import pytest

from tests.agents.conftest import (
    assert_client_succeeded,
    assert_ledger,
    assert_tool_loop,
    assert_upstream_auth,
    run_claude_code,
)

pytestmark = pytest.mark.agents

UPSTREAM_KEY = "sk-upstream-secret"


def test_claude_code_to_openai_chat_upstream(agent_bins, make_gateway, scripted_upstream,
                                             tmp_path):
    """Translated: client /v1/messages -> provider /v1/chat/completions."""
    up = scripted_upstream("chat")
    gw = make_gateway(env={"TOKENWAY_OPENAI_BASE_URL": up.base_url,
                           "TOKENWAY_OPENAI_API_KEY": UPSTREAM_KEY,
                           "TOKENWAY_ROUTES": "*=>openai"})
    run = run_claude_code(agent_bins.claude, gw.url, tmp_path)
    assert_client_succeeded(run)
    assert_tool_loop(up.scripted, "Bash", run)
    assert {r.path for r in up.requests} == {"/v1/chat/completions"}
    assert_upstream_auth(up, "authorization", f"Bearer {UPSTREAM_KEY}")
    rows = assert_ledger(gw, "/v1/messages", "openai")
    assert all(r["model"].startswith("claude") for r in rows), rows


def test_claude_code_to_anthropic_upstream(agent_bins, make_gateway, scripted_upstream,
                                           tmp_path):
    """Passthrough: client /v1/messages -> provider /v1/messages."""
    up = scripted_upstream("anthropic")
    gw = make_gateway(env={"TOKENWAY_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{up.port}",
                           "TOKENWAY_ANTHROPIC_API_KEY": UPSTREAM_KEY,
                           "TOKENWAY_ROUTES": "*=>anthropic"})
    run = run_claude_code(agent_bins.claude, gw.url, tmp_path)
    assert_client_succeeded(run)
    assert_tool_loop(up.scripted, "Bash", run)
    assert {r.path.split("?")[0] for r in up.requests} == {"/v1/messages"}
    assert_upstream_auth(up, "x-api-key", UPSTREAM_KEY)
    # the client's protocol headers reach the provider
    for req in up.requests:
        assert req.headers.get("anthropic-version") == "2023-06-01", req.headers
        assert "claude-code-20250219" in req.headers.get("anthropic-beta", ""), req.headers
    rows = assert_ledger(gw, "/v1/messages", "anthropic")
    assert all(r["model"].startswith("claude") for r in rows), rows
