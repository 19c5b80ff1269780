"""OpenAI Responses stream decoder: typed ``response.*`` events -> IR events."""

from __future__ import annotations

from typing import Any

from .. import ir, jsonio
from .. import usage as usage_mod
from .._fields import client_name as _client_name
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
    StopReason,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    ToolKind,
    UsageUpdate,
)
from .reply import _error_kind, _incomplete_stop
from .tables import _KIND_TO_CODE, FORMAT, LOCAL_SHELL_TOOL_NAME

# ---------------------------------------------------------------------------------------
# Streams: wire -> IR
# ---------------------------------------------------------------------------------------

# Observe mode does not parse the JSON of these frames: they carry no facts.
_OBSERVE_SKIP = tuple(
    b"event: " + name + b"\n" for name in (
        b"response.output_text.delta", b"response.function_call_arguments.delta",
        b"response.custom_tool_call_input.delta", b"response.reasoning_summary_text.delta",
        b"response.reasoning_text.delta", b"response.refusal.delta",
        b"response.in_progress", b"response.content_part.added",
        b"response.content_part.done", b"response.output_text.done",
    )
)
_TOOL_ITEM_KINDS = {
    "function_call": ToolKind.FUNCTION,
    "custom_tool_call": ToolKind.CUSTOM,
    "local_shell_call": ToolKind.LOCAL_SHELL,
}


class _InItem:
    """An upstream output item being decoded."""

    __slots__ = ("index", "kind", "streamed", "open")

    def __init__(self, index: int, kind: str) -> None:
        self.index = index  # IR block index
        self.kind = kind  # item type
        self.streamed = False  # a delta was seen (else take the text from .done)
        self.open = True


