"""Access lines (proxy/access_log.py) and daemon log lines (proxy/daemon_log.py):
both formats parse back, and no value a client chose can end a line or forge one."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy.access_log import AccessLog, formatter
from proxy.daemon_log import DaemonFormatter
from proxy.request import RequestRecord

_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^ "=]*)(?: |$)')

# Values a client may send as a path, a model name or an end-user id, each trying
# to end the line or start a forged one.
HOSTILE = [
    'gpt-4"} {"status":200',
    "gpt\n{\"time\":\"forged\"}",
    "a\r\nstatus=200 request_id=forged",
    'x" status=999 y="',
    "tab\there\x00nul\x1besc\x7fdel",
    "nel\x85ls\u2028ps\u2029end",
    "caf\u00e9 \u6a21\u578b",
    "back\\slash\\",
    "key=value",
    "",
]


def parse_logfmt(line: str) -> dict[str, Any]:
    """A logfmt reader (https://brandur.org/logfmt): bare values, or quoted ones
    with backslash escapes."""
    assert line.endswith("\n") and line.count("\n") == 1
    body = line[:-1]
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(body):
        m = _PAIR.match(body, pos)
        assert m is not None, f"not logfmt at {pos}: {body[pos:]!r}"
        key, raw = m.group(1), m.group(2)
        out[key] = json.loads(raw) if raw.startswith('"') else raw
        pos = m.end()
    return out


def record(**kw: Any) -> RequestRecord:
    rec = RequestRecord("/v1/chat/completions", "openai_chat", "127.0.0.1:5000", 120)
    rec.model = "gpt-4.1"
    rec.served_model = "gpt-4.1-2025-04-14"
    rec.provider = "openai"
    rec.status = 200
    rec.input_tokens, rec.output_tokens, rec.cached_tokens = 19, 10, 4
    rec.reasoning_tokens = 2
    rec.latency_ms, rec.ttfb_ms = 12.345, 3.21
    rec.api_key_id = "key_0123456789ab"
    rec.bytes_out = 456
    for k, v in kw.items():
        setattr(rec, k, v)
    return rec


def lines(fmt: str, *recs: RequestRecord) -> list[str]:
    f = formatter(fmt)
    out = []
    for rec in recs:
        raw = f(rec)
        assert raw.isascii(), raw  # every client value escaped to ASCII
        out.append(raw.decode())
    return out


def test_json_fields_of_a_success() -> None:
    rec = record(ts=1_700_000_000.25)
    [line] = lines("json", rec)
    got = json.loads(line)
    assert got == {
        "time": "2023-11-14T22:13:20.250Z", "request_id": rec.request_id,
        "client_addr": "127.0.0.1:5000", "key_id": "key_0123456789ab",
        "endpoint": "/v1/chat/completions", "protocol": "openai_chat", "model": "gpt-4.1",
        "served_model": "gpt-4.1-2025-04-14", "provider": "openai", "status": 200,
        "input_tokens": 19, "output_tokens": 10, "cached_tokens": 4, "reasoning_tokens": 2,
        "latency_ms": 12.3, "ttfb_ms": 3.2, "stream": False, "attempts": 1,
        "bytes_in": 120, "bytes_out": 456}


def test_unknown_fields_are_left_out_and_same_served_model_too() -> None:
    rec = record(served_model="gpt-4.1", provider=None, input_tokens=None,
                 output_tokens=None, cached_tokens=None, reasoning_tokens=None,
                 status=404, error_kind="not_found", api_key_id=None)
    for fmt, parse in (("json", json.loads), ("logfmt", parse_logfmt)):
        [line] = lines(fmt, rec)
        got = parse(line)
        assert "served_model" not in got and "provider" not in got and "key_id" not in got
        assert "input_tokens" not in got
        assert str(got["status"]) == "404" and got["error_kind"] == "not_found"


def test_logfmt_parses_back_to_the_json_values() -> None:
    rec = record(stream=True, cost_usd=0.000123)
    [j] = lines("json", rec)
    [lf] = lines("logfmt", rec)
    as_json = json.loads(j)
    as_logfmt = parse_logfmt(lf)
    assert list(as_logfmt) == list(as_json)
    assert as_logfmt == {k: (json.dumps(v) if type(v) is bool else
                             v if isinstance(v, str) else str(v)) for k, v in as_json.items()}


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("fmt", ["json", "logfmt"])
def test_client_values_cannot_forge_lines(fmt: str, value: str) -> None:
    rec = record(model=value, endpoint="/v1/" + value, request_id=value, end_user=value)
    [line] = lines(fmt, rec)
    # One line, even for readers that split on U+2028 or NEL (str.splitlines).
    assert line.count("\n") == 1 and len(line.splitlines()) == 1
    got = json.loads(line) if fmt == "json" else parse_logfmt(line)
    assert got["model"] == value and got["endpoint"] == "/v1/" + value
    assert got["request_id"] == value and got["end_user"] == value
    assert str(got["status"]) == "200"  # not overridden by a forged "status"
    assert got["provider"] == "openai"


def test_access_log_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path), "logfmt", interval_s=0.01)
    recs = [record(model=f"m{i}") for i in range(5)]
    for rec in recs:
        log.record(rec)
    assert log.flush()
    log.close()
    got = [parse_logfmt(ln) for ln in path.read_text().splitlines(keepends=True)]
    assert [g["model"] for g in got] == [f"m{i}" for i in range(5)]
    assert log.stats()["written"] == 5 and log.stats()["dropped"] == 0


def _daemon_line(msg: str, *args: Any, exc: bool = False, **extra: Any) -> str:
    rec = logging.LogRecord("tokenway.call", logging.WARNING, __file__, 1, msg, args,
                            sys.exc_info() if exc else None)
    rec.__dict__.update(extra)
    return DaemonFormatter().format(rec)


def test_daemon_lines_carry_the_request_id_and_escape_messages() -> None:
    line = _daemon_line("POST %s -> %d %s", "/v1/chat/completions", 502,
                        "provider says:\n2026-01-01T00:00:00.000Z ERROR forged",
                        request_id="req_abc")
    assert "\n" not in line
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING tokenway\.call: "
                        r"POST /v1/chat/completions -> 502 provider says:\\n2026\S+ "
                        r"ERROR forged request_id=req_abc", line), line
    assert "request_id" not in _daemon_line("listening on %s", "http://x")


def test_daemon_traceback_lines_are_indented() -> None:
    try:
        raise ValueError("bad\nvalue\u2028here")
    except ValueError:
        line = _daemon_line("request failed", exc=True, request_id="req_1")
    first, *rest = line.split("\n")
    assert first.endswith("request failed request_id=req_1")
    assert rest and all(r.startswith("    ") for r in rest)
    # A message's own line breaks start indented lines, never a new record.
    assert rest[-3:] == ["    ValueError: bad", "    value", "    here"]
