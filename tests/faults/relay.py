"""A TCP relay between the gateway and a fake provider that breaks on cue.

``Relay(target_port)`` listens on 127.0.0.1 (port 0) in its own thread and event
loop and forwards bytes both ways between each accepted connection (the gateway's
side, "down" is what it reads, "up" what it writes) and a fresh connection to the
target (the provider).  While a ``Fault`` is armed, every connection accepted
from then on carries it: at a point given in bytes, never in time, the relay

    close      closes both sides (the gateway gets a FIN);
    reset      sets SO_LINGER 0 on the gateway's side and closes it (an RST);
    stall      stops forwarding in one direction or both, reading and holding
               what still comes so the gateway sees silence, not a close;
    trickle    forwards the next bytes one per write with a short pause between,
               then goes on normally;
    blackhole  (at accept) never connects to the provider: reads what the gateway
               sends and answers nothing.

Where: ``At(direction, offset, pattern, nth)``: ``offset`` bytes after the start of
the ``nth`` occurrence of ``pattern`` in that direction's bytes on this connection
(no pattern: from the first byte).  The helpers below name the usual points: before
the response head, after N response bytes, inside an SSE event, inside a chunk-size
line, after the last event and before the terminating chunk, inside the request body.

Each relayed connection is a ``Link`` that records what it forwarded, whether its
fault fired and who closed it (``gateway``, ``provider`` or ``relay``), so a test
can tell that the gateway let go of a connection it gave up on.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

UP, DOWN = "up", "down"  # gateway -> provider, provider -> gateway
ACTIONS = ("close", "reset", "stall", "trickle", "blackhole")
# A trigger's anchor is looked for in the bytes seen so far on its direction; past
# this many bytes they are no longer kept, and a trigger not yet found never fires
# (fake provider answers are a few KiB).
MAX_SEEN_BYTES = 1 << 20
READ_SIZE = 65536  # per socket read; what a stall holds is counted, not kept


@dataclass(frozen=True)
class At:
    """A point in one direction's bytes on one connection: ``offset`` bytes after an
    anchor.  The anchor is the start of the ``nth`` occurrence of ``pattern``, or with
    ``chunk_line`` the start of that chunk-size line of a chunked body (1 the first,
    0 the terminating zero-size one), or else the first byte."""

    direction: str = DOWN
    offset: int = 0
    pattern: bytes = b""
    nth: int = 1
    chunk_line: int | None = None

    def __post_init__(self) -> None:
        if self.direction not in (UP, DOWN):
            raise ValueError(f"direction must be {UP!r} or {DOWN!r}, not {self.direction!r}")
        if self.nth < 1:
            raise ValueError("nth counts from 1")
        if self.pattern and self.chunk_line is not None:
            raise ValueError("anchor on a pattern or on a chunk-size line, not both")

    def position(self, seen: bytes) -> int | None:
        """The byte offset of this point in ``seen``, or None while not known."""
        if self.chunk_line is not None:
            start = chunk_line_start(seen, self.chunk_line)
            return None if start is None else start + self.offset
        if not self.pattern:
            return self.offset
        i = -1
        for _ in range(self.nth):
            i = seen.find(self.pattern, i + 1)
            if i < 0:
                return None
        return max(0, i + self.offset)


def chunk_line_start(seen: bytes, nth: int) -> int | None:
    """Where the ``nth`` chunk-size line of the chunked body in ``seen`` (a response
    head, then the body) starts; ``nth`` 0: the terminating zero-size line.  Known as
    soon as the chunk before it has been seen whole (the zero-size line: once it has
    been seen itself), so a trigger there fires before the line's own bytes go on."""
    head_end = seen.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    pos = head_end + 4
    k = 1
    while True:
        if k == nth:
            return pos
        eol = seen.find(b"\r\n", pos)
        if eol < 0:
            return None
        try:
            size = int(seen[pos:eol].split(b";")[0], 16)
        except ValueError:
            return None  # not a chunked body
        if size == 0:
            return pos if nth == 0 else None
        pos = eol + 2 + size + 2
        k += 1


def before_head() -> At:
    """The provider has answered, and not one byte of its answer reaches the gateway."""
    return At(DOWN, 0)


