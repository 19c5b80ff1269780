"""Embeddings replies from a Gemini upstream (protocols/embeddings.py)."""

from __future__ import annotations

import base64
import struct

import pytest

from protocols.embeddings import GeminiEmbeddingsReply
from protocols.errors import UpstreamProtocolError


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_vector_reaches_the_client_in_its_encoding(encoding):
    reply = GeminiEmbeddingsReply({"input": "x", "encoding_format": encoding}, "m")
    out = reply.response({"embeddings": [{"values": [0.5, -1, 2]}]})
    [item] = out["data"]
    vec = item["embedding"]
    if encoding == "base64":
        vec = list(struct.unpack("<3f", base64.b64decode(vec)))
    assert vec == [0.5, -1.0, 2.0]


@pytest.mark.parametrize("encoding", ["float", "base64"])
@pytest.mark.parametrize("values", [[0.5, "x"], [1e300], [None], [[1.0]]])
def test_values_that_are_not_32_bit_floats_are_the_upstreams_error(encoding, values):
    """Found by fuzz/replies.py: struct.error and OverflowError escaped the base64
    path, and the float path relayed any JSON as a vector."""
    reply = GeminiEmbeddingsReply({"input": "x", "encoding_format": encoding}, "m")
    with pytest.raises(UpstreamProtocolError, match=r"embeddings\[0\]\.values"):
        reply.response({"embeddings": [{"values": values}]})
