"""Anthropic Messages stream encoder: IR events -> SSE obeying docs/protocols.md §3.8."""

from __future__ import annotations

from typing import Any

from .. import ir, jsonio
from .. import usage as usage_mod
from .._streams import MAX_HELD_CHARS, StreamEncoderBase
from ..errors import (
    UpstreamProtocolError,
)
from ..ir import (
    BlockKind,
    BlockStart,
    BlockStop,
    MessageEnd,
    MessageStart,
    ReasoningDelta,
    SignatureDelta,
    StopReason,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    Usage,
    UsageUpdate,
)
from .request_decode import wire_tool_id
from .tables import _KIND_TO_ERROR, _STOP_TO_WIRE, FORMAT, MESSAGE_NULLS, direct_caller

# ---------------------------------------------------------------------------------------
# Streams: IR -> wire
# ---------------------------------------------------------------------------------------

_DELTA_EVENT = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_TEXT_MID = b',"delta":{"type":"text_delta","text":'
_ARGS_MID = b',"delta":{"type":"input_json_delta","partial_json":'
_THINK_MID = b',"delta":{"type":"thinking_delta","thinking":'
_SIG_MID = b',"delta":{"type":"signature_delta","signature":'
_END = b"}}\n\n"


class StreamEncoder(StreamEncoderBase):
    """IR events → Anthropic SSE for an Anthropic client (docs/protocols.md §3.8, §5.6).

    * Every event has an ``event:`` line equal to its ``type`` (the SDK dispatches on it).
    * Blocks are numbered 0, 1, 2… in the order they are opened here, one at a time. A
      text or thinking block opens at its first non-empty delta, so an upstream's empty
      text never becomes an empty block (§5.8 case 7). A tool block that starts while
      another block is open is held (bounded by ``MAX_HELD_CHARS``) and replayed whole
      once the open block stops.
    * ``message_delta`` is written at ``MessageEnd``, when usage is final (decoders emit
      every ``UsageUpdate`` before it), then exactly one ``message_stop``.
    * ``StreamError`` becomes ``event: error``; nothing follows it. A cut stream ends with
      one, never with a fabricated ``message_stop`` (§6.3 "Cut streams").
    """

    __slots__ = (
        "_next", "_map", "_open", "_kinds", "_pending_tool", "_held", "_held_chars", "_usage",
        "_tool_blocks", "_prefix",
    )

    def __init__(self, ctx: ir.Context | None = None) -> None:
        super().__init__(ctx)
        self._next = 0  # next Anthropic block index
        self._map: dict[int, int] = {}  # IR index -> Anthropic index (opened blocks)
        self._open = -1  # IR index of the open Anthropic block, or -1
        self._kinds: dict[int, BlockStart] = {}  # IR index -> its BlockStart (not yet opened)
        self._held: dict[int, list[ir.StreamEvent]] = {}  # IR index -> held events
        self._held_chars = 0
        self._pending_tool: list[int] = []  # held tool blocks, in start order
        self._prefix: dict[int, bytes] = {}  # Anthropic index -> delta event prefix
        self._usage: Usage | None = None
        self._tool_blocks = 0

    # -- helpers -----------------------------------------------------------------------

    @staticmethod
    def _event(name: bytes, obj: Any) -> bytes:
        return b"event: " + name + b"\ndata: " + jsonio.dumps(obj) + b"\n\n"

    def _open_block(self, idx: int, block: dict[str, Any]) -> bytes:
        """Write content_block_start for IR block ``idx``."""
        a = self._next
        self._next += 1
        self._map[idx] = a
        self._open = idx
        self._prefix[a] = _DELTA_EVENT + str(a).encode()
        return (b'event: content_block_start\ndata: {"type":"content_block_start","index":'
                + str(a).encode() + b',"content_block":' + jsonio.dumps(block) + b"}\n\n")

    def _ensure_started(self) -> bytes:
        if self._started:
            return b""
        return self._on_start(MessageStart("", ""))

    def _busy(self, idx: int) -> bool:
        """True when events of block ``idx`` must wait: another block is open."""
        return self._open >= 0 and self._open != idx

    def _hold(self, idx: int, ev: ir.StreamEvent, size: int) -> bytes:
        self._held_chars += size
        if self._held_chars > MAX_HELD_CHARS:
            raise UpstreamProtocolError(
                f"more than {MAX_HELD_CHARS} characters of overlapping tool calls held",
                param="tool_calls")
        self._held.setdefault(idx, []).append(ev)
        return b""

    # -- handlers ----------------------------------------------------------------------

    def _on_start(self, ev: MessageStart) -> bytes:
        if self._started:
            return b""
        self._started = True
        ctx = self._ctx
        creq = ctx.client_request if ctx is not None else None
        if ev.usage is not None:
            self._usage = ev.usage
        u = usage_mod.to_anthropic_message(ev.usage or Usage())
        msg: dict[str, Any] = {
            "id": ctx.new_id("msg_") if ctx is not None else (ev.id or "msg"),
            "type": "message",
            "role": "assistant",
            "model": ev.model or (creq.model if creq is not None else ""),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": u,
            **MESSAGE_NULLS,
        }
        return self._event(b"message_start", {"type": "message_start", "message": msg})

    def _on_block_start(self, ev: BlockStart) -> bytes:
        idx = ev.index
        if ev.kind is BlockKind.TOOL_CALL:
            self._tool_blocks += 1
            if self._open >= 0 or self._pending_tool:
                self._kinds[idx] = ev
                self._pending_tool.append(idx)
                self._held[idx] = []
                return b""
            return self._start_tool(ev)
        if ev.kind is BlockKind.REASONING and ev.redacted_data is not None:
            self._kinds[idx] = ev
            if ev.provider != FORMAT:
                return b""
            # Whole block in the start event; no deltas follow.
            return self._open_block(idx, {"type": "redacted_thinking", "data": ev.redacted_data})
        # Text and thinking blocks open lazily at their first non-empty delta.
        self._kinds[idx] = ev
        return b""

    def _start_tool(self, ev: BlockStart) -> bytes:
        self._kinds.pop(ev.index, None)
        block = {"type": "tool_use", "id": wire_tool_id(ev.tool_id or ""),
                 "name": ev.tool_name or "", "input": {}, "caller": direct_caller()}
        return self._ensure_started() + self._open_block(ev.index, block)

    def _on_text(self, ev: TextDelta) -> bytes:
        if not ev.text:
            return b""
        idx = ev.index
        a = self._map.get(idx)
        if a is None:
            if self._open >= 0:
                return b""  # text never overlaps (IR rule 3); ignore a stray delta
            head = self._open_block(idx, {"type": "text", "text": "", "citations": None})
            a = self._map[idx]
            return head + self._prefix[a] + _TEXT_MID + jsonio.dumps(ev.text) + _END
        return self._prefix[a] + _TEXT_MID + jsonio.dumps(ev.text) + _END

    def _on_args(self, ev: ToolArgsDelta) -> bytes:
        if not ev.arguments:
            return b""
        idx = ev.index
        if idx in self._held:
            return self._hold(idx, ev, len(ev.arguments))
        a = self._map.get(idx)
        if a is None:
            return b""
        return self._prefix[a] + _ARGS_MID + jsonio.dumps(ev.arguments) + _END

    def _thinking_block(self, idx: int) -> bytes | None:
        """Open thinking block ``idx`` if needed; None if it cannot be shown."""
        if idx in self._map:
            return b""
        if self._open >= 0:
            return None
        return self._open_block(idx, {"type": "thinking", "thinking": "", "signature": ""})

    def _on_reasoning(self, ev: ReasoningDelta) -> bytes:
        if not ev.text:
            return b""
        head = self._thinking_block(ev.index)
        if head is None:
            return b""
        return head + self._prefix[self._map[ev.index]] + _THINK_MID + jsonio.dumps(ev.text) + _END

    def _on_signature(self, ev: SignatureDelta) -> bytes:
        # Only Anthropic's own signatures are valid for an Anthropic client (§5.8 case 11).
        if ev.provider != FORMAT or not ev.signature:
            return b""
        start = self._kinds.get(ev.index)
        if start is not None and start.kind is not BlockKind.REASONING:
            return b""
        head = self._thinking_block(ev.index)
        if head is None:
            return b""
        prefix = self._prefix[self._map[ev.index]]
        return head + prefix + _SIG_MID + jsonio.dumps(ev.signature) + _END

    def _on_block_stop(self, ev: BlockStop) -> bytes:
        idx = ev.index
        if idx in self._held:
            return self._hold(idx, ev, 0)
        self._kinds.pop(idx, None)
        a = self._map.pop(idx, None)
        if a is None:
            return b""  # a block that never opened (empty text, foreign redacted data)
        self._prefix.pop(a, None)
        out = (b'event: content_block_stop\ndata: {"type":"content_block_stop","index":'
               + str(a).encode() + b"}\n\n")
        if self._open == idx:
            self._open = -1
            out += self._flush_held()
        return out

    def _flush_held(self) -> bytes:
        """Replay held tool blocks in start order until one is still streaming."""
        parts = []
        while self._pending_tool and self._open < 0:
            idx = self._pending_tool.pop(0)
            start = self._kinds.pop(idx)
            events = self._held.pop(idx)
            parts.append(self._start_tool(start))
            for e in events:
                self._held_chars -= len(e.arguments) if type(e) is ToolArgsDelta else 0
                parts.append(self._dispatch[type(e)](self, e))
        return b"".join(parts)

    def _on_usage(self, ev: UsageUpdate) -> bytes:
        self._usage = ev.usage
        return b""

    def _on_end(self, ev: MessageEnd) -> bytes:
        out = self._ensure_started()
        # Decoders stop every block before MessageEnd; should one not have, close it and
        # replay any held tool blocks, so the client still gets complete blocks. Each
        # pass closes the open block or opens a held one, so this terminates.
        while self._open >= 0 or self._pending_tool:
            if self._open >= 0:
                out += self._on_block_stop(BlockStop(self._open))
            else:
                out += self._flush_held()
        stop = ev.stop_reason
        if self._tool_blocks and stop is StopReason.END_TURN:
            stop = StopReason.TOOL_USE
        seq = ev.stop_sequence if stop is StopReason.STOP_SEQUENCE else None
        if stop is StopReason.STOP_SEQUENCE and seq is None:
            stop = StopReason.END_TURN
        usage = usage_mod.to_anthropic(self._usage or Usage())
        self._done = True
        return (out + self._event(b"message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": _STOP_TO_WIRE[stop], "stop_sequence": seq,
                      **MESSAGE_NULLS},
            "usage": usage,
        }) + b'event: message_stop\ndata: {"type":"message_stop"}\n\n')

    def _on_error(self, ev: StreamError) -> bytes:
        _, etype = _KIND_TO_ERROR[ev.kind]
        self._done = True
        # As the API writes it: ``details`` (null) and the request's id beside the error.
        error = {"details": None, "type": etype, "message": ev.message}
        event = {"type": "error", "error": error,
                 "request_id": self._ctx.request_id if self._ctx is not None else None}
        return self._event(b"error", event)

    def _on_ping(self, ev: ir.Ping) -> bytes:
        if not self._started:
            return b""
        return b'event: ping\ndata: {"type": "ping"}\n\n'
