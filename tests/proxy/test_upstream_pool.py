"""The provider connection pool on real sockets: keep-alive reuse, the per-peer
connection cap with its bounded, ordered wait, and the accounting of open
connections through every way a connection ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from proxy.aio import new_event_loop
from proxy.upstream import UpstreamError, UpstreamPool


class Sink:
    """Collects what a connection reports about one response."""

    def __init__(self) -> None:
        self.status = 0
        self.body = b""
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: UpstreamError | None = None

    def on_upstream_head(self, status: int, headers: list) -> None:
        self.status = status

    def on_upstream_body(self, data: bytes) -> None:
        self.body += data

    def on_upstream_read_done(self) -> None:
        pass

    def on_upstream_end(self) -> None:
        self.done.set_result(None)

    def on_upstream_error(self, exc: UpstreamError) -> None:
        self.error = exc
        if not self.done.done():
            self.done.set_result(None)


async def serve(handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()  # the pool closed its side: close ours, to the end
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


REQUEST = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"


def run(coro_fn: Callable[[], Any], loop_kind: str) -> Any:
    loop = new_event_loop(loop_kind)
    try:
        return loop.run_until_complete(coro_fn())
    finally:
        # The test closed the pool: the server's handlers see EOF and close their side.
        # Let them finish, so the loop closes with no transport left open.
        pending = asyncio.all_tasks(loop)
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=5))
        loop.close()


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    return request.param


def test_a_returned_connection_is_reused(loop_kind: str) -> None:
    async def main() -> None:
        server, port = await serve(answer_ok)
        pool = UpstreamPool(asyncio.get_running_loop())
        key = ("http", "127.0.0.1", port, None, True, "off")
        conn = await pool.connect(key, 5.0)
        sink = Sink()
        conn.send(REQUEST, sink, first_byte_s=5, idle_s=5)
        await sink.done
        assert (sink.status, sink.body) == (200, b"ok")
        assert pool.stats() == {"open": 1, "idle": 1, "waiting": 0}
        again = pool.take_idle(key)
        assert again is conn and again.reused
        pool.close()
        server.close()

    run(main, loop_kind)


def test_the_cap_makes_requests_wait_for_a_returned_connection(loop_kind: str) -> None:
    async def main() -> None:
        server, port = await serve(answer_ok)
        pool = UpstreamPool(asyncio.get_running_loop())
        key = ("http", "127.0.0.1", port, None, True, "off")
        first = await pool.connect(key, 5.0, max_connections=1)
        waiting = asyncio.ensure_future(pool.connect(key, 5.0, max_connections=1))
        await asyncio.sleep(0)
        assert not waiting.done() and pool.stats()["waiting"] == 1
        sink = Sink()
        first.send(REQUEST, sink, first_byte_s=5, idle_s=5)
        await sink.done  # the response ends: `first` goes back to the pool...
        second = await waiting
        assert second is first  # ...and the waiter takes it, no new connection
        assert pool.stats() == {"open": 1, "idle": 0, "waiting": 0}
        pool.close()
        server.close()

    run(main, loop_kind)


class EndHook(Sink):
    """A sink that runs ``hook`` as the response ends, in the same loop turn as the
    connection's return to the pool: what a request arriving then would see."""

    def __init__(self, hook: Callable[[], Any]) -> None:
        super().__init__()
        self.hook = hook
        self.seen: Any = None

    def on_upstream_end(self) -> None:
        self.seen = self.hook()
        super().on_upstream_end()


def test_a_returned_connection_goes_to_the_first_waiter_not_a_later_request(
        loop_kind: str) -> None:
    """A request arriving as a connection comes back finds nothing idle to take: the
    connection is the first waiter's (taken by later requests, it left the first
    waiters to time out with the pool full, once per connection returned)."""
    async def main() -> None:
        server, port = await serve(answer_ok)
        pool = UpstreamPool(asyncio.get_running_loop())
        key = ("http", "127.0.0.1", port, None, True, "off")
        first = await pool.connect(key, 5.0, max_connections=1)
        waiting = asyncio.ensure_future(pool.connect(key, 5.0, max_connections=1))
        await asyncio.sleep(0)
        sink = EndHook(lambda: pool.take_idle(key))
        first.send(REQUEST, sink, first_byte_s=5, idle_s=5)
        await sink.done
        assert sink.seen is None  # the later request: nothing to take
        assert await waiting is first
        pool.close()
        server.close()

    run(main, loop_kind)


