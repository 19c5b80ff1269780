"""Slow and stalling clients: heads and bodies that trickle or stop, clients that
never read, and more connections than the gateway takes.  A request is admitted
from its head alone, so a client without a key never gets its body buffered."""

from __future__ import annotations

import threading
import time

from tests.hostile.conftest import Daemon, closed_by_peer, read_response

MiB = 1024 * 1024
KEYED = {"TOKENWAY_API_KEYS": "gw-key"}


def test_keyless_body_is_refused_at_the_head_without_100_continue(daemon_factory) -> None:
    d: Daemon = daemon_factory(env=KEYED)
    rss0 = d.rss_bytes()
    socks = []
    for _ in range(10):
        s = d.connect()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                  b"content-type: application/json\r\nexpect: 100-continue\r\n"
                  b"content-length: 31000000\r\n\r\n")
        status, headers, body = read_response(s)  # before any body byte was sent
        assert status == 401 and b"invalid_api_key" in body
        assert headers.get("connection") == "close"
        socks.append(s)
    # The bodies they send anyway are read and thrown away, not kept.
    chunk = b"x" * 65536
    for s in socks:
        for _ in range(128):  # 8 MiB each
            s.sendall(chunk)
    assert d.rss_bytes() - rss0 < 16 * MiB
    for s in socks:
        s.close()


def test_stalled_body_gets_408_and_a_row(daemon_factory) -> None:
    d: Daemon = daemon_factory(config='[server]\nbody_timeout = "1s"\n')
    s = d.connect()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
              b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"model\":")
    status, _, body = read_response(s)
    assert status == 408 and b"request body" in body
    s.settimeout(5)
    assert closed_by_peer(s)
    d.stop()
    import sqlite3

    rows = sqlite3.connect(d.db).execute(
        "select status, error_kind, endpoint from requests").fetchall()
    assert rows == [(408, "client_timeout", "/v1/chat/completions")]


def test_trickled_body_meets_the_whole_body_deadline(daemon_factory) -> None:
    d: Daemon = daemon_factory(config='[server]\nbody_timeout = "1s"\nbody_deadline = "2s"\n')
    s = d.connect()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
              b"content-type: application/json\r\ncontent-length: 100000\r\n\r\n")
    stop = threading.Event()

    def trickle() -> None:  # one byte every 0.2 s: never idle for a whole second
        while not stop.is_set():
            try:
                s.send(b" ")
            except OSError:
                return
            stop.wait(0.2)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        status, _, body = read_response(s)
    finally:
        stop.set()
        t.join()
    assert status == 408 and b"request body" in body


def test_slow_head_gets_408(daemon_factory) -> None:
    d: Daemon = daemon_factory(config='[server]\nheader_timeout = "1s"\n')
    s = d.connect()
    s.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-slow: ")
    status, _, body = read_response(s)
    assert status == 408 and b"head" in body


def test_connections_over_the_limit_get_503_and_a_log_line(daemon_factory) -> None:
    d: Daemon = daemon_factory(config="[server]\nmax_connections = 20\n")
    held = [d.connect() for _ in range(20)]
    # The 20 are registered once each has been accepted: a request on the last
    # one proves the loop has seen them all.
    held[-1].sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    assert read_response(held[-1])[0] == 200
    extra = d.connect()
    status, headers, body = read_response(extra)
    assert status == 503 and b"connection limit" in body and headers["retry-after"] == "1"
    d.wait_log("connection limit reached (20 open)")
    held.pop().close()
    for s in held:
        s.close()
    # Once they are gone, new clients are served again.
    for _ in range(50):
        s = d.connect()
        s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        status, _, _ = read_response(s)
        s.close()
        if status == 200:
            break
        time.sleep(0.05)  # the closes reach the gateway's loop asynchronously
    assert status == 200


def test_client_that_reads_nothing_is_disconnected(daemon_factory) -> None:
    """A large answer the client never reads: the gateway keeps its 64 KiB write
    mark and what the kernel takes, and after ``send_timeout`` of no progress it
    drops the connection instead of holding the answer forever."""
    import json
    import socket

    from tests.integration.upstreams import FakeUpstream

    big = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                      "choices": [{"index": 0, "finish_reason": "stop", "message": {
                          "role": "assistant", "content": "z" * (16 * MiB)}}],
                      "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()
    up = FakeUpstream(script=lambda req: [
        ("head", 200, [("content-type", "application/json"),
                       ("content-length", str(len(big)))]),
        ("body", big), ("end",)]).start()
    try:
        d: Daemon = daemon_factory(
            config='[server]\nsend_timeout = "1s"\n',
            env={"TOKENWAY_OPENAI_BASE_URL": up.base_url, "TOKENWAY_ROUTES": "*=>openai"})
        s = d.connect()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        body = b'{"model":"m","messages":[{"role":"user","content":"x"}]}'
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                  b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
                  + body)
        d.wait_log("read nothing for 1 s")
        s.settimeout(10)
        got = 0
        try:
            while True:
                data = s.recv(1 << 20)
                if not data:
                    break
                got += len(data)
        except ConnectionResetError:
            pass
        assert got < len(big)  # the answer was cut, not delivered
    finally:
        up.stop()
