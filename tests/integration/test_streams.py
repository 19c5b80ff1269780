"""Streams under stress: slow clients, vanishing clients, dying providers, shutdown."""

from __future__ import annotations

import json
import threading

import openai
import pytest

from tests.integration.rawhttp import Reader, connect, post_bytes
from tests.integration.upstreams import sse_response
from tests.proxy.ledger_rows import wait_until

ENV = "TOKENWAY_OPENAI_BASE_URL"


def chunk_frame(i: int, pad: int = 0) -> bytes:
    obj = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
           "choices": [{"index": 0, "delta": {"content": f"t{i} " + "p" * pad},
                        "finish_reason": None}]}
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def stream_body(n: int, pad: int = 0, usage: bool = True) -> bytes:
    frames = [chunk_frame(i, pad) for i in range(n)]
    end = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
           "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    frames.append(b"data: " + json.dumps(end).encode() + b"\n\n")
    if usage:
        u = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
             "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": n,
                                      "total_tokens": 5 + n}}
        frames.append(b"data: " + json.dumps(u).encode() + b"\n\n")
    frames.append(b"data: [DONE]\n\n")
    return b"".join(frames)


REQ = json.dumps({"model": "gpt-x", "messages": [{"role": "user", "content": "go"}],
                  "stream": True}).encode()


@pytest.fixture
def sgw(make_gateway, upstream, loop_kind):
    return make_gateway(loop_kind=loop_kind, env={ENV: upstream.base_url})


def test_slow_client_keeps_gateway_memory_bounded(sgw, upstream):
    n = 4000
    body = stream_body(n, pad=1000)  # ~4 MB of frames
    frames = [body[i:i + 65536] for i in range(0, len(body), 65536)]
    upstream.script = lambda req: ([("head", 200, [("content-type", "text/event-stream")])]
                                   + [("body", f) for f in frames] + [("end",)])
    s = connect(sgw.port)
    s.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 16384)
    s.sendall(post_bytes("/v1/chat/completions", REQ))

    def paused() -> bool:
        # The client reads nothing: its connection stops taking writes, and the gateway
        # stops reading the provider's 4 MB.
        return (any(c.write_paused for c in sgw.server.connections)
                and any(c._paused for c in sgw.server.state.pool._all))

    wait_until(lambda: sgw.call(paused), "the gateway to pause the provider's stream")

    def buffered() -> int:
        return max((c.transport.get_write_buffer_size() for c in sgw.server.connections), default=0)

    held = sgw.call(buffered)
    # bounded by the high-water mark (64 KiB) plus one socket read from the
    # provider (up to 256 KiB on uvloop), not by the 4 MB body
    assert held < 1024 * 1024, held
    st, _, got = Reader(s).response()
    assert st == 200
    assert got.count(b"data: ") == n + 2  # all content + finish frames + [DONE]; usage stripped
    assert got.endswith(b"data: [DONE]\n\n")
    [row] = sgw.wait_rows(1)
    assert row["output_tokens"] == n and row["error_kind"] is None


def test_client_disconnect_mid_stream_cancels_upstream(sgw, upstream):
    body = stream_body(50)
    upstream.script = lambda req: sse_response(body, 50, delay=0.05)
    s = connect(sgw.port)
    s.sendall(post_bytes("/v1/chat/completions", REQ))
    r = Reader(s)
    r._until(b"data: ")  # the stream has started
    s.close()
    # The provider's connection is closed, not drained.
    wait_until(lambda: upstream.open_connections == 0, "the provider connection to close")
    [row] = sgw.wait_rows(1)
    assert row["status"] == 499 and row["error_kind"] == "cancelled" and row["stream"] is True


def test_upstream_unreachable_is_502(make_gateway):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    gw = make_gateway(env={ENV: f"http://127.0.0.1:{port}/v1"})
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as ei:
        c.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 502
    [row] = gw.wait_rows(1)
    assert row["error_kind"] == "upstream_unreachable"


def test_upstream_first_byte_timeout_is_504(make_gateway, upstream):
    upstream.script = lambda req: [("sleep", 3)]
    gw = make_gateway(config_text=f'''
[providers.slow]
kind = "openai"
base_url = "{upstream.base_url}"
first_byte_timeout = "0.3s"
[[routes]]
match = "*"
to = ["slow"]
''')
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIStatusError) as ei:
        c.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "x"}])
    assert ei.value.status_code == 504
    [row] = gw.wait_rows(1)
    assert row["error_kind"] == "upstream_timeout"


def test_upstream_idle_timeout_mid_stream_gives_error_event(make_gateway, upstream):
    body = stream_body(5)
    upstream.script = lambda req: sse_response(body[:200], 1) [:-1] + [("sleep", 3)]
    gw = make_gateway(config_text=f'''
[providers.slow]
kind = "openai"
base_url = "{upstream.base_url}"
idle_timeout = "0.3s"
[[routes]]
match = "*"
to = ["slow"]
''')
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIError):
        for _ in c.chat.completions.create(model="gpt-x", stream=True,
                                           messages=[{"role": "user", "content": "x"}]):
            pass
    [row] = gw.wait_rows(1)
    assert row["error_kind"] == "upstream_timeout"


def test_dead_pooled_connection_is_retried_once(sgw, upstream):
    calls = []

    def script(req):
        calls.append(1)
        if len(calls) == 1:
            from tests.integration.upstreams import CHAT_COMPLETION, json_response
            # answer, then close the kept-alive connection behind the pool's back
            return json_response(CHAT_COMPLETION)[:-1] + [("end",), ("close",)]
        from tests.integration.upstreams import CHAT_COMPLETION, json_response
        return json_response(CHAT_COMPLETION)

    upstream.script = script
    c = openai.OpenAI(base_url=sgw.url + "/v1", api_key="x", max_retries=0)
    c.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "x"}])
    wait_until(lambda: upstream.open_connections == 0, "the provider to close its side")
    r = c.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "x"}])
    assert r.choices[0].message.content
    rows = sgw.wait_rows(2)
    assert [x["status"] for x in rows] == [200, 200]


def test_graceful_shutdown_drains_inflight_stream(make_gateway, upstream):
    body = stream_body(20)
    upstream.script = lambda req: sse_response(body, 20, delay=0.05)
    gw = make_gateway(env={ENV: upstream.base_url})
    s = connect(gw.port)
    s.sendall(post_bytes("/v1/chat/completions", REQ))
    r = Reader(s)
    r._until(b"\r\n\r\n")
    r.buf = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + r.buf
    stopper = threading.Thread(target=gw.stop, kwargs={"grace_s": 10})
    stopper.start()
    st, _, got = r.response()
    stopper.join(15)
    assert st == 200 and got.endswith(b"data: [DONE]\n\n")
    assert got.count(b"data: ") == 22
