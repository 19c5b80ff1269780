"""One proxied request, in explicit phases, with failover before the first byte.

``pick`` a target (route order, weights, health) -> ``build`` its attempt (wire
format, body, headers) -> ``acquire`` a concurrency slot and an upstream
connection -> ``send`` -> ``on_upstream_head`` -> ``on_upstream_body``* (pumped
to the client through a body *filter*) -> ``on_upstream_end`` -> ``record``
one ledger row.

Failover: until the first byte reaches the client, a connect failure, a
timeout, or a 429/500/502/503/504/529 answer moves on to the next target (a
target already tried is retried after a jittered exponential backoff), within
``routing.max_attempts`` and ``routing.deadline``.  Other 4xx answers are the
client's to see and are relayed at once.  After the first byte there is no
silent switch: the client gets its protocol's error event.

The exchange is driven by callbacks from both connections, not by a task: the
only awaits are opening a provider connection, waiting for a concurrency slot
and backing off.  A pooled, keep-alive request is a handful of calls.

Backpressure: the client connection calls ``pause_writing`` above its write
high-water mark and the exchange pauses reading from the provider until
``resume_writing``, so memory per stream stays bounded.

An exchange is built from what it uses: the ``Call`` it answers (client
connection, request record, error format), the ``Upstreams`` of the running
configuration (pool, health board, concurrency limits, routing settings, the
loop as clock), the targets in failover order and a ``build`` function that
makes each target's ``Attempt``.  Body filters and reply mappers come from
``protocols/``: ``Translation.stream_filter()`` (the interface of
``protocols.stream_filter.StreamFilter``: ``feed``, ``finish``, ``error_frame``,
``heartbeat``, ``at_boundary``, and the facts ``usage`` as ``ir.Usage``,
``model``, ``complete``, ``ended``, ``error_relayed``) and ``Translation`` itself for whole
replies (``response``, ``error``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from protocols.errors import ProtocolError

from .accounts.meter import LIMIT_HEADER_NAMES
from .call import Call
from .errors import INTERNAL, UPSTREAM, GatewayError
from .headers import NOT_RELAYED
from .health import HealthBoard, parse_retry_after
from .limits import ConcurrencyLimit
from .response_store import CompletedCatcher
from .upstream import MAX_BUFFERED_RESPONSE_BYTES, UpstreamError, UpstreamPool
from .wire import build_request_head

if TYPE_CHECKING:
    from .config import RoutingConfig
    from .provider import Provider

log = logging.getLogger("tokenway.exchange")

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # nginx and similar buffers in front of us must not hold frames back.
    (b"x-accel-buffering", b"no"),
]


# Provider answers that move on to the next target (before the first byte).
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 529})

_HEAD, _STREAM, _BUFFER, _DONE = range(4)
# What a response to a request charged on every kind of limit does not relay.
NOT_RELAYED_OR_LIMITS = NOT_RELAYED | LIMIT_HEADER_NAMES

# A keep-alive that is due but cannot go out yet (half an event held, or the
# client's buffer is full) is retried after this long.
HEARTBEAT_RETRY_S = 0.25


class Attempt:
    """Everything needed to send the request to one target.

    ``reply`` maps the provider's answer for the client (a ``Translation``, or
    another object with ``response``/``error``/``usage``/``model``); ``filter``
    is the body filter of a streamed answer; ``metered`` is False for calls
    that are not inference (token counting), whose usage is not recorded.
    """

    __slots__ = ("provider", "upstream_model", "path", "headers", "payload", "filter",
                 "reply", "metered", "data")

    def __init__(self, provider: Provider, upstream_model: str, path: bytes,
                 headers: bytes, payload: bytes, body_filter: Any, reply: Any,
                 *, metered: bool = True) -> None:
        self.provider = provider
        self.upstream_model = upstream_model
        self.path = path
        self.headers = headers
        self.payload = payload
        self.filter = body_filter
        self.reply = reply
        self.metered = metered
        # The HTTP/1.1 request; an HTTP/2-only provider is sent the parts above
        # instead (proxy/upstream_h2.request_headers), without this copy.
        self.data = b"" if provider.http2 == "on" else build_request_head(
            b"POST", path, provider.host_header, headers, len(payload)) + payload


class Upstreams:
    """What exchanges use to reach providers, for one configuration: requests
    started under it keep it after a reload."""

    __slots__ = ("loop", "pool", "health", "limits", "routing")

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: UpstreamPool,
                 health: HealthBoard, limits: Mapping[str, ConcurrencyLimit],
                 routing: RoutingConfig) -> None:
        self.loop = loop
        self.pool = pool
        self.health = health
        self.limits = limits
        self.routing = routing


class Refusal:
    """A provider's error answer, kept to relay if no other target does better."""

    __slots__ = ("status", "headers", "body", "att")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                 att: Attempt) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.att = att


