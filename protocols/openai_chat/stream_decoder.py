"""OpenAI Chat Completions stream decoder: ``data:`` chunks -> IR events."""

from __future__ import annotations

from typing import Any

from .. import ir, jsonio
from .. import usage as usage_mod
from .._fields import client_name as _client_name
from .._openai import _KIND_TO_ERROR, _error_fields, _kind_for
from .._streams import StreamDecoderBase
from ..errors import UpstreamProtocolError
from ..ir import (
    BlockKind,
    BlockStart,
    BlockStop,
    ErrorKind,
    MessageEnd,
    MessageStart,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    ToolKind,
    UsageUpdate,
)
from .reply import _stop_from_finish

# ---------------------------------------------------------------------------------------
# Streams: wire -> IR
# ---------------------------------------------------------------------------------------

_DONE = b"[DONE]"


def _nothing_to_observe(payload: bytes) -> bool:
    """True when a chunk cannot carry a fact observe mode needs (tool calls, a finish
    reason, usage, an error), judged by byte search so most chunks are never parsed.
    Conservative: any doubt (other spacing, ``null`` spelled differently) means parse."""
    if b'"tool_calls"' in payload or b'"error"' in payload:
        return False
    i = payload.find(b'"finish_reason"')
    if i >= 0 and not payload.startswith(b":null", i + 15):
        return False
    i = payload.find(b'"usage"')
    if i >= 0 and not payload.startswith(b":null", i + 7):
        return False
    return True


