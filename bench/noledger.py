"""`gatewayd` with the ledger's `record()` a no-op: the `tokenway-noledger` target.

The bench runs it beside the real gateway in the same cells so that the difference in
CPU per request is what the ledger costs the process as a whole (the event loop's
appends, the GIL hand-offs, and the writer thread), the figure the passthrough-cost
checks judge. Never imported by proxy/; never used outside the bench.

    python -m bench.noledger --listen 127.0.0.1:PORT --db PATH --config FILE
"""

from __future__ import annotations

import sys
from typing import Any

from proxy.ledger.writer import Ledger


def _discard(self: Ledger, rec: Any) -> None:
    """Record nothing: the request's row is dropped on purpose (a benchmark only)."""


def main() -> int:
    Ledger.record = _discard  # type: ignore[method-assign]
    from proxy.cli import gatewayd_main

    return gatewayd_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
