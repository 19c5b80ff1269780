"""HTTP/1.1 server behaviour, byte by byte, on both parser backends and both loops."""

from __future__ import annotations

import json

import pytest

from tests.integration.rawhttp import Reader, connect, post_bytes

CHAT = json.dumps({"model": "loopback", "messages": [{"role": "user", "content": "ping"}]}).encode()
FAST_TIMEOUTS = ('[server]\nheader_timeout = "0.3s"\nkeepalive_timeout = "0.6s"\n'
                 'max_body_bytes = "4KiB"\nmax_header_bytes = "2KiB"\n')


@pytest.fixture
def gw(make_gateway, loop_kind, parser):
    return make_gateway(loop_kind=loop_kind, parser=parser, config_text=FAST_TIMEOUTS)


def test_pipelined_requests_answered_in_order(gw):
    s = connect(gw.port)
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
              + post_bytes("/v1/chat/completions", CHAT)
              + b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n"
              + b"GET /nope HTTP/1.1\r\nhost: x\r\n\r\n")
    r = Reader(s)
    st1, _, b1 = r.response()
    st2, _, b2 = r.response()
    st3, _, b3 = r.response()
    st4, _, b4 = r.response()
    assert (st1, st2, st3, st4) == (200, 200, 200, 404)
    assert json.loads(b1)["status"] == "ok"
    assert json.loads(b2)["object"] == "chat.completion"
    assert json.loads(b3)["object"] == "list"
    assert json.loads(b4)["error"]["code"] == "unknown_url"
    s.close()


def test_keep_alive_and_connection_close(gw):
    s = connect(gw.port)
    r = Reader(s)
    for _ in range(3):
        s.sendall(post_bytes("/v1/chat/completions", CHAT))
        assert r.response()[0] == 200
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    st, h, _ = r.response()
    assert st == 200 and h.get("connection") == "close"
    assert r.closed()


def test_http10_closes_by_default(gw):
    s = connect(gw.port)
    s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
    r = Reader(s)
    assert r.response()[0] == 200
    assert r.closed()


def test_chunked_request_body(gw):
    s = connect(gw.port)
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
    s.sendall(head)
    for i in range(0, len(CHAT), 7):
        piece = CHAT[i:i + 7]
        s.sendall(b"%x\r\n%b\r\n" % (len(piece), piece))
    s.sendall(b"0\r\n\r\n")
    st, _, body = Reader(s).response()
    assert st == 200 and "ping" in json.loads(body)["choices"][0]["message"]["content"]


def test_oversize_body_by_length_is_413_and_recorded(gw):
    s = connect(gw.port)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n")
    r = Reader(s)
    st, _, body = r.response()
    assert st == 413 and "exceeds" in json.loads(body)["error"]["message"]
    assert r.closed()
    rows = gw.wait_rows(1)
    assert rows[-1]["status"] == 413


def test_oversize_chunked_body_is_413(gw):
    s = connect(gw.port)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
              b"transfer-encoding: chunked\r\n\r\n")
    blob = b"x" * 1000
    try:
        for _ in range(10):
            s.sendall(b"%x\r\n%b\r\n" % (len(blob), blob))
    except OSError:
        pass
    st, _, _ = Reader(s).response()
    assert st == 413


def test_expect_100_continue(gw):
    s = connect(gw.port)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              b"expect: 100-continue\r\ncontent-length: %d\r\n\r\n" % len(CHAT))
    r = Reader(s)
    line = r._until(b"\r\n\r\n")
    assert line.startswith(b"HTTP/1.1 100")
    s.sendall(CHAT)
    assert r.response()[0] == 200


def test_expect_100_with_oversize_body_is_refused_without_continue(gw):
    s = connect(gw.port)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
              b"content-length: 999999\r\n\r\n")
    r = Reader(s)
    head = r._until(b"\r\n")
    assert head.startswith(b"HTTP/1.1 413")


def test_head_request_has_no_body(gw):
    s = connect(gw.port)
    s.sendall(b"HEAD /health HTTP/1.1\r\nhost: x\r\n\r\nGET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    r = Reader(s)
    st, h, _ = r.response(head_only=True)
    assert st == 200 and int(h["content-length"]) > 0
    st2, _, body = r.response()  # the next response starts right after the head
    assert st2 == 200 and json.loads(body)["status"] == "ok"


def test_method_not_allowed(gw):
    s = connect(gw.port)
    s.sendall(b"GET /v1/chat/completions HTTP/1.1\r\nhost: x\r\n\r\n")
    st, _, body = Reader(s).response()
    assert st == 405 and json.loads(body)["error"]["type"] == "invalid_request_error"


def test_header_too_large_is_431(gw):
    s = connect(gw.port)
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 5000 + b"\r\n\r\n")
    assert Reader(s).response()[0] == 431


def test_malformed_request_is_400_and_closed(gw):
    s = connect(gw.port)
    s.sendall(b"GARBAGE\x00\x01 / HTTP/9\r\n\r\n")
    r = Reader(s)
    assert r.response()[0] == 400
    assert r.closed()


def test_header_read_timeout_is_408(gw):
    s = connect(gw.port)
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n")  # never finished
    r = Reader(s)
    assert r.response()[0] == 408
    assert r.closed()


def test_idle_keepalive_timeout_closes(gw):
    s = connect(gw.port)
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    r = Reader(s)
    assert r.response()[0] == 200
    assert r.closed(timeout=5)  # keepalive_timeout is 0.6 s; nothing else closes it


def test_bad_content_length(gw):
    s = connect(gw.port)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n")
    assert Reader(s).response()[0] == 400
