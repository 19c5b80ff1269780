"""The passthrough tap: same format on both sides, bytes forwarded, facts read off.

When client and provider speak the same wire format the gateway forwards the
provider's SSE bytes unchanged, whole events at a time (never half an event,
protocols.md §6.3, so keep-alives can go in between), and only *watches* them
for what the ledger needs: the served model, usage, the stop reason, the
terminal marker and mid-stream error events (§1.5, §1.6, §3.8, §2.5).

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
so usage is reported, not estimated; when the client did not ask for it,
``strip_usage`` removes that extra ``choices: []`` usage chunk again.
"""

from __future__ import annotations

from typing import Any

from . import jsonio
from .errors import BufferLimitExceeded, ProtocolError
from .sse import MAX_EVENT_BYTES, FrameSplitter, data_of, event_of
from .translate import format_module

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


class StreamTap:
    """Pass one same-format SSE stream through while ``watch`` reads its facts.

    ``watch`` is a per-format fact reader (:class:`ChatFacts`, :class:`DecoderFacts`):
    ``read(frame) -> bool`` gets whole events, in stream order (False drops the
    event), ``head_done`` says the head facts are in, ``close()`` is the stream's
    end.  This object is the exchange's body filter: ``feed``/``finish`` give the
    bytes for the client; ``complete``, ``error_relayed``, ``usage``, ``model``
    are read at the end.
    """

    __slots__ = ("fmt", "watch", "_pending", "_held", "_split", "_head")

    def __init__(self, fmt: str, watch: Any) -> None:
        self.fmt = fmt
        self.watch = watch
        # LF framing: the unfinished event, held in pieces until its blank line (joined
        # once then, so a large event arriving in many reads is not copied per read).
        self._pending: list[bytes] = []
        self._held = 0  # bytes in _pending
        self._split: FrameSplitter | None = None  # CR framing: the general splitter
        self._head = HEAD_EVENTS  # events still to be read whole, 0 once the head is read

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
            if watch.read(frame):
                if kept is not None:
                    kept.append(frame)
            elif kept is None:
                kept = frames[:i]
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
        return rest[:len(rest) - len(rest.lstrip(b"\r\n"))]

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
    def error_relayed(self) -> bool:
        """The provider's own error event went through: the stream already ends in an error."""
        return self.watch.error_relayed

    @property
    def usage(self) -> Any:
        return self.watch.usage

    @property
    def model(self) -> str | None:
        return self.watch.model

    def heartbeat(self) -> bytes:
        return heartbeat_frame(self.fmt)

    def error_frame(self, message: str, kind: str = "upstream_error") -> bytes:
        """The provider failed mid-stream: end the client's stream with its error event."""
        if self.fmt == "openai_chat":
            return chat_error_frame(message, kind)
        return passthrough_error_frame(self.fmt, message, next_sequence=self.watch.next_sequence,
                                       timeout=kind == "timeout")


def _plain_delta(frame: bytes) -> bool:
    """A Chat chunk that carries no fact: ``"finish_reason":null`` and no usage (or
    ``"usage":null``, which rides on every chunk once include_usage is on).  Both keys
    come last in a chunk, so two searches from the end settle it in ~0.1 µs each,
    where a scan of the whole chunk per key costs several times that.  Compact JSON
    only (OpenAI, vLLM, llama.cpp write it so); anything else is read properly.  A key
    cannot be faked by text: inside a JSON string every quote is escaped."""
    i = frame.rfind(b'"finish_reason":')
    if i < 0 or not frame.startswith(b"null", i + 16):
        return False
    j = frame.rfind(b'"usage":')
    return j < 0 or frame.startswith(b"null", j + 8)


def _value_is_null(frame: bytes, key_end: int) -> bool:
    """True when the JSON value after the key ending at ``key_end`` is ``null``."""
    if frame.startswith(b":null", key_end):  # compact JSON, the common case
        return True
    j = key_end
    n = len(frame)
    while j < n and frame[j] in b" \t:":
        j += 1
    return frame.startswith(b"null", j)


