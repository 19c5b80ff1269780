"""The fault cases, what a client must get for each, and how to read what it got.

A ``Case`` names a fault the relay injects between the gateway and the provider and
the outcome it must have, for a streamed and for a whole (non-stream) request:

    OK          the fault changes nothing the client can see: the whole answer, 200.
    Before(s,k) it struck before any byte reached the client: with a second target
                configured the request fails over to it (the whole answer, 200);
                without, the client gets status ``s`` in its protocol's error shape
                and the ledger ``k``.
    After(k)    it struck after the first byte: the stream ends with the client
                protocol's error event (never a clean end, never a silent cut);
                the ledger says 200 and ``k``.

The fake provider answers every request chunked, one chunk per SSE event (a whole
JSON reply in 64-byte chunks), so a chunk-size line is a place the relay can cut.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson

from tests.faults.relay import (
    Fault,
    after_head,
    after_response_bytes,
    before_head,
    before_last_chunk,
    in_chunk_size_line,
    in_event,
    in_request_body,
)
from tests.integration.providers import EXPECT, provider_script
from tests.integration.upstreams import Recorded

# client protocol -> (path, terminal event of its streams)
CLIENTS = {
    "chat": "/v1/chat/completions",
    "anthropic": "/v1/messages",
}
# (client protocol, provider kind): same protocol, and translated both ways.
PAIRS = [("chat", "openai"), ("anthropic", "openai"), ("chat", "anthropic")]
# Where an SSE event starts in each provider's stream.
EVENT_MARKER = {"openai": b"data: ", "anthropic": b"event: "}
JSON_CHUNK = 64


@dataclass(frozen=True)
class Outcome:
    kind: str  # "ok", "before" or "after"
    status: int = 200
    error_kind: str | None = None


OK = Outcome("ok")


def Before(status: int, error_kind: str) -> Outcome:  # noqa: N802 (reads as a table)
    return Outcome("before", status, error_kind)


def After(error_kind: str) -> Outcome:  # noqa: N802
    return Outcome("after", 200, error_kind)


@dataclass(frozen=True)
class Case:
    """``fault`` is built per provider kind (an SSE event starts differently in
    each); None with ``refuse``: the relay stops listening.  ``stalls``: the case
    waits for a provider timeout, so the provider gets short ones."""

    name: str
    fault: Callable[[str], Fault] | None
    stream: Outcome | None
    whole: Outcome | None
    stalls: bool = False
    refuse: bool = False

    def outcome(self, stream: bool) -> Outcome | None:
        return self.stream if stream else self.whole


def _both(name: str, fault: Callable[[str], Fault] | None, outcome: Outcome, **kw) -> Case:
    return Case(name, fault, outcome, outcome, **kw)


CUT = Before(502, "upstream_error")
TIMEOUT = Before(504, "upstream_timeout")

CASES = [
    # Nothing reaches the provider, or nothing comes back from it.
    _both("refused", None, Before(502, "upstream_unreachable"), refuse=True),
    _both("blackhole", lambda k: Fault("blackhole"), TIMEOUT, stalls=True),
    # The request body on its way to the provider.
    _both("body-close", lambda k: Fault("close", in_request_body(5)), CUT),
    _both("body-reset", lambda k: Fault("reset", in_request_body(5)), CUT),
    _both("body-stall", lambda k: Fault("stall", in_request_body(5)), TIMEOUT, stalls=True),
    _both("body-trickle", lambda k: Fault("trickle", in_request_body(0), trickle_bytes=64), OK),
    # Before and inside the response head.
    _both("head-close", lambda k: Fault("close", before_head()), CUT),
    _both("head-reset", lambda k: Fault("reset", before_head()), CUT),
    _both("head-stall", lambda k: Fault("stall", before_head()), TIMEOUT, stalls=True),
    _both("mid-head-close", lambda k: Fault("close", after_response_bytes(20)), CUT),
    _both("mid-head-stall", lambda k: Fault("stall", after_response_bytes(20), stall="down"),
          TIMEOUT, stalls=True),
    _both("head-trickle", lambda k: Fault("trickle", before_head(), trickle_bytes=400), OK),
    # The body: after the head, inside a chunk-size line, inside an event.
    Case("after-head-close", lambda k: Fault("close", after_head()),
         After("stream_cut"), CUT),
    Case("chunk-size-close", lambda k: Fault("close", in_chunk_size_line(3)),
         After("stream_cut"), CUT),
    Case("chunk-size-reset", lambda k: Fault("reset", in_chunk_size_line(3)),
         After("stream_cut"), CUT),
    Case("chunk-size-stall", lambda k: Fault("stall", in_chunk_size_line(3)),
         After("upstream_timeout"), TIMEOUT, stalls=True),
    Case("mid-event-close", lambda k: Fault("close", in_event(EVENT_MARKER[k], 4)),
         After("stream_cut"), None),
    Case("mid-event-reset", lambda k: Fault("reset", in_event(EVENT_MARKER[k], 4)),
         After("stream_cut"), None),
    Case("mid-event-stall", lambda k: Fault("stall", in_event(EVENT_MARKER[k], 4)),
         After("upstream_timeout"), None, stalls=True),
    # The provider's answer is all there but its terminating chunk is not.  A stream
    # already carried its terminal event to the client: that answer is whole.  A
    # buffered body cannot be known whole without it: fail over.
    Case("last-chunk-close", lambda k: Fault("close", before_last_chunk()), OK, CUT),
    Case("last-chunk-stall", lambda k: Fault("stall", before_last_chunk()), OK, TIMEOUT,
         stalls=True),
    Case("last-chunk-trickle", lambda k: Fault("trickle", before_last_chunk()), OK, OK),
]


# -- the fake provider ------------------------------------------------------------------

_ANSWER = provider_script("text")


def chunked_provider(req: Recorded) -> list[tuple]:
    """``provider_script("text")``'s answer, every body chunked: a stream one chunk per
    SSE event, a whole reply in ``JSON_CHUNK``-byte chunks."""
    acts = _ANSWER(req)
    status, headers = acts[0][1], acts[0][2]
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    data = b"".join(a[1] for a in acts if a[0] == "body")
    sse = any(k.lower() == "content-type" and v.startswith("text/event-stream")
              for k, v in headers)
    if sse:
        pieces = [e + b"\n\n" for e in data.split(b"\n\n") if e]
    else:
        pieces = [data[i:i + JSON_CHUNK] for i in range(0, len(data), JSON_CHUNK)]
    return [("head", status, headers)] + [("body", p) for p in pieces] + [("end",)]


# -- the client's side ------------------------------------------------------------------

def request_body(client: str, model: str, stream: bool) -> bytes:
    body: dict = {"model": model, "messages": [{"role": "user", "content": "hi"}],
                  "stream": stream}
    if client == "anthropic":
        body["max_tokens"] = 50
    return orjson.dumps(body)


def expected_text(provider_kind: str, stream: bool) -> str:
    text = EXPECT[(provider_kind, "text", stream)].text
    assert text
    return text


def sse_events(body: bytes) -> list[tuple[str | None, bytes]]:
    """(event name, data) of each SSE event; comments (keep-alives) left out."""
    out = []
    for block in body.split(b"\n\n"):
        name, data = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))
        if data:
            out.append((name, b"\n".join(data)))
    return out


def whole_text(client: str, obj: dict) -> str:
    if client == "chat":
        return obj["choices"][0]["message"]["content"]
    return "".join(b["text"] for b in obj["content"] if b["type"] == "text")


def stream_text(client: str, events: list[tuple[str | None, bytes]]) -> str:
    parts = []
    for name, data in events:
        if data == b"[DONE]":
            continue
        obj = orjson.loads(data)
        if client == "chat":
            for ch in obj.get("choices") or ():
                parts.append(ch["delta"].get("content") or "")
        elif name == "content_block_delta" and obj["delta"]["type"] == "text_delta":
            parts.append(obj["delta"]["text"])
    return "".join(parts)


def is_terminal(client: str, event: tuple[str | None, bytes]) -> bool:
    name, data = event
    return data == b"[DONE]" if client == "chat" else name == "message_stop"


def error_event(client: str, event: tuple[str | None, bytes]) -> dict | None:
    """The error of ``event`` if it is the client protocol's error event
    (Chat: a data line whose JSON has ``error``; Anthropic: ``event: error``)."""
    name, data = event
    if data == b"[DONE]":
        return None
    obj = orjson.loads(data)
    if client == "chat":
        err = obj.get("error") if name is None else None
        return err if isinstance(err, dict) else None
    if name == "error" and obj.get("type") == "error":
        return obj["error"]
    return None


def error_shape_problem(client: str, body: bytes) -> str | None:
    """What is wrong with ``body`` as the client protocol's error reply, or None."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"not JSON: {body[:200]!r}"
    if client == "chat":
        err = obj.get("error")
        if not isinstance(err, dict) or set(err) != {"message", "type", "param", "code"}:
            return f"not an OpenAI error body: {obj}"
        return None
    if obj.get("type") != "error" or not isinstance(obj.get("error"), dict) \
            or set(obj["error"]) != {"type", "message"}:
        return f"not an Anthropic error body: {obj}"
    return None


def says_timeout(client: str, err: dict) -> bool:
    """The client protocol's way of saying the provider timed out."""
    return err.get("code") == "timeout" if client == "chat" else err.get("type") == "timeout_error"
