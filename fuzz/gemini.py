"""Fuzz target for ``protocols.gemini`` (and its translations).

Invariants:

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

from typing import Any

from fuzz import ir_events, run_modes
from protocols import gemini as gm
from protocols import jsonio
from protocols.translate import Translation

FORMAT = gm.FORMAT
STATUSES = (400, 401, 403, 404, 429, 500, 502, 503, 504)


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


def _check_error(other: str, seed: int, payload: bytes) -> None:
    status = STATUSES[seed % len(STATUSES)]
    err = gm.decode_error(status, payload)
    code, body = gm.encode_error(err, FORMAT)
    assert type(code) is int and type(body) is bytes
    code, body = Translation(other, FORMAT, request_id="fuzz", created=0).error(status, payload)
    assert type(code) is int and type(body) is bytes


def _check_encoder(other: str, seed: int, payload: bytes) -> None:
    enc = gm.StreamEncoder(None)
    check_encoded(b"".join(enc.encode([ev]) for ev in ir_events(payload)) + enc.close())


def check(data: bytes) -> None:
    run_modes(data, FORMAT, {3: _check_error, 4: _check_encoder})


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
