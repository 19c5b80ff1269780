"""Fuzz target for ``protocols.gemini`` (and its translations).

Invariants (style-anchors.md §5 principle 11):

1. Only ``protocols.errors.ProtocolError`` escapes, whatever the bytes.
2. Stream output does not depend on how the upstream body was split into chunks (CRLF
   or LF framing, a CR and its LF in different chunks).
3. Whatever IR events reach the stream encoder, its output is data-only frames of JSON
   objects, and nothing follows the frame with ``finishReason`` or ``error``.

Input layout: byte 0 picks the mode and a partner format, byte 1 seeds the chunking, the
rest is the payload:

* mode 0 (stream): the payload is a Gemini ``alt=sse`` body from the upstream, translated
  for the partner client whole and in pseudo-random chunks (and decoded byte at a time
  when short); the outputs must be equal.
* mode 1 (request): the payload is a Gemini request body (JSON) for the partner upstream;
  a request that decodes without ``ctx`` must re-encode.
* mode 2 (reply): the payload is a complete Gemini reply for the partner client.
* mode 3 (error): the payload is a Gemini error body; byte 1 picks the status.
* mode 4 (encoder): the payload is read as a list of IR events for the stream encoder.

``python -m fuzz.run gemini`` runs it long; every failing input belongs in
``fuzz/corpus/gemini/``, which the normal test run replays.
"""

from __future__ import annotations

import random
from typing import Any

from fuzz.responses import _events
from protocols import gemini as gm
from protocols import jsonio
from protocols.errors import ProtocolError
from protocols.translate import Translation

FORMAT = gm.FORMAT
PARTNERS = ("openai_chat", "anthropic_messages", "openai_responses", FORMAT)
REQUESTS: dict[str, dict[str, Any]] = {
    "openai_chat": {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True,
                    "stream_options": {"include_usage": True}},
    "anthropic_messages": {"model": "m", "max_tokens": 64, "stream": True,
                           "messages": [{"role": "user", "content": "x"}]},
    "openai_responses": {"model": "m", "input": "x", "stream": True,
                         "tools": [{"type": "custom", "name": "apply_patch"}]},
    FORMAT: {"model": "m", "stream": True, "contents": [{"parts": [{"text": "x"}]}]},
}
STATUSES = (400, 401, 403, 404, 429, 500, 502, 503, 504)
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
    except ProtocolError as e:
        return b"", (type(e).__name__,)
    return out, (t.usage, t.model, t.stop_reason, t.tool_calls_seen, t.failed)


def _decode(chunks: list[bytes]) -> list[Any]:
    d = gm.StreamDecoder(None)
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
    ended = False
    for block in out[:-2].split(b"\n\n"):
        assert block.startswith(b"data: ") and b"\n" not in block
        obj = jsonio.loads(block[6:])
        assert type(obj) is dict and not ended, "a frame after the last one"
        cands = obj.get("candidates") or [{}]
        ended = "error" in obj or "finishReason" in cands[0]


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
        if mode == 3:
            status = STATUSES[data[1] % len(STATUSES)]
            err = gm.decode_error(status, payload)
            code, body = gm.encode_error(err, FORMAT)
            assert type(code) is int and type(body) is bytes
            t = Translation(other, FORMAT, request_id="fuzz", created=0)
            code, body = t.error(status, payload)
            assert type(code) is int and type(body) is bytes
            return
        if mode == 4:
            enc = gm.StreamEncoder(None)
            out = b"".join(enc.encode([ev]) for ev in _events(payload)) + enc.close()
            check_encoded(out)
            return
        try:
            body = jsonio.loads(payload)
        except jsonio.JSONDecodeError:
            return
        if mode == 1:
            try:
                req = gm.decode_request(body)
            except ProtocolError:
                req = None
            if req is not None:
                jsonio.dumps(gm.encode_request(req))
            t = Translation(FORMAT, other, request_id="fuzz", created=0)
            jsonio.dumps(t.request(body))
        else:
            t = Translation(other, FORMAT, request_id="fuzz", created=0)
            t.request(dict(REQUESTS[other]))
            jsonio.dumps(t.response(body))
    except ProtocolError:
        pass


def strategy() -> Any:
    """Gemini-shaped inputs for ``fuzz.run``: a mode byte, a seed byte, then data-only
    SSE (CRLF or LF) or JSON built from Gemini vocabulary."""
    from hypothesis import strategies as st

    words = st.sampled_from([
        "candidates", "content", "parts", "text", "thought", "thoughtSignature", "functionCall",
        "functionResponse", "name", "args", "id", "response", "role", "model", "user",
        "finishReason", "STOP", "MAX_TOKENS", "SAFETY", "usageMetadata", "promptTokenCount",
        "candidatesTokenCount", "thoughtsTokenCount", "promptFeedback", "blockReason", "error",
        "status", "code", "message", "contents", "tools", "functionDeclarations", "parameters",
        "toolConfig", "functionCallingConfig", "mode", "ANY", "generationConfig",
        "systemInstruction", "inlineData", "mimeType", "data", "index", "responseId",
    ])
    scalar = st.one_of(st.none(), st.booleans(), st.integers(-2, 5), words, st.text(max_size=5))
    value = st.recursive(scalar, lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(words, kids, max_size=5)), max_leaves=20)
    obj = st.dictionaries(words, value, max_size=6)
    frame = st.tuples(obj, st.sampled_from([b"\n\n", b"\r\n\r\n"])).map(
        lambda t: b"data: " + jsonio.dumps(t[0]) + t[1])
    body = st.one_of(st.lists(frame, max_size=8).map(b"".join), obj.map(jsonio.dumps))
    return st.tuples(st.integers(0, 255), st.integers(0, 255), body).map(
        lambda t: bytes([t[0], t[1]]) + t[2])
