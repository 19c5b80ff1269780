"""The console scripts as a user runs them: gatewayd in a subprocess, gateway usage."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.integration import rawhttp
from tests.log_audit import AUDIT, AuditedPopen

PY = sys.executable


def start_daemon(tmp_path, *args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWAY_")}
    e.update(env or {})
    AUDIT.secrets_of_env(e)
    p = AuditedPopen([PY, "-m", "proxy", "--listen", "127.0.0.1:0",
                      "--db", str(tmp_path / "t.db"), *args],
                     stderr=subprocess.PIPE, text=True, env=e, cwd=tmp_path)
    deadline = time.monotonic() + 20
    line = ""
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        AUDIT.text("gatewayd stderr", line)
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            return p, m.group(1)
        if not line and p.poll() is not None:
            break
    p.kill()
    raise AssertionError(f"gatewayd did not start: {line}")


class LogLines:
    """The daemon's stderr, read on a thread, so a test can wait for a line with a timeout."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        with stream:
            for line in stream:
                AUDIT.text("gatewayd stderr", line)
                with self._changed:
                    self.lines.append(line)
                    self._changed.notify_all()

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    def wait_for(self, text: str, n: int = 1, timeout_s: float = 20) -> bool:
        """True once ``n`` lines holding ``text`` have been logged."""
        with self._changed:
            return self._changed.wait_for(lambda: self.count(text) >= n, timeout_s)

    def rest(self, timeout_s: float = 20) -> str:
        """Everything logged, once the daemon has closed stderr (it exited)."""
        self._thread.join(timeout_s)
        return "".join(self.lines)


def test_gatewayd_serves_and_stops_on_sigterm_with_ledger(tmp_path):
    p, url = start_daemon(tmp_path)
    try:
        st, _, body = rawhttp.request(url + "/v1/chat/completions", "POST",
                                      {"model": "loopback",
                                       "messages": [{"role": "user", "content": "hello"}]})
        assert st == 200 and "hello" in body.decode()
    finally:
        p.send_signal(signal.SIGTERM)
        rest = p.communicate(timeout=20)[1]
    assert p.returncode == 0, rest
    assert "1 rows written" in rest
    out = subprocess.run([PY, "-c", "from proxy.cli import gateway_main; import sys; "
                          "sys.exit(gateway_main())", "usage", "--db", str(tmp_path / "t.db"),
                          "--json"], capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    assert len(rows) == 1
    row = rows[0]
    for key in ("ts", "request_id", "endpoint", "client_protocol", "model", "served_model",
                "provider", "status", "error_kind", "stream", "input_tokens", "output_tokens",
                "cached_tokens", "reasoning_tokens", "latency_ms", "ttfb_ms", "bytes_in",
                "bytes_out"):
        assert key in row
    assert row["model"] == "loopback" and row["status"] == 200 and row["stream"] is False


def test_refuses_public_listen_without_keys(tmp_path):
    r = subprocess.run([PY, "-m", "proxy", "--listen", "0.0.0.0:0", "--db", str(tmp_path / "x.db")],
                       capture_output=True, text=True, timeout=20,
                       env={k: v for k, v in os.environ.items() if not k.startswith("TOKENWAY_")})
    assert r.returncode == 2
    assert "TOKENWAY_API_KEYS" in r.stderr and "--allow-unauthenticated" in r.stderr


def test_config_error_names_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[providers.x]\nkind = "foo"\nbase_url = "http://h/v1"\n')
    r = subprocess.run([PY, "-m", "proxy", "--config", str(cfg), "--db", str(tmp_path / "x.db")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "providers.x.kind" in r.stderr


def test_workers_share_the_port(tmp_path):
    p, url = start_daemon(tmp_path, "--workers", "2")
    import time

    deadline = time.monotonic() + 10  # the first worker may be up before the second forks
    while True:
        children = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
        if len(children) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(children) == 2
    try:
        for _ in range(20):
            st, _, _ = rawhttp.request(url + "/v1/chat/completions", "POST",
                                       {"model": "loopback",
                                        "messages": [{"role": "user", "content": "w"}]})
            assert st == 200
    finally:
        p.send_signal(signal.SIGTERM)
        rest = p.communicate(timeout=30)[1]
    assert p.returncode == 0, rest
    out = subprocess.run([PY, "-c", "from proxy.cli import gateway_main; import sys; "
                          "sys.exit(gateway_main())", "usage", "--db", str(tmp_path / "t.db"),
                          "--json", "--limit", "0"],
                         capture_output=True, text=True, check=True).stdout
    assert len(json.loads(out)) == 20


def test_gateway_reload_applies_new_config_and_refuses_bad_one(tmp_path, upstream):
    from tests.integration.upstreams import CHAT_COMPLETION, json_response

    upstream.script = lambda req: json_response(CHAT_COMPLETION)
    cfg = tmp_path / "gw.toml"
    cfg.write_text("")  # loopback only
    p, url = start_daemon(tmp_path, "--config", str(cfg))
    log = LogLines(p.stderr)
    body = {"model": "gpt-x", "messages": [{"role": "user", "content": "x"}]}
    try:
        assert rawhttp.request(url + "/v1/chat/completions", "POST", body)[0] == 404
        cfg.write_text(f'[providers.p]\nkind = "openai"\nbase_url = "{upstream.base_url}"\n'
                       '[[routes]]\nmatch = "gpt-*"\nto = ["p"]\n')
        gateway = [PY, "-c", "import sys; from proxy.cli import gateway_main; "
                   "sys.exit(gateway_main())", "reload", "--db", str(tmp_path / "t.db")]
        r = subprocess.run(gateway, capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        # The daemon logs the reload once the new configuration is in force.
        assert log.wait_for("configuration reloaded"), log.lines
        assert rawhttp.request(url + "/v1/chat/completions", "POST", body)[0] == 200
        cfg.write_text("[[routes]]\nmatch = 1\n")  # a bad config...
        assert subprocess.run(gateway, capture_output=True, text=True, timeout=20).returncode == 0
        assert log.wait_for("reload refused"), log.lines
        # ...is refused: the running configuration stays.
        assert rawhttp.request(url + "/v1/chat/completions", "POST", body)[0] == 200
        assert log.count("configuration reloaded") == 1
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)
        log.rest()
    assert p.returncode == 0, "".join(log.lines)


def test_gatewayd_prices_requests_with_prices_stored_before_it_started(tmp_path, upstream):
    gateway = [PY, "-c", "from proxy.cli import gateway_main; import sys; "
               "sys.exit(gateway_main())"]
    db = str(tmp_path / "t.db")
    subprocess.run([*gateway, "price", "set", "gpt-4.1-2025*", "--input", "1", "--output", "2",
                    "--db", db], check=True, capture_output=True)
    p, url = start_daemon(tmp_path, env={"TOKENWAY_OPENAI_BASE_URL": upstream.base_url,
                                         "TOKENWAY_OPENAI_API_KEY": "sk-x"})
    try:
        st, _, _ = rawhttp.request(url + "/v1/chat/completions", "POST",
                                   {"model": "gpt-4.1",
                                    "messages": [{"role": "user", "content": "hi"}]})
        assert st == 200
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=20)
    out = subprocess.run([*gateway, "usage", "--db", db, "--json"], capture_output=True,
                         text=True, check=True).stdout
    [row] = json.loads(out)
    # The fake provider serves gpt-4.1-2025-04-14: 19 prompt tokens, 10 completion.
    assert row["cost_source"] == "config"
    assert abs(row["cost_usd"] - (19 * 1 + 10 * 2) / 1e6) < 1e-12
