"""The request facts accounting reads: the output limit asked and the end user."""

from __future__ import annotations

from protocols.ir import (
    FORMAT_ANTHROPIC_MESSAGES,
    FORMAT_GEMINI,
    FORMAT_OPENAI_CHAT,
    FORMAT_OPENAI_RESPONSES,
)
from protocols.request_facts import end_user, output_tokens_asked


def test_output_tokens_asked() -> None:
    assert output_tokens_asked(FORMAT_OPENAI_CHAT, {"max_tokens": 50}) == 50
    assert output_tokens_asked(FORMAT_OPENAI_CHAT,
                               {"max_tokens": 50, "max_completion_tokens": 70}) == 70
    assert output_tokens_asked(FORMAT_OPENAI_CHAT, {"max_tokens": "50"}) is None
    assert output_tokens_asked(FORMAT_ANTHROPIC_MESSAGES, {"max_tokens": 1024}) == 1024
    assert output_tokens_asked(FORMAT_OPENAI_RESPONSES, {"max_output_tokens": 9}) == 9
    assert output_tokens_asked(FORMAT_GEMINI,
                               {"generationConfig": {"maxOutputTokens": 8}}) == 8
    assert output_tokens_asked(FORMAT_GEMINI, {"generationConfig": [1]}) is None
    for fmt in (FORMAT_OPENAI_CHAT, FORMAT_ANTHROPIC_MESSAGES, FORMAT_OPENAI_RESPONSES,
                FORMAT_GEMINI):
        assert output_tokens_asked(fmt, {}) is None
        assert output_tokens_asked(fmt, {"max_tokens": -1, "max_output_tokens": True}) is None


def test_end_user() -> None:
    assert end_user(FORMAT_OPENAI_CHAT, {"user": "u1"}) == "u1"
    assert end_user(FORMAT_OPENAI_CHAT, {"user": "u1", "safety_identifier": "s1"}) == "s1"
    assert end_user(FORMAT_OPENAI_RESPONSES, {"safety_identifier": "s2"}) == "s2"
    assert end_user(FORMAT_ANTHROPIC_MESSAGES, {"metadata": {"user_id": "a1"}}) == "a1"
    assert end_user(FORMAT_ANTHROPIC_MESSAGES, {"metadata": "a1"}) is None
    assert end_user(FORMAT_OPENAI_CHAT, {"user": 5}) is None
    assert end_user(FORMAT_GEMINI, {"user": "x"}) is None
