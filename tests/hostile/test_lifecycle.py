"""What an operator's actions must never open or lose: a reload cannot switch
authentication off on a public address, and a shutdown ends running streams with
their protocol's error event and an honest ledger row."""

from __future__ import annotations

import json
import signal
import sqlite3

from tests.hostile.conftest import Daemon, read_response
from tests.integration.upstreams import FakeUpstream


def _chat(d: Daemon, headers: bytes = b"") -> int:
    body = b'{"model":"loopback","messages":[{"role":"user","content":"x"}]}'
    s = d.connect()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              + headers + b"content-length: %d\r\n\r\n" % len(body) + body)
    status = read_response(s)[0]
    s.close()
    return status


def test_reload_cannot_turn_authentication_off_on_a_public_address(daemon_factory) -> None:
    d: Daemon = daemon_factory(
        config='[auth]\nkeys = ["gw-key"]\n[server]\nloopback_model = "on"\n',
        args=("--listen", "0.0.0.0:0"))
    assert _chat(d) == 401 and _chat(d, b"authorization: Bearer gw-key\r\n") == 200
    # The same file without keys: refused at start, so refused at reload too.
    (d.db.parent / "gateway.toml").write_text('[server]\nloopback_model = "on"\n')
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("reload refused")
    assert _chat(d) == 401


def _slow_stream(req):
    first = (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
             b'"choices":[{"index":0,"delta":{"content":"t0 "},"finish_reason":null}]}\n\n')
    return [("head", 200, [("content-type", "text/event-stream")]), ("body", first),
            ("sleep", 30.0), ("end",)]


def test_shutdown_ends_running_streams_with_their_error_event(daemon_factory) -> None:
    up = FakeUpstream(script=_slow_stream).start()
    try:
        d: Daemon = daemon_factory(
            config='[server]\nshutdown_grace = "500ms"\n',
            env={"TOKENWAY_OPENAI_BASE_URL": up.base_url, "TOKENWAY_ROUTES": "*=>openai"})
        streams = {}
        for path, body in (
                ("/v1/chat/completions", {"model": "m", "stream": True,
                                          "messages": [{"role": "user", "content": "x"}]}),
                ("/v1/messages", {"model": "m", "stream": True, "max_tokens": 5,
                                  "messages": [{"role": "user", "content": "x"}]})):
            raw = json.dumps(body).encode()
            s = d.connect()
            s.sendall(b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                      b"content-length: %d\r\n\r\n" % (path.encode(), len(raw)) + raw)
            got = b""
            while b"t0" not in got:
                got += s.recv(65536)
            streams[path] = (s, got)
        d.proc.send_signal(signal.SIGTERM)
        for path, (s, got) in streams.items():
            s.settimeout(20)
            while not got.endswith(b"0\r\n\r\n"):
                data = s.recv(65536)
                if not data:
                    break
                got += data
            s.close()
            assert got.endswith(b"0\r\n\r\n"), (path, got[-200:])  # a clean chunked end...
            if path == "/v1/messages":
                assert b"event: error" in got  # ...after the protocol's own error event
            else:
                assert b"shutting down" in got and b'"error"' in got
        d.proc.wait(30)
        rows = sqlite3.connect(d.db).execute(
            "select endpoint, status, error_kind from requests order by endpoint").fetchall()
        assert rows == [("/v1/chat/completions", 200, "shutdown"),
                        ("/v1/messages", 200, "shutdown")]
    finally:
        up.stop()
