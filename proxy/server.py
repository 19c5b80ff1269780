"""Listening sockets, the connection registry, signals and graceful drain.

The only module that calls ``create_server``.  On SIGTERM/SIGINT the server
stops accepting, closes idle keep-alive connections, lets in-flight requests
and streams finish up to ``shutdown_grace_s``, then aborts what is left and
flushes the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from typing import Any

from .config import Config, ServerConfig
from .dispatch import Dispatcher
from .h1 import HTTPConnection
from .state import GatewayState
from .wire import Request, start_date_clock

log = logging.getLogger("tokenway")

# Listen backlog: the kernel's somaxconn default (4096 on Linux >= 5.4) caps it anyway.
LISTEN_BACKLOG = 4096
# How often the drain loop looks at in-flight connections during shutdown.
DRAIN_POLL_S = 0.05
# Connection deadlines (header read, keep-alive idle, provider first byte and
# idle) are checked on this tick instead of a timer per request: a uvloop timer
# costs about 1 us to arm and again to cancel, several times per request.
SWEEP_INTERVAL_S = 0.1


class Server:
    """The listeners and everything that lives as long as they do.  It is the
    ``ConnectionHost`` of its connections (``proxy.h1``)."""

    def __init__(self, config: Config, ledger: Any, loop: asyncio.AbstractEventLoop,
                 *, reloader: Callable[[], Config] | None = None) -> None:
        self.config = config
        # Builds a fresh Config the way the first one was built (file, env, flags).
        self.reloader = reloader
        self.ledger = ledger
        self.loop = loop
        self.connections: set[HTTPConnection] = set()
        self.draining = False
        self.state = GatewayState(config, loop, ledger.record)
        self.dispatcher = Dispatcher(self.state, self.stats)
        self._servers: list[asyncio.AbstractServer] = []
        self._stopped = loop.create_future()
        self.bound: list[tuple[str, int]] = []

    # -- ConnectionHost -------------------------------------------------------------

    @property
    def settings(self) -> ServerConfig:
        return self.config.server

    def handle(self, req: Request, conn: HTTPConnection) -> None:
        self.dispatcher.handle(req, conn)

    def reject(self, conn: HTTPConnection, status: int, message: str,
               path: str | None) -> bytes:
        return self.dispatcher.reject(conn, status, message, path)

    def stats(self) -> dict[str, Any]:
        """The server side of ``/health``."""
        return {"connections": len(self.connections), "ledger": self.ledger.stats()}

    async def start(self, sock: socket.socket | None = None, reuse_port: bool = False) -> None:
        cfg = self.config.server
        factory: Callable[[], HTTPConnection] = lambda: HTTPConnection(self)  # noqa: E731
        if sock is not None:
            srv = await self.loop.create_server(factory, sock=sock, backlog=LISTEN_BACKLOG)
        else:
            srv = await self.loop.create_server(factory, cfg.host, cfg.port,
                                                backlog=LISTEN_BACKLOG, reuse_address=True,
                                                reuse_port=reuse_port or None)
        self._servers.append(srv)
        for s in srv.sockets:
            addr = s.getsockname()
            self.bound.append((addr[0], addr[1]))
        self._date_timer = start_date_clock(self.loop)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL_S, self.sweep)

    def sweep(self) -> None:
        """Expire connections whose deadline passed (client side and provider side)."""
        now = self.loop.time()
        for conn in [c for c in self.connections if c.deadline and c.deadline <= now]:
            conn.expire()
        self.state.pool.sweep(now)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL_S, self.sweep)

    @property
    def url(self) -> str:
        host, port = self.bound[0]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def reload(self) -> bool:
        """Load the configuration again and apply it without dropping anything in
        flight: running exchanges keep the providers they hold, new requests see
        the new routes.  A bad new configuration is refused and the old one stays."""
        if self.reloader is None:
            log.warning("reload requested but this server has no configuration source")
            return False
        try:
            new = self.reloader()
        except Exception as exc:  # ConfigError or an unreadable file
            log.error("reload refused, keeping the running configuration: %s", exc)
            return False
        old = self.config.server
        if (new.server.host, new.server.port, new.server.parser) != (old.host, old.port, old.parser):
            log.warning("reload: listen address and parser changes need a restart; "
                        "keeping %s (%s)", old.listen, old.parser)
        self.config = new
        self.state.apply(new)
        log.info("configuration reloaded: %d provider(s), %d route(s)",
                 len(new.providers), len(new.routes))
        return True

    def request_stop(self) -> None:
        if not self._stopped.done():
            self._stopped.set_result(None)

    async def wait_stopped(self) -> None:
        await self._stopped

    async def shutdown(self, grace_s: float | None = None) -> None:
        """Stop accepting, drain in-flight requests up to ``grace_s``, then abort."""
        if grace_s is None:
            grace_s = self.config.server.shutdown_grace_s
        self.draining = True
        for srv in self._servers:
            srv.close()
        for conn in list(self.connections):
            conn.close_if_idle()
        deadline = self.loop.time() + grace_s
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
            for conn in list(self.connections):
                conn.close_if_idle()
        left = len(self.connections)
        if left:
            log.warning("shutdown grace of %gs over: aborting %d connection(s)", grace_s, left)
            for conn in list(self.connections):
                conn.abort()
            await asyncio.sleep(0)
        self.state.pool.close()
        self._date_timer.cancel()
        self._sweeper.cancel()
        for srv in self._servers:
            await srv.wait_closed()


def install_signal_handlers(loop: asyncio.AbstractEventLoop, server: Server) -> None:
    for sig, handler in ((signal.SIGTERM, server.request_stop),
                         (signal.SIGINT, server.request_stop),
                         (signal.SIGHUP, server.reload)):
        try:
            loop.add_signal_handler(sig, handler)
        except (NotImplementedError, RuntimeError):  # not the main thread / platform
            pass


async def serve(config: Config, ledger: Any, *, ready: Callable[[Server], None] | None = None,
                signals: bool = True, reloader: Callable[[], Config] | None = None,
                reuse_port: bool = False) -> None:
    loop = asyncio.get_running_loop()
    server = Server(config, ledger, loop, reloader=reloader)
    await server.start(reuse_port=reuse_port)
    if signals:
        install_signal_handlers(loop, server)
    log.info("listening on %s", server.url)
    if ready is not None:
        ready(server)
    await server.wait_stopped()
    log.info("shutting down: draining in-flight requests (grace %gs)",
             config.server.shutdown_grace_s)
    await server.shutdown()
