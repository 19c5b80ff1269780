"""HTTP/2: prior-knowledge h2c on the HTTP/1.1 port and h2 over TLS by ALPN, driven by
independent clients (curl with nghttp2, httpx with h2 under the OpenAI and Anthropic
SDKs) and by a raw frame-level client (tests/integration/h2client.py) for what polite
clients never do: closed windows, resets, floods."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import threading

import anthropic
import httpx2
import openai
import pytest

from tests.integration import rawhttp
from tests.integration.h2client import H2Client
from tests.integration.test_upstream_http import make_cert
from tests.integration.upstreams import (
    CHAT_COMPLETION,
    FakeUpstream,
    default_script,
    json_response,
    sse_response,
)

MSG = [{"role": "user", "content": "hello there"}]
CHAT = json.dumps({"model": "loopback", "messages": MSG})
STREAM_CHAT = json.dumps({"model": "loopback", "messages": MSG, "stream": True})


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True,
                          text=True, timeout=30)


@pytest.fixture
def gw(make_gateway, loop_kind):
    return make_gateway(loop_kind=loop_kind, config_text='[server]\nloopback_model = "on"\n')


def upstream_env(up: FakeUpstream) -> dict[str, str]:
    return {"TOKENWAY_OPENAI_BASE_URL": up.base_url, "TOKENWAY_OPENAI_API_KEY": "sk-up",
            "TOKENWAY_ROUTES": "gpt-*=>openai"}


# -- independent clients -------------------------------------------------------------------

def test_curl_prior_knowledge_chat_stream_and_errors(gw):
    url = gw.url + "/v1/chat/completions"
    out = curl("--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}", url,
               "-H", "content-type: application/json", "-d", CHAT)
    body, _, tail = out.stdout.rpartition("\n")
    assert tail == "2 200", out
    assert json.loads(body)["choices"][0]["message"]["content"] == "loopback: hello there"
    # A stream: the same SSE framing as on HTTP/1.1, to its [DONE].
    out = curl("--http2-prior-knowledge", "-N", url, "-H", "content-type: application/json",
               "-d", STREAM_CHAT)
    events = [ln for ln in out.stdout.split("\n") if ln.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) > 2
    text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content") or ""
                   for e in events[:-1] if json.loads(e[6:])["choices"])
    assert text == "loopback: hello there"
    # Errors in the client's format: a bad body, an unknown path.
    out = curl("--http2-prior-knowledge", "-w", "\n%{http_code}", url,
               "-H", "content-type: application/json", "-d", "{nope")
    body, _, code = out.stdout.rpartition("\n")
    assert code == "400" and json.loads(body)["error"]["type"] == "invalid_request_error"
    out = curl("--http2-prior-knowledge", "-w", "\n%{http_code}", gw.url + "/v2/nothing")
    body, _, code = out.stdout.rpartition("\n")
    assert code == "404" and json.loads(body)["error"]["code"] == "unknown_url"
    # HTTP/1.1 on the same port is untouched.
    st, _, b = rawhttp.request(url, "POST", json.loads(CHAT))
    assert st == 200 and b"loopback: hello there" in b
    rows = gw.rows()
    assert sorted(r["status"] for r in rows) == [200, 200, 200, 400, 404]
    assert [r["stream"] for r in rows if r["status"] == 200].count(True) == 1


def test_tls_alpn_h2_for_curl_and_the_sdks_http11_still_served(make_gateway, tmp_path,
                                                               loop_kind):
    ca, cert, key = make_cert(tmp_path)
    up = FakeUpstream().start()
    try:
        gw = make_gateway(loop_kind=loop_kind, env=upstream_env(up), config_text=f'''
[server]
loopback_model = "on"
[[listeners]]
address = "127.0.0.1:0"
tls_cert = "{cert}"
tls_key = "{key}"
''')
        port = gw.port
        base = f"https://localhost:{port}"
        resolve = f"localhost:{port}:127.0.0.1"
        out = curl("--http2", "--cacert", str(ca), "--resolve", resolve, "-w",
                   "\n%{http_version}", base + "/v1/chat/completions",
                   "-H", "content-type: application/json", "-d", CHAT)
        assert out.stdout.endswith("\n2"), out
        out = curl("--http1.1", "--cacert", str(ca), "--resolve", resolve, "-w",
                   "\n%{http_version}", base + "/health")
        assert out.stdout.endswith("\n1.1"), out
        versions: list[str] = []
        hooks = {"response": [lambda r: versions.append(r.http_version)]}
        verify = ssl.create_default_context(cafile=str(ca))
        oc = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=10,
                           http_client=openai.DefaultHttpxClient(http2=True, verify=verify,
                                                                 event_hooks=hooks))
        # Through a provider (the fake upstream), whole and streamed.
        r = oc.chat.completions.create(model="gpt-4.1", messages=MSG)
        assert r.choices[0].message.content == CHAT_COMPLETION["choices"][0]["message"][
            "content"]
        chunks = list(oc.chat.completions.create(model="gpt-4.1", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}))
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
        ac = anthropic.Anthropic(base_url=base, api_key="x", max_retries=0, timeout=10,
                                 http_client=anthropic.DefaultHttpxClient(
                                     http2=True, verify=verify, event_hooks=hooks))
        assert "hello there" in ac.messages.create(model="loopback", max_tokens=50,
                                                   messages=MSG).content[0].text
        with ac.messages.stream(model="loopback", max_tokens=50, messages=MSG) as s:
            assert "hello there" in s.get_final_text()
        assert versions == ["HTTP/2"] * 4
        rows = gw.rows()
        assert len(rows) == 5 and {r["status"] for r in rows} == {200}
    finally:
        up.stop()


def test_sdks_over_h2c_prior_knowledge(make_gateway, loop_kind):
    """httpx speaks h2c only with prior knowledge (http1=False)."""
    up = FakeUpstream().start()
    try:
        gw = make_gateway(loop_kind=loop_kind, env=upstream_env(up))
        versions: list[str] = []
        http = httpx2.Client(http1=False, http2=True, timeout=10,
                             event_hooks={"response": [lambda r: versions.append(
                                 r.http_version)]})
        oc = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0,
                           http_client=http)
        assert oc.chat.completions.create(model="gpt-4.1", messages=MSG).usage.total_tokens \
            == 29
        text = "".join(c.choices[0].delta.content or "" for c in oc.chat.completions.create(
            model="gpt-4.1", messages=MSG, stream=True) if c.choices)
        assert text
        assert versions == ["HTTP/2", "HTTP/2"]
        http.close()
    finally:
        up.stop()


def test_100_concurrent_streams_on_one_connection(make_gateway, loop_kind):
    """100 requests on one HTTP/2 connection (httpx multiplexes prior-knowledge h2c
    over one connection) are in the provider at once; each gets its own answer and
    its own row.  (curl 7.88's --parallel fails multiplexed uploads on its side:
    curl/curl#10634.)"""
    n = 100
    arrived = threading.Event()
    seen: list[str] = []

    def script(req):
        if req.method != "POST":  # the model list
            return default_script(req)
        seen.append(req.json()["messages"][0]["content"])
        if len(seen) >= n:
            arrived.set()
        body = dict(CHAT_COMPLETION)
        body["choices"] = [{"index": 0, "message": {"role": "assistant",
                                                    "content": "echo " + seen[-1]},
                            "finish_reason": "stop"}]
        return [("wait", arrived), *json_response(body)]

    up = FakeUpstream(script=script).start()
    try:
        gw = make_gateway(loop_kind=loop_kind, env=upstream_env(up),
                          config_text="[providers.openai]\nkind = \"openai\"\n"
                                      "max_connections = 200\n")
        async def ask_all() -> list[tuple[str, str]]:
            # The async client: the sync one shared by threads can send stream ids
            # out of order, which RFC 9113 §5.1.1 makes a connection error.
            async with httpx2.AsyncClient(http1=False, http2=True, timeout=20) as http:
                async def ask(i: int) -> tuple[str, str]:
                    r = await http.post(gw.url + "/v1/chat/completions", json={
                        "model": "gpt-4.1", "messages": [{"role": "user",
                                                          "content": f"q{i}"}]})
                    assert r.status_code == 200
                    return r.http_version, r.json()["choices"][0]["message"]["content"]

                return list(await asyncio.gather(*(ask(i) for i in range(n))))

        got = asyncio.run(ask_all())
        assert arrived.is_set()
        assert got == [("HTTP/2", f"echo q{i}") for i in range(n)]
        rows = gw.rows()
        assert len(rows) == n and {r["status"] for r in rows} == {200}
        assert len({r["client_addr"] for r in rows}) == 1  # one connection
        assert len({r["request_id"] for r in rows}) == n
    finally:
        up.stop()


# -- frame-level behaviour ------------------------------------------------------------------

def test_preface_split_across_reads_and_many_streams_raw(gw):
    c = H2Client(gw.port, bytewise_preface=True)
    sid = c.request("GET", "/health")
    health = json.loads(c.answer(sid).body)
    assert health["http2"] == {"connections": 1, "streams": 1}  # this one, answering
    sids = [c.chat(content=f"n{i}") for i in range(20)]
    for i, sid in enumerate(sids):
        a = c.answer(sid)
        assert a.status == 200
        assert json.loads(a.body)["choices"][0]["message"]["content"] == f"loopback: n{i}"
    assert len(gw.rows()) == 20


def test_client_reset_cancels_the_provider_request_with_a_row(make_gateway, loop_kind):
    release = threading.Event()

    def script(req):
        if req.method != "POST":  # the model list
            return default_script(req)
        if req.json().get("stream"):
            return [("head", 200, [("content-type", "text/event-stream")]),
                    ("body", b'data: {"id":"x","object":"chat.completion.chunk","created":1,'
                             b'"model":"m","choices":[{"index":0,"delta":{"content":"a"}}]}'
                             b"\n\n"),
                    ("wait", release), ("end",)]
        return [("wait", release), *default_script(req)]

    up = FakeUpstream(script=script).start()
    try:
        gw = make_gateway(loop_kind=loop_kind, env=upstream_env(up))
        c = H2Client(gw.port)
        s1 = c.chat("gpt-4.1", stream=True)
        c.wait(lambda: len(c.answers[s1].body) > 0)  # the stream has started
        s2 = c.chat("gpt-4.1")
        for _ in range(250):
            if len(up.requests) == 2:
                break
            release.wait(0.02)
        assert len(up.requests) == 2
        c.conn.reset_stream(s1)
        c.conn.reset_stream(s2)
        c.send()
        rows = gw.wait_rows(2)
        assert sorted((r["status"], r["error_kind"], r["stream"]) for r in rows) == [
            (499, "cancelled", False), (499, "cancelled", True)]
        # The provider requests were dropped: the gateway closed their connections
        # (the rows are written by the same callback that drops them).
        st, _, health = rawhttp.request(gw.url + "/health")
        assert st == 200 and json.loads(health)["upstream"]["open"] == 0
        # The connection itself goes on.
        release.set()
        s3 = c.chat("loopback")
        assert c.answer(s3).status == 200
    finally:
        release.set()
        up.stop()


def test_goaway_on_shutdown_drains_streams_in_flight(make_gateway, loop_kind):
    release = threading.Event()

    def script(req):
        return [("wait", release), *sse_response(_sse_chat(), 3)]

    up = FakeUpstream(script=script).start()
    try:
        gw = make_gateway(loop_kind=loop_kind, env=upstream_env(up))
        c = H2Client(gw.port)
        sid = c.chat("gpt-4.1", stream=True)
        for _ in range(250):
            if up.requests:
                break
            release.wait(0.02)
        stopper = threading.Thread(target=gw.stop, kwargs={"grace_s": 10})
        stopper.start()
        c.wait(lambda: c.goaway is not None)
        assert c.goaway.error_code == 0 and c.goaway.last_stream_id == sid
        # A stream opened after the GOAWAY is refused (safe to retry).
        late = c.chat("loopback")
        release.set()
        a = c.answer(sid)
        assert a.status == 200 and a.ended and a.body.endswith(b"data: [DONE]\n\n")
        c.wait(lambda: c.answers[late].done)
        assert c.answers[late].reset == 7  # REFUSED_STREAM
        c.wait(lambda: c.closed)
        stopper.join(20)
    finally:
        release.set()
        up.stop()


def _sse_chat() -> bytes:
    ev = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4.1",
          "choices": [{"index": 0, "delta": {"content": "drained"}, "finish_reason": None}]}
    end = dict(ev, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}])
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in (ev, end)) + \
        b"data: [DONE]\n\n"


