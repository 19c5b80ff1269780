"""Hostile clients against a real ``gatewayd`` process.

Each test drives raw sockets at a daemon started with ``python -m proxy`` on port
0, on both parsers and both loops, and asserts what the attack could cost: the
daemon's own resident memory and CPU seconds (read from ``/proc``), the bytes it
accepted, the responses it sent.  Never a duration.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.log_audit import AUDIT

PY = sys.executable
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


class Daemon:
    """``gatewayd`` in a subprocess, with its RSS and CPU time readable."""

    def __init__(self, tmp: Path, parser: str, loop: str, *, config: str = "",
                 env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> None:
        self.db = tmp / "ledger.db"
        cfg = tmp / "gateway.toml"
        cfg.write_text(config)
        e = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWAY_")}
        e.update(env or {})
        AUDIT.secrets_of_env(e)
        self.proc = subprocess.Popen(
            [PY, "-m", "proxy", "--listen", "127.0.0.1:0", "--db", str(self.db),
             "--config", str(cfg), "--parser", parser, "--loop", loop,
             "--log-level", "info", *args],
            stderr=subprocess.PIPE, text=True, env=e, cwd=tmp)
        self.url = ""
        self.port = 0
        self.clients: list[socket.socket] = []
        # Every line of the daemon's stderr, read by a thread: a select() on the
        # pipe would miss lines already pulled into the reader's buffer.
        self.log: list[str] = []
        self._logged = threading.Condition()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        line = self._wait_line(lambda ln: "listening on http://" in ln, 30)
        m = re.search(r"listening on http://(\S+):(\d+)", line or "")
        if not m:
            self.proc.kill()
            raise AssertionError("gatewayd did not start: " + "".join(self.log))
        self.port = int(m.group(2))
        self.url = f"http://127.0.0.1:{self.port}"
        self._seen = self.log.index(line) + 1  # wait_log looks after this line

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr as stream:
            for line in stream:
                AUDIT.text("gatewayd stderr", line)
                with self._logged:
                    self.log.append(line)
                    self._logged.notify_all()
        with self._logged:
            self._logged.notify_all()

    def _wait_line(self, match: Any, timeout_s: float, start: int = 0) -> str | None:
        deadline = time.monotonic() + timeout_s
        with self._logged:
            i = start
            while True:
                while i < len(self.log):
                    if match(self.log[i]):
                        return self.log[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or (not self._reader.is_alive() and i >= len(self.log)):
                    return None
                self._logged.wait(left)

    def wait_log(self, needle: str, max_lines: int = 10_000, timeout_s: float = 60) -> str:
        """Wait until a line logged since start holds ``needle``; returns that line."""
        line = self._wait_line(lambda ln: needle in ln, timeout_s, self._seen)
        if line is None:
            raise AssertionError(f"no log line with {needle!r}: " + "".join(self.log[-20:]))
        return line

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def connect(self) -> socket.socket:
        """A client socket, closed by stop() if the test has not closed it."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.clients.append(s)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def stop(self) -> str:
        for s in self.clients:
            s.close()
        self.clients.clear()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        return "".join(self.log)


@pytest.fixture(params=["httptools", "h11"])
def parser(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def daemon_factory(tmp_path: Path, parser: str, loop_kind: str) -> Iterator[Any]:
    started: list[Daemon] = []

    def make(**kw: Any) -> Daemon:
        d = Daemon(tmp_path / f"d{len(started)}", parser, loop_kind, **kw)
        started.append(d)
        return d

    for i in range(4):
        (tmp_path / f"d{i}").mkdir()
    yield make
    for d in started:
        d.stop()


@pytest.fixture
def daemon(daemon_factory: Any) -> Daemon:
    return daemon_factory()


def read_response(sock: socket.socket, limit: int = 1 << 20) -> tuple[int, dict[str, str], bytes]:
    """One response off ``sock`` (Content-Length or close-delimited)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise EOFError(f"closed before a response head: {buf[:200]!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n and len(rest) < limit:
        data = sock.recv(65536)
        if not data:
            break
        rest += data
    return status, headers, rest[:n]


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the peer has closed: recv gives EOF (or a reset)."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


@pytest.fixture(scope="module", params=[(p, lp) for p in ("httptools", "h11")
                                        for lp in ("asyncio", "uvloop")],
                ids=lambda v: f"{v[0]}-{v[1]}")
def shared_daemon(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One default daemon per parser and loop for a module's tests that neither
    change its configuration nor depend on its counters."""
    parser, loop = request.param
    d = Daemon(tmp_path_factory.mktemp("shared"), parser, loop)
    yield d
    d.stop()
