"""The Chat observe-mode tap: bytes pass unchanged (whole events), facts are read off,
the forced usage chunk is stripped, whatever the chunking."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.ir import FORMAT_OPENAI_CHAT
from protocols.observe import StreamTap as ChatTap
from protocols.observe import stream_tap as _tap
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


def run(data: bytes, cuts: list[int], strip: bool) -> tuple[bytes, ChatTap]:
    o = _tap(FORMAT_OPENAI_CHAT, strip_usage=strip)
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
    assert o.complete and o.watch.error is None
    assert o.usage == ref.usage and o.usage.input_tokens > 0
    assert o.usage.cached_tokens > 0
    assert o.model == "gpt-4o-mini-2024-07-18" and o.watch.finish_reason == "stop"


def test_byte_at_a_time_tool_stream():
    got, o = run(TOOLS, list(range(1, len(TOOLS))), False)
    assert got == TOOLS and o.watch.finish_reason == "tool_calls" and o.complete


def test_mid_stream_error_is_seen_and_not_complete():
    err = b'data: {"error":{"message":"boom","type":"server_error"}}\n\n'
    data = USAGE[:USAGE.index(b"data: ", 600)] + err
    got, o = run(data, [5, 700], False)
    assert got == data and not o.complete and o.watch.error["message"] == "boom"
    assert o.error_relayed


def test_cut_stream_is_not_complete_and_partial_event_dropped():
    data = USAGE[:USAGE.index(b"data: ", 600) + 40]  # ends inside an event
    got, o = run(data, [], False)
    assert not o.complete
    assert got.endswith(b"\n\n") and len(got) < len(data)


def test_events_leave_whole_and_keepalives_wait_for_a_boundary():
    o = _tap(FORMAT_OPENAI_CHAT)
    first = USAGE.index(b"\n\n") + 2
    assert o.feed(USAGE[: first + 10]) == USAGE[:first]
    assert not o.at_boundary  # ten bytes of the next event are held
    o.feed(USAGE[first + 10: USAGE.index(b"\n\n", first) + 2])
    assert o.at_boundary


def test_an_endless_event_is_bounded(monkeypatch):
    import protocols.observe as observe
    from protocols.errors import BufferLimitExceeded

    monkeypatch.setattr(observe, "MAX_EVENT_BYTES", 1000)
    o = _tap(FORMAT_OPENAI_CHAT)
    o.feed(USAGE[: USAGE.index(b"\n\n") + 2])
    with pytest.raises(BufferLimitExceeded):
        for _ in range(20):
            o.feed(b'data: {"choices":[{"delta":{"content":"' + b"x" * 100)


# -- the generic tap over every format: same bytes and the same facts as the format's
# -- full decoder, however the stream is cut and however many events share a read.

from protocols.observe import LAST_EVENTS, StreamTap, stream_tap  # noqa: E402
from protocols.translate import Translation  # noqa: E402

FORMAT_OF = {"anthropic": "anthropic_messages", "openai_chat": "openai_chat",
             "responses": "openai_responses", "gemini": "gemini"}
TRANSCRIPTS = ["anthropic_stream_error_midstream.sse", "anthropic_stream_text.sse",
               "anthropic_stream_thinking_tool_use.sse", "gemini_stream_text_crlf.sse",
               "openai_chat_stream_include_usage.sse",
               "openai_chat_stream_parallel_tool_calls.sse", "openai_chat_stream_text.sse",
               "responses_stream_function_call.sse", "responses_stream_text.sse"]


def fmt_of(name: str) -> str:
    return next(f for prefix, f in FORMAT_OF.items() if name.startswith(prefix))


def tap_run(fmt: str, data: bytes, cuts: list[int]) -> tuple[bytes, StreamTap]:
    tap = stream_tap(fmt)
    out, prev = [], 0
    for c in sorted(set(cuts)) + [len(data)]:
        if 0 < c and c > prev:
            out.append(tap.feed(data[prev:c]))
            prev = c
    out.append(tap.finish())
    return b"".join(out), tap


def reference(fmt: str, data: bytes) -> Translation:
    """The format's decoder over every event (observe mode of a Translation)."""
    tr = Translation(fmt, fmt, request_id="r", created=0)
    tr.request({"model": "m"})
    tr.feed(data)
    tr.finish()
    return tr


def ref_facts(fmt: str, data: bytes) -> tuple:
    tr = reference(fmt, data)
    return not tr.failed, tr.failed and tr.ended, tr.model, tr.usage


@pytest.mark.parametrize("name", [n for n in TRANSCRIPTS if not n.startswith("openai_chat")])
@given(cuts=st.lists(st.integers(min_value=1, max_value=6000), max_size=25))
@settings(max_examples=40, deadline=None)
def test_tap_matches_the_full_decoder_whatever_the_chunking(name, cuts):
    data = transcript(name)
    fmt = fmt_of(name)
    got, tap = tap_run(fmt, data, [c for c in cuts if c < len(data)])
    assert got == data
    complete, relayed, model, usage = ref_facts(fmt, data)
    assert tap.complete == complete
    assert tap.error_relayed == (not complete)
    assert tap.model == model and tap.usage == usage and usage is not None


