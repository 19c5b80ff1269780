"""Providers over HTTP/2 (``[providers.X] http2``): real SDKs as clients of the
gateway, a fake HTTP/2 provider (tests/integration/upstreams_h2.py) on real
sockets, h2c with prior knowledge and TLS with ALPN."""

from __future__ import annotations

import socket
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

import anthropic
import openai
import pytest

from tests.conftest import close_at_end
from tests.integration.rawhttp import Reader, connect, post_bytes
from tests.integration.test_streams import REQ, stream_body
from tests.integration.test_upstream_http import make_cert
from tests.integration.upstreams import (
    CHAT_COMPLETION,
    FakeUpstream,
    json_response,
    sse_response,
)
from tests.integration.upstreams_h2 import FakeH2Upstream
from tests.proxy.ledger_rows import wait_until

HELLO = CHAT_COMPLETION["choices"][0]["message"]["content"]
MESSAGES = [{"role": "user", "content": "x"}]
CANCEL, REFUSED_STREAM = 0x8, 0x7  # RST_STREAM error codes (RFC 9113 §7)


def config(providers: dict[str, tuple[str, str]], route: list[str] | None = None,
           extra: str = "") -> str:
    """Providers by name -> (base_url, http2 value); one route to them in order."""
    out = ""
    for name, (url, http2) in providers.items():
        out += (f'[providers.{name}]\nkind = "openai"\nbase_url = "{url}"\n'
                f'api_key = "sk-{name}"\nhttp2 = {http2}\nlist_models = false\n{extra}\n')
    to = ", ".join(f'"{n}"' for n in (route or list(providers)))
    return out + f'[[routes]]\nmatch = "*"\nto = [{to}]\n'


@pytest.fixture
def h2up():
    up = FakeH2Upstream().start()
    yield up
    up.stop()


def oai(gw) -> openai.OpenAI:
    return close_at_end(openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0))


def test_chat_whole_and_streamed_over_h2c(make_gateway, h2up, loop_kind):
    gw = make_gateway(loop_kind=loop_kind, config_text=config({"p": (h2up.base_url, "true")}))
    c = oai(gw)
    r = c.chat.completions.create(model="gpt-x", messages=MESSAGES)
    assert r.choices[0].message.content == HELLO and r.usage.prompt_tokens == 19
    chunks = list(c.chat.completions.create(model="gpt-x", messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "The capital of France is Paris."
    assert chunks[-1].usage.completion_tokens == 8
    # Both requests on one connection, as two streams.
    assert h2up.connections == 1 and h2up.streams_per_connection == [2]
    sent = h2up.requests[0].headers
    assert sent[":authority"] == f"127.0.0.1:{h2up.port}" and sent[":scheme"] == "http"
    assert sent[":path"] == "/v1/chat/completions" and sent["authorization"] == "Bearer sk-p"
    assert sent["content-length"] == str(len(h2up.requests[0].body))
    assert not {"host", "connection", "transfer-encoding", "keep-alive"} & set(sent)
    rows = gw.wait_rows(2)
    assert [(r["status"], r["provider"], r["input_tokens"]) for r in rows] == [
        (200, "p", 19), (200, "p", 1536)]


def test_a_request_body_larger_than_the_providers_windows(make_gateway, h2up):
    # 300 KB: more than the stream's and the connection's initial windows (64 KiB):
    # the rest goes out as the provider's WINDOW_UPDATEs come.
    text = "x" * 300_000
    gw = make_gateway(config_text=config({"p": (h2up.base_url, "true")}))
    r = oai(gw).chat.completions.create(model="gpt-x",
                                        messages=[{"role": "user", "content": text}])
    assert r.choices[0].message.content == HELLO
    assert h2up.requests[0].json()["messages"][0]["content"] == text


def test_an_http1_server_behind_http2_true_is_a_clear_502(make_gateway, upstream):
    gw = make_gateway(config_text=config({"p": (upstream.base_url, "true")}))
    with pytest.raises(openai.APIStatusError) as info:
        oai(gw).chat.completions.create(model="gpt-x", messages=MESSAGES)
    assert info.value.status_code == 502 and "HTTP/2" in info.value.message
    # It saw the connection preface (PRI * HTTP/2.0), never a request.
    assert {r.method for r in upstream.requests} == {"PRI"}


def test_anthropic_client_to_a_chat_provider_over_h2(make_gateway, h2up, loop_kind):
    gw = make_gateway(loop_kind=loop_kind, config_text=config({"p": (h2up.base_url, "true")}))
    c = close_at_end(anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0))
    m = c.messages.create(model="claude-x", max_tokens=64, messages=MESSAGES)
    # Chat counts cached tokens in prompt_tokens, Anthropic apart: 19 = 15 + 4.
    assert m.content[0].text == HELLO and m.usage.input_tokens == 15
    assert m.usage.cache_read_input_tokens == 4
    with c.messages.stream(model="claude-x", max_tokens=64, messages=MESSAGES) as s:
        assert s.get_final_text() == "The capital of France is Paris."
    assert h2up.connections == 1
    assert all(r.path == "/v1/chat/completions" for r in h2up.requests)
    assert [r["status"] for r in gw.wait_rows(2)] == [200, 200]


def test_fifty_concurrent_requests_share_one_connection(make_gateway, h2up, loop_kind):
    n = 50
    everyone = threading.Event()

    def script(req):
        if len(h2up.requests) >= n:
            everyone.set()
        # Each answer waits for all 50 to be in flight at once.
        return [("wait", everyone)] + json_response(CHAT_COMPLETION)

    h2up.script = script
    gw = make_gateway(loop_kind=loop_kind, config_text=config({"p": (h2up.base_url, "true")}))
    c = oai(gw)
    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(
            lambda i: c.chat.completions.with_raw_response.create(
                model="gpt-x", messages=[{"role": "user", "content": f"q{i}"}]), range(n)))
    assert everyone.is_set()
    assert all(a.parse().choices[0].message.content == HELLO for a in answers)
    assert h2up.connections == 1 and h2up.streams_per_connection == [n]
    rows = gw.wait_rows(n)
    assert len(rows) == n and all(r["status"] == 200 and r["provider"] == "p" for r in rows)
    assert len({r["request_id"] for r in rows}) == n
    assert {a.headers["x-request-id"] for a in answers} == {r["request_id"] for r in rows}


