"""A fake Realtime API provider: a WebSocket server (wsproto over asyncio) that
answers with the event shapes of OpenAI's Realtime API
(https://platform.openai.com/docs/api-reference/realtime-server-events)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

SERVED_MODEL = "gpt-realtime-2025-08-28"


def usage(inp: int, out: int, cached: int) -> dict[str, Any]:
    return {"total_tokens": inp + out, "input_tokens": inp, "output_tokens": out,
            "input_token_details": {"text_tokens": inp - cached, "audio_tokens": 0,
                                    "image_tokens": 0, "cached_tokens": cached,
                                    "cached_tokens_details": {"text_tokens": cached,
                                                              "audio_tokens": 0,
                                                              "image_tokens": 0}},
            "output_token_details": {"text_tokens": out, "audio_tokens": 0}}


def response_events(n: int, text: str, inp: int, out: int, cached: int) -> list[dict]:
    rid = f"resp_{n}"
    item = f"item_{n}"
    return [
        {"type": "response.created", "event_id": f"event_{n}a",
         "response": {"object": "realtime.response", "id": rid, "status": "in_progress",
                      "output": [], "usage": None}},
        {"type": "response.output_text.delta", "event_id": f"event_{n}b", "response_id": rid,
         "item_id": item, "output_index": 0, "content_index": 0, "delta": text[:3]},
        {"type": "response.output_text.delta", "event_id": f"event_{n}c", "response_id": rid,
         "item_id": item, "output_index": 0, "content_index": 0, "delta": text[3:]},
        {"type": "response.output_text.done", "event_id": f"event_{n}d", "response_id": rid,
         "item_id": item, "output_index": 0, "content_index": 0, "text": text},
        {"type": "response.done", "event_id": f"event_{n}e",
         "response": {"object": "realtime.response", "id": rid, "status": "completed",
                      "status_details": None,
                      "output": [{"id": item, "type": "message", "role": "assistant",
                                  "content": [{"type": "output_text", "text": text}]}],
                      "usage": usage(inp, out, cached)}},
    ]


@dataclass
class FakeRealtime:
    """``mode``: "ok", "reject" (401 with an OpenAI error body), "busy" (503),
    "cut" (drops the connection after the first response), "silent" (never
    answers the handshake)."""

    mode: str = "ok"
    handshakes: list[dict[str, Any]] = field(default_factory=list)
    received: list[Any] = field(default_factory=list)
    closes: list[tuple[int, str]] = field(default_factory=list)
    port: int = 0
    flood_sent: int = 0  # "flood" mode: bytes of messages written so far

    def start(self) -> FakeRealtime:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(5)
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        async def shut() -> None:
            self._server.close()
            for t in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                t.cancel()
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shut(), self._loop)
        self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        responses = 0
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                try:
                    ws.receive_data(data)
                except RemoteProtocolError:
                    # Not a WebSocket handshake (the gateway's model-list fetch).
                    writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n"
                                 b"connection: close\r\n\r\n")
                    await writer.drain()
                    return
                for ev in ws.events():
                    if isinstance(ev, Request):
                        self.handshakes.append({"target": ev.target, "subprotocols":
                                                ev.subprotocols, "headers": {
                                                    k.decode().lower(): v.decode()
                                                    for k, v in ev.extra_headers}})
                        if self.mode == "silent":
                            continue
                        if self.mode in ("reject", "busy"):
                            status = 401 if self.mode == "reject" else 503
                            body = orjson.dumps({"error": {
                                "message": "Incorrect API key provided" if status == 401
                                else "overloaded", "type": "invalid_request_error",
                                "code": "invalid_api_key" if status == 401 else None}})
                            writer.write(ws.send(RejectConnection(
                                status_code=status, headers=[(b"content-type",
                                                              b"application/json"),
                                                             (b"content-length",
                                                              b"%d" % len(body))],
                                has_body=True)))
                            writer.write(ws.send(RejectData(data=body, body_finished=True)))
                            await writer.drain()
                            return
                        chosen = "realtime" if "realtime" in ev.subprotocols else None
                        if self.mode != "deaf":
                            writer.write(ws.send(AcceptConnection(subprotocol=chosen)))
                        if self.mode == "flood":
                            # 64 MiB to a client that may not read: the relay
                            # must stop reading us (drain() then blocks).
                            chunk = b"\x00" * 65536
                            for _ in range(1024):
                                writer.write(ws.send(BytesMessage(data=chunk)))
                                await writer.drain()
                                self.flood_sent += len(chunk)
                            continue
                        if self.mode == "deaf":
                            writer.write(ws.send(AcceptConnection(subprotocol=chosen)))
                            await writer.drain()
                            await asyncio.sleep(3600)  # never reads again
                        self._send(ws, writer, {
                            "type": "session.created", "event_id": "event_0",
                            "session": {"object": "realtime.session", "id": "sess_1",
                                        "model": SERVED_MODEL, "type": "realtime"}})
                    elif isinstance(ev, TextMessage):
                        self.received.append(ev.data)
                        event = orjson.loads(ev.data)
                        if event.get("type") == "response.create":
                            responses += 1
                            for e in response_events(responses, "Hello there!", 100 * responses,
                                                     10 * responses, 5):
                                self._send(ws, writer, e)
                            if self.mode == "cut":
                                await writer.drain()
                                writer.transport.abort()
                                return
                    elif isinstance(ev, BytesMessage):
                        self.received.append(ev.data)
                        if ev.message_finished:
                            writer.write(ws.send(BytesMessage(data=ev.data)))  # echo
                    elif isinstance(ev, Ping):
                        writer.write(ws.send(ev.response()))
                    elif isinstance(ev, CloseConnection):
                        self.closes.append((ev.code, ev.reason))
                        writer.write(ws.send(ev.response()))
                        await writer.drain()
                        return
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    @staticmethod
    def _send(ws: WSConnection, writer: asyncio.StreamWriter, event: dict) -> None:
        writer.write(ws.send(TextMessage(data=orjson.dumps(event).decode())))
