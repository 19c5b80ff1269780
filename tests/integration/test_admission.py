"""The ledger's backpressure reaches the clients: when the writer is behind, the
server stops reading new requests (requests in flight finish), /health says so,
and once the writer catches up every request is served and recorded."""

from __future__ import annotations

import json

from proxy.ledger import Ledger
from tests.conftest import RunningGateway
from tests.integration import rawhttp
from tests.proxy.ledger_rows import BlockingBackend, wait_until

CHAT = json.dumps({"model": "loopback",
                   "messages": [{"role": "user", "content": "x"}]}).encode()


def test_a_ledger_behind_holds_new_requests_until_it_catches_up(tmp_path, parser, loop_kind):
    gw = RunningGateway(tmp_path, parser=parser, loop_kind=loop_kind)
    backend = BlockingBackend(gw.db)
    gw.ledger = Ledger(gw.db, flush_ms=1, batch_rows=1, high_water_rows=3, low_water_rows=1,
                       backend=backend)
    gw.start()
    try:
        s = rawhttp.connect(gw.port)
        reader = rawhttp.Reader(s)
        sent = 0
        # The writer is stuck on the first row; three more fill the queue to its
        # high-water mark, and the server holds.
        while not gw.call(lambda: gw.server.holding):
            s.sendall(rawhttp.post_bytes("/v1/chat/completions", CHAT))
            sent += 1
            assert reader.response()[0] == 200
            assert sent < 50
        assert 3 <= sent <= 4  # 4 when the writer had taken the first row
        # A new client is accepted but not read while the ledger is behind.
        late = rawhttp.connect(gw.port)
        late.sendall(rawhttp.post_bytes("/v1/chat/completions", CHAT))
        wait_until(lambda: gw.call(lambda: len(gw.server.connections)) == 2, "the late client")
        assert gw.call(lambda: all(c._blocks for c in gw.server.connections))
        assert gw.ledger.stats()["state"] == "backpressure"
        backend.release.set()  # the database takes rows again
        status, _, body = rawhttp.Reader(late).response()
        assert status == 200 and b"loopback" in body
        assert not gw.call(lambda: gw.server.holding), gw.ledger.stats()
        rows = gw.wait_rows(sent + 1)
        assert len(rows) == sent + 1 and all(r["status"] == 200 for r in rows)
        assert gw.ledger.stats()["dropped"] == 0
    finally:
        backend.release.set()
        gw.stop()
