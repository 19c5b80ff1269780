"""Fuzz harnesses. Each ``fuzz/<target>.py`` exposes ``check(data: bytes) -> None``.

See fuzz/README.md for the invariants and how to run them. This package file holds what
the translation harnesses (``translate``, ``responses``, ``gemini``) share: the client
requests, the deterministic chunking, and the checks of their stream, request and reply
modes. Only ``protocols.errors.ProtocolError`` may escape the code under test; the
checks raise ``AssertionError`` when an invariant fails.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from protocols import ir, jsonio
from protocols.errors import ProtocolError
from protocols.sse import MAX_EVENT_BYTES, FrameSplitter
from protocols.translate import Translation, format_module

#: A minimal streaming request per client format. The Chat and Responses clients declare
#: a custom (freeform) tool and Responses the emulated ``local_shell``, so the decoders and
#: encoders also take their client-tool paths.
REQUESTS: dict[str, dict[str, Any]] = {
    "openai_chat": {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True,
                    "stream_options": {"include_usage": True},
                    "tools": [{"type": "custom", "custom": {"name": "apply_patch"}}]},
    "anthropic_messages": {"model": "m", "max_tokens": 64, "stream": True,
                           "messages": [{"role": "user", "content": "x"}]},
    "openai_responses": {"model": "m", "input": "x", "stream": True,
                         "tools": [{"type": "custom", "name": "apply_patch"},
                                   {"type": "local_shell"}]},
    "gemini": {"model": "m", "stream": True, "contents": [{"parts": [{"text": "x"}]}]},
}
#: The four formats, in the order the harnesses' partner byte picks them.
FORMATS = ("openai_chat", "anthropic_messages", "openai_responses", "gemini")
#: Feeding large inputs byte at a time would only slow the fuzzer down.
MAX_BYTEWISE_BYTES = 2048
#: Frame splitter limits small enough that short inputs reach the limit paths of the
#: stream decoders (a line of 64 bytes, an event of 256).
TIGHT_LIMITS = {"max_line_bytes": 64, "max_event_bytes": 256}
#: Events a stream decoder may add at its end without input: the open blocks' stops,
#: the usage and the terminal event.
MAX_END_EVENTS = 8


def chunks(payload: bytes, seed: int) -> list[bytes]:
    """``payload`` cut into pseudo-random pieces of 1 to 9 bytes, the same for a seed."""
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(payload):
        n = rng.randint(1, 9)
        out.append(payload[i : i + n])
        i += n
    return out


def stream(client: str, upstream: str, pieces: list[bytes]) -> tuple[bytes, tuple[Any, ...]]:
    """The client's bytes and the translation's facts for an upstream body in pieces."""
    t = Translation(client, upstream, request_id="fuzz", created=0)
    t.request(dict(REQUESTS[client]))
    try:
        out = b"".join(t.feed(c) for c in pieces) + t.finish()
    except ProtocolError as e:  # only ever from the observe-mode decode of a same-format pair
        return b"", (type(e).__name__,)
    return out, (t.usage, t.model, t.stop_reason, t.tool_calls_seen, t.failed)


def decode(upstream: str, pieces: list[bytes], limits: dict[str, int] | None = None) -> list[Any]:
    """The upstream decoder's events, then the name of the error it raised, if any.

    With ``limits`` the decoder's frame splitter gets them instead of the defaults
    (``protocols.sse``: 16 MiB lines, 32 MiB events), so short inputs reach the limit
    paths. Bounded work and memory: after every ``feed`` the bytes the splitter holds
    stay within the event limit, and the events never outnumber the input bytes (plus
    the few a stream's end may add)."""
    d = format_module(upstream).StreamDecoder(None)
    held_limit = MAX_EVENT_BYTES
    if limits is not None:
        d._split = FrameSplitter(**limits)
        held_limit = limits["max_event_bytes"]
    events: list[Any] = []
    fed = 0
    try:
        for c in pieces:
            fed += len(c)
            events += d.feed(c)
            assert len(d._split.pending) <= held_limit, "the splitter holds past its limit"
            assert len(events) <= fed + MAX_END_EVENTS, "more events than input bytes"
        events += d.close()
    except ProtocolError as e:
        events.append(type(e).__name__)
    assert len(events) <= fed + MAX_END_EVENTS + 1, "more events than input bytes"
    return events


def check_stream(client: str, upstream: str, payload: bytes, seed: int) -> None:
    """Split invariance of an upstream body: the client's bytes and the facts are the same
    whole and in pieces, observe mode forwards the bytes unchanged, and (for short bodies)
    the decoder's events up to its error are the same whole and byte at a time."""
    whole = stream(client, upstream, [payload])
    split = stream(client, upstream, chunks(payload, seed))
    assert split == whole, "stream output depends on chunking"
    if client == upstream:
        assert whole[0] == payload, "observe mode changed the bytes"
    if len(payload) <= MAX_BYTEWISE_BYTES:
        assert decode(upstream, [payload[i : i + 1] for i in range(len(payload))]) == \
            decode(upstream, [payload]), "decoder events depend on chunking"
    assert decode(upstream, chunks(payload, seed), TIGHT_LIMITS) == \
        decode(upstream, [payload], TIGHT_LIMITS), "decoder events depend on chunking"


def check_request(fmt: str, upstream: str, body: Any) -> None:
    """A client request of ``fmt``: one that decodes without a context re-encodes, and
    the translation for ``upstream`` is JSON (or raises ``ProtocolError``)."""
    mod = format_module(fmt)
    try:
        req = mod.decode_request(body)
    except ProtocolError:
        req = None
    if req is not None:
        jsonio.dumps(mod.encode_request(req))
    jsonio.dumps(Translation(fmt, upstream, request_id="fuzz", created=0).request(body))


def check_reply(client: str, upstream: str, body: Any) -> None:
    """A complete upstream reply becomes a JSON reply for the client (or raises
    ``ProtocolError``)."""
    t = Translation(client, upstream, request_id="fuzz", created=0)
    t.request(dict(REQUESTS[client]))
    jsonio.dumps(t.response(body))


def check_body(mode: int, client: str, upstream: str, payload: bytes) -> None:
    """Mode 1, a request body from ``client`` for ``upstream`` (``check_request``), or
    mode 2, a complete reply from ``upstream`` for ``client`` (``check_reply``)."""
    try:
        body = jsonio.loads(payload)
    except jsonio.JSONDecodeError:
        return  # not JSON: the proxy rejects it before translation
    if mode == 1:
        check_request(client, upstream, body)
    else:
        check_reply(client, upstream, body)


def run_modes(data: bytes, fmt: str,
              other_modes: dict[int, Callable[[str, int, bytes], None]]) -> None:
    """The input layout of a format harness (``responses``, ``gemini``): byte 0 picks the
    mode (0 to 4) and the partner format, byte 1 seeds the mode, the rest is the payload.
    Modes 0 (an upstream stream of ``fmt`` for the partner client), 1 (a client request of
    ``fmt`` for the partner upstream) and 2 (a complete reply of ``fmt`` for the partner
    client) are the same for every format; ``other_modes`` checks the rest, called with
    (partner, seed byte, payload). A ``ProtocolError`` ends the check: it is an answer."""
    if len(data) < 2:
        return
    mode, partner = divmod(data[0] % 20, 4)
    other, seed, payload = FORMATS[partner], data[1], data[2:]
    try:
        if mode == 0:
            check_stream(other, fmt, payload, seed)
        elif mode == 1:
            check_body(mode, fmt, other, payload)
        elif mode == 2:
            check_body(mode, other, fmt, payload)
        else:
            other_modes[mode](other, seed, payload)
    except ProtocolError:
        pass


def ir_events(payload: bytes) -> list[ir.StreamEvent]:
    """IR events from bytes, for the stream encoders: each byte is an operation (high
    nibble) with an argument (low nibble) on a few blocks, in any order, valid or not."""
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
                                     provider=FORMATS[arg % 4]))
        elif op == 3:
            out.append(ir.TextDelta(idx, text))
        elif op == 4:
            out.append(ir.ToolArgsDelta(idx, text))
        elif op == 5:
            out.append(ir.ReasoningDelta(idx, text, arg % 2))
        elif op == 6:
            out.append(ir.SignatureDelta(idx, "s" * (arg % 2), FORMATS[arg % 4]))
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
