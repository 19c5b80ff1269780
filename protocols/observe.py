"""The passthrough tap: same format on both sides, bytes forwarded, facts read off.

When client and provider speak the same wire format the gateway forwards the
provider's SSE bytes unchanged, whole events at a time (never half an event,
docs/protocols.md §6.3, so keep-alives can go in between), and only *watches* them
for what the ledger needs: the served model, usage, the stop reason, the
terminal marker and mid-stream error events (§1.5, §1.6, §3.8, §2.5).

:class:`StreamTap` is format-independent; what it watches with is the format's own
``stream_watch()`` (see ``protocols.registry``): Chat's byte-search ``ChatFacts``, or
:class:`DecoderFacts` over the format's stream decoder.

Where the facts are is what makes this cheap.  A stream's facts sit at its
head (Chat's first chunk names the model; Anthropic ``message_start``;
Responses ``response.created``) and at its end (the finish chunk, the usage
chunk and ``[DONE]``; ``message_delta`` and ``message_stop``;
``response.completed``; an error event, after which a provider stops).  The
events in between are content deltas.  So :class:`StreamTap` reads every event
of the head, and after it only the last few events of each chunk: any event
among the last ``LAST_EVENTS`` of the stream is also among the last ones of its
chunk, whatever the chunking.  Per chunk that is a handful of reverse searches
from the chunk's end, whatever its size; nothing is scanned end to end except
one ``memchr`` for CR.  A stream framed with CR or CRLF (Gemini writes CRLF)
goes the general way: every event is cut by :class:`FrameSplitter` and read.

What the tap does not promise for a provider that breaks the rules above: a
usage-only Chat chunk that is followed by more than ``[DONE]`` in the same read
is forwarded rather than stripped, and an error event followed by more than
``LAST_EVENTS - 1`` events in the same read is not seen (the stream's end still
decides whether it completed).

The gateway always asks a Chat provider for ``stream_options.include_usage``
so usage is reported, not estimated (``Translation.request``); when the client did
not ask for it, ``strip_usage`` removes that extra ``choices: []`` usage chunk again.
"""

from __future__ import annotations

from typing import Any, Protocol

from . import ir, jsonio
from .errors import BufferLimitExceeded, ProtocolError
from .registry import format_module
from .sse import MAX_EVENT_BYTES, FrameSplitter, data_of, event_of

__all__ = ["COMMENT_PING", "DecoderFacts", "StreamTap", "StreamWatch", "frame_json",
           "stream_tap"]

#: The keep-alive most formats use: an SSE comment, which every SSE parser skips
#: (WHATWG HTML §9.2).
COMMENT_PING = b": ping\n\n"

_DONE = b"[DONE]"

#: Events read at the end of every chunk.  The longest run of fact-carrying
#: events at a stream's end: Chat finish chunk, usage chunk, ``[DONE]``;
#: Anthropic ``message_delta``, ``message_stop``; one spare for a ``ping``.
LAST_EVENTS = 4
#: Events read whole at the start of a stream, at most, while the watcher still
#: waits for its head facts (a provider that never sends them costs this, no more).
HEAD_EVENTS = 16


def _too_big() -> BufferLimitExceeded:
    return BufferLimitExceeded(f"an event from the provider exceeds {MAX_EVENT_BYTES} bytes",
                               limit=MAX_EVENT_BYTES)


class StreamWatch(Protocol):
    """A format's fact reader over a same-format stream (its ``stream_watch()``)."""

    @property
    def head_done(self) -> bool:
        """The facts at a stream's head are in: later events are read only at the end
        of each chunk."""

    @property
    def complete(self) -> bool:
        """The terminal event came, and no error."""

    @property
    def ended(self) -> bool:
        """The stream's last event came (its terminal event or an error event); true
        from that event on, not only at the end."""

    @property
    def error_relayed(self) -> bool:
        """The provider's own error event was seen (and forwarded)."""

    @property
    def usage(self) -> ir.Usage | None:
        """The last usage reported."""

    @property
    def model(self) -> str | None:
        """The served model."""

    @property
    def next_sequence(self) -> int:
        """The sequence number an event added after the last one must carry (0 for a
        format that numbers none)."""

    def read(self, frame: bytes) -> bool:
        """One whole event, in stream order; False drops it from the client's bytes."""

    def close(self) -> None:
        """The stream's end."""


