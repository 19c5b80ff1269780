"""ProxyExchange on its own: built through its constructor from a fake client side
(a Call over a recording connection), a fake pool whose provider connections the
test drives by hand, the real health board, and a fake clock. Each test plays the
provider's side event by event and checks what the client got and what the record
says."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson

from protocols.ir import FORMAT_ANTHROPIC_MESSAGES, FORMAT_OPENAI_CHAT
from protocols.translate import Translation
from proxy.call import Call
from proxy.config import ProviderConfig, RoutingConfig
from proxy.errors import GatewayError
from proxy.exchange import Attempt, ProxyExchange, Upstreams
from proxy.health import HealthBoard
from proxy.limits import ConcurrencyLimit
from proxy.provider import Provider
from proxy.upstream import UpstreamError
from proxy.wire import Request

CHAT_REPLY = {"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-x",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                           "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 7, "completion_tokens": 3}}


class FakeLoop:
    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Any]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, cb: Any) -> Any:
        entry = (self.now + delay, cb)
        self.timers.append(entry)
        return SimpleNamespace(cancel=lambda: self.timers.remove(entry)
                               if entry in self.timers else None)

    def fire_due(self) -> None:
        for when, cb in sorted(t for t in self.timers if t[0] <= self.now):
            self.timers.remove((when, cb))
            cb()


class FakeConn:
    """The client connection, recording what the exchange writes."""

    client_addr = "127.0.0.1:1"

    def __init__(self) -> None:
        self.closed = False
        self.streaming = False
        self.write_paused = False
        self.flow: Any = None
        self.task: Any = None
        self.responses: list[tuple[int, bytes]] = []
        self.stream: list[bytes] = []
        self.ended = False

    def respond(self, status, body, headers=None, content_type=b"application/json"):
        self.responses.append((status, body))

    def start_stream(self, status, headers, *, hold=False):
        self.streaming = True

    def flush_head(self) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.stream.append(data)

    def end_stream(self, last: bytes = b"") -> None:
        self.stream.append(last)
        self.ended = True

    def abort(self) -> None:
        self.closed = True


class FakeUpstreamConn:
    """A provider connection the test plays: it records what was sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.sink: Any = None
        self.abandoned = False
        self.paused = False

    def send_attempt(self, att, sink, *, first_byte_s, idle_s):
        self.sent.append(att.data)
        self.sink = sink

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def abandon(self) -> None:
        self.abandoned = True


class FakePool:
    """Every target has an idle connection ready: attempts go out at once."""

    def __init__(self) -> None:
        self.conns: list[FakeUpstreamConn] = []

    @staticmethod
    def key_for(provider: Provider) -> tuple:
        return (provider.name,)

    def take_idle(self, key: tuple) -> FakeUpstreamConn:
        conn = FakeUpstreamConn()
        self.conns.append(conn)
        return conn


def provider(name: str) -> Provider:
    return Provider(ProviderConfig(name=name, kind="openai", base_url=f"http://{name}:80/v1"))


def make(client_format: str = FORMAT_OPENAI_CHAT, *, stream: bool = False,
         targets: tuple[str, ...] = ("a",), limits: dict | None = None,
         routing: RoutingConfig | None = None):
    loop = FakeLoop()
    conn = FakeConn()
    records: list = []
    req = Request("POST", b"/v1/chat/completions", [], "1.1", True, 0.0)
    req.body = b"{}"
    spawned: list = []

    class NoTaskCall(Call):
        """Every attempt here goes out on a pooled connection at once: a task
        (connect, queue, backoff) would be a bug in the test's setup."""

        def spawn(self, coro: Any) -> Any:
            spawned.append(coro)
            coro.close()

    call = NoTaskCall(req, conn, client_format, client_format, records.append)
    pool = FakePool()
    health = HealthBoard(failure_threshold=3, cooldown_s=30.0, cooldown_max_s=300.0)
    ups = Upstreams(loop, pool, health, limits or {}, routing or RoutingConfig(backoff_s=0.0))

    def build(p: Provider, model: str) -> Attempt:
        tr = Translation(client_format, FORMAT_OPENAI_CHAT, request_id="r1", created=1)
        tr.request({"model": model, "stream": stream,
                    "messages": [{"role": "user", "content": "x"}]} if client_format ==
                   FORMAT_OPENAI_CHAT else {"model": model, "stream": stream, "max_tokens": 5,
                                            "messages": [{"role": "user", "content": "x"}]})
        return Attempt(p, model, b"/v1/chat/completions", b"", b"{}",
                       tr.stream_filter() if stream else None, tr)

    ex = ProxyExchange(call, ups, [(provider(t), "gpt-x") for t in targets], build,
                       stream=stream)
    return SimpleNamespace(ex=ex, conn=conn, records=records, pool=pool, health=health,
                           loop=loop, spawned=spawned)


