"""The Chat observe-mode tap: bytes pass unchanged (whole events), facts are read off,
the forced usage chunk is stripped, whatever the chunking."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.observe import ChatStreamObserver, is_error_frame
from tests.integration.upstreams import transcript

USAGE = transcript("openai_chat_stream_include_usage.sse")
TOOLS = transcript("openai_chat_stream_parallel_tool_calls.sse")


def spaced(data: bytes) -> bytes:
    """The same stream as a server writing JSON with spaces (Python's json.dumps)."""
    out = []
    for frame in data.split(b"\n\n"):
        if frame.startswith(b"data: {"):
            frame = b"data: " + json.dumps(json.loads(frame[6:])).encode()
        out.append(frame)
    return b"\n\n".join(out)


def crlf(data: bytes) -> bytes:
    return data.replace(b"\n", b"\r\n")


def run(data: bytes, cuts: list[int], strip: bool) -> tuple[bytes, ChatStreamObserver]:
    o = ChatStreamObserver(strip_usage=strip)
    out = []
    prev = 0
    for c in sorted(set(cuts)) + [len(data)]:
        if c > prev:
            out.append(o.feed(data[prev:c]))
            prev = c
    out.append(o.finish())
    return b"".join(out), o


def without_usage_frame(data: bytes, sep: bytes) -> bytes:
    frames = data.split(sep + sep)
    kept = [f for f in frames if not (b'"choices":[]' in f or b'"choices": []' in f)]
    return (sep + sep).join(kept)


@pytest.mark.parametrize("shape", [lambda d: d, spaced, crlf])
@pytest.mark.parametrize("strip", [False, True])
@given(cuts=st.lists(st.integers(min_value=1, max_value=len(USAGE) - 1), max_size=30))
@settings(max_examples=60, deadline=None)
def test_any_chunking_same_bytes_and_facts(shape, strip, cuts):
    data = shape(USAGE)
    cuts = [min(c, len(data) - 1) for c in cuts]
    got, o = run(data, cuts, strip)
    whole, ref = run(data, [], strip)
    assert got == whole
    sep = b"\r\n" if b"\r\n" in data else b"\n"
    assert got == (without_usage_frame(data, sep) if strip else data)
    assert o.complete and o.error is None
    assert o.usage == ref.usage and o.usage["prompt_tokens"] > 0
    assert o.usage["prompt_tokens_details"]["cached_tokens"] > 0
    assert o.model == "gpt-4o-mini-2024-07-18" and o.finish_reason == "stop"


def test_byte_at_a_time_tool_stream():
    got, o = run(TOOLS, list(range(1, len(TOOLS))), False)
    assert got == TOOLS and o.finish_reason == "tool_calls" and o.complete


def test_mid_stream_error_is_seen_and_not_complete():
    err = b'data: {"error":{"message":"boom","type":"server_error"}}\n\n'
    data = USAGE[:USAGE.index(b"data: ", 600)] + err
    got, o = run(data, [5, 700], False)
    assert got == data and not o.complete and o.error["message"] == "boom"
    assert o.error_relayed
    assert is_error_frame("openai_chat", err)


def test_cut_stream_is_not_complete_and_partial_event_dropped():
    data = USAGE[:USAGE.index(b"data: ", 600) + 40]  # ends inside an event
    got, o = run(data, [], False)
    assert not o.complete
    assert got.endswith(b"\n\n") and len(got) < len(data)


def test_events_leave_whole_and_keepalives_wait_for_a_boundary():
    o = ChatStreamObserver()
    first = USAGE.index(b"\n\n") + 2
    assert o.feed(USAGE[: first + 10]) == USAGE[:first]
    assert not o.at_boundary  # ten bytes of the next event are held
    o.feed(USAGE[first + 10: USAGE.index(b"\n\n", first) + 2])
    assert o.at_boundary


def test_an_endless_event_is_bounded(monkeypatch):
    import protocols.observe as observe
    from protocols.errors import BufferLimitExceeded

    monkeypatch.setattr(observe, "MAX_EVENT_BYTES", 1000)
    o = ChatStreamObserver()
    o.feed(USAGE[: USAGE.index(b"\n\n") + 2])
    with pytest.raises(BufferLimitExceeded):
        for _ in range(20):
            o.feed(b'data: {"choices":[{"delta":{"content":"' + b"x" * 100)