def _json(frame: bytes) -> Any:
    data = data_of(frame)
    if not data or data == _DONE:
        return None
    try:
        return jsonio.loads(data)
    except jsonio.JSONDecodeError:
        return None


class ChatFacts:
    """The facts of a Chat Completions stream: ``model`` (served model), ``usage``
    (the provider's usage object, OpenAI shape), ``finish_reason``, ``complete``
    (``[DONE]`` seen, no error), ``error`` (the error object of a mid-stream error
    event, if any)."""

    __slots__ = ("strip_usage", "model", "usage", "finish_reason", "complete", "error")

    def __init__(self, *, strip_usage: bool = False) -> None:
        self.strip_usage = strip_usage
        self.model: str | None = None
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.complete = False
        self.error: dict[str, Any] | None = None

    @property
    def head_done(self) -> bool:
        return self.model is not None

    @property
    def error_relayed(self) -> bool:
        return self.error is not None

    def close(self) -> None:
        pass

    def read(self, frame: bytes) -> bool:
        """Read one event; False means: do not forward it (the forced usage chunk)."""
        if self.model is not None and _plain_delta(frame):
            return True
        if self.model is None and b'"model"' in frame:
            obj = _json(frame)
            if type(obj) is dict and type(obj.get("model")) is str:
                self.model = obj["model"]
        i = frame.find(b'"usage"')
        if i >= 0 and not _value_is_null(frame, i + 7):
            obj = _json(frame)
            if type(obj) is dict and type(obj.get("usage")) is dict:
                # Cumulative per the spec: the last report wins, never summed.
                self.usage = obj["usage"]
                if self.strip_usage and obj.get("choices") == []:
                    return False
        i = frame.find(b'"finish_reason"')
        if i >= 0 and not _value_is_null(frame, i + 15):
            obj = _json(frame)
            if type(obj) is dict:
                for choice in obj.get("choices") or ():
                    if type(choice) is dict and type(choice.get("finish_reason")) is str:
                        self.finish_reason = choice["finish_reason"]
        if b'"error"' in frame:
            obj = _json(frame)
            if type(obj) is dict and obj.get("error"):
                self.error = obj["error"] if type(obj["error"]) is dict else {"message": str(obj["error"])}
                self.complete = False
        elif _DONE in frame and (data_of(frame) or b"").strip() == _DONE:
            self.complete = self.error is None
        return True


def chat_error_frame(message: str, code: str = "upstream_error") -> bytes:
    """A mid-stream Chat error event (§1.6): the SDKs raise ``APIError`` on it."""
    return b"data: " + jsonio.dumps({"error": {
        "message": message, "type": "server_error", "param": None, "code": code,
    }}) + b"\n\n"


class ChatStreamObserver(StreamTap):
    """The tap over a Chat stream, facts as attributes (see :class:`ChatFacts`)."""

    __slots__ = ()

    def __init__(self, *, strip_usage: bool = False) -> None:
        super().__init__("openai_chat", ChatFacts(strip_usage=strip_usage))

    @property
    def finish_reason(self) -> str | None:
        return self.watch.finish_reason

    @property
    def error(self) -> dict[str, Any] | None:
        return self.watch.error

    @staticmethod
    def heartbeat() -> bytes:  # type: ignore[override]
        """An SSE comment: every SSE parser skips it (WHATWG §9.2), so does the SDK."""
        return COMMENT_PING

    @staticmethod
    def error_frame(message: str, kind: str = "upstream_error") -> bytes:  # type: ignore[override]
        return chat_error_frame(message, kind)


