"""Faults between the gateway and its providers, injected by a TCP relay.

Each test runs one gateway (in a thread, real sockets) and every case of
``cases.CASES`` that applies to its request kind at once: each case has its own
relay, its own provider behind it and its own model routed there, so the cases
cannot see each other and the stalls overlap.  Per case the test checks what the
client got, the one ledger row, and the relay's connection; per gateway, that
nothing leaked: the upstream pool has no connection left busy (``/health``), the
loop's task count is back to its baseline, and every connection the gateway gave
up on is closed.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.faults.cases import CASES, PAIRS, chunked_provider
from tests.faults.harness import (
    ask,
    check_answer,
    check_relay,
    check_row,
    config,
    health,
    loop_tasks,
    settle,
)
from tests.faults.relay import Relay, wait_for
from tests.integration.upstreams import FakeUpstream


def run_cases(make_gateway: Any, *, parser: str, loop_kind: str, client: str, kind: str,
              stream: bool, failover: bool) -> None:
    cases = [c for c in CASES if c.outcome(stream) is not None]
    provider = FakeUpstream(script=chunked_provider).start()
    relays = {c.name: Relay(provider.port).start() for c in cases}
    try:
        for c in cases:
            if c.refuse:
                relays[c.name].refuse()
            elif c.fault is not None:
                relays[c.name].fault = c.fault(kind)
        gw = make_gateway(parser=parser, loop_kind=loop_kind,
                          config_text=config(kind, cases, relays, provider.port, failover))
        baseline = loop_tasks(gw)
        with ThreadPoolExecutor(len(cases)) as pool:
            answers = list(pool.map(
                lambda c: ask(gw.port, client, f"m-{c.name}", stream), cases))
        rows = gw.wait_rows(len(cases))
        settle(list(relays.values()))
        by_model: dict[str, list[dict]] = {}
        for row in rows:
            by_model.setdefault(row["model"], []).append(row)
        problems = []
        b_models = [r.json()["model"] for r in provider.requests]
        for i, (case, got) in enumerate(zip(cases, answers, strict=True)):
            out = case.outcome(stream)
            assert out is not None
            mine = by_model.get(f"m-{case.name}", [])
            found = check_answer(case, out, client, kind, stream, failover, got)
            if len(mine) != 1:
                found.append(f"{len(mine)} ledger rows")
            else:
                found += check_row(case, out, failover, i, mine[0])
            found += check_relay(case, out, failover, relays[case.name])
            to_b = b_models.count(f"b-{case.name}")
            if to_b != (1 if failover and out.kind == "before" else 0):
                found.append(f"{to_b} requests failed over to b")
            problems += [f"{case.name}: {p}" for p in found]
        # Nothing leaked: the pool holds no busy connection, the loop no extra task.
        try:
            wait_for(lambda: (lambda u: u["open"] == u["idle"])(health(gw.url)["upstream"]),
                     "no busy upstream connection")
            wait_for(lambda: loop_tasks(gw) == baseline, f"the loop's {baseline} tasks")
        except AssertionError as exc:
            up = health(gw.url)["upstream"]
            tasks = gw.call(lambda: [repr(t) for t in asyncio.all_tasks(gw.loop)])
            problems.append(f"{exc}: pool {up}, tasks {tasks}")
        if len(rows) != len(cases):
            problems.append(f"{len(rows)} ledger rows for {len(cases)} requests: "
                            f"{[(r['model'], r['status'], r['error_kind']) for r in rows]}")
        assert not problems, "\n".join(problems)
    finally:
        for relay in relays.values():
            relay.stop()
        provider.stop()


@pytest.mark.parametrize("failover", [False, True], ids=["one-target", "failover"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("client,kind", PAIRS, ids=[f"{c}-to-{k}" for c, k in PAIRS])
def test_faults(make_gateway, parser, client, kind, stream, failover):
    run_cases(make_gateway, parser=parser, loop_kind="uvloop", client=client, kind=kind,
              stream=stream, failover=failover)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_faults_on_the_asyncio_loop(make_gateway, parser, stream):
    run_cases(make_gateway, parser=parser, loop_kind="asyncio", client="chat", kind="openai",
              stream=stream, failover=False)