@pytest.mark.parametrize("name", [n for n in TRANSCRIPTS if not n.startswith("openai_chat")])
def test_tap_byte_at_a_time(name):
    data = transcript(name)
    fmt = fmt_of(name)
    got, tap = tap_run(fmt, data, list(range(1, len(data))))
    assert got == data
    ref = reference(fmt, data)
    assert tap.usage == ref.usage and tap.model == ref.model and tap.complete == (not ref.failed)


def long_stream(name: str, copies: int) -> bytes:
    """The transcript with its first content event repeated ``copies`` times: a
    stream whose head and end are far apart."""
    data = transcript(name)
    sep = b"\r\n\r\n" if b"\r\n" in data else b"\n\n"
    frames = data.split(sep)
    marks = {"anthropic_messages": (b"event: content_block_delta",), "gemini": (b'"text"',),
             "openai_responses": (b"event: response.output_text.delta",
                                  b"event: response.function_call_arguments.delta"),
             "openai_chat": (b'"delta":{"content"', b'"arguments":"')}[fmt_of(name)]
    i = next(k for k, f in enumerate(frames) if k > 0 and any(m in f for m in marks))
    return sep.join(frames[:i] + [frames[i]] * copies + frames[i:])


@pytest.mark.parametrize("name", TRANSCRIPTS)
@pytest.mark.parametrize("chunk", [1 << 14, 1 << 20, 97])
def test_tap_reads_the_end_of_a_long_stream_in_big_reads(name, chunk):
    data = long_stream(name, 500)
    fmt = fmt_of(name)
    got, tap = tap_run(fmt, data, list(range(chunk, len(data), chunk)))
    assert got == data
    ref = reference(fmt, data)
    if fmt == "openai_chat":
        _, whole = run(data, [], False)  # one read: every event is read
        assert (tap.usage, tap.model, tap.complete) == (whole.usage, whole.model, whole.complete)
        assert tap.watch.finish_reason == whole.watch.finish_reason is not None
    else:
        assert tap.usage == ref.usage and tap.model == ref.model
        assert tap.complete == (not ref.failed)


def test_usage_chunk_stripped_in_a_big_read():
    data = long_stream("openai_chat_stream_include_usage.sse", 300)
    got, o = run(data, [len(data) // 2], True)
    assert got == without_usage_frame(data, b"\n") and o.usage.input_tokens > 0
    assert o.complete and o.watch.finish_reason == "stop"


def test_responses_error_event_continues_the_sequence():
    data = transcript("responses_stream_text.sse")
    cut = data[:data.index(b"event: response.output_text.done")]
    got, tap = tap_run("openai_responses", cut, [len(cut) // 3])
    assert not tap.complete and not tap.error_relayed
    frame = tap.error_frame("upstream stream failed", "stream_cut")
    seqs = [json.loads(f.split(b"data: ", 1)[1])["sequence_number"]
            for f in cut.split(b"\n\n") if b"sequence_number" in f]
    assert json.loads(frame.split(b"data: ", 1)[1])["sequence_number"] == seqs[-1] + 1


def test_anthropic_cut_and_error_tail():
    data = transcript("anthropic_stream_text.sse")
    cut = data[:data.index(b"event: message_delta")]
    _, tap = tap_run("anthropic_messages", cut, [])
    assert not tap.complete and not tap.error_relayed and tap.usage.input_tokens > 0
    err = (b'event: error\ndata: {"type":"error",'
           b'"error":{"type":"overloaded_error","message":"x"}}\n\n')
    got, tap = tap_run("anthropic_messages", cut + err, [len(cut) - 5])
    assert got == cut + err and tap.error_relayed and not tap.complete


def test_the_last_events_rule_holds_for_every_split_of_the_end():
    # Any cut: the stream's last LAST_EVENTS events are always the last ones of their read.
    data = transcript("anthropic_stream_thinking_tool_use.sse")
    ends = [i for i in range(len(data)) if data.startswith(b"\n\n", i)]
    ref = reference("anthropic_messages", data)
    for cut in ends[-(LAST_EVENTS + 2):]:
        got, tap = tap_run("anthropic_messages", data, [cut + 1])
        assert got == data and tap.usage == ref.usage and tap.complete


def test_a_large_event_in_many_small_reads():
    # A Responses terminal event carries the whole output: it may span hundreds of reads.
    data = long_stream("responses_stream_text.sse", 5)
    i = data.index(b"event: response.completed")
    big = data[:i] + data[i:].replace(b'"text":"', b'"text":"' + b"y" * 300_000, 1)
    got, tap = tap_run("openai_responses", big, list(range(1000, len(big), 1000)))
    assert got == big and tap.complete and tap.usage is not None
    assert tap.at_boundary


@pytest.mark.parametrize("strip", [False, True])
def test_a_read_ending_inside_a_crlf_changes_no_byte(strip):
    """A read that ends between the CR and the LF of an event's blank line: the LF
    belongs to that event, kept or stripped (found by the property test above with
    one cut, at the CR of the last content chunk and at the usage chunk's)."""
    data = crlf(USAGE)
    whole, _ = run(data, [], strip)
    for cut in range(1, len(data)):
        got, _ = run(data, [cut], strip)
        assert got == whole, cut
