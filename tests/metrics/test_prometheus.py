"""A real Prometheus server scrapes a real gateway (with a bearer key) after a
known mix of requests; what Prometheus then holds matches the gateway's SQLite
ledger, row for row."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import openai
import pytest

from tests.integration import rawhttp
from tests.integration.upstreams import FakeUpstream, default_script, json_response

PROMETHEUS = "/usr/bin/prometheus"
KEY = "scrape-key-1"
MSG = [{"role": "user", "content": "hi"}]
# Models the route table names; every other requested name is "other".
NAMED_MODELS = {"gpt-4o", "model-b"}
DEADLINE_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    def __init__(self, tmp: Path, target_port: int) -> None:
        self.port = free_port()
        config = tmp / "prometheus.yml"
        # https://prometheus.io/docs/prometheus/latest/configuration/configuration/#scrape_config
        config.write_text(f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: tokenway
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials: {KEY}
    static_configs:
      - targets: ["127.0.0.1:{target_port}"]
""")
        self.log = tmp / "prometheus.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def query(self, expr: str) -> list[dict]:
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": expr}))
        with urllib.request.urlopen(url, timeout=5) as r:
            answer = json.loads(r.read())
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, want: float) -> None:
        """Poll until ``expr`` is ``want`` (a scrape after the requests happened)."""
        deadline = time.monotonic() + DEADLINE_S
        seen: object = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                seen = self.value(expr)
            except OSError as exc:  # not listening yet
                seen = exc
            if seen == want:
                return
            time.sleep(0.2)
        raise AssertionError(f"{expr} was {seen!r}, not {want} after {DEADLINE_S} s:\n"
                             + self.log.read_text()[-3000:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def a():
    def script(req):
        if b"fail over" in req.body:
            return json_response({"error": {"message": "busy", "type": "server_error",
                                            "param": None, "code": None}}, 503)
        return default_script(req)

    up = FakeUpstream(script=script).start()
    yield up
    up.stop()


@pytest.fixture
def b():
    up = FakeUpstream().start()
    yield up
    up.stop()


def label_set(row: dict) -> tuple[str, ...]:
    model = row["model"]
    return (row["endpoint"], row["client_protocol"], row["provider"] or "none",
            "none" if model is None else model if model in NAMED_MODELS else "other",
            f"{row['status'] // 100}xx")


@pytest.mark.skipif(not os.access(PROMETHEUS, os.X_OK),
                    reason=f"{PROMETHEUS} is missing (Debian package prometheus; .ci/run "
                           "installs it)")
def test_prometheus_holds_what_the_ledger_holds(make_gateway, a, b, tmp_path):
    gw = make_gateway(env={"TOKENWAY_API_KEYS": KEY}, config_text=f'''
[routing]
backoff = "10ms"
failure_threshold = 1
cooldown = "300s"
[providers.a]
kind = "openai"
base_url = "{a.base_url}"
api_key = "ka"
[providers.b]
kind = "openai"
base_url = "{b.base_url}"
api_key = "kb"
[[routes]]
match = "gpt-4o"
to = ["a", "b:model-b"]
[[routes]]
match = "gpt-*"
to = ["b"]
''')
    c = openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0)
    for _ in range(3):
        c.chat.completions.create(model="gpt-4o", messages=MSG)
    c.chat.completions.create(model="gpt-4.1-glob-routed", messages=MSG)
    for _ in c.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                       stream_options={"include_usage": True}):
        pass
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="no-route-for-this", messages=MSG)
    assert rawhttp.request(gw.url + "/v1/chat/completions", "POST",
                           {"model": "gpt-4o", "messages": MSG})[0] == 401  # no key
    # a answers 503: failover to b, and a's circuit opens (threshold 1)
    c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "fail over"}])
    rows = gw.rows()
    assert len(rows) == 8
    assert sorted(r["status"] for r in rows) == [200] * 6 + [401, 404]
    assert [r["attempts"] for r in rows if r["provider"] == "b" and r["model"] == "gpt-4o"] == [2]

    prom = Prometheus(tmp_path, gw.port)
    try:
        prom.wait_for("sum(tokenway_requests_total)", len(rows))
        assert prom.value('up{job="tokenway"}') == 1  # scraped with the key: 200

        held = {tuple(r["metric"][k] for k in ("endpoint", "protocol", "provider", "model",
                                               "status")): float(r["value"][1])
                for r in prom.query("tokenway_requests_total")}
        assert held == {k: float(n) for k, n in Counter(map(label_set, rows)).items()}

        tokens = {r["metric"]["type"]: float(r["value"][1])
                  for r in prom.query("sum by (type) (tokenway_tokens_total)")}
        for kind in ("input", "output", "cached", "reasoning"):
            assert tokens[kind] == sum(r[f"{kind}_tokens"] or 0 for r in rows) > 0, kind
        assert prom.value("sum(tokenway_cost_usd_total)") == pytest.approx(
            sum(r["cost_usd"] or 0 for r in rows), rel=1e-9)
        tried = [r["attempts"] for r in rows if r["provider"] is not None]
        assert prom.value("sum(tokenway_upstream_attempts_total)") == sum(tried) == 7
        assert prom.value("sum(tokenway_upstream_failovers_total)") == sum(tried) - len(tried)

        for name, column in (("tokenway_request_duration_seconds", "latency_ms"),
                             ("tokenway_time_to_first_byte_seconds", "ttfb_ms")):
            timed = [r[column] for r in rows if r[column] is not None]
            assert prom.value(f"sum({name}_count)") == len(timed)
            assert prom.value(f'sum({name}_bucket{{le="+Inf"}})') == len(timed)
            assert prom.value(f"sum({name}_sum)") == pytest.approx(sum(timed) / 1000, rel=1e-6)
        assert prom.value('sum(tokenway_request_duration_seconds_bucket{le="600"})') == 8

        assert prom.value('tokenway_circuit_state{target="a",state="open"}') == 1
        assert prom.value('tokenway_circuit_state{target="b",state="closed"}') == 1
        assert prom.value("tokenway_ledger_rows_written_total") == len(rows)
        assert prom.value("tokenway_requests_in_flight") == 1  # the scrape itself
    finally:
        prom.stop()
    assert len(gw.rows()) == len(rows)  # the scrapes left no rows
