"""OpenAI Chat Completions stream encoder: IR events -> ``data:`` chunks."""

from __future__ import annotations

from .. import ir, jsonio
from .. import usage as usage_mod
from .._fields import custom_tool_names
from .._openai import _KIND_TO_ERROR, wire_tool_id
from .._streams import StreamEncoderBase
from ..ir import (
    BlockKind,
    BlockStart,
    MessageEnd,
    MessageStart,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    ToolKind,
    Usage,
    UsageUpdate,
)
from .tables import _STOP_TO_FINISH

# ---------------------------------------------------------------------------------------
# Streams: IR -> wire
# ---------------------------------------------------------------------------------------


class StreamEncoder(StreamEncoderBase):
    """IR events → Chat ``data:`` chunks for a Chat client (docs/protocols.md §1.5, §5.6).

    Chunks are built from byte templates prepared once at ``MessageStart``: the common
    ``id``/``object``/``created``/``model`` head and the ``choices`` tail are constant for
    the whole stream, so a text delta costs one ``dumps`` of its string and one
    concatenation. Strings are always serialised by ``jsonio.dumps`` (never spliced raw),
    so the JSON stays valid and the line holds no raw CR/LF. A call to a custom tool the
    client declared is a ``type: "custom"`` tool call whose raw input streams as
    ``custom.input`` fragments. A cut stream ends with an error chunk, never with a
    fabricated ``[DONE]`` (§6.3 "Cut streams").
    """

    __slots__ = (
        "_include_usage", "_head", "_tail", "_usage_head", "_text_head", "_text_tail",
        "_tool_args", "_tool_count", "_usage", "_custom",
    )

    def __init__(self, ctx: ir.Context | None = None) -> None:
        super().__init__(ctx)
        creq = ctx.client_request if ctx is not None else None
        self._include_usage = bool(creq.include_usage) if creq is not None else False
        self._custom = custom_tool_names(ctx)
        self._head = b""
        self._tail = b""
        self._usage_head = b""
        self._text_head = b""
        self._text_tail = b""
        # IR block index -> the head of its argument delta chunk (holds the Chat index).
        self._tool_args: dict[int, bytes] = {}
        self._tool_count = 0
        self._usage: Usage | None = None

    # -- handlers ----------------------------------------------------------------------

    def _chunk(self, delta: bytes) -> bytes:
        return self._head + delta + self._tail

    def _on_start(self, ev: MessageStart) -> bytes:
        ctx = self._ctx
        creq = ctx.client_request if ctx is not None else None
        cid = ctx.new_id("chatcmpl-") if ctx is not None else (ev.id or "chatcmpl")
        model = ev.model or (creq.model if creq is not None else "")
        created = ctx.created if ctx is not None else 0
        common = (b'{"id":' + jsonio.dumps(cid) + b',"object":"chat.completion.chunk","created":'
                  + str(int(created)).encode() + b',"model":' + jsonio.dumps(model)
                  + b',"service_tier":"default"')
        self._head = b"data: " + common + b',"choices":[{"index":0,"delta":'
        self._tail = (b',"logprobs":null,"finish_reason":null}]'
                      + (b',"usage":null' if self._include_usage else b"") + b"}\n\n")
        self._usage_head = b"data: " + common + b',"choices":[],"usage":'
        self._text_head = self._head + b'{"content":'
        self._text_tail = b"}" + self._tail
        self._started = True
        if ev.usage is not None:
            self._usage = ev.usage
        # Role once, in the first chunk (§1.5 step 1).
        return self._chunk(b'{"role":"assistant","content":"","refusal":null}')

    def _ensure_started(self) -> bytes:
        if self._started:
            return b""
        return self._on_start(MessageStart("", ""))

    def _on_block_start(self, ev: BlockStart) -> bytes:
        if ev.kind is not BlockKind.TOOL_CALL:
            return b""
        k = self._tool_count
        self._tool_count += 1
        index = b'{"index":' + str(k).encode()
        name = ev.tool_name or ""
        tid = wire_tool_id(ev.tool_id or (self._ctx.new_id("call_") if self._ctx else f"call_{k}"))
        if ev.tool_kind is ToolKind.CUSTOM and name in self._custom:
            # A custom tool's raw input streams as custom.input, typed on every fragment.
            body = (index + b',"id":' + jsonio.dumps(tid)
                    + b',"type":"custom","custom":{"name":' + jsonio.dumps(name)
                    + b',"input":""}}')
            self._tool_args[ev.index] = (b'{"tool_calls":[' + index
                                         + b',"type":"custom","custom":{"input":')
        else:
            # id, type and name once per index (§1.5).
            body = (index + b',"id":' + jsonio.dumps(tid)
                    + b',"type":"function","function":{"name":' + jsonio.dumps(name)
                    + b',"arguments":""}}')
            self._tool_args[ev.index] = b'{"tool_calls":[' + index + b',"function":{"arguments":'
        return self._ensure_started() + self._chunk(b'{"tool_calls":[' + body + b"]}")

    def _on_text(self, ev: TextDelta) -> bytes:
        if not ev.text:
            return b""
        return self._text_head + jsonio.dumps(ev.text) + self._text_tail

    def _on_args(self, ev: ToolArgsDelta) -> bytes:
        if not ev.arguments:
            return b""
        head = self._tool_args.get(ev.index)
        if head is None:
            return b""
        return self._chunk(head + jsonio.dumps(ev.arguments) + b"}}]}")

    def _on_reasoning(self, ev: ReasoningDelta) -> bytes:
        # The de-facto reasoning_content delta (DeepSeek, vLLM, LiteLLM), §5.6 step 5.
        if not ev.text:
            return b""
        return self._chunk(b'{"reasoning_content":' + jsonio.dumps(ev.text) + b"}")

    def _on_usage(self, ev: UsageUpdate) -> bytes:
        self._usage = ev.usage
        return b""

    def _on_end(self, ev: MessageEnd) -> bytes:
        out = self._ensure_started()
        finish = _STOP_TO_FINISH[ev.stop_reason]
        if self._tool_count and finish == "stop":
            finish = "tool_calls"
        out += (self._head + b'{},"logprobs":null,"finish_reason":"' + finish.encode() + b'"}]'
                + (b',"usage":null' if self._include_usage else b"") + b"}\n\n")
        if self._include_usage and self._usage is not None:
            # §1.5 step 5: choices:[] with the full usage.
            out += self._usage_head + jsonio.dumps(usage_mod.to_openai_chat(self._usage)) + b"}\n\n"
        self._done = True
        return out + b"data: [DONE]\n\n"

    def _on_error(self, ev: StreamError) -> bytes:
        # §1.6: a data line whose JSON has an "error" key, then no [DONE].
        _, etype, code = _KIND_TO_ERROR[ev.kind]
        self._done = True
        return b"data: " + jsonio.dumps({"error": {
            "message": ev.message, "type": etype, "param": None, "code": code,
        }}) + b"\n\n"

    def _on_ping(self, ev: ir.Ping) -> bytes:
        # §6.3: an SSE comment is the safe Chat heartbeat.
        return b": ping\n\n"
