"""What the h2 library itself costs the server side of one HTTP/2 request.

    python -m bench.micro.h2 [--requests 20000] [--repeat 3]

One process, no sockets: a client H2Connection sends batches of 16 requests (HEADERS
with the headers h2load sends, one DATA frame of a small chat body, END_STREAM); a
server H2Connection configured as proxy/h2conn.py configures it reads them, acknowledges
the bodies and answers each with the gateway's response headers and a 600-byte DATA
frame, its header blocks written by proxy/hpack_out.py as the gateway writes them, or
(for comparison) by hpack's own encoder without Huffman coding, ids, lengths and dates as
never-indexed literals, as the gateway did before.  Only the server's calls are timed
(`time.process_time`), per request; the client's side runs between them untimed.  The
figure is the floor under the gateway's own HTTP/2 CPU per request, before any dispatch,
provider or ledger work.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, StreamEnded
from hpack import NeverIndexedHeaderTuple

from proxy import hpack_out

BATCH = 16
BODY = b'{"model":"gpt-bench","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
ANSWER = b"x" * 600
REQUEST_HEAD = [(b":method", b"POST"), (b":path", b"/v1/chat/completions"),
                (b":scheme", b"http"), (b":authority", b"127.0.0.1:8081"),
                (b"user-agent", b"h2load nghttp2/1.52.0"),
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(BODY))]


def _head_static(n: int) -> list[tuple[bytes, bytes]]:
    return [(b":status", b"200"), (b"content-type", b"application/json"),
            (b"x-request-id", b"req_%024d" % n), (b"content-length", b"%d" % len(ANSWER)),
            (b"date", b"Mon, 07 Dec 2026 14:40:08 GMT"), (b"server", b"tokenway")]


def _head_hpack(n: int) -> list[tuple[bytes, bytes]]:
    return [(b":status", b"200"), (b"content-type", b"application/json"),
            NeverIndexedHeaderTuple(b"x-request-id", b"req_%024d" % n),
            NeverIndexedHeaderTuple(b"content-length", b"%d" % len(ANSWER)),
            NeverIndexedHeaderTuple(b"date", b"Mon, 07 Dec 2026 14:40:08 GMT"),
            (b"server", b"tokenway")]


def run(requests: int, validate: bool, static: bool = True) -> float:
    client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    server = H2Connection(H2Configuration(
        client_side=False, header_encoding=None, validate_outbound_headers=False,
        normalize_outbound_headers=False, validate_inbound_headers=validate))
    if static:
        hpack_out.install(server.encoder)  # as h2conn.py
        head = _head_static
    else:
        server.encoder.encode = partial(server.encoder.encode, huffman=False)
        head = _head_hpack
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    spent = 0.0
    done = 0
    while done < requests:
        for _ in range(BATCH):
            sid = client.get_next_available_stream_id()
            client.send_headers(sid, REQUEST_HEAD)
            client.send_data(sid, BODY, end_stream=True)
        data = client.data_to_send()
        t0 = time.process_time()
        for ev in server.receive_data(data):
            if type(ev) is DataReceived:
                server.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif type(ev) is StreamEnded:
                done += 1
                server.send_headers(ev.stream_id, head(done))
                server.send_data(ev.stream_id, ANSWER, end_stream=True)
        out = server.data_to_send()
        spent += time.process_time() - t0
        for ev in client.receive_data(out):
            if type(ev) is DataReceived:
                client.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        # The client's WINDOW_UPDATEs leave with its next batch.
    return spent / done * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.micro.h2", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    for validate, static in ((True, True), (True, False), (False, True)):
        best = min(run(args.requests, validate, static) for _ in range(args.repeat))
        print(f"h2 server side per request, inbound header validation "
              f"{'on ' if validate else 'off'}, header blocks by "
              f"{'hpack_out' if static else 'hpack    '}: {best:.1f} us (min of {args.repeat})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
