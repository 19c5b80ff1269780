"""What the four formats' stream decoders and encoders share (private to ``protocols``).

``StreamDecoderBase`` is the feed/close contract of the format interface
(``protocols/registry.py``), written once: frames come from a ``FrameSplitter``; a broken
upstream (a bad frame or an exceeded buffer limit) raises ``ProtocolError``, but the events
decoded before it in the same call are returned first and the error is raised by the next call
(``feed`` or ``close``), so the events never depend on how the body was split into chunks.
The frames of Anthropic Messages and OpenAI Responses are JSON objects dispatched on their
``type`` in that loop; Chat and Gemini read each frame's data themselves.

``StreamEncoderBase`` is the encode/close/done part: one handler per IR event type,
nothing written after a terminal event, and a cut stream ended with the format's error
event, never with a fabricated clean end (docs/protocols.md §6.3 "Cut streams").

Subclasses keep their own ``__slots__`` for their own state.
"""

from __future__ import annotations

from typing import Any

from . import ir, jsonio
from .errors import BufferLimitExceeded, ProtocolError, UpstreamProtocolError
from .sse import FrameSplitter, data_of

#: Text held back by a stream encoder or decoder: blocks held while an earlier one is
#: still streaming (IR contract rule 3: a Chat upstream keeps every tool call open until
#: its finish chunk), the input of a custom-tool call until its block stops, tool
#: arguments buffered until their block ends. Counted in characters (``len`` of the
#: text, no encoding on the hot path): at most 4 bytes each, so at most 32 MiB held.
#: Tool arguments are small (Claude Code's largest observed inputs are file writes of a
#: few hundred KiB); 8 Mi characters bounds a misbehaving upstream.
MAX_HELD_CHARS = 8 * 1024 * 1024
#: Times one stream may learn a new text-delta template: a provider whose frames all
#: differ (a fresh id per chunk) stops paying for learning after these.
_MAX_LEARN = 8
#: Bytes that cannot stand in a JSON string as they are: control characters, and the
#: backslash of an escape (the text would differ from its bytes).
_UNSAFE = bytes(range(0x20)) + b'"\\'


def _unsafe(raw: bytes) -> bool:
    return len(raw.translate(None, _UNSAFE)) != len(raw)

__all__ = ["MAX_HELD_CHARS", "StreamDecoderBase", "StreamEncoderBase"]


