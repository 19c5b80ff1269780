"""A friendly start: what gatewayd says when it starts, and a busy port refused before
any file exists."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

from tests.integration.test_cli import PY, LogLines, start_daemon


def _summary(p: subprocess.Popen) -> tuple[LogLines, list[str]]:
    logs = LogLines(p.stderr)
    assert logs.wait_for("try: curl") or logs.wait_for("no provider configured")
    return logs, [ln.split(": ", 1)[1].strip() for ln in logs.lines if "tokenway:   " in ln]


def _stop(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0


def test_the_start_says_where_what_and_how_to_try_it(tmp_path):
    p, url = start_daemon(tmp_path)
    try:
        logs, lines = _summary(p)
        assert f"ledger: {tmp_path / 't.db'} (SQLite)" in lines
        assert any(ln.startswith("auth: off") for ln in lines)
        assert "no provider configured: only the built-in 'loopback' model answers" in lines
        [curl] = [ln[len("try: "):] for ln in lines if ln.startswith("try: ")]
        # The line works as printed (run by a shell, as the reader will).
        out = subprocess.run(["sh", "-c", curl], capture_output=True, text=True, timeout=20)
        assert json.loads(out.stdout)["choices"][0]["message"]["content"] == "loopback: hello"
        assert url in curl
    finally:
        _stop(p)


def test_the_start_lists_providers_and_routes_never_keys(tmp_path, upstream):
    env = {"TOKENWAY_OPENAI_BASE_URL": upstream.base_url,
           "TOKENWAY_OPENAI_API_KEY": "sk-provider-secret",
           "TOKENWAY_API_KEYS": "gateway-secret-1,gateway-secret-2"}
    p, url = start_daemon(tmp_path, env=env)
    try:
        logs, lines = _summary(p)
        text = "".join(logs.lines)
        assert "secret" not in text
        assert "auth: on: every request needs a gateway key (2 configured)" in lines
        assert f"providers: openai (openai, {upstream.base_url})" in lines
        assert "route: gpt-* -> openai" in lines
        [curl] = [ln[len("try: "):] for ln in lines if ln.startswith("try: ")]
        assert "$TOKENWAY_KEY" in curl and '"model":"gpt-4o-mini"' in curl
        out = subprocess.run(["sh", "-c", curl], capture_output=True, text=True, timeout=20,
                             env={"TOKENWAY_KEY": "gateway-secret-2", "PATH": "/usr/bin:/bin"})
        assert json.loads(out.stdout)["choices"][0]["message"]["content"]
    finally:
        _stop(p)


def test_a_busy_port_is_refused_before_any_file_is_created(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([PY, "-m", "proxy", "--listen", f"127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in r.stderr
    assert list(tmp_path.iterdir()) == []  # no ledger, no pid file


def test_gatewayd_help_points_to_the_configuration_and_to_gateway():
    r = subprocess.run([sys.executable, "-m", "proxy", "--help"], capture_output=True,
                       text=True, timeout=30)
    text = " ".join(r.stdout.split())
    assert r.returncode == 0
    assert "README.md, section 'Configuration'" in text and "gateway --help" in text
    assert "--listen HOST:PORT" in text


def test_provider_addresses_are_shown_without_credentials():
    from proxy.startup import _shown_url

    assert _shown_url("https://user:pw@llm.example:8443/v1?api_key=x") == \
        "https://llm.example:8443/v1"
    assert _shown_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
