"""The server's life on a real loop with a recording ledger: listening, the
connection registry and its sweep, the connection cap, holding reads for the
ledger, reloads (applied, refused, unsafe) and shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from typing import Any

import orjson
import pytest

from proxy.aio import new_event_loop
from proxy.config import ConfigError, load_config
from proxy.server import RefusedConnection, Server


class RecordingLedger:
    def __init__(self) -> None:
        self.records: list = []
        self.watcher: Any = None

    def record(self, rec: Any) -> None:
        self.records.append(rec)

    def stats(self) -> dict:
        return {"state": "ok", "queued": 0, "written": len(self.records), "dropped": 0}

    def watch_pressure(self, loop: Any, callback: Any) -> None:
        self.watcher = callback


def config(text: str = "", **server: Any):
    cfg = load_config(None, env={}, overrides={"listen": "127.0.0.1:0"})
    if text:
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(text)
        cfg = load_config(f.name, env={}, overrides={"listen": "127.0.0.1:0"})
    if server:
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, **server))
    return cfg


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest):
    lp = new_event_loop(request.param)
    yield lp
    lp.close()


async def _client(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server.bound[0]
    return await asyncio.open_connection(host, port)


async def _until(cond: Any, limit: int = 400) -> bool:
    for _ in range(limit):
        if cond():
            return True
        await asyncio.sleep(0.005)
    return cond()


def test_serves_registers_and_sweeps_idle_connections(loop) -> None:
    async def main() -> None:
        ledger = RecordingLedger()
        server = Server(config(keepalive_timeout_s=0.3), ledger, loop)
        await server.start()
        assert ledger.watcher == server.hold  # the ledger's backpressure reaches us
        r, w = await _client(server)
        assert await _until(lambda: len(server.connections) == 1)
        w.write(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        head = await r.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = orjson.loads(await r.readexactly(length))
        # No keys configured: the details, the live task count among them.
        assert isinstance(body["tasks"], int) and body["tasks"] >= 1
        # Idle past its keep-alive: the sweep (every 100 ms) closes it.
        assert await r.read() == b""
        assert await _until(lambda: not server.connections)
        w.close()
        server.request_stop()
        await server.shutdown(0.1)

    loop.run_until_complete(main())


def test_connections_over_the_cap_are_refused(loop) -> None:
    async def main() -> None:
        server = Server(config(), RecordingLedger(), loop)
        server.max_connections = 1
        await server.start()
        _, w1 = await _client(server)
        assert await _until(lambda: len(server.connections) == 1)
        assert isinstance(server._new_connection(), RefusedConnection)
        r2, w2 = await _client(server)
        assert (await r2.read()).startswith(b"HTTP/1.1 503")
        assert len(server.connections) == 1
        for w in (w1, w2):
            w.close()
        await server.shutdown(0.1)

    loop.run_until_complete(main())


def test_holding_stops_reading_every_connection_and_new_ones(loop) -> None:
    async def main() -> None:
        server = Server(config(), RecordingLedger(), loop)
        await server.start()
        r1, w1 = await _client(server)
        assert await _until(lambda: len(server.connections) == 1)
        server.hold(True)
        r2, w2 = await _client(server)
        assert await _until(lambda: len(server.connections) == 2)
        assert all(c._blocks for c in server.connections)
        assert server.stats()["admission"] == "held"
        w2.write(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        server.hold(False)
        assert (await r2.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        assert not any(c._blocks for c in server.connections)
        for w in (w1, w2):
            w.close()
        await server.shutdown(0.1)

    loop.run_until_complete(main())


def test_reload_applies_refuses_bad_files_and_unsafe_ones(loop) -> None:
    good = config('[[routes]]\nmatch = "m"\nto = ["p"]\n[providers.p]\nkind = "openai"\n'
                  'base_url = "http://127.0.0.1:9/v1"\n')
    keyed = dataclasses.replace(config(), auth=dataclasses.replace(config().auth, keys=("k",)))
    public = dataclasses.replace(keyed, server=dataclasses.replace(keyed.server,
                                                                   host="0.0.0.0"))
    nxt: list = []

    def reloader():
        item = nxt.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def main() -> None:
        server = Server(public, RecordingLedger(), loop, reloader=reloader)
        nxt.append(dataclasses.replace(good, server=public.server, auth=public.auth))
        assert server.reload() and server.state.router.resolve("m") is not None
        nxt.append(ConfigError("routes[0].to", "is required"))
        assert not server.reload() and server.state.router.resolve("m") is not None
        nxt.append(dataclasses.replace(good, server=public.server))  # no keys, public
        assert not server.reload() and server.state.config.auth.keys == ("k",)
        assert server.state.accounts.required

    loop.run_until_complete(main())


def test_shutdown_closes_idle_connections_and_ends_the_rest(loop) -> None:
    async def main() -> None:
        server = Server(config(), RecordingLedger(), loop)
        await server.start()
        r1, w1 = await _client(server)
        r2, w2 = await _client(server)
        assert await _until(lambda: len(server.connections) == 2)
        busy = next(iter(server.connections))
        ended: list[str] = []
        busy.current = object()  # a request in flight
        busy.flow = type("Flow", (), {"shutdown": lambda self: ended.append("shutdown"),
                                      "client_gone": lambda self: None})()
        server.request_stop()
        await server.wait_stopped()
        await server.shutdown(0.2)
        assert ended == ["shutdown"]
        assert not server.connections
        for r in (r1, r2):
            assert await r.read() == b""
        for w in (w1, w2):
            w.close()
        # The listener is gone.
        with pytest.raises(OSError):
            socket.create_connection(server.bound[0], timeout=1)

    loop.run_until_complete(main())
