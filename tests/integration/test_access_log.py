"""The access log of a real gateway, driven by the real openai and anthropic SDKs:
one line per request matching its ledger row, in JSON and in logfmt, for a
success, a 4xx, a stream and a translated request; the request id in the
daemon log's lines about a request; never a key."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import RunningGateway, close_at_end
from tests.integration import rawhttp
from tests.integration.upstreams import FakeUpstream, json_response
from tests.proxy.test_access_log import parse_logfmt

GATEWAY_KEY = "gw-access-log-key-1"
PROVIDER_KEY = "sk-upstream-secret"


def start(make_gateway: Any, upstream: FakeUpstream, tmp_path: Path, fmt: str,
          **env: str) -> tuple[RunningGateway, Path]:
    path = tmp_path / "access.log"
    gw = make_gateway(env={"TOKENWAY_OPENAI_BASE_URL": upstream.base_url,
                           "TOKENWAY_OPENAI_API_KEY": PROVIDER_KEY,
                           "TOKENWAY_API_KEYS": GATEWAY_KEY, **env},
                      overrides={"access_log": str(path), "access_format": fmt})
    return gw, path


def access_lines(gw: RunningGateway, path: Path, fmt: str) -> list[dict[str, Any]]:
    """The lines of every request answered so far, parsed."""
    gw.settle()
    assert gw.server.access_log.flush()
    text = path.read_text()
    assert PROVIDER_KEY not in text and GATEWAY_KEY not in text
    parse = json.loads if fmt == "json" else parse_logfmt
    return [parse(line) for line in text.splitlines(keepends=True)]


def same(value: Any, expected: Any) -> bool:
    """A logfmt value is text: compare as the line writes it."""
    if isinstance(value, str) and not isinstance(expected, str):
        return value == (json.dumps(expected) if isinstance(expected, bool) else str(expected))
    return value == expected


def oai(gw: RunningGateway) -> openai.OpenAI:
    return close_at_end(openai.OpenAI(base_url=gw.url + "/v1", api_key=GATEWAY_KEY,
                                      max_retries=0, timeout=20))


@pytest.mark.parametrize("fmt", ["json", "logfmt"])
def test_success_line_matches_the_ledger_row(make_gateway, upstream, tmp_path, fmt) -> None:
    gw, path = start(make_gateway, upstream, tmp_path, fmt)
    raw = oai(gw).chat.completions.with_raw_response.create(
        model="gpt-4.1", messages=[{"role": "user", "content": "a secret prompt"}])
    raw.parse()
    [line] = access_lines(gw, path, fmt)
    [row] = gw.rows()
    assert line["request_id"] == row["request_id"] == raw.headers["x-request-id"]
    for field in ("endpoint", "model", "served_model", "provider", "status", "input_tokens",
                  "output_tokens", "cached_tokens", "reasoning_tokens", "stream", "attempts",
                  "bytes_in", "bytes_out", "client_addr"):
        assert same(line[field], row[field]), field
    assert same(line["key_id"], row["api_key_id"]) and line["key_id"].startswith("cfg_")
    assert line["protocol"] == "openai_chat" and "error_kind" not in line
    assert float(line["latency_ms"]) >= float(line["ttfb_ms"]) >= 0
    assert line["time"].endswith("Z") and line["time"][10] == "T"
    assert "a secret prompt" not in path.read_text()


@pytest.mark.parametrize("fmt", ["json", "logfmt"])
def test_client_errors(make_gateway, upstream, tmp_path, fmt) -> None:
    gw, path = start(make_gateway, upstream, tmp_path, fmt)
    c = oai(gw)
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="no-such-model\n{\"status\":200}",
                                  messages=[{"role": "user", "content": "x"}])
    upstream.script = lambda req: json_response(
        {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                   "param": None, "code": "invalid_api_key"}}, 401)
    with pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        close_at_end(openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-wrong-client-key",
                                   max_retries=0)).models.list()
    unknown, relayed, unauthenticated = access_lines(gw, path, fmt)
    assert same(unknown["status"], 404) and unknown["error_kind"] == "not_found"
    assert unknown["model"] == "no-such-model\n{\"status\":200}" and "provider" not in unknown
    assert same(relayed["status"], 401) and relayed["error_kind"] == "upstream_error"
    assert relayed["provider"] == "openai"
    assert same(unauthenticated["status"], 401) and "key_id" not in unauthenticated
    assert "sk-wrong-client-key" not in path.read_text()


def test_stream_line_and_its_request_id_header(make_gateway, upstream, tmp_path) -> None:
    gw, path = start(make_gateway, upstream, tmp_path, "json")
    with oai(gw).chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
            extra_headers={"x-request-id": "client-trace-42"}) as resp:
        assert resp.headers["x-request-id"] == "client-trace-42"
        chunks = list(resp.parse())
    assert chunks
    [line] = access_lines(gw, path, "json")
    assert line["request_id"] == "client-trace-42"
    assert line["stream"] is True and line["status"] == 200
    assert line["input_tokens"] > 0 and line["output_tokens"] > 0
    assert line["ttfb_ms"] <= line["latency_ms"]


def test_translated_request_from_the_anthropic_sdk(make_gateway, upstream, tmp_path) -> None:
    gw, path = start(make_gateway, upstream, tmp_path, "logfmt")
    c = close_at_end(anthropic.Anthropic(base_url=gw.url, api_key=GATEWAY_KEY,
                                         max_retries=0, timeout=20))
    msg = c.messages.create(model="gpt-4.1", max_tokens=50,
                            messages=[{"role": "user", "content": "hi"}])
    assert msg.content
    assert upstream.requests[-1].path == "/v1/chat/completions"
    [line] = access_lines(gw, path, "logfmt")
    assert (line["protocol"], line["endpoint"], line["provider"]) == (
        "anthropic_messages", "/v1/messages", "openai")
    assert line["model"] == "gpt-4.1" and line["served_model"] == "gpt-4.1-2025-04-14"
    assert line["status"] == "200" and line["stream"] == "false"


def test_daemon_log_lines_about_a_request_carry_its_id(make_gateway, tmp_path, caplog) -> None:
    """A provider that cannot be reached: the failover lines and the error line
    name the request (attribute ``request_id``, written as ``request_id=``)."""
    caplog.set_level(logging.INFO, logger="tokenway")
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "access.log"
    gw = make_gateway(env={"TOKENWAY_OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
                           "TOKENWAY_API_KEYS": GATEWAY_KEY},
                      overrides={"access_log": str(path)})  # three attempts by default
    st, headers, _ = rawhttp.request(
        gw.url + "/v1/chat/completions", "POST",
        {"model": "gpt-4.1", "messages": [{"role": "user", "content": "x"}]},
        headers={"authorization": f"Bearer {GATEWAY_KEY}", "x-request-id": "trace-502"})
    assert st == 502 and headers["x-request-id"] == "trace-502"
    about = [r for r in caplog.records if getattr(r, "request_id", None) == "trace-502"]
    names = [(r.name, r.levelname) for r in about]
    assert names.count(("tokenway.exchange", "INFO")) == 3  # each failed attempt
    assert ("tokenway.call", "WARNING") in names  # the error answered
    [line] = access_lines(gw, path, "json")
    assert line["request_id"] == "trace-502" and line["attempts"] == 3
    assert line["error_kind"] == "upstream_unreachable"


def test_health_counts_the_access_log(make_gateway, upstream, tmp_path) -> None:
    gw, path = start(make_gateway, upstream, tmp_path, "json")
    for _ in range(3):
        oai(gw).chat.completions.create(model="gpt-4.1",
                                        messages=[{"role": "user", "content": "x"}])
    assert len(access_lines(gw, path, "json")) == 3
    st, _, body = rawhttp.request(gw.url + "/health", "GET",
                                  headers={"authorization": f"Bearer {GATEWAY_KEY}"})
    stats = json.loads(body)["access_log"]
    assert st == 200 and stats["target"] == str(path)
    assert stats["written"] == 3 and stats["dropped"] == 0


def test_a_reload_keeps_the_logging_settings(make_gateway, upstream, tmp_path, caplog) -> None:
    gw, path = start(make_gateway, upstream, tmp_path, "json")
    assert gw.reload("[logging]\nrotate_daily = true\n")
    assert any("[logging] changes need a restart" in r.getMessage() for r in caplog.records)
    oai(gw).chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "x"}])
    assert len(access_lines(gw, path, "json")) == 1  # the same log, still written