class ProxyExchange:
    """Forward one request to the first target that answers, pump the answer back."""

    __slots__ = (
        "call", "ups", "conn", "rec", "targets", "build", "stream", "att", "up", "state",
        "status", "parts", "size", "resp_headers", "bytes_out", "tried", "cursor",
        "deadline", "last_error", "slot", "reused_retry", "tries_per_target", "draining",
        "heartbeat", "last_write", "whole_timer", "counted", "pending", "on_response",
        "catcher",
    )

    def __init__(self, call: Call, ups: Upstreams, targets: list[tuple[Provider, str]],
                 build: Callable[[Provider, str], Attempt], *, stream: bool,
                 on_response: Callable[[dict[str, Any]], None] | None = None) -> None:
        """``on_response`` gets the client's complete Responses object of a
        translated answer (whole or the stream's ``response.completed``)."""
        self.call = call
        self.ups = ups
        self.conn = call.conn
        self.rec = call.rec
        self.targets = targets
        self.build = build
        self.stream = stream
        self.att: Attempt | None = None
        self.up: Any = None
        self.state = _HEAD
        self.status = 0
        self.parts: list[bytes] = []
        self.size = 0
        self.resp_headers: list[tuple[bytes, bytes]] = []
        self.bytes_out = 0
        self.tried = 0
        self.cursor = 0
        self.deadline = ups.loop.time() + ups.routing.deadline_s
        self.last_error: GatewayError | Refusal | None = None
        self.slot: ConcurrencyLimit | None = None
        self.reused_retry = False
        self.tries_per_target: dict[str, int] = {}
        self.draining = False
        self.heartbeat: asyncio.TimerHandle | None = None
        self.last_write = 0.0
        self.whole_timer: asyncio.TimerHandle | None = None
        self.counted = False
        self.pending: list[bytes] = []  # client bytes of the current socket read
        self.on_response = on_response
        self.catcher: CompletedCatcher | None = None

    # -- choosing and starting attempts ------------------------------------------------
    def start(self) -> None:
        """Start the first attempt: at once on a pooled connection, else in a task
        (connect, queue or backoff) that the client connection can cancel."""
        self.conn.flow = self
        self._continue()

    def _continue(self) -> None:
        coro = self._next()
        if coro is not None:
            self.call.spawn(coro)

    def _next(self) -> Any:
        ups = self.ups
        routing = ups.routing
        loop = ups.loop
        while True:
            if self.state == _DONE:
                return None
            now = loop.time()
            if self.tried >= routing.max_attempts or now >= self.deadline:
                return self._give_up()
            choice = self._pick(now)
            if choice is None:
                return self._give_up(all_cooling=True)
            provider, model = choice
            try:
                att = self.build(provider, model)
            except GatewayError as err:
                if self.tried == 0 and len(self.targets) == 1:
                    self._fail(err)
                    return None
                self.last_error = err  # this target cannot express the request: skip it
                self.tried += 1
                continue
            n = self.tries_per_target.get(provider.name, 0)
            self.tries_per_target[provider.name] = n + 1
            self.tried += 1
            self.att = att
            rec = self.rec
            rec.attempts = self.tried
            rec.provider = provider.name
            rec.served_model = model
            ups.health.on_attempt(provider.name)
            delay = 0.0
            if n:
                import random  # first retry only (see GatewayState.targets_for)

                base = min(routing.backoff_max_s, routing.backoff_s * (2 ** (n - 1)))
                delay = base * (0.5 + random.random() / 2)  # jitter: 50-100 %
                delay = min(delay, max(0.0, self.deadline - now))
            limit = ups.limits.get(provider.name)
            if limit is None or limit.try_acquire():
                self.slot = limit
                if not delay:
                    up = ups.pool.take_idle(ups.pool.key_for(provider))
                    if up is not None:
                        self._send(up)
                        return None
                return self._connect_and_send(delay)
            if limit.can_queue():
                return self._wait_slot_and_send(limit, delay)
            limit.rejected += 1
            self.last_error = GatewayError(
                503, f"provider {provider.name} is at its concurrency limit "
                     f"({limit.max}) and its wait queue is full", kind="overloaded",
                source=UPSTREAM, retry_after_s=1)

    def _pick(self, now: float) -> tuple[Provider, str] | None:
        """The next available target in failover order, cycling for retries."""
        health = self.ups.health
        n = len(self.targets)
        for k in range(n):
            i = (self.cursor + k) % n
            provider, model = self.targets[i]
            if health.available(provider.name, now):
                self.cursor = i + 1
                return provider, model
        return None

    async def _wait_slot_and_send(self, limit: ConcurrencyLimit, delay: float) -> None:
        ok = await limit.acquire()
        if self.state == _DONE:
            if ok:
                limit.release()
            return
        if not ok:
            limit.rejected += 1
            assert self.att is not None
            self.last_error = GatewayError(
                503, f"provider {self.att.provider.name} stayed at its concurrency limit for "
                     f"{limit.queue_timeout_s:g} s", kind="overloaded", source=UPSTREAM,
                retry_after_s=1)
            coro = self._next()
            if coro is not None:
                await coro
            return
        self.slot = limit
        await self._connect_and_send(delay)

    async def _connect_and_send(self, delay: float = 0.0, fresh: bool = False) -> None:
        ups = self.ups
        if delay:
            await asyncio.sleep(delay)
            if self.state == _DONE:
                self._release_slot()
                return
        att = self.att
        assert att is not None
        key = ups.pool.key_for(att.provider)
        if not fresh:
            # A connection may have come back to the pool while we waited.
            up = ups.pool.take_idle(key)
            if up is not None:
                self._send(up)
                return
        timeout = min(att.provider.connect_timeout_s, max(0.001, self.deadline - ups.loop.time()))
        try:
            up = await ups.pool.connect(key, timeout, att.provider.config.max_connections)
        except UpstreamError as exc:
            if self.state != _DONE:
                self.on_upstream_error(exc)
            return
        if self.state == _DONE:  # the client left while we were connecting
            up.abandon()
            return
        self._send(up)

    def _send(self, up: Any) -> None:
        self.up = up
        att = self.att
        assert att is not None
        p = att.provider
        loop = self.ups.loop
        first_byte = min(p.first_byte_timeout_s, max(0.001, self.deadline - loop.time()))
        up.send_attempt(att, self, first_byte_s=first_byte, idle_s=p.idle_timeout_s)
        if p.config.request_timeout_s and self.whole_timer is None:
            self.whole_timer = loop.call_later(p.config.request_timeout_s,
                                               self._on_whole_timeout)

    # -- upstream callbacks ----------------------------------------------------------
    def on_upstream_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        relayed = [(b"x-request-id", self.rec.request_id.encode())]
        ctype = b""
        extra = self.call.headers
        skip = NOT_RELAYED
        if extra:
            # What is left of the key's limits replaces the provider's headers of
            # the same names (those speak of the provider account, not this key).
            # All three (a key or user with rpm, tpm and a budget) is the set made
            # once; fewer, a set per response.
            skip = (NOT_RELAYED_OR_LIMITS if len(extra) == len(LIMIT_HEADER_NAMES)
                    else NOT_RELAYED | {k for k, _ in extra})
        for k, v in headers:
            if k == b"content-type":
                ctype = v
            elif k not in skip:
                relayed.append((k, v))
        if extra:
            relayed.extend(extra)
        if status == 200 and self.stream and ctype.startswith(b"text/event-stream"):
            self._settle_health()
            self.rec.first_byte()
            self.state = _STREAM
            att = self.att
            if self.on_response is not None and att is not None \
                    and not getattr(att.reply, "observe", True):
                self.catcher = CompletedCatcher(self.on_response)
            if not self.draining:
                # The head leaves with the first events of this read, or alone
                # at its end (on_upstream_read_done): one write instead of two.
                self.conn.start_stream(200, SSE_HEADERS + relayed, hold=True)
                self._arm_heartbeat()
        else:
            self.state = _BUFFER
            relayed.append((b"content-type", ctype or b"application/json"))
            self.resp_headers = relayed

    def on_upstream_body(self, data: bytes) -> None:
        if self.state == _STREAM:
            # Held until the end of this socket read (on_upstream_read_done): the
            # events that arrived together go through the filter once and leave
            # in one write, not one per HTTP chunk.
            self.pending.append(data)
        elif self.state == _BUFFER:
            self.size += len(data)
            if self.size > MAX_BUFFERED_RESPONSE_BYTES:
                self.up.abandon()
                self.on_upstream_error(UpstreamError(
                    "protocol", f"provider response exceeds {MAX_BUFFERED_RESPONSE_BYTES} bytes"))
                return
            self.parts.append(data)

    def on_upstream_read_done(self) -> None:
        if self.pending:
            self._flush()
        if self.state == _STREAM:
            self.conn.flush_head()

    def _flush(self) -> None:
        pending = self.pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        assert self.att is not None
        try:
            out = self.att.filter.feed(data)
        except ProtocolError as exc:  # an event over the size limit, say
            self.up.abandon()
            self.on_upstream_error(UpstreamError("protocol", exc.message))
            return
        if out and not self.draining:
            self.bytes_out += len(out)
            self.last_write = self.ups.loop.time()
            self.conn.write(out)
            if self.catcher is not None:
                self.catcher.feed(out)

    def on_upstream_end(self) -> None:
        if self.state == _STREAM:
            self._finish_stream()
        elif self.state == _BUFFER:
            self._finish_buffered()

    def on_upstream_error(self, exc: UpstreamError) -> None:
        if self.state == _DONE:
            return
        if exc.kind == "reused_dead" and not self.reused_retry and self.state == _HEAD:
            # The pooled connection was dead before the provider saw anything:
            # resend on a fresh connection, not counted as a failover attempt.
            self.reused_retry = True
            self.call.spawn(self._connect_and_send(fresh=True))
            return
        rec = self.rec
        att = self.att
        assert att is not None
        if self.state == _STREAM:
            # Bytes already reached the client: no silent switch, no fabricated
            # clean end.  The client gets its protocol's own error event.
            self.state = _DONE
            if self.pending:
                self._flush()
            if att.filter.ended:
                # ...unless the provider's last event already went through: only
                # its HTTP framing (the terminating chunk) is missing, and the
                # client's answer is whole.  An error event after [DONE] or
                # message_stop would be read by no client.
                self._finish_stream()
                return
            if not self.draining:
                tail = att.filter.error_frame(f"upstream stream failed: {exc.message}", exc.kind)
                self.bytes_out += len(tail)
                self.conn.end_stream(tail)
                rec.status = 200
            rec.error_kind = "upstream_timeout" if exc.kind == "timeout" else "stream_cut"
            self._record()
            return
        name = att.provider.name
        if exc.kind == "pool_full":
            # Our own cap, not the provider failing: no health penalty.
            self._failover(GatewayError(503, f"provider {name}: {exc.message}",
                                        kind="overloaded", source=UPSTREAM, retry_after_s=1))
            return
        if exc.kind == "timeout":
            err = GatewayError(504, f"provider {name}: {exc.message}",
                               kind="upstream_timeout", source=UPSTREAM)
        elif exc.kind in ("unreachable", "reused_dead"):
            err = GatewayError(502, f"provider {name} unreachable: {exc.message}",
                               kind="upstream_unreachable", source=UPSTREAM)
        else:
            err = GatewayError(502, f"provider {name}: {exc.message}",
                               kind="upstream_error", source=UPSTREAM)
        self.ups.health.on_failure(name, self.ups.loop.time(), err.message)
        self._failover(err)

    def _failover(self, failure: GatewayError | Refusal) -> None:
        """The current attempt failed before any byte reached the client."""
        self.last_error = failure
        att = self.att
        if att is not None:
            log.info("attempt %d on %s failed (%s)", self.tried,
                     att.provider.name,
                     failure.kind if isinstance(failure, GatewayError) else failure.status,
                     extra={"request_id": self.rec.request_id})
        self._release_slot()
        self.up = None
        self.state = _HEAD
        self.status = 0
        self.parts = []
        self.size = 0
        if self.draining:
            self._give_up()
            return
        self._continue()

    def _give_up(self, all_cooling: bool = False) -> None:
        """No target left to try: answer with the last failure."""
        if self.state == _DONE:
            return
        last = self.last_error
        if type(last) is Refusal:
            self._relay_error(last.status, last.headers, last.body, last.att)
            return
        if last is None or all_cooling and not isinstance(last, GatewayError):
            ups = self.ups
            now = ups.loop.time()
            wait = min((ups.health.get(p.name).ready_at(now) - now for p, _ in self.targets),
                       default=1.0)
            last = GatewayError(503, "every provider for this model is cooling down after "
                                     "failures; retry later", kind="upstream_unavailable",
                                source=UPSTREAM, retry_after_s=max(1.0, wait))
        assert isinstance(last, GatewayError)
        self._fail(last)

    # -- client callbacks ---------------------------------------------------------------
    def pause_writing(self) -> None:
        if self.up is not None and not self.draining:
            self.up.pause_reading()

    def resume_writing(self) -> None:
        if self.up is not None:
            self.up.resume_reading()

    def client_gone(self) -> None:
        if self.state == _DONE or self.draining:
            return
        rec = self.rec
        rec.status = 499
        rec.error_kind = "cancelled"
        self._stop_heartbeat()
        if self.ups.routing.on_client_disconnect == "drain" and self.up is not None:
            # Read the provider's answer to its end, for its real usage.
            self.draining = True
            self.up.resume_reading()
            return
        self.state = _DONE
        if self.up is not None:
            self.up.abandon()  # stop the provider spending tokens on nobody
        if self.att is not None:
            self.ups.health.on_released(self.att.provider.name)
        self._record()

    def shutdown(self) -> None:
        """The server stops with this request still running: a stream ends with
        its protocol's error event, a request not yet answered gets a 503; the
        record says ``shutdown``, not a client that left."""
        if self.state == _DONE:
            return
        if self.up is not None:
            self.up.abandon()
            self.up = None
        rec = self.rec
        if self.draining:  # the client had left already: keep its 499
            self.state = _DONE
            self._record()
            return
        if self.state == _STREAM:
            self.state = _DONE
            if self.pending:
                self._flush()
            assert self.att is not None
            tail = self.att.filter.error_frame("the gateway is shutting down", "shutdown")
            self.bytes_out += len(tail)
            self.conn.end_stream(tail)
            rec.status = 200
            rec.error_kind = "shutdown"
            self._record()
            return
        self._fail(GatewayError(503, "the gateway is shutting down; retry the request",
                                kind="shutdown", source=INTERNAL, retry_after_s=1))

    # -- endings --------------------------------------------------------------------------
    def _finish_stream(self) -> None:
        self.state = _DONE
        if self.pending:
            self._flush()
        assert self.att is not None
        f = self.att.filter
        tail = f.finish()
        rec = self.rec
        if not f.complete:
            if f.error_relayed:
                # The provider's own error event already reached the client.
                kind = "upstream_error"
            else:
                tail += f.error_frame("upstream stream ended without its terminal event",
                                      "stream_cut")
                kind = "stream_cut"
            if not self.draining:
                rec.error_kind = kind
        if not self.draining:
            self.bytes_out += len(tail)
            self.conn.end_stream(tail)
            rec.status = 200
            if self.catcher is not None and tail:
                self.catcher.feed(tail)
        self._record()

    def _finish_buffered(self) -> None:
        parts = self.parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        status = self.status
        att = self.att
        assert att is not None
        ups = self.ups
        if status != 200:
            if status in RETRYABLE_STATUS:
                ra = None
                for k, v in self.resp_headers:
                    if k == b"retry-after-ms":
                        try:
                            ra = float(v) / 1000.0
                        except ValueError:
                            pass
                    elif k == b"retry-after" and ra is None:
                        ra = parse_retry_after(v)
                ups.health.on_failure(att.provider.name, ups.loop.time(), f"HTTP {status}", ra)
                self._failover(Refusal(status, self.resp_headers, body, att))
                return
            self._settle_health()  # the provider answered; the request was refused
            self._relay_error(status, self.resp_headers, body, att)
            return
        self._settle_health()
        self.state = _DONE
        rec = self.rec
        rec.first_byte()
        reply = att.reply
        ctype = _ctype(self.resp_headers)
        try:
            obj = orjson.loads(body)
            out = reply.response(obj)
        except (orjson.JSONDecodeError, ProtocolError) as exc:
            self._fail(GatewayError(502, f"provider {att.provider.name} sent an invalid "
                                         f"response: {exc}", kind="upstream_protocol",
                                    source=UPSTREAM))
            return
        if out is not obj:
            body = orjson.dumps(out)
            ctype = b"application/json"
            if self.on_response is not None:
                self.on_response(out)
        if att.metered:
            rec.set_usage(reply.usage)
            served = reply.model
            if served:
                rec.served_model = served
        rec.status = 200
        self.bytes_out = len(body)
        if not self.draining:
            self.conn.respond(200, body, _without_ctype(self.resp_headers), content_type=ctype)
        self._record()

    def _relay_error(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                     att: Attempt) -> None:
        """Relay a provider's error answer with its status, in the client's format."""
        self.state = _DONE
        rec = self.rec
        rec.error_kind = "upstream_error"
        rec.provider = att.provider.name
        status, body = att.reply.error(status, body)
        rec.status = status
        self.bytes_out = len(body)
        if not self.draining:
            self.conn.respond(status, body, _without_ctype(headers))
        self._record()

    def _fail(self, err: GatewayError) -> None:
        self.state = _DONE
        self._release_slot()
        self._stop_heartbeat()
        if self.conn.flow is self:
            self.conn.flow = None
        if self.draining:
            self.call.finish()
            return
        self.call.send_error(err)

    def _record(self) -> None:
        self._release_slot()
        self._stop_heartbeat()
        if self.whole_timer is not None:
            self.whole_timer.cancel()
            self.whole_timer = None
        if self.conn.flow is self:
            self.conn.flow = None
        rec = self.rec
        rec.bytes_out = self.bytes_out
        att = self.att
        if self.stream and att is not None and self.state == _DONE and att.metered:
            f = att.filter
            rec.set_usage(f.usage)
            served = f.model
            if served:
                rec.served_model = served
        self.call.finish()

    def _settle_health(self) -> None:
        if not self.counted:
            self.counted = True
            assert self.att is not None
            self.ups.health.on_success(self.att.provider.name)

    def _release_slot(self) -> None:
        if self.slot is not None:
            self.slot.release()
            self.slot = None

    # -- timers ------------------------------------------------------------------------------
    def _on_whole_timeout(self) -> None:
        self.whole_timer = None
        if self.state == _DONE:
            return
        assert self.att is not None
        limit = self.att.provider.config.request_timeout_s
        if self.up is not None:
            self.up.abandon()
        self.on_upstream_error(UpstreamError(
            "timeout", f"request exceeded the provider's request_timeout of {limit:g} s"))

    def _arm_heartbeat(self) -> None:
        interval = self.ups.routing.heartbeat_s
        if interval > 0:
            loop = self.ups.loop
            self.last_write = loop.time()
            self.heartbeat = loop.call_later(interval, self._on_heartbeat)

    def _on_heartbeat(self) -> None:
        """Keep a silent stream alive (thinking models): at event boundaries only."""
        self.heartbeat = None
        if self.state != _STREAM or self.draining:
            return
        loop = self.ups.loop
        interval = self.ups.routing.heartbeat_s
        now = loop.time()
        due = heartbeat_due(self.last_write, now, interval)
        assert self.att is not None
        f = self.att.filter
        if due <= 0:
            if f.at_boundary and not self.conn.write_paused:
                beat = f.heartbeat()
                if beat:
                    self.conn.write(beat)
                    self.bytes_out += len(beat)
                    self.last_write = now
                due = interval
            else:
                # Mid-event or the client is not reading: look again shortly.
                due = min(interval, HEARTBEAT_RETRY_S)
        self.heartbeat = loop.call_later(due, self._on_heartbeat)

    def _stop_heartbeat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.cancel()
            self.heartbeat = None


def heartbeat_due(last_write: float, now: float, interval: float) -> float:
    """Seconds until the next keep-alive is due (<= 0: due now)."""
    return last_write + interval - now


def _ctype(headers: list[tuple[bytes, bytes]]) -> bytes:
    for k, v in headers:
        if k == b"content-type":
            return v
    return b"application/json"


def _without_ctype(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``respond`` writes the content-type itself."""
    return [(k, v) for k, v in headers if k != b"content-type"]
