"""Token counts read from upstream usage objects (protocols/usage.py)."""

from __future__ import annotations

import pytest

from protocols import anthropic_messages as am
from protocols import usage
from protocols.errors import UpstreamProtocolError


def test_counts_up_to_the_bound_are_read():
    u = usage.from_anthropic({"input_tokens": usage.MAX_TOKEN_COUNT, "output_tokens": 2.0,
                              "cache_read_input_tokens": usage.MAX_TOKEN_COUNT})
    assert (u.input_tokens, u.output_tokens) == (2 * usage.MAX_TOKEN_COUNT, 2)


@pytest.mark.parametrize("count", [usage.MAX_TOKEN_COUNT + 1, 2**64, 1e70])
def test_a_count_past_the_bound_is_the_upstreams_error(count):
    """Found by fuzz/replies.py: a 70-digit count became a Python int that no reply
    could be written with (orjson holds 64 bits) and no ledger row could store."""
    with pytest.raises(UpstreamProtocolError, match="input_tokens"):
        usage.from_anthropic({"input_tokens": count, "output_tokens": 1})
    body = {"id": "m", "type": "message", "role": "assistant", "model": "m", "content": [],
            "stop_reason": "end_turn", "usage": {"input_tokens": count, "output_tokens": 1}}
    with pytest.raises(UpstreamProtocolError):
        am.decode_response(body)
