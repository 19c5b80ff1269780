"""The learned-template path for text deltas (protocols/_streams.py) gives exactly the
events of the general path: any texts (escapes, control characters, non-ASCII, empty),
OpenAI's varying ``obfuscation`` padding, frames that change between deltas, and bytes
that are not valid JSON or UTF-8 where the text goes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import anthropic_messages, openai_chat
from protocols.errors import ProtocolError
from protocols.sse import FrameSplitter

texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)


def chat_stream(deltas: list[str], pads: list[str], *, model: str = "gpt-x") -> bytes:
    def chunk(delta: dict, finish=None, pad=None) -> bytes:
        obj = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
               "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                            "finish_reason": finish}], "usage": None}
        if pad is not None:
            obj["obfuscation"] = pad
        data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        return b"data: " + data + b"\n\n"
    out = [chunk({"role": "assistant", "content": ""})]
    for i, d in enumerate(deltas):
        out.append(chunk({"content": d}, pad=pads[i % len(pads)] if pads else None))
    out.append(chunk({}, "stop"))
    return b"".join(out) + b"data: [DONE]\n\n"


def anthropic_stream(deltas: list[str], ensure_ascii: bool = False) -> bytes:
    def ev(name: str, obj: dict) -> bytes:
        data = json.dumps(obj, ensure_ascii=ensure_ascii, separators=(",", ":")).encode()
        return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"
    out = [ev("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        ev("content_block_start", {"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "text", "text": ""}})]
    for d in deltas:
        out.append(ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": d}}))
    out += [ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
            ev("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                    "stop_sequence": None},
                                 "usage": {"output_tokens": 9}}),
            ev("message_stop", {"type": "message_stop"})]
    return b"".join(out)


def new_decoder(mod, templates: bool, **limits):
    """A stream decoder of ``mod``; ``templates=False`` keeps it on the general path;
    ``limits`` replace its splitter's."""
    d = mod.StreamDecoder(None)
    if not templates:
        d._learn_left = 0
    if limits:
        d._split = FrameSplitter(**limits)
    return d


def run(d, reads: list[bytes]) -> list:
    """The events of ``reads`` fed in turn and the close; an error ends the list."""
    events: list = []
    try:
        for r in reads:
            events += d.feed(r)
        events += d.close()
    except ProtocolError as e:
        events.append((type(e).__name__, e.message))
    return events


def decode(mod, data: bytes, cuts: list[int], templates: bool) -> list:
    ends = [c for c in sorted(set(cuts)) if 0 < c < len(data)] + [len(data)]
    starts = [0, *ends[:-1]]
    return run(new_decoder(mod, templates),
               [data[a:b] for a, b in zip(starts, ends, strict=True) if a < b])


def frame_cuts(data: bytes) -> list[int]:
    """One event per read, as providers write."""
    return [i + 2 for i in range(len(data)) if data.startswith(b"\n\n", i)]


@given(deltas=st.lists(texts, min_size=1, max_size=30),
       pads=st.lists(st.text(alphabet="abcXYZ019", max_size=6), max_size=3))
@settings(max_examples=150, deadline=None)
def test_chat_templates_change_nothing(deltas, pads):
    data = chat_stream(deltas, pads)
    fast = decode(openai_chat, data, frame_cuts(data), True)
    assert fast == decode(openai_chat, data, frame_cuts(data), False)
    assert "".join(e.text for e in fast if type(e).__name__ == "TextDelta") == "".join(deltas)


@given(deltas=st.lists(texts, min_size=1, max_size=30), ascii_only=st.booleans())
@settings(max_examples=150, deadline=None)
def test_anthropic_templates_change_nothing(deltas, ascii_only):
    data = anthropic_stream(deltas, ascii_only)
    fast = decode(anthropic_messages, data, frame_cuts(data), True)
    assert fast == decode(anthropic_messages, data, frame_cuts(data), False)
    assert "".join(e.text for e in fast if type(e).__name__ == "TextDelta") == "".join(deltas)


BAD_TEXTS = [b"a\x01b", b"\xff\xfe", b"ab\\", b"a\\u00"]


@pytest.mark.parametrize("bad", BAD_TEXTS)
@pytest.mark.parametrize("mod, make", [(openai_chat, lambda d: chat_stream(d, ["pp"])),
                                       (anthropic_messages, anthropic_stream)])
def test_bad_bytes_where_the_text_goes_fail_as_on_the_general_path(mod, make, bad):
    data = make(["hello", "MARK", "world"])
    data = data.replace(b'"MARK"', b'"' + bad + b'"')
    fast = decode(mod, data, frame_cuts(data), True)
    assert fast == decode(mod, data, frame_cuts(data), False)