class StreamTap:
    """Pass one same-format SSE stream through while ``watch`` reads its facts.

    ``watch`` is the format's fact reader (:class:`StreamWatch`).  This object is a
    stream filter (``protocols.stream_filter.StreamFilter``): ``feed``/``finish``
    give the bytes for the client; ``complete``, ``error_relayed``, ``usage``,
    ``model`` are read at the end.
    """

    __slots__ = ("fmt", "watch", "_mod", "_pending", "_held", "_split", "_head",
                 "_last_kept")

    def __init__(self, fmt: str, watch: StreamWatch) -> None:
        self.fmt = fmt
        self.watch = watch
        self._mod = format_module(fmt)
        # LF framing: the unfinished event, held in pieces until its blank line (joined
        # once then, so a large event arriving in many reads is not copied per read).
        self._pending: list[bytes] = []
        self._held = 0  # bytes in _pending
        self._split: FrameSplitter | None = None  # CR framing: the general splitter
        self._head = HEAD_EVENTS  # events still to be read whole, 0 once the head is read
        # CR framing: whether the last event went out. The line ends a frame starts
        # with (the LF of a CRLF whose CR ended the read before) are that event's.
        self._last_kept = True

    def feed(self, chunk: bytes) -> bytes:
        """Bytes for the client: every complete event in ``chunk``, unchanged."""
        if self._split is not None or b"\r" in chunk:
            return self._feed_general(self._take_pending() + chunk)
        held = self._held
        end = chunk.rfind(b"\n\n") + 2
        if end == 1:
            pending = self._pending
            if held and chunk[:1] == b"\n" and pending[-1][-1:] == b"\n":
                end = 1  # the blank line straddles the two reads
            else:  # no blank line yet: the event is not complete
                if held + len(chunk) > MAX_EVENT_BYTES:
                    raise _too_big()
                if chunk:
                    pending.append(chunk)
                    self._held = held + len(chunk)
                return b""
        data = self._take_pending() + chunk if held else chunk
        end += held
        if end == len(data):
            out = data
        else:
            out = data[:end]
            rest = data[end:]
            if len(rest) > MAX_EVENT_BYTES:
                raise _too_big()
            self._pending.append(rest)
            self._held = len(rest)
        if self._head:
            return self._read_all(out[:-2].split(b"\n\n"), out)
        if out.rfind(b"\n\n", 0, end - 2) < 0:  # one event, the usual read
            return out if self.watch.read(out) else b""
        return self._read_last(out)

    def _take_pending(self) -> bytes:
        pending = self._pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._held = 0
        return data

    def _read_all(self, parts: list[bytes], out: bytes) -> bytes:
        """Read every event of ``out`` (its parts cut at blank lines, without them)."""
        watch = self.watch
        kept: list[bytes] | None = None
        for i, part in enumerate(parts):
            frame = part + b"\n\n"
            if watch.read(frame):
                if kept is not None:
                    kept.append(frame)
            elif kept is None:
                kept = [p + b"\n\n" for p in parts[:i]]
        if self._head:
            self._head = 0 if watch.head_done else max(0, self._head - len(parts))
        return out if kept is None else b"".join(kept)

    def _read_last(self, out: bytes) -> bytes:
        """Read the last ``LAST_EVENTS`` events of ``out`` (which ends at a blank line)."""
        ends = []
        stop = len(out) - 2
        for _ in range(LAST_EVENTS):
            j = out.rfind(b"\n\n", 0, stop)
            ends.append(stop)
            if j < 0:
                stop = -2
                break
            stop = j
        watch = self.watch
        cut: list[tuple[int, int]] | None = None
        start = stop + 2
        for end in reversed(ends):
            frame = out[start:end + 2]
            if not watch.read(frame):
                if cut is None:
                    cut = []
                cut.append((start, end + 2))
            start = end + 2
        if cut is None:
            return out
        pieces, prev = [], 0
        for a, b in cut:
            pieces.append(out[prev:a])
            prev = b
        pieces.append(out[prev:])
        return b"".join(pieces)

    def _feed_general(self, data: bytes) -> bytes:
        """CR or CRLF framing: cut every event with the general splitter, read them all."""
        split = self._split
        if split is None:
            split = self._split = FrameSplitter()
        frames = split.feed(data)
        if len(split.pending) > MAX_EVENT_BYTES:
            raise _too_big()
        if not frames:
            return b""
        watch = self.watch
        kept: list[bytes] | None = None
        for i, frame in enumerate(frames):
            lead = _line_ends(frame)
            keep = watch.read(frame)
            if kept is None and (not keep or (lead and not self._last_kept)):
                kept = frames[:i]
            if kept is not None:
                if lead and self._last_kept:
                    kept.append(lead)
                if keep:
                    kept.append(frame[len(lead):])
            self._last_kept = keep
        if kept is None:
            return frames[0] if len(frames) == 1 else b"".join(frames)
        return b"".join(kept)

    def finish(self) -> bytes:
        """Bytes left at end of stream.  An unterminated event is dropped: SSE
        clients discard it anyway (WHATWG §9.2), and after a cut it could
        swallow the error event that follows.  The line ends it starts with do go out
        (the LF of a CRLF whose CR ended the last read, blank lines): a whole read
        would have forwarded them, and the bytes must not depend on the reads."""
        self.watch.close()
        rest = self._split.pending if self._split is not None else self._take_pending()
        return _line_ends(rest) if self._last_kept else b""

    @property
    def at_boundary(self) -> bool:
        """True when no partial event is held: a keep-alive can go out now."""
        if self._split is not None:
            return not self._split.pending
        return not self._held

    # -- facts, and what the exchange writes itself --------------------------------

    @property
    def complete(self) -> bool:
        return self.watch.complete

    @property
    def ended(self) -> bool:
        """The provider's last event went through: the client's stream is whole."""
        return self.watch.ended

    @property
    def error_relayed(self) -> bool:
        """The provider's own error event went through: the stream already ends in an error."""
        return self.watch.error_relayed

    @property
    def usage(self) -> ir.Usage | None:
        return self.watch.usage

    @property
    def model(self) -> str | None:
        return self.watch.model

    def heartbeat(self) -> bytes:
        """The format's keep-alive (``HEARTBEAT``)."""
        beat: bytes = self._mod.HEARTBEAT
        return beat

    def error_frame(self, message: str, kind: str = "upstream_error") -> bytes:
        """The provider failed mid-stream: end the client's stream with its error event."""
        event: bytes = self._mod.stream_error_event(message, kind, self.watch.next_sequence)
        return event


