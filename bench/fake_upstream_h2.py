"""The fake provider over HTTP/2 with prior knowledge (h2c, RFC 9113 §3.3): the
non-stream Chat answer of ``bench.fake_upstream``, for a gateway whose provider
has ``http2 = true``.

    python -m bench.fake_upstream_h2 --port 18001

Every POST gets the same Chat completion as ``bench.fake_upstream`` gives (its
``chat_body``, with a fresh id); anything else gets 404.  One asyncio protocol
per connection on uvloop, h2 as the framing; it is the provider side of
``bench/micro/upstream_h2.py`` and is never the bottleneck of that bench (its
CPU per request is printed beside the gateway's).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import sys
import time
from pathlib import Path

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, StreamEnded
from h2.exceptions import H2Error
from h2.settings import SettingCodes, Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench.fake_upstream import ID_PLACEHOLDER, ID_WIDTH, chat_body  # noqa: E402

_ids = itertools.count(1)
_CONFIG = H2Configuration(client_side=False, header_encoding=None)


class FakeH2(asyncio.Protocol):
    def __init__(self) -> None:
        self.h2 = H2Connection(config=_CONFIG)
        self.transport: asyncio.Transport | None = None
        self.paths: dict[int, bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        h2 = self.h2
        h2.local_settings = Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
        h2.initiate_connection()
        h2.increment_flow_control_window(16 * 1024 * 1024)
        transport.write(h2.data_to_send())  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        h2 = self.h2
        try:
            events = h2.receive_data(data)
        except H2Error:
            assert self.transport is not None
            self.transport.close()
            return
        for ev in events:
            if isinstance(ev, RequestReceived):
                self.paths[ev.stream_id] = dict(ev.headers).get(b":path", b"")
            elif isinstance(ev, DataReceived):
                h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, StreamEnded):
                self.answer(ev.stream_id, self.paths.pop(ev.stream_id, b""))
        out = h2.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)

    def answer(self, sid: int, path: bytes) -> None:
        if not path.endswith(b"/chat/completions"):
            self.h2.send_headers(sid, [(b":status", b"404"), (b"content-length", b"0")],
                                 end_stream=True)
            return
        rid = str(next(_ids)).rjust(ID_WIDTH, "0").encode()
        body = chat_body("gpt-bench", int(time.time())).replace(ID_PLACEHOLDER, rid)
        self.h2.send_headers(sid, [(b":status", b"200"), (b"content-type", b"application/json"),
                                   (b"content-length", b"%d" % len(body))])
        self.h2.send_data(sid, body, end_stream=True)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FakeH2, host, port, backlog=1024, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake h2 upstream listening on {host}:{port}", flush=True)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18001)
    args = ap.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
