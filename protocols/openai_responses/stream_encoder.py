"""OpenAI Responses stream encoder: IR events -> the canonical event grammar of
docs/protocols.md §2.5, with what Codex needs (§2.7)."""

from __future__ import annotations

from typing import Any

from .. import ir, jsonio
from .._fields import unwrap_custom_input
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
    Reasoning,
    ReasoningDelta,
    SignatureDelta,
    StreamError,
    TextDelta,
    ToolArgsDelta,
    ToolKind,
    Usage,
    UsageUpdate,
)
from .payload import encode_reasoning_payload
from .reply import _ClientTools, _response_base, _shell_action, _terminal, _usage_wire
from .tables import (
    _KIND_TO_CODE,
    CODEX_ERROR_CODES,
    FORMAT,
    MAX_ITEM_CHARS,
    _new_id,
)

# ---------------------------------------------------------------------------------------
# Streams: IR -> wire
# ---------------------------------------------------------------------------------------


def _event_prefix(name: bytes) -> bytes:
    return b"event: " + name + b'\ndata: {"type":"' + name + b'","sequence_number":'


_TEXT_DELTA = _event_prefix(b"response.output_text.delta")
_ARGS_DELTA = _event_prefix(b"response.function_call_arguments.delta")
_CUSTOM_DELTA = _event_prefix(b"response.custom_tool_call_input.delta")
_SUMMARY_DELTA = _event_prefix(b"response.reasoning_summary_text.delta")
_EMPTY_PART = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}


def _item_too_big() -> BufferLimitExceeded:
    return BufferLimitExceeded(f"an output item grew beyond {MAX_ITEM_CHARS} characters",
                               param="output_item", limit=MAX_ITEM_CHARS)


def _held_size(ev: ir.StreamEvent) -> int:
    """Characters of text ``ev`` holds (counted against ``MAX_HELD_CHARS``)."""
    if type(ev) is ToolArgsDelta:
        return len(ev.arguments)
    if type(ev) is TextDelta or type(ev) is ReasoningDelta:
        return len(ev.text)
    if type(ev) is SignatureDelta:
        return len(ev.signature)
    return 0


class _OutItem:
    """An output item of the encoder: one IR block."""

    __slots__ = ("block", "kind", "item_id", "output_index", "opened", "parts", "size",
                 "call_id", "name", "signature", "provider", "redacted", "summary",
                 "part", "mid", "done", "wrapped")

    def __init__(self, block: int, kind: ToolKind | BlockKind) -> None:
        self.block = block
        self.kind = kind  # BlockKind.TEXT / REASONING, or the ToolKind of a call
        self.item_id = ""
        self.output_index = -1
        self.opened = False  # output_item.added written
        self.parts: list[str] = []  # text / arguments / summary text of the current part
        self.size = 0
        self.call_id = ""
        self.name = ""
        self.signature: list[str] = []
        self.provider: str | None = None
        self.redacted: str | None = None
        self.summary: list[str] = []  # finished summary parts
        self.part = -1  # current summary part (ReasoningDelta.part), -1 = none open
        self.mid = b""  # the constant middle of this item's delta events
        self.done = False
        # Custom-tool input another provider returned inside {"input": …}: unwrapped at
        # the end, so the deltas cannot be forwarded as they come.
        self.wrapped = False