def test_a_waiter_that_arrives_between_two_woken_ones_is_not_lost(loop_kind: str) -> None:
    """Two waiters are handed connections in one loop turn, and a third request
    queues between their wake-ups: the second one's clean-up must not drop the
    third's queue (it was dropped once, and the third waited out its timeout
    while connections came back idle)."""
    async def main() -> None:
        server, port = await serve(answer_ok)
        pool = UpstreamPool(asyncio.get_running_loop())
        key = ("http", "127.0.0.1", port, None, True, "off")
        one = await pool.connect(key, 5.0, max_connections=2)
        two = await pool.connect(key, 5.0, max_connections=2)
        a = asyncio.ensure_future(pool.connect(key, 5.0, max_connections=2))
        c = asyncio.ensure_future(pool.connect(key, 5.0, max_connections=2))
        await asyncio.sleep(0)  # both wait
        # What two responses ending in one loop turn do (UpstreamConnection calls
        # _release at the end of each), with a new request arriving in between.
        pool._release(one)
        b = asyncio.ensure_future(pool.connect(key, 1.0, max_connections=2))
        pool._release(two)
        assert {await a, await c} == {one, two}
        pool._release(one)  # a's request ended: b's turn
        assert await b is one
        pool.close()
        server.close()

    run(main, loop_kind)


def test_a_closed_connection_frees_its_slot(loop_kind: str) -> None:
    async def main() -> None:
        server, port = await serve(answer_ok)
        pool = UpstreamPool(asyncio.get_running_loop())
        key = ("http", "127.0.0.1", port, None, True, "off")
        first = await pool.connect(key, 5.0, max_connections=1)
        waiting = asyncio.ensure_future(pool.connect(key, 5.0, max_connections=1))
        await asyncio.sleep(0)
        first.abandon()
        second = await waiting
        assert second is not first and not second.closed
        assert pool.stats()["open"] == 1
        pool.close()
        server.close()

    run(main, loop_kind)


def test_a_wait_past_its_deadline_is_pool_full(loop_kind: str) -> None:
    async def main() -> None:
        server, port = await serve(answer_ok)
        pool = UpstreamPool(asyncio.get_running_loop())
        key = ("http", "127.0.0.1", port, None, True, "off")
        await pool.connect(key, 5.0, max_connections=1)
        with pytest.raises(UpstreamError) as info:
            await pool.connect(key, 0.05, max_connections=1)
        assert info.value.kind == "pool_full" and "max_connections" in info.value.message
        assert pool.stats() == {"open": 1, "idle": 0, "waiting": 0}
        pool.close()
        assert pool.stats()["open"] == 0
        server.close()

    run(main, loop_kind)


@pytest.mark.parametrize("freed_by", ["a close", "a returned connection"])
def test_a_cancelled_waiter_passes_its_turn_on(loop_kind: str, freed_by: str) -> None:
    """The first waiter is given the turn (a free slot, or the connection itself) and
    is cancelled before it runs: the next waiter gets the turn, connection included."""
    async def main() -> None:
        server, port = await serve(answer_ok)
        pool = UpstreamPool(asyncio.get_running_loop())
        key = ("http", "127.0.0.1", port, None, True, "off")
        first = await pool.connect(key, 5.0, max_connections=1)
        a = asyncio.ensure_future(pool.connect(key, 5.0, max_connections=1))
        b = asyncio.ensure_future(pool.connect(key, 5.0, max_connections=1))
        await asyncio.sleep(0)
        if freed_by == "a close":
            first.abandon()  # wakes a...
            a.cancel()  # ...which leaves before it runs
        else:
            sink = EndHook(a.cancel)  # handed to a, cancelled in the same turn
            first.send(REQUEST, sink, first_byte_s=5, idle_s=5)
            await sink.done
        with pytest.raises(asyncio.CancelledError):
            await a
        conn = await b
        assert not conn.closed and pool.stats() == {"open": 1, "idle": 0, "waiting": 0}
        assert (conn is first) == (freed_by == "a returned connection")
        pool.close()
        server.close()

    run(main, loop_kind)


def test_refused_connects_do_not_leak_slots(loop_kind: str) -> None:
    async def main() -> None:
        server, port = await serve(answer_ok)
        server.close()
        await server.wait_closed()
        pool = UpstreamPool(asyncio.get_running_loop())
        key = ("http", "127.0.0.1", port, None, True, "off")
        for _ in range(3):
            with pytest.raises(UpstreamError) as info:
                await pool.connect(key, 1.0, max_connections=1)
            assert info.value.kind == "unreachable"
        assert pool.stats() == {"open": 0, "idle": 0, "waiting": 0}

    run(main, loop_kind)
