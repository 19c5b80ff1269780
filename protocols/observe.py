"""Observe mode for OpenAI Chat streams: bytes pass through, facts are read off.

When client and provider both speak Chat Completions, the gateway forwards
the provider's SSE bytes unchanged, whole events at a time (never half an
event, protocols.md §6.3), and only *watches* them for what the ledger needs:
the served model, the usage chunk, the finish reason, ``[DONE]`` and
mid-stream ``{"error": ...}`` events (§1.5, §1.6).

Most frames are never JSON-decoded: a byte search decides whether a frame
can carry anything of interest (``"usage":null`` on every chunk, which the
provider adds once ``include_usage`` is on, is skipped without parsing).

The gateway always asks the provider for ``stream_options.include_usage`` so
usage is reported, not estimated; when the client did not ask for it,
``strip_usage`` removes that extra ``choices: []`` usage frame again.
"""

from __future__ import annotations

from typing import Any

from . import jsonio
from .errors import BufferLimitExceeded
from .sse import MAX_EVENT_BYTES, FrameSplitter, data_of, event_of

_DONE = b"[DONE]"


def _nothing_to_read(chunk: bytes) -> bool:
    """No usage object, finish reason, error or ``[DONE]`` anywhere in ``chunk``.

    Five substring scans at memchr-like speed (~2.5 GB/s each here).  Compact JSON
    only (OpenAI, vLLM, llama.cpp write it so): any ``": `` sends the chunk to the
    slow path, where spaced JSON is read properly.  ``"usage":null`` rides on every
    chunk once include_usage is on and does not count."""
    return not (b'": ' in chunk or b'"usage":{' in chunk or b'"finish_reason":"' in chunk
                or b'"error"' in chunk or b"[DONE]" in chunk)


def _value_is_null(frame: bytes, key_end: int) -> bool:
    """True when the JSON value after the key ending at ``key_end`` is ``null``."""
    if frame.startswith(b":null", key_end):  # compact JSON, the common case
        return True
    j = key_end
    n = len(frame)
    while j < n and frame[j] in b" \t:":
        j += 1
    return frame.startswith(b"null", j)