def after_response_bytes(n: int) -> At:
    return At(DOWN, n)


def in_request_body(k: int) -> At:
    """``k`` bytes into the request body on its way to the provider."""
    return At(UP, 4 + k, b"\r\n\r\n")


def after_head(k: int = 0) -> At:
    """``k`` bytes after the end of the response head."""
    return At(DOWN, 4 + k, b"\r\n\r\n")


def in_event(marker: bytes, nth: int, into: int = 8) -> At:
    """``into`` bytes into the ``nth`` SSE event that starts with ``marker``
    (``b"data: "`` for OpenAI Chat, ``b"event: "`` for Anthropic)."""
    return At(DOWN, into, marker, nth)


def in_chunk_size_line(nth: int, into: int = 1) -> At:
    """``into`` bytes into the ``nth`` chunk-size line: with a size of two hex digits
    or more, the line is cut in two."""
    return At(DOWN, into, chunk_line=nth)


def before_last_chunk() -> At:
    """After the last chunk of data, before the terminating ``0\\r\\n\\r\\n``."""
    return At(DOWN, 0, chunk_line=0)


@dataclass(frozen=True)
class Fault:
    """What to do (``action``) and where (``at``; a blackhole acts at accept).

    ``stall``: the directions a stall stops (``up``, ``down`` or ``both``).
    ``trickle_bytes``: how many bytes a trickle sends one by one (None: all that
    follow); ``trickle_pause``: seconds between them.
    """

    action: str
    at: At | None = None
    stall: str = "both"
    trickle_bytes: int | None = None
    trickle_pause: float = 0.001

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}: one of {', '.join(ACTIONS)}")
        if (self.action == "blackhole") != (self.at is None):
            raise ValueError("a blackhole acts at accept (no 'at'); every other action needs one")
        if self.stall not in (UP, DOWN, "both"):
            raise ValueError(f"stall must be 'up', 'down' or 'both', not {self.stall!r}")


class Link:
    """One relayed connection: the gateway's side, the provider's side, and what
    happened to them."""

    def __init__(self, relay: Relay, index: int, fault: Fault | None,
                 down_writer: asyncio.StreamWriter) -> None:
        self.relay = relay
        self.index = index
        self.fault = fault
        self.writers: dict[str, asyncio.StreamWriter | None] = {DOWN: down_writer, UP: None}
        self.forwarded = {UP: 0, DOWN: 0}
        self.writes = {UP: 0, DOWN: 0}  # socket writes: a trickle makes one per byte
        self.held = {UP: 0, DOWN: 0}  # read while stalled, never forwarded
        self.seen = {UP: bytearray(), DOWN: bytearray()}
        self.stalled = {UP: False, DOWN: False}
        self.trickle = {UP: 0, DOWN: 0}  # bytes still to send one at a time
        self.fired = False
        self.closed_by: str | None = None

    @property
    def closed(self) -> bool:
        return self.closed_by is not None

    # -- bytes ------------------------------------------------------------------------
    async def feed(self, direction: str, data: bytes) -> None:
        """Bytes read from the side that ``direction`` starts at."""
        if self.closed:
            return
        if self.stalled[direction]:
            self.held[direction] += len(data)
            return
        fault = self.fault
        if fault is not None and not self.fired and fault.at is not None \
                and fault.at.direction == direction:
            seen = self.seen[direction]
            base = len(seen)
            if base + len(data) <= MAX_SEEN_BYTES:
                seen += data
                pos = fault.at.position(bytes(seen))
                if pos is not None and pos <= len(seen):
                    cut = max(0, pos - base)
                    await self._forward(direction, data[:cut])
                    await self._fire(direction, data[cut:])
                    return
        await self._forward(direction, data)

    async def _forward(self, direction: str, data: bytes) -> None:
        writer = self.writers[direction]  # up: the provider's side, down: the gateway's
        if not data or writer is None or self.closed:
            return
        n = min(self.trickle[direction], len(data))
        if n:
            pause = self.fault.trickle_pause if self.fault else 0.0
            for i in range(n):
                if self.closed:
                    return
                writer.write(data[i:i + 1])
                self.writes[direction] += 1
                self.forwarded[direction] += 1
                self.trickle[direction] -= 1
                await _drain(writer)
                await asyncio.sleep(pause)
            data = data[n:]
            if not data or self.closed:
                return
        writer.write(data)
        self.writes[direction] += 1
        self.forwarded[direction] += len(data)
        await _drain(writer)

    async def _fire(self, direction: str, rest: bytes) -> None:
        fault = self.fault
        assert fault is not None
        self.fired = True
        self.relay.fired += 1
        if fault.action == "close":
            self.close("relay")
        elif fault.action == "reset":
            self.close("relay", reset=True)
        elif fault.action == "stall":
            for d in (UP, DOWN):
                if fault.stall in (d, "both"):
                    self.stalled[d] = True
            if self.stalled[direction]:
                self.held[direction] += len(rest)
            else:
                await self._forward(direction, rest)
        elif fault.action == "trickle":
            n = fault.trickle_bytes
            self.trickle[direction] = n if n is not None else sys.maxsize  # all that follows
            await self._forward(direction, rest)

    # -- ends -------------------------------------------------------------------------
    def source_closed(self, direction: str) -> None:
        """The side ``direction`` starts at sent EOF or was reset."""
        if self.closed:
            return
        if direction == UP:
            self.close("gateway")
        elif not self.stalled[DOWN]:
            # A stalled gateway side keeps its silence even after the provider left.
            self.close("provider")

    def close(self, by: str, reset: bool = False) -> None:
        if self.closed:
            return
        self.closed_by = by
        down, up = self.writers[DOWN], self.writers[UP]
        if down is not None:
            if reset:
                sock = down.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                down.transport.abort()
            else:
                down.close()
        if up is not None:
            up.close()


