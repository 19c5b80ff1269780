"""Gemini stream decoder: ``data:`` chunks (each a whole ``GenerateContentResponse``)
-> IR events."""

from __future__ import annotations

from typing import Any

from .. import ir, jsonio
from .. import usage as usage_mod
from .._fields import custom_tool_names
from .._streams import StreamDecoderBase
from ..errors import (
    UpstreamProtocolError,
)
from ..ir import (
    BlockKind,
    BlockStart,
    BlockStop,
    ErrorKind,
    MessageEnd,
    MessageStart,
    ReasoningDelta,
    SignatureDelta,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    UsageUpdate,
)
from .reply import _call_from_wire, _error_kind, _stop
from .tables import _KIND_STATUS, FORMAT

# ---------------------------------------------------------------------------------------
# Streams: wire -> IR
# ---------------------------------------------------------------------------------------


class StreamDecoder(StreamDecoderBase):
    """Gemini ``alt=sse`` stream → IR events (docs/protocols.md §4 "Stream").

    Frames are data-only, ended by CRLF or LF blank lines (``FrameSplitter`` handles
    both); each is a whole ``GenerateContentResponse`` holding only new parts. Text parts
    extend the open text block, ``thought`` parts the open reasoning block; a whole
    ``functionCall`` part becomes a block start, one argument delta and a block stop.
    ``usageMetadata`` is cumulative: the last one is the usage, never a sum. There is no
    end marker: the clean end is EOF after a chunk with ``finishReason`` (or a
    ``promptFeedback.blockReason``), so ``MessageEnd`` is emitted by ``close()``; EOF
    without either is a ``StreamError``. A chunk with an ``error`` object ends the
    stream with a ``StreamError``.

    Facts read by ``Translation``: ``model``, ``id``, ``usage``, ``stop_reason``,
    ``tool_calls``, ``failed``, ``done``.
    """

    __slots__ = ("_started", "_next", "_text", "_reasoning", "_finish", "_blocked", "_raw_usage",
                 "_custom")

    def __init__(self, ctx: ir.Context | None = None, *, observe: bool = False) -> None:
        super().__init__(ctx, observe=observe)
        self._started = False
        self._next = 0
        self._text = -1  # open text block, or -1
        self._reasoning = -1  # open reasoning block, or -1
        self._finish: Any = None
        self._blocked = False
        self._raw_usage: Any = None
        self._custom = custom_tool_names(ctx)

    def _payload(self, payload: bytes, out: list[ir.StreamEvent]) -> None:
        try:
            chunk = jsonio.loads(payload)
        except jsonio.JSONDecodeError:
            raise UpstreamProtocolError("Gemini stream chunk is not JSON", param="data") from None
        self._chunk(chunk, out)

    def _eof(self, out: list[ir.StreamEvent]) -> None:
        if self._finish is None and not self._blocked:
            self._fail(out, StreamError(ErrorKind.UPSTREAM_PROTOCOL,
                                        "upstream closed the stream before finishReason"))
            return
        self._close_blocks(out)
        self.stop_reason = _stop(self._finish, self._blocked, self.tool_calls > 0)
        self.done = True
        out.append(MessageEnd(self.stop_reason))

    # -- internals ---------------------------------------------------------------------

    def _chunk(self, chunk: Any, out: list[ir.StreamEvent]) -> None:
        if type(chunk) is list:
            # A proxy that dropped alt=sse framing into an array: read its elements.
            for c in chunk:
                self._chunk(c, out)
                if self.done:
                    return
            return
        if type(chunk) is not dict:
            raise UpstreamProtocolError("Gemini stream chunk is not an object", param="data")
        err = chunk.get("error")
        if err is not None:
            e = err if type(err) is dict else {}
            message = e.get("message")
            code = e.get("code")
            kind = _error_kind(code if type(code) is int else 0, e.get("status"), e.get("details"))
            self._fail(out, StreamError(kind, message if type(message) is str else "upstream error",
                                        code if type(code) is int else _KIND_STATUS[kind][0],
                                        e.get("status") if type(e.get("status")) is str else None))
            return
        if not self._started:
            self._started = True
            rid, model = chunk.get("responseId"), chunk.get("modelVersion")
            self.id = rid if type(rid) is str else ""
            self.model = model if type(model) is str else ""
            out.append(MessageStart(self.id, self.model))
        candidates = chunk.get("candidates")
        if candidates:
            if type(candidates) is not list:
                raise UpstreamProtocolError("candidates is not an array", param="candidates")
            for cand in candidates:
                if type(cand) is not dict:
                    raise UpstreamProtocolError("candidate is not an object", param="candidates")
                if cand.get("index", 0) == 0:
                    self._candidate(cand, out)
        feedback = chunk.get("promptFeedback")
        if type(feedback) is dict and feedback.get("blockReason") is not None:
            self._blocked = True
        u = chunk.get("usageMetadata")
        if u is not None and u != self._raw_usage:
            # Cumulative on every chunk: replace, never add (§4, §5.5).
            self._raw_usage = u
            self.usage = usage_mod.from_gemini(u)
            out.append(UsageUpdate(self.usage))

    def _candidate(self, cand: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        content = cand.get("content")
        parts = content.get("parts") if type(content) is dict else None
        if parts:
            if type(parts) is not list:
                raise UpstreamProtocolError("parts is not an array", param="parts")
            for part in parts:
                if type(part) is not dict:
                    raise UpstreamProtocolError("part is not an object", param="parts")
                self._part(part, out)
        finish = cand.get("finishReason")
        if finish is not None:
            self._finish = finish

    def _close_blocks(self, out: list[ir.StreamEvent]) -> None:
        if self._text >= 0:
            out.append(BlockStop(self._text))
            self._text = -1
        if self._reasoning >= 0:
            out.append(BlockStop(self._reasoning))
            self._reasoning = -1

    def _new(self) -> int:
        idx = self._next
        self._next += 1
        return idx

    def _part(self, part: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        sig = part.get("thoughtSignature")
        if sig is not None and type(sig) is not str:
            raise UpstreamProtocolError("thoughtSignature is not a string",
                                        param="thoughtSignature")
        text = part.get("text")
        if text is not None and type(text) is not str:
            raise UpstreamProtocolError("text is not a string", param="text")
        if part.get("thought") is True:
            if self._text >= 0:
                out.append(BlockStop(self._text))
                self._text = -1
            if self._reasoning < 0:
                self._reasoning = self._new()
                out.append(BlockStart(self._reasoning, BlockKind.REASONING, provider=FORMAT))
            if text and not self._observe:
                out.append(ReasoningDelta(self._reasoning, text))
            if sig:
                out.append(SignatureDelta(self._reasoning, sig, FORMAT))
            return
        if sig:
            # A signature on an ordinary part: a reasoning block of its own just before it.
            self._close_blocks(out)
            idx = self._new()
            out.append(BlockStart(idx, BlockKind.REASONING, provider=FORMAT))
            out.append(SignatureDelta(idx, sig, FORMAT))
            out.append(BlockStop(idx))
        fc = part.get("functionCall")
        if fc is not None:
            if type(fc) is not dict:
                raise UpstreamProtocolError("functionCall is not an object", param="functionCall")
            self._close_blocks(out)
            seed = self.id or (self._ctx.request_id if self._ctx is not None else "")
            cid, name, args, kind, _, _ = _call_from_wire(fc, self._ctx, self._custom, seed,
                                                          self.tool_calls)
            self.tool_calls += 1
            idx = self._new()
            out.append(BlockStart(idx, BlockKind.TOOL_CALL, tool_id=cid, tool_name=name,
                                  tool_kind=kind))
            if args and not self._observe:
                out.append(ToolArgsDelta(idx, args))  # whole args: one delta (§5.6)
            out.append(BlockStop(idx))
            return
        if text:
            if self._reasoning >= 0:
                out.append(BlockStop(self._reasoning))
                self._reasoning = -1
            if self._text < 0:
                self._text = self._new()
                out.append(BlockStart(self._text, BlockKind.TEXT))
            if not self._observe:
                out.append(TextDelta(self._text, text))
