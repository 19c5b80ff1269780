"""Fuzz target for ``protocols.openai_responses`` (and its translations).

Invariants:

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

from typing import Any

from fuzz import ir_events, run_modes
from protocols import jsonio
from protocols import openai_responses as orr
from protocols.translate import Translation

FORMAT = orr.FORMAT


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


def _check_foreign_request(other: str, seed: int, payload: bytes) -> None:
    try:
        body = jsonio.loads(payload)
    except jsonio.JSONDecodeError:
        return  # not JSON: the proxy rejects it before translation
    jsonio.dumps(Translation(other, FORMAT, request_id="fuzz", created=0).request(body))


def _check_encoder(other: str, seed: int, payload: bytes) -> None:
    enc = orr.StreamEncoder(None)
    out = b""
    for ev in ir_events(payload):
        out += enc.encode([ev])
        if seed & 1:
            out += enc.keepalive()
    out += enc.close()
    check_encoded(out)


def check(data: bytes) -> None:
    run_modes(data, FORMAT, {3: _check_foreign_request, 4: _check_encoder})


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
