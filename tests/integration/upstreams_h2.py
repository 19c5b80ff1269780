"""A fake HTTP/2 provider on 127.0.0.1 (h2c with prior knowledge, or TLS with ALPN
"h2") that plays the same scripts as ``upstreams.FakeUpstream``.

Each stream's request is answered by ``script(request) -> list[action]``, played
in order on that stream, streams concurrently (the actions of
``upstreams.FakeUpstream``):

    ("head", status, [(name, value), ...])  HEADERS (names lower-cased)
    ("body", bytes)                          DATA, as the flow-control windows allow
    ("sleep", seconds) / ("wait", event)     pause
    ("end",)                                 end the stream
    ("close",)                               drop the whole connection now
    ("goaway", last_stream_id)               GOAWAY (None: this stream's id), keep going
    ("reset", error_code)                    RST_STREAM on this stream

It records every request, the connections that carried one, the streams each
connection carried, the DATA bytes sent per stream and the streams the gateway
reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import H2Error
from h2.settings import SettingCodes, Settings

from tests.integration.upstreams import Recorded, default_script

_DROPPED = frozenset({"connection", "transfer-encoding", "keep-alive"})


@dataclass
class FakeH2Upstream:
    script: Callable[[Recorded], list[tuple]] | None = None
    ssl_context: object = None
    max_streams: int = 1000  # SETTINGS_MAX_CONCURRENT_STREAMS announced
    requests: list[Recorded] = field(default_factory=list)
    connections: int = 0  # connections that carried at least one request
    streams_per_connection: list[int] = field(default_factory=list)
    sent: dict[tuple[int, int], int] = field(default_factory=dict)  # (conn, stream) -> bytes
    resets: list[tuple[int, int, int]] = field(default_factory=list)  # (conn, stream, code)
    blocked: set[tuple[int, int]] = field(default_factory=set)  # streams out of window
    max_active: int = 0  # the most streams in flight at once on one connection
    port: int = 0

    def start(self) -> FakeH2Upstream:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._next_conn = 0

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            try:
                self._loop.run_forever()
            finally:
                self._loop.run_until_complete(asyncio.sleep(0))
                self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    @property
    def base_url(self) -> str:
        if self.ssl_context:
            return f"https://localhost:{self.port}/v1"
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        async def shut() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shut(), self._loop)
        self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        h2 = H2Connection(H2Configuration(client_side=False, header_encoding="latin-1"))
        h2.local_settings = Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        h2.initiate_connection()
        writer.write(h2.data_to_send())
        conn = _Conn(self, h2, writer, self._next_conn)
        self._next_conn += 1
        heads: dict[int, tuple[dict[str, str], list[bytes]]] = {}
        tasks: set[asyncio.Task] = set()
        try:
            while not conn.dropped:
                data = await reader.read(65536)
                if not data:
                    break
                try:
                    events = h2.receive_data(data)
                except H2Error:
                    break
                for ev in events:
                    if isinstance(ev, RequestReceived):
                        heads[ev.stream_id] = (dict(ev.headers), [])
                    elif isinstance(ev, DataReceived):
                        heads[ev.stream_id][1].append(ev.data)
                        h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, StreamEnded):
                        hs, body = heads.pop(ev.stream_id)
                        tasks.add(asyncio.ensure_future(conn.answer(ev.stream_id, hs,
                                                                    b"".join(body))))
                    elif isinstance(ev, StreamReset):
                        self.resets.append((conn.index, ev.stream_id, ev.error_code))
                        conn.wake()
                    elif isinstance(ev, WindowUpdated | RemoteSettingsChanged):
                        conn.wake()
                    elif isinstance(ev, ConnectionTerminated):
                        conn.dropped = True
                conn.flush()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            conn.dropped = True
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if conn.counted:
                self.streams_per_connection[conn.slot] = conn.streams
            writer.close()


class _Conn:
    def __init__(self, up: FakeH2Upstream, h2: H2Connection, writer: asyncio.StreamWriter,
                 index: int) -> None:
        self.up = up
        self.h2 = h2
        self.writer = writer
        self.index = index
        self.counted = False
        self.slot = 0
        self.streams = 0
        self.active = 0
        self.dropped = False
        self.window = asyncio.Condition()

    def flush(self) -> None:
        out = self.h2.data_to_send()
        if out and not self.dropped:
            self.writer.write(out)

    def wake(self) -> None:
        async def notify() -> None:
            async with self.window:
                self.window.notify_all()

        asyncio.ensure_future(notify())

    async def answer(self, sid: int, hs: dict[str, str], body: bytes) -> None:
        up = self.up
        req = Recorded(hs.get(":method", ""), hs.get(":path", ""),
                       {k: v for k, v in hs.items()}, body)
        up.requests.append(req)
        if not self.counted:
            self.counted = True
            self.slot = len(up.streams_per_connection)
            up.streams_per_connection.append(0)
            up.connections += 1
        self.streams += 1
        up.streams_per_connection[self.slot] = self.streams
        self.active += 1
        up.max_active = max(up.max_active, self.active)
        try:
            with contextlib.suppress(H2Error, ConnectionError):
                for act in (up.script or default_script)(req):
                    if self.dropped:
                        return
                    if not await self._play(sid, act):
                        return
        finally:
            self.active -= 1

    async def _play(self, sid: int, act: tuple) -> bool:
        kind = act[0]
        h2 = self.h2
        if kind == "head":
            _, status, headers = act
            h2.send_headers(sid, [(":status", str(status))] + [
                (k.lower(), v) for k, v in headers if k.lower() not in _DROPPED])
        elif kind == "body":
            await self._send_data(sid, act[1])
        elif kind == "end":
            h2.end_stream(sid)
        elif kind == "sleep":
            await asyncio.sleep(act[1])
        elif kind == "wait":
            for _ in range(1000):
                if act[1].is_set():
                    break
                await asyncio.sleep(0.01)
        elif kind == "close":
            self.dropped = True
            self.writer.transport.abort()
            return False
        elif kind == "goaway":
            last = sid if act[1] is None else act[1]
            h2.close_connection(last_stream_id=last)
            # h2 closes its own state machine on GOAWAY; the streams at or below
            # ``last`` are still to be answered (RFC 9113 §6.8).
            h2.state_machine.state = ConnectionState.SERVER_OPEN
        elif kind == "reset":
            h2.reset_stream(sid, act[1])
            self.flush()
            return False
        self.flush()
        await self.writer.drain()
        return True

    async def _send_data(self, sid: int, data: bytes) -> None:
        h2 = self.h2
        key = (self.index, sid)
        while data:
            window = h2.local_flow_control_window(sid)
            if window <= 0:
                self.up.blocked.add(key)  # waiting for the gateway's WINDOW_UPDATE
                async with self.window:
                    await self.window.wait()
                if h2.streams.get(sid) is None or h2.streams[sid].closed:
                    return
                continue
            self.up.blocked.discard(key)
            n = min(window, len(data), h2.max_outbound_frame_size)
            h2.send_data(sid, data[:n])
            self.up.sent[key] = self.up.sent.get(key, 0) + n
            data = data[n:]
            self.flush()
            await self.writer.drain()

