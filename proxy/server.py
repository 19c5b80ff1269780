"""Listening sockets, the connection registry, signals and graceful drain.

The only module that calls ``create_server``.  On SIGTERM/SIGINT the server
stops accepting, closes idle keep-alive connections, lets in-flight requests
and streams finish up to ``shutdown_grace_s``, then aborts what is left and
flushes the ledger.  SIGHUP reloads the configuration; SIGUSR1 reopens the log
files (docs/logging.md).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import socket
import ssl
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from . import daemon_log, startup
from .access_log import AccessLog, open_access_log
from .config import ENDPOINT_GROUPS as ENDPOINT_SETS
from .config import (
    Config,
    ListenerConfig,
    ServerConfig,
    check_listen_safety,
    listeners_of,
    server_tls_context,
)
from .dispatch import Dispatcher, ListenerGate
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


def numeric_listen_socket(host: str, port: int, reuse_port: bool) -> socket.socket | None:
    """The bound socket for a numeric address, made as ``create_server`` makes it
    (SO_REUSEADDR, SO_REUSEPORT when asked, IPV6_V6ONLY), or None for a host name.
    Given a host, uvloop resolves it on libuv's thread pool, whose four threads
    then stay for good (0.5 MiB of an idle gateway) though an address needs no
    lookup."""
    try:
        infos = socket.getaddrinfo(host.encode("ascii"), port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE | socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return None
    if len(infos) != 1:
        return None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"error while attempting to bind on address {addr!r}: "
                                 f"{(exc.strerror or str(exc)).lower()}") from None
    return sock


class Server:
    """The listeners and everything that lives as long as they do.  It is the
    ``ConnectionHost`` of its connections (``proxy.h1``)."""

    def __init__(self, config: Config, ledger: Any, loop: asyncio.AbstractEventLoop,
                 *, reloader: Callable[[], Config] | None = None,
                 access_log: AccessLog | None = None, rotates_logs: bool = True) -> None:
        """``access_log``: one already opened (gatewayd reports a file it cannot
        open before serving); otherwise the one ``config.logging`` asks for is
        opened here.  ``rotates_logs``: whether this process rotates the log files
        (with --workers only the first worker does, proxy/log_files.py)."""
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
        if access_log is None:
            access_log = open_access_log(config, rotates=rotates_logs,
                                         on_error=_access_log_error)
        self.access_log = access_log
        if access_log is not None:
            self.state.access_log = access_log.record
        self.dispatcher = Dispatcher(self.state, self.stats)
        # ConnectionHost: the dispatcher's entry points, bound once (no wrapper call
        # per request).
        self.admit = self.dispatcher.admit
        self.handle = self.dispatcher.handle
        self.reject = self.dispatcher.reject
        self._servers: list[asyncio.AbstractServer] = []
        self._stopped = loop.create_future()
        # (host, port) of each listener, in config order, and each one's URL.
        self.bound: list[tuple[str, int]] = []
        self.urls: list[str] = []
        # Per listener: its endpoint gate and TLS context, updated by a reload.
        self._gates: list[ListenerGate] = []
        self._tls: list[Any] = []

    # -- ConnectionHost -------------------------------------------------------------

    @property
    def settings(self) -> ServerConfig:
        return self.config.server

    def stats(self) -> dict[str, Any]:
        """The server side of ``/health`` and ``/metrics``: requests and streams in
        flight counted in one pass over the connections (about 30 ns each); an
        HTTP/2 connection counts each of its streams."""
        conns = self.connections
        requests = streams = h2_conns = h2_streams = 0
        for c in conns:
            per_stream = getattr(c, "streams", None)  # HTTP/2 (proxy/h2conn.py)
            if per_stream is None:
                requests += c.current is not None
                streams += c.streaming
            else:
                h2_conns += 1
                h2_streams += len(per_stream)
                streams += sum(1 for s in per_stream.values() if s.streaming)
        return {"connections": len(conns),
                "requests_in_flight": requests + h2_streams,
                "streams_in_flight": streams,
                "http2": {"connections": h2_conns, "streams": h2_streams},
                "max_connections": self.max_connections,
                "admission": "held" if self.holding else "open",
                "ledger": self.ledger.stats(),
                **self.log_stats()}

    def log_stats(self) -> dict[str, Any]:
        """The log writers' counters (lines written, dropped): a log that falls
        behind drops lines, and /health is where that shows."""
        out = {}
        if self.access_log is not None:
            out["access_log"] = self.access_log.stats()
        daemon = daemon_log.stats()
        if daemon is not None:
            out["daemon_log"] = daemon
        return out

    def reopen_logs(self) -> None:
        """SIGUSR1: reopen the access and daemon log files (after logrotate moved them)."""
        log.info("reopening log files")
        if self.access_log is not None:
            self.access_log.reopen()
        daemon_log.reopen()

    # -- connections --------------------------------------------------------------

    def _new_connection(self, admit: Callable[[Any], None] | None = None,
                        http2: Callable[[asyncio.Transport, bytes], None] | None = None
                        ) -> asyncio.Protocol:
        if len(self.connections) >= self.max_connections:
            self._note_refused()
            return RefusedConnection()
        return HTTPConnection(self, admit, http2)

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
        """Listen on every configured listener (``sock``: an already bound socket
        for the first one)."""
        where = getattr(self.ledger, "database", None)
        if isinstance(where, str | StorageURL):
            # The keys, limits and prices of the accounts tables, read before the
            # first request, then kept current by their sync thread.
            self.state.accounts.start(where, self.loop, self.ledger)
        for i, lst in enumerate(listeners_of(self.config)):
            await self._listen(lst, sock if i == 0 else None, reuse_port)
        # The ledger says when it is behind: hold new requests until it caught up.
        self.ledger.watch_pressure(self.loop, self.hold)
        self._date_timer = start_date_clock(self.loop)
        self.state.catalog.start()
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL_S, self.sweep)

    async def _listen(self, lst: ListenerConfig, sock: socket.socket | None,
                      reuse_port: bool) -> None:
        gate = ListenerGate(self.dispatcher, lst.endpoints)
        admit = gate.admit if len(gate.endpoints) < len(ENDPOINT_SETS) else None
        tls = server_tls_context(lst.tls_cert, lst.tls_key) if lst.tls_cert and lst.tls_key \
            else None

        def http2(transport: asyncio.Transport, data: bytes) -> None:
            # Imported with the first HTTP/2 connection: h2 and hpack cost a process
            # that never sees one (about 1 MiB and 60 ms here).
            from .h2conn import take_over

            take_over(self, admit, transport, data)

        def factory() -> asyncio.Protocol:
            return self._new_connection(admit, http2)

        # A client that opens TLS and stalls is dropped like one that sends no
        # head: within the header timeout.
        handshake = self.config.server.header_timeout_s if tls else None
        if sock is None:
            sock = numeric_listen_socket(lst.host, lst.port, reuse_port)
        if sock is not None:
            srv = await self.loop.create_server(factory, sock=sock, backlog=LISTEN_BACKLOG,
                                                ssl=tls, ssl_handshake_timeout=handshake)
        else:
            srv = await self.loop.create_server(factory, lst.host, lst.port,
                                                backlog=LISTEN_BACKLOG, reuse_address=True,
                                                reuse_port=reuse_port or None, ssl=tls,
                                                ssl_handshake_timeout=handshake)
        self._servers.append(srv)
        self._gates.append(gate)
        self._tls.append(tls)
        addr = srv.sockets[0].getsockname()
        self.bound.append((addr[0], addr[1]))
        host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
        self.urls.append(f"{'https' if tls else 'http'}://{host}:{addr[1]}")

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
        """The first listener's URL."""
        return self.urls[0]

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
        listeners = self._reloaded_listeners(new)
        first = listeners[0]
        new = replace(new, listeners=listeners,
                      server=replace(new.server, host=first.host, port=first.port))
        problem = check_listen_safety(new) or self._apply_listeners(listeners)
        if problem:
            log.error("reload refused, keeping the running configuration: %s", problem)
            return False
        old = self.config.server
        if new.server.parser != old.parser:
            log.warning("reload: a parser change needs a restart; keeping %s", old.parser)
        if new.logging != self.config.logging:
            log.warning("reload: [logging] changes need a restart; keeping the log "
                        "destinations and rotation settings")
        self.config = new
        self.state.apply(new)
        log.info("configuration reloaded: %d provider(s), %d route(s)",
                 len(new.providers), len(new.routes))
        return True

    def _reloaded_listeners(self, new: Config) -> tuple[ListenerConfig, ...]:
        """The listeners after a reload: addresses and TLS on/off stay as running
        (they need a restart); endpoint sets and certificate files may change."""
        running = listeners_of(self.config)
        wanted = listeners_of(new)
        if [(w.host, w.port, w.tls) for w in wanted] == \
                [(r.host, r.port, r.tls) for r in running]:
            return wanted
        log.warning("reload: adding, removing or moving a listener, or turning TLS on or "
                    "off, needs a restart; keeping %s", ", ".join(r.listen for r in running))
        by_address = {(w.host, w.port, w.tls): w for w in wanted}
        return tuple(by_address.get((r.host, r.port, r.tls), r) for r in running)

    def _apply_listeners(self, listeners: tuple[ListenerConfig, ...]) -> str | None:
        """New certificates (new TLS handshakes get them; open connections keep
        theirs) and endpoint sets, in place; the reason when a pair cannot load."""
        for lst, tls in zip(listeners, self._tls, strict=False):
            if tls is not None and lst.tls_cert and lst.tls_key:
                try:
                    tls.load_cert_chain(lst.tls_cert, lst.tls_key)
                except (OSError, ssl.SSLError) as exc:
                    return f"cannot load {lst.tls_cert}: {getattr(exc, 'reason', None) or exc}"
        for lst, gate in zip(listeners, self._gates, strict=False):
            gate.endpoints = frozenset(lst.endpoints)
        return None

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
        await self.state.accounts.close()
        await self.state.catalog.stop()
        self.state.pool.close()
        self._date_timer.cancel()
        self._sweeper.cancel()
        for srv in self._servers:
            await srv.wait_closed()
        if self.access_log is not None:
            # The lines of the requests the drain finished; off the loop, which
            # has nothing left to serve.
            await self.loop.run_in_executor(None, self.access_log.close)