class StreamEncoder(StreamEncoderBase):
    """IR events → Responses SSE for a Responses client (docs/protocols.md §2.5, §2.7, §5.6).

    Writes exactly the canonical grammar: ``response.created`` (``sequence_number`` 0,
    status ``in_progress``, ``output: []``, ``usage: null``) → ``response.in_progress`` →
    for each output item, strictly one after another, ``output_item.added`` … its content
    events … ``output_item.done`` carrying the complete item → one terminal
    ``response.completed`` / ``response.incomplete`` / ``response.failed`` whose
    ``output`` repeats every done item and whose ``usage`` has integer totals. Every
    event has an ``event:`` line equal to its ``type`` and a gap-free ``sequence_number``.

    * A text block is a ``message`` item with one ``output_text`` part, opened at its
      first non-empty delta (an empty upstream block writes nothing).
    * A tool-call block is a ``function_call`` item with a fresh ``fc_`` id and
      ``call_id`` = the upstream tool id; calls to a custom tool the client declared are
      ``custom_tool_call`` items and calls to its ``local_shell`` tool
      ``local_shell_call`` items (their input is known only at the block's end).
    * A reasoning block is a ``reasoning`` item with one summary part per
      ``ReasoningDelta.part`` and, at ``output_item.done``, ``encrypted_content``: the
      upstream's own for an OpenAI upstream, else a ``tw1:`` payload holding another
      provider's signature or redacted data (module docstring).
    * Blocks that overlap (a Chat upstream's parallel tool calls) are held, within
      ``MAX_HELD_CHARS``, and replayed once the open item is done.
    * ``MessageEnd``: ``max_tokens`` → ``response.incomplete`` (``max_output_tokens``),
      ``content_filter`` → ``response.incomplete`` (``content_filter``), a context-window
      or model error → ``response.failed``; otherwise ``response.completed``.
      ``StreamError`` → ``response.failed`` whose ``error.code`` is one Codex classifies,
      and so does a cut stream: never a fabricated ``response.completed`` (§6.3 "Cut
      streams"; Codex retries ``server_error``).
    """

    __slots__ = (
        "_seq", "_base", "_tools", "_usage", "_items", "_active", "_pending", "_held",
        "_held_chars", "_done_items", "_counter", "_resp_id", "_flushing",
    )

    def __init__(self, ctx: ir.Context | None = None) -> None:
        super().__init__(ctx)
        self._seq = 0
        self._base: dict[str, Any] = {}
        self._tools = _ClientTools(ctx)
        self._usage: Usage | None = None
        self._items: dict[int, _OutItem] = {}  # IR block index -> item
        self._active: _OutItem | None = None  # the item that may write now
        self._pending: list[int] = []  # blocks waiting for the active item, in start order
        self._held: dict[int, list[ir.StreamEvent]] = {}
        self._held_chars = 0
        self._done_items: list[dict[str, Any]] = []
        self._counter = [0]
        self._resp_id = ""
        self._flushing = False

    def keepalive(self) -> bytes:
        """A heartbeat for a Responses client: a repeated ``response.in_progress``.

        Codex only resets its stream idle timer (300 s by default) on a complete event,
        never on an SSE comment, and ignores ``response.in_progress``; the OpenAI SDK
        accepts a repeated lifecycle event. ``b""`` before the stream started or after
        its end (§2.7)."""
        if not self._started or self._done:
            return b""
        return self._lifecycle("response.in_progress", "in_progress", None)

    # -- writing -----------------------------------------------------------------------

    def _next_seq(self) -> bytes:
        seq = self._seq
        self._seq = seq + 1
        return str(seq).encode()

    def _event(self, name: str, fields: dict[str, Any]) -> bytes:
        obj = {"type": name, "sequence_number": self._seq}
        self._seq += 1
        obj.update(fields)
        return b"event: " + name.encode() + b"\ndata: " + jsonio.dumps(obj) + b"\n\n"

    def _lifecycle(self, name: str, status: str, usage: Usage | None,
                   extra: dict[str, Any] | None = None) -> bytes:
        resp = dict(self._base)
        resp["status"] = status
        if status != "in_progress":
            resp["output"] = self._done_items
            resp["usage"] = _usage_wire(usage or Usage())
        if extra:
            resp.update(extra)
        return self._event(name, {"response": resp})

    def _ensure_started(self) -> bytes:
        if self._started:
            return b""
        return self._on_start(MessageStart("", ""))

    def _grow(self, it: _OutItem, text: str) -> None:
        it.size += len(text)
        if it.size > MAX_ITEM_CHARS:
            raise _item_too_big()
        it.parts.append(text)

    # -- holding (overlapping blocks) --------------------------------------------------

    def _busy(self, idx: int) -> bool:
        return idx in self._held

    def _hold(self, idx: int, ev: ir.StreamEvent, size: int) -> bytes:
        self._held_chars += size
        if self._held_chars > MAX_HELD_CHARS:
            raise BufferLimitExceeded(
                f"more than {MAX_HELD_CHARS} characters of overlapping blocks held",
                param="output_item", limit=MAX_HELD_CHARS)
        self._held[idx].append(ev)
        return b""

    def _flush_pending(self) -> bytes:
        """The active item is done: replay held blocks in start order until one is
        still streaming (it becomes the active item)."""
        parts = []
        self._flushing = True
        try:
            while self._pending and self._active is None:
                idx = self._pending.pop(0)
                events = self._held.pop(idx)
                parts.append(self._activate(self._items[idx]))
                for ev in events:
                    self._held_chars -= _held_size(ev)
                    parts.append(self._dispatch[type(ev)](self, ev))
        finally:
            self._flushing = False
        return b"".join(parts)

    def _activate(self, it: _OutItem) -> bytes:
        """Item ``it`` may write now. Tool calls show at once; text and reasoning at their
        first content; a local shell call only at its end (its action is its input)."""
        self._active = it
        if it.kind is ToolKind.FUNCTION or it.kind is ToolKind.CUSTOM:
            return self._ensure_started() + self._open_tool(it)
        return b""

    # -- handlers ----------------------------------------------------------------------

    def _on_start(self, ev: MessageStart) -> bytes:
        if self._started:
            return b""
        self._started = True
        ctx = self._ctx
        self._resp_id = _new_id(ctx, "resp_", self._counter) if ctx is not None else (
            ev.id or "resp_0")
        self._base = _response_base(ctx, self._resp_id, ev.model)
        if ev.usage is not None:
            self._usage = ev.usage
        return (self._lifecycle("response.created", "in_progress", None)
                + self._lifecycle("response.in_progress", "in_progress", None))

    def _on_block_start(self, ev: BlockStart) -> bytes:
        idx = ev.index
        if idx in self._items:
            return b""  # a block index starts once (IR rule 2); a repeat is ignored
        if ev.kind is BlockKind.TOOL_CALL:
            it = _OutItem(idx, self._tools.kind(ev.tool_kind, ev.tool_name or ""))
            it.call_id = ev.tool_id or _new_id(self._ctx, "call_", self._counter)
            it.name = ev.tool_name or ""
            it.wrapped = ev.tool_kind is ToolKind.FUNCTION and it.kind is ToolKind.CUSTOM
        else:
            it = _OutItem(idx, ev.kind)
            it.provider = ev.provider
            it.redacted = ev.redacted_data
        self._items[idx] = it
        if self._active is not None or self._pending:
            self._pending.append(idx)
            self._held[idx] = []
            return b""
        return self._activate(it)

    def _open(self, it: _OutItem, item: dict[str, Any]) -> bytes:
        # Items are written strictly one after another, so every earlier item is done.
        it.opened = True
        it.output_index = len(self._done_items)
        return self._event("response.output_item.added",
                           {"output_index": it.output_index, "item": item})

    def _open_tool(self, it: _OutItem) -> bytes:
        if it.kind is ToolKind.CUSTOM:
            it.item_id = _new_id(self._ctx, "ctc_", self._counter)
            item = {"id": it.item_id, "type": "custom_tool_call", "status": "in_progress",
                    "call_id": it.call_id, "name": it.name, "input": ""}
        else:
            it.item_id = _new_id(self._ctx, "fc_", self._counter)
            item = {"id": it.item_id, "type": "function_call", "status": "in_progress",
                    "arguments": "", "call_id": it.call_id, "name": it.name}
        out = self._open(it, item)
        it.mid = (b',"item_id":' + jsonio.dumps(it.item_id) + b',"output_index":'
                  + str(it.output_index).encode() + b',"delta":')
        return out

    def _open_text(self, it: _OutItem) -> bytes:
        it.item_id = _new_id(self._ctx, "msg_", self._counter)
        out = self._ensure_started() + self._open(it, {
            "id": it.item_id, "type": "message", "status": "in_progress", "content": [],
            "role": "assistant"})
        out += self._event("response.content_part.added", {
            "item_id": it.item_id, "output_index": it.output_index, "content_index": 0,
            "part": _EMPTY_PART})
        it.mid = (b',"item_id":' + jsonio.dumps(it.item_id) + b',"output_index":'
                  + str(it.output_index).encode() + b',"content_index":0,"delta":')
        return out

    def _open_reasoning(self, it: _OutItem) -> bytes:
        it.item_id = _new_id(self._ctx, "rs_", self._counter)
        return self._ensure_started() + self._open(
            it, {"id": it.item_id, "type": "reasoning", "summary": []})

    def _on_text(self, ev: TextDelta) -> bytes:
        # The hot path (one call per upstream text delta): the event is spliced from
        # bytes prepared when the item opened, and only the delta string is serialised.
        # _busy, _grow and _next_seq are inlined here; this path measured 0.8 µs/event.
        text = ev.text
        if not text:
            return b""
        idx = ev.index
        if idx in self._held:
            return self._hold(idx, ev, len(text))
        it = self._items.get(idx)
        if it is None or it.done or it.kind is not BlockKind.TEXT:
            return b""
        head = b"" if it.opened else self._open_text(it)
        it.size += len(text)
        if it.size > MAX_ITEM_CHARS:
            raise _item_too_big()
        it.parts.append(text)
        seq = self._seq
        self._seq = seq + 1
        return (head + _TEXT_DELTA + str(seq).encode() + it.mid + jsonio.dumps(text)
                + b',"logprobs":[]}\n\n')

    def _on_args(self, ev: ToolArgsDelta) -> bytes:
        if not ev.arguments:
            return b""
        idx = ev.index
        if self._busy(idx):
            return self._hold(idx, ev, len(ev.arguments))
        it = self._items.get(idx)
        if it is None or it.done or type(it.kind) is not ToolKind:
            return b""
        self._grow(it, ev.arguments)
        if not it.opened or it.wrapped:
            return b""  # input known only at the end (local shell, wrapped custom input)
        prefix = _CUSTOM_DELTA if it.kind is ToolKind.CUSTOM else _ARGS_DELTA
        return prefix + self._next_seq() + it.mid + jsonio.dumps(ev.arguments) + b"}\n\n"

    def _on_reasoning(self, ev: ReasoningDelta) -> bytes:
        if not ev.text:
            return b""
        idx = ev.index
        if self._busy(idx):
            return self._hold(idx, ev, len(ev.text))
        it = self._items.get(idx)
        if it is None or it.done or it.kind is not BlockKind.REASONING:
            return b""
        out = b"" if it.opened else self._open_reasoning(it)
        if it.part != ev.part:
            out += self._close_summary_part(it)
            it.part = ev.part
            k = len(it.summary)
            out += self._event("response.reasoning_summary_part.added", {
                "item_id": it.item_id, "output_index": it.output_index, "summary_index": k,
                "part": {"type": "summary_text", "text": ""}})
            it.mid = (b',"item_id":' + jsonio.dumps(it.item_id) + b',"output_index":'
                      + str(it.output_index).encode() + b',"summary_index":'
                      + str(k).encode() + b',"delta":')
        self._grow(it, ev.text)
        return out + _SUMMARY_DELTA + self._next_seq() + it.mid + jsonio.dumps(ev.text) + b"}\n\n"

    def _close_summary_part(self, it: _OutItem) -> bytes:
        if it.part < 0:
            return b""
        text = "".join(it.parts)
        it.parts = []
        k = len(it.summary)
        it.summary.append(text)
        it.part = -1
        base = {"item_id": it.item_id, "output_index": it.output_index, "summary_index": k}
        return (self._event("response.reasoning_summary_text.done", {**base, "text": text})
                + self._event("response.reasoning_summary_part.done",
                              {**base, "part": {"type": "summary_text", "text": text}}))

    def _on_signature(self, ev: SignatureDelta) -> bytes:
        idx = ev.index
        if self._busy(idx):
            return self._hold(idx, ev, len(ev.signature))
        it = self._items.get(idx)
        if it is None or it.done or it.kind is not BlockKind.REASONING or not ev.signature:
            return b""
        if ev.provider is not None:
            it.provider = ev.provider
        it.signature.append(ev.signature)
        return b""

    def _on_block_stop(self, ev: BlockStop) -> bytes:
        idx = ev.index
        if self._busy(idx):
            return self._hold(idx, ev, 0)
        it = self._items.get(idx)
        if it is None or it.done:
            return b""
        return self._stop(it)

    def _stop(self, it: _OutItem) -> bytes:
        it.done = True
        out = self._finish(it)
        if self._active is it:
            self._active = None
            if not self._flushing:
                out += self._flush_pending()
        return out

    def _finish(self, it: _OutItem) -> bytes:
        """Write the end of item ``it`` (nothing for a block that never showed)."""
        kind = it.kind
        if kind is BlockKind.TEXT:
            if not it.opened:
                return b""
            text = "".join(it.parts)
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
            base = {"item_id": it.item_id, "output_index": it.output_index, "content_index": 0}
            item: dict[str, Any] = {"id": it.item_id, "type": "message",
                                    "status": "completed", "content": [part],
                                    "role": "assistant"}
            return (self._event("response.output_text.done", {**base, "text": text,
                                                              "logprobs": []})
                    + self._event("response.content_part.done", {**base, "part": part})
                    + self._item_done(it, item))
        if kind is BlockKind.REASONING:
            sig = "".join(it.signature) if it.signature else None
            r = Reasoning(text="".join(it.summary) + "".join(it.parts), signature=sig,
                          redacted_data=it.redacted, provider=it.provider)
            if it.provider == FORMAT:
                enc = sig
            else:
                enc = encode_reasoning_payload(r)
            if not it.opened and enc is None:
                return b""  # nothing visible and nothing to carry
            out = b"" if it.opened else self._open_reasoning(it)
            out += self._close_summary_part(it)
            item = {"id": it.item_id, "type": "reasoning",
                                    "summary": [{"type": "summary_text", "text": s}
                                                for s in it.summary]}
            if enc is not None:
                item["encrypted_content"] = enc
            return out + self._item_done(it, item)
        # Tool calls.
        raw = "".join(it.parts)
        out = self._ensure_started()
        if kind is ToolKind.LOCAL_SHELL:
            it.item_id = _new_id(self._ctx, "lsh_", self._counter)
            item = {"id": it.item_id, "type": "local_shell_call", "status": "in_progress",
                    "call_id": it.call_id, "action": _shell_action(raw)}
            out += self._open(it, item)
            return out + self._item_done(it, {**item, "status": "completed"})
        if kind is ToolKind.CUSTOM:
            if not it.opened:
                out += self._open_tool(it)
            text = unwrap_custom_input(raw) if it.wrapped else raw
            base = {"item_id": it.item_id, "output_index": it.output_index}
            if it.wrapped and text:
                out += self._event("response.custom_tool_call_input.delta",
                                   {**base, "delta": text})
            out += self._event("response.custom_tool_call_input.done", {**base, "input": text})
            return out + self._item_done(it, {
                "id": it.item_id, "type": "custom_tool_call", "status": "completed",
                "call_id": it.call_id, "name": it.name, "input": text})
        if not it.opened:
            out += self._open_tool(it)
        base = {"item_id": it.item_id, "output_index": it.output_index}
        if not raw:
            # Codex parses ``arguments`` as JSON: an argument-less call is "{}".
            raw = "{}"
            out += self._event("response.function_call_arguments.delta", {**base, "delta": raw})
        out += self._event("response.function_call_arguments.done",
                           {**base, "name": it.name, "arguments": raw})
        return out + self._item_done(it, {
            "id": it.item_id, "type": "function_call", "status": "completed",
            "arguments": raw, "call_id": it.call_id, "name": it.name})

    def _item_done(self, it: _OutItem, item: dict[str, Any]) -> bytes:
        self._done_items.append(item)
        return self._event("response.output_item.done",
                           {"output_index": it.output_index, "item": item})

    def _finish_all(self) -> bytes:
        """Close every block the upstream left open, in order (defensive: decoders stop
        every block before ``MessageEnd``)."""
        out = b""
        while self._active is not None or self._pending:
            if self._active is not None:
                out += self._stop(self._active)  # clears _active: the loop progresses
            else:
                out += self._flush_pending()  # pops at least one pending block
        return out

    def _on_usage(self, ev: UsageUpdate) -> bytes:
        self._usage = ev.usage
        return b""

    def _on_end(self, ev: MessageEnd) -> bytes:
        out = self._ensure_started() + self._finish_all()
        status, details, code = _terminal(ev.stop_reason)
        self._done = True
        if status == "completed":
            return out + self._lifecycle("response.completed", status, self._usage)
        if status == "incomplete":
            return out + self._lifecycle("response.incomplete", status, self._usage,
                                         {"incomplete_details": details})
        message = ("the input exceeds the model's context window"
                   if code == "context_length_exceeded" else "the upstream model failed")
        return out + self._lifecycle("response.failed", status, self._usage,
                                     {"error": {"code": code, "message": message}})

    def _on_error(self, ev: StreamError) -> bytes:
        out = self._ensure_started()
        code = ev.code if ev.code in CODEX_ERROR_CODES else _KIND_TO_CODE[ev.kind][1]
        self._done = True
        return out + self._lifecycle("response.failed", "failed", self._usage,
                                     {"error": {"code": code, "message": ev.message}})

    def _on_ping(self, ev: ir.Ping) -> bytes:
        # An upstream ping becomes the keep-alive, except one right after the start
        # (Anthropic pings just after message_start): response.in_progress was just
        # written, so the canonical opening stays created → in_progress → items.
        if self._seq == 2:
            return b""
        return self.keepalive()