class ChatStreamObserver:
    """Pass a Chat Completions SSE stream through while reading its facts.

    Facts: ``model`` (served model), ``usage`` (the provider's usage object,
    OpenAI shape), ``finish_reason``, ``complete`` (``[DONE]`` seen, no error),
    ``error`` (the error object of a mid-stream error event, if any).
    """

    __slots__ = ("_tail", "strip_usage", "model", "usage", "finish_reason", "complete",
                 "error")

    def __init__(self, *, strip_usage: bool = False) -> None:
        self._tail = b""  # the unfinished event, held until its blank line
        self.strip_usage = strip_usage
        self.model: str | None = None
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.complete = False
        self.error: dict[str, Any] | None = None

    def feed(self, chunk: bytes) -> bytes:
        """Bytes for the client: every complete event in ``chunk``, unchanged."""
        tail = self._tail
        data = tail + chunk if tail else chunk
        if self.model is not None and b"\r" not in data and _nothing_to_read(data):
            # Fast path, most chunks of a stream: LF framing and no fact in
            # them, judged by byte counts at C speed.  The bytes go out as they
            # came, up to the last complete event; the rest waits for its end.
            i = data.rfind(b"\n\n")
            if i < 0:
                if len(data) > MAX_EVENT_BYTES:
                    raise BufferLimitExceeded(
                        f"an event from the provider exceeds {MAX_EVENT_BYTES} bytes",
                        limit=MAX_EVENT_BYTES)
                self._tail = data
                return b""
            end = i + 2
            if end == len(data):
                self._tail = b""
                return data
            self._tail = data[end:]
            return data[:end]
        # Slow path: cut into events and look at each (CR framing, a usage or
        # finish chunk, an error, [DONE]).  A fresh splitter gets the whole
        # unfinished block, so its state is exactly what the bytes say.
        if b"\r" in data:
            split = FrameSplitter()
            frames = split.feed(data)
            self._tail = split.pending
        else:
            # LF framing: cutting at blank lines in C is exact (joining the
            # pieces back gives the same bytes) and much cheaper per event.
            frames = data.split(b"\n\n")
            self._tail = frames.pop()
            frames = [f + b"\n\n" for f in frames]
        if len(self._tail) > MAX_EVENT_BYTES:
            raise BufferLimitExceeded(
                f"an event from the provider exceeds {MAX_EVENT_BYTES} bytes", limit=MAX_EVENT_BYTES)
        if not frames:
            return b""
        kept: list[bytes] | None = None
        for i, frame in enumerate(frames):
            # Most events of a burst carry nothing: the same byte test as the
            # fast path skips the per-key look for them.
            if (self.model is not None and b"\r" not in frame and _nothing_to_read(frame)) \
                    or self._observe(frame):
                if kept is not None:
                    kept.append(frame)
            elif kept is None:
                kept = frames[:i]  # drop this frame, keep the ones before it
        if kept is None:
            return frames[0] if len(frames) == 1 else b"".join(frames)
        return b"".join(kept)

    def _observe(self, frame: bytes) -> bool:
        """Read what matters from one frame; False means: do not forward it."""
        if self.model is None and b'"model"' in frame:
            obj = self._json(frame)
            if type(obj) is dict and type(obj.get("model")) is str:
                self.model = obj["model"]
        i = frame.find(b'"usage"')
        if i >= 0 and not _value_is_null(frame, i + 7):
            obj = self._json(frame)
            if type(obj) is dict and type(obj.get("usage")) is dict:
                # Cumulative per the spec: the last report wins, never summed.
                self.usage = obj["usage"]
                if self.strip_usage and obj.get("choices") == []:
                    return False
        i = frame.find(b'"finish_reason"')
        if i >= 0 and not _value_is_null(frame, i + 15):
            obj = self._json(frame)
            if type(obj) is dict:
                for choice in obj.get("choices") or ():
                    if type(choice) is dict and type(choice.get("finish_reason")) is str:
                        self.finish_reason = choice["finish_reason"]
        if b'"error"' in frame:
            obj = self._json(frame)
            if type(obj) is dict and obj.get("error"):
                self.error = obj["error"] if type(obj["error"]) is dict else {"message": str(obj["error"])}
                self.complete = False
        elif _DONE in frame and (data_of(frame) or b"").strip() == _DONE:
            self.complete = self.error is None
        return True

    @staticmethod
    def _json(frame: bytes) -> Any:
        data = data_of(frame)
        if not data or data == _DONE:
            return None
        try:
            return jsonio.loads(data)
        except jsonio.JSONDecodeError:
            return None

    def finish(self) -> bytes:
        """Bytes left at end of stream.  An unterminated event is dropped: SSE
        clients discard it anyway (WHATWG §9.2), and after a cut it could
        swallow the error event that follows."""
        rest = self._tail
        return rest if self.complete and rest.strip() == b"" else b""

    @property
    def at_boundary(self) -> bool:
        """True when no partial event is held: a keep-alive can go out now."""
        return not self._tail

    @property
    def error_relayed(self) -> bool:
        """The provider's own error event went through: the stream already ends in an error."""
        return self.error is not None

    @staticmethod
    def heartbeat() -> bytes:
        """An SSE comment: every SSE parser skips it (WHATWG §9.2), so does the SDK."""
        return b": ping\n\n"

    @staticmethod
    def error_frame(message: str, kind: str = "upstream_error") -> bytes:
        """A mid-stream Chat error event (§1.6): the SDKs raise ``APIError`` on it."""
        return b"data: " + jsonio.dumps({"error": {
            "message": message, "type": "server_error", "param": None, "code": kind,
        }}) + b"\n\n"


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
    return ChatStreamObserver.error_frame(message, "upstream_timeout" if timeout else "stream_cut")


# Keep-alives per client format (protocols.md §6.3): Anthropic's own ``ping``
# event, an SSE comment elsewhere.  Responses clients in translated streams get
# a real, ignorable event from the encoder instead (Codex resets its idle timer
# only on events).
ANTHROPIC_PING = b'event: ping\ndata: {"type": "ping"}\n\n'
COMMENT_PING = b": ping\n\n"


def heartbeat_frame(fmt: str) -> bytes:
    return ANTHROPIC_PING if fmt == "anthropic_messages" else COMMENT_PING


def is_error_frame(fmt: str, frame: bytes) -> bool:
    """Whether a raw frame of ``fmt`` is that format's error event (Chat and Gemini:
    a data object with an ``error`` key; Anthropic ``event: error``; Responses
    ``error`` or ``response.failed``)."""
    if b"error" not in frame and b"failed" not in frame:
        return False
    if fmt == "anthropic_messages":
        return event_of(frame) == b"error"
    if fmt == "openai_responses":
        return event_of(frame) in (b"error", b"response.failed")
    data = data_of(frame)
    if not data or b'"error"' not in data or data.lstrip()[:1] != b"{":
        return False
    return _top_level_error(data)


def _top_level_error(data: bytes) -> bool:
    try:
        obj = jsonio.loads(data)
    except jsonio.JSONDecodeError:
        return False
    return type(obj) is dict and bool(obj.get("error"))
