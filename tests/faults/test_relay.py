"""The fault relay itself: it forwards bytes unchanged, and each fault does exactly
what it says at exactly the byte it names, seen from a raw socket on each side."""

from __future__ import annotations

import socket

import pytest

from tests.faults.relay import (
    DOWN,
    UP,
    At,
    Fault,
    Relay,
    after_response_bytes,
    before_last_chunk,
    chunk_line_start,
    in_chunk_size_line,
    in_request_body,
    wait_for,
)
from tests.integration.rawhttp import Reader, connect, post_bytes
from tests.integration.upstreams import FakeUpstream, sse_response

BODY = b'{"model":"m","messages":[]}'
EVENTS = [b"data: {\"n\":%d,\"pad\":\"%s\"}\n\n" % (i, b"x" * 20) for i in range(4)]


@pytest.fixture
def provider():
    up = FakeUpstream(script=lambda req: sse_response(b"".join(EVENTS), [
        sum(map(len, EVENTS[:i])) for i in range(1, len(EVENTS))])).start()
    yield up
    up.stop()


@pytest.fixture
def relay(provider):
    r = Relay(provider.port).start()
    yield r
    r.stop()


def whole_answer(port: int) -> bytes:
    """The raw bytes of one response, read until the provider's terminating chunk."""
    s = connect(port)
    s.sendall(post_bytes("/v1/chat/completions", BODY))
    buf = b""
    while not buf.endswith(b"\r\n0\r\n\r\n"):
        data = s.recv(65536)
        assert data, buf
        buf += data
    s.close()
    return buf


def read_until_closed(s: socket.socket) -> tuple[bytes, str]:
    """Everything the peer sent, and how it ended: ``eof`` or ``reset``."""
    buf = b""
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return buf, "eof"
            buf += data
    except ConnectionResetError:
        return buf, "reset"


def test_positions():
    head = b"HTTP/1.1 200 X\r\ntransfer-encoding: chunked\r\n\r\n"
    body = b"1a\r\n" + b"a" * 26 + b"\r\n" + b"3\r\nabc\r\n" + b"0\r\n\r\n"
    seen = head + body
    assert chunk_line_start(seen, 1) == len(head)
    assert chunk_line_start(seen, 2) == len(head) + 4 + 26 + 2
    assert chunk_line_start(seen, 0) == len(seen) - 5
    assert chunk_line_start(seen[:-4], 0) is None  # the zero line is not whole yet
    assert chunk_line_start(seen, 4) is None  # past the last chunk
    # The second line is placed as soon as the first chunk is whole.
    assert chunk_line_start(seen[:len(head) + 32], 2) == len(head) + 32
    assert At(DOWN, 3, b"b", 2).position(b"abab") == 6
    assert At(DOWN, 3, b"b", 3).position(b"abab") is None
    assert in_request_body(2).position(b"POST / HTTP/1.1\r\n\r\n{}") == 21
    assert before_last_chunk().position(seen) == len(seen) - 5
    with pytest.raises(ValueError):
        Fault("close")  # where?
    with pytest.raises(ValueError):
        Fault("blackhole", after_response_bytes(1))
    with pytest.raises(ValueError):
        Fault("explode", after_response_bytes(1))


def test_forwards_unchanged(provider, relay):
    direct = whole_answer(provider.port)
    through = whole_answer(relay.port)
    # The date-free head and the body are byte for byte the provider's.
    assert through == direct
    [link] = relay.links
    # The relay thread counts a write just after making it: wait for its count.
    wait_for(lambda: link.forwarded[DOWN] == len(direct), "the relay's count of the answer")
    assert not link.fired


@pytest.mark.parametrize("action,ending", [("close", "eof"), ("reset", "reset")])
def test_close_and_reset_after_n_bytes(provider, relay, action, ending):
    direct = whole_answer(provider.port)
    relay.fault = Fault(action, after_response_bytes(50))
    s = connect(relay.port)
    s.sendall(post_bytes("/v1/chat/completions", BODY))
    got, how = read_until_closed(s)
    s.close()
    assert got == direct[:50] and how == ending
    [link] = relay.links
    assert link.fired and link.closed_by == "relay"


