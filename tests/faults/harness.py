"""What the fault tests share: the gateway's configuration for a set of cases, one
client request, and the checks of what the client, the ledger and the relay saw."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from tests.faults.cases import (
    CLIENTS,
    Case,
    Outcome,
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
from tests.faults.relay import DOWN, Relay, wait_for
from tests.integration.rawhttp import Reader, connect, post_bytes

# Short enough that a stall resolves at once, long enough that nothing else trips
# it: only the cases that stall get them; the others keep a generous 10 s.
STALL_TIMEOUT = "300ms"
CALM_TIMEOUT = "10s"


def _stalls_after_first_byte(case: Case, kind: str) -> bool:
    if not case.stalls or case.fault is None:
        return False
    at = case.fault(kind).at
    return (at is not None and at.direction == DOWN
            and (at.offset > 0 or bool(at.pattern) or at.chunk_line is not None))


def base_url(kind: str, port: int) -> str:
    # An Anthropic base URL has no /v1: the gateway appends /v1/messages.
    return f"http://127.0.0.1:{port}" + ("/v1" if kind == "openai" else "")


def config(kind: str, cases: list[Case], relays: dict[str, Relay], provider_port: int,
           failover: bool, max_attempts: int = 2) -> str:
    """Provider ``f<i>`` behind case i's relay, model ``m-<case>`` routed to it (and
    with ``failover`` then to ``b``, the same fake provider reached directly); each
    target renames the model so the provider's log tells whose request it got."""
    out = [f'[routing]\nmax_attempts = {max_attempts}\nbackoff = "10ms"\n',
           f'[providers.b]\nkind = "{kind}"\nbase_url = "{base_url(kind, provider_port)}"\n'
           'api_key = "kb"\n']
    for i, case in enumerate(cases):
        idle = STALL_TIMEOUT if case.stalls else CALM_TIMEOUT
        # A stall after the provider's first bytes is the idle timer's to find: the
        # first byte itself may take longer than the short timeout on a loaded
        # machine (and the fault would never fire).
        first = CALM_TIMEOUT if _stalls_after_first_byte(case, kind) else idle
        out.append(f'[providers.f{i}]\nkind = "{kind}"\n'
                   f'base_url = "{base_url(kind, relays[case.name].port)}"\napi_key = "kf"\n'
                   f'connect_timeout = "2s"\nfirst_byte_timeout = "{first}"\n'
                   f'idle_timeout = "{idle}"\n')
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


def health(url: str) -> dict:
    with urllib.request.urlopen(url + "/health", timeout=10) as r:
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


def settle(relays: list[Relay]) -> None:
    """Wait (bounded) until every connection a fault ended is closed: the relay
    notices a close just after the gateway makes it.  ``check_relay`` names any
    left open."""
    ended = [link for r in relays for link in r.links
             if link.fired and link.fault is not None and link.fault.action != "trickle"]
    try:
        wait_for(lambda: all(link.closed for link in ended), "every faulted link closed")
    except AssertionError:
        pass


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
