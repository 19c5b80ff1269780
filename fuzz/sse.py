"""Fuzz target for ``protocols.sse``: ``check(data)`` raises only on a real bug.

Invariants, for any input bytes:

1. Only ``ProtocolError`` subclasses escape ``SSEDecoder`` and ``FrameSplitter``;
   anything else (``IndexError``, ``UnicodeDecodeError``...) is a bug.
2. ``SSEDecoder`` gives the same events, ``last_event_id``, ``retry_ms`` and
   ``truncated`` for every way of splitting the input (whole, byte at a time, cut
   after every CR, cut inside UTF-8 characters, sizes derived from the data).
3. With tight limits, whether a ``BufferLimitExceeded`` is raised does not depend
   on the split either; events returned before it are a prefix of the unlimited
   result, and without it the result equals the unlimited one.
4. ``FrameSplitter``: frames plus ``pending`` concatenate to the input; every frame
   ends with a line end; fed one frame per call to a decoder, each frame yields at
   most one event and all of them together equal the whole-stream events;
   ``data_of``/``event_of`` of each frame agree with the decoder.
5. The decoder agrees with :func:`reference_decode`, a slow, literal transcription
   of the spec written independently of the fast code.
6. Limits: the splitter is never more lenient than the decoder with the same
   limits, and its outcome does not depend on the split: neither whether it raises
   nor the events of the frames it gave before the error (those returned by earlier
   calls plus the error's ``frames``, completed by the failing chunk).

The checks use only deterministic splits so that a corpus file replays the same
way every time (tests/test_fuzz_corpus.py).
"""

from __future__ import annotations

from typing import Any

from protocols.errors import BufferLimitExceeded, ProtocolError
from protocols.sse import FrameSplitter, SSEDecoder, SSEEvent, data_of, event_of

# Small enough that short fuzz inputs reach the limit paths.
TIGHT_LIMITS = {"max_line_bytes": 24, "max_event_bytes": 64}
# Byte-at-a-time feeding of large inputs would only slow the fuzzer down.
MAX_BYTEWISE_BYTES = 2048

_BOM = b"\xef\xbb\xbf"


def reference_decode(data: bytes) -> tuple[list[SSEEvent], str | None, int | None]:
    """WHATWG 9.2.5/9.2.6, transcribed step by step; whole input, no limits.

    Returns the events, the last event ID string and the reconnection time.
    """
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    text = data.decode("utf-8", "replace")
    lines, line, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\r" or c == "\n":
            lines.append("".join(line))
            line = []
            if c == "\r" and text[i + 1 : i + 2] == "\n":
                i += 1
        else:
            line.append(c)
        i += 1
    # `line` now holds an unterminated last line: never interpreted (9.2.6).
    events: list[SSEEvent] = []
    data_buffer, event_type, id_buffer, last_id, retry = "", "", None, None, None
    event_seen = False  # SSEEvent.event is None when no `event` field was set
    for line_text in lines:
        if line_text == "":
            last_id = id_buffer
            if data_buffer == "":
                event_type, event_seen = "", False
                continue
            if data_buffer.endswith("\n"):
                data_buffer = data_buffer[:-1]
            event = event_type if event_seen else None
            events.append(SSEEvent(event, data_buffer, id_buffer, None))
            data_buffer, event_type, event_seen = "", "", False
            continue
        if line_text.startswith(":"):
            continue
        if ":" in line_text:
            name, value = line_text.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            name, value = line_text, ""
        if name == "event":
            event_type, event_seen = value, True
        elif name == "data":
            data_buffer += value + "\n"
        elif name == "id":
            if "\0" not in value:
                id_buffer = value
        elif name == "retry":
            if value and all(ch in "0123456789" for ch in value):
                retry = int(value)
    return events, last_id, retry