def test_closed_window_pauses_the_stream_then_window_updates_finish_it(gw):
    """A client that announces a 1 KiB window and acknowledges nothing gets 1 KiB;
    opening the window lets the rest through, to a complete answer."""
    c = H2Client(gw.port, window=1024, ack=False)
    sid = c.chat(stream=True, content="word " * 2000)
    c.wait(lambda: c.received >= 1024)
    assert c.received == 1024
    c.conn.increment_flow_control_window(1 << 24)
    c.conn.increment_flow_control_window(1 << 24, sid)
    c.send()
    a = c.answer(sid)
    assert a.ended and a.body.endswith(b"data: [DONE]\n\n")
    assert len(gw.rows()) == 1


def test_limits_body_size_auth_and_listener_sets(make_gateway, loop_kind):
    gw = make_gateway(loop_kind=loop_kind, env={"TOKENWAY_API_KEYS": "gw-key"},
                      config_text='''
[server]
loopback_model = "on"
max_body_bytes = "64KiB"
[[listeners]]
address = "127.0.0.1:0"
[[listeners]]
address = "127.0.0.1:0"
endpoints = ["anthropic"]
''')
    c = H2Client(gw.port)
    key = [("authorization", "Bearer gw-key")]
    # No key: 401 at the head, the body still on its way is refused by RST_STREAM.
    sid = c.request("POST", "/v1/chat/completions", b"x" * 50_000,
                    [("content-type", "application/json")], end=False)
    a = c.answer(sid)
    assert a.status == 401 and json.loads(a.body)["error"]["code"] == "invalid_api_key"
    assert a.reset == 0  # RST_STREAM NO_ERROR: the rest of the body is not wanted
    # Too large by its content-length, and by what arrives.
    sid = c.request("POST", "/v1/chat/completions", b"x" * 70_000,
                    [("content-type", "application/json"), *key])
    a = c.answer(sid)
    assert a.status == 413 and b"exceeds the limit" in a.body
    sid = c.request("POST", "/v1/messages", b"", [("content-type", "application/json"),
                                                  *key], end=False)
    c.send_body(sid, b"y" * 70_000, end=False)
    a = c.answer(sid)
    assert a.status == 413 and json.loads(a.body)["type"] == "error"  # Anthropic's shape
    # The connection still serves.
    sid = c.chat(headers=key)
    assert c.answer(sid).status == 200
    # The Anthropic-only listener: Chat is 404 there, Messages is served.
    c2 = H2Client(gw.server.bound[1][1])
    sid = c2.chat(headers=key)
    a = c2.answer(sid)
    assert a.status == 404 and b"this address serves anthropic" in a.body
    sid = c2.request("POST", "/v1/messages", json.dumps(
        {"model": "loopback", "max_tokens": 20, "messages": MSG}).encode(),
        [("content-type", "application/json"), ("anthropic-version", "2023-06-01"), *key])
    assert c2.answer(sid).status == 200
    rows = gw.rows()
    assert sorted(r["status"] for r in rows) == [200, 200, 401, 404, 413, 413]