def test_the_providers_stream_limit_opens_more_connections_within_the_cap(
        make_gateway, loop_kind):
    # 10 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS), 2 connections at
    # most (max_connections): of 25 requests, 20 are in flight and 5 wait for a stream.
    up = FakeH2Upstream(max_streams=10).start()
    in_flight = threading.Event()

    def script(req):
        if len(up.requests) >= 20:
            in_flight.set()
        return [("wait", in_flight)] + json_response(CHAT_COMPLETION)

    up.script = script
    try:
        gw = make_gateway(loop_kind=loop_kind, config_text=config(
            {"p": (up.base_url, "true")}, extra="max_connections = 2"))
        c = oai(gw)
        with ThreadPoolExecutor(25) as pool:
            got = list(pool.map(lambda _: c.chat.completions.create(
                model="gpt-x", messages=MESSAGES).choices[0].message.content, range(25)))
        assert got == [HELLO] * 25
        assert up.connections == 2 and sum(up.streams_per_connection) == 25
        assert up.max_active == 10
        assert [r["status"] for r in gw.wait_rows(25)] == [200] * 25
    finally:
        up.stop()


def test_a_lost_connection_fails_over_waiting_streams_and_cuts_running_ones(
        make_gateway, h2up, upstream, loop_kind):
    kill = threading.Event()
    first = stream_body(3).split(b"\n\n", 1)[0] + b"\n\n"

    def script(req):
        if req.json().get("stream"):
            return [("head", 200, [("content-type", "text/event-stream")]), ("body", first),
                    ("wait", kill), ("close",)]
        return [("wait", threading.Event())]  # no answer: the connection goes first

    h2up.script = script
    gw = make_gateway(loop_kind=loop_kind, config_text=config(
        {"a": (h2up.base_url, "true"), "b": (upstream.base_url, "false")}))
    c = oai(gw)
    read_first = threading.Semaphore(0)

    def streamed(_: int) -> str:
        s = c.chat.completions.create(model="gpt-x", messages=MESSAGES, stream=True)
        it = iter(s)
        next(it)
        read_first.release()
        with pytest.raises(openai.APIError) as info:
            for _ in it:
                pass
        return str(info.value)

    def whole(_: int) -> str:
        return c.chat.completions.create(model="gpt-x", messages=MESSAGES
                                         ).choices[0].message.content or ""

    with ThreadPoolExecutor(5) as pool:
        cut = [pool.submit(streamed, i) for i in range(2)]
        served = [pool.submit(whole, i) for i in range(3)]
        for _ in range(2):
            assert read_first.acquire(timeout=10)
        wait_until(lambda: len(h2up.requests) == 5, "five requests at the HTTP/2 provider")
        kill.set()
        assert all("upstream stream failed" in f.result(timeout=10) for f in cut)
        assert [f.result(timeout=10) for f in served] == [HELLO] * 3
    assert h2up.connections == 1 and len(upstream.requests) == 3
    rows = gw.wait_rows(5)
    failed_over = [r for r in rows if r["provider"] == "b"]
    assert [(r["status"], r["attempts"]) for r in failed_over] == [(200, 2)] * 3
    cut_rows = [r for r in rows if r["provider"] == "a"]
    assert [r["error_kind"] for r in cut_rows] == ["stream_cut"] * 2


