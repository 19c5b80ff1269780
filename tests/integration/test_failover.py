"""Routing and resilience: failover, retries, cooldowns, circuit breaker, deadlines,
heartbeats, drain vs cancel, concurrency limits and reload, against fake providers
that fail on cue."""

from __future__ import annotations

import json
import socket
import threading
import time

import anthropic
import openai
import pytest

from tests.integration.rawhttp import Reader, connect, post_bytes
from tests.integration.upstreams import (
    CHAT_COMPLETION,
    FakeUpstream,
    json_response,
    sse_response,
    transcript,
)

MSG = [{"role": "user", "content": "hi"}]


def wait_until(condition, limit: int = 2000) -> bool:
    """Poll ``condition`` (a state of another thread) up to ``limit`` times."""
    for _ in range(limit):
        if condition():
            return True
        time.sleep(0.005)
    return False


def dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def two_providers(a_url: str, b_url: str, routing: str = "", extra_a: str = "",
                  weights: str = "") -> str:
    return f'''
[routing]
backoff = "10ms"
{routing}
[providers.a]
kind = "openai"
base_url = "{a_url}"
api_key = "ka"
first_byte_timeout = "2s"
{extra_a}
[providers.b]
kind = "openai"
base_url = "{b_url}"
api_key = "kb"
[[routes]]
match = "*"
to = ["a", "b:model-b"]
{weights}
'''


@pytest.fixture
def b():
    up = FakeUpstream(script=lambda req: json_response(CHAT_COMPLETION)).start()
    yield up
    up.stop()


@pytest.fixture
def a():
    up = FakeUpstream().start()
    yield up
    up.stop()


def chat(gw, **kw):
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)
    return c.chat.completions.create(model="m", messages=MSG, **kw)


def test_refused_connection_fails_over_in_order(make_gateway, b, loop_kind):
    gw = make_gateway(loop_kind=loop_kind, config_text=two_providers(
        f"http://127.0.0.1:{dead_port()}/v1", b.base_url))
    r = chat(gw)
    assert r.choices[0].message.content == "Hello from upstream!"
    assert b.requests[-1].json()["model"] == "model-b"  # the target's model rename
    [row] = gw.wait_rows(1)
    assert row["attempts"] == 2 and row["provider"] == "b" and row["status"] == 200


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 529])
def test_retryable_status_fails_over(make_gateway, a, b, status):
    a.script = lambda req: json_response({"error": {"message": "busy", "type": "x",
                                                    "param": None, "code": None}}, status)
    gw = make_gateway(config_text=two_providers(a.base_url, b.base_url))
    assert chat(gw).choices[0].message.content
    assert len(a.requests) == 1 and len(b.requests) == 1
    assert gw.wait_rows(1)[0]["attempts"] == 2


def test_400_is_not_retried_and_relayed(make_gateway, a, b):
    err = {"error": {"message": "bad param", "type": "invalid_request_error",
                     "param": "temperature", "code": None}}
    a.script = lambda req: json_response(err, 400)
    gw = make_gateway(config_text=two_providers(a.base_url, b.base_url))
    with pytest.raises(openai.BadRequestError) as ei:
        chat(gw)
    assert ei.value.body["param"] == "temperature"
    assert len(a.requests) == 1 and len(b.requests) == 0
    row = gw.wait_rows(1)[0]
    assert row["attempts"] == 1 and row["status"] == 400 and row["error_kind"] == "upstream_error"


def test_retry_after_puts_target_in_cooldown(make_gateway, a, b):
    a.script = lambda req: json_response({"error": {"message": "slow down", "type": "requests",
                                                    "param": None, "code": "rate_limit_exceeded"}},
                                         429, [("retry-after", "30")])
    gw = make_gateway(config_text=two_providers(a.base_url, b.base_url))
    chat(gw)
    chat(gw)
    chat(gw)
    assert len(a.requests) == 1  # cooling down: later requests go straight to b
    assert len(b.requests) == 3
    health = json.loads(__import__("urllib.request").request.urlopen(gw.url + "/health").read())
    assert health["targets"]["a"]["retry_in_s"] > 20


