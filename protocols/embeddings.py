"""OpenAI embeddings replies: relayed from an OpenAI upstream (``OpenAIEmbeddingsReply``),
or made from a Gemini ``batchEmbedContents`` upstream (``GeminiEmbeddingsReply``).

OpenAI: ``{"model","input": str | [str] | [int] | [[int]], "dimensions"?,
"encoding_format"?: "float"|"base64"}`` -> ``{"object":"list","data":[{"object":
"embedding","index","embedding"}],"model","usage"}``.
Gemini: ``{"requests":[{"model":"models/M","content":{"parts":[{"text"}]},
"outputDimensionality"?}]}`` -> ``{"embeddings":[{"values":[...]}]}``.
Token-id inputs have no Gemini equivalent and are rejected naming the field.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from . import _openai, ir
from . import usage as usage_mod
from .errors import ClientProtocolError, ProtocolError, UpstreamProtocolError
from .registry import format_module


def _texts(body: dict[str, Any]) -> list[str]:
    value = body.get("input")
    if type(value) is str:
        return [value]
    if type(value) is list and value and all(type(v) is str for v in value):
        return list(value)
    if type(value) is list and value:
        raise ClientProtocolError("input: token-id inputs cannot be sent to a Gemini "
                                  "embeddings model; send text", param="input")
    raise ClientProtocolError("input: expected a non-empty string or list of strings",
                              param="input")


def openai_to_gemini_batch(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The ``batchEmbedContents`` body for an OpenAI embeddings request."""
    texts = _texts(body)
    dims = body.get("dimensions")
    if dims is not None and (type(dims) is not int or dims < 1):
        raise ClientProtocolError("dimensions: expected a positive integer", param="dimensions")
    fmt = body.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        raise ClientProtocolError("encoding_format: expected 'float' or 'base64'",
                                  param="encoding_format")
    reqs = []
    for text in texts:
        item: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}}
        if dims is not None:
            item["outputDimensionality"] = dims
        reqs.append(item)
    return {"requests": reqs}


class GeminiEmbeddingsReply:
    """Turns the Gemini reply (or error) into the OpenAI client's shape; the same
    ``response``/``error``/``usage``/``model`` facts a ``Translation`` has."""

    observe = False

    def __init__(self, client_body: dict[str, Any], model: str) -> None:
        self.base64 = client_body.get("encoding_format") == "base64"
        self.model = model
        self.usage: ir.Usage | None = None

    def response(self, body: Any) -> dict[str, Any]:
        embs = body.get("embeddings") if type(body) is dict else None
        if type(embs) is not list:
            raise UpstreamProtocolError("Gemini embeddings reply without 'embeddings'")
        data = []
        for i, e in enumerate(embs):
            values = e.get("values") if type(e) is dict else None
            if type(values) is not list:
                raise UpstreamProtocolError(f"embeddings[{i}].values missing")
            vec: Any = values
            try:
                # Also the check of the float form: 32-bit floats, as OpenAI sends.
                packed = struct.pack(f"<{len(values)}f", *values)
            except (struct.error, OverflowError):
                raise UpstreamProtocolError(
                    f"embeddings[{i}].values: not a vector of 32-bit floats") from None
            if self.base64:
                vec = base64.b64encode(packed).decode()
            data.append({"object": "embedding", "index": i, "embedding": vec})
        # Gemini reports no token counts for embeddings: the ledger keeps NULL.
        return {"object": "list", "data": data, "model": self.model,
                "usage": {"prompt_tokens": 0, "total_tokens": 0}}

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        err = format_module(ir.FORMAT_GEMINI).decode_error(status, body)
        return _openai.encode_error(err, ir.FORMAT_GEMINI)


class OpenAIEmbeddingsReply:
    """An OpenAI embeddings reply relayed unchanged from an OpenAI upstream, its facts
    read off (``usage.prompt_tokens``, ``model``); an error reply relayed when it is
    OpenAI's own error shape and rewritten as one otherwise.  The ``response``/``error``/
    ``usage``/``model`` facts a ``Translation`` has."""

    observe = True

    def __init__(self, model: str) -> None:
        self.model: str | None = model
        self.usage: ir.Usage | None = None

    def response(self, body: Any) -> Any:
        if type(body) is dict:
            model = body.get("model")
            if type(model) is str:
                self.model = model
            u = body.get("usage")
            if type(u) is dict:
                try:
                    self.usage = usage_mod.from_openai_chat(u)
                except ProtocolError:
                    pass  # not token counts: the reply still goes out, the ledger has none
        return body

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        if _openai.is_error_body(body):
            return status, body
        return _openai.encode_error(_openai.decode_error(status, body), ir.FORMAT_OPENAI_CHAT)