def frame_json(frame: bytes) -> Any:
    """The JSON of an event's data; None for none, ``[DONE]`` or invalid JSON."""
    data = data_of(frame)
    if not data or data == _DONE:
        return None
    try:
        return jsonio.loads(data)
    except jsonio.JSONDecodeError:
        return None


def _event_type(frame: bytes) -> bytes | None:
    """The event's type: its ``event:`` line, else the ``type`` of its JSON data."""
    if frame.startswith(b"event: "):
        return frame[7:frame.find(b"\n")].rstrip(b"\r")
    if frame.startswith(b"event:"):
        return event_of(frame)
    obj = frame_json(frame)
    if type(obj) is dict:
        t = obj.get("type")
        if type(t) is str:
            return t.encode()
    return None


class DecoderFacts:
    """A :class:`StreamWatch` that reads a stream's facts with the format's own stream
    decoder (observe mode), from the events :class:`StreamTap` shows it, so the
    ledger's numbers mean the same as on a translated stream: ``model``, ``usage``
    (``ir.Usage``), ``complete`` (the terminal event came and no error),
    ``error_relayed``, and ``next_sequence`` (Responses: the sequence number the
    gateway's own error event must carry).

    ``fact_events``: the event types whose frames the decoder is shown; the content
    events in between carry no fact, and the decoder, seeing only some of them, could
    not follow their block indices anyway.  ``None``: every event (a Gemini chunk is
    self-contained, and carries usage and the finish reason itself)."""

    __slots__ = ("_dec", "_types", "_broke", "error_relayed", "_last")

    def __init__(self, decoder: Any, fact_events: frozenset[bytes] | None) -> None:
        self._dec = decoder
        self._types = fact_events
        self._broke = False  # the decoder could not read an event: facts stop there
        self.error_relayed = False
        self._last = b""  # the last event read: the stream's last one, once it ended

    @property
    def head_done(self) -> bool:
        return self._dec.model is not None

    @property
    def model(self) -> str | None:
        return self._dec.model or None

    @property
    def usage(self) -> ir.Usage | None:
        usage: ir.Usage | None = self._dec.usage
        return usage

    @property
    def complete(self) -> bool:
        return not self._broke and not self._dec.failed

    @property
    def ended(self) -> bool:
        return not self._broke and bool(self._dec.done)

    def read(self, frame: bytes) -> bool:
        if frame.startswith((b"event:", b"data:")):  # not a comment
            self._last = frame
        dec = self._dec
        if self._broke or dec.done:
            return True
        types = self._types
        if types is not None and _event_type(frame) not in types:
            return True
        try:
            dec.feed(frame)
        except ProtocolError:
            self._broke = True  # the bytes still go to the client; only the watching stops
        if dec.failed:
            self.error_relayed = True
        return True

    @property
    def next_sequence(self) -> int:
        """One past the ``sequence_number`` of the last event (Responses numbers its
        events from 0 without gaps); 0 when it carries none."""
        frame = self._last
        i = frame.rfind(b'"sequence_number":')
        if i < 0:
            return 0
        j = i + 18
        n = len(frame)
        while j < n and frame[j] == 32:  # spaced JSON
            j += 1
        k = j
        while k < n and 48 <= frame[k] <= 57:
            k += 1
        return int(frame[j:k]) + 1 if k > j else 0

    def close(self) -> None:
        if not self._broke:
            try:
                self._dec.close()
            except ProtocolError:
                self._broke = True


def _line_ends(data: bytes) -> bytes:
    """The CR and LF bytes ``data`` starts with."""
    return data[:len(data) - len(data.lstrip(b"\r\n"))]


def stream_tap(fmt: str, *, strip_usage: bool = False) -> StreamTap:
    """The tap for a same-format stream of ``fmt``; ``strip_usage`` drops the usage
    report the gateway asked for and the client did not (Chat)."""
    return StreamTap(fmt, format_module(fmt).stream_watch(strip_usage=strip_usage))
