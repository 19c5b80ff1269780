"""Faults across a request's life: the client leaving while its provider is stalled,
and faults on a pooled keep-alive connection the gateway reuses."""

from __future__ import annotations

import dataclasses
import socket
import struct
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.faults.cases import CASES, OK, Case, chunked_provider, request_body
from tests.faults.harness import ask, check_answer, config, health, loop_tasks, settle
from tests.faults.relay import DOWN, UP, At, Fault, Relay, wait_for
from tests.integration.rawhttp import connect, post_bytes
from tests.integration.upstreams import FakeUpstream


@pytest.fixture
def provider():
    up = FakeUpstream(script=chunked_provider).start()
    yield up
    up.stop()


def assert_nothing_left(gw: Any, baseline: int) -> None:
    wait_for(lambda: (lambda u: u["open"] == u["idle"])(health(gw.url)["upstream"]),
             "no busy upstream connection")
    wait_for(lambda: loop_tasks(gw) == baseline, f"the loop's {baseline} tasks")


# -- the client leaves while the provider is stalled ------------------------------------

# (case, stream request, the client reads the first events before it leaves)
LEAVING = [("blackhole", False, False), ("head-stall", True, False),
           ("mid-event-stall", True, True)]


@pytest.mark.parametrize("name,stream,started", LEAVING, ids=[n for n, _, _ in LEAVING])
def test_client_that_resets_while_the_provider_stalls(make_gateway, provider, parser, name,
                                                      stream, started):
    """The client resets its connection (a killed process) while the gateway waits on
    a stalled provider: the gateway drops the provider connection at once (long
    timeouts here, so nothing else would), records 499 ``cancelled``, and keeps no
    connection or task for it."""
    case = dataclasses.replace({c.name: c for c in CASES}[name], stalls=False)
    relay = Relay(provider.port).start()
    try:
        assert case.fault is not None
        relay.fault = case.fault("openai")
        gw = make_gateway(parser=parser,
                          config_text=config("openai", [case], {name: relay}, provider.port,
                                             failover=False))
        baseline = loop_tasks(gw)
        s = connect(gw.port)
        s.sendall(post_bytes("/v1/chat/completions",
                             request_body("chat", f"m-{name}", stream)))
        wait_for(lambda: relay.links and relay.links[0].fired, "the stall")
        if started:
            got = b""
            while b"data: " not in got:  # the stream's head and first events are out
                data = s.recv(65536)
                assert data, got
                got += data
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        [row] = gw.wait_rows(1)
        assert (row["status"], row["error_kind"], row["attempts"]) == (499, "cancelled", 1)
        settle([relay])
        assert relay.links[0].closed_by == "gateway" and len(relay.links) == 1
        assert_nothing_left(gw, baseline)
    finally:
        relay.stop()


# -- faults on a reused keep-alive connection --------------------------------------------

# The fault waits for the second request on a connection: the first leaves it pooled.
SECOND_REQUEST = At(UP, 0, b"POST ", 2)
POOLED = [
    # The provider closed the idle connection as the gateway reused it: sent again
    # on a fresh connection, transparently (not a failover attempt).
    (Case("reused-close", lambda k: Fault("close", SECOND_REQUEST), OK, OK), 1, 2),
    # The provider reset it just before answering: the gateway cannot tell that
    # from a stale connection, and sends the request again (the provider saw it twice).
    (Case("reused-reset", lambda k: Fault("reset", At(DOWN, 0, b"HTTP/1.1 ", 2)), OK, OK),
     1, 3),
    # The reused connection never answers: after the timeout the request is tried
    # again on a fresh connection, never on the stalled one.
    (Case("reused-stall", lambda k: Fault("stall", SECOND_REQUEST), OK, OK, stalls=True),
     2, 2),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_faults_on_a_pooled_connection(make_gateway, provider, parser, stream):
    cases = [c for c, _, _ in POOLED]
    relays = {c.name: Relay(provider.port).start() for c in cases}
    try:
        for c in cases:
            assert c.fault is not None
            relays[c.name].fault = c.fault("openai")
        gw = make_gateway(parser=parser, config_text=config(
            "openai", cases, relays, provider.port, failover=False))
        baseline = loop_tasks(gw)

        def twice(case: Case) -> Any:
            first = ask(gw.port, "chat", f"m-{case.name}", stream)
            assert not isinstance(first, str) and first[0] == 200, first
            return ask(gw.port, "chat", f"m-{case.name}", stream)

        with ThreadPoolExecutor(len(cases)) as pool:
            answers = list(pool.map(twice, cases))
        rows = gw.wait_rows(2 * len(cases))
        assert len(rows) == 2 * len(cases)
        settle(list(relays.values()))
        problems = []
        for (case, attempts, sent), got in zip(POOLED, answers, strict=True):
            found = check_answer(case, OK, "chat", "openai", stream, False, got)
            mine = [r for r in rows if r["model"] == f"m-{case.name}"]
            want = [(200, None, 1), (200, None, attempts)]
            if [(r["status"], r["error_kind"], r["attempts"]) for r in mine] != want:
                found.append(f"ledger rows {mine}, want {want}")
            links = relays[case.name].links
            if len(links) != 2 or not links[0].fired or links[1].fired:
                found.append(f"links {[(lk.fired, lk.closed_by) for lk in links]}")
            elif not links[0].closed or links[1].closed:
                found.append("the faulted connection open, or the fresh one closed")
            n = sum(1 for r in provider.requests if r.json()["model"] == f"up-{case.name}")
            if n != sent:
                found.append(f"the provider got {n} whole requests, want {sent}")
            problems += [f"{case.name}: {p}" for p in found]
        assert not problems, "\n".join(problems)
        assert_nothing_left(gw, baseline)
    finally:
        for relay in relays.values():
            relay.stop()
