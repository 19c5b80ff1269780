"""The gateway's threads carry their names at the OS level (top -H, /proc, the bench)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from proxy.ledger import Ledger
from proxy.threads import name_os_thread


def _comms() -> set[str]:
    out = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                out.add(f.read().strip())
        except OSError:
            pass
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_the_ledger_writer_names_its_thread(tmp_path) -> None:
    ledger = Ledger(str(tmp_path / "ledger.db"))
    ledger.start()
    try:
        assert "tokenway-ledger" in _comms()
    finally:
        ledger.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_names_are_cut_to_what_the_kernel_keeps() -> None:
    seen: list[set[str]] = []
    done = threading.Event()

    def run() -> None:
        name_os_thread("a-name-longer-than-fifteen")
        seen.append(_comms())
        done.set()

    threading.Thread(target=run).start()
    assert done.wait(5)
    assert "a-name-longer-t" in seen[0]