def test_a_frame_that_changes_is_decoded_the_general_way():
    # Same text key, other bytes around it (another model, a finish reason): no template hit.
    a = chat_stream(["one", "two"], [])
    b = chat_stream(["three"], [], model="gpt-y")
    b_first_delta = b.split(b"\n\n")[1]
    data = a.replace(b"data: [DONE]\n\n", b"") + b_first_delta + b"\n\ndata: [DONE]\n\n"
    fast = decode(openai_chat, data, frame_cuts(data), True)
    assert fast == decode(openai_chat, data, frame_cuts(data), False)


@pytest.mark.parametrize("whole", [False, True])
def test_templates_are_learned_one_event_per_read_or_all_in_one(whole):
    for mod, data in ((openai_chat, chat_stream(["a", "b", "c", "d"], ["x1", "yy2"])),
                      (anthropic_messages, anthropic_stream(["a", "b", "c", "d"]))):
        d = mod.StreamDecoder(None)
        for c in ([data] if whole else [f + b"\n\n" for f in data.split(b"\n\n")[:4]]):
            d.feed(c)
        assert d._tpl is not None, mod.__name__  # learned from a plain delta


def test_last_delta_with_its_finish_reason_is_not_taken_for_a_plain_one():
    frames = chat_stream(["one", "two", "three"], ["pad"]).split(b"\n\n")
    # frames: role, one, two, three, stop, [DONE], "": "three" carries the finish itself.
    frames[3] = frames[3].replace(b'"finish_reason":null', b'"finish_reason":"length"')
    del frames[4]
    data = b"\n\n".join(frames)
    fast = decode(openai_chat, data, frame_cuts(data), True)
    assert fast == decode(openai_chat, data, frame_cuts(data), False)
    assert type(fast[-1]).__name__ == "MessageEnd"


@given(deltas=st.lists(texts, min_size=1, max_size=20),
       cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=30),
       crlf=st.booleans())
@settings(max_examples=150, deadline=None)
def test_any_split_and_line_ending_gives_the_general_paths_events(deltas, cuts, crlf):
    """Reads that are whole frames take the shortcut past the splitter; reads that cut
    frames, or come while part of a frame is held, do not; CRLF framing never does."""
    for mod, data in ((openai_chat, chat_stream(deltas, ["pp", "q"])),
                      (anthropic_messages, anthropic_stream(deltas))):
        if crlf:
            data = data.replace(b"\n", b"\r\n")
        splits = sorted(set(frame_cuts(data)[: len(deltas) // 2] + cuts))
        fast = decode(mod, data, splits, True)
        assert fast == decode(mod, data, splits, False), mod.__name__
        assert "".join(e.text for e in fast if type(e).__name__ == "TextDelta") == "".join(deltas)


def _learned(mod, make, templates: bool, **limits):
    d = new_decoder(mod, templates, **limits)
    frames = [f + b"\n\n" for f in make(["c", "c", "c"]).split(b"\n\n")[:-1]]
    events = []
    for f in frames[:4]:
        events += d.feed(f)
    assert (d._tpl is not None) is templates
    return d, frames, events


@pytest.mark.parametrize("mod, make", [(openai_chat, lambda d: chat_stream(d, ["pp"])),
                                       (anthropic_messages, anthropic_stream)])
def test_a_whole_templated_read_after_a_held_partial_frame_is_joined_to_it(mod, make):
    got = []
    for templates in (True, False):
        d, frames, events = _learned(mod, make, templates)
        delta = frames[3]  # a plain text delta, matching the template
        got.append(events + run(d, [delta[:20], delta, *frames[4:]]))
    assert got[0] == got[1]
    if mod is openai_chat:
        assert got[0][-1][0] == "UpstreamProtocolError"  # the joined frame is not JSON


@pytest.mark.parametrize("mod, make", [(openai_chat, lambda d: chat_stream(d, ["pp"])),
                                       (anthropic_messages, anthropic_stream)])
def test_a_templated_read_over_the_splitters_limit_fails_as_on_the_general_path(mod, make):
    got = []
    for templates in (True, False):
        d, frames, events = _learned(mod, make, templates, max_line_bytes=400,
                                     max_event_bytes=400)
        big = frames[3].replace(b'"c"', b'"' + b"x" * 500 + b'"')
        got.append(events + run(d, [big, *frames[4:]]))
    assert got[0] == got[1]
    assert got[0][-1][0] == "BufferLimitExceeded"