#: The event types whose frames :class:`DecoderFacts` hands to the format's decoder;
#: the content events in between carry no fact and the decoder, seeing only some of
#: them, could not follow their block indices anyway.  ``None``: every event (a
#: Gemini chunk is self-contained, and carries usage and the finish reason itself).
FACT_EVENTS: dict[str, frozenset[bytes] | None] = {
    "anthropic_messages": frozenset({b"message_start", b"message_delta", b"message_stop",
                                     b"error"}),
    "openai_responses": frozenset({b"response.created", b"response.queued",
                                   b"response.in_progress", b"response.completed",
                                   b"response.incomplete", b"response.failed", b"error"}),
    "gemini": None,
}


def _event_type(frame: bytes) -> bytes | None:
    """The event's type: its ``event:`` line, else the ``type`` of its JSON data."""
    if frame.startswith(b"event: "):
        return frame[7:frame.find(b"\n")].rstrip(b"\r")
    if frame.startswith(b"event:"):
        return event_of(frame)
    obj = _json(frame)
    if type(obj) is dict:
        t = obj.get("type")
        if type(t) is str:
            return t.encode()
    return None


class DecoderFacts:
    """The facts of an Anthropic, Responses or Gemini stream, read by that format's own
    stream decoder (observe mode) from the events :class:`StreamTap` shows it, so the
    ledger's numbers mean the same as on a translated stream: ``model``, ``usage``
    (``ir.Usage``), ``complete`` (the terminal event came and no error),
    ``error_relayed``, and ``next_sequence`` (Responses: the sequence number the
    gateway's own error event must carry)."""

    __slots__ = ("_dec", "_types", "_broke", "error_relayed", "_last")

    def __init__(self, fmt: str) -> None:
        self._dec = format_module(fmt).StreamDecoder(None, observe=True)
        self._types = FACT_EVENTS[fmt]
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
    def usage(self) -> Any:
        return self._dec.usage

    @property
    def complete(self) -> bool:
        return not self._broke and not self._dec.failed

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


def stream_tap(fmt: str, *, strip_usage: bool = False) -> StreamTap:
    """The tap for a same-format stream of ``fmt``."""
    if fmt == "openai_chat":
        return ChatStreamObserver(strip_usage=strip_usage)
    return StreamTap(fmt, DecoderFacts(fmt))


def passthrough_error_frame(fmt: str, message: str, *, next_sequence: int = 0,
                            timeout: bool = False) -> bytes:
    """The event that ends a same-format (observed) stream after the provider
    failed mid-stream, in that format's own error shape (protocols.md §5.7):
    Chat ``data: {"error":...}``, Anthropic ``event: error``, Responses
    ``event: error`` with the next ``sequence_number``, Gemini an error object."""
    if fmt == "anthropic_messages":
        kind = "timeout_error" if timeout else "api_error"
        return b"event: error\ndata: " + jsonio.dumps(
            {"type": "error", "error": {"type": kind, "message": message}}) + b"\n\n"
    if fmt == "openai_responses":
        return b"event: error\ndata: " + jsonio.dumps({
            "type": "error", "code": "server_error", "message": message, "param": None,
            "sequence_number": next_sequence}) + b"\n\n"
    if fmt == "gemini":
        return b"data: " + jsonio.dumps({"error": {
            "code": 504 if timeout else 502, "message": message,
            "status": "DEADLINE_EXCEEDED" if timeout else "UNAVAILABLE"}}) + b"\r\n\r\n"
    return chat_error_frame(message, "upstream_timeout" if timeout else "stream_cut")


# Keep-alives per client format (protocols.md §6.3): Anthropic's own ``ping``
# event, an SSE comment elsewhere.  Responses clients in translated streams get
# a real, ignorable event from the encoder instead (Codex resets its idle timer
# only on events).
ANTHROPIC_PING = b'event: ping\ndata: {"type": "ping"}\n\n'
COMMENT_PING = b": ping\n\n"


def heartbeat_frame(fmt: str) -> bytes:
    return ANTHROPIC_PING if fmt == "anthropic_messages" else COMMENT_PING