def test_circuit_opens_then_half_open_probe_recovers(make_gateway, a, b):
    fail = {"on": True}

    def script(req):
        if fail["on"]:
            return json_response({"error": {"message": "down", "type": "server_error",
                                            "param": None, "code": None}}, 503)
        return json_response(CHAT_COMPLETION)

    a.script = script
    gw = make_gateway(config_text=two_providers(
        a.base_url, b.base_url, 'failure_threshold = 2\ncooldown = "300ms"'))
    for _ in range(4):
        chat(gw)
    assert len(a.requests) == 2  # opened after two consecutive failures
    def health() -> dict:
        return gw.call(lambda: gw.server.state.health.snapshot(gw.server.loop.time()))

    assert health()["a"]["state"] == "open"
    fail["on"] = False
    # The gateway's clock passes the 300 ms cooldown: one probe may go to a.
    assert wait_until(lambda: health()["a"]["state"] == "half_open")
    chat(gw)  # the half-open probe goes to a and succeeds
    assert len(a.requests) == 3
    chat(gw)
    assert len(a.requests) == 4  # closed again: a is first choice
    assert health()["a"]["state"] == "closed"


def test_all_targets_failing_gives_last_error_after_bounded_attempts(make_gateway, a):
    a.script = lambda req: json_response({"error": {"message": "overloaded", "type": "server_error",
                                                    "param": None, "code": None}}, 503)
    gw = make_gateway(config_text=f'''
[routing]
max_attempts = 3
backoff = "10ms"
[providers.a]
kind = "openai"
base_url = "{a.base_url}"
[[routes]]
match = "*"
to = ["a"]
''')
    with pytest.raises(openai.InternalServerError) as ei:
        chat(gw)
    assert ei.value.status_code == 503
    assert len(a.requests) == 3  # the same target, retried with backoff, bounded
    assert gw.wait_rows(1)[0]["attempts"] == 3


def test_deadline_is_respected(make_gateway, a, b):
    a.script = lambda req: [("sleep", 5)]
    gw = make_gateway(config_text=two_providers(a.base_url, b.base_url, 'deadline = "400ms"'))
    with pytest.raises(openai.APIStatusError) as ei:
        chat(gw)
    # Had the gateway waited for a's 2 s first-byte timeout instead, it would have failed
    # over to b, which answers 200.
    assert ei.value.status_code == 504
    assert len(a.requests) == 1 and len(b.requests) == 0
    [row] = gw.wait_rows(1)
    assert (row["attempts"], row["error_kind"]) == (1, "upstream_timeout")


def test_garbage_from_provider_fails_over(make_gateway, a, b):
    a.script = lambda req: [("raw", b"this is not HTTP at all\r\n\r\n"), ("close",)]
    gw = make_gateway(config_text=two_providers(a.base_url, b.base_url))
    assert chat(gw).choices[0].message.content
    assert gw.wait_rows(1)[0]["provider"] == "b"


def test_weights_spread_the_first_choice(make_gateway, a, b):
    a.script = lambda req: json_response(CHAT_COMPLETION)
    gw = make_gateway(config_text=two_providers(a.base_url, b.base_url, weights="weights = [1, 3]"))
    for _ in range(40):
        chat(gw)
    assert len(a.requests) + len(b.requests) == 40
    assert 3 <= len(a.requests) <= 20  # about a quarter, never all or none


def test_concurrency_limit_rejects_when_queue_full(make_gateway, a):
    a.script = lambda req: [("sleep", 0.6)] + json_response(CHAT_COMPLETION)
    gw = make_gateway(config_text=f'''
[routing]
max_attempts = 1
[providers.a]
kind = "openai"
base_url = "{a.base_url}"
max_concurrency = 1
queue_size = 0
[[routes]]
match = "*"
to = ["a"]
''')
    results = []

    def one():
        try:
            chat(gw)
            results.append(200)
        except openai.APIStatusError as exc:
            results.append((exc.status_code, exc.response.headers.get("retry-after")))

    threads = [threading.Thread(target=one) for _ in range(2)]
    threads[0].start()
    # The first request holds the one slot while a takes 0.6 s to answer it.
    assert wait_until(lambda: len(a.requests) == 1)
    threads[1].start()
    for t in threads:
        t.join(10)
    assert 200 in results and (503, "1") in results


