"""Heartbeat scheduling of a stream, driven by a fake clock: keep-alives go out only
after a silence of one interval, only between whole events, never while the client
is not reading."""

from __future__ import annotations

from types import SimpleNamespace

from proxy.exchange import _STREAM, ProxyExchange, Upstreams


class FakeLoop:
    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, object]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay, cb):
        self.timers.append((self.now + delay, cb))
        return SimpleNamespace(cancel=lambda: None)

    def advance(self, t: float) -> None:
        """Move the clock to ``t`` and fire the timers due by then, in order."""
        while True:
            due = sorted((w, cb) for w, cb in self.timers if w <= t)
            if not due:
                break
            when, cb = due[0]
            self.timers.remove((when, cb))
            self.now = when
            cb()
        self.now = t


class FakeFilter:
    at_boundary = True

    def heartbeat(self) -> bytes:
        return b": ping\n\n"


def make(interval: float = 15.0):
    loop = FakeLoop()
    written: list[tuple[float, bytes]] = []
    conn = SimpleNamespace(write_paused=False, write=lambda b: written.append((loop.now, b)))
    call = SimpleNamespace(conn=conn, rec=SimpleNamespace())
    ups = Upstreams(loop, pool=None, health=None, limits={},
                    routing=SimpleNamespace(heartbeat_s=interval, deadline_s=60.0))
    ex = ProxyExchange(call, ups, [], lambda p, m: None, stream=True)
    ex.state = _STREAM
    ex.att = SimpleNamespace(filter=FakeFilter())
    ex._arm_heartbeat()
    return ex, loop, written


def test_silence_gets_a_keepalive_every_interval():
    ex, loop, written = make(15.0)
    loop.advance(61.0)
    assert [t for t, _ in written] == [15.0, 30.0, 45.0, 60.0]
    assert all(b == b": ping\n\n" for _, b in written)


def test_data_pushes_the_next_keepalive_back():
    ex, loop, written = make(15.0)
    loop.advance(10.0)
    ex.last_write = 10.0  # an event went out at t=10
    loop.advance(24.9)
    assert written == []
    loop.advance(25.0)
    assert [t for t, _ in written] == [25.0]


def test_no_keepalive_inside_an_event_or_to_a_paused_client():
    ex, loop, written = make(1.0)
    ex.att.filter.at_boundary = False  # half an event is held back
    loop.advance(3.0)
    assert written == []
    ex.att.filter.at_boundary = True
    ex.conn.write_paused = True
    loop.advance(5.0)
    assert written == []
    ex.conn.write_paused = False
    loop.advance(5.5)
    assert len(written) == 1


def test_stops_when_the_stream_ends():
    ex, loop, written = make(1.0)
    loop.advance(1.0)
    ex.state = 3  # done
    loop.advance(10.0)
    assert len(written) == 1
