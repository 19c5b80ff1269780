"""Fuzz target for the decoders of whole bodies from a provider or a client, called
directly rather than through a ``Translation``: each format's ``decode_response``,
``decode_request`` and ``decode_error``, the embeddings replies
(``protocols.embeddings``) and the usage readers (``protocols.usage``).

Invariants:

1. Only ``protocols.errors.ProtocolError`` escapes, whatever the bytes.
2. Bounded output: what a decoder made of a body, written back out (the same format's
   encoder, an error body, an embeddings reply), is at most a constant factor of the
   input plus a constant: no decoder multiplies what it is given.
3. Usage: every count read is a non-negative ``int``, and so is every field of the
   ledger's record of it.
4. Embeddings: one output item per input embedding, in order; a base64 vector decodes
   to 4 bytes per value.

Input layout: byte 0 picks the mode (low 2 bits) and the format (next 2 bits), byte 1
picks a status (and, for embeddings, base64), the rest is the payload:

* mode 0: the payload (JSON) as a complete reply of the format, then as a request;
* mode 1: the payload (any bytes) as an error body of the format with that status;
* mode 2: the payload (JSON) as a usage object, read by every format's reader and
  merged as an Anthropic stream update;
* mode 3: the payload (JSON) as a Gemini or OpenAI embeddings reply, then as an
  OpenAI embeddings request for a Gemini model; the format bits pick the reply kind.

``python -m fuzz.run replies`` runs it long; every failing input belongs in
``fuzz/corpus/replies/``, which the normal test run replays.
"""

from __future__ import annotations

import base64
from typing import Any

from fuzz import FORMATS
from protocols import embeddings, ir, jsonio
from protocols import usage as usage_mod
from protocols.errors import ProtocolError
from protocols.registry import format_module

STATUSES = (400, 401, 403, 404, 413, 429, 500, 502, 503, 504, 529)
#: Written back out, a decoded body may grow by escaping (a control byte becomes
#: ``\\u00XX``, six bytes) and by the fields an encoder always writes.
GROWTH = 8
OVERHEAD = 4096
READERS = (usage_mod.from_openai_chat, usage_mod.from_openai_responses,
           usage_mod.from_anthropic, usage_mod.from_gemini)


def _bounded(out: Any, payload: bytes, what: str, growth: int = GROWTH) -> None:
    size = len(out) if type(out) is bytes else len(jsonio.dumps(out))
    assert size <= growth * len(payload) + OVERHEAD, (
        f"{what}: {size} bytes out of {len(payload)} in")


def _check_bodies(fmt: str, payload: bytes) -> None:
    mod = format_module(fmt)
    try:
        body = jsonio.loads(payload)
    except jsonio.JSONDecodeError:
        return
    try:
        resp = mod.decode_response(body)
        _bounded(mod.encode_response(resp, ir.Context(request_id="fuzz", created=0)),
                 payload, "decode_response")
    except ProtocolError:
        pass
    try:
        req = mod.decode_request(body)
        _bounded(mod.encode_request(req), payload, "decode_request")
    except ProtocolError:
        pass


def _check_error(fmt: str, status: int, payload: bytes) -> None:
    mod = format_module(fmt)
    err = mod.decode_error(status, payload)
    assert type(err) is ir.ApiError
    assert type(mod.is_error_body(payload)) is bool
    for client in FORMATS:
        code, body = format_module(client).encode_error(err, fmt)
        assert type(code) is int and 100 <= code <= 599
        _bounded(body, payload, f"decode_error {fmt} -> {client}")


def _check_usage(payload: bytes) -> None:
    try:
        value = jsonio.loads(payload)
    except jsonio.JSONDecodeError:
        return
    for read in READERS:
        try:
            u = read(value)
        except ProtocolError:
            continue
        record = usage_mod.as_record(u)
        assert all(type(n) is int and n >= 0 for n in record.values()), record
    try:
        raw = usage_mod.merge_anthropic({"input_tokens": 3, "output_tokens": 1}, value)
        usage_mod.from_anthropic(raw)
    except ProtocolError:
        pass


def _check_embeddings(kind: int, b64: bool, payload: bytes) -> None:
    try:
        value = jsonio.loads(payload)
    except jsonio.JSONDecodeError:
        return
    client = {"model": "m", "input": "x", "encoding_format": "base64" if b64 else "float"}
    reply: Any = (embeddings.GeminiEmbeddingsReply(client, "m") if kind % 2 == 0
                  else embeddings.OpenAIEmbeddingsReply("m"))
    try:
        out = reply.response(value)
    except ProtocolError:
        out = None
    if out is not None and kind % 2 == 0:
        data = out["data"]
        assert [d["index"] for d in data] == list(range(len(value["embeddings"])))
        for d, e in zip(data, value["embeddings"], strict=True):
            if b64:
                assert len(base64.b64decode(d["embedding"])) == 4 * len(e["values"])
        _bounded(out, payload, "embeddings reply")
    elif out is not None:
        assert out is value  # relayed as it came
    code, body = reply.error(502, payload)
    assert type(code) is int and type(body) is bytes
    _bounded(body, payload, "embeddings error")
    if type(value) is dict:
        try:
            # Each input text becomes a request object of ~60 bytes around it.
            _bounded(embeddings.openai_to_gemini_batch(value, "m"), payload,
                     "embeddings request", growth=32)
        except ProtocolError:
            pass


def check(data: bytes) -> None:
    if len(data) < 2:
        return
    mode, which = data[0] & 3, (data[0] >> 2) & 3
    fmt, payload = FORMATS[which], data[2:]
    try:
        if mode == 0:
            _check_bodies(fmt, payload)
        elif mode == 1:
            _check_error(fmt, STATUSES[data[1] % len(STATUSES)], payload)
        elif mode == 2:
            _check_usage(payload)
        else:
            _check_embeddings(which, data[1] & 1 == 1, payload)
    except ProtocolError:
        pass


def strategy() -> Any:
    """Reply-shaped inputs for ``fuzz.run``: a mode byte, a status byte, then JSON
    built from the four formats' reply, error, usage and embeddings vocabulary."""
    from hypothesis import strategies as st

    words = st.sampled_from([
        "id", "object", "model", "choices", "message", "content", "role", "assistant",
        "tool_calls", "function", "arguments", "name", "finish_reason", "stop", "usage",
        "prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
        "cached_tokens", "completion_tokens_details", "reasoning_tokens", "type", "text",
        "tool_use", "input", "stop_reason", "input_tokens", "output_tokens",
        "cache_read_input_tokens", "cache_creation_input_tokens", "output", "status",
        "candidates", "parts", "finishReason", "usageMetadata", "promptTokenCount",
        "candidatesTokenCount", "thoughtsTokenCount", "cachedContentTokenCount", "error",
        "code", "param", "embeddings", "values", "data", "embedding", "messages",
        "contents", "max_tokens", "tools", "encoding_format", "dimensions",
    ])
    scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**63 - 1), st.floats(),
                       words, st.text(max_size=5))
    value = st.recursive(scalar, lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(words, kids, max_size=5)), max_leaves=24)
    body = st.one_of(st.dictionaries(words, value, max_size=6).map(jsonio.dumps),
                     st.binary(max_size=64))
    return st.tuples(st.integers(0, 255), st.integers(0, 255), body).map(
        lambda t: bytes([t[0], t[1]]) + t[2])
