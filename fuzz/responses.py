"""Fuzz target for ``protocols.openai_responses`` (and its translations).

Invariants (style-anchors.md §5 principle 11):

1. Only ``protocols.errors.ProtocolError`` escapes, whatever the bytes.
2. Stream output does not depend on how the upstream body was split into chunks.
3. Whatever IR events reach the stream encoder, its output is well formed: a gap-free
   ``sequence_number`` from 0, an ``event:`` line equal to each JSON ``type``, and at most
   one terminal event, last.

Input layout: byte 0 picks the mode and a partner format, byte 1 seeds the chunking, the
rest is the payload:

* mode 0 (stream): the payload is a Responses SSE body from the upstream, translated for
  the partner client whole and in pseudo-random chunks (and decoded byte at a time when
  short); the outputs must be equal.
* mode 1 (request): the payload is a Responses request body (JSON) for the partner
  upstream; a request that decodes without ``ctx`` must re-encode.
* mode 2 (reply): the payload is a complete Responses reply for the partner client.
* mode 3 (foreign request): the payload is the partner format's request body, translated
  for a Responses upstream.
* mode 4 (encoder): the payload is read as a list of IR events for the stream encoder.

``python -m fuzz.run responses`` runs it long; every failing input belongs in
``fuzz/corpus/responses/``, which the normal test run replays.
"""

from __future__ import annotations

import random
from typing import Any

from protocols import ir, jsonio
from protocols import openai_responses as orr
from protocols.errors import ProtocolError
from protocols.translate import Translation

FORMAT = orr.FORMAT
PARTNERS = ("openai_chat", "anthropic_messages", FORMAT, "gemini")
REQUESTS: dict[str, dict[str, Any]] = {
    "openai_chat": {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True,
                    "stream_options": {"include_usage": True}},
    "anthropic_messages": {"model": "m", "max_tokens": 64, "stream": True,
                           "messages": [{"role": "user", "content": "x"}]},
    FORMAT: {"model": "m", "input": "x", "stream": True,
             "tools": [{"type": "custom", "name": "apply_patch"}, {"type": "local_shell"}]},
    "gemini": {"model": "m", "stream": True, "contents": [{"parts": [{"text": "x"}]}]},
}
MAX_BYTEWISE_BYTES = 2048


