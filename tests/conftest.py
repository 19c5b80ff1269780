"""Shared fixtures: a real gateway on 127.0.0.1 port 0, on both loops and both parsers."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.aio import new_event_loop
from proxy.config import load_config
from proxy.ledger import Ledger, query_rows
from tests.integration import rawhttp
from tests.integration.upstreams import FakeUpstream
from tests.log_audit import AUDIT, CaptureHandler

LOOPS = ["asyncio", "uvloop"]
PARSERS = ["httptools", "h11"]


class RunningGateway:
    """A gateway serving in a background thread with its own event loop."""

    def __init__(self, tmp: Path, *, loop_kind: str = "uvloop", parser: str = "httptools",
                 env: dict[str, str] | None = None, config_text: str | None = None,
                 overrides: dict[str, Any] | None = None) -> None:
        self.db = str(tmp / "ledger.db")
        self.cfg_path = tmp / "tokenway.toml"
        if config_text is not None:
            self.cfg_path.write_text(config_text)
        ov = {"listen": "127.0.0.1:0", "db": self.db, "parser": parser}
        ov.update(overrides or {})
        self._env = env or {}
        self._ov = ov
        self.config = load_config(str(self.cfg_path) if config_text is not None else None,
                                  env=self._env, overrides=ov)
        AUDIT.secrets_of_config(self.config)
        AUDIT.secrets_of_env(self._env)
        for target in (self.config.logging.access_log, self.config.logging.daemon_log):
            if target not in ("off", "stderr"):
                AUDIT.file(target)
        self.loop_kind = loop_kind
        self.ledger = Ledger(self.db, flush_ms=5)
        self.server: Any = None
        self.errors: list[dict] = []

    def start(self) -> RunningGateway:
        from proxy.server import Server

        self.ledger.start()
        ready = threading.Event()
        self.loop = new_event_loop(self.loop_kind)

        def handler(loop: asyncio.AbstractEventLoop, ctx: dict) -> None:
            self.errors.append(ctx)
            loop.default_exception_handler(ctx)

        async def main() -> None:
            self.server = Server(self.config, self.ledger, self.loop,
                                 reloader=lambda: load_config(str(self.cfg_path), env=self._env,
                                                              overrides=self._ov))
            await self.server.start()
            ready.set()
            await self.server.wait_stopped()
            await self.server.shutdown(self.grace_s)

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.set_exception_handler(handler)
            try:
                self.loop.run_until_complete(main())
            finally:
                self.loop.close()

        self.grace_s = 2.0
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10), "gateway did not start"
        return self

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.bound[0][1]

    def settle(self, timeout_s: float = 5.0) -> None:
        """Return once the gateway's loop has run every callback queued before this call.

        A request's ledger row is recorded in the same callback that writes the last bytes
        of its answer, so once a client has read an answer, settle() means its row has
        been handed to the ledger."""
        done = threading.Event()
        self.loop.call_soon_threadsafe(done.set)
        assert done.wait(timeout_s), "the gateway's loop did not come round"

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the gateway's loop and return its result."""
        done = threading.Event()
        out: list[Any] = []
        self.loop.call_soon_threadsafe(lambda: (out.append(fn(*args)), done.set()))
        done.wait(5)
        return out[0]

    def reload(self, config_text: str) -> bool:
        """Rewrite the config file and reload it as SIGHUP would."""
        self.cfg_path.write_text(config_text)
        return self.call(self.server.reload)

    def stop(self, grace_s: float = 2.0) -> None:
        if self.server is None:
            return
        self.grace_s = grace_s
        self.loop.call_soon_threadsafe(self.server.request_stop)
        self.thread.join(grace_s + 10)
        self.ledger.close()
        self.server = None

    def rows(self) -> list[dict]:
        self.ledger_flush()
        return query_rows(self.db)

    def ledger_flush(self, timeout_s: float = 5.0) -> None:
        """Return once every request answered so far has its row in the database."""
        if self.server is not None:
            self.settle(timeout_s)
        assert self.ledger.wait_idle(timeout_s), self.ledger.stats()

    def wait_rows(self, n: int, timeout_s: float = 5.0) -> list[dict]:
        """The rows once there are at least ``n`` (or after ``timeout_s``): for rows the
        gateway records on its own time, e.g. when it notices that a client left."""
        import time

        deadline = time.monotonic() + timeout_s
        rows: list[dict] = []
        while time.monotonic() < deadline:
            rows = self.rows()
            if len(rows) >= n:
                return rows
            time.sleep(0.02)
        return rows


_closing: list[Any] = []
_leaks: list[str] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    """Every record of the gateway's loggers in this process goes to the log audit
    (tests/log_audit.py), INFO included."""
    logger = logging.getLogger("tokenway")
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(CaptureHandler(AUDIT))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The session fails when any gateway log line it saw holds a secret."""
    _leaks.extend(AUDIT.leaks())
    if _leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _leaks:
        terminalreporter.section("secrets in gateway logs", red=True)
        for leak in _leaks[:50]:
            terminalreporter.line(leak)
        terminalreporter.line(f"{len(_leaks)} line(s) with a secret (tests/log_audit.py)")


def close_at_end(obj: Any) -> Any:
    """Close ``obj`` (an SDK client, a socket) when the running test ends; returns it."""
    _closing.append(obj)
    return obj


@pytest.fixture(autouse=True)
def _close_what_tests_dropped() -> Iterator[None]:
    """Sockets from rawhttp.connect() and objects given to close_at_end() are closed when
    the test ends: tests drop clients mid-conversation on purpose."""
    yield
    rawhttp.close_all()
    while _closing:
        _closing.pop().close()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    up = FakeUpstream().start()
    yield up
    up.stop()


@pytest.fixture(params=LOOPS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Any]:
    started: list[RunningGateway] = []

    def make(**kw: Any) -> RunningGateway:
        gw = RunningGateway(tmp_path, **kw).start()
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.stop()
        assert not [e for e in gw.errors if "exception" in e], gw.errors


@pytest.fixture
def gateway(make_gateway: Any, upstream: FakeUpstream, loop_kind: str,
            parser: str) -> RunningGateway:
    """Gateway with an OpenAI provider pointing at the fake upstream, all loop x parser pairs."""
    return make_gateway(loop_kind=loop_kind, parser=parser,
                        env={"TOKENWAY_OPENAI_BASE_URL": upstream.base_url,
                             "TOKENWAY_OPENAI_API_KEY": "sk-upstream-secret"})