def test_goaway_resends_the_streams_it_did_not_process(make_gateway, h2up, loop_kind):
    n = 3
    everyone = threading.Event()

    def script(req):
        count = len(h2up.requests)
        if count == n:
            everyone.set()
        if count == 1:
            # The lowest stream id: GOAWAY names it last, then it is answered.
            return [("wait", everyone), ("goaway", None)] + json_response(CHAT_COMPLETION)
        if count <= n:
            return [("wait", threading.Event())]  # above the GOAWAY: never processed
        return json_response(CHAT_COMPLETION)  # sent again, on a new connection

    h2up.script = script
    gw = make_gateway(loop_kind=loop_kind, config_text=config({"p": (h2up.base_url, "true")}))
    c = oai(gw)
    with ThreadPoolExecutor(n) as pool:
        got = list(pool.map(lambda _: c.chat.completions.create(
            model="gpt-x", messages=MESSAGES).choices[0].message.content, range(n)))
    assert got == [HELLO] * n
    assert h2up.connections == 2 and len(h2up.requests) == n + 2
    rows = gw.wait_rows(n)
    # Resending a request the provider never processed is not a failover attempt.
    assert [(r["status"], r["attempts"], r["error_kind"]) for r in rows] == [(200, 1, None)] * n


def test_a_refused_stream_is_resent(make_gateway, h2up):
    # REFUSED_STREAM (RFC 9113 §8.7): the provider did not process it.
    h2up.script = lambda req: ([("reset", REFUSED_STREAM)] if len(h2up.requests) == 1
                               else json_response(CHAT_COMPLETION))
    gw = make_gateway(config_text=config({"p": (h2up.base_url, "true")}))
    r = oai(gw).chat.completions.create(model="gpt-x", messages=MESSAGES)
    assert r.choices[0].message.content == HELLO
    assert len(h2up.requests) == 2 and h2up.connections == 1
    [row] = gw.wait_rows(1)
    assert (row["status"], row["attempts"], row["error_kind"]) == (200, 1, None)


