"""Log files of a real gatewayd: SIGUSR1 reopens them after an outside rename
(logrotate's way), and with --workers several processes append to one access
log and one daemon log, rotated by one of them, without losing or breaking a line."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration import rawhttp
from tests.log_audit import AUDIT, AuditedPopen

PY = sys.executable
WAIT_S = 30.0


def wait_until(check: Callable[[], object], what: str, timeout_s: float = WAIT_S) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def start(tmp: Path, *args: str, config: str = "") -> tuple[subprocess.Popen, str]:
    """gatewayd with its daemon log in tmp/daemon.log; its URL read from that file."""
    cfg = tmp / "gateway.toml"
    cfg.write_text(config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWAY_")}
    for name in ("access.log", "daemon.log"):
        AUDIT.file(tmp / name)
    p = AuditedPopen([PY, "-m", "proxy", "--listen", "127.0.0.1:0", "--db", str(tmp / "t.db"),
                      "--config", str(cfg), "--daemon-log", str(tmp / "daemon.log"),
                      "--access-log", str(tmp / "access.log"), *args],
                     stderr=subprocess.PIPE, text=True, env=env, cwd=tmp)

    def listening() -> str | None:
        if p.poll() is not None:
            raise AssertionError(f"gatewayd exited: {p.communicate()[1]}")
        m = re.search(r"listening on (http://\S+)", read(tmp / "daemon.log"))
        return m.group(1) if m else None

    url = wait_until(listening, "'listening on' in daemon.log")
    assert isinstance(url, str)
    return p, url


def stop(p: subprocess.Popen) -> str:
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 0, err
    return err


def chat(url: str, rid: str) -> None:
    st, headers, _ = rawhttp.request(url + "/v1/chat/completions", "POST",
                                     {"model": "loopback",
                                      "messages": [{"role": "user", "content": "hi"}]},
                                     headers={"x-request-id": rid})
    assert st == 200 and headers["x-request-id"] == rid


def ids_in(path: Path) -> list[str]:
    return [json.loads(line)["request_id"] for line in read(path).splitlines()]


def test_sigusr1_reopens_both_files_after_a_rename(tmp_path: Path) -> None:
    p, url = start(tmp_path)
    access, daemon = tmp_path / "access.log", tmp_path / "daemon.log"
    try:
        chat(url, "before-rename")
        wait_until(lambda: ids_in(access) == ["before-rename"], "the first access line")
        os.rename(access, tmp_path / "access.log.old")
        os.rename(daemon, tmp_path / "daemon.log.old")
        chat(url, "after-rename")  # still the renamed file: nobody said to reopen yet
        wait_until(lambda: "after-rename" in read(tmp_path / "access.log.old"),
                   "the second line in the renamed file")
        assert not access.exists() and not daemon.exists()
        p.send_signal(signal.SIGUSR1)
        wait_until(lambda: access.exists() and daemon.exists(), "both files created again")
        chat(url, "after-reopen")
        os.kill(p.pid, signal.SIGHUP)  # a daemon log line after the reopen
        wait_until(lambda: "configuration reloaded" in read(daemon), "a daemon line")
        wait_until(lambda: ids_in(access) == ["after-reopen"], "a line in the new file")
    finally:
        stop(p)
    assert ids_in(tmp_path / "access.log.old") == ["before-rename", "after-rename"]
    assert "listening on" in read(tmp_path / "daemon.log.old")
    assert "listening on" not in read(daemon) and "ledger closed" in read(daemon)


def test_workers_share_rotated_files_without_breaking_lines(tmp_path: Path) -> None:
    # ~420-byte lines, 4 KB files: several rotations over 100 requests, all kept.
    p, url = start(tmp_path, "--workers", "2",
                   config="[logging]\nrotate_bytes = 4096\nkeep = 50\n")
    sent = [f"w-{i:03d}" for i in range(100)]
    try:
        for rid in sent[:50]:
            chat(url, rid)
        # The first worker rotates a full file within one writer wake (0.2 s),
        # whichever worker filled it.
        wait_until(lambda: (tmp_path / "access.log.1").exists(), "a rotation")
        for rid in sent[50:]:
            chat(url, rid)
    finally:
        stop(p)
    got: list[str] = []
    for f in sorted(tmp_path.glob("access.log*")):
        got += ids_in(f)  # every line parses as JSON: none torn or interleaved
    assert sorted(got) == sent  # no line lost, none twice
    # The daemon log rotates at the same size: its lines may be in daemon.log.N too.
    daemon = "".join(read(f) for f in sorted(tmp_path.glob("daemon.log*")))
    assert daemon.count("listening on") == 2 and daemon.count("ledger closed") == 2
