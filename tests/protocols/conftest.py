"""Shared helpers for the protocol tests: transcripts, captures, chunkings, real SDKs.

Transcripts and captures live in the shared conformance folder, next to the repository
(``<repo>/../shared``) or wherever ``TOKENWAY_SHARED`` points. They are read as bytes and
never modified.

The SDK helpers run the real ``openai`` and ``anthropic`` clients against a mock HTTP
transport that serves given bytes in small chunks, so a stream is accepted exactly when
the SDK's own SSE decoder and stream accumulator (``ChatCompletionStreamState`` behind
``chat.completions.stream``, ``accumulate_event`` behind ``messages.stream``) accept it.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(os.environ.get("TOKENWAY_SHARED")
              or Path(__file__).resolve().parents[2].parent / "shared")
TRANSCRIPTS = SHARED / "conformance" / "transcripts"
CAPTURES = SHARED / "conformance" / "captures"
GOLDEN = Path(__file__).resolve().parent / "golden"

#: Pinned request id and clock for every translation in the tests.
REQUEST_ID = "req_test0001"
CREATED = 1_700_000_000

CHAT = "openai_chat"
ANTHROPIC = "anthropic_messages"

#: Transcript name -> wire format.
TRANSCRIPT_FORMATS = {
    "openai_chat_stream_text.sse": CHAT,
    "openai_chat_stream_parallel_tool_calls.sse": CHAT,
    "openai_chat_stream_include_usage.sse": CHAT,
    "anthropic_stream_text.sse": ANTHROPIC,
    "anthropic_stream_thinking_tool_use.sse": ANTHROPIC,
    "anthropic_stream_error_midstream.sse": ANTHROPIC,
}

#: A minimal streaming request per client format; the Chat one asks for usage.
CLIENT_REQUESTS: dict[str, dict[str, Any]] = {
    CHAT: {
        "model": "test-model",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    },
    ANTHROPIC: {
        "model": "test-model",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    },
}


def transcript(name: str) -> bytes:
    path = TRANSCRIPTS / name
    if not path.exists():
        pytest.skip(f"shared transcript {path} not available")
    return path.read_bytes()


def capture(name: str) -> Any:
    path = CAPTURES / name
    if not path.exists():
        pytest.skip(f"shared capture {path} not available")
    return json.loads(path.read_text())


# --- chunkings --------------------------------------------------------------------------


def whole(data: bytes) -> list[bytes]:
    return [data]


def byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given offsets (sorted, deduplicated, clipped)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    out, prev = [], 0
    for p in points:
        out.append(data[prev:p])
        prev = p
    out.append(data[prev:])
    return out


def random_chunks(data: bytes, seed: int, max_len: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, max_len)
        out.append(data[i : i + n])
        i += n
    return out


def run_translation(client: str, upstream: str, chunks: list[bytes],
                    request: dict[str, Any] | None = None) -> tuple[bytes, Any]:
    """Feed ``chunks`` through a fresh Translation; return (client bytes, translation)."""
    from protocols.translate import Translation

    t = Translation(client, upstream, request_id=REQUEST_ID, created=CREATED)
    t.request(dict(request or CLIENT_REQUESTS[client]))
    out = [t.feed(c) for c in chunks]
    out.append(t.finish())
    return b"".join(out), t


# --- real SDK consumers -----------------------------------------------------------------


def _transport(body: bytes, status: int = 200, content_type: str = "text/event-stream") -> Any:
    import httpx2

    class Chunked(httpx2.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            # 1-5 byte writes, as in docs/protocols.md §0 "Verified".
            yield from random_chunks(body, seed=len(body), max_len=5)

    def handler(request: Any) -> Any:
        return httpx2.Response(status, headers={"content-type": content_type}, stream=Chunked())

    return httpx2.Client(transport=httpx2.MockTransport(handler))


def openai_final(body: bytes, **kwargs: Any) -> Any:
    """Run ``chat.completions.stream`` over ``body``; return the final completion.

    Raises what the SDK raises (``openai.APIError`` on an error chunk)."""
    import openai

    client = openai.OpenAI(api_key="test", base_url="http://gateway.test/v1",
                           http_client=_transport(body), max_retries=0)
    params = {"model": "test-model", "messages": [{"role": "user", "content": "hi"}]}
    params.update(kwargs)
    with client.chat.completions.stream(**params) as stream:
        for _ in stream:
            pass
        return stream.get_final_completion()


def openai_chunks(body: bytes) -> list[Any]:
    """The raw ``ChatCompletionChunk`` objects the SDK yields for ``body``."""
    import openai

    client = openai.OpenAI(api_key="test", base_url="http://gateway.test/v1",
                           http_client=_transport(body), max_retries=0)
    stream = client.chat.completions.create(model="test-model", stream=True,
                                            messages=[{"role": "user", "content": "hi"}])
    return list(stream)


def anthropic_final(body: bytes, **kwargs: Any) -> Any:
    """Run ``messages.stream`` over ``body``; return the final message.

    Raises what the SDK raises (``anthropic.APIStatusError`` on ``event: error``)."""
    import anthropic

    client = anthropic.Anthropic(api_key="test", base_url="http://gateway.test",
                                 http_client=_transport(body), max_retries=0)
    params = {"model": "test-model", "max_tokens": 1024,
              "messages": [{"role": "user", "content": "hi"}]}
    params.update(kwargs)
    with client.messages.stream(**params) as stream:
        for _ in stream:
            pass
        return stream.get_final_message()


def openai_nonstream(body: bytes, status: int = 200) -> Any:
    import openai

    client = openai.OpenAI(api_key="test", base_url="http://gateway.test/v1",
                           http_client=_transport(body, status, "application/json"),
                           max_retries=0)
    return client.chat.completions.create(model="test-model",
                                          messages=[{"role": "user", "content": "hi"}])


def anthropic_nonstream(body: bytes, status: int = 200) -> Any:
    import anthropic

    client = anthropic.Anthropic(api_key="test", base_url="http://gateway.test",
                                 http_client=_transport(body, status, "application/json"),
                                 max_retries=0)
    return client.messages.create(model="test-model", max_tokens=64,
                                  messages=[{"role": "user", "content": "hi"}])
