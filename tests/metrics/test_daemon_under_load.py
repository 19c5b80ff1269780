"""The daemon's garbage collector under load, counted by its own /metrics; and its
exit line, as the bench reads it.

``gatewayd`` raises the collector's youngest threshold (``proxy.cli.GC_YOUNG_THRESHOLD``)
above the young objects a busy gateway holds (queued ledger records, requests in
flight). With CPython's default of 700 the 64 connections below make the collector run
a young collection every few hundred requests; with the gateway's setting, none.
The counts come from ``python_gc_collections_total``, as Prometheus would read them.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import orjson
import pytest

from tests.integration import daemon as gatewayd
from tests.integration import rawhttp
from tests.log_audit import AUDIT
from tests.metrics.exposition_text import series

CONNECTIONS = 64
REQUESTS_PER_CONNECTION = 40
BODY = orjson.dumps({"model": "loopback", "messages": [{"role": "user", "content": "hi"}]})


class Daemon:
    def __init__(self, tmp_path: Path) -> None:
        self.p, self.host, self.port = gatewayd.start(
            "proxy", ["--listen", "127.0.0.1:0"], tmp_path,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.lines: list[str] = []  # stderr after the start, read at stop()

    def stop(self) -> None:
        if self.p.stderr.closed:
            return
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(20)
        finally:
            for line in self.p.stderr:
                AUDIT.text("gatewayd stderr", line)
                self.lines.append(line)
            self.p.stderr.close()


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    head: bytes, body: bytes) -> tuple[int, bytes]:
    writer.write(head + body)
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(status_line.split()[1]), await reader.readexactly(length)


async def _client(host: str, port: int, n: int) -> list[int]:
    reader, writer = await asyncio.open_connection(host, port)
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(BODY))
    try:
        return [(await _exchange(reader, writer, head, BODY))[0] for _ in range(n)]
    finally:
        writer.close()


async def _load(host: str, port: int) -> list[int]:
    done = await asyncio.wait_for(asyncio.gather(
        *(_client(host, port, REQUESTS_PER_CONNECTION) for _ in range(CONNECTIONS))), 120)
    return [s for statuses in done for s in statuses]


def _young_collections(d: Daemon) -> float:
    status, _, body = rawhttp.request(f"http://{d.host}:{d.port}/metrics")
    assert status == 200, body
    counts = {labels["generation"]: value
              for labels, value in series(body.decode(), "python_gc_collections_total")}
    assert set(counts) == {"0", "1", "2"}, counts
    return counts["0"]


@pytest.fixture
def daemon(tmp_path: Path):
    d = Daemon(tmp_path)
    yield d
    d.stop()


def test_a_busy_gateway_runs_next_to_no_young_collection(daemon: Daemon) -> None:
    before = _young_collections(daemon)
    statuses = asyncio.run(_load(daemon.host, daemon.port))
    after = _young_collections(daemon)
    assert statuses == [200] * (CONNECTIONS * REQUESTS_PER_CONNECTION)
    # 2,560 requests, 64 at a time: six young collections at CPython's default
    # threshold of 700 (GC_YOUNG_THRESHOLD set to it), none at the gateway's.
    assert after - before <= 2, f"{after - before:g} young collections"


def test_the_bench_reads_the_exit_line_the_daemon_writes(daemon: Daemon, tmp_path: Path) -> None:
    """bench/ledger_check.py takes the daemon's own dropped count from its last log
    line; the line's wording changed once and the bench silently lost the count."""
    from bench.ledger_check import closed_line

    statuses = asyncio.run(_load(daemon.host, daemon.port))
    daemon.stop()
    log = tmp_path / "gatewayd.log"
    log.write_text("".join(daemon.lines))
    assert closed_line(log) == (len(statuses), 0, "")
