"""How long `gateway usage --by` takes on a big SQLite ledger: over rows, after a rollup,
after a prune.

    python -m bench.rollups [ROWS]        # default 5,000,000

Fills a new ledger with ROWS rows over 100 days (20 keys, 10 models, 3 providers) in one
statement, then times ``query_groups`` by model, key and day over a window that starts
inside day 10: over the rows, after ``rollup``, and after ``prune`` of the days before
day 95.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import apsw

from proxy.ledger import open_backend

START = 1_700_000_000.0
DAY_S = 86400.0
FILL = """WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < ?)
INSERT INTO requests (ts, request_id, endpoint, client_protocol, model, provider, status,
                      stream, input_tokens, output_tokens, api_key_id, cost_usd)
SELECT ? + i * (100 * ? / ?), 'r' || i, '/v1/chat/completions', 'openai_chat',
       'm-' || (i % 10), 'p' || (i % 3), CASE WHEN i % 50 = 0 THEN 500 ELSE 200 END, 0,
       100, 10, 'key_' || (i % 20), 0.001
FROM c"""


def timed(path: str, label: str) -> None:
    backend = open_backend(path, readonly=True)
    backend.open()
    took = {}
    try:
        for by in ("model", "key", "day"):
            t = time.perf_counter()
            backend.query_groups(by, since=START + DAY_S * 10.5)
            took[by] = time.perf_counter() - t
    finally:
        backend.close()
    print(f"{label:<22}" + "  ".join(f"by {k}: {v * 1000:7.1f} ms" for k, v in took.items()))


def run(path: str, what: str, *args: float) -> tuple[int, float]:
    backend = open_backend(path)
    backend.open()
    t = time.perf_counter()
    try:
        n = getattr(backend, what)(*args)
    finally:
        backend.close()
    return n, time.perf_counter() - t


def main() -> int:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 5_000_000
    path = os.path.join(tempfile.mkdtemp(prefix="tw-rollups-"), "ledger.db")
    backend = open_backend(path)
    backend.open()
    backend.migrate()
    backend.close()
    db = apsw.Connection(path)
    t = time.perf_counter()
    with db:
        db.execute(FILL, (rows - 1, START, DAY_S, rows))
    db.close()
    print(f"{rows:,} rows in {time.perf_counter() - t:.1f} s, "
          f"{os.path.getsize(path) / 1e6:.0f} MB")
    timed(path, "over the rows")
    n, secs = run(path, "rollup")
    print(f"rollup: {n:,} rows in {secs:.1f} s")
    timed(path, "after the rollup")
    n, secs = run(path, "prune", START + DAY_S * 95)
    print(f"prune of the days before day 95: {n:,} rows deleted in {secs:.1f} s")
    timed(path, "after the prune")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
