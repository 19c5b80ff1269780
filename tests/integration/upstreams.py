"""Fake providers on 127.0.0.1 that replay exact wire formats and fail on cue.

A ``FakeUpstream`` runs its own event loop in a thread.  Each request is
answered by ``script(request) -> list[action]``; actions are played in order:

    ("head", status, [(name, value), ...])  response head; chunked unless a
                                             content-length header is given
    ("body", bytes)                          body bytes (one chunk / write)
    ("sleep", seconds)                       pause
    ("end",)                                 finish the message (keep-alive)
    ("close",)                               close the socket now
    ("raw", bytes)                           write raw bytes (no framing)

Every request is recorded (method, path, headers, body) for assertions.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

SHARED = Path(__file__).resolve().parents[3] / "shared"


def shared_dir() -> Path:
    import os

    env = os.environ.get("TOKENWAY_SHARED")
    return Path(env) if env else SHARED


def transcript(name: str) -> bytes:
    return (shared_dir() / "conformance" / "transcripts" / name).read_bytes()


#: Every response body a fake upstream wrote (its "body" actions, joined per response),
#: so a test can tell the provider bytes a gateway relayed from what the gateway wrote
#: itself (tests/schemas/recorder.py). A test that reads it clears it first.
SENT: list[bytes] = []

_MODEL_LIST = re.compile(r"(/[^?]*)?/(v1/models|models|v1beta/models)")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return orjson.loads(self.body)


@dataclass
class FakeUpstream:
    script: Callable[[Recorded], list[tuple]] | None = None
    requests: list[Recorded] = field(default_factory=list)
    # GETs of the model list (the gateway asks for it in the background when a
    # glob route points here), kept apart from the requests a test makes.
    listings: list[Recorded] = field(default_factory=list)
    # Answers those GETs (default: 404, as a server without a models list would);
    # ``script`` never sees them, so a test's script counts only its own requests.
    listing_script: Callable[[Recorded], list[tuple]] | None = None
    connections: int = 0
    open_connections: int = 0
    max_open_connections: int = 0  # the most connections that were open at once
    port: int = 0
    ssl_context: object = None

    def start(self) -> FakeUpstream:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_context))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            try:
                self._loop.run_forever()
            finally:
                # Transports that stop() closed end on the loop's next turn: give it one.
                self._loop.run_until_complete(asyncio.sleep(0))
                self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    @property
    def base_url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        host = "localhost" if self.ssl_context else "127.0.0.1"
        return f"{scheme}://{host}:{self.port}/v1"

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
        # Connections are counted once they carry a request a test made: the
        # gateway's model-list fetches come on connections of their own.
        counted = False
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = b""
                n = int(headers.get("content-length", "0"))
                if n:
                    try:
                        body = await reader.readexactly(n)
                    except (asyncio.IncompleteReadError, ConnectionError):
                        return  # the request was cut on its way: nothing to answer
                req = Recorded(method, path, headers, body)
                listing = method == "GET" and bool(_MODEL_LIST.fullmatch(path.split("?")[0]))
                if listing:
                    self.listings.append(req)
                else:
                    self.requests.append(req)
                    if not counted:
                        counted = True
                        self.connections += 1
                        self.open_connections += 1
                        self.max_open_connections = max(self.max_open_connections,
                                                        self.open_connections)
                if listing:
                    actions = (self.listing_script or _no_model_list)(req)
                else:
                    actions = (self.script or default_script)(req)
                closed = await self._play(actions, writer)
                if closed:
                    return
        except asyncio.CancelledError:
            # stop() cancels the handlers. Ending quietly matters on Python 3.11: there
            # start_server's done-callback calls task.exception() on a cancelled handler,
            # which raises inside the loop and leaves the connection's transport open.
            return
        finally:
            if counted:
                self.open_connections -= 1
            writer.close()

    async def _play(self, actions: list[tuple], writer: asyncio.StreamWriter) -> bool:
        body = [act[1] for act in actions if act[0] == "body"]
        if body:
            SENT.append(b"".join(body))
        chunked = True
        for act in actions:
            kind = act[0]
            if kind == "head":
                _, status, headers = act
                names = {k.lower() for k, _ in headers}
                chunked = "content-length" not in names and "connection" not in names
                lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in headers]
                if chunked:
                    lines.append("transfer-encoding: chunked")
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            elif kind == "body":
                data = act[1]
                if chunked:
                    writer.write(b"%x\r\n%b\r\n" % (len(data), data))
                else:
                    writer.write(data)
            elif kind == "raw":
                writer.write(act[1])
            elif kind == "sleep":
                await writer.drain()
                await asyncio.sleep(act[1])
            elif kind == "wait":  # hold until a threading.Event of the test is set
                await writer.drain()
                for _ in range(1000):
                    if act[1].is_set():
                        break
                    await asyncio.sleep(0.01)
            elif kind == "end":
                if chunked:
                    writer.write(b"0\r\n\r\n")
            elif kind == "close":
                await writer.drain()
                writer.transport.abort()
                return True
            try:
                await writer.drain()
            except ConnectionError:
                return True
        return False


def _no_model_list(req: Recorded) -> list[tuple]:
    return json_response({"error": {"message": "not found", "type": "invalid_request_error",
                                    "param": None, "code": None}}, 404)


def json_response(obj: object, status: int = 200, extra: list | None = None) -> list[tuple]:
    body = orjson.dumps(obj)
    return [("head", status, [("content-type", "application/json"),
                              ("content-length", str(len(body)))] + (extra or [])),
            ("body", body), ("end",)]


def sse_response(data: bytes, pieces: int | list[int] = 1, delay: float = 0.0) -> list[tuple]:
    """Stream ``data`` in ``pieces`` equal parts (or at the given cut offsets)."""
    acts: list[tuple] = [("head", 200, [("content-type", "text/event-stream; charset=utf-8")])]
    if isinstance(pieces, int):
        step = max(1, -(-len(data) // pieces))
        cuts = list(range(0, len(data), step))
    else:
        cuts = [0] + list(pieces)
    cuts.append(len(data))
    for a, b in zip(cuts, cuts[1:], strict=False):
        if b > a:
            acts.append(("body", data[a:b]))
            if delay:
                acts.append(("sleep", delay))
    acts.append(("end",))
    return acts


CHAT_COMPLETION = {
    "id": "chatcmpl-fake1", "object": "chat.completion", "created": 1741569952,
    "model": "gpt-4.1-2025-04-14",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from upstream!",
                                         "refusal": None, "annotations": []},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
              "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 2, "audio_tokens": 0}},
    "service_tier": "default", "system_fingerprint": "fp_x",
}


def default_script(req: Recorded) -> list[tuple]:
    if req.path.endswith("/chat/completions"):
        body = req.json()
        if body.get("stream"):
            return sse_response(transcript("openai_chat_stream_include_usage.sse"), 7)
        return json_response(CHAT_COMPLETION)
    if req.path.endswith("/embeddings"):
        return json_response({"object": "list", "model": "text-embedding-3-small",
                              "data": [{"object": "embedding", "index": 0,
                                        "embedding": [0.1, 0.2, 0.3]}],
                              "usage": {"prompt_tokens": 3, "total_tokens": 3}})
    return json_response({"error": {"message": "not found", "type": "invalid_request_error",
                                    "param": None, "code": None}}, 404)