def test_stalled_body_gets_408_on_its_stream(make_gateway, loop_kind):
    gw = make_gateway(loop_kind=loop_kind, config_text='[server]\nloopback_model = "on"\n'
                                                       'body_timeout = "500ms"\n')
    c = H2Client(gw.port)
    sid = c.request("POST", "/v1/chat/completions", b'{"model":',
                    [("content-type", "application/json")], end=False)
    a = c.answer(sid)
    assert a.status == 408 and b"request body" in a.body
    rows = gw.wait_rows(1)
    assert [(r["status"], r["error_kind"]) for r in rows] == [(408, "client_timeout")]


def test_head_and_get_over_h2(gw):
    c = H2Client(gw.port)
    sid = c.request("HEAD", "/health")
    a = c.answer(sid)
    assert a.status == 200 and a.body == b"" and int(a.headers[b"content-length"]) > 0
    sid = c.request("GET", "/v1/models")
    a = c.answer(sid)
    assert a.status == 200 and b"loopback" in a.body


def test_heartbeats_during_silence_over_h2(make_gateway, loop_kind):
    """A provider silent for a second mid-stream: the keep-alive comments of HTTP/1.1
    (`: ping`, between whole events) reach an HTTP/2 stream too."""
    first, rest = _sse_chat().split(b"\n\n", 1)

    def script(req):
        if req.method != "POST":
            return default_script(req)
        return [("head", 200, [("content-type", "text/event-stream")]),
                ("body", first + b"\n\n"), ("sleep", 1.0), ("body", rest), ("end",)]

    up = FakeUpstream(script=script).start()
    try:
        gw = make_gateway(loop_kind=loop_kind, env=upstream_env(up),
                          config_text='[routing]\nheartbeat = "200ms"\n')
        c = H2Client(gw.port)
        a = c.answer(c.chat("gpt-4.1", stream=True))
        assert a.status == 200 and a.body.endswith(b"data: [DONE]\n\n")
        pieces = bytes(a.body).split(b"\n\n")
        assert b": ping" in pieces
        assert all(p == b"" or p.startswith((b"data: ", b": ping")) for p in pieces)
    finally:
        up.stop()


