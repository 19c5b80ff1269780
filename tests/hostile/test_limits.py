"""Limits an unauthenticated client meets before anything else: the request head,
write backpressure on whole responses, protocol upgrades, ambiguous framing.
Each of these held memory or answered twice before it was fixed."""

from __future__ import annotations

import json
import select
import socket

from tests.hostile.conftest import Daemon, closed_by_peer, read_response

MiB = 1024 * 1024


def test_one_endless_header_line_gets_431_within_the_head_limit(daemon: Daemon) -> None:
    """One header value of many MiB is cut off at the head limit (64 KiB), counted
    in raw bytes as they arrive; llhttp alone reports a header only when its line
    is complete."""
    rss0, cpu0 = daemon.rss_bytes(), daemon.cpu_seconds()
    s = daemon.connect()
    s.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-long: ")
    sent = 0
    chunk = b"a" * 65536
    try:
        while sent < 64 * MiB:
            s.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert sent < 8 * MiB, f"the gateway kept reading: {sent} bytes of one header"
    s.settimeout(5)
    try:
        status, _, body = read_response(s)
        assert status == 431 and b"too large" in body
    except (ConnectionResetError, EOFError):
        pass  # the reset can overtake the 431 while we were still sending
    assert daemon.rss_bytes() - rss0 < 16 * MiB
    assert daemon.cpu_seconds() - cpu0 < 2.0


def _chat(content: str) -> bytes:
    body = json.dumps({"model": "loopback",
                       "messages": [{"role": "user", "content": content}]}).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)) + body


def test_pipelining_client_that_never_reads_is_not_served_into_memory(daemon: Daemon) -> None:
    """Whole responses respect write backpressure: once the client's answers pile up
    unread, the gateway stops reading its requests, so neither requests nor answers
    accumulate in the gateway."""
    rss0 = daemon.rss_bytes()
    s = daemon.connect()
    s.setblocking(False)
    request = _chat("x" * 8000)
    accepted = 0
    stalled = 0
    while accepted < 64 * MiB and stalled < 20:
        _, writable, _ = select.select([], [s], [], 0.25)
        if not writable:
            stalled += 1  # the gateway stopped reading: our send buffer is full
            continue
        try:
            accepted += s.send(request)
        except BlockingIOError:
            stalled += 1
    # Kernel buffers on both sides hold a few MiB; the gateway holds its 64 KiB
    # write high-water mark plus the answer in progress.
    assert accepted < 24 * MiB, f"the gateway read {accepted} bytes of requests"
    assert daemon.rss_bytes() - rss0 < 24 * MiB
    s.close()


