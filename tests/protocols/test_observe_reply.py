"""Observe mode on complete replies: usage and model read straight from the reply agree
with the full decode, for every format; the rest is decoded only when asked for."""

from __future__ import annotations

import pytest

from protocols.translate import Translation, format_module
from tests.integration.providers import ANTHROPIC_BODIES, CHAT_BODIES, GEMINI_BODIES
from tests.integration.providers import _completed as responses_body

CASES = [("openai_chat", b) for b in CHAT_BODIES.values()] + \
    [("anthropic_messages", b) for b in ANTHROPIC_BODIES.values()] + \
    [("gemini", b) for b in GEMINI_BODIES.values()] + \
    [("openai_responses", responses_body(n)) for n in ("responses_stream_text.sse",
                                                          "responses_stream_function_call.sse")]


def observed(fmt: str, body) -> Translation:
    tr = Translation(fmt, fmt, request_id="r", created=0)
    tr.request({"model": "asked"})
    assert tr.response(body) is body
    return tr


@pytest.mark.parametrize("fmt, body", CASES)
def test_facts_match_the_full_decode(fmt, body):
    tr = observed(fmt, body)
    full = format_module(fmt).decode_response(body)
    assert tr.usage == full.usage and tr.model == (full.model or "asked")
    assert tr._response is None  # nothing decoded yet
    assert tr.stop_reason == full.stop_reason and not tr.failed
    assert tr.tool_calls_seen == sum(1 for b in full.content if type(b).__name__ == "ToolCall")


def test_a_reply_the_decoder_cannot_read_is_failed_but_keeps_its_usage():
    body = {"id": "x", "model": "gpt-x", "choices": "nope",
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    tr = observed("openai_chat", body)
    assert tr.usage.input_tokens == 3 and tr.model == "gpt-x"
    assert tr.failed and tr.stop_reason is None
    assert tr.usage.input_tokens == 3  # facts do not depend on the order they are read in


def test_unreadable_usage_and_non_object_reply():
    tr = observed("anthropic_messages", {"model": "c", "usage": "lots"})
    assert tr.usage is None and tr.failed
    tr = observed("openai_chat", ["not", "an", "object"])
    assert tr.usage is None and tr.model == "asked" and tr.failed
