"""Output-token caps on upstream bodies of every format."""

from __future__ import annotations

import pytest

from protocols.model_limits import cap_output_tokens, strip_reasoning


def test_chat_both_keys_capped_and_small_requests_untouched():
    body = {"model": "m", "max_completion_tokens": 32000, "max_tokens": 20000}
    out = cap_output_tokens("openai_chat", body, 16384)
    assert out["max_completion_tokens"] == 16384 and out["max_tokens"] == 16384
    assert body["max_completion_tokens"] == 32000  # the caller's dict is not changed
    small = {"model": "m", "max_tokens": 100}
    assert cap_output_tokens("openai_chat", small, 16384) is small
    none = {"model": "m"}
    assert cap_output_tokens("openai_chat", none, 16384) is none


@pytest.mark.parametrize("budget, cap, expect", [
    (10000, 8192, {"type": "enabled", "budget_tokens": 4096}),   # half of the cap
    (2000, 8192, {"type": "enabled", "budget_tokens": 2000}),    # already below
    (10000, 1500, None),                                           # half under 1,024: off
])
def test_anthropic_max_tokens_and_thinking_budget(budget, cap, expect):
    body = {"model": "m", "max_tokens": 32000,
            "thinking": {"type": "enabled", "budget_tokens": budget}}
    out = cap_output_tokens("anthropic_messages", body, cap)
    assert out["max_tokens"] == cap
    assert out.get("thinking") == expect
    assert body["thinking"]["budget_tokens"] == budget


def test_anthropic_adaptive_thinking_kept():
    body = {"model": "m", "max_tokens": 64000, "thinking": {"type": "adaptive"}}
    assert cap_output_tokens("anthropic_messages", body, 8192)["thinking"] == {"type": "adaptive"}


def test_responses_and_gemini():
    r = cap_output_tokens("openai_responses", {"input": "x", "max_output_tokens": 50000}, 4096)
    assert r["max_output_tokens"] == 4096
    g = {"contents": [], "generationConfig": {"maxOutputTokens": 65536, "temperature": 1,
                                              "thinkingConfig": {"thinkingBudget": 30000}}}
    out = cap_output_tokens("gemini", g, 8192)
    assert out["generationConfig"] == {"maxOutputTokens": 8192, "temperature": 1,
                                       "thinkingConfig": {"thinkingBudget": 8192}}
    dyn = {"generationConfig": {"maxOutputTokens": 100, "thinkingConfig": {"thinkingBudget": -1}}}
    assert cap_output_tokens("gemini", dyn, 8192) is dyn


def test_unknown_format():
    with pytest.raises(ValueError):
        cap_output_tokens("nope", {}, 1)


@pytest.mark.parametrize("fmt, body, expect", [
    ("openai_chat", {"model": "m", "reasoning_effort": "high", "messages": []},
     {"model": "m", "messages": []}),
    ("anthropic_messages", {"model": "m", "max_tokens": 9, "thinking": {"type": "adaptive"},
                            "output_config": {"effort": "medium"}},
     {"model": "m", "max_tokens": 9}),
    ("anthropic_messages",
     {"model": "m", "output_config": {"effort": "low", "format": {"type": "x"}}},
     {"model": "m", "output_config": {"format": {"type": "x"}}}),
    ("openai_responses", {"model": "m", "reasoning": {"effort": "low"},
                          "include": ["reasoning.encrypted_content"]},
     {"model": "m"}),
    ("openai_responses", {"model": "m", "include": ["reasoning.encrypted_content", "x"]},
     {"model": "m", "include": ["x"]}),
    ("gemini", {"generationConfig": {"temperature": 1, "thinkingConfig": {"thinkingBudget": 9}}},
     {"generationConfig": {"temperature": 1}}),
])
def test_strip_reasoning(fmt, body, expect):
    before = repr(body)
    assert strip_reasoning(fmt, body) == expect
    assert repr(body) == before  # the caller's dict is not changed


@pytest.mark.parametrize("fmt", ["openai_chat", "anthropic_messages", "openai_responses", "gemini"])
def test_strip_reasoning_leaves_a_body_without_any_alone(fmt):
    body = {"model": "m", "generationConfig": {"temperature": 0}}
    assert strip_reasoning(fmt, body) is body