class StreamDecoder(StreamDecoderBase):
    """Chat ``data:`` chunks → IR events (docs/protocols.md §1.5).

    Holds the terminal ``MessageEnd`` until usage is known: OpenAI sends the usage chunk
    *after* the finish chunk (§5.8 case 15), so the finish reason is remembered and
    ``MessageEnd`` is emitted at ``[DONE]`` or, for a close-delimited stream that did send a
    finish reason, at ``close()``. EOF without a finish reason becomes a ``StreamError``
    (§5.6, "Chat upstream → Anthropic client" 7).

    Tool calls are keyed by their Chat ``index``. Each gets an IR block when first seen and
    stays open until the finish chunk, so interleaved fragments stay correct (IR contract
    rule 3). Only choice 0 is read (``n > 1`` is rejected for translation).

    Facts read by ``Translation``: ``model``, ``id``, ``usage``, ``stop_reason``,
    ``tool_calls``, ``failed``, ``done``.
    """

    __slots__ = ("_started", "_next", "_text", "_reasoning", "_tools", "_open_tools", "_finish")

    _TEXT_KEY = b'"content":"'
    _VARYING_KEY = b'"obfuscation":"'  # OpenAI pads each chunk with a random string

    def __init__(self, ctx: ir.Context | None = None, *, observe: bool = False) -> None:
        super().__init__(ctx, observe=observe)
        self._started = False
        self._next = 0  # next IR block index
        self._text = -1  # open text block, or -1
        self._reasoning = -1  # open reasoning block, or -1
        self._tools: dict[int, int] = {}  # Chat tool index -> IR block index
        self._open_tools: list[int] = []  # open tool blocks, IR indexes in start order
        self._finish: Any = None

    def _eof(self, out: list[ir.StreamEvent]) -> None:
        if self._finish is not None:
            # Close-delimited stream (no [DONE]) after a finish reason: a clean end
            # (the SDKs accept it, docs/protocols.md §7).
            self._end(out)
        else:
            self._fail(out, StreamError(ErrorKind.UPSTREAM_PROTOCOL,
                                        "upstream closed the stream before finish_reason"))

    # -- internals ---------------------------------------------------------------------

    def _start(self, chunk: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        self._started = True
        model = chunk.get("model")
        cid = chunk.get("id")
        self.model = model if type(model) is str else ""
        self.id = cid if type(cid) is str else ""
        out.append(MessageStart(self.id, self.model))

    def _payload(self, payload: bytes, out: list[ir.StreamEvent]) -> None:
        if payload[:6] == _DONE and payload.strip() == _DONE:
            self._end(out)
            return
        if self._observe and self._started and _nothing_to_observe(payload):
            return
        try:
            chunk = jsonio.loads(payload)
        except jsonio.JSONDecodeError:
            raise UpstreamProtocolError("Chat stream chunk is not JSON", param="data") from None
        if type(chunk) is not dict:
            raise UpstreamProtocolError("Chat stream chunk is not an object", param="data")
        err = chunk.get("error")
        if err:
            message, etype, code, _ = _error_fields(err)
            kind = _kind_for(0, etype, code)
            self._fail(out, StreamError(kind, message, _KIND_TO_ERROR[kind][0],
                                        etype if type(etype) is str else None,
                                        code if type(code) is str else None))
            return
        plain = None  # the text of a chunk that is only a text delta
        before = len(out)
        if not self._started:
            self._start(chunk, out)
        choices = chunk.get("choices")
        if choices:
            if type(choices) is not list:
                raise UpstreamProtocolError("choices is not an array", param="choices")
            for choice in choices:
                if type(choice) is not dict:
                    raise UpstreamProtocolError("choice is not an object", param="choices")
                if choice.get("index", 0) == 0:
                    # Most chunks: {"content": "..."} while a text block is open and no
                    # finish reason; _choice's fast path, without the call.
                    delta = choice.get("delta")
                    if (type(delta) is dict and len(delta) == 1 and self._text >= 0
                            and not self._observe and choice.get("finish_reason") is None
                            and type(content := delta.get("content")) is str):
                        if content:
                            out.append(TextDelta(self._text, content))
                            plain = content
                    else:
                        self._choice(choice, out)
        u = chunk.get("usage")
        if u:
            self.usage = usage_mod.from_openai_chat(u)
            out.append(UsageUpdate(self.usage))
        # ``plain`` is set only from the one choice of a list (hot path: no type check).
        elif plain is not None and len(choices) == 1 and len(out) == before + 1:  # type: ignore[arg-type]
            self._learn_text(plain, None)

    def _text_event(self, text: str, where: Any) -> Any:
        # A templated frame is a content-only delta of choice 0: what _payload's fast
        # path makes of it while a text block is open.
        return TextDelta(self._text, text) if self._text >= 0 else None

    def _choice(self, choice: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        delta = choice.get("delta")
        if delta:
            if type(delta) is not dict:
                raise UpstreamProtocolError("delta is not an object", param="delta")
            if len(delta) == 1 and self._text >= 0 and not self._observe:
                # Fast path, most chunks: {"content": "..."} while a text block is open.
                content = delta.get("content")
                if content is not None and type(content) is str:
                    if content:
                        out.append(TextDelta(self._text, content))
                else:
                    self._delta(delta, out)
            elif self._observe:
                # Observe mode needs facts only: tool calls and the finish reason.
                tcs = delta.get("tool_calls")
                if tcs:
                    self._tool_calls(tcs, out)
            else:
                self._delta(delta, out)
        finish = choice.get("finish_reason")
        if finish is not None and self._finish is None:
            self._finish = finish
            self._close_blocks(out)

    def _delta(self, delta: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        rc = delta.get("reasoning_content") or delta.get("reasoning")
        if rc and type(rc) is str:
            self._reasoning_delta(rc, out)
        content = delta.get("content")
        if content:
            self._text_delta(content, out)
        refusal = delta.get("refusal")
        if refusal:
            self._text_delta(refusal, out)
        tcs = delta.get("tool_calls")
        if tcs:
            self._tool_calls(tcs, out)

    def _close_blocks(self, out: list[ir.StreamEvent]) -> None:
        if self._text >= 0:
            out.append(BlockStop(self._text))
            self._text = -1
        if self._reasoning >= 0:
            out.append(BlockStop(self._reasoning))
            self._reasoning = -1
        for idx in self._open_tools:
            out.append(BlockStop(idx))
        self._open_tools = []

    def _text_delta(self, text: Any, out: list[ir.StreamEvent]) -> None:
        if type(text) is not str:
            raise UpstreamProtocolError("content is not a string", param="content")
        idx = self._text
        if idx < 0:
            if self._reasoning >= 0 or self._open_tools:
                self._close_blocks(out)
            idx = self._text = self._next
            self._next += 1
            out.append(BlockStart(idx, BlockKind.TEXT))
        out.append(TextDelta(idx, text))

    def _reasoning_delta(self, text: str, out: list[ir.StreamEvent]) -> None:
        idx = self._reasoning
        if idx < 0:
            if self._text >= 0 or self._open_tools:
                self._close_blocks(out)
            idx = self._reasoning = self._next
            self._next += 1
            out.append(BlockStart(idx, BlockKind.REASONING))
        out.append(ReasoningDelta(idx, text))

    def _tool_calls(self, tcs: Any, out: list[ir.StreamEvent]) -> None:
        if type(tcs) is not list:
            raise UpstreamProtocolError("tool_calls is not an array", param="tool_calls")
        for tc in tcs:
            if type(tc) is not dict or type(tc.get("index", 0)) is not int:
                raise UpstreamProtocolError("tool call fragment without an integer index",
                                            param="tool_calls.index")
            k = tc.get("index", 0)
            ttype = tc.get("type")
            inner = tc.get("custom") if ttype == "custom" else tc.get("function")
            if inner is not None and type(inner) is not dict:
                raise UpstreamProtocolError("tool call function is not an object",
                                            param="tool_calls.function")
            args = None
            if inner:
                args = inner.get("input") if ttype == "custom" else inner.get("arguments")
                if args is not None and type(args) is not str:
                    raise UpstreamProtocolError("tool call arguments are not a string",
                                                param="tool_calls.function.arguments")
            idx = self._tools.get(k)
            if idx is None:
                if self._finish is not None:
                    raise UpstreamProtocolError("tool call after finish_reason",
                                                param="tool_calls")
                if self._text >= 0 or self._reasoning >= 0:
                    # Text and reasoning never overlap another block (IR rule 3).
                    if self._text >= 0:
                        out.append(BlockStop(self._text))
                        self._text = -1
                    if self._reasoning >= 0:
                        out.append(BlockStop(self._reasoning))
                        self._reasoning = -1
                idx = self._next
                self._next += 1
                self._tools[k] = idx
                self._open_tools.append(idx)
                self.tool_calls += 1
                tid = tc.get("id")
                name = inner.get("name") if inner else None
                if type(tid) is not str or not tid:
                    tid = self._ctx.new_id("call_") if self._ctx is not None else f"call_{k}"
                if type(name) is not str:
                    name = ""
                out.append(BlockStart(
                    idx, BlockKind.TOOL_CALL, tool_id=tid,
                    tool_name=_client_name(self._ctx, name),
                    tool_kind=ToolKind.CUSTOM if ttype == "custom" else ToolKind.FUNCTION,
                ))
            elif idx not in self._open_tools:
                raise UpstreamProtocolError("tool call fragment after its block closed",
                                            param="tool_calls")
            if args and not self._observe:
                out.append(ToolArgsDelta(idx, args))

    def _end(self, out: list[ir.StreamEvent]) -> None:
        self._close_blocks(out)
        self.stop_reason = _stop_from_finish(self._finish, self.tool_calls > 0)
        self.done = True
        out.append(MessageEnd(self.stop_reason))