def _chunks(payload: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(payload):
        n = rng.randint(1, 9)
        out.append(payload[i : i + n])
        i += n
    return out


def _stream(client: str, chunks: list[bytes]) -> tuple[bytes, tuple[Any, ...]]:
    t = Translation(client, FORMAT, request_id="fuzz", created=0)
    t.request(dict(REQUESTS[client]))
    try:
        out = b"".join(t.feed(c) for c in chunks) + t.finish()
    except ProtocolError as e:  # only ever from the observe-mode decode of a same-format pair
        return b"", (type(e).__name__,)
    return out, (t.usage, t.model, t.stop_reason, t.tool_calls_seen, t.failed)


def _decode(chunks: list[bytes]) -> list[Any]:
    d = orr.StreamDecoder(None)
    events: list[Any] = []
    try:
        for c in chunks:
            events += d.feed(c)
        events += d.close()
    except ProtocolError as e:
        events.append(type(e).__name__)
    return events


def check_encoded(out: bytes) -> None:
    """Invariant 3 on the encoder's bytes."""
    if not out:
        return
    assert out.endswith(b"\n\n")
    terminals = 0
    for n, block in enumerate(out[:-2].split(b"\n\n")):
        name, _, data = block.partition(b"\ndata: ")
        assert name.startswith(b"event: ") and b"\n" not in data
        obj = jsonio.loads(data)
        assert obj["type"].encode() == name[7:] and obj["sequence_number"] == n
        assert terminals == 0, "an event after the terminal event"
        if obj["type"] in ("response.completed", "response.incomplete", "response.failed"):
            terminals += 1


def _events(payload: bytes) -> list[ir.StreamEvent]:
    """IR events from bytes: each byte is an operation on a few blocks."""
    kinds = (ir.BlockKind.TEXT, ir.BlockKind.TOOL_CALL, ir.BlockKind.REASONING)
    tool_kinds = tuple(ir.ToolKind)
    stops = tuple(ir.StopReason)
    out: list[ir.StreamEvent] = []
    for i, b in enumerate(payload[:200]):
        op, arg = b >> 4, b & 15
        idx = arg % 4
        text = "x" * (arg % 3) + ("{" if arg & 8 else "")
        if op == 0:
            out.append(ir.MessageStart("u", "m", ir.Usage(arg) if arg & 1 else None))
        elif op in (1, 2):
            kind = kinds[arg % 3]
            out.append(ir.BlockStart(idx, kind, tool_id=f"t{i}", tool_name=("f", "apply_patch",
                                     "local_shell")[arg % 3], tool_kind=tool_kinds[arg % 3],
                                     redacted_data="r" if arg == 14 else None,
                                     provider=PARTNERS[arg % 4]))
        elif op == 3:
            out.append(ir.TextDelta(idx, text))
        elif op == 4:
            out.append(ir.ToolArgsDelta(idx, text))
        elif op == 5:
            out.append(ir.ReasoningDelta(idx, text, arg % 2))
        elif op == 6:
            out.append(ir.SignatureDelta(idx, "s" * (arg % 2), PARTNERS[arg % 4]))
        elif op in (7, 8, 9):
            out.append(ir.BlockStop(idx))
        elif op == 10:
            out.append(ir.UsageUpdate(ir.Usage(arg, arg * 2, 0, 0, arg // 2)))
        elif op == 11:
            out.append(ir.MessageEnd(stops[arg % len(stops)]))
        elif op == 12:
            out.append(ir.StreamError(tuple(ir.ErrorKind)[arg % len(ir.ErrorKind)], "e"))
        elif op == 13:
            out.append(ir.PING)
    return out


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    mode, partner = divmod(data[0] % 20, 4)
    other = PARTNERS[partner]
    payload = data[2:]
    try:
        if mode == 0:
            whole = _stream(other, [payload])
            split = _stream(other, _chunks(payload, data[1]))
            assert split == whole, "stream output depends on chunking"
            if other == FORMAT and whole[0]:
                assert whole[0] == payload, "observe mode changed the bytes"
            if len(payload) <= MAX_BYTEWISE_BYTES:
                assert _decode([payload[i : i + 1] for i in range(len(payload))]) == _decode(
                    [payload]), "decoder events depend on chunking"
            return
        if mode == 4:
            enc = orr.StreamEncoder(None)
            out = b""
            for ev in _events(payload):
                out += enc.encode([ev])
                if data[1] & 1:
                    out += enc.keepalive()
            out += enc.close()
            check_encoded(out)
            return
        try:
            body = jsonio.loads(payload)
        except jsonio.JSONDecodeError:
            return  # not JSON: the proxy rejects it before translation
        if mode == 1:
            try:
                req = orr.decode_request(body)
            except ProtocolError:
                req = None
            if req is not None:
                jsonio.dumps(orr.encode_request(req))
            t = Translation(FORMAT, other, request_id="fuzz", created=0)
            jsonio.dumps(t.request(body))
        elif mode == 2:
            t = Translation(other, FORMAT, request_id="fuzz", created=0)
            t.request(dict(REQUESTS[other]))
            jsonio.dumps(t.response(body))
        else:
            t = Translation(other, FORMAT, request_id="fuzz", created=0)
            jsonio.dumps(t.request(body))
    except ProtocolError:
        pass


def strategy() -> Any:
    """Responses-shaped inputs for ``fuzz.run``: a mode byte, a seed byte, then SSE
    events or JSON built from Responses vocabulary."""
    from hypothesis import strategies as st

    words = st.sampled_from([
        "response.created", "response.output_item.added", "response.output_text.delta",
        "response.function_call_arguments.delta", "response.output_item.done",
        "response.completed", "response.failed", "response.incomplete", "error", "message",
        "function_call", "custom_tool_call", "local_shell_call", "reasoning", "output_index",
        "item", "delta", "type", "call_id", "name", "arguments", "usage", "response", "input",
        "encrypted_content", "tw1:", "summary", "content", "role", "assistant", "user",
    ])
    scalar = st.one_of(st.none(), st.booleans(), st.integers(-2, 5), words, st.text(max_size=5))
    value = st.recursive(scalar, lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(words, kids, max_size=5)), max_leaves=20)
    event = st.dictionaries(words, value, max_size=6).map(
        lambda d: b"event: x\ndata: " + jsonio.dumps(d) + b"\n\n")
    body = st.one_of(st.lists(event, max_size=8).map(b"".join),
                     st.dictionaries(words, value, max_size=6).map(jsonio.dumps))
    return st.tuples(st.integers(0, 255), st.integers(0, 255), body).map(
        lambda t: bytes([t[0], t[1]]) + t[2])