class StreamDecoderBase:
    """Upstream body → IR events: the frame loop and the error contract of every format.

    A format whose frames are JSON objects dispatched on their ``type`` (the ``event:``
    line is optional: proxies drop it) sets ``_HANDLERS`` (type → function ``(decoder,
    obj, out)``; other types are ignored), ``_WHAT`` (names the frames in error messages)
    and ``_OBSERVE_SKIP`` (frame prefixes observe mode need not parse: they carry no
    facts). Any other format leaves ``_HANDLERS`` at ``None`` and reads each frame's data
    in ``_payload``. Both append events to ``out`` and set ``done`` at the terminal event;
    ``_eof`` gives the events for an upstream EOF before it.

    Facts read by ``Translation``: ``model``, ``id``, ``usage``, ``stop_reason``,
    ``tool_calls``, ``failed``, ``done``.
    """

    __slots__ = (
        "_ctx", "_split", "_observe", "_broken", "model", "id", "usage", "stop_reason",
        "tool_calls", "failed", "done", "_frame", "_tpl", "_learn_left",
    )

    _HANDLERS: dict[str, Any] | None = None
    _WHAT = "stream event"
    _OBSERVE_SKIP: tuple[bytes, ...] = ()
    #: The JSON key (with its colon and opening quote) of a plain text delta's text, for
    #: the learned-template path (see ``_learn_text``); None: the format has none.
    _TEXT_KEY: bytes | None = None
    #: A key whose string value may change from one text delta to the next in a frame
    #: that is otherwise the same (OpenAI's ``obfuscation`` padding); None: none.
    _VARYING_KEY: bytes | None = None

    def __init__(self, ctx: ir.Context | None = None, *, observe: bool = False) -> None:
        self._ctx = ctx
        self._split = FrameSplitter()
        self._observe = observe
        self._broken: ProtocolError | None = None
        self.model: str | None = None
        self.id: str | None = None
        self.usage: ir.Usage | None = None
        self.stop_reason: ir.StopReason | None = None
        self.tool_calls = 0
        self.failed = False
        self.done = False
        self._frame = b""  # the frame being decoded, for _learn_text
        self._tpl: tuple[bytes, bytes, Any] | None = None  # (before, after, where)
        self._learn_left = _MAX_LEARN

    def feed(self, data: bytes) -> list[ir.StreamEvent]:
        """Events for the next piece of the body. A broken upstream raises
        ``UpstreamProtocolError``; events decoded before the bad frame in the same call are
        returned first and the error is raised by the next call (``feed`` or ``close``),
        so the events never depend on how the body was split."""
        if self._broken is not None:
            raise self._broken
        out: list[ir.StreamEvent] = []
        if self.done:
            return out
        tpl = self._tpl
        if (tpl is not None and data.startswith(tpl[0]) and data.endswith(b"\n\n")
                and self._split.idle(len(data))):
            # Most reads are one whole text delta. When the splitter holds nothing and
            # the read matches the template to its last byte, the read is that one
            # LF-framed event (the text has no line end): the splitter would return it
            # whole and keep its state, so it is not asked.
            ev = self._templated_text(data, tpl)
            if ev is not None:
                return [ev]
        observe = self._observe
        handlers = self._HANDLERS
        late = None
        try:
            try:
                frames = self._split.feed(data)
            except BufferLimitExceeded as e:
                # The frames this chunk completed before the limit was hit still count.
                frames, late = e.frames, e
            for frame in frames:
                if observe and frame.startswith(self._OBSERVE_SKIP):
                    continue
                tpl = self._tpl
                if tpl is not None and frame.startswith(tpl[0]):
                    ev = self._templated_text(frame, tpl)
                    if ev is not None:
                        out.append(ev)
                        continue
                self._frame = frame
                payload = data_of(frame)
                if payload is None:
                    continue  # comment or field-only frame (": ping", "retry:")
                if handlers is None:
                    self._payload(payload, out)
                else:
                    try:
                        obj = jsonio.loads(payload)
                    except jsonio.JSONDecodeError:
                        raise UpstreamProtocolError(f"{self._WHAT} is not JSON",
                                                    param="data") from None
                    if type(obj) is not dict:
                        raise UpstreamProtocolError(f"{self._WHAT} is not an object",
                                                    param="data")
                    etype = obj.get("type")
                    handler = handlers.get(etype) if type(etype) is str else None
                    if handler is not None:
                        handler(self, obj, out)
                if self.done:
                    break
            if late is not None and not self.done:
                raise late
        except ProtocolError as e:
            self._broken = e
            if not out:
                raise
        return out

    # -- the learned-template path for text deltas --------------------------------------
    #
    # Most frames of a streamed answer are text deltas that differ only in their text:
    # the same id, model and keys around it, byte for byte.  When the general path has
    # decoded one (JSON and all) to a single ``TextDelta``, ``_learn_text`` remembers the
    # bytes before and after its text.  A later frame made of exactly those bytes around
    # a string with no escape, no control character and valid UTF-8 is the same JSON
    # object with another text, so its event is made without splitting lines or parsing
    # JSON; the format's ``_text_event`` still checks its own state (an open block, ...)
    # and returns None to send the frame the general way.  Anything else in the frame,
    # a changed byte included, takes the general path, so the events are the same.

    def _learn_text(self, text: str, where: Any) -> None:
        """The frame being decoded was a plain text delta of ``text``; ``where`` is what
        ``_text_event`` needs to place the next one (a block key)."""
        key = self._TEXT_KEY
        if self._learn_left <= 0 or self._observe or not text or key is None:
            return
        raw = text.encode()
        if _unsafe(raw):
            return
        frame = self._frame
        needle = key + raw + b'"'
        i = frame.find(needle)
        if i < 0 or frame.find(needle, i + 1) >= 0:
            return  # not there as such, or not only there
        self._learn_left -= 1
        start = i + len(needle) - len(raw) - 1
        self._tpl = (frame[:start], frame[start + len(raw):], where)

    def _templated_text(self, frame: bytes, tpl: tuple[bytes, bytes, Any]) -> Any:
        before, after, where = tpl
        s = len(before)
        e = frame.find(b'"', s)
        if e <= s:
            return None
        if frame[e:] != after and not self._varying_ok(frame, e, after):
            return None
        raw = frame[s:e]
        if _unsafe(raw):
            return None
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return None
        return self._text_event(text, where)

    def _varying_ok(self, frame: bytes, e: int, after: bytes) -> bool:
        """``frame[e:]`` equals ``after`` but for the value of ``_VARYING_KEY``."""
        key = self._VARYING_KEY
        if key is None:
            return False
        k = after.find(key)
        if k < 0:
            return False
        k += len(key)
        if frame[e:e + k] != after[:k]:
            return False
        v = e + k  # the varying value starts here, in frame
        q = frame.find(b'"', v)
        aq = after.find(b'"', k)
        if q < 0 or aq < 0 or frame[q:] != after[aq:]:
            return False
        value = frame[v:q]
        return value.isascii() and not _unsafe(value)

    def _text_event(self, text: str, where: Any) -> Any:
        """The event for a templated text delta, or None when the decoder's state says
        the general path must decide."""
        return None

    def close(self) -> list[ir.StreamEvent]:
        """Events at upstream EOF: none after a terminal event, else what ``_eof`` makes
        of the cut (a ``StreamError``, or the clean end of a format whose end is EOF)."""
        if self._broken is not None:
            raise self._broken
        out: list[ir.StreamEvent] = []
        if not self.done:
            self._eof(out)
        return out

    def _fail(self, out: list[ir.StreamEvent], err: ir.StreamError) -> None:
        self.failed = True
        self.done = True
        out.append(err)

    def _payload(self, payload: bytes, out: list[ir.StreamEvent]) -> None:
        raise NotImplementedError

    def _eof(self, out: list[ir.StreamEvent]) -> None:
        raise NotImplementedError