def _access_log_error(message: str) -> None:
    log.warning("access log: %s", message)


def install_signal_handlers(loop: asyncio.AbstractEventLoop, server: Server) -> None:
    for sig, handler in ((signal.SIGTERM, server.request_stop),
                         (signal.SIGINT, server.request_stop),
                         (signal.SIGHUP, server.reload),
                         (signal.SIGUSR1, server.reopen_logs)):
        try:
            loop.add_signal_handler(sig, handler)
        except (NotImplementedError, RuntimeError):  # not the main thread / platform
            pass


async def serve(config: Config, ledger: Any, *, ready: Callable[[Server], None] | None = None,
                signals: bool = True, reloader: Callable[[], Config] | None = None,
                reuse_port: bool = False, access_log: AccessLog | None = None,
                rotates_logs: bool = True) -> None:
    """Serve until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    server = Server(config, ledger, loop, reloader=reloader, access_log=access_log,
                    rotates_logs=rotates_logs)
    await server.start(reuse_port=reuse_port)
    if signals:
        install_signal_handlers(loop, server)
    log.info("listening on %s", server.url)
    for url, lst in zip(server.urls[1:], listeners_of(config)[1:], strict=True):
        log.info("listening on %s (%s)", url, ", ".join(lst.endpoints))
    if not reuse_port:  # --workers: the supervisor's workers would say it N times
        for line in startup.summary(server.url, server.state):
            log.info("  %s", line)
    if ready is not None:
        ready(server)
    await server.wait_stopped()
    log.info("shutting down: draining in-flight requests (grace %gs)",
             config.server.shutdown_grace_s)
    await server.shutdown()
