"""Anthropic Messages stream decoder: ``event:``/``data:`` SSE -> IR events."""

from __future__ import annotations

from typing import Any

from .. import ir, jsonio
from .. import usage as usage_mod
from .._fields import client_name as _client_name
from .._fields import (
    custom_tool_names,
    unwrap_custom_input,
)
from .._streams import MAX_HELD_CHARS, StreamDecoderBase
from ..errors import (
    BufferLimitExceeded,
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
    StopReason,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    ToolKind,
    UsageUpdate,
)
from .reply import _kind_for, _stop_from_wire
from .tables import _KIND_TO_ERROR, FORMAT

# ---------------------------------------------------------------------------------------
# Streams: wire -> IR
# ---------------------------------------------------------------------------------------


# Observe mode skips the JSON of these frames: they carry no facts.
_OBSERVE_SKIP = (b"event: content_block_delta\n", b"event: ping\n")


class StreamDecoder(StreamDecoderBase):
    """Anthropic SSE → IR events (docs/protocols.md §3.8).

    Dispatches on the JSON ``type`` (equal to the ``event:`` name on the real API, and
    present even when a proxy dropped the ``event:`` lines). Anthropic block indexes are
    renumbered into IR indexes, so blocks the IR does not model (server tool blocks) can
    be skipped without leaving gaps. Usage from ``message_start`` and the cumulative
    ``message_delta`` reports is merged field by field (``usage.merge_anthropic``).
    ``message_stop`` is the only clean end; EOF before it is a ``StreamError``.

    A call to a custom (freeform) tool of the client (``ctx.client_request``), which
    reached Anthropic as a tool taking ``{"input": raw}`` (``ir.CUSTOM_INPUT_KEY``), is a
    ``ToolKind.CUSTOM`` block: its input is held (within ``MAX_HELD_CHARS``) and comes
    out unwrapped, as one ``ToolArgsDelta`` with the raw string, when the block stops.

    Facts read by ``Translation``: ``model``, ``id``, ``usage``, ``stop_reason``,
    ``tool_calls``, ``failed``, ``done``.
    """

    __slots__ = ("_blocks", "_next", "_raw_usage", "_stop", "_stop_sequence", "_started",
                 "_custom", "_held", "_held_chars")

    _OBSERVE_SKIP = _OBSERVE_SKIP
    _TEXT_KEY = b'"text":"'
    _WHAT = "Anthropic stream event"

    def __init__(self, ctx: ir.Context | None = None, *, observe: bool = False) -> None:
        super().__init__(ctx, observe=observe)
        self._blocks: dict[Any, int] = {}  # Anthropic index -> IR index (-1 = skipped)
        self._next = 0
        self._raw_usage: dict[str, Any] = {}
        self._stop: StopReason | None = None
        self._stop_sequence: str | None = None
        self._started = False
        self._custom = custom_tool_names(ctx)
        self._held: dict[int, list[str]] = {}  # custom-tool block -> its input pieces
        self._held_chars = 0

    def _eof(self, out: list[ir.StreamEvent]) -> None:
        self._fail(out, StreamError(ErrorKind.UPSTREAM_PROTOCOL,
                                    "upstream closed the stream before message_stop"))

    # -- handlers ----------------------------------------------------------------------

    def _on_message_start(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        msg = obj.get("message")
        if type(msg) is not dict:
            raise UpstreamProtocolError("message_start without a message", param="message")
        if self._started:
            return
        self._started = True
        mid = msg.get("id")
        model = msg.get("model")
        self.id = mid if type(mid) is str else ""
        self.model = model if type(model) is str else ""
        u = msg.get("usage")
        if u is not None:
            self._raw_usage = usage_mod.merge_anthropic({}, u)
            self.usage = usage_mod.from_anthropic(self._raw_usage)
        out.append(MessageStart(self.id, self.model, self.usage))

    def _ir_index(self, obj: dict[str, Any]) -> int:
        aidx = obj.get("index")
        idx = self._blocks.get(aidx) if type(aidx) is int else None
        if idx is None:
            raise UpstreamProtocolError("content block event for an unknown index", param="index")
        return idx

    def _on_block_start(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        cb = obj.get("content_block")
        aidx = obj.get("index")
        if type(cb) is not dict or type(aidx) is not int:
            raise UpstreamProtocolError("content_block_start without a block",
                                        param="content_block")
        if aidx in self._blocks:
            raise UpstreamProtocolError("content block index started twice", param="index")
        ctype = cb.get("type")
        if ctype == "text":
            idx = self._new(aidx)
            out.append(BlockStart(idx, BlockKind.TEXT))
            text = cb.get("text")
            if text and type(text) is str and not self._observe:
                out.append(TextDelta(idx, text))
        elif ctype == "tool_use":
            idx = self._new(aidx)
            tid, name = cb.get("id"), cb.get("name")
            if type(tid) is not str or type(name) is not str:
                raise UpstreamProtocolError("tool_use block without id and name",
                                            param="content_block")
            self.tool_calls += 1
            name = _client_name(self._ctx, name)
            inp = cb.get("input")
            if name in self._custom:
                out.append(BlockStart(idx, BlockKind.TOOL_CALL, tool_id=tid, tool_name=name,
                                      tool_kind=ToolKind.CUSTOM))
                self._held[idx] = []
                if inp:
                    self._hold(idx, jsonio.dumps(inp).decode())
            else:
                out.append(BlockStart(idx, BlockKind.TOOL_CALL, tool_id=tid, tool_name=name))
                if inp and not self._observe:
                    # Input given whole in the start event (accepted, docs/protocols.md §7).
                    out.append(ToolArgsDelta(idx, jsonio.dumps(inp).decode()))
        elif ctype == "thinking":
            idx = self._new(aidx)
            out.append(BlockStart(idx, BlockKind.REASONING, provider=FORMAT))
            text = cb.get("thinking")
            if text and type(text) is str and not self._observe:
                out.append(ReasoningDelta(idx, text))
            sig = cb.get("signature")
            if sig and type(sig) is str and not self._observe:
                out.append(SignatureDelta(idx, sig, FORMAT))
        elif ctype == "redacted_thinking":
            idx = self._new(aidx)
            data = cb.get("data")
            out.append(BlockStart(idx, BlockKind.REASONING,
                                  redacted_data=data if type(data) is str else "",
                                  provider=FORMAT))
        else:
            self._blocks[aidx] = -1  # server tool blocks etc.: not modelled

    def _new(self, aidx: int) -> int:
        idx = self._next
        self._next += 1
        self._blocks[aidx] = idx
        return idx

    def _text_event(self, text: str, where: Any) -> Any:
        # A templated frame is a text_delta of Anthropic block ``where``.
        idx = self._blocks.get(where)
        return TextDelta(idx, text) if idx is not None and idx >= 0 else None

    def _on_block_delta(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        # The hot path (one call per streamed token): _ir_index inlined.
        aidx = obj.get("index")
        idx = self._blocks.get(aidx) if type(aidx) is int else None
        if idx is None:
            raise UpstreamProtocolError("content block event for an unknown index", param="index")
        if idx < 0:
            return
        delta = obj.get("delta")
        if type(delta) is not dict:
            raise UpstreamProtocolError("content_block_delta without a delta", param="delta")
        dtype = delta.get("type")
        if dtype == "text_delta":
            text = delta.get("text")
            if type(text) is not str:
                raise UpstreamProtocolError("text_delta without text", param="delta.text")
            out.append(TextDelta(idx, text))
            self._learn_text(text, aidx)
        elif dtype == "input_json_delta":
            pj = delta.get("partial_json")
            if type(pj) is not str:
                raise UpstreamProtocolError("input_json_delta without partial_json",
                                            param="delta.partial_json")
            if pj:
                if self._held and idx in self._held:
                    self._hold(idx, pj)
                else:
                    out.append(ToolArgsDelta(idx, pj))
        elif dtype == "thinking_delta":
            text = delta.get("thinking")
            if type(text) is not str:
                raise UpstreamProtocolError("thinking_delta without thinking",
                                            param="delta.thinking")
            out.append(ReasoningDelta(idx, text))
        elif dtype == "signature_delta":
            sig = delta.get("signature")
            if type(sig) is not str:
                raise UpstreamProtocolError("signature_delta without signature",
                                            param="delta.signature")
            out.append(SignatureDelta(idx, sig, FORMAT))
        # citations_delta and future delta types: not modelled.

    def _on_block_stop(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        idx = self._ir_index(obj)
        if idx >= 0:
            if self._held:
                held = self._held.pop(idx, None)
                if held is not None:
                    raw = unwrap_custom_input("".join(held))
                    if raw:
                        out.append(ToolArgsDelta(idx, raw))
            out.append(BlockStop(idx))

    def _hold(self, idx: int, piece: str) -> None:
        self._held_chars += len(piece)
        if self._held_chars > MAX_HELD_CHARS:
            raise BufferLimitExceeded(
                f"more than {MAX_HELD_CHARS} characters of custom tool input held",
                param="delta.partial_json", limit=MAX_HELD_CHARS)
        self._held[idx].append(piece)

    def _on_message_delta(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        delta = obj.get("delta")
        if type(delta) is dict:
            stop = delta.get("stop_reason")
            if stop is not None:
                self._stop = _stop_from_wire(stop)
                seq = delta.get("stop_sequence")
                self._stop_sequence = seq if type(seq) is str else None
        u = obj.get("usage")
        if u is not None:
            # Cumulative: overlay, never add (§3.8 step 3).
            self._raw_usage = usage_mod.merge_anthropic(self._raw_usage, u)
            self.usage = usage_mod.from_anthropic(self._raw_usage)
            out.append(UsageUpdate(self.usage))

    def _on_message_stop(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        stop = self._stop
        if stop is None:
            stop = StopReason.TOOL_USE if self.tool_calls else StopReason.END_TURN
        self.stop_reason = stop
        self.done = True
        out.append(MessageEnd(stop, self._stop_sequence))

    def _on_ping(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        out.append(ir.PING)

    def _on_error(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        err = obj.get("error")
        etype = err.get("type") if type(err) is dict else None
        message = err.get("message") if type(err) is dict else None
        kind = _kind_for(0, etype)
        self._fail(out, StreamError(
            kind, message if type(message) is str else "upstream error",
            _KIND_TO_ERROR[kind][0], etype if type(etype) is str else None,
        ))

    _HANDLERS = {
        "message_start": _on_message_start,
        "content_block_start": _on_block_start,
        "content_block_delta": _on_block_delta,
        "content_block_stop": _on_block_stop,
        "message_delta": _on_message_delta,
        "message_stop": _on_message_stop,
        "ping": _on_ping,
        "error": _on_error,
    }
