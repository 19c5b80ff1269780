"""Gemini stream encoder: IR events -> ``data:`` chunks."""

from __future__ import annotations

from typing import Any

from .. import ir, jsonio
from .. import usage as usage_mod
from .._streams import MAX_HELD_CHARS, StreamEncoderBase
from ..errors import (
    BufferLimitExceeded,
)
from ..ir import (
    BlockKind,
    BlockStart,
    BlockStop,
    MessageEnd,
    MessageStart,
    ReasoningDelta,
    SignatureDelta,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    ToolKind,
    Usage,
    UsageUpdate,
)
from .payload import _payload_signature
from .reply import _error_body
from .tables import _STOP_TO_FINISH, FORMAT

        # inlineData (generated images), executableCode…: not modelled in streams.


# ---------------------------------------------------------------------------------------
# Streams: IR -> wire
# ---------------------------------------------------------------------------------------


class StreamEncoder(StreamEncoderBase):
    """IR events → Gemini ``alt=sse`` frames for a Gemini client (docs/protocols.md §4).

    Every frame is ``data: <GenerateContentResponse>`` plus a blank line (no ``event:``
    lines, no end marker) and holds only the new parts: one ``text`` part per text delta,
    one ``text`` + ``thought`` part per reasoning delta, one whole ``functionCall`` part
    per tool call (its arguments are buffered, within ``MAX_HELD_CHARS``, until the
    block stops). The last frame carries ``finishReason`` and ``usageMetadata``. A
    ``StreamError`` becomes a frame holding a Google RPC ``error`` object, after which
    the stream ends; so does a cut stream, never with a fabricated ``finishReason`` (§6.3
    "Cut streams").
    """

    __slots__ = ("_head", "_tail", "_usage", "_tools", "_held", "_sig", "_id", "_model",
                 "_kinds", "_reasoning_text")

    def __init__(self, ctx: ir.Context | None = None) -> None:
        super().__init__(ctx)
        self._head = b""
        self._tail = b""
        self._usage: Usage | None = None
        self._tools: dict[int, tuple[str, str, ToolKind, list[str]]] = {}
        self._held = 0
        self._sig: dict[int, list[str]] = {}  # reasoning block -> signature pieces
        self._kinds: dict[int, BlockStart] = {}
        self._reasoning_text: dict[int, list[str]] = {}
        self._id = ""
        self._model = ""

    # -- writing -----------------------------------------------------------------------

    def _frame(self, parts: list[dict[str, Any]]) -> bytes:
        return self._head + jsonio.dumps(parts) + self._tail

    def _ensure_started(self) -> None:
        if not self._started:
            self._on_start(MessageStart("", ""))

    # -- handlers ----------------------------------------------------------------------

    def _on_start(self, ev: MessageStart) -> bytes:
        if self._started:
            return b""
        self._started = True
        ctx = self._ctx
        creq = ctx.client_request if ctx is not None else None
        self._id = ctx.new_id("resp_") if ctx is not None else (ev.id or "resp")
        self._model = ev.model or (creq.model if creq is not None else "")
        if ev.usage is not None:
            self._usage = ev.usage
        self._head = b'data: {"candidates":[{"content":{"parts":'
        self._tail = (b',"role":"model"},"index":0}],"modelVersion":' + jsonio.dumps(self._model)
                      + b',"responseId":' + jsonio.dumps(self._id) + b"}\n\n")
        return b""

    def _on_block_start(self, ev: BlockStart) -> bytes:
        self._ensure_started()
        self._kinds[ev.index] = ev
        if ev.kind is BlockKind.TOOL_CALL:
            tid = ev.tool_id or (self._ctx.new_id("call_") if self._ctx is not None else "call")
            self._tools[ev.index] = (tid, ev.tool_name or "", ev.tool_kind, [])
        return b""

    def _on_text(self, ev: TextDelta) -> bytes:
        if not ev.text:
            return b""
        self._ensure_started()
        return self._head + b'[{"text":' + jsonio.dumps(ev.text) + b"}]" + self._tail

    def _on_reasoning(self, ev: ReasoningDelta) -> bytes:
        if not ev.text:
            return b""
        self._ensure_started()
        self._reasoning_text.setdefault(ev.index, []).append(ev.text)
        return (self._head + b'[{"text":' + jsonio.dumps(ev.text) + b',"thought":true}]'
                + self._tail)

    def _on_signature(self, ev: SignatureDelta) -> bytes:
        if ev.signature:
            self._sig.setdefault(ev.index, []).append(ev.signature)
            start = self._kinds.get(ev.index)
            if start is not None and ev.provider is not None:
                self._kinds[ev.index] = BlockStart(start.index, start.kind,
                                                   redacted_data=start.redacted_data,
                                                   provider=ev.provider)
        return b""

    def _on_args(self, ev: ToolArgsDelta) -> bytes:
        tool = self._tools.get(ev.index)
        if tool is None or not ev.arguments:
            return b""
        self._held += len(ev.arguments)
        if self._held > MAX_HELD_CHARS:
            raise BufferLimitExceeded(
                f"more than {MAX_HELD_CHARS} characters of tool arguments held",
                param="functionCall.args", limit=MAX_HELD_CHARS)
        tool[3].append(ev.arguments)
        return b""

    def _on_block_stop(self, ev: BlockStop) -> bytes:
        idx = ev.index
        start = self._kinds.pop(idx, None)
        tool = self._tools.pop(idx, None)
        if tool is not None:
            tid, name, kind, pieces = tool
            raw = "".join(pieces)
            self._held -= len(raw)
            if kind is ToolKind.CUSTOM:
                args: Any = {ir.CUSTOM_INPUT_KEY: raw}
            else:
                args = ir.parse_arguments(raw, jsonio.loads)
            return self._frame([{"functionCall": {"id": tid, "name": name, "args": args}}])
        sig = self._sig.pop(idx, None)
        text = "".join(self._reasoning_text.pop(idx, ()))
        if start is None or start.kind is not BlockKind.REASONING:
            return b""
        provider = start.provider
        if provider == FORMAT:
            if sig:
                part = {"text": "", "thought": True, "thoughtSignature": "".join(sig)}
                return self._frame([part])
            return b""
        if sig or start.redacted_data is not None:
            payload = _payload_signature(provider or "", text, "".join(sig) if sig else None,
                                         start.redacted_data)
            return self._frame([{"text": "", "thought": True, "thoughtSignature": payload}])
        return b""

    def _on_usage(self, ev: UsageUpdate) -> bytes:
        self._usage = ev.usage
        return b""

    def _on_end(self, ev: MessageEnd) -> bytes:
        self._ensure_started()
        out = b""
        for idx in list(self._kinds):
            out += self._on_block_stop(BlockStop(idx))  # defensive: blocks left open
        self._done = True
        usage = jsonio.dumps(usage_mod.to_gemini(self._usage or Usage()))
        return out + (b'data: {"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},'
                      b'"finishReason":"' + _STOP_TO_FINISH[ev.stop_reason].encode()
                      + b'","index":0}],"usageMetadata":' + usage + b',"modelVersion":'
                      + jsonio.dumps(self._model) + b',"responseId":' + jsonio.dumps(self._id)
                      + b"}\n\n")

    def _on_error(self, ev: StreamError) -> bytes:
        self._done = True
        _, body = _error_body(ev.kind, ev.message)
        return b"data: " + jsonio.dumps(body) + b"\n\n"
