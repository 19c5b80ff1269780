"""A broken upstream stream gives the same events whatever the chunking, every format.

Every stream decoder follows one contract (``protocols/_streams.py``): when a frame is bad
(not JSON, not an object) or the body exceeds a buffer limit (a line over
``sse.MAX_LINE_BYTES``, an event over ``sse.MAX_EVENT_BYTES``), the events decoded
before it in the same ``feed()`` call are returned, and the error is raised by the next
call (``feed`` or ``close``). Fed whole or split anywhere, the events up to the error are
the same, and so are the bytes a client of any format gets from ``Translation``.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from protocols import ir, sse
from protocols.errors import BufferLimitExceeded, UpstreamProtocolError
from protocols.translate import Translation, format_module
from tests.protocols.conftest import CREATED, REQUEST_ID, byte_at_a_time

CHAT, ANTHROPIC, RESPONSES, GEMINI = ir.FORMATS[0], ir.FORMATS[2], ir.FORMATS[1], ir.FORMATS[3]
FORMATS = [CHAT, ANTHROPIC, RESPONSES, GEMINI]

#: A few good frames per upstream format: the message starts and some text arrives.
GOOD: dict[str, bytes] = {
    CHAT: (
        b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant",'
        b'"content":""}}]}\n\n'
        b'data: {"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
    ),
    ANTHROPIC: (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1",'
        b'"model":"m","usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"hi"}}\n\n'
    ),
    RESPONSES: (
        b'event: response.created\ndata: {"type":"response.created","sequence_number":0,'
        b'"response":{"id":"resp_1","model":"m"}}\n\n'
        b'event: response.output_item.added\ndata: {"type":"response.output_item.added",'
        b'"sequence_number":1,"output_index":0,"item":{"id":"msg_1","type":"message",'
        b'"role":"assistant","content":[]}}\n\n'
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
        b'"sequence_number":2,"output_index":0,"content_index":0,"delta":"hi"}\n\n'
    ),
    GEMINI: (
        b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"h"}]}}],'
        b'"responseId":"r1","modelVersion":"m"}\r\n\r\n'
        b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"i"}]}}],'
        b'"responseId":"r1","modelVersion":"m"}\r\n\r\n'
    ),
}

MIB = 1 << 20
#: Bad tails: small ones are fed byte at a time too; the limit ones are megabytes.
BAD: dict[str, bytes] = {
    "not-json": b"data: {broken\n\n",
    "not-an-object": b"data: 7\n\n",
    "line-over-limit": b"data: " + b"x" * sse.MAX_LINE_BYTES + b"\n\n",
    "event-over-limit": (b"data: " + b"x" * MIB + b"\n") * (sse.MAX_EVENT_BYTES // MIB) + b"\n",
}
SMALL = ("not-json", "not-an-object")

REQUESTS: dict[str, dict[str, Any]] = {
    CHAT: {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True,
           "stream_options": {"include_usage": True}},
    ANTHROPIC: {"model": "m", "max_tokens": 64, "stream": True,
                "messages": [{"role": "user", "content": "x"}]},
    RESPONSES: {"model": "m", "input": "x", "stream": True},
    GEMINI: {"model": "m", "stream": True, "contents": [{"parts": [{"text": "x"}]}]},
}


def chunkings(good: bytes, bad: str) -> list[list[bytes]]:
    """The good frames and the bad tail in one chunk first, then other splits: the tail
    alone, cuts inside the good frames and inside the tail, and (when small) bytewise."""
    tail = BAD[bad]
    raw = good + tail
    out = [[raw], [good, tail], [good[:9], good[9:] + tail], [good + tail[:7], tail[7:]],
           [good[:-1], raw[len(good) - 1:]]]
    if bad in SMALL:
        out.append(byte_at_a_time(raw))
    return out


def decode(upstream: str, chunks: list[bytes]) -> tuple[list[ir.StreamEvent], type]:
    d = format_module(upstream).StreamDecoder(None)
    events: list[ir.StreamEvent] = []
    with pytest.raises(UpstreamProtocolError) as info:
        for c in chunks:
            events += d.feed(c)
        events += d.close()
    with pytest.raises(UpstreamProtocolError):
        d.feed(b"")  # stays broken
    return events, type(info.value)


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("upstream", FORMATS)
def test_decoder_events_before_the_error_do_not_depend_on_the_split(upstream: str,
                                                                     bad: str) -> None:
    good_events = format_module(upstream).StreamDecoder(None).feed(GOOD[upstream])
    assert any(type(e) is ir.TextDelta for e in good_events)
    expected_error = BufferLimitExceeded if "limit" in bad else UpstreamProtocolError
    for chunks in chunkings(GOOD[upstream], bad):
        events, error = decode(upstream, chunks)
        assert events == good_events, [len(c) for c in chunks]
        assert error is expected_error


@pytest.mark.parametrize("upstream", FORMATS)
def test_good_frames_and_a_bad_one_in_one_call(upstream: str) -> None:
    """The call that holds the bad frame returns the events before it; the next call
    (``feed`` or ``close``) raises."""
    for last in ("feed", "close"):
        d = format_module(upstream).StreamDecoder(None)
        events = d.feed(GOOD[upstream] + BAD["not-json"])
        assert events and not any(type(e) is ir.StreamError for e in events)
        with pytest.raises(UpstreamProtocolError):
            d.feed(b"") if last == "feed" else d.close()


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("client", FORMATS)
@pytest.mark.parametrize("upstream", FORMATS)
def test_client_bytes_do_not_depend_on_the_split(client: str, upstream: str, bad: str) -> None:
    outs = set()
    # Megabyte tails: three splits are enough here (the decoder test tries them all).
    for chunks in chunkings(GOOD[upstream], bad)[: None if bad in SMALL else 3]:
        t = Translation(client, upstream, request_id=REQUEST_ID, created=CREATED)
        t.request(copy.deepcopy(REQUESTS[client]))
        out = b"".join(t.feed(c) for c in chunks) + t.finish()
        assert t.failed
        if client == upstream:
            # Observe mode forwards the bytes; the proxy ends the client's stream.
            assert out == b"".join(chunks) and not t.ended
        else:
            assert t.ended  # the client's own error event ends the stream
            assert b"upstream protocol error: " in out
        outs.add(out)
    assert len(outs) == 1