def test_streams_still_running_at_the_end_of_the_grace_end_with_an_error_event(
        make_gateway, loop_kind):
    from proxy.ledger import query_rows

    release = threading.Event()
    first, _ = _sse_chat().split(b"\n\n", 1)

    def script(req):
        if req.method != "POST":
            return default_script(req)
        return [("head", 200, [("content-type", "text/event-stream")]),
                ("body", first + b"\n\n"), ("wait", release), ("end",)]

    up = FakeUpstream(script=script).start()
    try:
        gw = make_gateway(loop_kind=loop_kind, env=upstream_env(up))
        c = H2Client(gw.port)
        sid = c.chat("gpt-4.1", stream=True)
        c.wait(lambda: len(c.answers[sid].body) > 0)
        stopper = threading.Thread(target=gw.stop, kwargs={"grace_s": 0.3})
        stopper.start()
        a = c.answer(sid)
        stopper.join(20)
        assert a.status == 200 and a.ended and b"shutting down" in a.body
        assert c.goaway is not None and c.goaway.last_stream_id == sid
        rows = query_rows(gw.db)
        assert [(r["status"], r["error_kind"]) for r in rows] == [(200, "shutdown")]
    finally:
        release.set()
        up.stop()


def test_max_concurrent_streams_is_announced_and_checked(make_gateway, tmp_path):
    from proxy.config import ConfigError, load_config

    gw = make_gateway(config_text='[server]\nloopback_model = "on"\n'
                                  'max_concurrent_streams = 2\n')
    c = H2Client(gw.port)
    c.sync()
    assert c.conn.remote_settings.max_concurrent_streams == 2
    assert c.conn.remote_settings.max_header_list_size == 64 * 1024
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nmax_concurrent_streams = 0\n")
    with pytest.raises(ConfigError, match="server.max_concurrent_streams"):
        load_config(str(bad))


