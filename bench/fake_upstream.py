"""A fast fake LLM provider for benchmarks: OpenAI Chat, Responses, Embeddings, Anthropic.

One asyncio `Protocol` per connection on uvloop, parsed by httptools, HTTP/1.1 keep-alive.
Streams go out as chunked SSE, one HTTP chunk per SSE event. The wire formats follow
docs/protocols.md: Chat §1.4-1.5, Responses §2.4-2.5, Anthropic §3.7-3.8.

Bodies are memoised per (route, model, chunk count, options, second), with a fixed-width
placeholder for the response id so that every response still gets its own id without
re-encoding JSON. With a zero chunk interval a whole stream is one `transport.write()`.

Knobs, most specific first:
- headers `x-fake-chunks`, `x-fake-interval-ms`, `x-fake-delay-ms` (few gateways forward them);
- the model name: `gpt-bench-n64-i20-d5` means 64 chunks, 20 ms apart, 5 ms before the
  response head. Every gateway forwards the model, so this is how the harness asks for a
  paced stream without restarting anything;
- faults, also in the model name: `-e500` answers that status (any 4xx/5xx) with the
  route's error body (429 and 503 with `retry-after: 1`); `-x5` cuts the connection
  (abort, no terminating chunk) after the head and 5 content deltas of a stream, or after
  the head and half the body of a non-stream reply;
- the process defaults: `--chunks` / FAKE_CHUNKS (20), `--interval-ms` /
  FAKE_CHUNK_INTERVAL_MS (0: one write), `--delay-ms` / FAKE_DELAY_MS (0).

Paced streams (interval > 0) stamp each content delta with `[index:monotonic_ns]`, the
CLOCK_MONOTONIC time just before the write, so `bench.sse_client` on the same machine can
measure the delay each frame picked up on its way through a proxy.

Run: `python -m bench.fake_upstream --port 18000`. It binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass

import httptools
import orjson

LOOPBACK = "127.0.0.1"  # never anything else: benchmark traffic stays on this machine
DEFAULT_PORT = 18000
DEFAULT_CHUNKS = 20
# 10 000 chunks of ~200 bytes is 2 MB: enough for any bench, small enough to memoise.
MAX_CHUNKS = 10_000
MAX_BODY_BYTES = 8 * 1024 * 1024
EMBEDDING_DIM_DEFAULT = 64
EMBEDDING_DIM_MAX = 4096
# The id placeholder has the width of every real id we splice in (see _next_id).
ID_WIDTH = 24
ID_PLACEHOLDER = b"#" * ID_WIDTH
STAMP_PLACEHOLDER = b"@STAMP@"
PROMPT_TOKENS = 12
NONSTREAM_COMPLETION_TOKENS = 7
NONSTREAM_TEXT = "Hello from the fake upstream."

_KNOB_RE = re.compile(r"-([nidex])(\d+(?:\.\d+)?)(?=-|$)")


@dataclass(frozen=True, slots=True)
class Defaults:
    chunks: int = DEFAULT_CHUNKS
    interval_ms: float = 0.0
    delay_ms: float = 0.0


@dataclass(slots=True)
class Plan:
    """What one request asked for, after knobs."""

    chunks: int
    interval_ms: float
    delay_ms: float
    error: int = 0      # -eNNN: answer this status instead
    cut: int = -1       # -xN: abort the connection after N deltas (-1: never)


def plan_for(model: str, headers: dict[bytes, bytes], defaults: Defaults) -> Plan:
    plan = Plan(defaults.chunks, defaults.interval_ms, defaults.delay_ms)
    for key, value in _KNOB_RE.findall(model):
        if key == "n":
            plan.chunks = int(float(value))
        elif key == "i":
            plan.interval_ms = float(value)
        elif key == "e":
            plan.error = int(float(value)) if 400 <= float(value) <= 599 else 0
        elif key == "x":
            plan.cut = int(float(value))
        else:
            plan.delay_ms = float(value)
    try:
        if b"x-fake-chunks" in headers:
            plan.chunks = int(headers[b"x-fake-chunks"])
        if b"x-fake-interval-ms" in headers:
            plan.interval_ms = float(headers[b"x-fake-interval-ms"])
        if b"x-fake-delay-ms" in headers:
            plan.delay_ms = float(headers[b"x-fake-delay-ms"])
    except ValueError:
        pass
    plan.chunks = max(1, min(plan.chunks, MAX_CHUNKS))
    plan.interval_ms = max(0.0, plan.interval_ms)
    plan.delay_ms = max(0.0, plan.delay_ms)
    return plan


def _token(i: int, stamped: bool) -> str:
    # Stamped tokens carry the placeholder; the writer swaps in the send time.
    if stamped:
        return f"[{i}:@STAMP@] "
    return f"tok{i} "


def _dumps(obj: object) -> bytes:
    return orjson.dumps(obj)


# ---------------------------------------------------------------------------
# Body builders. Each returns bytes (non-stream) or a list of (event bytes, is_delta)
# with the id placeholder in place of the id. They run once per memo key.
# ---------------------------------------------------------------------------

_ID = ID_PLACEHOLDER.decode()


def chat_body(model: str, created: int) -> bytes:
    return _dumps(
        {
            "id": "chatcmpl-" + _ID,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": NONSTREAM_TEXT,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _chat_usage(NONSTREAM_COMPLETION_TOKENS),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
    )


def _chat_usage(completion: int) -> dict:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion,
        "total_tokens": PROMPT_TOKENS + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_stream(
    model: str, created: int, n: int, include_usage: bool, stamped: bool
) -> list[tuple[bytes, bool]]:
    base = {
        "id": "chatcmpl-" + _ID,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }
    events: list[tuple[bytes, bool]] = []

    def chunk(choices: list, **extra: object) -> bytes:
        obj = dict(base, choices=choices)
        if include_usage:
            obj["usage"] = None  # §1.5: every earlier chunk carries usage:null
        obj.update(extra)
        return b"data: " + _dumps(obj) + b"\n\n"

    for i in range(n):
        delta: dict = {"content": _token(i, stamped)}
        if i == 0:
            delta = {"role": "assistant", "content": _token(i, stamped), "refusal": None}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        events.append((chunk([choice]), True))
    finish = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    events.append((chunk([finish]), False))
    if include_usage:
        events.append((chunk([], usage=_chat_usage(n)), False))
    events.append((b"data: [DONE]\n\n", False))
    return events


def _anthropic_usage(output_tokens: int) -> dict:
    return {
        "input_tokens": PROMPT_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def messages_body(model: str) -> bytes:
    return _dumps(
        {
            "id": "msg_" + _ID,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": NONSTREAM_TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": _anthropic_usage(NONSTREAM_COMPLETION_TOKENS),
        }
    )


def _sse(event: str, obj: object) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + _dumps(obj) + b"\n\n"


def messages_stream(model: str, n: int, stamped: bool) -> list[tuple[bytes, bool]]:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_" + _ID,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _anthropic_usage(1),
        },
    }
    events = [
        (_sse("message_start", start), False),
        (
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": 0,
                 "content_block": {"type": "text", "text": ""}},
            ),
            False,
        ),
        # §3.8: the real API sends ping with a space in the JSON.
        (b'event: ping\ndata: {"type": "ping"}\n\n', False),
    ]
    for i in range(n):
        delta = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": _token(i, stamped)},
        }
        events.append((_sse("content_block_delta", delta), True))
    events.append((_sse("content_block_stop", {"type": "content_block_stop", "index": 0}), False))
    events.append(
        (
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": n},
                },
            ),
            False,
        )
    )
    events.append((_sse("message_stop", {"type": "message_stop"}), False))
    return events


def _responses_usage(output_tokens: int) -> dict:
    return {
        "input_tokens": PROMPT_TOKENS,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": PROMPT_TOKENS + output_tokens,
    }


def _response_obj(model: str, created: int, status: str, output: list, usage: dict | None) -> dict:
    return {
        "id": "resp_" + _ID,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def _message_item(text: str, status: str) -> dict:
    content = [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]
    return {"id": "msg_" + _ID, "type": "message", "status": status,
            "content": content if status == "completed" else [], "role": "assistant"}


def responses_body(model: str, created: int) -> bytes:
    item = _message_item(NONSTREAM_TEXT, "completed")
    obj = _response_obj(model, created, "completed", [item],
                        _responses_usage(NONSTREAM_COMPLETION_TOKENS))
    obj["completed_at"] = created
    return _dumps(obj)


def responses_stream(model: str, created: int, n: int, stamped: bool) -> list[tuple[bytes, bool]]:
    seq = 0
    events: list[tuple[bytes, bool]] = []

    def add(event: str, obj: dict, is_delta: bool = False) -> None:
        nonlocal seq
        obj = {"type": event, "sequence_number": seq, **obj}
        seq += 1
        events.append((_sse(event, obj), is_delta))

    add("response.created", {"response": _response_obj(model, created, "in_progress", [], None)})
    add("response.in_progress",
        {"response": _response_obj(model, created, "in_progress", [], None)})
    add("response.output_item.added",
        {"output_index": 0, "item": _message_item("", "in_progress")})
    item_ref = {"item_id": "msg_" + _ID, "output_index": 0, "content_index": 0}
    empty_part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    add("response.content_part.added", {**item_ref, "part": empty_part})
    tokens = [_token(i, stamped) for i in range(n)]
    for tok in tokens:
        add("response.output_text.delta",
            {**item_ref, "delta": tok, "logprobs": [], "obfuscation": ""}, True)
    # With stamps the done events would carry stale stamps; they are not frames we time.
    text = "".join(tokens).replace("@STAMP@", "0")
    add("response.output_text.done", {**item_ref, "text": text, "logprobs": []})
    add("response.content_part.done", {**item_ref, "part": dict(empty_part, text=text)})
    done_item = _message_item(text, "completed")
    add("response.output_item.done", {"output_index": 0, "item": done_item})
    final = _response_obj(model, created, "completed", [done_item], _responses_usage(n))
    final["completed_at"] = created
    add("response.completed", {"response": final})
    return events


def embeddings_body(model: str, count: int, dim: int) -> bytes:
    vec = [round(((i * 7919) % 1000) / 1000.0 - 0.5, 6) for i in range(dim)]
    data = [{"object": "embedding", "index": i, "embedding": vec} for i in range(count)]
    usage = {"prompt_tokens": 4 * count, "total_tokens": 4 * count}
    return _dumps({"object": "list", "data": data, "model": model, "usage": usage})


MODELS_BODY = _dumps(
    {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"}
            for m in ("gpt-bench", "gpt-4o-mini", "claude-bench", "text-embedding-3-small")
        ],
    }
)
HEALTH_BODY = b'{"status":"ok"}'


# ---------------------------------------------------------------------------
# HTTP framing.
# ---------------------------------------------------------------------------

JSON_CT = b"application/json"
SSE_CT = b"text/event-stream; charset=utf-8"
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            413: b"Payload Too Large", 429: b"Too Many Requests",
            500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable",
            529: b"Overloaded"}


def _head(status: int, ctype: bytes, length: int | None, keep_alive: bool,
          chunked: bool = False, extra: bytes = b"") -> bytes:
    """Response head. `length` None and not `chunked`: the body ends at close."""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"OK")),
             b"content-type: " + ctype + b"\r\n", b"x-request-id: fake\r\n", extra]
    if ctype is SSE_CT:
        lines.append(b"cache-control: no-cache\r\n")
    if chunked:
        lines.append(b"transfer-encoding: chunked\r\n")
    elif length is not None:
        lines.append(b"content-length: %d\r\n" % length)
    lines.append(b"connection: keep-alive\r\n\r\n" if keep_alive else b"connection: close\r\n\r\n")
    return b"".join(lines)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _error_body(message: str, etype: str = "invalid_request_error") -> bytes:
    return _dumps({"error": {"message": message, "type": etype, "param": None, "code": None}})


class Memo:
    """Per-second memo of rendered bodies; cleared when the second changes."""

    def __init__(self) -> None:
        self.second = 0
        self.items: dict[tuple, object] = {}

    def now(self) -> int:
        sec = int(time.time())
        if sec != self.second:
            self.second = sec
            self.items.clear()
        return sec


@dataclass(slots=True)
class Request:
    method: bytes
    path: bytes
    headers: dict[bytes, bytes]
    body: bytes
    keep_alive: bool
    http11: bool


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.connections = 0


class FakeUpstream(asyncio.Protocol):
    __slots__ = ("app", "transport", "parser", "_url", "_headers", "_body", "_hname",
                 "_queue", "_busy", "_closed")

    def __init__(self, app: App) -> None:
        self.app = app
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._hname = b""
        self._queue: deque[Request] = deque()
        self._busy = False
        self._closed = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.app.stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._write_close(400, _error_body("upgrade not supported"))
        except httptools.HttpParserError:
            self._write_close(400, _error_body("malformed HTTP request"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        p = self.parser
        req = Request(p.get_method(), self._url.split(b"?", 1)[0], self._headers,
                      b"".join(self._body), p.should_keep_alive(), p.get_http_version() == "1.1")
        if self._busy:
            self._queue.append(req)
        else:
            self._handle(req)

    # request handling
    def _write_close(self, status: int, body: bytes) -> None:
        if self.transport is not None and not self._closed:
            self.transport.write(_head(status, JSON_CT, len(body), False) + body)
            self.transport.close()
            self._closed = True

    def _handle(self, req: Request) -> None:
        while True:
            app = self.app
            app.stats.requests += 1
            job = app.respond(req)
            if isinstance(job, bytes):
                if self._closed:
                    return
                self.transport.write(job)  # type: ignore[union-attr]
                if not req.keep_alive:
                    self.transport.close()  # type: ignore[union-attr]
                    self._closed = True
                    return
            else:
                self._busy = True
                app.spawn(self._run_async(req, job))
                return
            if not self._queue:
                return
            req = self._queue.popleft()

    async def _run_async(self, req: Request, job: AsyncJob) -> None:
        try:
            await job.run(self, req)
        finally:
            self._busy = False
        if self._closed:
            return
        if not req.keep_alive:
            self.transport.close()  # type: ignore[union-attr]
            self._closed = True
        elif self._queue:
            self._handle(self._queue.popleft())

    def write(self, data: bytes) -> bool:
        if self._closed:
            return False
        self.transport.write(data)  # type: ignore[union-attr]
        return True

    def abort(self) -> None:
        """Drop the connection at once (the `-x` fault): no terminating chunk."""
        if not self._closed:
            self._closed = True
            self._queue.clear()
            self.transport.abort()  # type: ignore[union-attr]


@dataclass(slots=True)
class AsyncJob:
    """A response that needs time: a head delay and/or paced events."""

    head: bytes
    events: list[tuple[bytes, bool]] | None  # None: `body` is one non-stream payload
    body: bytes
    delay_s: float
    interval_s: float
    chunked: bool
    stamped: bool
    cut: bool = False   # abort the connection after what `events`/`body` hold

    async def run(self, conn: FakeUpstream, req: Request) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.events is None:
            conn.write(self.head + self.body)
            if self.cut:
                await asyncio.sleep(0)  # let the bytes go out first
                conn.abort()
            return
        groups: list[list[bytes]] = [[]]
        seen_delta = False
        for ev, is_delta in self.events:
            if is_delta and seen_delta:
                groups.append([])
            seen_delta = seen_delta or is_delta
            groups[-1].append(ev)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        first = True
        for k, group in enumerate(groups):
            if k:
                wait = t0 + k * self.interval_s - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            parts = [self.head] if first else []
            first = False
            for ev in group:
                if self.stamped:
                    ev = ev.replace(STAMP_PLACEHOLDER, b"%d" % time.monotonic_ns())
                parts.append(_chunk(ev) if self.chunked else ev)
            if not conn.write(b"".join(parts)):
                return
        if self.cut:
            await asyncio.sleep(0)
            conn.abort()
        elif self.chunked:
            conn.write(b"0\r\n\r\n")


class App:
    """Routing and memoised rendering; one per process."""

    def __init__(self, defaults: Defaults) -> None:
        self.defaults = defaults
        self.memo = Memo()
        self.stats = Stats()
        self._seq = 0
        self._tasks: set[asyncio.Task] = set()
        self._pid = os.getpid() % 100000

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _next_id(self) -> bytes:
        self._seq += 1
        # "fake" + pid + counter, exactly ID_WIDTH characters.
        return b"fake%05d%015d" % (self._pid, self._seq)

    def respond(self, req: Request) -> bytes | AsyncJob:
        path, method = req.path, req.method
        ka = req.keep_alive
        if path in (b"/health", b"/v1/health", b"/healthz"):
            return _head(200, JSON_CT, len(HEALTH_BODY), ka) + HEALTH_BODY
        if path == b"/v1/models" and method == b"GET":
            return _head(200, JSON_CT, len(MODELS_BODY), ka) + MODELS_BODY
        if path not in (b"/v1/chat/completions", b"/v1/messages", b"/v1/responses",
                        b"/v1/embeddings", b"/chat/completions", b"/messages",
                        b"/responses", b"/embeddings"):
            body = _error_body(f"no route for {path.decode(errors='replace')}")
            return _head(404, JSON_CT, len(body), ka) + body
        if method != b"POST":
            body = _error_body("use POST")
            return _head(405, JSON_CT, len(body), ka) + body
        if len(req.body) > MAX_BODY_BYTES:
            body = _error_body("body too large")
            return _head(413, JSON_CT, len(body), ka) + body
        try:
            payload = orjson.loads(req.body)
            if not isinstance(payload, dict):
                raise ValueError("body must be a JSON object")
        except (orjson.JSONDecodeError, ValueError) as exc:
            body = _error_body(f"invalid JSON body: {exc}")
            return _head(400, JSON_CT, len(body), ka) + body
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            model = "fake-model"
        route = path.rsplit(b"/", 1)[1]
        if route == b"embeddings":
            return self._embeddings(payload, model, ka)
        plan = plan_for(model, req.headers, self.defaults)
        stream = payload.get("stream") is True
        if plan.error:
            return self._error(route, plan.error, ka)
        if plan.cut >= 0:
            return self._cut(route, model, plan, stream, payload, req)
        if not stream:
            body = self._nonstream(route, model)
            body = body.replace(ID_PLACEHOLDER, self._next_id())
            if plan.delay_ms:
                head = _head(200, JSON_CT, len(body), ka)
                return AsyncJob(head, None, body, plan.delay_ms / 1000, 0.0, False, False)
            return _head(200, JSON_CT, len(body), ka) + body
        opts = payload.get("stream_options")
        include_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        # HTTP/1.0: raw SSE body, then close. HTTP/1.1: chunked, keep-alive as asked.
        chunked = req.http11
        if not chunked:
            req.keep_alive = ka = False
        stamped = plan.interval_ms > 0
        if not stamped and not plan.delay_ms:
            wire = self._stream_wire(route, model, plan.chunks, include_usage, chunked, ka)
            return wire.replace(ID_PLACEHOLDER, self._next_id())
        rid = self._next_id()
        events = [(ev.replace(ID_PLACEHOLDER, rid), d)
                  for ev, d in self._events(route, model, plan.chunks, include_usage, stamped)]
        head = _head(200, SSE_CT, None, ka, chunked)
        return AsyncJob(head, events, b"", plan.delay_ms / 1000, plan.interval_ms / 1000,
                        chunked, stamped)

    def _error(self, route: bytes, status: int, ka: bool) -> bytes:
        """The `-e` fault: the provider's error answer, in the route's format."""
        if route == b"messages":
            etype = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
            body = _dumps({"type": "error", "error": {"type": etype,
                                                      "message": f"fake fault {status}"}})
        else:
            body = _error_body(f"fake fault {status}", "rate_limit_exceeded" if status == 429
                               else "server_error")
        extra = b"retry-after: 1\r\n" if status in (429, 503) else b""
        return _head(status, JSON_CT, len(body), ka, extra=extra) + body

    def _cut(self, route: bytes, model: str, plan: Plan, stream: bool, payload: dict,
             req: Request) -> AsyncJob:
        """The `-x` fault: the head and part of the answer, then the connection drops."""
        ka = req.keep_alive
        if not stream:
            body = self._nonstream(route, model).replace(ID_PLACEHOLDER, self._next_id())
            head = _head(200, JSON_CT, len(body), ka)
            return AsyncJob(head, None, body[:len(body) // 2], plan.delay_ms / 1000, 0.0,
                            False, False, cut=True)
        chunked = req.http11
        stamped = plan.interval_ms > 0
        rid = self._next_id()
        events, deltas = [], 0
        for ev, d in self._events(route, model, plan.chunks, False, stamped):
            if d:
                if deltas >= plan.cut:
                    break
                deltas += 1
            events.append((ev.replace(ID_PLACEHOLDER, rid), d))
        head = _head(200, SSE_CT, None, ka, chunked)
        return AsyncJob(head, events, b"", plan.delay_ms / 1000, plan.interval_ms / 1000,
                        chunked, stamped, cut=True)

    def _nonstream(self, route: bytes, model: str) -> bytes:
        sec = self.memo.now()
        key = ("ns", route, model)
        body = self.memo.items.get(key)
        if body is None:
            if route == b"messages":
                body = messages_body(model)
            elif route == b"responses":
                body = responses_body(model, sec)
            else:
                body = chat_body(model, sec)
            self.memo.items[key] = body
        return body  # type: ignore[return-value]

    def _events(self, route: bytes, model: str, n: int, include_usage: bool,
                stamped: bool) -> list[tuple[bytes, bool]]:
        sec = self.memo.now()
        key = ("ev", route, model, n, include_usage, stamped)
        events = self.memo.items.get(key)
        if events is None:
            if route == b"messages":
                events = messages_stream(model, n, stamped)
            elif route == b"responses":
                events = responses_stream(model, sec, n, stamped)
            else:
                events = chat_stream(model, sec, n, include_usage, stamped)
            self.memo.items[key] = events
        return events  # type: ignore[return-value]

    def _stream_wire(self, route: bytes, model: str, n: int, include_usage: bool,
                     chunked: bool, ka: bool) -> bytes:
        key = ("wire", route, model, n, include_usage, chunked, ka)
        self.memo.now()
        wire = self.memo.items.get(key)
        if wire is None:
            events = self._events(route, model, n, include_usage, False)
            if chunked:
                body = b"".join(_chunk(ev) for ev, _ in events) + b"0\r\n\r\n"
                wire = _head(200, SSE_CT, None, ka, True) + body
            else:
                body = b"".join(ev for ev, _ in events)
                wire = _head(200, SSE_CT, None, False) + body
            self.memo.items[key] = wire
        return wire  # type: ignore[return-value]

    def _embeddings(self, payload: dict, model: str, ka: bool) -> bytes:
        inp = payload.get("input")
        count = len(inp) if isinstance(inp, list) and inp and not isinstance(inp[0], int) else 1
        dim = payload.get("dimensions")
        if not isinstance(dim, int) or not 0 < dim <= EMBEDDING_DIM_MAX:
            dim = EMBEDDING_DIM_DEFAULT
        self.memo.now()
        key = ("emb", model, count, dim)
        body = self.memo.items.get(key)
        if body is None:
            body = embeddings_body(model, count, dim)
            self.memo.items[key] = body
        return _head(200, JSON_CT, len(body), ka) + body  # type: ignore[operator]


async def serve(host: str, port: int, defaults: Defaults, ready_msg: bool = True) -> None:
    loop = asyncio.get_running_loop()
    app = App(defaults)
    server = await loop.create_server(lambda: FakeUpstream(app), host, port, backlog=1024,
                                      reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready_msg:
        bound = server.sockets[0].getsockname()
        print(f"fake upstream listening on http://{bound[0]}:{bound[1]}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    env = os.environ
    ap = argparse.ArgumentParser(prog="python -m bench.fake_upstream", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=int(env.get("FAKE_PORT", DEFAULT_PORT)))
    ap.add_argument("--chunks", type=int, default=int(env.get("FAKE_CHUNKS", DEFAULT_CHUNKS)),
                    help="content deltas per stream (default 20)")
    ap.add_argument("--interval-ms", type=float,
                    default=float(env.get("FAKE_CHUNK_INTERVAL_MS",
                                          env.get("FAKE_CHUNK_DELAY_MS", 0))),
                    help="gap between deltas; 0 sends a stream in one write (default 0)")
    ap.add_argument("--delay-ms", type=float, default=float(env.get("FAKE_DELAY_MS", 0)),
                    help="fixed wait before every response head (default 0)")
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = ap.parse_args(argv)
    defaults = Defaults(args.chunks, args.interval_ms, args.delay_ms)
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            print("uvloop not installed; using asyncio", file=sys.stderr)
        else:
            uvloop.run(serve(LOOPBACK, args.port, defaults))
            return 0
    asyncio.run(serve(LOOPBACK, args.port, defaults))
    return 0


if __name__ == "__main__":
    sys.exit(main())