class StreamDecoder(StreamDecoderBase):
    """Responses SSE → IR events (docs/protocols.md §2.5).

    Dispatches on the JSON ``type`` (the ``event:`` line is optional, docs/protocols.md §7).
    Each output item becomes one IR block, opened at ``output_item.added`` and stopped at
    ``output_item.done``; tool calls are read from ``output_item.added`` (id and name)
    plus the argument deltas, and an item whose deltas never came gets its whole text
    from ``output_item.done``. Usage comes from the terminal event.
    ``response.completed``/``response.incomplete`` end cleanly; ``response.failed`` and
    ``error`` become ``StreamError``; EOF before any of them is a ``StreamError`` too
    (§6.3 "Cut streams").

    Facts read by ``Translation``: ``model``, ``id``, ``usage``, ``stop_reason``,
    ``tool_calls``, ``failed``, ``done``.
    """

    __slots__ = ("_started", "_next", "_items", "_open")

    _OBSERVE_SKIP = _OBSERVE_SKIP
    _WHAT = "Responses stream event"

    def __init__(self, ctx: ir.Context | None = None, *, observe: bool = False) -> None:
        super().__init__(ctx, observe=observe)
        self._started = False
        self._next = 0
        self._items: dict[int, _InItem] = {}  # output_index -> item
        self._open: _InItem | None = None  # text/reasoning item that is open

    def _eof(self, out: list[ir.StreamEvent]) -> None:
        self._fail(out, StreamError(ErrorKind.UPSTREAM_PROTOCOL,
                                    "stream closed before response.completed"))

    # -- helpers -----------------------------------------------------------------------

    def _start(self, resp: Any, out: list[ir.StreamEvent]) -> None:
        if self._started:
            return
        self._started = True
        if type(resp) is dict:
            rid, model = resp.get("id"), resp.get("model")
            self.id = rid if type(rid) is str else ""
            self.model = model if type(model) is str else ""
        else:
            self.id, self.model = "", ""
        out.append(MessageStart(self.id, self.model))

    def _item(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> _InItem | None:
        idx = obj.get("output_index")
        if type(idx) is not int:
            raise UpstreamProtocolError("event without an integer output_index",
                                        param="output_index")
        return self._items.get(idx)

    def _close_open(self, out: list[ir.StreamEvent]) -> None:
        it = self._open
        if it is not None and it.open:
            it.open = False
            out.append(BlockStop(it.index))
        self._open = None

    def _new(self, kind: str, out: list[ir.StreamEvent]) -> _InItem:
        # Text and reasoning never overlap another block (IR rule 3).
        self._close_open(out)
        it = _InItem(self._next, kind)
        self._next += 1
        return it

    # -- handlers ----------------------------------------------------------------------

    def _on_created(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        self._start(obj.get("response"), out)

    def _on_item_added(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        self._start(None, out)
        item = obj.get("item")
        idx = obj.get("output_index")
        if type(item) is not dict or type(idx) is not int:
            raise UpstreamProtocolError("output_item.added without item and output_index",
                                        param="item")
        if idx in self._items:
            raise UpstreamProtocolError("output_index added twice", param="output_index")
        itype = item.get("type")
        if itype == "message":
            it = self._new("message", out)
            self._open = it
            out.append(BlockStart(it.index, BlockKind.TEXT))
        elif itype == "reasoning":
            it = self._new("reasoning", out)
            self._open = it
            out.append(BlockStart(it.index, BlockKind.REASONING, provider=FORMAT))
        elif type(itype) is str and itype in _TOOL_ITEM_KINDS:
            call_id = item.get("call_id")
            name = item.get("name") if itype != "local_shell_call" else LOCAL_SHELL_TOOL_NAME
            if type(call_id) is not str or type(name) is not str:
                raise UpstreamProtocolError(f"{itype} item without call_id and name",
                                            param="item")
            it = self._new(itype, out)
            self.tool_calls += 1
            out.append(BlockStart(it.index, BlockKind.TOOL_CALL, tool_id=call_id,
                                  tool_name=_client_name(self._ctx, name),
                                  tool_kind=_TOOL_ITEM_KINDS[itype]))
            args = item.get("arguments") if itype == "function_call" else item.get("input")
            if args and type(args) is str and not self._observe:
                it.streamed = True
                out.append(ToolArgsDelta(it.index, args))
        else:
            it = _InItem(-1, str(itype))  # built-in tool items: not modelled
            it.open = False
        self._items[idx] = it

    def _on_text_delta(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        it = self._item(obj, out)
        delta = obj.get("delta")
        if type(delta) is not str:
            raise UpstreamProtocolError("delta is not a string", param="delta")
        if it is None:
            # Text without output_item.added (tolerated by Codex, docs/protocols.md §7).
            self._start(None, out)
            it = self._new("message", out)
            self._open = it
            self._items[obj["output_index"]] = it
            out.append(BlockStart(it.index, BlockKind.TEXT))
        if not it.open or it.kind != "message":
            return
        it.streamed = True
        if delta:
            out.append(TextDelta(it.index, delta))

    def _on_args_delta(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        it = self._item(obj, out)
        if it is None:
            raise UpstreamProtocolError("argument delta for an item never added",
                                        param="output_index")
        delta = obj.get("delta")
        if type(delta) is not str:
            raise UpstreamProtocolError("delta is not a string", param="delta")
        if not it.open or it.kind not in _TOOL_ITEM_KINDS:
            return
        it.streamed = True
        if delta and not self._observe:
            out.append(ToolArgsDelta(it.index, delta))

    def _on_reasoning_delta(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        it = self._item(obj, out)
        if it is None or not it.open or it.kind != "reasoning":
            return
        delta = obj.get("delta")
        if type(delta) is not str:
            raise UpstreamProtocolError("delta is not a string", param="delta")
        part = obj.get("summary_index", obj.get("content_index", 0))
        it.streamed = True
        if delta:
            out.append(ReasoningDelta(it.index, delta, part if type(part) is int else 0))

    def _on_item_done(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        it = self._item(obj, out)
        item = obj.get("item")
        if type(item) is not dict:
            raise UpstreamProtocolError("output_item.done without an item", param="item")
        if it is None or not it.open:
            return
        it.open = False
        if self._open is it:
            self._open = None
        kind = it.kind
        if not self._observe:
            if kind == "message" and not it.streamed:
                content = item.get("content")
                for part in content if type(content) is list else ():
                    if type(part) is dict:
                        text = part.get("text", part.get("refusal"))
                        if type(text) is str and text:
                            out.append(TextDelta(it.index, text))
            elif kind == "function_call" and not it.streamed:
                args = item.get("arguments")
                if type(args) is str and args:
                    out.append(ToolArgsDelta(it.index, args))
            elif kind == "custom_tool_call" and not it.streamed:
                text = item.get("input")
                if type(text) is str and text:
                    out.append(ToolArgsDelta(it.index, text))
            elif kind == "local_shell_call":
                action = item.get("action")
                if type(action) is dict:
                    out.append(ToolArgsDelta(it.index, jsonio.dumps(action).decode()))
            elif kind == "reasoning":
                if not it.streamed:
                    for k, s in enumerate(item.get("summary") or ()):
                        text = s.get("text") if type(s) is dict else None
                        if type(text) is str and text:
                            out.append(ReasoningDelta(it.index, text, k))
                enc = item.get("encrypted_content")
                if type(enc) is str and enc:
                    out.append(SignatureDelta(it.index, enc, FORMAT))
        out.append(BlockStop(it.index))

    def _finish_blocks(self, out: list[ir.StreamEvent]) -> None:
        for it in self._items.values():
            if it.open:
                it.open = False
                out.append(BlockStop(it.index))
        self._open = None

    def _usage(self, resp: Any, out: list[ir.StreamEvent]) -> None:
        u = resp.get("usage") if type(resp) is dict else None
        if u is not None:
            self.usage = usage_mod.from_openai_responses(u)
            out.append(UsageUpdate(self.usage))

    def _on_completed(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        resp = obj.get("response")
        if type(resp) is not dict:
            raise UpstreamProtocolError("terminal event without a response", param="response")
        self._start(resp, out)
        model = resp.get("model")
        if type(model) is str and model:
            self.model = model
        self._finish_blocks(out)
        self._usage(resp, out)
        if obj.get("type") == "response.incomplete":
            stop = _incomplete_stop(resp.get("incomplete_details"))
        else:
            stop = StopReason.TOOL_USE if self.tool_calls else StopReason.END_TURN
        self.stop_reason = stop
        self.done = True
        out.append(MessageEnd(stop))

    def _on_failed(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        resp = obj.get("response")
        self._start(resp, out)
        if type(resp) is dict:
            self._usage(resp, out)
            err = resp.get("error")
        else:
            err = None
        code = err.get("code") if type(err) is dict else None
        message = err.get("message") if type(err) is dict else None
        self._error(code, message, out)

    def _on_error(self, obj: dict[str, Any], out: list[ir.StreamEvent]) -> None:
        self._start(None, out)
        err = obj.get("error")
        src = err if type(err) is dict else obj
        self._error(src.get("code"), src.get("message"), out)

    def _error(self, code: Any, message: Any, out: list[ir.StreamEvent]) -> None:
        kind = _error_kind(code)
        if code == "context_length_exceeded":
            self.stop_reason = StopReason.CONTEXT_WINDOW
        self._fail(out, StreamError(
            kind, message if type(message) is str else "upstream error",
            _KIND_TO_CODE[kind][0], "response.failed", code if type(code) is str else None))


    _HANDLERS = {
        "response.created": _on_created,
        "response.queued": _on_created,
        "response.in_progress": _on_created,
        "response.output_item.added": _on_item_added,
        "response.output_text.delta": _on_text_delta,
        "response.refusal.delta": _on_text_delta,
        "response.function_call_arguments.delta": _on_args_delta,
        "response.custom_tool_call_input.delta": _on_args_delta,
        "response.reasoning_summary_text.delta": _on_reasoning_delta,
        "response.reasoning_text.delta": _on_reasoning_delta,
        "response.output_item.done": _on_item_done,
        "response.completed": _on_completed,
        "response.incomplete": _on_completed,
        "response.failed": _on_failed,
        "error": _on_error,
    }