def reply(up: FakeUpstreamConn, status: int, body: bytes,
          ctype: bytes = b"application/json") -> None:
    up.sink.on_upstream_head(status, [(b"content-type", ctype)])
    up.sink.on_upstream_body(body)
    up.sink.on_upstream_read_done()
    up.sink.on_upstream_end()


def test_a_whole_reply_reaches_the_client_and_its_usage_the_record() -> None:
    t = make()
    t.ex.start()
    [up] = t.pool.conns
    assert up.sent and up.sent[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    reply(up, 200, orjson.dumps(CHAT_REPLY))
    [(status, body)] = t.conn.responses
    assert status == 200 and orjson.loads(body)["choices"][0]["message"]["content"] == "hi"
    [rec] = t.records
    assert (rec.status, rec.provider, rec.input_tokens, rec.output_tokens, rec.attempts) == (
        200, "a", 7, 3, 1)
    assert t.health.get("a").served == 1


def test_a_retryable_refusal_fails_over_to_the_next_target() -> None:
    t = make(targets=("a", "b"))
    t.ex.start()
    reply(t.pool.conns[0], 503, b'{"error":{"message":"busy"}}')
    assert not t.conn.responses and len(t.pool.conns) == 2
    reply(t.pool.conns[1], 200, orjson.dumps(CHAT_REPLY))
    [rec] = t.records
    assert (rec.status, rec.provider, rec.attempts) == (200, "b", 2)
    assert t.health.get("a").failed == 1


def test_a_refusal_on_the_last_target_is_relayed_in_the_clients_protocol() -> None:
    t = make(FORMAT_ANTHROPIC_MESSAGES, targets=("a",),
             routing=RoutingConfig(max_attempts=1, backoff_s=0.0))
    t.ex.start()
    reply(t.pool.conns[0], 429, b'{"error":{"message":"slow down","type":"rate_limit_exceeded",'
                                b'"code":"rate_limit_exceeded"}}')
    [(status, body)] = t.conn.responses
    obj = orjson.loads(body)
    assert status == 429 and obj["type"] == "error" and obj["error"]["type"] == "rate_limit_error"
    assert t.records[0].error_kind == "upstream_error"


def test_a_stream_is_pumped_through_the_filter_and_ends_cleanly() -> None:
    t = make(stream=True)
    t.ex.start()
    up = t.pool.conns[0]
    up.sink.on_upstream_head(200, [(b"content-type", b"text/event-stream")])
    chunk = (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-x",'
             b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n')
    up.sink.on_upstream_body(chunk)
    up.sink.on_upstream_read_done()
    assert t.conn.stream == [chunk] and t.conn.flow is t.ex
    usage = (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-x",'
             b'"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}\n\n')
    up.sink.on_upstream_body(usage + b"data: [DONE]\n\n")
    up.sink.on_upstream_read_done()
    up.sink.on_upstream_end()
    assert t.conn.ended and t.conn.flow is None
    [rec] = t.records
    assert (rec.status, rec.error_kind, rec.input_tokens, rec.output_tokens) == (200, None, 4, 2)


def test_a_provider_cut_mid_stream_ends_with_an_error_event() -> None:
    t = make(stream=True)
    t.ex.start()
    up = t.pool.conns[0]
    up.sink.on_upstream_head(200, [(b"content-type", b"text/event-stream")])
    up.sink.on_upstream_body(b'data: {"id":"c","object":"chat.completion.chunk","created":1,'
                             b'"model":"m","choices":[{"index":0,"delta":{"content":"h"}}]}\n\n')
    up.sink.on_upstream_read_done()
    up.sink.on_upstream_error(UpstreamError("cut", "provider closed the connection"))
    assert t.conn.ended and b'"error"' in t.conn.stream[-1]
    assert t.records[0].error_kind == "stream_cut" and t.records[0].status == 200


def test_the_client_leaving_abandons_the_provider_and_records_499() -> None:
    t = make(stream=True)
    t.ex.start()
    up = t.pool.conns[0]
    up.sink.on_upstream_head(200, [(b"content-type", b"text/event-stream")])
    t.ex.client_gone()
    assert up.abandoned
    assert (t.records[0].status, t.records[0].error_kind) == (499, "cancelled")


def test_a_slow_client_pauses_the_provider() -> None:
    t = make(stream=True)
    t.ex.start()
    up = t.pool.conns[0]
    t.ex.pause_writing()
    assert up.paused
    t.ex.resume_writing()
    assert not up.paused


def test_our_own_connection_cap_is_a_503_without_a_health_penalty() -> None:
    t = make(targets=("a",), routing=RoutingConfig(max_attempts=1, backoff_s=0.0))
    t.ex.start()
    t.pool.conns[0].sink.on_upstream_error(UpstreamError("pool_full", "all 1 connections busy"))
    [(status, body)] = t.conn.responses
    assert status == 503 and b"all 1 connections busy" in body
    assert t.records[0].error_kind == "overloaded"
    assert t.health.get("a").failed == 0


def test_a_target_that_cannot_express_the_request_is_skipped() -> None:
    t = make(targets=("a", "b"))
    calls = []
    build = t.ex.build

    def picky(p: Provider, model: str) -> Attempt:
        calls.append(p.name)
        if p.name == "a":
            raise GatewayError(400, "a cannot do this", kind="bad_request")
        return build(p, model)

    t.ex.build = picky
    t.ex.start()
    assert calls == ["a", "b"] and len(t.pool.conns) == 1
    reply(t.pool.conns[0], 200, orjson.dumps(CHAT_REPLY))
    assert t.records[0].provider == "b"


def test_a_full_concurrency_limit_without_a_queue_is_a_503() -> None:
    limit = ConcurrencyLimit(1, 0, 1.0)
    assert limit.try_acquire()
    t = make(targets=("a",), limits={"a": limit},
             routing=RoutingConfig(max_attempts=1, backoff_s=0.0))
    t.ex.start()
    [(status, _)] = t.conn.responses
    assert status == 503 and t.records[0].error_kind == "overloaded" and limit.rejected == 1


def test_the_whole_request_timeout_ends_the_exchange() -> None:
    t = make(targets=("a",), routing=RoutingConfig(max_attempts=1, backoff_s=0.0))
    p = t.ex.targets[0][0]
    object.__setattr__(p.config, "request_timeout_s", 5.0)
    t.ex.start()
    up = t.pool.conns[0]
    t.loop.now += 5.0
    t.loop.fire_due()
    assert up.abandoned
    [(status, _)] = t.conn.responses
    assert status == 504 and t.records[0].error_kind == "upstream_timeout"


def test_shutdown_ends_a_running_stream_with_its_error_event() -> None:
    t = make(stream=True)
    t.ex.start()
    up = t.pool.conns[0]
    up.sink.on_upstream_head(200, [(b"content-type", b"text/event-stream")])
    t.ex.shutdown()
    assert up.abandoned and t.conn.ended and b"shutting down" in t.conn.stream[-1]
    assert t.records[0].error_kind == "shutdown"
