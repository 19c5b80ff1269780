"""GET /metrics on a running gateway: the format (promtool's check), who may
read it, bounded labels whatever clients send, and the gauges in flight."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading

import openai
import pytest

from tests.integration import rawhttp
from tests.integration.upstreams import FakeUpstream, sse_response, transcript
from tests.metrics.exposition_text import series

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MSG = [{"role": "user", "content": "hi"}]
ROUTES = '''
[[routes]]
match = "gpt-4o"
to = ["openai"]
'''


def scrape(gw, key: str | None = None) -> str:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    status, hs, body = rawhttp.request(gw.url + "/metrics", headers=headers)
    assert status == 200, body
    assert hs["content-type"] == CONTENT_TYPE
    return body.decode()


@pytest.fixture
def gw(make_gateway, upstream):
    return make_gateway(env={"TOKENWAY_OPENAI_BASE_URL": upstream.base_url,
                             "TOKENWAY_OPENAI_API_KEY": "sk-upstream"},
                        config_text=ROUTES)


def test_promtool_accepts_the_real_output(gw):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus; .ci/run installs it)")
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    c.chat.completions.create(model="gpt-4o", messages=MSG)
    for _ in c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True):
        pass
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="no-route-for-this", messages=MSG)
    rawhttp.request(gw.url + '/odd"path\\', "POST", b"{}")
    gw.settle()
    body = scrape(gw)
    assert series(body, "tokenway_requests_total")
    done = subprocess.run([promtool, "check", "metrics"], input=body.encode(),
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not done.stdout.strip() and not done.stderr.strip()  # no lint remarks either


def test_metrics_are_open_without_keys_and_not_in_the_ledger(gw):
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
    c.chat.completions.create(model="gpt-4o", messages=MSG)
    gw.settle()
    body = scrape(gw)
    status, hs, head_body = rawhttp.request(gw.url + "/metrics", "HEAD")
    assert (status, head_body, hs["content-type"]) == (200, b"", CONTENT_TYPE)
    assert int(hs["content-length"]) > 0
    [(labels, n)] = series(body, "tokenway_requests_total")
    assert labels == {"endpoint": "/v1/chat/completions", "protocol": "openai_chat",
                      "provider": "openai", "model": "gpt-4o", "status": "2xx"}
    assert n == 1
    rows = gw.rows()
    assert [r["endpoint"] for r in rows] == ["/v1/chat/completions"]  # scrapes are not rows
    assert series(scrape(gw), "tokenway_requests_total")[0][1] == 1  # nor counted
    assert rawhttp.request(gw.url + "/metrics", "POST", b"")[0] == 405


def test_with_keys_metrics_need_one(make_gateway):
    gw = make_gateway(env={"TOKENWAY_API_KEYS": "gw-key"})
    for headers in ({}, {"authorization": "Bearer wrong"}):
        status, _, body = rawhttp.request(gw.url + "/metrics", headers=headers)
        assert status == 401
        err = json.loads(body)["error"]
        assert err["code"] == "invalid_api_key" and set(err) == {"message", "type", "param",
                                                                 "code"}
    [(labels, n)] = series(scrape(gw, "gw-key"), "tokenway_requests_total")
    assert (labels["endpoint"], labels["status"], n) == ("/metrics", "4xx", 2)  # the refusals
    st, _, _ = rawhttp.request(gw.url + "/metrics", headers={"x-api-key": "gw-key"})
    assert st == 200


def test_junk_models_and_paths_keep_the_series_bounded(gw):
    """Every distinct name a client invents lands in "other": the series count
    after 300 junk requests is what it was after the first of each kind."""
    def junk(i: int) -> None:
        for model in (f"gpt-4o-{i}", f'junk "{i}"\n'):
            rawhttp.request(gw.url + "/v1/chat/completions", "POST",
                            {"model": model, "messages": MSG})
        rawhttp.request(gw.url + f"/v1/junk-{i}", "POST", b"{}")
        rawhttp.request(gw.url + f"/v1beta/models/junk-{i}:generateContent", "POST",
                        {"contents": [{"parts": [{"text": "x"}]}]})
        rawhttp.request(gw.url + f"/v1beta/models/junk:action{i}", "POST", b"{}")
        rawhttp.request(gw.url + f"/admin/junk-{i}")

    junk(0)
    gw.settle()
    first = len(series(scrape(gw), "tokenway_requests_total"))
    for i in range(1, 60):
        junk(i)
    gw.settle()
    body = scrape(gw)
    requests = series(body, "tokenway_requests_total")
    assert len(requests) == first <= 8
    assert sum(n for _, n in requests) == 60 * 6 == len(gw.rows())
    assert "junk" not in body and "gpt-4o-" not in body
    assert {lb["model"] for lb, _ in requests} <= {"other", "none"}
    assert {lb["endpoint"] for lb, _ in requests} == {
        "/v1/chat/completions", "/v1beta/models/{model}:generateContent", "other", "/admin/*"}


def test_in_flight_gauges_see_an_open_stream(make_gateway):
    release = threading.Event()
    data = transcript("openai_chat_stream_include_usage.sse")
    # head, the first event, the rest, end
    acts = sse_response(data, [data.index(b"\n\n") + 2])
    up = FakeUpstream(script=lambda req: [*acts[:2], ("wait", release), *acts[2:]]).start()
    try:
        gw = make_gateway(env={"TOKENWAY_OPENAI_BASE_URL": up.base_url,
                               "TOKENWAY_OPENAI_API_KEY": "sk-upstream"})
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        stream = c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True)
        next(iter(stream))  # the stream is open and held by the provider
        body = scrape(gw)
        assert series(body, "tokenway_streams_in_flight") == [({}, 1)]
        assert series(body, "tokenway_requests_in_flight") == [({}, 2)]  # it and the scrape
        assert series(body, "tokenway_upstream_connections") == [
            ({"state": "open"}, 1), ({"state": "idle"}, 0)]
        assert not series(body, "tokenway_requests_total")  # nothing finished yet
        health = json.loads(rawhttp.request(gw.url + "/health")[2])
        assert (health["requests_in_flight"], health["streams_in_flight"]) == (2, 1)
        release.set()
        for _ in stream:
            pass
        gw.settle()
        body = scrape(gw)
        assert series(body, "tokenway_streams_in_flight") == [({}, 0)]
        assert series(body, "tokenway_requests_in_flight") == [({}, 1)]
        assert series(body, "tokenway_requests_total")[0][1] == 1
        assert series(body, "tokenway_upstream_connections") == [
            ({"state": "open"}, 1), ({"state": "idle"}, 1)]
    finally:
        release.set()
        up.stop()
