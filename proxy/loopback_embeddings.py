"""The built-in ``loopback`` model's embeddings: deterministic vectors, no network.

``embeddings(body)`` returns an OpenAI embeddings ``list`` object (docs/protocols.md §1.4);
``usage_for(body)`` gives the usage of a chat body (``messages``) or an embeddings body
(``input``). Invalid input raises ``proxy.loopback.LoopbackError``. Pure, like the chat part.

Embeddings
----------
``input`` is a non-empty string, a list of such strings, a list of token ints, or a list of
lists of token ints (at most ``MAX_EMBEDDING_INPUTS`` items). Each item is hashed with BLAKE2b
(strings as UTF-8, token lists as their decimal digits), the hash seeds SHAKE-256, and the output
is read as little-endian int16 values and L2-normalised. Every value is rounded
to float32, so ``"float"`` and ``"base64"`` (little-endian float32, base64) carry the very same
numbers. The stream for a given input does not depend on ``dimensions`` (1..8192, default 1536),
so a shorter vector is the longer one cut and renormalised, as with OpenAI's ``text-embedding-3``.
``prompt_tokens`` is ``max(1, ceil(bytes / 4))`` per string and the length of each token list.
"""

from __future__ import annotations

import array
import base64
import hashlib
import math
import sys

from .loopback import (
    DEFAULT_EMBEDDING_DIMENSIONS,
    MAX_EMBEDDING_DIMENSIONS,
    MAX_EMBEDDING_INPUTS,
    MAX_EMBEDDING_VALUES,
    LoopbackError,
    chat_usage,
    checked_request,
    optional_int,
    tokens_for_bytes,
    utf8_bytes,
)

__all__ = ["embeddings", "embeddings_usage", "usage_for"]
def _embedding_items(body: object) -> list:
    """The inputs as a list of str or list[int], validated (§ CreateEmbeddingRequest)."""
    body, _ = checked_request(body)
    value = body.get("input")
    if value is None:
        raise LoopbackError("Missing required parameter: 'input'.", param="input",
                            code="missing_required_parameter")
    items: list[str | list[int]]
    if type(value) is str:
        items = [value]
    elif type(value) is list and value and all(type(v) is int for v in value):
        items = [value]
    elif type(value) is list and value:
        items = value
    else:
        raise LoopbackError("Invalid value for 'input': expected a non-empty string, an array of "
                            "strings, an array of tokens or an array of token arrays.",
                            param="input")
    if len(items) > MAX_EMBEDDING_INPUTS:
        raise LoopbackError(f"Invalid 'input': at most {MAX_EMBEDDING_INPUTS} inputs per request.",
                            param="input")
    for i, item in enumerate(items):
        if type(item) is str:
            ok = bool(item)
        elif type(item) is list:
            ok = bool(item) and all(type(t) is int and t >= 0 for t in item)
        else:
            ok = False
        if not ok:
            raise LoopbackError(f"Invalid value for 'input[{i}]': expected a non-empty string or "
                                "a non-empty array of non-negative integers.", param="input")
    return items


def _embedding_tokens(items: list) -> int:
    return sum(max(1, tokens_for_bytes(utf8_bytes(it))) if type(it) is str else len(it)
               for it in items)


def embeddings_usage(body: dict) -> dict:
    """The usage that ``embeddings`` reports for ``body``."""
    tokens = _embedding_tokens(_embedding_items(body))
    return {"prompt_tokens": tokens, "total_tokens": tokens}


def _vector(item: str | list, dims: int) -> array.array:
    data = b"s:" + item.encode() if type(item) is str else b"t:" + ",".join(map(str, item)).encode()
    seed = hashlib.blake2b(data, digest_size=32, person=b"tokenway-loopbk").digest()
    raw = array.array("h", hashlib.shake_256(seed).digest(2 * dims))
    if sys.byteorder == "big":
        raw.byteswap()
    norm = math.hypot(*raw)
    scale = 1.0 / norm if norm else 0.0  # all-zero needs 2 * dims zero bytes from SHAKE-256
    return array.array("f", [v * scale for v in raw])


def embeddings(body: dict) -> dict:
    """An embeddings ``list`` object answering ``body``."""
    items = _embedding_items(body)
    dims = (optional_int(body, "dimensions", 1, MAX_EMBEDDING_DIMENSIONS)
            or DEFAULT_EMBEDDING_DIMENSIONS)
    fmt = body.get("encoding_format")
    if fmt is None:
        fmt = "float"
    if fmt not in ("float", "base64"):
        raise LoopbackError("Invalid value for 'encoding_format': expected 'float' or 'base64'.",
                            param="encoding_format")
    if len(items) * dims > MAX_EMBEDDING_VALUES:
        raise LoopbackError(f"Invalid request: the loopback model answers at most "
                            f"{MAX_EMBEDDING_VALUES} values (inputs x dimensions) per request; "
                            f"this one asks for {len(items) * dims}.", param="input")
    data = []
    for i, item in enumerate(items):
        vector = _vector(item, dims)
        if fmt == "float":
            embedding: object = vector.tolist()
        else:
            if sys.byteorder == "big":
                vector.byteswap()
            embedding = base64.b64encode(vector.tobytes()).decode("ascii")
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = _embedding_tokens(items)
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def usage_for(body: dict) -> dict:
    """Usage for a chat body (``messages``) or an embeddings body (``input``)."""
    if type(body) is dict and "messages" not in body and "input" in body:
        return embeddings_usage(body)
    return chat_usage(body)
