"""What observe mode needs from Chat Completions: the stream's fact reader
(``ChatFacts``, driven by ``protocols.observe.StreamTap``), the complete reply's facts,
the mid-stream error event and the keep-alive."""

from __future__ import annotations

from typing import Any

from .. import ir, jsonio
from .. import usage as usage_mod
from ..errors import ProtocolError
from ..observe import COMMENT_PING, frame_json
from ..sse import data_of

_DONE = b"[DONE]"

#: Where a complete reply keeps its usage and served model, and the usage reader.
REPLY_FACTS = ("usage", "model", usage_mod.from_openai_chat)

#: An SSE comment: every SSE parser skips it (WHATWG HTML §9.2), so do the SDKs.
HEARTBEAT = COMMENT_PING


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


class ChatFacts:
    """The facts of a Chat Completions stream, read by byte search (most chunks are
    never parsed): ``model`` (served model), ``usage`` (``ir.Usage``, the last report),
    ``finish_reason``, ``complete`` (``[DONE]`` seen, no error), ``error`` (the error
    object of a mid-stream error event, if any)."""

    __slots__ = ("strip_usage", "model", "usage", "finish_reason", "complete", "error")

    #: Chat events carry no sequence number.
    next_sequence = 0

    def __init__(self, *, strip_usage: bool = False) -> None:
        self.strip_usage = strip_usage
        self.model: str | None = None
        self.usage: ir.Usage | None = None
        self.finish_reason: str | None = None
        self.complete = False
        self.error: dict[str, Any] | None = None

    @property
    def head_done(self) -> bool:
        return self.model is not None

    @property
    def error_relayed(self) -> bool:
        return self.error is not None

    @property
    def ended(self) -> bool:
        """``[DONE]`` or an error event came: a provider sends nothing after either."""
        return self.complete or self.error is not None

    def close(self) -> None:
        pass

    def read(self, frame: bytes) -> bool:
        """Read one event; False means: do not forward it (the forced usage chunk)."""
        if self.model is not None and _plain_delta(frame):
            return True
        if self.model is None and b'"model"' in frame:
            obj = frame_json(frame)
            if type(obj) is dict and type(obj.get("model")) is str:
                self.model = obj["model"]
        i = frame.find(b'"usage"')
        if i >= 0 and not _value_is_null(frame, i + 7):
            obj = frame_json(frame)
            if type(obj) is dict and type(obj.get("usage")) is dict:
                # Cumulative per the spec: the last report wins, never summed. A report
                # that is not token counts is not a fact; the bytes still go through.
                try:
                    self.usage = usage_mod.from_openai_chat(obj["usage"])
                except ProtocolError:
                    pass
                if self.strip_usage and obj.get("choices") == []:
                    return False
        i = frame.find(b'"finish_reason"')
        if i >= 0 and not _value_is_null(frame, i + 15):
            obj = frame_json(frame)
            if type(obj) is dict:
                for choice in obj.get("choices") or ():
                    if type(choice) is dict and type(choice.get("finish_reason")) is str:
                        self.finish_reason = choice["finish_reason"]
        if b'"error"' in frame:
            obj = frame_json(frame)
            if type(obj) is dict and obj.get("error"):
                err = obj["error"]
                self.error = err if type(err) is dict else {"message": str(err)}
                self.complete = False
        elif _DONE in frame and (data_of(frame) or b"").strip() == _DONE:
            self.complete = self.error is None
        return True


def stream_watch(*, strip_usage: bool = False) -> ChatFacts:
    """The fact reader for a Chat stream; ``strip_usage`` drops the ``choices: []``
    usage chunk ``body.request_stream_usage`` asked for."""
    return ChatFacts(strip_usage=strip_usage)


def stream_error_event(message: str, kind: str = "upstream_error", next_sequence: int = 0) -> bytes:
    """A mid-stream Chat error event (docs/protocols.md §1.6), ``code`` naming the
    failure: the SDKs raise ``APIError`` on it."""
    return b"data: " + jsonio.dumps({"error": {
        "message": message, "type": "server_error", "param": None, "code": kind,
    }}) + b"\n\n"
