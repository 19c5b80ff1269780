"""Faults against a real ``gatewayd`` process: after each one, its open file
descriptors are back to its baseline, counted from ``/proc``.

The cases run one after another on one daemon per parser and loop; between them the
daemon's descriptors, less its open client and provider connections (``/health``),
must come back to what they were after a first clean request.  A descriptor kept by
a failed provider connection, a timer or a half-closed client socket shows up here
even where the pool's own count would not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.ledger import query_rows
from tests.faults.cases import CASES, chunked_provider
from tests.faults.harness import (
    ask,
    check_answer,
    check_relay,
    check_row,
    config,
    settle,
)
from tests.faults.relay import Relay, wait_for
from tests.hostile.conftest import Daemon, read_response
from tests.integration.upstreams import FakeUpstream

# (case, stream): each kind of ending once: a timeout before the head and mid-stream,
# a reset, a close inside a chunk-size line, a request body that never arrives, a
# trickled answer (which leaves an idle pooled connection), and a stall after the
# last event.
SEQUENCE = [("blackhole", False), ("head-reset", True), ("mid-event-stall", True),
            ("chunk-size-close", True), ("body-stall", False), ("head-trickle", True),
            ("last-chunk-stall", True), ("refused", True)]


def fds_beyond_connections(d: Daemon) -> int:
    """The daemon's open descriptors less one per client and provider connection.
    The /health connection stays open while the descriptors are read, so it is
    counted on both sides."""
    s = d.connect()
    try:
        s.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        status, _, body = read_response(s)
        assert status == 200
        h = json.loads(body)
        return d.open_fds() - h["connections"] - h["upstream"]["open"]
    finally:
        s.close()


@pytest.mark.parametrize("parser,loop_kind", [("httptools", "uvloop"), ("h11", "uvloop"),
                                              ("httptools", "asyncio")])
def test_descriptors_come_back_after_each_fault(tmp_path: Path, parser: str, loop_kind: str):
    by_name = {c.name: c for c in CASES}
    cases = [by_name[name] for name, _ in SEQUENCE]
    provider = FakeUpstream(script=chunked_provider).start()
    relays = {c.name: Relay(provider.port).start() for c in cases}
    d = None
    try:
        for c in cases:
            if c.refuse:
                relays[c.name].refuse()
            elif c.fault is not None:
                relays[c.name].fault = c.fault("openai")
        cfg = config("openai", cases, relays, provider.port, failover=False)
        cfg += '\n[[routes]]\nmatch = "warm"\nto = ["b"]\n'
        d = Daemon(tmp_path, parser, loop_kind, config=cfg)
        assert not isinstance(ask(d.port, "chat", "warm", True), str)
        wait_for(lambda: len(query_rows(str(d.db))) == 1, "the first ledger row")
        baseline = fds_beyond_connections(d)
        for n, (case, (_, stream)) in enumerate(zip(cases, SEQUENCE, strict=True), start=2):
            out = case.outcome(stream)
            assert out is not None
            got = ask(d.port, "chat", f"m-{case.name}", stream)
            problems = check_answer(case, out, "chat", "openai", stream, False, got)
            wait_for(lambda n=n: len(query_rows(str(d.db))) == n, f"ledger row {n}")
            row = query_rows(str(d.db))[-1]
            assert row["model"] == f"m-{case.name}"
            problems += check_row(case, out, False, cases.index(case), row)
            try:
                wait_for(lambda: fds_beyond_connections(d) == baseline,
                         f"{baseline} descriptors beyond connections")
            except AssertionError as exc:
                problems.append(f"{exc}: {fds_beyond_connections(d)}")
            settle([relays[case.name]])
            problems += check_relay(case, out, False, relays[case.name])
            assert not problems, f"{case.name}: " + "\n".join(problems)
        assert d.proc.poll() is None
    finally:
        if d is not None:
            d.stop()
        for relay in relays.values():
            relay.stop()
        provider.stop()