def test_a_ledger_behind_holds_new_http2_requests_until_it_catches_up(tmp_path, loop_kind):
    """While the ledger is behind, complete HTTP/2 requests (and refusals) wait on their
    connection, which keeps reading for the streams in flight; then all are answered."""
    from proxy.ledger import Ledger
    from tests.conftest import RunningGateway
    from tests.proxy.ledger_rows import BlockingBackend, wait_until

    gw = RunningGateway(tmp_path, loop_kind=loop_kind)
    backend = BlockingBackend(gw.db)
    gw.ledger = Ledger(gw.db, flush_ms=1, batch_rows=1, high_water_rows=3, low_water_rows=1,
                       backend=backend)
    gw.start()
    try:
        c = H2Client(gw.port)
        sent = 0
        while not gw.call(lambda: gw.server.holding):
            assert c.answer(c.chat()).status == 200
            sent += 1
            assert sent < 50
        late = c.chat(content="late")
        refused = c.request("GET", "/nowhere")
        conn = next(iter(gw.call(lambda: list(gw.server.connections))))
        wait_until(lambda: gw.call(lambda: len(conn.waiting)) == 2, "both held")
        c.sync()  # the connection still reads (and answers PINGs)
        assert not c.answers[late].done and not c.answers[refused].done
        backend.release.set()
        assert c.answer(late).status == 200 and b"loopback: late" in c.answers[late].body
        assert c.answer(refused).status == 404
        rows = gw.wait_rows(sent + 2)
        assert sorted(r["status"] for r in rows) == [200] * (sent + 1) + [404]
    finally:
        backend.release.set()
        gw.stop()