async def _drain(writer: asyncio.StreamWriter) -> None:
    try:
        await writer.drain()
    except ConnectionError:
        pass  # the reading side notices the close and ends the link


class Relay:
    """The relay, its thread and loop, and every ``Link`` it made."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.fault: Fault | None = None
        self.links: list[Link] = []
        self.fired = 0
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._holder: socket.socket | None = None  # keeps a refused port bound

    # -- life -------------------------------------------------------------------------
    def start(self) -> Relay:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._accept, "127.0.0.1", 0, reuse_port=True))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            try:
                self._loop.run_forever()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="fault-relay")
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("the relay did not start within 5 s")
        return self

    def stop(self) -> None:
        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for link in self.links:
                link.close("relay")  # every pump then reads its EOF and ends
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if tasks:
                await asyncio.wait(tasks, timeout=5)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shut(), self._loop)
        self._thread.join(10)
        if self._holder is not None:
            self._holder.close()

    def refuse(self) -> None:
        """Stop listening: connecting to the relay's port is refused from then on.
        The port stays bound (by a socket that never listens), so no server started
        later, the gateway under test included, can be handed it and answer there."""
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", self.port))
        self._holder = holder

        async def close() -> None:
            if self._server is not None:
                self._server.close()  # the listening socket closes at once

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)

    def url(self, path: str = "/v1") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    # -- state, for assertions --------------------------------------------------------
    def open_links(self) -> list[Link]:
        return [link for link in self.links if not link.closed]

    # -- relaying ---------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        link = Link(self, len(self.links), self.fault, writer)
        self.links.append(link)
        fault = link.fault
        if fault is not None and fault.action == "blackhole":
            link.fired = True
            self.fired += 1
            link.stalled[UP] = link.stalled[DOWN] = True
            await self._pump(link, UP, reader)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            link.close("provider", reset=True)  # as a refused connection would look
            return
        link.writers[UP] = up_writer
        if link.closed:  # the gateway left while we connected
            up_writer.close()
            return
        await asyncio.gather(self._pump(link, UP, reader), self._pump(link, DOWN, up_reader))

    async def _pump(self, link: Link, direction: str, reader: asyncio.StreamReader) -> None:
        while not link.closed:
            try:
                data = await reader.read(READ_SIZE)
            except (ConnectionError, OSError):
                data = b""
            if not data:
                link.source_closed(direction)
                return
            await link.feed(direction, data)


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Poll ``condition`` (a state another thread changes) until it holds; fail naming
    ``what`` if it never does within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)