def test_upgrade_and_connect_get_one_response_and_a_close(daemon: Daemon) -> None:
    for head in (b"GET / HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
                 b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n"):
        s = daemon.connect()
        s.sendall(head + b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        status, headers, _ = read_response(s)
        assert status == 501 and headers.get("connection") == "close"
        s.settimeout(5)
        assert closed_by_peer(s)  # the pipelined /health is never answered
        s.close()


def test_content_length_with_transfer_encoding_closes_after_the_answer(daemon: Daemon) -> None:
    """RFC 9112 §6.1: such a request may be smuggling; answer it (or refuse it) and
    close the connection, whatever the parser."""
    s = daemon.connect()
    body = b'{"model":"loopback","messages":[{"role":"user","content":"x"}]}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              b"content-length: %d\r\ntransfer-encoding: chunked\r\n\r\n" % len(chunked) + chunked
              + b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    status, headers, _ = read_response(s)
    assert status in (200, 400)
    s.settimeout(5)
    assert closed_by_peer(s)
    s.close()


def test_json_nested_past_the_encoder_limit_is_a_400_with_a_row(daemon_factory) -> None:
    """orjson parses 1,024 levels but writes 255: a request the gateway must re-encode
    (here the route renames the model) and that nests deeper than that gets a 400 in
    the client's protocol and a ledger row, never a 500 with a traceback."""
    import sqlite3

    from tests.integration.upstreams import FakeUpstream

    up = FakeUpstream().start()
    try:
        d = daemon_factory(env={"TOKENWAY_OPENAI_BASE_URL": up.base_url,
                                "TOKENWAY_ROUTES": "*=>openai:renamed"})
        deep = "[" * 600 + "]" * 600
        body = ('{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":'
                + deep + "}").encode()
        s = d.connect()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                  b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
                  + body)
        status, _, resp = read_response(s)
        s.close()
        assert status == 400 and b"cannot be forwarded" in resp
        assert json.loads(resp)["error"]["type"] == "invalid_request_error"
        assert up.requests == []
        d.stop()
        rows = sqlite3.connect(d.db).execute(
            "select status, error_kind from requests").fetchall()
        assert rows == [(400, "bad_request")]
    finally:
        up.stop()


def test_duplicated_model_key_is_refused(daemon_factory) -> None:
    """Routing reads the last of two ``model`` keys (orjson); a provider reading the
    forwarded bytes may take the first: such a body never reaches the provider."""
    from tests.integration.upstreams import FakeUpstream

    up = FakeUpstream().start()
    try:
        d = daemon_factory(env={"TOKENWAY_OPENAI_BASE_URL": up.base_url,
                                "TOKENWAY_ROUTES": "cheap=>openai"})
        body = (b'{"model":"expensive","messages":[{"role":"user","content":"x"}],'
                b'"model":"cheap"}')
        s = d.connect()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                  b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
                  + body)
        status, _, resp = read_response(s)
        assert status == 400 and b"more than once" in resp
        assert up.requests == []
        s.close()
    finally:
        up.stop()


def test_half_closed_client_is_closed_after_its_answer(daemon_factory) -> None:
    """A client that sends its request and shuts its side down while the answer is
    still on its way gets the answer and then the close, instead of an idle
    connection held until the keep-alive timeout."""
    from tests.integration.upstreams import FakeUpstream

    reply = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                        "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    up = FakeUpstream(script=lambda req: [
        ("sleep", 0.3), ("head", 200, [("content-type", "application/json"),
                                       ("content-length", str(len(reply)))]),
        ("body", reply.encode()), ("end",)]).start()
    try:
        d = daemon_factory(env={"TOKENWAY_OPENAI_BASE_URL": up.base_url,
                                "TOKENWAY_ROUTES": "*=>openai"})
        s = d.connect()
        body = b'{"model":"m","messages":[{"role":"user","content":"x"}]}'
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                  b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
                  + body)
        s.shutdown(socket.SHUT_WR)
        status, _, _ = read_response(s)
        assert status == 200
        s.settimeout(10)
        assert closed_by_peer(s)
        s.close()
    finally:
        up.stop()


def test_loopback_embeddings_answer_is_bounded(daemon: Daemon) -> None:
    """2048 inputs x 8192 dimensions from a 10 kB request was a 361 MB answer."""
    rss0 = daemon.rss_bytes()
    body = json.dumps({"model": "loopback", "input": ["a"] * 2048,
                       "dimensions": 8192}).encode()
    s = daemon.connect()
    s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              b"content-length: %d\r\n\r\n" % len(body) + body)
    status, _, resp = read_response(s)
    assert status == 400 and b"at most" in resp
    assert daemon.rss_bytes() - rss0 < 16 * MiB
    s.close()


def test_loopback_stream_follows_the_clients_reading(daemon_factory) -> None:
    """A loopback stream of many choices to a client that reads nothing stays within
    the connection's write mark, and the client is dropped after send_timeout."""
    d = daemon_factory(config='[server]\nsend_timeout = "1s"\n')
    rss0 = d.rss_bytes()
    body = json.dumps({"model": "loopback", "stream": True, "n": 128,
                       "messages": [{"role": "user", "content": "w " * 40000}]}).encode()
    s = d.connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
              b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
    d.wait_log("read nothing for 1 s")
    assert d.rss_bytes() - rss0 < 48 * MiB
    s.close()