class StreamEncoderBase:
    """IR events → a client's stream bytes. Subclasses write one handler per event type,
    each returning the bytes for its event (``b""`` for none): ``_on_start``,
    ``_on_block_start``, ``_on_text``, ``_on_args``, ``_on_reasoning``, ``_on_usage``,
    ``_on_end`` and ``_on_error``, and where the format has a use for them
    ``_on_signature``, ``_on_block_stop`` and ``_on_ping`` (by default they write
    nothing). The handlers of terminal events set ``_done``."""

    __slots__ = ("_ctx", "_started", "_done")

    #: Event type -> handler name; ``__init_subclass__`` resolves it to each class's
    #: functions once, so an encoder holds no bound methods of itself (a reference
    #: cycle that left every translated stream's state to the garbage collector).
    _HANDLER_NAMES = {
        ir.MessageStart: "_on_start",
        ir.BlockStart: "_on_block_start",
        ir.TextDelta: "_on_text",
        ir.ToolArgsDelta: "_on_args",
        ir.ReasoningDelta: "_on_reasoning",
        ir.SignatureDelta: "_on_signature",
        ir.BlockStop: "_on_block_stop",
        ir.UsageUpdate: "_on_usage",
        ir.MessageEnd: "_on_end",
        ir.StreamError: "_on_error",
        ir.Ping: "_on_ping",
    }
    _dispatch: dict[type, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._dispatch = {t: getattr(cls, name) for t, name in cls._HANDLER_NAMES.items()
                         if hasattr(cls, name)}

    def __init__(self, ctx: ir.Context | None = None) -> None:
        self._ctx = ctx
        self._started = False
        self._done = False

    @property
    def done(self) -> bool:
        """Whether a terminal event (clean end or error) has been written."""
        return self._done

    def encode(self, events: list[ir.StreamEvent]) -> bytes:
        dispatch = self._dispatch
        if len(events) == 1:
            # Most upstream frames decode to one event (a text delta): no list, no join.
            if self._done:
                return b""
            ev = events[0]
            fn = dispatch.get(type(ev))
            return fn(self, ev) if fn is not None else b""
        parts = []
        for ev in events:
            if self._done:
                break
            try:
                fn = dispatch[type(ev)]
            except KeyError:
                continue  # not an IR event: nothing to write
            b = fn(self, ev)
            if b:
                parts.append(b)
        if not parts:
            return b""
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> bytes:
        """End of input: a stream that never reached a terminal event ends with the
        format's error event, never with a fabricated clean end (§6.3 "Cut streams")."""
        if self._done:
            return b""
        return self._on_error(ir.StreamError(ir.ErrorKind.UPSTREAM_PROTOCOL,
                                          "upstream stream ended unexpectedly"))

    def _on_error(self, ev: ir.StreamError) -> bytes:
        raise NotImplementedError

    def keepalive(self) -> bytes | None:
        """An ignorable event that keeps a silent stream alive, for a format whose
        clients need one (Responses); None: the format's ``HEARTBEAT`` will do."""
        return None

    def _on_signature(self, ev: ir.SignatureDelta) -> bytes:
        return b""

    def _on_block_stop(self, ev: ir.BlockStop) -> bytes:
        return b""

    def _on_ping(self, ev: ir.Ping) -> bytes:
        return b""
