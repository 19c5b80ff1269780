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


def test_bad_pipelined_head_after_a_sync_answer_gets_its_own_error(gw):
    """A request refused at its head, pipelined behind one answered at once (/health):
    h11 reads it only when the first cycle ends, inside ``respond``; its 417 must
    reach the client like on llhttp, not escape into the handler as a failure."""
    s = connect(gw.port)
    s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
              b"GET /health HTTP/1.1\r\nhost: x\r\nexpect: nonsense\r\n\r\n")
    r = Reader(s)
    assert r.response()[0] == 200
    st, h, _ = r.response()
    assert st == 417 and h.get("connection") == "close"
    assert r.closed()
    rows = gw.wait_rows(1)
    assert [row["status"] for row in rows] == [417]


def _chunked_chat(trailer: bytes) -> bytes:
    body = json.dumps({"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})
    return (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n%s\r\n"
            % (len(body), body.encode(), trailer))


def test_trailer_fields_never_join_the_request_headers(gateway, upstream):
    """A chunked body's trailer section is not the header section (RFC 9110 §6.5.1):
    llhttp reports trailer fields through the same callback as header fields, and
    they used to be appended to the admitted request's headers and forwarded to the
    provider. h11 drops them; both backends must."""
    s = connect(gateway.port)
    s.sendall(_chunked_chat(b"x-from-trailer: smuggled\r\nuser-agent: trailer-agent\r\n"))
    assert Reader(s).response()[0] == 200
    sent = upstream.requests[-1].headers
    assert "x-from-trailer" not in sent
    assert sent.get("user-agent") != "trailer-agent"


def test_trailing_whitespace_is_not_part_of_a_field_value(make_gateway, loop_kind, parser):
    """RFC 9112 §5: the optional whitespace after a field value is not part of it.
    h11 strips it and llhttp kept it, so the same bytes made two different requests:
    here a gateway key refused on one backend and accepted on the other."""
    gw = make_gateway(loop_kind=loop_kind, parser=parser, config_text=FAST_TIMEOUTS,
                      env={"TOKENWAY_API_KEYS": "gw-secret"})
    s = connect(gw.port)
    s.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-api-key: gw-secret \t\r\n\r\n")
    assert Reader(s).response()[0] == 200


@pytest.mark.parametrize("request_line", [b"GET /health HTTP/2.0", b"GET /health HTTP/0.9",
                                          b"GET /health"])
def test_http_versions_other_than_1x_get_505_and_a_close(gw, request_line):
    """Only HTTP/1.0 and 1.1 are spoken here (RFC 9110 §15.6.6). llhttp read
    ``HTTP/2.0`` and ``HTTP/0.9`` heads (and a bare HTTP/0.9 request line) as requests
    that end the connection, h11 some of them as persistent ones: the next pipelined
    request was served on one backend only."""
    s = connect(gw.port)
    s.sendall(request_line + b"\r\nhost: x\r\n\r\nGET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    r = Reader(s)
    assert r.response()[0] in (400, 505)
    assert r.closed()


@pytest.mark.parametrize("data", [
    b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: Chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
    b"1\r\na\r\n0\r\nx-t: 1\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: x \r\nx-a:  a b \t\r\n\r\n",
])
def test_both_backends_read_the_same_request(data):
    """What both parsers accept, they read the same (fuzz/http1.py checks it on any
    bytes): each of these once gave two different requests."""
    from fuzz.http1 import run

    llhttp, h11 = run("httptools", [data]), run("h11", [data])
    assert llhttp.requests and llhttp.requests == h11.requests