def test_concurrency_queue_waits_for_a_slot(make_gateway, a):
    a.script = lambda req: [("sleep", 0.3)] + json_response(CHAT_COMPLETION)
    gw = make_gateway(config_text=f'''
[providers.a]
kind = "openai"
base_url = "{a.base_url}"
max_concurrency = 1
queue_size = 4
[[routes]]
match = "*"
to = ["a"]
''')
    results = []
    threads = [threading.Thread(target=lambda: results.append(chat(gw).id)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 3
    assert a.connections == 1  # one at a time over one kept-alive connection


# -- streams ------------------------------------------------------------------------

def cut_chat_stream(req):
    data = transcript("openai_chat_stream_include_usage.sse")
    return sse_response(data[:900], 3)[:-1] + [("close",)]


def cut_anthropic_stream(req):
    data = transcript("anthropic_stream_text.sse")
    return sse_response(data[:700], 3)[:-1] + [("close",)]


def test_mid_stream_cut_openai_client_translated(make_gateway, a):
    a.script = cut_anthropic_stream
    gw = make_gateway(env={"TOKENWAY_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{a.port}",
                           "TOKENWAY_ANTHROPIC_API_KEY": "k", "TOKENWAY_ROUTES": "*=>anthropic"})
    with pytest.raises(openai.APIError):
        for _ in chat(gw, stream=True):
            pass
    row = gw.wait_rows(1)[0]
    assert row["error_kind"] == "stream_cut" and row["attempts"] == 1


@pytest.mark.parametrize("upstream_kind", ["openai", "anthropic"])
def test_mid_stream_cut_anthropic_client(make_gateway, a, upstream_kind):
    if upstream_kind == "openai":
        a.script = cut_chat_stream
        env = {"TOKENWAY_OPENAI_BASE_URL": a.base_url, "TOKENWAY_ROUTES": "*=>openai"}
    else:
        a.script = cut_anthropic_stream
        env = {"TOKENWAY_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{a.port}",
               "TOKENWAY_ANTHROPIC_API_KEY": "k", "TOKENWAY_ROUTES": "*=>anthropic"}
    gw = make_gateway(env=env)
    c = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.APIError):
        with c.messages.stream(model="claude-x", max_tokens=50, messages=MSG) as s:
            for _ in s:
                pass
    assert gw.wait_rows(1)[0]["error_kind"] == "stream_cut"


@pytest.mark.parametrize("upstream_kind", ["openai-responses", "anthropic"])
def test_mid_stream_cut_responses_client(make_gateway, a, upstream_kind):
    if upstream_kind == "anthropic":
        a.script = cut_anthropic_stream
        env = {"TOKENWAY_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{a.port}",
               "TOKENWAY_ANTHROPIC_API_KEY": "k", "TOKENWAY_ROUTES": "*=>anthropic"}
    else:
        data = transcript("responses_stream_text.sse")
        a.script = lambda req: sse_response(data[:1500], 3)[:-1] + [("close",)]
        env = {"TOKENWAY_OPENAI_BASE_URL": a.base_url, "TOKENWAY_ROUTES": "*=>openai"}
    gw = make_gateway(env=env)
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    events = []
    with c.responses.stream(model="gpt-x", input="hi") as s:
        for ev in s:
            events.append(ev.type)
        # no response.completed arrived: the helper refuses to invent a final response
        with pytest.raises(RuntimeError, match="response.completed"):
            s.get_final_response()
    assert "response.completed" not in events
    assert events[-1] in ("error", "response.failed"), events
    assert gw.wait_rows(1)[0]["error_kind"] == "stream_cut"


def slow_stream(n: int, delay: float) -> bytes:
    frames = []
    for i in range(n):
        frames.append(b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
                      b'"choices":[{"index":0,"delta":{"content":"t%d "},'
                      b'"finish_reason":null}]}\n\n' % i)
    frames.append(b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
                  b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    frames.append(b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
                  b'"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":%d,"total_tokens":%d}}\n\n'
                  % (n, n + 3))
    frames.append(b"data: [DONE]\n\n")
    acts = [("head", 200, [("content-type", "text/event-stream")])]
    for f in frames:
        acts += [("body", f), ("sleep", delay)]
    return acts + [("end",)]


def test_heartbeats_during_silence(make_gateway, a):
    a.script = lambda req: ([("head", 200, [("content-type", "text/event-stream")]),
                             ("body", slow_stream(1, 0)[1][1]), ("sleep", 1.0)]
                            + slow_stream(1, 0)[3:])
    gw = make_gateway(env={"TOKENWAY_OPENAI_BASE_URL": a.base_url, "TOKENWAY_ROUTES": "*=>openai"},
                      config_text='[routing]\nheartbeat = "200ms"\n')
    s = connect(gw.port)
    s.sendall(post_bytes("/v1/chat/completions",
                         json.dumps({"model": "m", "messages": MSG, "stream": True}).encode()))
    st, _, body = Reader(s).response()
    assert st == 200
    pings = body.count(b": ping\n\n")
    assert 2 <= pings <= 6, body
    # keep-alives sit between whole events only
    for piece in body.split(b"\n\n"):
        assert piece == b"" or piece.startswith((b"data: ", b": ping"))
    # and the SDK still parses the stream
    chunks = list(chat(gw, stream=True))
    assert chunks


def test_heartbeat_schedule_with_a_fake_clock():
    from proxy.exchange import heartbeat_due

    assert heartbeat_due(last_write=10.0, now=10.0, interval=15.0) == 15.0
    assert heartbeat_due(last_write=10.0, now=24.0, interval=15.0) == pytest.approx(1.0)
    assert heartbeat_due(last_write=10.0, now=25.0, interval=15.0) <= 0


@pytest.mark.parametrize("mode", ["cancel", "drain"])
def test_client_disconnect_cancel_or_drain(make_gateway, a, mode):
    a.script = lambda req: slow_stream(20, 0.03)
    gw = make_gateway(env={"TOKENWAY_OPENAI_BASE_URL": a.base_url, "TOKENWAY_ROUTES": "*=>openai"},
                      config_text=f'[routing]\non_client_disconnect = "{mode}"\n')
    s = connect(gw.port)
    s.sendall(post_bytes("/v1/chat/completions",
                         json.dumps({"model": "m", "messages": MSG, "stream": True}).encode()))
    Reader(s)._until(b"data: ")
    s.close()
    row = gw.wait_rows(1, timeout_s=5)[0]
    assert row["status"] == 499 and row["error_kind"] == "cancelled"
    if mode == "drain":
        assert row["output_tokens"] == 20  # the provider's real usage, read to the end
    else:
        assert row["output_tokens"] is None


def test_reload_under_load_drops_no_stream(make_gateway, a, b):
    a.script = lambda req: slow_stream(30, 0.02)
    cfg_a = f'''
[providers.a]
kind = "openai"
base_url = "{a.base_url}"
[[routes]]
match = "*"
to = ["a"]
'''
    gw = make_gateway(config_text=cfg_a)
    got = []

    def stream_one():
        got.append("".join(ch.choices[0].delta.content or ""
                           for ch in chat(gw, stream=True) if ch.choices))

    threads = [threading.Thread(target=stream_one) for _ in range(4)]
    for t in threads:
        t.start()
    # The reload comes once all four streams are running on a.
    assert wait_until(lambda: len(a.requests) == 4)
    assert gw.reload(cfg_a.replace(a.base_url, b.base_url))  # now everything goes to b
    assert not gw.reload("[[routes]]\nmatch = 1\n")  # a bad config is refused...
    for t in threads:
        t.join(15)
    assert len(got) == 4 and all(g.startswith("t0 t1") and "t29" in g for g in got), got
    r = chat(gw)  # ...and the good one stays in force
    assert r.choices[0].message.content == "Hello from upstream!" and len(b.requests) == 1


def test_whole_request_timeout(make_gateway, a):
    a.script = lambda req: slow_stream(50, 0.05)
    gw = make_gateway(config_text=f'''
[providers.a]
kind = "openai"
base_url = "{a.base_url}"
request_timeout = "500ms"
[[routes]]
match = "*"
to = ["a"]
''')
    with pytest.raises(openai.APIError):
        for _ in chat(gw, stream=True):
            pass
    assert gw.wait_rows(1)[0]["error_kind"] == "upstream_timeout"


def test_gateway_routes_shows_live_health(make_gateway, a, b, tmp_path):
    import subprocess
    import sys

    a.script = lambda req: json_response({"error": {"message": "x", "type": "x", "param": None,
                                                    "code": None}}, 503)
    cfg = two_providers(a.base_url, b.base_url, 'failure_threshold = 1\ncooldown = "60s"',
                        weights="weights = [2, 1]")
    gw = make_gateway(config_text=cfg)
    for _ in range(30):  # the first choice is drawn by weight: until a has been tried
        chat(gw)
        if a.requests:
            break
    (tmp_path / "r.toml").write_text(cfg)
    out = subprocess.run([sys.executable, "-c", "import sys; from proxy.cli import gateway_main; "
                          "sys.exit(gateway_main())", "routes",
                          "--config", str(tmp_path / "r.toml"), "--url", gw.url],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert "a [open, 1 failures, retry in" in out.stdout and "(weight 2)" in out.stdout
    assert "b:model-b [closed" in out.stdout


# -- every endpoint with several targets fails over ------------------------------------

EMBEDDING = {"object": "list", "model": "text-embedding-3-small",
             "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
             "usage": {"prompt_tokens": 2, "total_tokens": 2}}


@pytest.mark.parametrize("first", ["refused", "500"])
def test_embeddings_fail_over_to_the_next_target(make_gateway, a, b, first, loop_kind):
    a.script = lambda req: json_response({"error": {"message": "boom"}}, 500)
    b.script = lambda req: json_response(EMBEDDING)
    a_url = f"http://127.0.0.1:{dead_port()}/v1" if first == "refused" else a.base_url
    gw = make_gateway(loop_kind=loop_kind, config_text=two_providers(a_url, b.base_url))
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    r = c.embeddings.create(model="text-embedding-3-small", input="hi")
    assert r.data[0].embedding == [0.5, 0.25]
    # The second target renames the model: it got the body with its own name.
    assert b.requests[-1].path == "/v1/embeddings"
    assert b.requests[-1].json()["model"] == "model-b"
    row = gw.wait_rows(1)[0]
    assert (row["status"], row["provider"], row["attempts"], row["input_tokens"]) == (
        200, "b", 2, 2)


def test_embeddings_skip_a_target_whose_circuit_is_open(make_gateway, a, b):
    a.script = lambda req: json_response({"error": {"message": "boom"}}, 500)
    b.script = lambda req: json_response(EMBEDDING)
    gw = make_gateway(config_text=two_providers(a.base_url, b.base_url,
                                                routing="failure_threshold = 2"))
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    for _ in range(4):
        c.embeddings.create(model="text-embedding-3-small", input="hi")
    rows = gw.wait_rows(4)
    assert [r["attempts"] for r in rows] == [2, 2, 1, 1]  # the open circuit is skipped
    assert len(a.requests) == 2


def test_count_tokens_fails_over_between_anthropic_targets(make_gateway, a, b):
    a.script = lambda req: json_response({"type": "error", "error": {
        "type": "overloaded_error", "message": "Overloaded"}}, 529)
    b.script = lambda req: json_response({"input_tokens": 4242})
    host_a, host_b = a.base_url.removesuffix("/v1"), b.base_url.removesuffix("/v1")
    gw = make_gateway(config_text=f'''
[routing]
backoff = "10ms"
[providers.a]
kind = "anthropic"
base_url = "{host_a}"
api_key = "ka"
[providers.b]
kind = "anthropic"
base_url = "{host_b}"
api_key = "kb"
[[routes]]
match = "claude-*"
to = ["a", "b"]
''')
    c = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
    r = c.messages.count_tokens(model="claude-x", messages=[{"role": "user", "content": "hi"}])
    assert r.input_tokens == 4242
    assert [q.path for q in a.requests] == ["/v1/messages/count_tokens"]
    row = gw.wait_rows(1)[0]
    assert (row["status"], row["provider"], row["attempts"], row["input_tokens"]) == (
        200, "b", 2, None)
