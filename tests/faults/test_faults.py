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
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.faults.cases import (
    CASES,
    CLIENTS,
    PAIRS,
    Case,
    Outcome,
    chunked_provider,
    error_event,
    error_shape_problem,
    expected_text,
    is_terminal,
    request_body,
    says_timeout,
    sse_events,
    stream_text,
    whole_text,
)
from tests.faults.relay import Relay, wait_for
from tests.integration.rawhttp import Reader, connect, post_bytes
from tests.integration.upstreams import FakeUpstream

# Short enough that a stall resolves at once, long enough that nothing else trips
# it: only the cases that stall get them; the others keep a generous 10 s.
STALL_TIMEOUT = "300ms"
CALM_TIMEOUT = "10s"


def base_url(kind: str, port: int) -> str:
    # An Anthropic base URL has no /v1: the gateway appends /v1/messages.
    return f"http://127.0.0.1:{port}" + ("/v1" if kind == "openai" else "")


def config(kind: str, cases: list[Case], relays: dict[str, Relay], provider_port: int,
           failover: bool) -> str:
    out = ['[routing]\nmax_attempts = 2\nbackoff = "10ms"\n',
           f'[providers.b]\nkind = "{kind}"\nbase_url = "{base_url(kind, provider_port)}"\n'
           'api_key = "kb"\n']
    for i, case in enumerate(cases):
        t = STALL_TIMEOUT if case.stalls else CALM_TIMEOUT
        out.append(f'[providers.f{i}]\nkind = "{kind}"\n'
                   f'base_url = "{base_url(kind, relays[case.name].port)}"\napi_key = "kf"\n'
                   f'connect_timeout = "2s"\nfirst_byte_timeout = "{t}"\nidle_timeout = "{t}"\n')
        to = f'"f{i}:up-{case.name}"' + (f', "b:b-{case.name}"' if failover else "")
        out.append(f'[[routes]]\nmatch = "m-{case.name}"\nto = [{to}]\n')
    return "\n".join(out)


def ask(port: int, client: str, model: str, stream: bool) -> tuple[int, dict, bytes] | str:
    """One request on a fresh connection; what came back, or why nothing did."""
    s = connect(port, timeout=20)
    try:
        s.sendall(post_bytes(CLIENTS[client], request_body(client, model, stream)))
        return Reader(s).response()
    except (OSError, EOFError) as exc:
        return f"no whole response: {exc!r}"
    finally:
        s.close()


def health(gw: Any) -> dict:
    with urllib.request.urlopen(gw.url + "/health", timeout=10) as r:
        return json.loads(r.read())


def loop_tasks(gw: Any) -> int:
    return gw.call(lambda: len(asyncio.all_tasks(gw.loop)))


# -- what each case must show --------------------------------------------------------

def check_answer(case: Case, out: Outcome, client: str, kind: str, stream: bool,
                 failover: bool, got: tuple[int, dict, bytes] | str) -> list[str]:
    if isinstance(got, str):
        return [got]  # a silent cut: the client never saw the response end
    status, headers, body = got
    whole = out.kind == "ok" or (out.kind == "before" and failover)
    if out.kind == "before" and not failover:
        problems = []
        if status != out.status:
            problems.append(f"status {status}, want {out.status}: {body[:300]!r}")
        shape = error_shape_problem(client, body)
        if shape:
            problems.append(shape)
        elif out.status == 504:
            err = json.loads(body)["error"]
            if not says_timeout(client, err):
                problems.append(f"a 504 that does not say timeout: {err}")
        return problems
    if status != 200:
        return [f"status {status}, want 200: {body[:300]!r}"]
    want = expected_text(kind, stream)
    if not stream:
        text = whole_text(client, json.loads(body))
        return [] if text == want else [f"text {text!r}, want {want!r}"]
    if not headers.get("content-type", "").startswith("text/event-stream"):
        return [f"not a stream: {headers}"]
    events = sse_events(body)
    if not events:
        return ["an empty stream"]
    errors = [e for e in (error_event(client, ev) for ev in events) if e is not None]
    if whole:
        problems = []
        if errors:
            problems.append(f"error events in a whole answer: {errors}")
        if not is_terminal(client, events[-1]):
            problems.append(f"does not end with its terminal event: {events[-1]}")
        text = stream_text(client, events)
        if text != want:
            problems.append(f"text {text!r}, want {want!r}")
        return problems
    last = error_event(client, events[-1])
    if last is None:
        return [f"the stream does not end with an error event: {events[-3:]}"]
    problems = []
    if len(errors) != 1:
        problems.append(f"{len(errors)} error events")
    if any(is_terminal(client, ev) for ev in events):
        problems.append("a terminal event besides the error")
    if out.error_kind == "upstream_timeout" and not says_timeout(client, last):
        problems.append(f"the error event does not say timeout: {last}")
    if "upstream stream failed" not in last.get("message", ""):
        problems.append(f"the error event does not say what failed: {last}")
    return problems


def check_row(case: Case, out: Outcome, failover: bool, i: int, row: dict) -> list[str]:
    if out.kind == "before" and failover:
        want = {"status": 200, "error_kind": None, "provider": "b", "attempts": 2}
    elif out.kind == "before":
        want = {"status": out.status, "error_kind": out.error_kind, "provider": f"f{i}",
                "attempts": 2}
    else:
        want = {"status": out.status, "error_kind": out.error_kind, "provider": f"f{i}",
                "attempts": 1}
    got = {k: row[k] for k in want}
    return [] if got == want else [f"ledger row {got}, want {want}"]


def check_relay(case: Case, out: Outcome, failover: bool, relay: Relay) -> list[str]:
    """How many connections the provider side saw, and that the gateway let go of
    every one a fault ended."""
    links = relay.links
    if case.refuse:
        return [] if not links else [f"{len(links)} connections to a refused port"]
    want = 2 if out.kind == "before" and not failover else 1
    problems = [] if len(links) == want else [f"{len(links)} provider connections, want {want}"]
    for link in links:
        if not link.fired:
            problems.append(f"the fault never fired on connection {link.index}")
        elif link.fault is not None and link.fault.action != "trickle" and not link.closed:
            problems.append(f"connection {link.index} still open after its "
                            f"{link.fault.action}")
        if link.fault is not None and link.fault.action in ("stall", "blackhole") \
                and link.closed and link.closed_by != "gateway":
            problems.append(f"a stalled connection closed by the {link.closed_by}")
    return problems


# -- the tests ---------------------------------------------------------------------------

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
        # The relay notices a close just after the gateway makes it.
        ended = [link for r in relays.values() for link in r.links
                 if link.fired and link.fault is not None and link.fault.action != "trickle"]
        try:
            wait_for(lambda: all(link.closed for link in ended), "every faulted link closed")
        except AssertionError:
            pass  # check_relay names the ones left open
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
            wait_for(lambda: (lambda u: u["open"] == u["idle"])(health(gw)["upstream"]),
                     "no busy upstream connection")
            wait_for(lambda: loop_tasks(gw) == baseline, f"the loop's {baseline} tasks")
        except AssertionError as exc:
            up = health(gw)["upstream"]
            tasks = gw.call(lambda: [repr(t) for t in asyncio.all_tasks(gw.loop)])
            problems.append(f"{exc}: pool {up}, tasks {tasks}")
        assert len(rows) == len(cases), f"{len(rows)} ledger rows for {len(cases)} requests"
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
