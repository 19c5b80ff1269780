"""Tests for protocols.sse.

Named after their sources, as httpx-sse does: the framing vectors of
docs/protocols.md §6.4, the examples of WHATWG HTML 9.2.6, one test per
field rule, then the provider transcripts, the frame splitter, the limits and the
encoders. Every incremental case runs whole, byte at a time and split at every
boundary, because results must not depend on where the network cut the stream.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import sse as fuzz_sse
from protocols import jsonio
from protocols.errors import BufferLimitExceeded, UpstreamProtocolError
from protocols.sse import (
    DONE,
    MAX_EVENT_BYTES,
    MAX_LINE_BYTES,
    FrameSplitter,
    SSEDecoder,
    SSEEvent,
    data_of,
    encode,
    encode_comment,
    event_of,
)

# ---------------------------------------------------------------- helpers


def shared_dir() -> Path:
    """The shared design/conformance folder: $TOKENWAY_SHARED, else beside the repo."""
    env = os.environ.get("TOKENWAY_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared"


TRANSCRIPT_DIR = shared_dir() / "conformance" / "transcripts"
TRANSCRIPTS = sorted(TRANSCRIPT_DIR.glob("*.sse"))
TRANSCRIPT_PARAMS = [pytest.param(p, id=p.stem) for p in TRANSCRIPTS] or [
    pytest.param(
        None, marks=pytest.mark.skip(reason=f"no transcripts in {TRANSCRIPT_DIR}")
    )
]


def decode(chunks: list[bytes], **limits: int) -> tuple[list[SSEEvent], SSEDecoder]:
    decoder = SSEDecoder(**limits)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    events += decoder.close()
    return events, decoder


def split_frames(chunks: list[bytes], **limits: int) -> tuple[list[bytes], bytes]:
    splitter = FrameSplitter(**limits)
    frames: list[bytes] = []
    for chunk in chunks:
        frames += splitter.feed(chunk)
    return frames, splitter.close()


def typed(events: list[SSEEvent]) -> list[tuple[str, str]]:
    """(type, data) pairs, the shape docs/protocols.md §6.4 states its expectations in."""
    return [(e.type, e.data) for e in events]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def every_split(data: bytes) -> Iterator[list[bytes]]:
    """Whole; byte at a time; every single cut; every pair of cuts."""
    yield [data]
    yield bytewise(data)
    n = len(data)
    for i in range(1, n):
        yield [data[:i], data[i:]]
    for i, j in itertools.combinations(range(1, n), 2):
        yield [data[:i], data[i:j], data[j:]]


def sized(data: bytes, sizes: list[int]) -> list[bytes]:
    """Cut ``data`` into chunks whose sizes cycle through ``sizes``."""
    out, pos = [], 0
    for size in itertools.cycle(sizes):
        if pos >= len(data):
            return out
        out.append(data[pos : pos + size])
        pos += size
    raise AssertionError("unreachable")


def assert_frames_decode_like_stream(
    frames: list[bytes], pending: bytes, data: bytes
) -> None:
    assert b"".join(frames) + pending == data
    whole, _ = decode([data])
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for frame in frames:
        got = decoder.feed(frame)
        assert len(got) <= 1
        events += got
    events += decoder.feed(pending)
    events += decoder.close()
    assert events == whole


# ------------------------------------------------ docs/protocols.md §6.4 vectors

# name -> (chunks as the vector gives them, expected (type, data) per the spec)
VECTORS: dict[str, tuple[list[bytes], list[tuple[str, str]]]] = {
    "lf": ([b"data: a\n\n"], [("message", "a")]),
    "crlf": ([b"data: a\r\n\r\n"], [("message", "a")]),
    "lone_cr": ([b"data: a\r\rdata: b\r\r"], [("message", "a"), ("message", "b")]),
    "no_space_after_colon": ([b"data:a\n\n"], [("message", "a")]),
    "two_spaces_keep_one": ([b"data:  a\n\n"], [("message", " a")]),
    "multiline_data": ([b"data: l1\ndata: l2\n\n"], [("message", "l1\nl2")]),
    "comment_only": ([b": ping\n\n"], []),
    "event_without_data": ([b"event: ping\n\n"], []),
    "field_without_colon": ([b"data\n\n"], [("message", "")]),
    "bom": ([b"\xef\xbb\xbfdata: a\n\n"], [("message", "a")]),
    "event_type_resets": (
        [b"event: x\ndata: 1\n\ndata: 2\n\n"],
        [("x", "1"), ("message", "2")],
    ),
    "crlf_split_across_chunks": (
        [b"data: a\r", b"\ndata: b\n\n"],
        [("message", "a\nb")],
    ),
    "utf8_split_across_chunks": (
        [b'data: {"t":"\xe3\x81', b'\x93"}\n\n'],
        [("message", '{"t":"\u3053"}')],
    ),
    "unterminated_at_eof": ([b"data: a\n"], []),
    "id_and_retry": (
        [b"id: 7\ndata: a\n\nretry: 3000\n\nretry: 3s\n\n"],
        [("message", "a")],
    ),
}


@pytest.mark.parametrize("name", VECTORS)
def test_vector_as_given(name: str) -> None:
    chunks, expected = VECTORS[name]
    events, _ = decode(chunks)
    assert typed(events) == expected


@pytest.mark.parametrize("name", VECTORS)
def test_vector_whole_and_split_at_every_boundary(name: str) -> None:
    chunks, expected = VECTORS[name]
    data = b"".join(chunks)
    for split in every_split(data):
        events, _ = decode(split)
        assert typed(events) == expected, split


@pytest.mark.parametrize("name", VECTORS)
def test_vector_through_frame_splitter(name: str) -> None:
    data = b"".join(VECTORS[name][0])
    for split in every_split(data):
        frames, pending = split_frames(split)
        assert_frames_decode_like_stream(frames, pending, data)


def test_vector_event_type_resets_reports_no_event_field() -> None:
    events, _ = decode(VECTORS["event_type_resets"][0])
    assert [e.event for e in events] == ["x", None]


def test_vector_utf8_split_gives_the_character() -> None:
    events, _ = decode(VECTORS["utf8_split_across_chunks"][0])
    assert jsonio.loads(events[0].data) == {"t": "\u3053"}


def test_vector_unterminated_at_eof_is_discarded_and_reported() -> None:
    events, decoder = decode(VECTORS["unterminated_at_eof"][0])
    assert events == []
    assert decoder.truncated


def test_vector_id_and_retry() -> None:
    data = b"".join(VECTORS["id_and_retry"][0])
    for split in every_split(data):
        events, decoder = decode(split)
        assert events == [SSEEvent(None, "a", "7", None)]
        assert decoder.last_event_id == "7"
        assert decoder.retry_ms == 3000  # "3s" is ignored
        assert not decoder.truncated


# -------------------------------------------------- WHATWG 9.2.6 examples


def test_whatwg_example_1_multiline_data() -> None:
    events, _ = decode([b"data: YHOO\ndata: +2\ndata: 10\n\n"])
    assert typed(events) == [("message", "YHOO\n+2\n10")]


def test_whatwg_example_2_ids_and_unterminated_last_event() -> None:
    data = (
        b": test stream\n\n"
        b"data: first event\nid: 1\n\n"
        b"data:second event\nid\n\n"
        b"data:  third event\n"
    )
    for split in every_split(data):
        events, decoder = decode(split)
        assert events == [
            SSEEvent(None, "first event", "1"),
            SSEEvent(None, "second event", ""),  # a bare `id` resets the ID
        ]
        assert decoder.last_event_id == ""
        assert decoder.truncated  # " third event" was never terminated


def test_whatwg_example_3_empty_data_fields() -> None:
    events, _ = decode([b"data\n\ndata\ndata\n\ndata:"])
    assert typed(events) == [("message", ""), ("message", "\n")]


def test_whatwg_example_4_one_space_is_optional() -> None:
    events, _ = decode([b"data:test\n\ndata: test\n\n"])
    assert typed(events) == [("message", "test"), ("message", "test")]


# --------------------------------------------------------- field rules


def test_id_containing_nul_is_ignored() -> None:
    events, decoder = decode([b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"])
    assert [e.id for e in events] == ["1", "1"]
    assert decoder.last_event_id == "1"


def test_last_event_id_persists_across_events() -> None:
    events, _ = decode([b"id: 5\ndata: a\n\ndata: b\n\n"])
    assert [e.id for e in events] == ["5", "5"]


def test_id_in_unterminated_block_does_not_become_last_event_id() -> None:
    _, decoder = decode([b"id: 1\ndata: a\n\nid: 2\n"])
    assert decoder.last_event_id == "1"


def test_id_on_a_block_without_data_still_updates_last_event_id() -> None:
    events, decoder = decode([b"id: 9\n\n"])
    assert events == []
    assert decoder.last_event_id == "9"


@pytest.mark.parametrize(
    "value", [b"", b"3s", b" 1", b"-1", b"+1", b"1_000", b"1.5", "\u0663".encode()]
)
def test_retry_must_be_all_ascii_digits(value: bytes) -> None:
    _, decoder = decode([b"retry: 10\n\nretry: " + value + b"\n\n"])
    assert decoder.retry_ms == 10


def test_retry_is_attached_to_the_event_of_its_block() -> None:
    events, decoder = decode([b"retry: 250\ndata: a\n\ndata: b\n\n"])
    assert [e.retry for e in events] == [250, None]
    assert decoder.retry_ms == 250


def test_unknown_fields_are_ignored() -> None:
    events, _ = decode([b"foo: bar\nDATA: x\ndata: a\n\n"])
    assert typed(events) == [("message", "a")]


def test_empty_event_field_means_message() -> None:
    events, _ = decode([b"event:\ndata: a\n\n"])
    assert events[0].event == ""
    assert events[0].type == "message"


def test_colons_after_the_first_belong_to_the_value() -> None:
    events, _ = decode([b"data: a: b:c\n\n"])
    assert events[0].data == "a: b:c"


def test_comment_lines_inside_an_event_are_skipped() -> None:
    events, _ = decode([b"data: a\n: note\ndata: b\n:\n\n"])
    assert events[0].data == "a\nb"


@pytest.mark.parametrize(
    "char", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]
)
def test_only_cr_and_lf_end_lines(char: str) -> None:
    # str.splitlines() would split on each of these; U+2028, U+2029 and U+0085 are
    # legal unescaped in JSON strings (orjson writes them raw).
    payload = f'{{"t":"a{char}b"}}'.encode()
    if char in "\u2028\u2029\x85":
        assert jsonio.dumps({"t": f"a{char}b"}) == payload
    for split in (
        [b"data: " + payload + b"\n\n"],
        bytewise(b"data: " + payload + b"\n\n"),
    ):
        events, _ = decode(split)
        assert events == [SSEEvent(None, payload.decode())]
    assert data_of(b"data: " + payload + b"\n\n") == payload


def test_invalid_utf8_becomes_replacement_characters() -> None:
    data = b"data: \xff\xe3\x81\rdata: \xc3\n\n"
    for split in every_split(data):
        events, _ = decode(split)
        assert events == [SSEEvent(None, "\ufffd\ufffd\n\ufffd")]


def test_bom_split_across_chunks_is_stripped() -> None:
    events, _ = decode([b"\xef", b"\xbb", b"\xbfdata: a\n\n"])
    assert typed(events) == [("message", "a")]


def test_only_one_bom_is_stripped() -> None:
    events, _ = decode([b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n"])
    assert typed(events) == [("message", "b")]  # "\ufeffdata" is an unknown field


def test_bom_later_in_the_stream_is_not_stripped() -> None:
    events, _ = decode([b"data: a\n\n\xef\xbb\xbfdata: b\n\n"])
    assert typed(events) == [("message", "a")]


def test_partial_bom_then_eof_is_truncation() -> None:
    events, decoder = decode([b"\xef\xbb"])
    assert events == [] and decoder.truncated


def test_clean_end_is_not_truncation() -> None:
    _, decoder = decode([b"data: a\r\n\r"])
    assert not decoder.truncated


def test_unterminated_comment_is_truncation() -> None:
    _, decoder = decode([b"data: a\n\n: partial"])
    assert decoder.truncated


def test_empty_chunks_are_ignored() -> None:
    events, _ = decode([b"", b"data: a\r", b"", b"\n\n", b""])
    assert typed(events) == [("message", "a")]


def test_feed_after_close_is_a_caller_bug() -> None:
    decoder = SSEDecoder()
    assert decoder.close() == []
    assert decoder.close() == []
    with pytest.raises(RuntimeError):
        decoder.feed(b"data: a\n\n")


def test_event_is_a_named_tuple_with_defaults() -> None:
    event = SSEEvent("x", "d")
    assert (event.id, event.retry, event.type) == (None, None, "x")
    assert SSEEvent(None, "d").type == "message"


# --------------------------------------------------------- transcripts


def transcript_events(path: Path) -> list[SSEEvent]:
    events, decoder = decode([path.read_bytes()])
    assert events
    return events


@pytest.mark.parametrize("path", TRANSCRIPT_PARAMS)
def test_transcript_whole(path: Path) -> None:
    data = path.read_bytes()
    events, decoder = decode([data])
    assert events
    assert decoder.last_event_id is None and decoder.retry_ms is None
    assert not decoder.truncated  # every transcript event ends with a blank line
    for event in events:
        if event.data == "[DONE]":
            continue
        body = jsonio.loads(event.data)
        if event.event is not None:  # Anthropic and Responses: name == data.type
            assert body["type"] == event.event
    # An independent, literal transcription of the spec agrees.
    reference, _, _ = fuzz_sse.reference_decode(data)
    assert [e._replace(retry=None) for e in events] == reference


@pytest.mark.parametrize("path", TRANSCRIPT_PARAMS)
def test_transcript_byte_at_a_time(path: Path) -> None:
    events, _ = decode(bytewise(path.read_bytes()))
    assert events == transcript_events(path)


@pytest.mark.parametrize("path", TRANSCRIPT_PARAMS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=1 << 20), max_size=40),
    sizes=st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=32),
)
def test_transcript_random_splits(
    path: Path, cuts: list[int], sizes: list[int]
) -> None:
    data = path.read_bytes()
    expected = transcript_events(path)
    points = sorted({c % len(data) for c in cuts} - {0})
    chunks = [
        data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)
    ]
    assert decode(chunks)[0] == expected
    assert decode(sized(data, sizes))[0] == expected
    for split in (chunks, sized(data, sizes)):
        frames, pending = split_frames(split)
        assert_frames_decode_like_stream(frames, pending, data)


@pytest.mark.parametrize("path", TRANSCRIPT_PARAMS)
def test_transcript_matches_the_openai_sdk_decoder(path: Path) -> None:
    from openai._streaming import SSEDecoder as OpenAISSEDecoder

    data = path.read_bytes()
    theirs = [
        (s.event, s.data) for s in OpenAISSEDecoder().iter_bytes(iter(bytewise(data)))
    ]
    assert theirs == [(e.event, e.data) for e in transcript_events(path)]


@pytest.mark.parametrize("path", TRANSCRIPT_PARAMS)
def test_transcript_frames(path: Path) -> None:
    data = path.read_bytes()
    events = transcript_events(path)
    for split in ([data], bytewise(data)):
        frames, pending = split_frames(split)
        # Fed byte at a time, a CRLF stream's last frame is returned at its final CR
        # and the LF that completes it is left over (see FrameSplitter).
        assert pending == (b"\n" if len(split) > 1 and data.endswith(b"\r\n") else b"")
        assert len(frames) == len(events)  # one frame per event: no pings or comments
        assert_frames_decode_like_stream(frames, pending, data)
        for frame, event in zip(frames, events, strict=True):
            assert data_of(frame) == event.data.encode()
            name = event_of(frame)
            assert (name.decode() if name is not None else None) == event.event


@pytest.mark.parametrize("path", TRANSCRIPT_PARAMS)
def test_transcript_fuzz_invariants(path: Path) -> None:
    fuzz_sse.check(path.read_bytes())


# ------------------------------------------------------- frame splitter


def test_splitter_returns_the_chunk_itself_when_it_is_one_event() -> None:
    chunk = b'data: {"a":1}\n\n'
    assert FrameSplitter().feed(chunk)[0] is chunk


def test_splitter_keeps_partial_events_pending() -> None:
    splitter = FrameSplitter()
    assert splitter.feed(b"event: a\ndata: 1\n\nevent: b\nda") == [
        b"event: a\ndata: 1\n\n"
    ]
    assert splitter.pending == b"event: b\nda"
    assert splitter.feed(b"ta: 2\n") == []
    assert splitter.feed(b"\ndata: 3\n\n") == [b"event: b\ndata: 2\n\n", b"data: 3\n\n"]
    assert splitter.pending == b""
    assert splitter.close() == b""


def test_splitter_close_returns_the_unfinished_block() -> None:
    splitter = FrameSplitter()
    assert splitter.feed(b"data: 1\n\ndata: 2\n") == [b"data: 1\n\n"]
    assert splitter.close() == b"data: 2\n"
    with pytest.raises(RuntimeError):
        splitter.feed(b"\n")


def test_splitter_emits_a_frame_ending_in_cr_at_once() -> None:
    # The event is complete at the CR; holding it for the next chunk would delay it.
    splitter = FrameSplitter()
    assert splitter.feed(b"data: a\r\n\r") == [b"data: a\r\n\r"]
    # The LF that completes that CRLF then leads the next frame.
    assert splitter.feed(b"\ndata: b\r\n\r\n") == [b"\ndata: b\r\n\r\n"]
    assert data_of(b"\ndata: b\r\n\r\n") == b"b"


@pytest.mark.parametrize(
    "data, frames",
    [
        (b"data: a\n\n", [b"data: a\n\n"]),
        (b"data: a\r\n\r\ndata: b\r\n\r\n", [b"data: a\r\n\r\n", b"data: b\r\n\r\n"]),
        (b"data: a\r\rdata: b\r\r", [b"data: a\r\r", b"data: b\r\r"]),
        (b"data: a\n\r\ndata: b\r\n\n", [b"data: a\n\r\n", b"data: b\r\n\n"]),
        (b"\n\ndata: a\n\n", [b"\n", b"\n", b"data: a\n\n"]),
        (b": ping\n\ndata: a\n\n", [b": ping\n\n", b"data: a\n\n"]),
    ],
)
def test_splitter_frame_boundaries(data: bytes, frames: list[bytes]) -> None:
    assert split_frames([data]) == (frames, b"")
    for split in every_split(data):
        got, pending = split_frames(split)
        assert_frames_decode_like_stream(got, pending, data)


@pytest.mark.parametrize(
    "frame, data, event",
    [
        (b'data: {"a":1}\n\n', b'{"a":1}', None),
        (b'event: e\ndata: {"a":1}\n\n', b'{"a":1}', b"e"),
        (b"data: a\r\n\r\n", b"a", None),
        (b"data:a\n\n", b"a", None),
        (b"data:  a\n\n", b" a", None),
        (b"data: l1\ndata: l2\n\n", b"l1\nl2", None),
        (b"event: e\r\ndata: x\r\n\r\n", b"x", b"e"),
        (b"data: x\nevent: late\n\n", b"x", b"late"),
        (b"event: a\nevent: b\ndata: x\n\n", b"x", b"b"),
        (b": c\ndata: x\n: d\n\n", b"x", None),
        (b"data\n\n", b"", None),
        (b"event: ping\n\n", None, b"ping"),
        (b": ping\n\n", None, None),
        (b"data: x\n", None, None),  # no blank line: nothing is dispatched
        (b"data: x", None, None),
        (b"\xef\xbb\xbfdata: x\n\n", b"x", None),
        (b"\ndata: x\r\r", b"x", None),
        (b"event:\ndata: x\n\n", b"x", b""),
        (b"data: a\r\n", None, None),
        (b"data: a\rb\n\n", b"a", None),  # "b" is an unknown field
    ],
)
def test_data_of_and_event_of(
    frame: bytes, data: bytes | None, event: bytes | None
) -> None:
    assert data_of(frame) == data
    assert event_of(frame) == event


# -------------------------------------------------------------- limits


def test_default_limits() -> None:
    assert MAX_LINE_BYTES == 16 * 1024 * 1024
    assert MAX_EVENT_BYTES >= 2 * MAX_LINE_BYTES


@pytest.mark.parametrize("cls", [SSEDecoder, FrameSplitter])
def test_limits_must_be_positive(cls: type) -> None:
    with pytest.raises(ValueError):
        cls(max_line_bytes=0)
    with pytest.raises(ValueError):
        cls(max_event_bytes=0)


LINE_LIMIT_CASES = [
    b"data: 12345\n\n",  # 11-byte line
    b"data: 1\r\ndata: 12345\r\n\r\n",
    b"data: 12345",  # never terminated: still bounded
    b"\xef\xbb\xbfdata: 12345\n\n",
]


@pytest.mark.parametrize("data", LINE_LIMIT_CASES)
def test_line_limit_raises_whatever_the_split(data: bytes) -> None:
    for split in every_split(data):
        with pytest.raises(BufferLimitExceeded) as info:
            decode(split, max_line_bytes=10)
        assert isinstance(info.value, UpstreamProtocolError)
        assert info.value.status_hint == 502
        assert info.value.param == "sse.line"
        assert info.value.limit == 10
        with pytest.raises(BufferLimitExceeded):
            split_frames(split, max_line_bytes=10)


def test_line_at_the_limit_is_accepted() -> None:
    data = b"data: 1234\r\n\r\n"  # the line is exactly 10 bytes
    for split in every_split(data):
        assert typed(decode(split, max_line_bytes=10)[0]) == [("message", "1234")]
        frames, pending = split_frames(split, max_line_bytes=10)
        assert_frames_decode_like_stream(frames, pending, data)


def test_event_limit_raises_whatever_the_split() -> None:
    data = b"data: 1\n" * 4 + b"\n"  # 4 lines of 7 bytes + line ends = 32
    for split in every_split(data):
        with pytest.raises(BufferLimitExceeded) as info:
            decode(split, max_event_bytes=31)
        assert info.value.param == "sse.event"
        with pytest.raises(BufferLimitExceeded):
            split_frames(split, max_event_bytes=31)
        assert len(decode(split, max_event_bytes=32)[0]) == 1
        assert len(split_frames(split, max_event_bytes=33)[0]) == 1


@pytest.mark.parametrize(("data", "size"), [
    # 13 and 16 bytes up to each blank line's CR
    (b"data: 1234\r\n\r\ndata: 5678901\r\n\r\n", 16),
    # a blank CRLF line, then an event of 25 bytes
    (b"\r\ndata: 12345678901234567\n\n", 25),
])
def test_event_limit_does_not_count_the_lf_of_a_blank_crlf(data: bytes, size: int) -> None:
    """A frame's blank CRLF line ends at its CR; the LF goes with the frame when it comes
    in the same chunk and starts the next block when it comes later. It counts in
    neither, so a frame at the limit is accepted, and one byte over refused, whatever
    the split."""
    for split in every_split(data):
        frames, pending = split_frames(split, max_event_bytes=size)
        assert b"".join(frames) + pending == data and pending in (b"", b"\n")
        with pytest.raises(BufferLimitExceeded):
            split_frames(split, max_event_bytes=size - 1)


def test_limit_error_carries_the_frames_completed_before_it() -> None:
    """Frames a chunk completed before the limit was hit are on the error, so a caller
    gets the same frames before the error whatever the split."""
    good = b"data: 1\n\nevent: e\ndata: 2\n\n"
    for bad, limits in ((b"data: " + b"x" * 20 + b"\n\n", {"max_line_bytes": 16}),
                        (b"data: 1\n" * 8 + b"\n", {"max_event_bytes": 40})):
        for cut in range(len(good) + len(bad) + 1):
            data = good + bad
            splitter = FrameSplitter(**limits)
            frames: list[bytes] = []
            with pytest.raises(BufferLimitExceeded) as info:
                for chunk in (data[:cut], data[cut:]):
                    frames += splitter.feed(chunk)
            assert frames + info.value.frames == [b"data: 1\n\n", b"event: e\ndata: 2\n\n"]


def test_unterminated_block_is_bounded_by_the_event_limit() -> None:
    splitter = FrameSplitter(max_line_bytes=100, max_event_bytes=64)
    with pytest.raises(BufferLimitExceeded):
        for _ in range(10):
            splitter.feed(b"data: 1234567\n")


def test_default_line_limit_with_megabyte_chunks() -> None:
    mib = b"x" * (1 << 20)
    decoder, splitter = SSEDecoder(), FrameSplitter()
    decoder.feed(b"data: ")
    splitter.feed(b"data: ")
    with pytest.raises(BufferLimitExceeded):
        for _ in range(MAX_LINE_BYTES // len(mib) + 1):
            decoder.feed(mib)
    with pytest.raises(BufferLimitExceeded):
        for _ in range(MAX_LINE_BYTES // len(mib) + 1):
            splitter.feed(mib)


def test_a_line_of_exactly_the_default_limit_is_accepted() -> None:
    payload = b"x" * (MAX_LINE_BYTES - len(b"data: "))
    data = b"data: " + payload + b"\n\n"
    chunks = sized(data, [1 << 20])
    events, _ = decode(chunks)
    assert len(events) == 1 and len(events[0].data) == len(payload)
    frames, pending = split_frames(chunks)
    assert frames == [data] and pending == b""
    assert data_of(frames[0]) == payload


# ------------------------------------------------------------ encoders


def test_encode_data_only() -> None:
    assert encode('{"a":1}') == b'data: {"a":1}\n\n'
    assert encode(b'{"a":1}') == b'data: {"a":1}\n\n'


def test_encode_with_event() -> None:
    assert encode("{}", "ping") == b"event: ping\ndata: {}\n\n"


def test_encode_multiline_data_uses_one_data_line_each() -> None:
    assert encode("a\nb\r\nc\rd") == b"data: a\ndata: b\ndata: c\ndata: d\n\n"
    assert encode("") == b"data: \n\n"


def test_encode_rejects_a_multiline_event_name() -> None:
    with pytest.raises(ValueError):
        encode("x", "a\nb")
    with pytest.raises(ValueError):
        encode("x", "a\rb")


def test_encode_comment_and_done() -> None:
    assert encode_comment("ping") == b": ping\n\n"
    assert encode_comment() == b":\n\n"
    assert encode_comment("a\nb") == b": a\n: b\n\n"
    assert decode([encode_comment("ping")])[0] == []
    assert decode([DONE])[0] == [SSEEvent(None, "[DONE]")]
    assert data_of(DONE) == b"[DONE]"


single_line = st.text().filter(lambda s: "\r" not in s and "\n" not in s)
no_cr_text = st.text().filter(lambda s: "\r" not in s)


@settings(max_examples=200, deadline=None)
@given(data=no_cr_text, event=st.none() | single_line)
def test_encode_round_trips_through_the_decoder(data: str, event: str | None) -> None:
    wire = encode(data, event)
    assert not wire.startswith(b"\xef\xbb\xbf")
    assert b"\nid" not in wire and b"\nretry" not in wire and not wire.startswith(b"id")
    for split in ([wire], bytewise(wire)):
        assert decode(split)[0] == [SSEEvent(event, data)]
    frames, pending = split_frames([wire])
    assert frames == [wire] and pending == b""
    assert data_of(wire) == data.encode()
    assert event_of(wire) == (event.encode() if event is not None else None)


@settings(max_examples=100, deadline=None)
@given(data=st.text())
def test_encode_turns_cr_and_crlf_into_lf(data: str) -> None:
    normal = data.replace("\r\n", "\n").replace("\r", "\n")
    assert decode([encode(data)])[0] == [SSEEvent(None, normal)]


@settings(max_examples=100, deadline=None)
@given(
    items=st.lists(
        st.tuples(no_cr_text, st.none() | single_line.filter(bool)),
        min_size=1,
        max_size=5,
    ),
    sizes=st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=8),
)
def test_sdk_decoders_parse_our_encoder_output(
    items: list[tuple[str, str | None]], sizes: list[int]
) -> None:
    from anthropic._streaming import SSEDecoder as AnthropicSSEDecoder
    from openai._streaming import SSEDecoder as OpenAISSEDecoder

    wire = b"".join(encode(data, event) for data, event in items)
    wire = encode_comment("ping") + wire + DONE
    expected = [(event, data) for data, event in items] + [(None, "[DONE]")]
    assert [(e.event, e.data) for e in decode(sized(wire, sizes))[0]] == expected
    for sdk in (OpenAISSEDecoder, AnthropicSSEDecoder):
        got = [(s.event, s.data) for s in sdk().iter_bytes(iter(sized(wire, sizes)))]
        assert got == expected, sdk


# ------------------------------------------- streams drawn by Hypothesis


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=fuzz_sse.strategy())
def test_fuzz_invariants_on_drawn_streams(data: bytes) -> None:
    fuzz_sse.check(data)


@settings(max_examples=200, deadline=None)
@given(
    data=fuzz_sse.strategy(),
    sizes=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=16),
)
def test_random_splits_of_drawn_streams(data: bytes, sizes: list[int]) -> None:
    whole = decode([data])
    split = decode(sized(data, sizes))
    assert split[0] == whole[0]
    assert split[1].last_event_id == whole[1].last_event_id
    assert split[1].truncated == whole[1].truncated
    frames, pending = split_frames(sized(data, sizes))
    assert_frames_decode_like_stream(frames, pending, data)
