"""Request smuggling and malformed framing on both parsers: every ambiguous request
is refused (or answered once) and the connection closed, so a request hidden in a
body is never answered as a request of its own; bytes that are not text get a clear
error, not a crash."""

from __future__ import annotations

import json

import pytest

from tests.hostile.conftest import Daemon, read_response

HIDDEN = b"GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n"
CHAT_BODY = b'{"model":"loopback","messages":[{"role":"user","content":"x"}]}'


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


# Each: the raw bytes of one request whose framing two parsers (or a front proxy and
# us) could read differently, followed by HIDDEN, which must never be answered.
VARIANTS = {
    "cl_te": b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
             b"content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n" + _chunked(CHAT_BODY),
    "te_cl": b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
             b"transfer-encoding: chunked\r\ncontent-length: %d\r\n\r\n" % (len(CHAT_BODY) + 5)
             + _chunked(CHAT_BODY),
    "te_obfuscated": b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                     b"transfer-encoding: xchunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
    "te_twice": b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                b"transfer-encoding: chunked\r\ntransfer-encoding: identity\r\n\r\n0\r\n\r\n",
    "te_space_before_colon": b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                             b"transfer-encoding : chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
    "cl_twice_differs": b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                        b"content-length: 5\r\ncontent-length: 40\r\n\r\n0\r\n\r\n",
    "cl_plus_sign": b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                    b"content-length: +5\r\n\r\n0\r\n\r\n",
    "cl_negative": b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                   b"content-length: -1\r\n\r\n",
    "cl_hex": b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 0x5\r\n\r\n",
    "te_folded": b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n"
                 b"transfer-encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "bad_chunk_size": b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                      b"transfer-encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
    "chunk_ext_overflow": b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                          b"transfer-encoding: chunked\r\n\r\n"
                          b"ffffffffffffffffffff\r\nab\r\n0\r\n\r\n",
}

# Requests that are whole but malformed: one clear answer (or a refusal to read
# further), never a crash; what follows them is never taken as a request unless the
# first was accepted as well-formed.
MALFORMED = {
    "obs_fold": b"GET /health HTTP/1.1\r\nhost: x\r\nx-folded: a\r\n b\r\n\r\n",
    "nul_in_header": b"GET /health HTTP/1.1\r\nhost: x\r\nx-nul: a\x00b\r\n\r\n",
    "http_0_9": b"GET /health\r\n\r\n",
    "space_in_target": b"GET /v1/models HTTP/1.1 /x HTTP/1.1\r\nhost: x\r\n\r\n",
    "no_host_http_1_0": b"GET /health HTTP/1.0\r\n\r\n",
    "lf_only": b"GET /health HTTP/1.1\nhost: x\n\n",
    "huge_version": b"GET /health HTTP/9.9\r\nhost: x\r\n\r\n",
}


def _responses(sock) -> list[tuple[int, bytes]]:
    """Every response the gateway sends until it closes, or is quiet for 2 s (a
    gateway still waiting for a body it was promised).  A slow machine can only
    make this see fewer answers, never more."""
    out = []
    sock.settimeout(2)
    while True:
        try:
            status, _, body = read_response(sock)
        except (EOFError, ConnectionResetError, TimeoutError):
            return out
        out.append((status, body))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_hidden_request_is_never_answered(shared_daemon: Daemon, name: str) -> None:
    """The security property: whatever the parser makes of the ambiguous request
    (refused with 4xx, or read to a body limit and then timed out), the request
    behind it is not answered as a request of its own."""
    s = shared_daemon.connect()
    s.sendall(VARIANTS[name] + HIDDEN)
    answers = _responses(s)
    s.close()
    assert all(b"smuggled" not in body for _, body in answers), (name, answers)
    # At most one answer: a refusal, or (h11 with both Content-Length and
    # Transfer-Encoding) the request read by its chunks, then the close RFC 9112
    # §6.1 asks for.
    assert len(answers) <= 1, (name, answers)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_requests_get_one_clear_answer(shared_daemon: Daemon, name: str) -> None:
    s = shared_daemon.connect()
    s.sendall(MALFORMED[name])
    answers = _responses(s)
    s.close()
    assert len(answers) <= 1, (name, answers)
    for status, body in answers:
        assert status in (200, 400, 404, 505), (name, answers)
        assert json.loads(body)  # a JSON body, an error in the client's terms when >= 400


def test_invalid_utf8_in_a_body_is_a_400_in_the_clients_protocol(shared_daemon: Daemon) -> None:
    body = b'{"model":"loopback","max_tokens":5,"messages":[{"role":"user","content":"\xff\xfe"}]}'
    s = shared_daemon.connect()
    s.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              b"content-length: %d\r\n\r\n" % len(body) + body)
    status, _, resp = read_response(s)
    assert status == 400 and json.loads(resp)["type"] == "error"
    s.close()


def test_invalid_utf8_in_the_target_and_headers(shared_daemon: Daemon) -> None:
    s = shared_daemon.connect()
    s.sendall(b"GET /v1/mod\xffels HTTP/1.1\r\nhost: x\r\nx-bin: \xc3\x28\r\n\r\n")
    status, _, body = read_response(s)
    assert status in (400, 404) and json.loads(body)["error"]
    s.close()