def test_a_slow_client_closes_its_streams_window_only(make_gateway, h2up):
    n = 16000
    body = stream_body(n, pad=1000)  # ~16 MB of events
    frames = [body[i:i + 65536] for i in range(0, len(body), 65536)]

    def script(req):
        if req.json().get("stream"):
            return ([("head", 200, [("content-type", "text/event-stream")])]
                    + [("body", f) for f in frames] + [("end",)])
        return json_response(CHAT_COMPLETION)

    h2up.script = script
    gw = make_gateway(config_text=config({"p": (h2up.base_url, "true")}))
    s = connect(gw.port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.sendall(post_bytes("/v1/chat/completions", REQ))

    def held() -> list[int]:
        return [st.held for c in gw.server.state.pool._all for st in c.streams.values()
                if st.paused]

    # The client reads nothing: the gateway stops acknowledging the stream's DATA
    # and the provider runs out of window.
    wait_until(lambda: h2up.blocked and gw.call(held), "the provider's stream to be blocked")
    sent = h2up.sent[next(iter(h2up.blocked))]
    assert sent < len(body) // 2, sent
    assert all(h <= 65535 for h in gw.call(held))  # at most the stream's window
    # Other streams on the connection are not held up by it.
    r = oai(gw).chat.completions.create(model="gpt-x", messages=MESSAGES)
    assert r.choices[0].message.content == HELLO and h2up.connections == 1
    # The client still reads nothing: the stream is still held back.
    assert h2up.sent[next(iter(h2up.blocked))] < len(body) // 2
    assert all(h <= 65535 for h in gw.call(held))
    st, _, got = Reader(s).response()
    s.close()
    assert st == 200 and got.count(b"data: ") == n + 2
    rows = gw.wait_rows(2)
    assert sorted(r["output_tokens"] for r in rows) == [10, n]


def test_client_leaving_resets_its_stream_and_the_connection_stays(make_gateway, h2up):
    h2up.script = lambda req: (sse_response(stream_body(50), 50, delay=0.05)
                               if req.json().get("stream") else json_response(CHAT_COMPLETION))
    gw = make_gateway(config_text=config({"p": (h2up.base_url, "true")}))
    s = connect(gw.port)
    s.sendall(post_bytes("/v1/chat/completions", REQ))
    Reader(s).response(head_only=True)
    s.close()  # the gateway notices at its next write to this client
    wait_until(lambda: h2up.resets, "the gateway to reset the stream")
    assert [code for _, _, code in h2up.resets] == [CANCEL]
    assert gw.wait_rows(1)[0]["status"] == 499
    r = oai(gw).chat.completions.create(model="gpt-x", messages=MESSAGES)
    assert r.choices[0].message.content == HELLO and h2up.connections == 1


def test_first_byte_timeout_resets_one_stream(make_gateway, h2up):
    h2up.script = lambda req: ([("wait", threading.Event())] if "slow" in req.body.decode()
                               else json_response(CHAT_COMPLETION))
    gw = make_gateway(config_text=config({"p": (h2up.base_url, "true")},
                                         extra='first_byte_timeout = "300ms"'))
    c = oai(gw)
    with pytest.raises(openai.APIStatusError) as info:
        c.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "slow"}])
    assert info.value.status_code == 504
    # Each of the three attempts (routing.max_attempts) timed out and was reset.
    wait_until(lambda: len(h2up.resets) == 3, "the streams' resets")
    assert [code for _, _, code in h2up.resets] == [CANCEL] * 3
    assert c.chat.completions.create(model="gpt-x", messages=MESSAGES
                                     ).choices[0].message.content == HELLO
    assert h2up.connections == 1


# TLS ----------------------------------------------------------------------------------

def tls_context(cert, key, alpn: list[str] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


@pytest.mark.parametrize("http2", ["true", '"auto"'])
def test_tls_alpn_h2(make_gateway, tmp_path, loop_kind, http2):
    ca, cert, key = make_cert(tmp_path)
    up = FakeH2Upstream(ssl_context=tls_context(cert, key, ["h2"])).start()
    try:
        gw = make_gateway(loop_kind=loop_kind, config_text=config(
            {"p": (up.base_url, http2)}, extra=f'ca_bundle = "{ca}"'))
        c = oai(gw)
        for _ in range(3):
            assert c.chat.completions.create(
                model="gpt-x", messages=MESSAGES).choices[0].message.content == HELLO
        assert up.connections == 1 and up.streams_per_connection == [3]
        assert up.requests[0].headers[":scheme"] == "https"
        assert up.requests[0].headers[":authority"] == f"localhost:{up.port}"
    finally:
        up.stop()


def test_tls_auto_falls_back_to_http1(make_gateway, tmp_path):
    ca, cert, key = make_cert(tmp_path)
    up = FakeUpstream(ssl_context=tls_context(cert, key, ["http/1.1"])).start()
    try:
        gw = make_gateway(config_text=config({"p": (up.base_url, '"auto"')},
                                             extra=f'ca_bundle = "{ca}"'))
        c = oai(gw)
        for _ in range(3):
            assert c.chat.completions.create(
                model="gpt-x", messages=MESSAGES).choices[0].message.content == HELLO
        assert up.connections == 1  # the HTTP/1.1 connection is pooled as usual
    finally:
        up.stop()


def test_tls_http2_true_refuses_an_http1_only_provider(make_gateway, tmp_path):
    ca, cert, key = make_cert(tmp_path)
    up = FakeUpstream(ssl_context=tls_context(cert, key, ["http/1.1"])).start()
    try:
        gw = make_gateway(config_text=config({"p": (up.base_url, "true")},
                                             extra=f'ca_bundle = "{ca}"'))
        with pytest.raises(openai.APIStatusError) as info:
            oai(gw).chat.completions.create(model="gpt-x", messages=MESSAGES)
        assert info.value.status_code == 502 and "does not speak HTTP/2" in info.value.message
        assert gw.wait_rows(1)[0]["error_kind"] == "upstream_unreachable"
        assert up.requests == []
    finally:
        up.stop()
