"""A raw HTTP/2 client for tests: the h2 library (client side) over a real socket,
with every frame under the test's control (windows it never opens, resets,
floods), where curl and httpx only speak politely."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingAckReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from h2.settings import SettingCodes, Settings

from tests.integration import rawhttp


@dataclass
class Answer:
    status: int = 0
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None  # the server's RST_STREAM error code

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


class H2Client:
    def __init__(self, port: int, *, window: int | None = None, ack: bool = True,
                 tls: ssl.SSLContext | None = None, bytewise_preface: bool = False) -> None:
        """``window``: SETTINGS_INITIAL_WINDOW_SIZE to announce; ``ack``: whether
        received DATA is acknowledged (WINDOW_UPDATE) as it is read;
        ``bytewise_preface``: the connection preface goes one byte per write."""
        sock: socket.socket = rawhttp.connect(port)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
            rawhttp._opened.append(sock)  # closed when the test ends, as connect()'s are
        self.sock = sock
        self.ack = ack
        conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        if window is not None:
            conn.local_settings = Settings(client=True, initial_values={
                SettingCodes.INITIAL_WINDOW_SIZE: window, SettingCodes.ENABLE_PUSH: 0})
        conn.initiate_connection()
        if bytewise_preface:
            first = conn.data_to_send()
            for i in range(24):
                sock.sendall(first[i:i + 1])
            sock.sendall(first[24:])
        self.conn = conn
        self.answers: dict[int, Answer] = {}
        self.goaway: ConnectionTerminated | None = None
        self.closed = False
        self.received = 0  # DATA bytes
        self.ping_acks = 0
        self.send()

    def send(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def request(self, method: str, path: str, body: bytes = b"",
                headers: list[tuple[str, str]] | None = None, *, end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        hs = [(b":method", method.encode()), (b":path", path.encode()),
              (b":scheme", b"http"), (b":authority", b"127.0.0.1")]
        for k, v in headers or []:
            hs.append((k.lower().encode(), v.encode()))
        if body:
            hs.append((b"content-length", b"%d" % len(body)))
        self.conn.send_headers(sid, hs, end_stream=not body and end)
        self.answers[sid] = Answer()
        if body:
            self.send_body(sid, body, end=end)
        self.send()
        return sid

    def send_body(self, sid: int, body: bytes, *, end: bool = True) -> None:
        step = self.conn.max_outbound_frame_size
        for i in range(0, len(body), step):
            while self.conn.local_flow_control_window(sid) < min(step, len(body) - i):
                self.send()
                self.read_once()
                if self.answers[sid].done:
                    return  # answered (and reset) before its body was all sent
            if self.answers[sid].done:
                return
            self.conn.send_data(sid, body[i:i + step],
                                end_stream=end and i + step >= len(body))
        self.send()

    def chat(self, model: str = "loopback", stream: bool = False,
             headers: list[tuple[str, str]] | None = None, path: str = "/v1/chat/completions",
             content: str = "hi") -> int:
        import json

        body = json.dumps({"model": model, "stream": stream,
                           "messages": [{"role": "user", "content": content}]}).encode()
        return self.request("POST", path, body,
                            [("content-type", "application/json"), *(headers or [])])

    def read_once(self, timeout_s: float = 10.0) -> bool:
        """One socket read, its events applied; False once the server closed."""
        self.sock.settimeout(timeout_s)
        try:
            data = self.sock.recv(1 << 16)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        for ev in self.conn.receive_data(data):
            self._apply(ev)
        self.send()
        return True

    def _apply(self, ev: Any) -> None:
        if isinstance(ev, ResponseReceived):
            a = self.answers[ev.stream_id]
            a.headers = dict(ev.headers)
            a.status = int(a.headers[b":status"])
        elif isinstance(ev, DataReceived):
            self.answers[ev.stream_id].body += ev.data
            self.received += len(ev.data)
            if self.ack:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, StreamEnded):
            self.answers[ev.stream_id].ended = True
        elif isinstance(ev, StreamReset):
            if ev.stream_id in self.answers:
                self.answers[ev.stream_id].reset = ev.error_code
        elif isinstance(ev, PingAckReceived):
            self.ping_acks += 1
        elif isinstance(ev, ConnectionTerminated):
            self.goaway = ev
            # h2 closes its state machine on a GOAWAY and would refuse the frames of
            # the streams the server still finishes (RFC 9113 §6.8 lets it): reopen
            # it, which also lets the test open a stream a polite client would not.
            self.conn.state_machine.state = ConnectionState.CLIENT_OPEN

    def wait(self, until: Callable[[], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not until():
            left = deadline - time.monotonic()
            assert left > 0, "timed out waiting on the HTTP/2 server"
            if not self.read_once(left):
                assert until(), "the server closed the connection"
                return

    def answer(self, sid: int, timeout_s: float = 10.0) -> Answer:
        self.wait(lambda: self.answers[sid].done, timeout_s)
        return self.answers[sid]

    def sync(self) -> None:
        """Return once the server has read everything sent so far (a PING's answer
        comes after them), or has closed."""
        want = self.ping_acks + 1
        self.conn.ping(b"syncsync")
        self.send()
        self.wait(lambda: self.ping_acks >= want or self.goaway is not None)

    def close(self) -> None:
        self.sock.close()