def _cut(data: bytes, points: set[int]) -> list[bytes]:
    edges = [0, *sorted(p for p in points if 0 < p < len(data)), len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def chunkings(data: bytes) -> list[list[bytes]]:
    """The whole input first, then deterministic adversarial splits of it."""
    n = len(data)
    out = [[data]]
    if n < 2:
        return out
    if n <= MAX_BYTEWISE_BYTES:
        out.append([data[i : i + 1] for i in range(n)])
    out.append(_cut(data, {n // 2}))
    # A chunk ending in CR: the LF of a CRLF arrives in the next chunk.
    out.append(_cut(data, {i + 1 for i, b in enumerate(data) if b == 0x0D}))
    # Cut right after every UTF-8 lead byte, splitting multi-byte characters.
    out.append(_cut(data, {i + 1 for i, b in enumerate(data) if b >= 0xC0}))
    # Pseudo-random chunk sizes of 1..13 bytes, taken from the data itself.
    points, pos, k = set(), 0, 0
    while pos < n:
        pos += data[k % n] % 13 + 1
        points.add(pos)
        k += 1
    out.append(_cut(data, points))
    return out


def _decode(chunks: list[bytes], limits: dict[str, int]) -> tuple[Any, ...]:
    decoder = SSEDecoder(**limits)
    events: list[SSEEvent] = []
    try:
        for chunk in chunks:
            events += decoder.feed(chunk)
        events += decoder.close()
    except ProtocolError as exc:
        return events, type(exc), None
    state = (decoder.last_event_id, decoder.retry_ms, decoder.truncated)
    return events, None, state


def _split(chunks: list[bytes], limits: dict[str, int]) -> tuple[Any, ...]:
    splitter = FrameSplitter(**limits)
    frames: list[bytes] = []
    try:
        for chunk in chunks:
            frames += splitter.feed(chunk)
    except BufferLimitExceeded as exc:
        return frames + exc.frames, b"", type(exc)
    except ProtocolError as exc:
        return frames, b"", type(exc)
    return frames, splitter.close(), None


def _frame_events(frames: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [e for frame in frames for e in decoder.feed(frame)]
    return events + decoder.close()


def _check_frames(data: bytes, frames: list[bytes], pending: bytes, ref: Any) -> None:
    assert b"".join(frames) + pending == data
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for index, frame in enumerate(frames):
        assert frame and frame[-1] in b"\r\n", frame
        got = decoder.feed(frame)
        assert len(got) <= 1, (frame, got)
        events += got
        if index and frame.startswith(_BOM):
            # data_of reads a frame on its own and skips a leading BOM; a decoder
            # only skips it at the start of the stream (see data_of's docstring).
            continue
        payload = data_of(frame)
        if not got:
            assert payload is None, frame
            continue
        assert payload is not None, frame
        assert payload.decode("utf-8", "replace") == got[0].data, frame
        name = event_of(frame)
        assert (name.decode("utf-8", "replace") if name is not None else None) == (
            got[0].event
        ), frame
    assert decoder.feed(pending) == []
    events += decoder.close()
    assert events == ref[0], (events, ref[0])


def check(data: bytes) -> None:
    """Raise AssertionError (or any non-protocol error) if an invariant fails."""
    splits = chunkings(data)

    ref = _decode(splits[0], {})
    expected, last_id, retry = reference_decode(data)
    # The reference does not track SSEEvent.retry (a per-block extra).
    assert [e._replace(retry=None) for e in ref[0]] == expected, (ref[0], expected)
    assert ref[2][:2] == (last_id, retry), (ref[2], last_id, retry)
    for chunks in splits[1:]:
        assert _decode(chunks, {}) == ref, chunks

    tight = _decode(splits[0], TIGHT_LIMITS)
    for chunks in splits:
        got = _decode(chunks, TIGHT_LIMITS)
        assert got[1] is tight[1], (chunks, got[1], tight[1])
        if got[1] is None:
            assert got == ref, chunks
        else:
            assert got[1] is BufferLimitExceeded
            assert got[0] == ref[0][: len(got[0])], chunks

    for chunks in splits:
        frames, pending, error = _split(chunks, {})
        assert error is ref[1] is None, (chunks, error)
        _check_frames(data, frames, pending, ref)

    tight_split = _split(splits[0], TIGHT_LIMITS)
    if tight_split[2] is None:
        assert tight[1] is None, "the decoder rejected what the splitter accepted"
    before_error = _frame_events(tight_split[0])
    for chunks in splits:
        frames, pending, error = _split(chunks, TIGHT_LIMITS)
        assert error is tight_split[2], (chunks, error)
        if error is None:
            _check_frames(data, frames, pending, ref)
        else:
            assert data.startswith(b"".join(frames)), chunks
            assert _frame_events(frames) == before_error, chunks


def strategy() -> Any:
    """Hypothesis strategy for ``fuzz.run``: raw bytes plus SSE-shaped token soup."""
    from hypothesis import strategies as st

    tokens = st.sampled_from(
        [
            b"data",
            b"data:",
            b"data: ",
            b"event:",
            b"event: ",
            b"id:",
            b"id: ",
            b"retry:",
            b"retry: ",
            b":",
            b" ",
            b"  ",
            b"\r",
            b"\n",
            b"\r\n",
            b"\n\n",
            b"\r\r",
            b"\r\n\r\n",
            b"x",
            b'{"t":"a"}',
            b"[DONE]",
            b"3000",
            b"3s",
            b"\x00",
            _BOM,
            b"\xe3\x81\x93",
            b"\xe3\x81",
            b"\x93",
            b"\xe2\x80\xa8",
            b"\xc2\x85",
            b"\x0b\x0c\x1c",
            b"\xff",
            b"a" * 30,
        ]
    )
    soup = st.lists(st.one_of(tokens, st.binary(max_size=4)), max_size=64).map(b"".join)
    return st.one_of(soup, st.binary(max_size=512))