def test_chunk_size_line_cut(provider, relay):
    direct = whole_answer(provider.port)
    relay.fault = Fault("close", in_chunk_size_line(2))
    s = connect(relay.port)
    s.sendall(post_bytes("/v1/chat/completions", BODY))
    got, _ = read_until_closed(s)
    s.close()
    head_end = direct.index(b"\r\n\r\n") + 4
    second = head_end + len(b"%x\r\n" % len(EVENTS[0])) + len(EVENTS[0]) + 2
    assert got == direct[:second + 1]  # one hex digit of the two
    assert direct[second:second + 4] == b"%x\r\n" % len(EVENTS[1])


def test_stall_holds_what_comes_and_the_gateway_side_may_close(provider, relay):
    direct = whole_answer(provider.port)
    relay.fault = Fault("stall", after_response_bytes(30))
    s = connect(relay.port)
    s.sendall(post_bytes("/v1/chat/completions", BODY))
    wait_for(lambda: relay.links and relay.links[-1].held[DOWN] == len(direct) - 30,
             "the provider's whole answer held at the relay")
    s.setblocking(False)
    got = b""
    try:
        while True:
            got += s.recv(65536)
    except BlockingIOError:
        pass
    assert got == direct[:30]  # all of it is at the relay: none went on
    link = relay.links[-1]
    assert not link.closed
    s.close()
    wait_for(lambda: link.closed, "the relay to see the gateway side close")
    assert link.closed_by == "gateway"


def test_request_body_close_reaches_the_provider_cut(provider, relay):
    relay.fault = Fault("close", in_request_body(4))
    s = connect(relay.port)
    req = post_bytes("/v1/chat/completions", BODY)
    s.sendall(req)
    got, how = read_until_closed(s)
    s.close()
    assert got == b"" and how == "eof"
    [link] = relay.links
    assert link.forwarded[UP] == req.index(b"\r\n\r\n") + 4 + 4
    wait_for(lambda: provider.open_connections == 0, "the provider's side to close")
    assert provider.requests == []  # the provider never had a whole request


def test_trickle_writes_one_byte_at_a_time(provider, relay):
    direct = whole_answer(provider.port)
    relay.fault = Fault("trickle", after_response_bytes(10), trickle_bytes=40, trickle_pause=0)
    assert whole_answer(relay.port) == direct
    link = relay.links[-1]
    wait_for(lambda: link.forwarded[DOWN] == len(direct), "the relay's count of the answer")
    assert link.fired and link.trickle[DOWN] == 0
    assert link.writes[DOWN] >= 40 + 1  # 40 single bytes, then the rest


def test_blackhole_reads_and_never_connects(provider, relay):
    relay.fault = Fault("blackhole")
    s = connect(relay.port)
    req = post_bytes("/v1/chat/completions", BODY)
    s.sendall(req)
    wait_for(lambda: relay.links and relay.links[0].held[UP] == len(req), "the request read")
    assert provider.connections == 0
    s.close()
    wait_for(lambda: relay.links[0].closed, "the blackhole to see the close")
    assert relay.links[0].closed_by == "gateway"


def test_refuse(relay):
    relay.refuse()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", relay.port), timeout=5)
    # ...and the port is not free for a server started later to be given it.
    s = socket.socket()
    with pytest.raises(OSError):
        s.bind(("127.0.0.1", relay.port))
    s.close()


def test_reader_sees_a_whole_response_through_the_relay(provider, relay):
    s = connect(relay.port)
    s.sendall(post_bytes("/v1/chat/completions", BODY))
    status, _, body = Reader(s).response()
    s.close()
    assert status == 200 and body == b"".join(EVENTS)
