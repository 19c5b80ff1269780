"""Tiny blocking HTTP/1.1 helpers over raw sockets, for byte-level tests."""

from __future__ import annotations

import http.client
import json
import socket
from urllib.parse import urlsplit


def request(url: str, method: str = "GET", body: bytes | dict | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10.0):
    """One request with http.client; returns (status, headers dict, body bytes)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    hs = dict(headers or {})
    if isinstance(body, dict):
        body = json.dumps(body).encode()
        hs.setdefault("content-type", "application/json")
    conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=body, headers=hs)
    r = conn.getresponse()
    data = r.read()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    conn.close()
    return out


# Sockets handed out by connect(): tests often drop them mid-conversation, so they are
# closed when the test ends (close_all, from the autouse fixture in tests/conftest.py).
_opened: list[socket.socket] = []


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    _opened.append(s)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def close_all() -> None:
    """Close every socket connect() handed out so far."""
    while _opened:
        _opened.pop().close()


def post_bytes(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra}\r\n").encode() + body


class Reader:
    """Reads HTTP/1.1 responses off a socket, one at a time (handles pipelining)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def _until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            if not self._fill():
                raise EOFError("connection closed")
        i = self.buf.index(sep)
        out, self.buf = self.buf[:i], self.buf[i + len(sep):]
        return out

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError("connection closed")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head_only: bool = False):
        """Returns (status, headers dict, body)."""
        while True:
            head = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
            status = int(head[0].split(" ")[1])
            headers = {}
            for line in head[1:]:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
            if status >= 200 or status == 101:
                break
        if head_only:
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, self._exactly(int(headers["content-length"]))
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                n = int(self._until(b"\r\n").split(b";")[0], 16)
                if n == 0:
                    self._until(b"\r\n")
                    return status, headers, body
                body += self._exactly(n)
                self._exactly(2)
        body = self.buf
        while self._fill():
            pass
        body, self.buf = self.buf, b""
        return status, headers, body

    def closed(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            return False
