"""Listening sockets, the connection registry, signals and graceful drain.

The only module that calls ``create_server``.  On SIGTERM/SIGINT the server
stops accepting, closes idle keep-alive connections, lets in-flight requests
and streams finish up to ``shutdown_grace_s``, then aborts what is left and
flushes the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from . import startup
from .config import Config, ServerConfig, check_listen_safety
from .dispatch import Dispatcher
from .h1 import HTTPConnection
from .ledger.url import StorageURL
from .state import GatewayState
from .wire import raw_response_head, start_date_clock

log = logging.getLogger("tokenway")

# Listen backlog: the kernel's somaxconn default (4096 on Linux >= 5.4) caps it anyway.
LISTEN_BACKLOG = 4096
# How often the drain loop looks at in-flight connections during shutdown.
DRAIN_POLL_S = 0.05
# Connection deadlines (header read, keep-alive idle, provider first byte and
# idle) are checked on this tick instead of a timer per request: a uvloop timer
# costs about 1 us to arm and again to cancel, several times per request.
SWEEP_INTERVAL_S = 0.1


# A refused connection is logged at most this often, with the count since.
REFUSED_LOG_INTERVAL_S = 10.0
# File descriptors kept for everything but client sockets: the listeners, the
# ledger and its journal, logs; each client request may hold one provider
# connection too, so clients get half of what is left.
RESERVED_FDS = 64


def connection_limit(configured: int) -> int:
    """The client connections this process can really hold: ``configured``, or
    fewer when the file limit (raised to its hard limit first, as nginx's
    ``worker_rlimit_nofile`` does) could not carry them with one provider
    connection each."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
    except (ValueError, OSError):
        return configured
    usable = max(16, (soft - RESERVED_FDS) // 2)
    if usable < configured:
        log.warning("file limit %d allows %d client connections, fewer than "
                    "server.max_connections = %d", soft, usable, configured)
    return min(configured, usable)


class RefusedConnection(asyncio.Protocol):
    """A connection over the limit: one 503 and close, nothing read, no state kept."""

    BODY = (b'{"error":{"message":"the gateway is at its connection limit; retry later",'
            b'"type":"server_error","param":null,"code":"too_many_connections"}}')

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        head = raw_response_head(
            503, [(b"content-type", b"application/json"), (b"retry-after", b"1")],
            len(self.BODY), False)
        transport.write(head + self.BODY)  # type: ignore[attr-defined]
        transport.close()


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
        # True while the ledger is behind: no connection reads a new request.
        self.holding = False
        self.max_connections = connection_limit(config.server.max_connections)
        self._refused = 0  # connections refused at the limit since the last log line
        self._refused_logged = 0.0
        self.state = GatewayState(config, loop, ledger.record,
                                  lambda: getattr(ledger, "recorded", 0))
        self.dispatcher = Dispatcher(self.state, self.stats)
        # ConnectionHost: the dispatcher's entry points, bound once (no wrapper call
        # per request).
        self.admit = self.dispatcher.admit
        self.handle = self.dispatcher.handle
        self.reject = self.dispatcher.reject
        self._servers: list[asyncio.AbstractServer] = []
        self._stopped = loop.create_future()
        self.bound: list[tuple[str, int]] = []

    # -- ConnectionHost -------------------------------------------------------------

    @property
    def settings(self) -> ServerConfig:
        return self.config.server

    def stats(self) -> dict[str, Any]:
        """The server side of ``/health``."""
        return {"connections": len(self.connections),
                "max_connections": self.max_connections,
                "admission": "held" if self.holding else "open",
                "ledger": self.ledger.stats()}

    # -- connections --------------------------------------------------------------

    def _new_connection(self) -> asyncio.Protocol:
        if len(self.connections) >= self.max_connections:
            self._note_refused()
            return RefusedConnection()
        return HTTPConnection(self)

    def _note_refused(self) -> None:
        self._refused += 1
        now = self.loop.time()
        if now - self._refused_logged >= REFUSED_LOG_INTERVAL_S:
            log.warning("connection limit reached (%d open): refused %d new connection(s) "
                        "with 503", self.max_connections, self._refused)
            self._refused = 0
            self._refused_logged = now

    def hold(self, on: bool) -> None:
        """Stop (or restart) reading new requests on every connection: the ledger
        is behind and must catch up before more work comes in.  Requests in
        flight finish; new connections are accepted but not read."""
        if on == self.holding:
            return
        self.holding = on
        log.warning("ledger is behind: holding new requests" if on
                    else "ledger caught up: taking new requests again")
        for conn in list(self.connections):
            conn.hold_reading(on)

    async def start(self, sock: socket.socket | None = None, reuse_port: bool = False) -> None:
        where = getattr(self.ledger, "database", None)
        if isinstance(where, str | StorageURL):
            # The keys, limits and prices of the accounts tables, read before the
            # first request, then kept current by their sync thread.
            self.state.accounts.start(where, self.loop, self.ledger)
        cfg = self.config.server
        factory = self._new_connection
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
        # The ledger says when it is behind: hold new requests until it caught up.
        self.ledger.watch_pressure(self.loop, self.hold)
        self._date_timer = start_date_clock(self.loop)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL_S, self.sweep)

    def sweep(self) -> None:
        """Expire connections whose deadline passed (client side and provider side)."""
        now = self.loop.time()
        for conn in [c for c in self.connections
                     if 0.0 < c.deadline <= now or 0.0 < c.stall_deadline <= now]:
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
        if self.state.accounts.has_stored:
            new = replace(new, auth=replace(new.auth, stored_keys=True))
        problem = check_listen_safety(replace(new, server=self.config.server))
        if problem:
            log.error("reload refused, keeping the running configuration: %s", problem)
            return False
        old = self.config.server
        listen = (new.server.host, new.server.port, new.server.parser)
        if listen != (old.host, old.port, old.parser):
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
            log.warning("shutdown grace of %gs over: ending %d connection(s)", grace_s, left)
            for conn in list(self.connections):
                flow = conn.flow
                if flow is not None:
                    # A stream ends with its protocol's error event, recorded as
                    # cut by the shutdown (not as a client that left); the bytes
                    # already written still leave.
                    flow.shutdown()
                    conn.close_now()
                else:
                    conn.abort()
            await asyncio.sleep(0)
        self.ledger.watch_pressure(self.loop, None)
        self.state.accounts.stop()
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
    """Serve until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    server = Server(config, ledger, loop, reloader=reloader)
    await server.start(reuse_port=reuse_port)
    if signals:
        install_signal_handlers(loop, server)
    log.info("listening on %s", server.url)
    if not reuse_port:  # --workers: the supervisor's workers would say it N times
        for line in startup.summary(server.url, server.state):
            log.info("  %s", line)
    if ready is not None:
        ready(server)
    await server.wait_stopped()
    log.info("shutting down: draining in-flight requests (grace %gs)",
             config.server.shutdown_grace_s)
    await server.shutdown()
