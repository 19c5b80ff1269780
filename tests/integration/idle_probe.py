"""``gatewayd`` run in this process (``proxy.cli.gatewayd_main``, as ``python -m proxy``
runs it), answering each line read on stdin with the names in ``sys.modules`` (one
line, space-separated): how tests/integration/test_idle_memory.py sees what a running
gateway has imported, with nothing added to the gateway itself. The answering thread
is the only one this adds."""

from __future__ import annotations

import sys
import threading


def _answer() -> None:
    for _ in sys.stdin:
        sys.stdout.write(" ".join(sorted(sys.modules)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    threading.Thread(target=_answer, name="idle-probe", daemon=True).start()
    from proxy.cli import gatewayd_main

    sys.exit(gatewayd_main(sys.argv[1:]))
